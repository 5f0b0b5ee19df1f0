//! The analytics service: ingests the differentially private count records that cameras
//! publish, keeps them in an embedded DuckDB database, and serves a JSON API and a
//! server-rendered dashboard for venue managers.
//!
//! Three parts, each in its own module:
//! * [`Store`]: the DuckDB file. Idempotent by record id, versioned schema, and a quarantine
//!   table that records *why* a message was refused (never the message itself).
//! * the ingest task ([`spawn_ingest`]): an MQTT 5 shared subscription on every venue's count
//!   topic; decodes, validates against the [`passage_config::Config`], batches (up to
//!   1000 records or 200 ms) and commits each batch in one transaction on a blocking thread.
//! * the HTTP side ([`app`], [`serve`]): axum routes under `/api/v1` and a dashboard at `/`,
//!   served over HTTPS when TLS material is given.
//!
//! [`start`] wires the three together; the `passage` binary calls it.
//!
//! Everything stored or shown here is already noised on the edge: raw counts never reach this
//! crate. Sums of noised values carry the standard deviation of the summed noise,
//! `sqrt(sum of variances)`, because the per-interval noises are independent.
//!
//! The DuckDB connection is blocking: it is only used inside `spawn_blocking` and never held
//! across an `.await`.
#![deny(missing_docs)]

pub mod alerts;
pub mod compute;
mod http;
mod ingest;
pub mod reports;
pub mod retention;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use passage_transport::{Bus, BusError, ServerTls};
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use http::auth::{LOGINS_PER_ADDRESS, LOGIN_WINDOW_SECS};
pub use http::{app, serve, ApiError, AppState};
pub use ingest::{spawn_ingest, IngestCounts, IngestStats, MAX_BATCH};
pub use store::{
    AlertEntry, CodeBook, InsertOutcome, LineTotal, Point, PreparedBatch, QuarantineCount, Store, StoredRecord,
    Summary, SweepEntry, VenueSummary, ZoneLevel, SCHEMA_VERSION,
};

/// Why the analytics service or one of its parts failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AnalyticsError {
    /// A database operation failed; `context` says which.
    #[error("database error while trying to {context}: {source}")]
    Database {
        /// What was being done.
        context: &'static str,
        /// What DuckDB reported.
        #[source]
        source: duckdb::Error,
    },
    /// The database file was written by a newer version of Passage.
    #[error("the analytics database has schema version {found}; this build supports up to {supported}")]
    SchemaTooNew {
        /// Version found in the file.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// A stored value does not have the shape this build writes (the file was edited by hand
    /// or is damaged).
    #[error("the analytics database holds an unexpected {what}")]
    Corrupt {
        /// What was unexpected.
        what: &'static str,
    },
    /// A batch could not be laid out as Arrow columns for the appender.
    #[error("cannot lay out a batch of count records: {reason}")]
    Batch {
        /// What Arrow reported.
        reason: String,
    },
    /// A report could not be computed from the stored figures.
    #[error("cannot compute the {report} report: {reason}")]
    Report {
        /// Which report.
        report: &'static str,
        /// What Polars reported.
        reason: String,
    },
    /// An export file could not be written or read back.
    #[error("cannot write an export: {source}")]
    Export {
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// A blocking database task panicked or was cancelled.
    #[error("the database worker thread failed: {0}")]
    Worker(String),
    /// Subscribing to the count topics failed.
    #[error("cannot subscribe to count records: {0}")]
    Subscribe(#[source] BusError),
    /// The HTTP listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address asked for.
        addr: SocketAddr,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// The accounts file could not be read.
    #[error("cannot read the accounts file {path}: {source}")]
    Accounts {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl AnalyticsError {
    /// A closure that wraps a DuckDB error with what was being done, for `map_err`.
    pub(crate) fn db(context: &'static str) -> impl FnOnce(duckdb::Error) -> AnalyticsError {
        move |source| AnalyticsError::Database { context, source }
    }
}

/// Where the analytics service keeps its data and listens.
#[derive(Debug, Clone)]
pub struct AnalyticsOptions {
    /// The DuckDB database file (created with its schema when absent).
    pub db_path: PathBuf,
    /// Address of the HTTP(S) listener; port 0 picks a free port.
    pub listen: SocketAddr,
    /// TLS material: HTTPS when given, plain HTTP otherwise (tests, or behind a terminating
    /// proxy).
    pub tls: Option<ServerTls>,
    /// The deployment's audit log: the DPO page verifies it and appends sign-offs to it.
    pub audit: Option<Arc<passage_policy::audit::AuditLog>>,
    /// Staff accounts file (`passage accounts`): when given, every page and API needs a login
    /// and is scoped to the account's venues and role.
    pub accounts: Option<PathBuf>,
}

/// A running analytics service.
#[derive(Debug)]
pub struct Analytics {
    /// The address the HTTP(S) listener is bound to.
    pub addr: SocketAddr,
    /// Live ingest counters.
    pub stats: Arc<IngestStats>,
}

/// Opens (or creates) the database, subscribes to every venue's count records on `bus` and
/// starts the HTTP(S) listener. Both tasks run on `tracker` and stop when `cancel` fires: the
/// ingest task commits its pending batch first, the listener finishes in-flight requests.
pub async fn start(
    options: AnalyticsOptions,
    config: Arc<passage_config::Config>,
    bus: Bus,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Result<Analytics, AnalyticsError> {
    let db_path = options.db_path.clone();
    let (ingest_store, http_store, alert_store, sweep_store) = tokio::task::spawn_blocking(move || {
        let store = Store::open(&db_path)?;
        let reader = store.try_clone()?;
        let alerts = store.try_clone()?;
        let sweeper = store.try_clone()?;
        Ok::<_, AnalyticsError>((store, reader, alerts, sweeper))
    })
    .await
    .map_err(|error| AnalyticsError::Worker(error.to_string()))??;
    tracing::info!(db = %options.db_path.display(), "analytics database open");

    let stats = Arc::new(IngestStats::default());
    spawn_ingest(&bus, config.clone(), ingest_store, stats.clone(), cancel.child_token(), tracker).await?;

    let board = Arc::new(alerts::AlertBoard::default());
    alerts::spawn_alerts(Some(bus.clone()), config.clone(), alert_store, board.clone(), cancel.child_token(), tracker);
    retention::spawn_sweeper(config.clone(), sweep_store, options.audit.clone(), cancel.child_token(), tracker);

    let auth = match options.accounts {
        Some(path) => Some(Arc::new(
            http::auth::Auth::load(path.clone()).map_err(|source| AnalyticsError::Accounts { path, source })?,
        )),
        None => None,
    };
    let state =
        AppState::new(config, http_store, stats.clone()).with_alerts(board).with_audit(options.audit).with_auth(auth);
    let addr = serve(options.listen, options.tls, state, cancel.child_token(), tracker).await?;
    Ok(Analytics { addr, stats })
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use passage_transport::{BusConfig, EmbeddedBroker, QoS};
    use passage_wire::{CountItem, CountRecord, Direction, Id, Metric, NoiseMechanism};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn http_get(addr: SocketAddr, path: &str) -> String {
        let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        socket.write_all(request.as_bytes()).await.expect("write");
        let mut response = String::new();
        socket.read_to_string(&mut response).await.expect("read");
        response
    }

    /// The whole service on loopback: a camera publishes through the broker, the ingest
    /// connection stores, the HTTP connection reads it back; cancelling stops everything.
    #[tokio::test]
    async fn start_ingests_and_serves() {
        let broker = EmbeddedBroker::start(0).expect("broker");
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let bus_config = |client: &str| BusConfig {
            host: broker.addr().ip().to_string(),
            port: broker.addr().port(),
            client_id: client.into(),
        };
        let bus = Bus::connect(bus_config("analytics-start"), cancel.clone(), &tracker).await.expect("connect");
        let camera = Bus::connect(bus_config("camera-start"), cancel.clone(), &tracker).await.expect("connect");
        let dir = tempfile::tempdir().expect("temp dir");
        let options = AnalyticsOptions {
            db_path: dir.path().join("analytics.duckdb"),
            listen: "127.0.0.1:0".parse().expect("addr"),
            tls: None,
            audit: None,
            accounts: None,
        };
        let analytics = start(options, Arc::new(passage_config::Config::default()), bus, cancel.clone(), &tracker)
            .await
            .expect("start");
        tokio::time::sleep(Duration::from_millis(200)).await;

        let venue = Id::new("arena").expect("id");
        let cam = Id::new("cam-east").expect("id");
        let record = CountRecord {
            v: 1,
            id: "start-test-1".into(),
            venue: venue.clone(),
            camera: cam.clone(),
            start: now_unix() - 120,
            secs: 60,
            mechanism: NoiseMechanism::DiscreteLaplace,
            epsilon: 0.1,
            items: vec![CountItem {
                metric: Metric::Crossings { line: Id::new("east-gate").expect("id"), dir: Direction::Out },
                value: 17,
                std: 3.0,
            }],
        };
        camera
            .publish(&passage_wire::topics::counts(&venue, &cam), QoS::AtLeastOnce, record.encode())
            .await
            .expect("publish");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while analytics.stats.snapshot().inserted < 1 {
            assert!(tokio::time::Instant::now() < deadline, "not ingested: {:?}", analytics.stats.snapshot());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let response = http_get(analytics.addr, "/api/v1/venues/arena/totals").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains(r#"{"line":"east-gate","dir":"out","value":17,"std":3.0,"items":1}"#), "{response}");

        cancel.cancel();
        tracker.close();
        tokio::time::timeout(Duration::from_secs(15), tracker.wait()).await.expect("everything stops on cancel");
    }
}
