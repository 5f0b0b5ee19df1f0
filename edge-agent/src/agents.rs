//! The edge agents as tasks: a counting agent per venue (simulated scene → per-camera person
//! detections with realistic errors → validator → tracker → counters → DP release → spool →
//! MQTT, see [`crate::spool`]) and
//! a simulated gate agent per venue (enrolment through the key holder, then simulated faces
//! through [`crate::gate::Gates`]).
//! `passage demo` runs them on a simulated scene.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use passage_config::{Privacy, Venue};
use passage_dp::{Budget, BudgetLedger};
use passage_transport::Bus;
use passage_wire::{Id, MatchMode};
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use passage_policy::access::Reason;
use passage_policy::audit::AuditLog;
use passage_policy::subjects::{SubjectRecord, SubjectStore};
use passage_policy::tickets::Ticket;
use passage_policy::ConsentRegistry;

use crate::count::detect::FrameValidator;
use crate::count::release::VenueReleaser;
use crate::count::track::Tracker;
use crate::count::{ledger_file, CameraCounter};
use crate::enrolment::{enrol_with_consent, Enrolment};
use crate::gate::Gates;
use crate::keyholder::KeyHolder;
use crate::now_secs;
use crate::sim::{DetectorNoise, FaceSimulator, Scene};
use crate::spool::forward::SpoolWriter;

/// Counters of the counting agents (numbers of messages, never counts of people).
#[derive(Debug, Default)]
pub struct CountingStats {
    /// Noised records written to the spool (durably, before any publication).
    pub records_spooled: AtomicU64,
    /// Records handed to the MQTT client for the first time by this process.
    pub records_published: AtomicU64,
    /// Records published again because analytics had not acknowledged them in time.
    pub records_republished: AtomicU64,
    /// Records analytics acknowledged (committed to its database) and the spool deleted.
    pub records_acknowledged: AtomicU64,
    /// Records analytics refused for good (quarantined there), deleted from the spool.
    pub records_refused: AtomicU64,
    /// Merges of two spooled records into one coarser record (the spool reached its bound).
    pub spool_merges: AtomicU64,
    /// Records lost: dropped by a full spool with nothing left to merge, or not spooled at
    /// all (disk failure).
    pub records_dropped: AtomicU64,
    /// Hand-overs the MQTT client refused (its queue was full: broker unreachable); the
    /// records stay spooled and go out later.
    pub publish_errors: AtomicU64,
    /// Intervals not released (budget spent, clock went back).
    pub release_refusals: AtomicU64,
    /// Detections the validator dropped (NaN, empty or out-of-frame boxes, bad scores).
    pub detections_rejected: AtomicU64,
}

/// Scene time per simulated camera frame (25 frames per second).
const FRAME_SECS: f64 = 0.04;
/// Frames processed per tick of the counting agent (one tick every 200 ms).
const FRAMES_PER_TICK: usize = 5;

/// Why an agent could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A camera is not configured.
    #[error(transparent)]
    Counter(#[from] crate::count::CounterError),
    /// The DP mechanism could not be built.
    #[error(transparent)]
    Dp(#[from] passage_dp::DpError),
    /// The releaser could not be built.
    #[error(transparent)]
    Release(#[from] crate::count::release::ReleaseError),
    /// The budget ledger could not be loaded.
    #[error(transparent)]
    Ledger(#[from] crate::count::ledger_file::LedgerFileError),
}

/// Starts a counting agent for every camera of `venue`, all watching one simulated `scene`.
/// Every `interval_secs` (aligned to the clock) each camera releases one noised record, by the
/// configured continual-release mechanism, charging the venue's daily budget in the ledger
/// kept at `ledger_path` (in memory only when `None`). The records go to the venue's `spool`
/// ([`crate::spool::forward::start`]), whose forwarder publishes them; the returned counters
/// are the spool's.
#[allow(clippy::too_many_arguments)]
pub fn start_counting(
    venue: &Venue,
    mut scene: Scene,
    privacy: &Privacy,
    interval_secs: u32,
    ledger_path: Option<PathBuf>,
    spool: SpoolWriter,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Result<Arc<CountingStats>, AgentError> {
    let mut counters: Vec<CameraCounter> =
        venue.cameras.iter().map(|c| CameraCounter::new(venue, &c.id)).collect::<Result<_, _>>()?;
    let release_privacy = Privacy { interval_secs, ..privacy.clone() };
    let mut releaser = VenueReleaser::new(venue, &counters, &release_privacy)?;
    let limit = Budget { epsilon: privacy.epsilon_per_day, delta: privacy.delta_per_day };
    let mut ledger = match &ledger_path {
        Some(path) => ledger_file::load(path, limit)?,
        None => BudgetLedger::new(limit)?,
    };
    let stats = spool.stats();
    let out = stats.clone();
    let venue_id = venue.id.clone();
    let cameras: Vec<Id> = venue.cameras.iter().map(|c| c.id.clone()).collect();
    // Each camera sees the scene through a simulated person detector (misses, false
    // positives, jitter), then the validator and the tracker, as a real camera's detections
    // would go: the counters only ever see tracked foot points.
    let mut vision: Vec<(DetectorNoise, FrameValidator, Tracker)> = (0..cameras.len())
        .map(|i| (DetectorNoise::new(rand::random::<u64>() ^ i as u64), FrameValidator::default(), Tracker::default()))
        .collect();
    tracker.spawn(async move {
        let mut rng = passage_dp::csprng();
        let tick = Duration::from_secs_f64(FRAME_SECS * FRAMES_PER_TICK as f64);
        let mut scene_time = 0.0;
        let mut ticker = tokio::time::interval(tick);
        let secs = i64::from(interval_secs);
        let mut interval_start = now_secs() / secs * secs;
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = ticker.tick() => {}
            }
            // 25 frames per second of scene time, processed in batches of one tick.
            for _ in 0..FRAMES_PER_TICK {
                let people = scene.step(FRAME_SECS);
                scene_time += FRAME_SECS;
                for (counter, (noise, validator, tracks)) in counters.iter_mut().zip(vision.iter_mut()) {
                    let (detections, rejected) = validator.validate(noise.detect(scene_time, &people));
                    out.detections_rejected.fetch_add(rejected.total(), Ordering::Relaxed);
                    let confirmed = tracks.update(&detections);
                    counter.next_frame(u64::from(tracks.config().max_age));
                    for (track, p) in confirmed {
                        counter.observe(track, p);
                    }
                }
            }
            let now = now_secs();
            if now >= interval_start + secs {
                let tallies: Vec<_> = counters.iter_mut().map(CameraCounter::close_interval).collect();
                let records = match releaser.release(tallies, interval_start, &mut ledger, &mut rng, uuid_like) {
                    Ok(records) => records,
                    Err(error) => {
                        // Budget spent (e.g. restarted mid-day), clock went back: nothing is
                        // released for this interval; the tallies are already dropped.
                        tracing::warn!(venue = %venue_id, %error, "interval not released");
                        out.release_refusals.fetch_add(1, Ordering::Relaxed);
                        Vec::new()
                    }
                };
                if let Some(path) = &ledger_path {
                    if let Err(error) = ledger_file::save(path, &ledger) {
                        tracing::error!(venue = %venue_id, %error, "budget ledger not saved");
                    }
                }
                // Durably spooled before anything publishes it; the forwarder takes it from
                // there (and keeps it through broker outages and restarts).
                let n_records = records.len();
                if n_records > 0 {
                    if let Err(error) = spool.push(records).await {
                        tracing::error!(venue = %venue_id, %error, records = n_records, "noised records not spooled");
                    }
                }
                interval_start = now / secs * secs;
            }
        }
    });
    Ok(stats)
}

fn uuid_like(rng: &mut impl Rng) -> String {
    let v: u128 = rng.random();
    format!("{v:032x}")
}

/// Counters of the gate agents (numbers of decisions, never who).
#[derive(Debug, Default)]
pub struct GateStats {
    /// Visitors enrolled.
    pub enrolled: AtomicU64,
    /// Match requests sent.
    pub match_requests: AtomicU64,
    /// Of those, requests in decision mode (the gate learns match bits only).
    pub decision_requests: AtomicU64,
    /// Green decisions.
    pub green: AtomicU64,
    /// Red decisions.
    pub red: AtomicU64,
    /// Decisions that agreed with the simulation's ground truth.
    pub correct: AtomicU64,
    /// Requests that failed (matcher unreachable or refused): the gate shows red "try again".
    pub errors: AtomicU64,
    /// Matches refused because the subject's consent was withdrawn.
    pub refused_no_consent: AtomicU64,
}

/// The purpose under which face matching runs (see the configuration's purposes).
pub const FACE_ACCESS: &str = "face-access";

/// What the gates answer to: the consent registry they check before admitting anyone, and the
/// audit log that records every consent, enrolment and access decision (by pseudonymous
/// reference only).
#[derive(Debug, Clone)]
pub struct Governance {
    /// Consent per subject, venue and purpose.
    pub consent: Arc<std::sync::Mutex<ConsentRegistry>>,
    /// The tamper-evident audit log (`None` records nothing; the demo always has one).
    pub audit: Option<Arc<AuditLog>>,
    /// Consent evidence at rest, encrypted per subject (`None` keeps it in memory only).
    pub subjects: Option<Arc<std::sync::Mutex<SubjectStore>>>,
}

impl Governance {
    /// Appends to the audit log on a blocking thread, for events of `venue` or of none (an
    /// export, an erasure); a failure is logged, never fatal to the gate (the decision stands;
    /// the missing entry is visible as a warning).
    pub(crate) async fn audit_optional_venue(
        &self,
        actor: String,
        action: &'static str,
        venue: Option<&Id>,
        subject: Option<&Id>,
        outcome: String,
    ) {
        let Some(log) = self.audit.clone() else { return };
        let venue = venue.map(ToString::to_string);
        let subject = subject.map(ToString::to_string);
        let written = tokio::task::spawn_blocking(move || {
            log.record(&actor, action, venue.as_deref(), subject.as_deref(), &outcome)
        })
        .await;
        match written {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, action, "audit entry not written"),
            Err(error) => tracing::warn!(%error, action, "audit task failed"),
        }
    }
}

/// Enrols `n_visitors` simulated visitors, each with a ticket for the venue valid for the
/// day, then every `every` sends one simulated face (an enrolled visitor with probability
/// 0.7, a stranger otherwise) through a random gate of `gates`, the same decision path as a
/// camera frame's (consent, ticket, capacity, audit, notices). When any gate uses decision
/// mode, the key holder first publishes its decision key. The simulated visitors accept
/// version `notice_version` of the venue's privacy notice, which is published as the venue's
/// current one.
#[allow(clippy::too_many_arguments)]
pub fn start_gates(
    venue: &Venue,
    notice_version: u32,
    keyholder: Arc<KeyHolder>,
    governance: Governance,
    gates: Gates,
    n_visitors: usize,
    every: Duration,
    bus: Bus,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Arc<GateStats> {
    let stats = Arc::new(GateStats::default());
    let out = stats.clone();
    let gate_ids = gates.gate_ids();
    let modes: Vec<bool> = gate_ids.iter().map(|id| gates.mode(id) == Some(MatchMode::Decision)).collect();
    let decision_mode = modes.contains(&true);
    let dim = keyholder_dim(&keyholder);
    let venue_id = venue.id.clone();
    governance
        .consent
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .publish_notice(&venue_id, notice_version);
    tracker.spawn(async move {
        let mut faces = FaceSimulator::new(rand::random(), dim);
        let mut visitors = Vec::with_capacity(n_visitors);
        for i in 0..n_visitors {
            let identity = faces.identity();
            let Ok(subject) = Id::new(&format!("subj-{i:04}")) else { continue };
            // Explicit consent for this venue, with its evidence, before anything biometric.
            let mut records = Vec::new();
            if governance.subjects.is_some() {
                // A day ticket for the venue, as the box office would have sold.
                let now = now_secs();
                let ticket = Ticket {
                    id: format!("SIM-{i:04}-{:08x}", rand::random::<u32>()),
                    venue: venue_id.to_string(),
                    zones: Vec::new(),
                    not_before: now - 3600,
                    not_after: now + 86_400,
                };
                if let Ok(code) = gates.issue_ticket(&ticket) {
                    records.push(SubjectRecord::Ticket { venue: venue_id.to_string(), ticket: code, at: now });
                }
            }
            let enrolment =
                Enrolment { venue: &venue_id, subject: &subject, notice_version, actor: "visitor".into(), records };
            let face = faces.observe(&identity);
            match enrol_with_consent(&governance, &keyholder, &bus, enrolment, &face).await {
                Ok(()) => {
                    out.enrolled.fetch_add(1, Ordering::Relaxed);
                    visitors.push((subject, identity));
                }
                Err(error) => tracing::warn!(%error, "a simulated visitor was not enrolled"),
            }
            if cancel.is_cancelled() {
                return;
            }
        }
        if gate_ids.is_empty() {
            return;
        }
        if decision_mode {
            match keyholder.publish_decision_key(&bus).await {
                Ok(()) => tracing::info!(venue = %venue_id, "decision key published to the matcher"),
                Err(error) => tracing::warn!(%error, "decision key not published; decision-mode gates will fail"),
            }
        }
        let mut ticker = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let pick = rand::random_range(0..gate_ids.len());
            let (expected, face) = if !visitors.is_empty() && rand::random_bool(0.7) {
                let (subject, identity) = &visitors[rand::random_range(0..visitors.len())];
                (Some(subject.clone()), faces.observe(identity))
            } else {
                let stranger = faces.identity();
                (None, faces.observe(&stranger))
            };
            let Ok((decision, recognised)) = gates.face(gate_ids[pick].as_str(), &face).await else {
                // Busy: a camera would send its next frame.
                continue;
            };
            out.match_requests.fetch_add(1, Ordering::Relaxed);
            if modes[pick] {
                out.decision_requests.fetch_add(1, Ordering::Relaxed);
            }
            match decision.reason {
                Reason::Admitted => {
                    out.green.fetch_add(1, Ordering::Relaxed);
                    if expected.is_some() && expected == recognised {
                        out.correct.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Reason::NotRecognised => {
                    out.red.fetch_add(1, Ordering::Relaxed);
                    if expected.is_none() {
                        out.correct.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Reason::ConsentWithdrawn => {
                    out.red.fetch_add(1, Ordering::Relaxed);
                    out.refused_no_consent.fetch_add(1, Ordering::Relaxed);
                }
                Reason::MatcherUnavailable => {
                    out.red.fetch_add(1, Ordering::Relaxed);
                    out.errors.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    out.red.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    stats
}

fn keyholder_dim(keyholder: &KeyHolder) -> usize {
    keyholder.params().dim
}
