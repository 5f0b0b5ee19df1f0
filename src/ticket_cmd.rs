//! `passage ticket`: the box office. Issues signed entry tickets with a venue's ticket key
//! (`{data_dir}/edge/tickets/{venue}.key`, created by `passage demo` or here) and checks
//! codes, so that a visitor can always enter without their face.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use passage_policy::access::{check_ticket, GateContext};
use passage_policy::tickets::Ticket;

use crate::service::now_secs;

/// Ticket commands.
#[derive(Debug, Subcommand)]
pub enum TicketCommand {
    /// Issue a ticket: prints its code (the QR code's text) and writes the QR code as PNG.
    Issue(IssueArgs),
    /// Verify a code with the venue's key and say whether it admits to a zone now.
    Check(CheckArgs),
}

/// Where the venue's ticket key lives.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// The data directory of the deployment (the demo's `--data-dir`).
    #[arg(long)]
    data_dir: PathBuf,
    /// The venue.
    #[arg(long)]
    venue: String,
}

/// `passage ticket issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// The ticket's identifier (default: a random one).
    #[arg(long)]
    id: Option<String>,
    /// A zone it admits to (repeat; none: every zone of the venue).
    #[arg(long = "zone")]
    zones: Vec<String>,
    /// Valid from, Unix seconds (default: now).
    #[arg(long)]
    from: Option<i64>,
    /// Valid for this many hours from `--from`.
    #[arg(long, default_value_t = 24)]
    hours: u32,
    /// Write the QR code here as PNG.
    #[arg(long)]
    png: Option<PathBuf>,
}

/// `passage ticket check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// The zone of the gate.
    #[arg(long)]
    zone: String,
    /// The code.
    code: String,
}

fn key_path(args: &KeyArgs) -> anyhow::Result<PathBuf> {
    let venue = passage_wire::Id::new(&args.venue).with_context(|| format!("{:?} is not a venue id", args.venue))?;
    Ok(args.data_dir.join("edge").join("tickets").join(format!("{venue}.key")))
}

/// Runs a ticket command.
pub fn run(command: &TicketCommand) -> anyhow::Result<()> {
    match command {
        TicketCommand::Issue(args) => {
            let path = key_path(&args.key)?;
            let key = passage_edge::gate::load_or_create_ticket_key(&path)
                .with_context(|| format!("cannot open the ticket key {}", path.display()))?;
            let from = args.from.unwrap_or_else(now_secs);
            let ticket = Ticket {
                id: args.id.clone().unwrap_or_else(|| format!("T-{:016x}", rand::random::<u64>())),
                venue: args.key.venue.clone(),
                zones: args.zones.clone(),
                not_before: from,
                not_after: from + i64::from(args.hours) * 3600,
            };
            let code = key.issue(&ticket).context("cannot issue this ticket")?;
            if let Some(png) = &args.png {
                let image = passage_edge::gate::qr::render_png(&code).context("cannot render the QR code")?;
                passage_policy::atomic_file::write(png, &image, passage_policy::atomic_file::Access::Public)
                    .with_context(|| format!("cannot write {}", png.display()))?;
                eprintln!("QR code written to {}", png.display());
            }
            println!("{code}");
            Ok(())
        }
        TicketCommand::Check(args) => {
            let path = key_path(&args.key)?;
            if !path.exists() {
                bail!("no ticket key at {}", path.display());
            }
            let key = passage_edge::gate::load_or_create_ticket_key(&path)
                .with_context(|| format!("cannot open the ticket key {}", path.display()))?;
            let ticket = key.verify(&args.code).context("the code does not verify")?;
            let ctx = GateContext {
                venue: &args.key.venue,
                zone: &args.zone,
                now: now_secs(),
                skew_secs: passage_edge::gate::GateSettings::default().skew_secs,
            };
            match check_ticket(&ticket, &ctx) {
                Ok(()) => println!("valid: admits to {} now", args.zone),
                Err(reason) => bail!("refused: {}", reason.code()),
            }
            Ok(())
        }
    }
}
