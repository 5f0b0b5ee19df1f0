//! `passage pki`: the device certificate authority (one client certificate per gate, camera,
//! edge agent and service; server certificates; revocation), the Mosquitto ACL generated from
//! the same topic rules, and `passage pki broker`, the embedded broker behind the mTLS device
//! gateway.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use passage_policy::devices::{mosquitto_acl, Principal};
use passage_policy::pki::{PkiDir, Subject};
use passage_transport::{EmbeddedBroker, Gateway, GatewayEvent, GatewayOptions};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::service::now_secs;

/// PKI commands.
#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create the certificate authority (CA key, certificate, empty index and CRL).
    Init {
        #[command(flatten)]
        dir: DirArg,
        /// The CA's common name.
        #[arg(long, default_value = "Passage device CA")]
        name: String,
    },
    /// Issue a client certificate for a device or service: camera:VENUE/CAMERA,
    /// gate:VENUE/GATE, edge:VENUE, service:matcher or service:analytics.
    Issue {
        #[command(flatten)]
        dir: DirArg,
        /// The principal.
        principal: String,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Issue a server certificate (device gateway, HTTPS services).
    Server {
        #[command(flatten)]
        dir: DirArg,
        /// A short name (`broker`, `matcher`).
        #[arg(long)]
        name: String,
        /// A DNS name or IP address it answers on (repeat for several).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Revoke every valid certificate with this serial or principal, and rewrite the CRL.
    Revoke {
        #[command(flatten)]
        dir: DirArg,
        /// Serial (hex) or principal.
        which: String,
    },
    /// List issued certificates.
    List {
        #[command(flatten)]
        dir: DirArg,
    },
    /// Issue a fresh CRL (the CRL is valid for 30 days).
    Crl {
        #[command(flatten)]
        dir: DirArg,
    },
    /// Write the Mosquitto ACL file of every valid device certificate (for a Mosquitto
    /// broker with `require_certificate true` and `use_identity_as_username true`).
    Acl {
        #[command(flatten)]
        dir: DirArg,
        /// Output file (stdout when absent).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run the embedded MQTT broker on loopback behind the device gateway: mTLS with the
    /// CA's certificates, the CRL and the topic rules enforced; revocations apply at once.
    Broker(BrokerArgs),
}

/// The PKI directory.
#[derive(Debug, Args)]
pub struct DirArg {
    /// The PKI directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

/// Options of `passage pki broker`.
#[derive(Debug, Args)]
pub struct BrokerArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Where devices connect.
    #[arg(long, default_value = "127.0.0.1:8883")]
    listen: SocketAddr,
    /// The gateway's server certificate (from `passage pki server`).
    #[arg(long)]
    cert: PathBuf,
    /// Its key.
    #[arg(long)]
    key: PathBuf,
}

fn date(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .map(|t| format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()))
        .unwrap_or_else(|_| secs.to_string())
}

/// Runs a PKI command.
pub fn run(command: &PkiCommand) -> anyhow::Result<()> {
    match command {
        PkiCommand::Init { dir, name } => {
            let pki = PkiDir::new(&dir.dir);
            pki.init(name, now_secs())?;
            println!("certificate authority {name:?} created in {}", dir.dir.display());
            println!("  trust anchor: {} (install on every device and service)", pki.ca_cert_path().display());
            println!("  CA key:       {} (mode 0600; keep it offline after issuing)", dir.dir.join("ca.key").display());
            Ok(())
        }
        PkiCommand::Issue { dir, principal, days } => {
            let principal = Principal::parse(principal)?;
            issue(&dir.dir, &Subject::Device(principal), *days)
        }
        PkiCommand::Server { dir, name, hosts, days } => {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                bail!("--name {name:?}: use letters, digits, '-' and '_'");
            }
            issue(&dir.dir, &Subject::Server { name: name.clone(), hosts: hosts.clone() }, *days)
        }
        PkiCommand::Revoke { dir, which } => {
            let revoked = PkiDir::new(&dir.dir).revoke(which, now_secs())?;
            for cert in &revoked {
                println!("revoked {} ({})", cert.serial, cert.subject);
            }
            println!("CRL rewritten: {}", PkiDir::new(&dir.dir).crl_path().display());
            Ok(())
        }
        PkiCommand::List { dir } => {
            let index = PkiDir::new(&dir.dir).index()?;
            let now = now_secs();
            println!("{:<34} {:<34} {:<10} {:<10} status", "serial", "subject", "issued", "expires");
            for cert in &index.certs {
                let status = match cert.revoked_at {
                    Some(at) => format!("revoked {}", date(at)),
                    None if now > cert.not_after => "expired".into(),
                    None => "valid".into(),
                };
                println!(
                    "{:<34} {:<34} {:<10} {:<10} {status}",
                    cert.serial,
                    cert.subject,
                    date(cert.issued_at),
                    date(cert.not_after)
                );
            }
            Ok(())
        }
        PkiCommand::Crl { dir } => {
            let pki = PkiDir::new(&dir.dir);
            pki.renew_crl(now_secs())?;
            println!("CRL renewed: {}", pki.crl_path().display());
            Ok(())
        }
        PkiCommand::Acl { dir, out } => {
            let index = PkiDir::new(&dir.dir).index()?;
            let now = now_secs();
            let principals: Vec<Principal> = index.certs.iter().filter_map(|c| c.valid_principal(now)).collect();
            let acl = mosquitto_acl(&principals);
            match out {
                Some(path) => {
                    std::fs::write(path, acl).with_context(|| format!("cannot write {}", path.display()))?;
                    println!("Mosquitto ACL for {} device(s) written to {}", principals.len(), path.display());
                }
                None => print!("{acl}"),
            }
            Ok(())
        }
        PkiCommand::Broker(args) => crate::runtime()?.block_on(broker(args)),
    }
}

fn issue(dir: &std::path::Path, subject: &Subject, days: u32) -> anyhow::Result<()> {
    if days == 0 || days > 3650 {
        bail!("--days {days}: between 1 and 3650");
    }
    let serial: [u8; 16] = rand::random();
    let (cert, key, record) = PkiDir::new(dir).issue(subject, now_secs(), days, serial)?;
    println!("issued {} to {}, valid until {}", record.serial, record.subject, date(record.not_after));
    println!("  certificate: {}", cert.display());
    println!("  key:         {} (mode 0600; move it to the device)", key.display());
    println!("  sha256:      {}", record.fingerprint);
    Ok(())
}

async fn broker(args: &BrokerArgs) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    // The broker itself listens on a loopback port only the gateway uses.
    let broker = tokio::task::spawn_blocking(|| EmbeddedBroker::start(0))
        .await
        .context("broker thread")?
        .context("cannot start the embedded broker")?;
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let options = GatewayOptions {
        listen: args.listen,
        upstream: broker.addr(),
        pki: args.dir.dir.clone(),
        server_cert: args.cert.clone(),
        server_key: args.key.clone(),
    };
    let gateway = Gateway::start(options, Some(events_tx), cancel.child_token(), &tracker)
        .await
        .context("cannot start the device gateway")?;
    println!("device gateway on {} (mTLS; CA and CRL in {})", gateway.local_addr(), args.dir.dir.display());
    tracker.spawn(async move {
        while let Some(event) = events.recv().await {
            if let GatewayEvent::Connected { principal } = event {
                tracing::info!(%principal, "device connected");
            }
        }
    });
    crate::wait_for_shutdown().await;
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    Ok(())
}
