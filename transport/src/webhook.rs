//! The outgoing webhook client shared by analytics (capacity alerts) and the edge (denial
//! notices): HTTPS verified against the public web PKI roots, no redirects followed, a
//! bounded time per request.

use std::sync::Arc;
use std::time::Duration;

/// A webhook client, or `None` if TLS cannot be set up (then webhooks are not sent).
pub fn client(timeout: Duration) -> Option<reqwest::Client> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .ok()
}
