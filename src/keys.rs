//! `passage keys`: the key holder's encrypted key store — create, rotate, destroy.
//!
//! The passphrase that protects the store comes from `PASSAGE_KEY_PASSPHRASE` (and, for a
//! rotation that also changes it, `PASSAGE_NEW_KEY_PASSPHRASE`), never from the command line,
//! where it would land in shell history and process listings.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use passage_config::{Config, MatchingMode};
use passage_edge::keyholder::rotate_key;
use passage_edge::keystore::KeyStore;
use passage_transport::{Bus, BusConfig};
use passage_wire::Id;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use zeroize::Zeroizing;

use crate::ConfigArg;

/// Key store commands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a venue's FHE secret key, encrypted at rest under the passphrase.
    Init(VenueArgs),
    /// Replace a venue's key: erase its templates at the matcher (subjects re-enrol), write a
    /// new key over the old one, publish a new decision key when a gate uses decision mode.
    Rotate(VenueArgs),
    /// Destroy a venue's key (every template made under it becomes unreadable for good).
    Destroy(VenueArgs),
}

/// Options shared by the key commands.
#[derive(Debug, Args)]
pub struct VenueArgs {
    /// The venue whose key this is.
    #[arg(long)]
    venue: String,
    #[command(flatten)]
    config: ConfigArg,
}

pub(crate) fn passphrase(var: &str) -> anyhow::Result<Zeroizing<String>> {
    match std::env::var(var) {
        Ok(value) => Ok(Zeroizing::new(value)),
        Err(_) => bail!("set {var} to the key store passphrase (at least 12 characters)"),
    }
}

pub(crate) fn store(config: &Config) -> anyhow::Result<KeyStore> {
    let Some(data) = &config.deployment.data_dir else {
        bail!("the configuration has no deployment.data_dir; the key store lives in {{data_dir}}/keys");
    };
    KeyStore::open(&data.join("keys")).context("cannot open the key store")
}

/// Runs a key command.
pub fn run(command: &KeysCommand) -> anyhow::Result<()> {
    let (VenueArgs { venue, config }, action) = match command {
        KeysCommand::Init(a) => (a, "init"),
        KeysCommand::Rotate(a) => (a, "rotate"),
        KeysCommand::Destroy(a) => (a, "destroy"),
    };
    let config = config.load()?;
    let venue = Id::new(venue).with_context(|| format!("invalid venue id `{venue}`"))?;
    let Some(venue_config) = config.venues.iter().find(|v| v.id == venue) else {
        bail!("venue `{venue}` is not in the configuration");
    };
    let store = store(&config)?;
    let params = passage_fhe::Params::DEFAULT;
    match action {
        "init" => {
            store.create(&venue, params, &passphrase("PASSAGE_KEY_PASSPHRASE")?)?;
            println!("created {}", store.path(&venue).display());
        }
        "destroy" => {
            store.destroy(&venue)?;
            println!("destroyed the key of venue `{venue}`; templates made under it can no longer be used");
        }
        _ => {
            let old = passphrase("PASSAGE_KEY_PASSPHRASE")?;
            let new = match std::env::var("PASSAGE_NEW_KEY_PASSPHRASE") {
                Ok(value) => Zeroizing::new(value),
                Err(_) => old.clone(),
            };
            let decision =
                venue_config.gates.iter().any(|g| g.matching.unwrap_or(config.matching.mode) == MatchingMode::Decision);
            let rt = crate::runtime()?;
            let rotation = rt.block_on(async {
                let cancel = CancellationToken::new();
                let tracker = TaskTracker::new();
                let bus_config = BusConfig {
                    host: config.broker.host.clone(),
                    port: config.broker.port,
                    client_id: format!("passage-keys-{}", std::process::id()),
                };
                let bus =
                    Bus::connect(bus_config, cancel.clone(), &tracker).await.context("cannot reach the broker")?;
                eprintln!("erasing the venue's templates at the matcher, then replacing the key...");
                let outcome =
                    rotate_key(&store, &venue, params, &old, &new, config.matching.threshold, decision, &bus).await;
                cancel.cancel();
                tracker.close();
                let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
                outcome.context("rotation failed (the old key is still in place if no key was replaced)")
            })?;
            println!(
                "rotated the key of venue `{venue}`: {} template(s) erased (those subjects must enrol again){}",
                rotation.erased,
                if rotation.decision_key_published { "; new decision key published" } else { "" }
            );
        }
    }
    Ok(())
}
