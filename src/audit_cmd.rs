//! `passage audit`: verify the tamper-evident audit log, or list its entries.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use passage_policy::audit;

use crate::ConfigArg;

/// Audit log commands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the whole hash chain and every signed checkpoint. Exits 0 printing the number of
    /// verified entries, or non-zero naming the first bad entry.
    Verify(StoreArgs),
    /// Print entries as JSON lines, oldest first.
    Show {
        #[command(flatten)]
        store: StoreArgs,
        /// Only entries whose action starts with this (`dpia.`, `match.`, ...).
        #[arg(long)]
        action: Option<String>,
        /// Only entries about this venue.
        #[arg(long)]
        venue: Option<String>,
        /// At most this many (the latest).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// Where the log is.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The audit store directory (default: `{deployment.data_dir}/audit` of the configuration).
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Verify against this public key (hex, a copy of the store's `signing.pub` kept where
    /// the log's writer cannot change it) instead of the store's own.
    #[arg(long, value_name = "FILE")]
    public_key: Option<PathBuf>,
    #[command(flatten)]
    config: ConfigArg,
}

impl StoreArgs {
    fn dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.store {
            return Ok(dir.clone());
        }
        let config = self.config.load()?;
        match config.deployment.data_dir {
            Some(data) => Ok(data.join("audit")),
            None => bail!("give --store DIR, or a configuration whose deployment.data_dir holds the audit store"),
        }
    }
}

/// Runs an audit command.
pub fn run(command: &AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify(args) => {
            let dir = args.dir()?;
            if !dir.join("audit.jsonl").exists() && !dir.join("signing.pub").exists() {
                bail!("{} holds no audit log", dir.display());
            }
            let key = args.public_key.as_deref().map(audit::read_public_key).transpose()?;
            let verified = audit::verify(&dir, key.as_deref())?;
            println!(
                "audit log {}: {} entries verified, {} checkpoints covering the first {}, head {}",
                dir.display(),
                verified.entries,
                verified.checkpoints,
                verified.signed_through,
                verified.head
            );
            if verified.pruned > 0 {
                println!(
                    "retention: the first {} entries were pruned behind a signed base; the {} kept verify from it",
                    verified.pruned,
                    verified.entries - verified.pruned
                );
            }
            if verified.signed_through < verified.entries {
                println!(
                    "note: the last {} entries are not yet covered by a signed checkpoint (the writer is running)",
                    verified.entries - verified.signed_through
                );
            }
            Ok(())
        }
        AuditCommand::Show { store, action, venue, limit } => {
            let dir = store.dir()?;
            let entries = audit::read(&dir, *limit, |e| {
                action.as_deref().is_none_or(|a| e.event.action.starts_with(a))
                    && venue.as_deref().is_none_or(|v| e.event.venue.as_deref() == Some(v))
            })?;
            for entry in entries {
                println!("{}", serde_json::to_string(&entry).context("cannot print an entry")?);
            }
            Ok(())
        }
    }
}
