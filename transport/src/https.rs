//! One way to serve an axum router for every Passage service (analytics, the matcher API, the
//! visitor portal): bound before it returns (port 0 picks a free port), HTTPS when TLS is given,
//! client addresses available to handlers (`ConnectInfo<SocketAddr>`, for per-address rate
//! limits), a first-request timeout against idle connections, and a graceful stop on cancel.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use axum::Router;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ServerTls;

/// A client for one service calling another's HTTPS API: `tls` carries the CA to trust and the
/// caller's certificate (mutual TLS); redirects are not followed.
///
/// # Errors
/// When the HTTP client cannot be built.
pub fn client(tls: &std::sync::Arc<rustls::ClientConfig>) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .use_preconfigured_tls(rustls::ClientConfig::clone(tls))
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// How long in-flight requests may finish after shutdown is asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a new connection may take to send its first request.
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `listen` and serves `router` on it (over HTTPS when `tls` is given) on `tracker` until
/// `cancel` fires, then lets in-flight requests finish for [`SHUTDOWN_GRACE`]. `name` names the
/// listener in logs. Returns the bound address.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(
    name: &'static str,
    listen: SocketAddr,
    tls: Option<ServerTls>,
    router: Router,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let listener = listener.into_std()?;
    let handle = axum_server::Handle::new();
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    let https = tls.is_some();
    let mut serving: Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> = match tls {
        Some(tls) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_config(tls.config);
            let server = axum_server::tls_rustls::from_tcp_rustls(listener, config)?;
            Box::pin(server.handle(handle.clone()).first_request_timeout(FIRST_REQUEST_TIMEOUT).serve(service))
        }
        None => {
            let server = axum_server::from_tcp(listener)?;
            Box::pin(server.handle(handle.clone()).first_request_timeout(FIRST_REQUEST_TIMEOUT).serve(service))
        }
    };
    tracker.spawn(async move {
        let result = tokio::select! {
            result = &mut serving => result,
            () = cancel.cancelled() => {
                handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
                serving.await
            }
        };
        match result {
            Ok(()) => tracing::info!(%addr, name, "listener stopped"),
            Err(error) => tracing::error!(%addr, name, %error, "listener failed"),
        }
    });
    tracing::info!(%addr, name, https, "listening");
    Ok(addr)
}
