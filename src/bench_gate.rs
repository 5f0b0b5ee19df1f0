//! `passage bench gate`: frame to green/red at a gate, with real components on loopback — the
//! embedded broker, the matcher with an encrypted gallery of N templates (one enrolled visitor
//! with a real photo and N−1 random faces), the key holder, consent, a linked ticket in the
//! encrypted subject store, the audit log, and the kiosk page's event stream read over HTTP.
//!
//! Each run decodes a real camera frame of the enrolled visitor (another photo than the
//! enrolment one), passes it through the gate (QR search, detection, alignment, liveness,
//! embedding, probe encryption, the matcher, decryption, policy) and waits for the kiosk's
//! event stream to show the decision. Prints one line per run on stderr and a final JSON line
//! with the medians.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use passage_config::MatchLink;
use passage_edge::agents::{Governance, FACE_ACCESS};
use passage_edge::face::{FaceStage, FaceStageConfig};
use passage_edge::frames::RgbFrame;
use passage_edge::gate::kiosk::{self, Kiosks};
use passage_edge::gate::{GateParts, GateSettings, GateTimings, Gates};
use passage_edge::keyholder::KeyHolder;
use passage_edge::notices::Notices;
use passage_fhe::Params;
use passage_matcher::{Matcher, MatcherOptions};
use passage_policy::audit::AuditLog;
use passage_policy::subjects::{SubjectRecord, SubjectStore};
use passage_policy::tickets::{Ticket, TicketKey};
use passage_policy::ConsentRegistry;
use passage_transport::EmbeddedBroker;
use passage_vision::face::FacePipeline;
use passage_wire::Id;
use rand::Rng;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bench::{median, ms};

/// Result mode of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GateMode {
    /// The key holder decrypts scores.
    Score,
    /// The matcher bootstraps to match bits.
    Decision,
}

/// Options of `passage bench gate`.
#[derive(Debug, Args)]
pub struct GateArgs {
    /// Templates in the venue's gallery (the enrolled visitor and random faces).
    #[arg(long, default_value_t = 1000)]
    gallery: usize,
    /// Score or decision mode.
    #[arg(long, value_enum, default_value = "score")]
    mode: GateMode,
    /// Measured frames (after one warm-up frame).
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Evaluation threads of the matcher (0: every core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// The models directory (`passage models fetch`).
    #[arg(long, default_value = ".cache/models")]
    models: PathBuf,
    /// The enrolment photo of the visitor.
    #[arg(long, default_value = ".cache/testdata/faces/obama.jpg")]
    enrol: PathBuf,
    /// The camera frame of the same visitor at the gate.
    #[arg(long, default_value = ".cache/testdata/faces/obama2.jpg")]
    frame: PathBuf,
    /// The deployment whose `[faces]` and `[matching]` settings the gate uses.
    #[command(flatten)]
    config: crate::ConfigArg,
    /// Overrides `faces.detect_max_side` (the detector's input size).
    #[arg(long)]
    detect_max_side: Option<u32>,
    /// Overrides `faces.min_liveness` (liveness then runs on every face).
    #[arg(long)]
    min_liveness: Option<f64>,
    /// Overrides `matching.link`: match requests over the broker (`mqtt`) or straight to the
    /// matcher's HTTPS API with mutual TLS (`https`).
    #[arg(long, value_enum)]
    link: Option<LinkArg>,
}

/// `--link`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LinkArg {
    /// Through the broker.
    Mqtt,
    /// The matcher's HTTPS API.
    Https,
}

fn read_photo(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {} (scripts/fetch-faces fetches it)", path.display()))
}

/// One measured frame.
#[derive(Debug, Default, Clone)]
struct Run {
    decode_ms: f64,
    times: GateTimings,
    evaluate_ms: f64,
    display_ms: f64,
    total_ms: f64,
    green: bool,
}

/// Runs the benchmark.
pub fn run_gate(args: &GateArgs) -> anyhow::Result<()> {
    if args.gallery == 0 || args.gallery > 1_000_000 {
        bail!("--gallery must be between 1 and 1000000");
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    rt.block_on(bench(args))
}

async fn bench(args: &GateArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let mut config = args.config.load()?;
    if let Some(side) = args.detect_max_side {
        config.faces.detect_max_side = side;
    }
    if let Some(liveness) = args.min_liveness {
        config.faces.min_liveness = Some(liveness);
    }
    match args.link {
        Some(LinkArg::Mqtt) => config.matching.link = MatchLink::Mqtt,
        Some(LinkArg::Https) => config.matching.link = MatchLink::Https,
        None => {}
    }
    let pipeline = FacePipeline::load(&args.models, passage_edge::face::pipeline_config(&config.faces))
        .with_context(|| format!("cannot load the face models from {}", args.models.display()))?;
    let enrol_photo = read_photo(&args.enrol)?;
    let frame_photo = read_photo(&args.frame)?;
    let visitor_embedding = passage_edge::face::enrolment_embedding(&pipeline, &enrol_photo)
        .with_context(|| format!("the enrolment photo {}", args.enrol.display()))?;

    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let broker = EmbeddedBroker::start(0).context("embedded broker")?;
    let connect = |name: &str| {
        let client_id = format!("{name}-{}", std::process::id());
        crate::service::connect_bus(
            ("127.0.0.1".into(), broker.addr().port()),
            client_id,
            None,
            cancel.child_token(),
            &tracker,
        )
    };
    let mut venue = config.venues.first().cloned().context("the built-in deployment has a venue")?;
    for gate in &mut venue.gates {
        gate.matching = None;
    }
    let gate_id = venue.gates.first().map(|g| g.id.to_string()).context("the venue has a gate")?;
    let options = MatcherOptions {
        gallery_dir: dir.path().join("galleries"),
        params: Params::DEFAULT,
        threads: args.threads,
        queue: config.matching.queue,
    };
    let matcher = Matcher::start(&options, std::slice::from_ref(&venue.id), cancel.child_token(), &tracker)?;
    let matcher_bus = connect("matcher").await?;
    matcher.serve_mqtt(&matcher_bus, cancel.child_token(), &tracker).await?;
    let bus = connect("edge").await?;
    // Decision mode bootstraps once per template: give the matcher time to answer.
    let mut keyholder = KeyHolder::generate(venue.id.clone(), Params::DEFAULT, config.matching.threshold)?
        .with_timeout(Duration::from_secs(600));
    if config.matching.link == MatchLink::Https {
        // The demo's PKI in the temporary directory: the matcher API requires the edge's
        // client certificate, as in a deployment.
        let pki = crate::demo::demo_pki(&dir.path().join("pki"), &config)?;
        let tls = pki.server_tls("server:services", passage_transport::ClientAuth::Required)?;
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let addr = passage_matcher::serve(listen, tls, matcher.clone(), cancel.child_token(), &tracker)
            .await
            .context("cannot serve the matcher API")?;
        keyholder = keyholder.with_https_matcher(pki.https_matcher(&venue.id, addr)?);
    }
    let keyholder = Arc::new(keyholder);

    // The gallery: the visitor first, then random faces, a few requests in flight at a time.
    let visitor = Id::new("bench-visitor")?;
    keyholder.enrol(&bus, &visitor, visitor_embedding.as_slice()).await.context("enrolment")?;
    let started = Instant::now();
    let dim = Params::DEFAULT.dim;
    let mut pending = tokio::task::JoinSet::new();
    let mut done = 1usize;
    let mut next_report = args.gallery / 10;
    for i in 1..args.gallery {
        let (keyholder, bus) = (keyholder.clone(), bus.clone());
        let face: Vec<f32> = {
            let mut rng = rand::rng();
            (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect()
        };
        let subject = Id::new(&format!("random-{i:07}"))?;
        pending.spawn(async move { keyholder.enrol(&bus, &subject, &face).await });
        while pending.len() >= 16 {
            if let Some(joined) = pending.join_next().await {
                joined.context("enrolment task")?.context("enrolment")?;
                done += 1;
            }
        }
        if done >= next_report && next_report > 0 {
            eprintln!("gallery: {done}/{} templates enrolled ({:.0} s)", args.gallery, started.elapsed().as_secs_f64());
            next_report += args.gallery / 10;
        }
    }
    while let Some(joined) = pending.join_next().await {
        joined.context("enrolment task")?.context("enrolment")?;
    }
    eprintln!("gallery: {} templates enrolled in {:.1} s", args.gallery, started.elapsed().as_secs_f64());
    if args.mode == GateMode::Decision {
        let started = Instant::now();
        keyholder.publish_decision_key(&bus).await.context("decision key")?;
        eprintln!("decision key published in {:.1} s", started.elapsed().as_secs_f64());
    }

    // Consent, a day ticket in the encrypted subject store, the audit log.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    let purpose = Id::new(FACE_ACCESS)?;
    let mut consent = ConsentRegistry::new();
    consent.publish_notice(&venue.id, 1);
    consent.grant(&visitor, &venue.id, &purpose, 1, now)?;
    let tickets = Arc::new(TicketKey::generate(&mut rand::rng()));
    let code = tickets.issue(&Ticket {
        id: "bench-ticket".into(),
        venue: venue.id.to_string(),
        zones: Vec::new(),
        not_before: now - 3600,
        not_after: now + 86_400,
    })?;
    let (mut subjects, _) = SubjectStore::open(&dir.path().join("subjects"), |_| false)?;
    subjects.put(visitor.as_str(), &SubjectRecord::Ticket { venue: venue.id.to_string(), ticket: code, at: now })?;
    let governance = Governance {
        consent: Arc::new(Mutex::new(consent)),
        audit: Some(Arc::new(AuditLog::open(&dir.path().join("audit"))?)),
        subjects: Some(Arc::new(Mutex::new(subjects))),
    };
    // Every frame is a new approach (the de-duplication window would hold repeated frames).
    let stage = FaceStageConfig {
        window: Duration::ZERO,
        min_liveness: config.faces.min_liveness.map(|l| l as f32),
        ..FaceStageConfig::default()
    };
    let gates = Gates::new(
        &venue,
        match args.mode {
            GateMode::Score => passage_config::MatchingMode::Score,
            GateMode::Decision => passage_config::MatchingMode::Decision,
        },
        GateParts {
            keyholder: keyholder.clone(),
            bus: bus.clone(),
            governance,
            tickets,
            notices: Arc::new(Notices::new(3600)),
            faces: Some(Box::new(move || FaceStage::new(pipeline.clone(), stage.clone()))),
            evidence: None,
        },
        // Long enough that the kiosk never returns to idle between two runs.
        GateSettings { display: Duration::from_secs(600), ..GateSettings::default() },
        &tracker,
    );

    // The kiosk on loopback, and its event stream read as a browser would.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let service =
        kiosk::app(Kiosks::new([gates.clone()], "bench-input-key")).into_make_service_with_connect_info::<SocketAddr>();
    let stop = cancel.child_token();
    tracker.spawn(async move {
        let _ = axum::serve(listener, service).with_graceful_shutdown(stop.cancelled_owned()).await;
    });
    let mut events = kiosk_events(addr, &format!("/gate/{}/{gate_id}/events", venue.id)).await?;

    let stats = matcher.stats();
    let mut runs = Vec::with_capacity(args.runs);
    for i in 0..=args.runs {
        while events.try_recv().is_ok() {}
        let started = Instant::now();
        let image = passage_vision::decode::decode(&frame_photo).context("the frame")?;
        let decode_ms = ms(started);
        let frame = RgbFrame { w: image.w, h: image.h, index: i as u64, t: 0.0, rgb: image.rgb };
        let eval_before = stats.eval_us.load(Ordering::Relaxed);
        let mut times = GateTimings::default();
        let decision = gates.frame_timed(&gate_id, frame, &mut times).await?.context("no decision for the frame")?;
        let evaluate_ms = (stats.eval_us.load(Ordering::Relaxed) - eval_before) as f64 / 1e3;
        let decided_at = times.decided_at.context("a decision time")?;
        let shown_at = loop {
            let (at, state) = tokio::time::timeout(Duration::from_secs(30), events.recv())
                .await
                .context("the kiosk did not show the decision")?
                .context("the kiosk's event stream closed")?;
            if at >= decided_at && state != "idle" {
                break at;
            }
        };
        let run = Run {
            decode_ms,
            times,
            evaluate_ms,
            display_ms: shown_at.duration_since(decided_at).as_secs_f64() * 1e3,
            total_ms: shown_at.duration_since(started).as_secs_f64() * 1e3,
            green: decision.reason.is_green(),
        };
        eprintln!(
            "{} {:>2}: {:>7.1} ms frame to {} ({})",
            if i == 0 { "warm-up" } else { "run    " },
            i,
            run.total_ms,
            if run.green { "green" } else { "red" },
            decision.reason.code()
        );
        if i > 0 {
            runs.push(run);
        }
    }
    crate::service::stop(&cancel, &tracker).await;

    let m = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let exchange = m(&|r| r.times.identify.exchange_ms);
    let evaluate = m(&|r| r.evaluate_ms);
    let summary = serde_json::json!({
        "mode": match args.mode { GateMode::Score => "score", GateMode::Decision => "decision" },
        "gallery": args.gallery,
        "runs": runs.len(),
        "threads": if args.threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { args.threads },
        "green": runs.iter().filter(|r| r.green).count(),
        "detect_max_side": config.faces.detect_max_side,
        "min_liveness": config.faces.min_liveness,
        "link": config.matching.link,
        "frame_to_decision_ms": m(&|r| r.total_ms),
        "frame_to_decision_max_ms": runs.iter().map(|r| r.total_ms).fold(0.0, f64::max),
        "stages_ms": {
            "decode": m(&|r| r.decode_ms),
            "qr": m(&|r| r.times.qr_ms),
            "detect": m(&|r| r.times.face.detect_ms),
            "align": m(&|r| r.times.face.align_ms),
            "liveness": m(&|r| r.times.face.liveness_ms),
            "embed": m(&|r| r.times.face.embed_ms),
            "encrypt": m(&|r| r.times.identify.encrypt_ms),
            "transport": (exchange - evaluate).max(0.0),
            "evaluate": evaluate,
            "decrypt": m(&|r| r.times.identify.decrypt_ms),
            "lookup": m(&|r| r.times.identify.lookup_ms),
            "policy": m(&|r| r.times.policy_ms),
            "display": m(&|r| r.display_ms),
        },
    });
    println!("{summary}");
    Ok(())
}

/// Connects to the kiosk's event stream at `path` and returns a channel of (arrival time,
/// state) per event.
async fn kiosk_events(
    addr: SocketAddr,
    path: &str,
) -> anyhow::Result<tokio::sync::mpsc::UnboundedReceiver<(Instant, String)>> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n").as_bytes())
        .await?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let at = Instant::now();
            // Chunked transfer: event lines arrive between chunk-size lines.
            let Some(data) = line.strip_prefix("data:") else { continue };
            let state = serde_json::from_str::<serde_json::Value>(data.trim())
                .ok()
                .and_then(|v| v["state"].as_str().map(str::to_owned))
                .unwrap_or_default();
            if tx.send((at, state)).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}
