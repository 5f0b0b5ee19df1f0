//! `passage matcher serve`: the encrypted matcher on its own (a venue's cloud or a server room):
//! persistent galleries per venue, MQTT request/response through the broker and, with a device
//! CA, the HTTPS API behind client certificates. It holds ciphertexts only.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use passage_fhe::Params;
use passage_matcher::{Matcher, MatcherOptions};
use passage_transport::ClientAuth;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::service::{connect_bus, stop, Pki};
use crate::ConfigArg;

/// `passage matcher ...`.
#[derive(Debug, Subcommand)]
pub enum MatcherCommand {
    /// Run the matcher: load every venue's gallery, answer enrolment, match and erasure
    /// requests over MQTT (and HTTPS with `--pki`). Stops on Ctrl-C or SIGTERM.
    Serve(ServeArgs),
}

/// Options of `passage matcher serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[command(flatten)]
    broker: crate::service::BrokerArg,
    /// Directory of the galleries, one file per venue (default: {deployment.data_dir}/galleries).
    #[arg(long, value_name = "DIR")]
    galleries: Option<PathBuf>,
    /// The device CA directory (`passage pki init`, then `passage pki issue service:matcher`
    /// and `passage pki server --name matcher`): the broker is reached over mTLS as
    /// `service:matcher`, and the HTTPS API is served, requiring client certificates of this CA.
    #[arg(long, value_name = "DIR")]
    pki: Option<PathBuf>,
    /// Listen address of the HTTPS API (default: the configuration's `http.matcher`; needs
    /// `--pki`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// MQTT client id.
    #[arg(long, default_value = "matcher")]
    client_id: String,
}

/// Runs a matcher command.
pub fn run(command: &MatcherCommand) -> anyhow::Result<()> {
    match command {
        MatcherCommand::Serve(args) => crate::runtime()?.block_on(serve(args)),
    }
}

async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let gallery_dir = match (&args.galleries, &config.deployment.data_dir) {
        (Some(dir), _) => dir.clone(),
        (None, Some(data)) => data.join("galleries"),
        (None, None) => bail!("give --galleries DIR, or set deployment.data_dir in the configuration"),
    };
    if args.listen.is_some() && args.pki.is_none() {
        bail!("--listen needs --pki: the HTTPS API requires client certificates of the device CA");
    }
    let pki = args.pki.as_ref().map(Pki::open).transpose()?;
    let broker = args.broker.addr(&config)?;
    let venues: Vec<_> = config.venues.iter().map(|v| v.id.clone()).collect();
    let options = MatcherOptions {
        gallery_dir: gallery_dir.clone(),
        params: Params::DEFAULT,
        threads: config.matching.threads,
        queue: config.matching.queue,
    };

    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    eprintln!("loading the galleries of {} venue(s) from {}...", venues.len(), gallery_dir.display());
    let matcher =
        Matcher::start(&options, &venues, cancel.child_token(), &tracker).context("cannot start the matcher")?;
    for venue in &venues {
        let templates = matcher.gallery_len(venue).unwrap_or(0);
        println!("venue {venue}: {templates} encrypted template(s)");
    }
    let tls = pki.as_ref().map(|p| p.client("service:matcher")).transpose()?;
    let bus = connect_bus(broker.clone(), args.client_id.clone(), tls, cancel.child_token(), &tracker)
        .await
        .with_context(|| format!("the matcher cannot reach the broker at {}:{}", broker.0, broker.1))?;
    matcher.serve_mqtt(&bus, cancel.child_token(), &tracker).await.context("the matcher cannot subscribe")?;
    println!("matcher answering on the broker {}:{}", broker.0, broker.1);
    if let Some(pki) = &pki {
        let listen = match args.listen {
            Some(listen) => listen,
            None => config.http.matcher.parse().context("the configuration's http.matcher is not an address")?,
        };
        let tls = pki.server_tls("server:matcher", ClientAuth::Required)?;
        let addr = passage_matcher::serve(listen, tls, matcher.clone(), cancel.child_token(), &tracker)
            .await
            .context("cannot serve the matcher API")?;
        println!("matcher API on https://{addr}/api/v1/health (client certificate required)");
    }
    crate::wait_for_shutdown().await;
    stop(&cancel, &tracker).await;
    println!("{}", matcher.stats().snapshot());
    Ok(())
}
