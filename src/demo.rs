//! `passage demo`: the whole data flow on one machine.
//!
//! Embedded MQTT 5 broker → matcher (encrypted galleries) and analytics (DuckDB) → simulated
//! edge agents per venue: a scene of people walking through lines and zones (counted, noised,
//! published) and visitors approaching gates (enrolled with consent, identified under FHE).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use passage_analytics::AnalyticsOptions;
use passage_config::MatchLink;
use passage_edge::agents::{self, CountingStats, GateStats, Governance};
use passage_edge::face::FaceStage;
use passage_edge::gate::kiosk::Kiosks;
use passage_edge::gate::{GateParts, GateSettings, Gates};
use passage_edge::keyholder::KeyHolder;
use passage_edge::portal::{Portal, PortalVenue};
use passage_edge::sim::Scene;
use passage_edge::spool::forward::{self, ForwardOptions};
use passage_fhe::Params;
use passage_matcher::{Matcher, MatcherOptions};
use passage_policy::audit::AuditLog;
use passage_policy::pki::{PkiDir, Subject};
use passage_transport::{ClientAuth, EmbeddedBroker, Gateway, GatewayEvent, GatewayOptions};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::service::{connect_bus, now_secs, stop, Pki};
use crate::ConfigArg;

/// Options of `passage demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Stop after this many seconds and print a final JSON summary line.
    #[arg(long, value_name = "SECONDS")]
    exit_after: Option<u64>,
    /// Release interval of the counting agents, in seconds (must divide a day). The demo uses
    /// short intervals so counts flow within seconds; the privacy guarantee per event does not
    /// depend on the interval length.
    #[arg(long, default_value_t = 10)]
    interval: u32,
    /// Simulated visitors enrolled per venue.
    #[arg(long, default_value_t = 24)]
    visitors: usize,
    /// Average arrivals of people per second in each venue's scene.
    #[arg(long, default_value_t = 1.0)]
    arrivals: f64,
    /// Seconds between simulated faces at the gates.
    #[arg(long, default_value_t = 2.0)]
    gate_every: f64,
    /// Directory for the galleries, the analytics database and the TLS certificate. Default:
    /// the configuration's data_dir, or a fresh temporary directory removed at exit.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Bind the broker and the HTTPS listeners to free ports instead of the configured ones.
    #[arg(long)]
    ephemeral_ports: bool,
    /// Staff accounts file (`passage accounts add`): the dashboard, the DPO page and their APIs
    /// then need a login (password and TOTP code), scoped to each account's venues and role.
    /// Without it they are open on loopback, as a demo.
    #[arg(long, value_name = "FILE")]
    accounts: Option<PathBuf>,
}

struct DataDir {
    path: PathBuf,
    remove_at_exit: bool,
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.remove_at_exit {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn with_port(addr: &str, ephemeral: bool) -> anyhow::Result<SocketAddr> {
    let mut addr: SocketAddr = addr.parse().with_context(|| format!("{addr:?} is not a socket address"))?;
    if ephemeral {
        addr.set_port(0);
    }
    Ok(addr)
}

/// Runs the demo until Ctrl-C or `--exit-after`.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mut config = args.config.load()?;
    if args.interval == 0 || 86_400 % args.interval != 0 {
        bail!("--interval must divide a day (86400 s); {} does not", args.interval);
    }
    if !(args.arrivals.is_finite() && args.arrivals >= 0.0 && args.arrivals <= 50.0) {
        bail!("--arrivals must be between 0 and 50 per second");
    }
    if !(args.gate_every.is_finite() && args.gate_every >= 0.05) {
        bail!("--gate-every must be at least 0.05 seconds");
    }
    config.privacy.interval_secs = args.interval;
    let config = Arc::new(config);

    let data = match args.data_dir.clone().or_else(|| config.deployment.data_dir.clone()) {
        Some(path) => DataDir { path, remove_at_exit: false },
        None => DataDir {
            path: std::env::temp_dir().join(format!("passage-demo-{}", std::process::id())),
            remove_at_exit: true,
        },
    };
    std::fs::create_dir_all(&data.path).with_context(|| format!("cannot create {}", data.path.display()))?;

    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();

    // Device identity: a CA in the data directory (kept across runs of the same directory)
    // with one client certificate per service and edge agent, and server certificates for the
    // device gateway and the HTTPS listeners.
    let pki = demo_pki(&data.path.join("pki"), &config)?;

    // Broker: the embedded broker listens on a loopback port that only the device gateway
    // uses; every party connects through the gateway with its client certificate, and the
    // gateway enforces each certificate's topic rules. An external broker is used as
    // configured, over mTLS with the same certificates when `broker.tls` is set (Mosquitto:
    // `passage pki acl` writes its ACL file).
    let mut gateway_events = None;
    let (broker_host, broker_port, tls_bus) = if config.broker.embedded {
        let broker = tokio::task::spawn_blocking(move || EmbeddedBroker::start(0))
            .await
            .context("broker start task failed")?
            .context("cannot start the embedded MQTT broker")?;
        let port = if args.ephemeral_ports { 0 } else { config.broker.port };
        let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
        gateway_events = Some(events_rx);
        let (server_cert, server_key) = pki.paths("server:broker")?;
        let options = GatewayOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            upstream: broker.addr(),
            pki: pki.dir.dir().to_owned(),
            server_cert,
            server_key,
        };
        let gateway = Gateway::start(options, Some(events_tx), cancel.child_token(), &tracker)
            .await
            .context("cannot start the device gateway")?;
        ("127.0.0.1".to_owned(), gateway.local_addr().port(), true)
    } else {
        (config.broker.host.clone(), config.broker.port, config.broker.tls)
    };
    let connect = |name: String, principal: String| {
        let broker = (broker_host.clone(), broker_port);
        let client_id = format!("{name}-{}", std::process::id());
        let tls = if tls_bus { Some(pki.client(&principal)) } else { None };
        let (cancel, tracker) = (cancel.child_token(), tracker.clone());
        async move { connect_bus(broker, client_id, tls.transpose()?, cancel, &tracker).await }
    };

    // TLS for the HTTPS listeners, with a server certificate of the CA: the matcher API
    // requires a client certificate (gates and edge agents), analytics accepts one but
    // serves browsers without.
    let matcher_tls = pki.server_tls("server:services", ClientAuth::Required)?;
    let tls = pki.server_tls("server:services", ClientAuth::Optional)?;
    let cert_path = pki.dir.ca_cert_path();

    // Matcher.
    let params = Params::DEFAULT;
    let venues: Vec<_> = config.venues.iter().map(|v| v.id.clone()).collect();
    let matcher_options = MatcherOptions {
        gallery_dir: data.path.join("galleries"),
        params,
        threads: config.matching.threads,
        queue: config.matching.queue,
    };
    let matcher = Matcher::start(&matcher_options, &venues, cancel.child_token(), &tracker)
        .context("cannot start the matcher")?;
    let matcher_bus =
        connect("matcher".into(), "service:matcher".into()).await.context("matcher cannot reach the broker")?;
    matcher.serve_mqtt(&matcher_bus, cancel.child_token(), &tracker).await.context("matcher cannot subscribe")?;
    let matcher_addr = passage_matcher::serve(
        with_port(&config.http.matcher, args.ephemeral_ports)?,
        matcher_tls,
        matcher.clone(),
        cancel.child_token(),
        &tracker,
    )
    .await
    .context("cannot serve the matcher API")?;

    // The tamper-evident audit log: consents, enrolments and gate decisions from the edge,
    // sign-offs from the DPO page.
    let audit = Arc::new(AuditLog::open(&data.path.join("audit")).context("cannot open the audit log")?);
    if let Some(events) = gateway_events {
        tracker.spawn(audit_gateway(events, audit.clone()));
    }

    // Analytics.
    let analytics_bus =
        connect("analytics".into(), "service:analytics".into()).await.context("analytics cannot reach the broker")?;
    let analytics = passage_analytics::start(
        AnalyticsOptions {
            db_path: data.path.join("analytics.duckdb"),
            listen: with_port(&config.http.analytics, args.ephemeral_ports)?,
            tls: Some(tls.clone()),
            audit: Some(audit.clone()),
            accounts: args.accounts.clone(),
        },
        config.clone(),
        analytics_bus,
        cancel.child_token(),
        &tracker,
    )
    .await
    .context("cannot start analytics")?;

    // Edge agents, one set per venue.
    let mut counting: Vec<Arc<CountingStats>> = Vec::new();
    let mut gates: Vec<Arc<GateStats>> = Vec::new();
    let mut portal_venues = std::collections::BTreeMap::new();
    // Consent evidence, encrypted per subject, and the consent registry rebuilt from it
    // against each venue's current notice; keys of subjects erased in the audit log are
    // destroyed again at open (a restored backup cannot bring them back).
    let notices = config.venues.iter().map(|v| (v.id.clone(), passage_dpia::privacy_notice(&config, v).version));
    let governance = Governance::open(&data.path.join("subjects"), audit.clone(), notices)?;
    if let Some(subjects) = &governance.subjects {
        passage_edge::retention::spawn_subject_sweeper(
            subjects.clone(),
            config.clone(),
            Some(audit.clone()),
            passage_edge::retention::SWEEP_EVERY,
            cancel.child_token(),
            &tracker,
        );
    }
    // The face chain, loaded once: the portal enrols with it (liveness is a gate check; an
    // enrolment photo is a photo) and the kiosks' gates probe with it (liveness as
    // configured). Without models the portal refuses registrations and the gates take
    // tickets only.
    let models = crate::models::models_dir(None);
    let load_faces = |liveness: bool| {
        let models = models.clone();
        let config =
            passage_vision::face::PipelineConfig { liveness, ..passage_edge::face::pipeline_config(&config.faces) };
        async move {
            match tokio::task::spawn_blocking(move || passage_vision::face::FacePipeline::load(&models, config)).await {
                Ok(Ok(pipeline)) => Some(pipeline),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "face models not loaded: registrations refused, gates take tickets only (passage models fetch)");
                    None
                }
                Err(error) => {
                    tracing::warn!(%error, "face model loading failed");
                    None
                }
            }
        }
    };
    let enrolment_faces = load_faces(false).await;
    let gate_faces = match (config.faces.min_liveness.is_some(), &enrolment_faces) {
        (false, faces) => faces.clone(),
        (true, None) => None,
        (true, Some(_)) => load_faces(true).await,
    };
    let stage_config = passage_edge::face::FaceStageConfig::from_config(&config.faces);
    // Evidence mode (off by default): the anonymiser that mosaics the kept frames.
    let anonymiser = if config.faces.evidence {
        let models = models.clone();
        let config = passage_vision::anonymize::AnonymizeConfig::default();
        match tokio::task::spawn_blocking(move || passage_vision::anonymize::Anonymiser::load(&models, config)).await {
            Ok(Ok(anonymiser)) => Some(Arc::new(anonymiser)),
            _ => {
                tracing::warn!(
                    "evidence mode is on but the face models are missing: no evidence is kept (passage models fetch)"
                );
                None
            }
        }
    } else {
        None
    };
    // Denial notices, in RAM for the longest denial-notice retention of any venue.
    let notice_hours = config.venues.iter().map(|v| v.retention.denial_notice_hours).max().unwrap_or(24);
    let notices = Arc::new(passage_edge::notices::Notices::new(i64::from(notice_hours) * 3600));
    {
        let (notices, stop) = (notices.clone(), cancel.child_token());
        tracker.spawn(async move { notices.sweep_every(Duration::from_secs(60), stop).await });
    }
    // Cameras and ticket scanners post to the gates with this key (kept hashed in RAM).
    let input_key = {
        let bits: [u8; 32] = rand::random();
        let key = zeroize::Zeroizing::new(bits.iter().map(|b| format!("{b:02x}")).collect::<String>());
        let path = data.path.join("edge").join("gate-input.key");
        std::fs::create_dir_all(data.path.join("edge")).context("cannot create the edge's directory")?;
        passage_policy::atomic_file::write(&path, key.as_bytes(), passage_policy::atomic_file::Access::Private)
            .context("cannot write the gates' input key")?;
        key
    };
    let mut all_gates = Vec::new();
    for (i, venue) in config.venues.iter().enumerate() {
        let edge_bus = connect(format!("edge-{}", venue.id), format!("edge:{}", venue.id))
            .await
            .context("edge agent cannot reach the broker")?;
        let scene = Scene::new(venue, rand::random::<u64>() ^ i as u64, args.arrivals);
        // Noised records are spooled on disk and forwarded until analytics acknowledges them.
        let spool_dir = data.path.join("edge").join("spool").join(venue.id.as_str());
        let spool = forward::start(
            &venue.id,
            ForwardOptions::from_config(spool_dir, &config.spool),
            edge_bus.clone(),
            Arc::new(CountingStats::default()),
            cancel.child_token(),
            &tracker,
        )
        .await
        .with_context(|| format!("cannot open the count spool of venue {}", venue.id))?;
        counting.push(agents::start_counting(
            venue,
            scene,
            &config.privacy,
            args.interval,
            Some(data.path.join("edge").join(format!("{}.dp-ledger.json", venue.id))),
            spool,
            cancel.child_token(),
            &tracker,
        )?);
        let mut keyholder = venue_keyholder(&data.path, &venue.id, params, config.matching.threshold)?;
        if config.matching.link == MatchLink::Https {
            keyholder = keyholder.with_https_matcher(pki.https_matcher(&venue.id, matcher_addr)?);
        }
        let keyholder = Arc::new(keyholder);
        let notice = passage_dpia::privacy_notice(&config, venue);
        let notice_version = notice.version;
        let ticket_key = Arc::new(
            passage_edge::gate::load_or_create_ticket_key(
                &data.path.join("edge").join("tickets").join(format!("{}.key", venue.id)),
            )
            .with_context(|| format!("cannot open the ticket key of venue {}", venue.id))?,
        );
        portal_venues.insert(
            venue.id.clone(),
            PortalVenue {
                name: venue.name.clone(),
                notice,
                keyholder: keyholder.clone(),
                bus: edge_bus.clone(),
                tickets: Some(ticket_key.clone()),
            },
        );
        let venue_gates = Gates::new(
            venue,
            config.matching.mode,
            GateParts {
                keyholder: keyholder.clone(),
                bus: edge_bus.clone(),
                governance: governance.clone(),
                tickets: ticket_key,
                notices: notices.clone(),
                faces: gate_faces.clone().map(|pipeline| {
                    let stage_config = stage_config.clone();
                    Box::new(move || FaceStage::new(pipeline.clone(), stage_config.clone()))
                        as Box<dyn Fn() -> FaceStage + Send>
                }),
                evidence: match &anonymiser {
                    Some(anonymiser) => Some(evidence_store(&data.path, venue, anonymiser, &cancel, &tracker)?),
                    None => None,
                },
            },
            GateSettings::default(),
            &tracker,
        );
        venue_gates
            .follow_capacity_alerts(cancel.child_token(), &tracker)
            .await
            .context("gates cannot follow capacity alerts")?;
        all_gates.push(venue_gates.clone());
        gates.push(agents::start_gates(
            venue,
            notice_version,
            keyholder,
            governance.clone(),
            venue_gates,
            args.visitors,
            Duration::from_secs_f64(args.gate_every),
            edge_bus,
            cancel.child_token(),
            &tracker,
        ));
    }

    let portal = Portal::new(
        portal_venues,
        governance.clone(),
        enrolment_faces,
        Some(data.path.join("portal-keys.json")),
        notices,
    )
    .context("cannot start the visitor portal")?;
    let kiosks = Kiosks::new(all_gates.iter().cloned(), &input_key);
    drop(input_key);
    let portal_addr = passage_edge::portal::serve(
        with_port(&config.http.portal, args.ephemeral_ports)?,
        tls.clone(),
        passage_edge::portal::app(portal).merge(passage_edge::gate::kiosk::app(kiosks)),
        cancel.child_token(),
        &tracker,
    )
    .await
    .context("cannot serve the visitor portal")?;

    println!("Passage demo is running ({} venue(s)).", config.venues.len());
    match config.venues.first() {
        Some(venue) => println!("  dashboard:    https://{}/venues/{}", analytics.addr, venue.id),
        None => println!("  dashboard:    https://{}/", analytics.addr),
    }
    println!("  analytics API https://{}/api/v1/summary", analytics.addr);
    println!("  matcher API   https://{matcher_addr}/api/v1/health (client certificate required)");
    if tls_bus {
        println!(
            "  MQTT 5 (mTLS) {broker_host}:{broker_port} (device gateway; certificates in {})",
            pki.dir.dir().display()
        );
    } else {
        println!("  MQTT 5 broker {broker_host}:{broker_port}");
    }
    println!("  TLS CA        {} (the demo's device CA; e.g. curl --cacert it)", cert_path.display());
    println!("  DPO page      https://{}/dpo", analytics.addr);
    println!("  portal:       https://{portal_addr}/ (visitor registration, export, erasure)");
    for venue in &config.venues {
        for gate in &venue.gates {
            println!("  kiosk:        https://{portal_addr}/gate/{}/{} ({})", venue.id, gate.id, gate.name);
        }
    }
    println!(
        "  gate input    POST .../frame (JPEG/PNG) or .../scan {{\"code\"}} with the key in {}",
        data.path.join("edge").join("gate-input.key").display()
    );
    println!("  audit log     {} (passage audit verify --store it)", data.path.join("audit").display());
    println!("  data          {}", data.path.display());
    match args.exit_after {
        Some(s) => println!("Stopping after {s} s."),
        None => println!("Press Ctrl-C to stop."),
    }

    let started = Instant::now();
    let summary = || Summary::collect(&counting, &gates, &analytics, &matcher, started.elapsed());
    let deadline = args.exit_after.map(Duration::from_secs);
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    ticker.tick().await;
    loop {
        let remaining = deadline.map(|d| d.saturating_sub(started.elapsed()));
        if remaining == Some(Duration::ZERO) {
            break;
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = ticker.tick() => println!("{}", summary().line()),
            () = tokio::time::sleep(remaining.unwrap_or(Duration::from_secs(3600))) => break,
        }
    }

    stop(&cancel, &tracker).await;
    println!("{}", summary().json());
    Ok(())
}

/// A venue's key holder: the key store's key (`passage keys init`, enrolments by `passage
/// enrol`) when the data directory has one and `PASSAGE_KEY_PASSPHRASE` is set; otherwise a
/// fresh key in RAM (a restart then means re-enrolment).
fn venue_keyholder(
    data: &std::path::Path,
    venue: &passage_wire::Id,
    params: Params,
    threshold: f64,
) -> anyhow::Result<KeyHolder> {
    let store = passage_edge::keystore::KeyStore::open(&data.join("keys")).context("cannot open the key store")?;
    match std::env::var("PASSAGE_KEY_PASSPHRASE") {
        Ok(passphrase) if store.exists(venue) => {
            let passphrase = zeroize::Zeroizing::new(passphrase);
            let key = store.load(venue, params, &passphrase)?;
            println!("  key holder    venue {venue}: key from {}", store.path(venue).display());
            Ok(KeyHolder::from_key(venue.clone(), key, threshold)?)
        }
        _ => Ok(KeyHolder::generate(venue.clone(), params, threshold)?),
    }
}

/// Evidence mode at `venue`'s gates: its store under `{data}/edge/evidence/{venue}`, expiring
/// frames after the venue's `retention.evidence_image_hours`, swept every minute by the agent.
fn evidence_store(
    data: &std::path::Path,
    venue: &passage_config::Venue,
    anonymiser: &Arc<passage_vision::anonymize::Anonymiser>,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<passage_edge::evidence::GateEvidence> {
    let dir = data.join("edge").join("evidence").join(venue.id.as_str());
    let expiry = Duration::from_secs(u64::from(venue.retention.evidence_image_hours) * 3600);
    let store = passage_edge::evidence::EvidenceStore::open(&dir, expiry, std::time::SystemTime::now())
        .with_context(|| format!("cannot open the evidence store of venue {}", venue.id))?;
    let (sweeper, stop) = (store.clone(), cancel.child_token());
    tracker.spawn(async move { sweeper.sweep_every(Duration::from_secs(60), stop).await });
    Ok(passage_edge::evidence::GateEvidence { store, anonymiser: anonymiser.clone() })
}

/// The demo's PKI: created on first use of a data directory, reused after.
pub(crate) fn demo_pki(dir: &std::path::Path, config: &passage_config::Config) -> anyhow::Result<Pki> {
    let pki = PkiDir::new(dir);
    let now = now_secs();
    if !pki.ca_cert_path().exists() {
        pki.init("Passage demo device CA", now)
            .with_context(|| format!("cannot create the CA in {}", dir.display()))?;
    }
    let hosts = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let mut subjects = vec![
        Subject::Server { name: "broker".into(), hosts: hosts.clone() },
        Subject::Server { name: "services".into(), hosts },
    ];
    for name in ["service:matcher", "service:analytics"] {
        subjects.push(Subject::Device(passage_policy::devices::Principal::parse(name)?));
    }
    for venue in &config.venues {
        subjects.push(Subject::Device(passage_policy::devices::Principal::Edge { venue: venue.id.clone() }));
    }
    for subject in subjects {
        if pki.current(&subject.name(), now)?.is_none() {
            pki.issue(&subject, now, 90, rand::random())
                .with_context(|| format!("cannot issue a certificate for {}", subject.name()))?;
        }
    }
    Ok(Pki { dir: pki })
}

/// Appends the device gateway's connections and refusals to the audit log (principals and
/// topics only).
async fn audit_gateway(mut events: tokio::sync::mpsc::UnboundedReceiver<GatewayEvent>, audit: Arc<AuditLog>) {
    while let Some(event) = events.recv().await {
        let (actor, action, outcome) = match event {
            GatewayEvent::Connected { principal } => (principal, "device.connect", "accepted".to_owned()),
            GatewayEvent::Refused { principal, reason } => {
                (principal.unwrap_or_else(|| "unknown".into()), "device.refused", reason)
            }
            GatewayEvent::Revoked { principal } => (principal, "device.revoked", "connection closed".to_owned()),
        };
        let log = audit.clone();
        let written = tokio::task::spawn_blocking(move || log.record(&actor, action, None, None, &outcome)).await;
        if !matches!(written, Ok(Ok(_))) {
            tracing::warn!(action, "audit entry not written");
        }
    }
}

struct Summary {
    seconds: f64,
    records_spooled: u64,
    records_published: u64,
    records_republished: u64,
    records_acknowledged: u64,
    spool_merges: u64,
    records_dropped: u64,
    records_ingested: u64,
    records_quarantined: u64,
    enrolled: u64,
    match_requests: u64,
    decision_requests: u64,
    matches_answered: u64,
    busy: u64,
    green: u64,
    red: u64,
    correct: u64,
    errors: u64,
}

impl Summary {
    fn collect(
        counting: &[Arc<CountingStats>],
        gates: &[Arc<GateStats>],
        analytics: &passage_analytics::Analytics,
        matcher: &Matcher,
        elapsed: Duration,
    ) -> Summary {
        let sum = |f: &dyn Fn(&GateStats) -> u64| gates.iter().map(|g| f(g)).sum::<u64>();
        let m = matcher.stats();
        let ingest = analytics.stats.snapshot();
        let count = |f: &dyn Fn(&CountingStats) -> &std::sync::atomic::AtomicU64| {
            counting.iter().map(|c| f(c).load(Ordering::Relaxed)).sum::<u64>()
        };
        Summary {
            seconds: elapsed.as_secs_f64(),
            records_spooled: count(&|c| &c.records_spooled),
            records_published: count(&|c| &c.records_published),
            records_republished: count(&|c| &c.records_republished),
            records_acknowledged: count(&|c| &c.records_acknowledged),
            spool_merges: count(&|c| &c.spool_merges),
            records_dropped: count(&|c| &c.records_dropped),
            records_ingested: ingest.inserted,
            records_quarantined: ingest.quarantined,
            enrolled: sum(&|g| g.enrolled.load(Ordering::Relaxed)),
            match_requests: sum(&|g| g.match_requests.load(Ordering::Relaxed)),
            decision_requests: sum(&|g| g.decision_requests.load(Ordering::Relaxed)),
            matches_answered: m.answered.load(Ordering::Relaxed),
            busy: m.busy.load(Ordering::Relaxed),
            green: sum(&|g| g.green.load(Ordering::Relaxed)),
            red: sum(&|g| g.red.load(Ordering::Relaxed)),
            correct: sum(&|g| g.correct.load(Ordering::Relaxed)),
            errors: sum(&|g| g.errors.load(Ordering::Relaxed)),
        }
    }

    fn line(&self) -> String {
        format!(
            "[{:>5.0}s] counts: {} spooled, {} published, {} ingested, {} acknowledged | gates: {} enrolled, {} requests, {} answered, {} green, {} red, {} errors",
            self.seconds, self.records_spooled, self.records_published, self.records_ingested, self.records_acknowledged, self.enrolled, self.match_requests, self.matches_answered, self.green, self.red, self.errors
        )
    }

    fn json(&self) -> String {
        serde_json::json!({
            "seconds": (self.seconds * 10.0).round() / 10.0,
            "counts_spooled": self.records_spooled,
            "counts_published": self.records_published,
            "counts_republished": self.records_republished,
            "counts_acknowledged": self.records_acknowledged,
            "spool_merges": self.spool_merges,
            "counts_dropped": self.records_dropped,
            "counts_ingested": self.records_ingested,
            "counts_quarantined": self.records_quarantined,
            "enrolled": self.enrolled,
            "matches_requested": self.match_requests,
            "matches_requested_in_decision_mode": self.decision_requests,
            "matches_answered": self.matches_answered,
            "matcher_busy": self.busy,
            "decisions": { "green": self.green, "red": self.red, "agreeing_with_ground_truth": self.correct, "errors": self.errors },
        })
        .to_string()
    }
}
