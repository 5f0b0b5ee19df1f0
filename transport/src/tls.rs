//! TLS material for the HTTPS listeners: a self-signed loopback certificate for the demo and
//! tests, or a certificate and key loaded by the caller. rustls with the `ring` provider.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use thiserror::Error;

/// Why TLS material could not be made.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Certificate generation failed.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
    /// rustls rejected the certificate or key.
    #[error("rustls rejected the certificate: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A server certificate with its key, and the rustls server configuration built from them.
#[derive(Clone)]
pub struct ServerTls {
    /// PEM of the certificate, for clients to trust (written next to the data by the demo).
    pub cert_pem: String,
    /// The rustls configuration to serve with.
    pub config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// A fresh self-signed certificate for `localhost` and `127.0.0.1`. The key lives in RAM
    /// only.
    pub fn self_signed() -> Result<ServerTls, TlsError> {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let certified =
            rcgen::generate_simple_self_signed(names).map_err(|error| TlsError::Generate(error.to_string()))?;
        let cert_der: CertificateDer<'static> = certified.cert.der().clone();
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![cert_der], key_der)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls { cert_pem: certified.cert.pem(), config: Arc::new(config) })
    }
}
