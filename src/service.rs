//! What the standalone services and the demo share: the device PKI's files (client and
//! server TLS of a principal), the broker address, the bus connection and the shutdown.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use passage_config::Config;
use passage_policy::pki::PkiDir;
use passage_transport::{client_config, ClientAuth, PkiPem};
use passage_transport::{Bus, BusConfig, ServerTls};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// A device CA directory (`passage pki init`) and the certificates issued in it.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The directory.
    pub dir: PkiDir,
}

impl Pki {
    /// The CA in `dir`, which must exist.
    pub fn open(dir: impl Into<PathBuf>) -> anyhow::Result<Pki> {
        let dir = PkiDir::new(dir);
        anyhow::ensure!(
            dir.ca_cert_path().exists(),
            "no CA in {} (create it with `passage pki init --dir {}`)",
            dir.dir().display(),
            dir.dir().display()
        );
        Ok(Pki { dir })
    }

    /// The files of the newest valid certificate of `subject`.
    pub fn paths(&self, subject: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
        self.dir.current(subject, now_secs())?.with_context(|| {
            format!("no valid certificate for {subject} in {} (passage pki issue)", self.dir.dir().display())
        })
    }

    fn pem(&self, subject: &str) -> anyhow::Result<PkiPem> {
        let (cert, key) = self.paths(subject)?;
        Ok(PkiPem::load(&self.dir, &cert, &key)?)
    }

    /// Client TLS (mTLS towards the device gateway or a broker) as `principal`.
    pub fn client(&self, principal: &str) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        let pem = self.pem(principal)?;
        Ok(client_config(&pem.ca, Some((&pem.cert, &pem.key)))?)
    }

    /// The edge agent of `venue` as a client of the matcher's HTTPS API at `addr`, with its
    /// client certificate (`[matching] link = "https"`).
    pub fn https_matcher(
        &self,
        venue: &passage_wire::Id,
        addr: std::net::SocketAddr,
    ) -> anyhow::Result<passage_edge::keyholder::HttpsMatcher> {
        let client = passage_transport::https::client(&self.client(&format!("edge:{venue}"))?)
            .context("cannot build the matcher's HTTPS client")?;
        Ok(passage_edge::keyholder::HttpsMatcher::new(client, &format!("https://{addr}")))
    }

    /// Server TLS with the certificate of `subject` (`server:NAME`).
    pub fn server_tls(&self, subject: &str, auth: ClientAuth) -> anyhow::Result<ServerTls> {
        Ok(ServerTls::from_pki(&self.pem(subject)?, auth)?)
    }
}

/// The `--broker HOST:PORT` option of the commands that reach a broker.
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerArg {
    /// The MQTT broker, HOST:PORT (default: the configuration's broker).
    #[arg(long)]
    broker: Option<String>,
}

impl BrokerArg {
    /// The broker to use: `--broker` when given, else the configuration's.
    pub fn addr(&self, config: &Config) -> anyhow::Result<(String, u16)> {
        match &self.broker {
            Some(broker) => {
                let (host, port) = broker.rsplit_once(':').context("--broker must be HOST:PORT")?;
                anyhow::ensure!(!host.is_empty(), "--broker must be HOST:PORT");
                Ok((host.to_owned(), port.parse::<u16>().context("--broker must be HOST:PORT")?))
            }
            None => Ok((config.broker.host.clone(), config.broker.port)),
        }
    }
}

/// Connects to the broker, over mTLS when `tls` is given.
pub async fn connect_bus(
    (host, port): (String, u16),
    client_id: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<Bus> {
    let config = BusConfig { host, port, client_id };
    Ok(match tls {
        Some(tls) => Bus::connect_tls(config, tls, cancel, tracker).await?,
        None => Bus::connect(config, cancel, tracker).await?,
    })
}

/// Stops every task and waits for them (10 s at most).
pub async fn stop(cancel: &CancellationToken, tracker: &TaskTracker) {
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(10), tracker.wait()).await.is_err() {
        tracing::warn!("some tasks did not stop within 10 s");
    }
}
