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
    /// A PEM file holds no certificate, key or CRL of the expected kind.
    #[error("{what}: {reason}")]
    Pem {
        /// Which input.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The client-certificate verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

/// PEM inputs of a party in the deployment's PKI (`passage pki`): the CA it trusts, the
/// current CRL, and its own certificate and key.
#[derive(Clone)]
pub struct PkiPem {
    /// The CA certificate.
    pub ca: String,
    /// The CA's current revocation list.
    pub crl: String,
    /// This party's certificate.
    pub cert: String,
    /// This party's private key (zeroized on drop).
    pub key: zeroize::Zeroizing<String>,
}

impl PkiPem {
    /// Reads the CA certificate and the CRL from `pki` and this party's certificate and key
    /// from `cert` and `key`.
    pub fn load(
        pki: &passage_policy::pki::PkiDir,
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Result<PkiPem, TlsError> {
        let read = |what: &'static str, path: &std::path::Path| {
            std::fs::read_to_string(path)
                .map_err(|error| TlsError::Pem { what, reason: format!("{}: {error}", path.display()) })
        };
        Ok(PkiPem {
            ca: read("CA certificate", &pki.ca_cert_path())?,
            crl: read("CRL", &pki.crl_path())?,
            cert: read("certificate", cert)?,
            key: zeroize::Zeroizing::new(read("key", key)?),
        })
    }
}

impl std::fmt::Debug for PkiPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PkiPem").finish_non_exhaustive()
    }
}

/// Whether a server asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client must present a certificate of the CA that is not revoked.
    Required,
    /// A client may present one (and it is then verified); browsers need not.
    Optional,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(what: &'static str, pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|error| TlsError::Pem { what, reason: error.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Pem { what, reason: "no certificate in it".into() });
    }
    Ok(certs)
}

fn key(what: &'static str, pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|error| TlsError::Pem { what, reason: error.to_string() })
}

fn roots(ca: &str) -> Result<Arc<rustls::RootCertStore>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs("CA certificate", ca)? {
        roots.add(cert)?;
    }
    Ok(Arc::new(roots))
}

/// The DER of the first certificate in `pem` (for fingerprints).
pub fn first_cert_der(pem: &str) -> Result<Vec<u8>, TlsError> {
    Ok(certs("certificate", pem)?.swap_remove(0).to_vec())
}

/// A server configuration that presents `pki.cert` and verifies client certificates against
/// `pki.ca` and `pki.crl` (a revoked certificate fails the handshake).
pub fn server_config(pki: &PkiPem, client_auth: ClientAuth) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    let crl = rustls::pki_types::CertificateRevocationListDer::from_pem_slice(pki.crl.as_bytes())
        .map_err(|error| TlsError::Pem { what: "CRL", reason: error.to_string() })?;
    let builder = rustls::server::WebPkiClientVerifier::builder_with_provider(roots(&pki.ca)?, provider())
        .with_crls(vec![crl])
        .only_check_end_entity_revocation();
    let builder = match client_auth {
        ClientAuth::Required => builder,
        ClientAuth::Optional => builder.allow_unauthenticated(),
    };
    let verifier = builder.build().map_err(|error| TlsError::Verifier(error.to_string()))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs("server certificate", &pki.cert)?, key("server key", &pki.key)?)?;
    Ok(Arc::new(config))
}

/// A client configuration that trusts `ca` and, when `identity` is given (certificate and key
/// PEM), authenticates with it.
pub fn client_config(ca: &str, identity: Option<(&str, &str)>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca)?);
    let config = match identity {
        Some((cert, pem)) => {
            builder.with_client_auth_cert(certs("client certificate", cert)?, key("client key", pem)?)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
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

    /// A server certificate of the deployment's PKI, verifying client certificates as
    /// `client_auth` says; clients trust the CA (`cert_pem` is the CA certificate).
    pub fn from_pki(pki: &PkiPem, client_auth: ClientAuth) -> Result<ServerTls, TlsError> {
        let config = server_config(pki, client_auth)?;
        let mut config = Arc::unwrap_or_clone(config);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls { cert_pem: pki.ca.clone(), config: Arc::new(config) })
    }
}
