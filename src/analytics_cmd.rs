//! `passage analytics serve|export`: the analytics service on its own (ingest from a broker,
//! reports, dashboard), and the partitioned Parquet export of its database.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use passage_analytics::{AnalyticsOptions, Store};
use passage_transport::ServerTls;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ConfigArg;

/// `passage analytics ...`.
#[derive(Debug, Subcommand)]
pub enum AnalyticsCommand {
    /// Run the analytics service: ingest noised counts from the broker into DuckDB, serve the
    /// reports, the API and the dashboard. Stops on Ctrl-C or SIGTERM.
    Serve(ServeArgs),
    /// Write the database as a Hive-partitioned Parquet dataset (venue=V/day=YYYY-MM-DD/)
    /// that DuckDB, Spark or Trino can query.
    Export(ExportArgs),
}

/// Options of `passage analytics serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[command(flatten)]
    broker: crate::service::BrokerArg,
    /// The DuckDB database file (created when absent).
    #[arg(long, default_value = "analytics.duckdb")]
    db: PathBuf,
    /// Listen address of the API and dashboard (default: the configuration's).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Serve plain HTTP (behind a TLS-terminating proxy, or on loopback in tests) instead of
    /// HTTPS with a fresh self-signed certificate.
    #[arg(long)]
    plain_http: bool,
    /// MQTT client id (several workers sharing the load need different ones).
    #[arg(long, default_value = "analytics")]
    client_id: String,
    /// The audit store the DPO page verifies and records sign-offs in (one writer process per
    /// store). Without it the page shows the DPIA and the register, and sign-off answers 503.
    #[arg(long, value_name = "DIR")]
    audit_store: Option<PathBuf>,
    /// Staff accounts file (`passage accounts add`): every page and API then needs a login
    /// (password and TOTP code) and is scoped to the account's venues and role.
    #[arg(long, value_name = "FILE")]
    accounts: Option<PathBuf>,
}

/// Options of `passage analytics export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The DuckDB database file.
    #[arg(long)]
    db: PathBuf,
    /// Output directory (created; existing files with the same names are replaced).
    #[arg(long)]
    out: PathBuf,
    /// Only intervals starting at or after this time (seconds since the Unix epoch).
    #[arg(long)]
    from: Option<i64>,
    /// Only intervals starting before this time.
    #[arg(long)]
    to: Option<i64>,
}

/// Runs an analytics command.
pub fn run(command: &AnalyticsCommand) -> anyhow::Result<()> {
    match command {
        AnalyticsCommand::Serve(args) => crate::runtime()?.block_on(serve(args)),
        AnalyticsCommand::Export(args) => export(args),
    }
}

fn export(args: &ExportArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.db.exists(), "no database at {}", args.db.display());
    let range = match (args.from, args.to) {
        (None, None) => None,
        (from, to) => Some((from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX))),
    };
    let store = Store::open(&args.db).with_context(|| format!("cannot open {}", args.db.display()))?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let rows = store.export_partitioned(&args.out, range).context("export failed")?;
    println!("{}", serde_json::json!({ "rows": rows, "out": args.out }));
    Ok(())
}

async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let config = Arc::new(args.config.load()?);
    let broker = args.broker.addr(&config)?;
    let listen = match args.listen {
        Some(listen) => listen,
        None => config.http.analytics.parse().context("the configuration's http.analytics is not an address")?,
    };
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let bus = crate::service::connect_bus(broker, args.client_id.clone(), None, cancel.child_token(), &tracker)
        .await
        .context("analytics cannot reach the broker")?;
    let tls =
        if args.plain_http { None } else { Some(ServerTls::self_signed().context("cannot create a certificate")?) };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let audit = match &args.audit_store {
        Some(dir) => Some(std::sync::Arc::new(
            passage_policy::audit::AuditLog::open(dir)
                .with_context(|| format!("cannot open the audit store {}", dir.display()))?,
        )),
        None => None,
    };
    let analytics = passage_analytics::start(
        AnalyticsOptions { db_path: args.db.clone(), listen, tls, audit, accounts: args.accounts.clone() },
        config,
        bus,
        cancel.child_token(),
        &tracker,
    )
    .await
    .context("cannot start analytics")?;
    println!("analytics listening on {scheme}://{}/", analytics.addr);
    crate::wait_for_shutdown().await;
    crate::service::stop(&cancel, &tracker).await;
    println!("{}", serde_json::json!({ "ingest": analytics.stats.snapshot() }));
    Ok(())
}
