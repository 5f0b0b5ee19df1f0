//! The gate, end to end: a camera frame or a scanned ticket in, green or red out.
//!
//! ```text
//! frame ─┬─ QR code in it? ──────────────► ticket path ─┐
//!        └─ faces (detect, liveness, embed) ─► probe ─► matcher ─► key holder decrypts
//!                                                        │
//!               consent ─► linked ticket ─► zone capacity ┴─► Reason ─► kiosk + audit + notice
//! ```
//!
//! * Each gate handles one attempt at a time; a frame arriving while the gate is deciding is
//!   answered "busy" (the camera sends the next one), so nothing queues up unseen.
//! * Decisions are kept in RAM for the kiosk only (a `watch` channel per gate: green or red
//!   for [`GateSettings::display`], then idle) and audited as pseudonymous entries.
//! * The kiosk shows a neutral message ([`Reason::kiosk`]); a recognised visitor's precise
//!   reason goes only to their own device ([`crate::notices`]).
//! * Never green by default: a matcher that does not answer, a clock that is not trustworthy,
//!   a store that cannot be read all give red with "try again / use your ticket".
//! * The ticket path ([`Gates::scan`]) checks the same conditions without any face: nobody
//!   must use face access to enter.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use passage_config::{MatchingMode, Venue};
use passage_policy::access::{self, ClockGuard, GateContext, Lang, Reason};
use passage_policy::subjects::SubjectRecord;
use passage_policy::tickets::{Ticket, TicketError, TicketKey};
use passage_transport::{Bus, QoS};
use passage_wire::{Id, MatchMode};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agents::{Governance, FACE_ACCESS};
use crate::evidence::GateEvidence;
use crate::face::{FaceOutcome, FaceStage};
use crate::frames::RgbFrame;
use crate::keyholder::{Identification, IdentifyTimes, KeyHolder};
use crate::notices::{notice_topic, webhook_url, Notice, Notices};
use crate::{lock, now_secs};
use passage_vision::face::StageTimes;

pub mod kiosk;
pub mod qr;

use qr::find_qr;

/// Gate settings.
#[derive(Debug, Clone)]
pub struct GateSettings {
    /// How long a green or red stays on the kiosk before it returns to idle.
    pub display: Duration,
    /// Tolerated clock difference between the ticket issuer and the gate, seconds.
    pub skew_secs: i64,
    /// Largest step back of the gate's clock tolerated between decisions, seconds.
    pub clock_tolerance_secs: i64,
    /// After a refusal that concerned the attempt ([`Reason::is_retryable`]: several faces,
    /// matcher or clock unavailable, zone full), how long before the same person, still in
    /// view, is decided again.
    pub retry_pause: Duration,
}

impl Default for GateSettings {
    fn default() -> GateSettings {
        GateSettings {
            display: Duration::from_secs(4),
            skew_secs: 120,
            clock_tolerance_secs: 300,
            retry_pause: Duration::from_secs(2),
        }
    }
}

/// A retryable refusal already notified to a visitor at a gate is not notified again for
/// this long (they are waiting in view and decided again after each pause).
const NOTICE_REPEAT_SECS: i64 = 300;

/// What the kiosk shows.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KioskState {
    /// Increases with every change.
    pub seq: u64,
    /// `idle`, `green` or `red`.
    pub state: &'static str,
    /// Neutral message in English.
    pub en: &'static str,
    /// Neutral message in German.
    pub de: &'static str,
}

impl KioskState {
    fn idle(seq: u64) -> KioskState {
        KioskState {
            seq,
            state: "idle",
            en: "Look at the camera or show your ticket.",
            de: "Bitte in die Kamera schauen oder Ticket zeigen.",
        }
    }

    fn decided(seq: u64, reason: Reason) -> KioskState {
        KioskState {
            seq,
            state: if reason.is_green() { "green" } else { "red" },
            en: reason.kiosk(Lang::En),
            de: reason.kiosk(Lang::De),
        }
    }
}

/// How an attempt was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// A face.
    Face,
    /// A ticket code (QR in the frame, or a scanner).
    Ticket,
}

/// One decision (the caller sees the reason code; the kiosk only the neutral message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Why.
    pub reason: Reason,
    /// How.
    pub via: Via,
}

/// Why a frame or scan was not decided.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GateError {
    /// No such gate at this venue.
    #[error("no gate {0} here")]
    UnknownGate(String),
    /// The gate is deciding on an earlier attempt.
    #[error("the gate is busy with an earlier attempt")]
    Busy,
    /// Face access is not available at this gate (no face models loaded).
    #[error("face access is not available at this gate; use a ticket")]
    NoFaces,
    /// The frame could not be processed.
    #[error("the frame could not be processed: {0}")]
    Frame(String),
}

/// Counters of the gates (numbers of decisions, never who).
#[derive(Debug, Default)]
pub struct GatesStats {
    /// Green decisions.
    pub green: AtomicU64,
    /// Red decisions.
    pub red: AtomicU64,
    /// Frames answered busy.
    pub busy: AtomicU64,
    /// Notices delivered to a visitor's device (box, MQTT or webhook).
    pub notices: AtomicU64,
}

struct GateState {
    zone: Id,
    mode: MatchMode,
    /// One attempt at a time.
    attempt: tokio::sync::Mutex<()>,
    faces: Option<Arc<Mutex<FaceStage>>>,
    kiosk: watch::Sender<KioskState>,
}

struct Inner {
    venue: Id,
    gates: BTreeMap<Id, GateState>,
    keyholder: Arc<KeyHolder>,
    bus: Bus,
    governance: Governance,
    tickets: Arc<TicketKey>,
    notices: Arc<Notices>,
    purpose: Id,
    settings: GateSettings,
    clock: Mutex<ClockGuard>,
    full_zones: Mutex<HashSet<String>>,
    seq: AtomicU64,
    stats: GatesStats,
    webhooks: Option<reqwest::Client>,
    evidence: Option<GateEvidence>,
    tracker: TaskTracker,
}

/// The gates of one venue. Cheap to clone.
#[derive(Clone)]
pub struct Gates {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Gates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gates").field("venue", &self.inner.venue).field("gates", &self.inner.gates.len()).finish()
    }
}

/// Milliseconds spent in each stage of one camera frame at a gate ([`Gates::frame_timed`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct GateTimings {
    /// Looking for a QR code in the frame.
    pub qr_ms: f64,
    /// The face chain: detection, alignment, liveness, embedding.
    pub face: StageTimes,
    /// Identification: probe encryption, the matcher exchange, decryption, subject lookup.
    pub identify: IdentifyTimes,
    /// Consent, linked tickets (read from the subject store) and capacity.
    pub policy_ms: f64,
    /// When the decision was made (the kiosk's state changes right after).
    pub decided_at: Option<Instant>,
}

/// The parts a venue's gates are built from.
pub struct GateParts {
    /// The venue's key holder and its broker connection.
    pub keyholder: Arc<KeyHolder>,
    /// The key holder's bus.
    pub bus: Bus,
    /// Consent, audit log and subject records.
    pub governance: Governance,
    /// The venue's ticket key.
    pub tickets: Arc<TicketKey>,
    /// The edge agent's notice box.
    pub notices: Arc<Notices>,
    /// A face stage per gate (`None`: tickets only).
    pub faces: Option<Box<dyn Fn() -> FaceStage + Send>>,
    /// Evidence mode (`faces.evidence`; `None`: off, the default): each camera frame that led
    /// to a face decision is kept, anonymised, until the venue's evidence retention expires it.
    pub evidence: Option<GateEvidence>,
}

impl Gates {
    /// The gates of `venue`, each matching in its own mode (`default_mode` unless it sets one).
    ///
    /// # Panics
    /// Never: the purpose identifier is a valid constant.
    pub fn new(
        venue: &Venue,
        default_mode: MatchingMode,
        parts: GateParts,
        settings: GateSettings,
        tracker: &TaskTracker,
    ) -> Gates {
        let gates = venue
            .gates
            .iter()
            .map(|g| {
                let mode = match g.matching.unwrap_or(default_mode) {
                    MatchingMode::Score => MatchMode::Score,
                    MatchingMode::Decision => MatchMode::Decision,
                };
                let faces = parts.faces.as_ref().map(|make| Arc::new(Mutex::new(make())));
                let (kiosk, _) = watch::channel(KioskState::idle(0));
                (
                    g.id.clone(),
                    GateState { zone: g.zone.clone(), mode, attempt: tokio::sync::Mutex::new(()), faces, kiosk },
                )
            })
            .collect();
        #[allow(clippy::expect_used)]
        let purpose = Id::new(FACE_ACCESS).expect("a valid constant identifier");
        Gates {
            inner: Arc::new(Inner {
                venue: venue.id.clone(),
                gates,
                keyholder: parts.keyholder,
                bus: parts.bus,
                governance: parts.governance,
                tickets: parts.tickets,
                notices: parts.notices,
                purpose,
                clock: Mutex::new(ClockGuard::new(settings.clock_tolerance_secs)),
                settings,
                full_zones: Mutex::new(HashSet::new()),
                seq: AtomicU64::new(1),
                stats: GatesStats::default(),
                webhooks: passage_transport::webhook::client(Duration::from_secs(5)),
                evidence: parts.evidence,
                tracker: tracker.clone(),
            }),
        }
    }

    /// The venue.
    pub fn venue(&self) -> &Id {
        &self.inner.venue
    }

    /// The gates' identifiers.
    pub fn gate_ids(&self) -> Vec<Id> {
        self.inner.gates.keys().cloned().collect()
    }

    /// The counters.
    pub fn stats(&self) -> &GatesStats {
        &self.inner.stats
    }

    /// Whether the gates can use faces.
    pub fn has_faces(&self) -> bool {
        self.inner.gates.values().any(|g| g.faces.is_some())
    }

    /// The live kiosk state of `gate`.
    ///
    /// # Errors
    /// [`GateError::UnknownGate`].
    pub fn kiosk(&self, gate: &str) -> Result<watch::Receiver<KioskState>, GateError> {
        Ok(self.gate(gate)?.1.kiosk.subscribe())
    }

    /// Starts an attempt at `gate`: its state, held until the guard drops.
    fn attempt(&self, gate: &str) -> Result<(Id, &GateState, tokio::sync::MutexGuard<'_, ()>), GateError> {
        let (id, state) = self.gate(gate)?;
        let Ok(guard) = state.attempt.try_lock() else {
            self.inner.stats.busy.fetch_add(1, Ordering::Relaxed);
            return Err(GateError::Busy);
        };
        Ok((id, state, guard))
    }

    /// Refuses early when `gate` is unknown or deciding on another attempt, so a caller can skip
    /// work (decoding a frame) that would be answered busy anyway. Takes nothing: the attempt
    /// itself checks again.
    ///
    /// # Errors
    /// Unknown or busy gate.
    pub fn ready(&self, gate: &str) -> Result<(), GateError> {
        self.attempt(gate).map(|_| ())
    }

    /// The result mode of `gate`.
    pub fn mode(&self, gate: &Id) -> Option<MatchMode> {
        self.inner.gates.get(gate).map(|g| g.mode)
    }

    fn gate(&self, gate: &str) -> Result<(Id, &GateState), GateError> {
        let id = Id::new(gate).map_err(|_| GateError::UnknownGate(gate.chars().take(64).collect()))?;
        let state = self.inner.gates.get(&id).ok_or_else(|| GateError::UnknownGate(id.to_string()))?;
        Ok((id, state))
    }

    /// Marks `zone` full or not (from analytics' capacity alerts).
    pub fn set_zone_full(&self, zone: &str, full: bool) {
        let mut zones = lock(&self.inner.full_zones);
        if full {
            zones.insert(zone.to_owned());
        } else {
            zones.remove(zone);
        }
    }

    /// The zones whose gates are closed by a capacity alert now, sorted.
    pub fn full_zones(&self) -> Vec<String> {
        let mut zones: Vec<String> = lock(&self.inner.full_zones).iter().cloned().collect();
        zones.sort();
        zones
    }

    /// Listens to analytics' capacity alerts for this venue (`passage/v1/{venue}/alerts/+`):
    /// a raised alert closes the gates into that zone until it is cleared.
    ///
    /// # Errors
    /// When the subscription cannot be made.
    pub async fn follow_capacity_alerts(
        &self,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<(), passage_transport::BusError> {
        let filter = passage_wire::topics::alerts_filter(&self.inner.venue);
        let mut alerts = self.inner.bus.subscribe(&filter, QoS::AtLeastOnce, 64).await?;
        let gates = self.clone();
        tracker.spawn(async move {
            loop {
                let message = tokio::select! {
                    () = cancel.cancelled() => break,
                    m = alerts.recv() => match m { Some(m) => m, None => break },
                };
                match passage_wire::CapacityAlert::decode(&message.payload) {
                    Ok(alert) if alert.venue == gates.inner.venue => {
                        let full = alert.state == passage_wire::AlertState::Raised;
                        tracing::info!(venue = %gates.inner.venue, zone = %alert.zone, full, "zone capacity alert");
                        gates.set_zone_full(alert.zone.as_str(), full);
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "capacity alert not understood"),
                }
            }
        });
        Ok(())
    }

    /// A camera frame at `gate`: a QR ticket in it is checked as a ticket; otherwise its faces
    /// go through the face path. `None`: nothing to decide (no face, or the same person as a
    /// recent attempt, whose decision stands).
    ///
    /// # Errors
    /// Unknown gate, busy gate, no face models, or a frame the face chain refused.
    pub async fn frame(&self, gate: &str, frame: RgbFrame) -> Result<Option<Decision>, GateError> {
        self.frame_timed(gate, frame, &mut GateTimings::default()).await
    }

    /// [`Gates::frame`], recording the time of each stage in `times` (`passage bench gate`).
    ///
    /// # Errors
    /// As [`Gates::frame`].
    pub async fn frame_timed(
        &self,
        gate: &str,
        frame: RgbFrame,
        times: &mut GateTimings,
    ) -> Result<Option<Decision>, GateError> {
        let (gate_id, state, _attempt) = self.attempt(gate)?;
        let stage = state.faces.clone();
        let seen = Instant::now();
        // The QR search runs on a second core beside the face chain; a ticket in the frame
        // wins, and the faces' outcomes are then dropped (embeddings wiped).
        let keep = self.inner.evidence.is_some();
        let (code, outcomes, qr_ms, face, kept) = tokio::task::spawn_blocking(move || {
            let (qr, faces) = std::thread::scope(|scope| {
                let qr = scope.spawn(|| {
                    let started = Instant::now();
                    (find_qr(&frame), started.elapsed().as_secs_f64() * 1e3)
                });
                let faces = stage.as_ref().map(|stage| lock(stage).observe(&frame, seen));
                (qr.join(), faces)
            });
            let kept = keep.then_some(frame);
            let (code, qr_ms) = qr.map_err(|_| GateError::Frame("the QR search failed".into()))?;
            if code.is_some() {
                // The ticket decides: the faces seen beside it start no approach.
                if let (Some(stage), Some(Ok((outcomes, _)))) = (&stage, &faces) {
                    for outcome in outcomes {
                        if let FaceOutcome::Probe(embedding) = outcome {
                            lock(stage).forget(embedding);
                        }
                    }
                }
                return Ok((code, Vec::new(), qr_ms, StageTimes::default(), kept));
            }
            let Some(outcomes) = faces else { return Err(GateError::NoFaces) };
            let (outcomes, face) = outcomes.map_err(|e| GateError::Frame(e.to_string()))?;
            Ok((None, outcomes, qr_ms, face, kept))
        })
        .await
        .map_err(|_| GateError::Frame("the face chain stopped".into()))??;
        (times.qr_ms, times.face) = (qr_ms, face);
        // A frame decided by its ticket is not kept: the anonymiser hides faces, not the code.
        let kept = kept.filter(|_| code.is_none());
        let decision = self.frame_decision(&gate_id, state, code, outcomes, times).await;
        if let (Some(_), Some(frame)) = (&decision, kept) {
            self.keep_evidence(&gate_id, frame);
        }
        Ok(decision)
    }

    /// The decision on one frame's ticket code or faces (`None`: nothing to decide yet).
    async fn frame_decision(
        &self,
        gate_id: &Id,
        state: &GateState,
        code: Option<String>,
        outcomes: Vec<FaceOutcome>,
        times: &mut GateTimings,
    ) -> Option<Decision> {
        if let Some(code) = code {
            let reason = self.ticket_reason(&code, &state.zone);
            drop(code);
            times.decided_at = Some(Instant::now());
            return Some(self.conclude(gate_id, state, reason, Via::Ticket, None).await);
        }
        let sizeable: Vec<&FaceOutcome> = outcomes.iter().filter(|o| !matches!(o, FaceOutcome::NotEmbedded)).collect();
        let (reason, visitor) = match sizeable.as_slice() {
            [] | [FaceOutcome::Duplicate] | [FaceOutcome::NotEmbedded] => return None,
            [_, _, ..] => (Reason::OneAtATime, None),
            [FaceOutcome::NotLive] => (Reason::NotLive, None),
            [FaceOutcome::Probe(embedding)] => self.face_reason(gate_id, state, embedding.as_slice(), times).await,
        };
        times.decided_at = Some(Instant::now());
        if let (true, Some(stage)) = (reason.is_retryable(), &state.faces) {
            // The refusal concerned the attempt: whoever stays in view tries again shortly.
            let at = Instant::now() + self.inner.settings.retry_pause;
            let mut stage = lock(stage);
            for outcome in &outcomes {
                if let FaceOutcome::Probe(embedding) = outcome {
                    stage.retry_at(embedding, at);
                }
            }
        }
        Some(self.conclude(gate_id, state, reason, Via::Face, visitor).await)
    }

    /// Evidence mode: anonymises `frame` off the decision path and keeps it; the original
    /// pixels are wiped either way. Failures are logged without paths or contents.
    fn keep_evidence(&self, gate: &Id, frame: RgbFrame) {
        let Some(evidence) = self.inner.evidence.clone() else { return };
        let (gate, governance, venue) = (gate.clone(), self.inner.governance.clone(), self.inner.venue.clone());
        self.inner.tracker.spawn(async move {
            let at = std::time::SystemTime::now();
            let gate_name = gate.clone();
            let kept = tokio::task::spawn_blocking(move || {
                let RgbFrame { w, h, rgb, .. } = frame;
                let anonymised = evidence.anonymiser.frame(rgb, w, h).map_err(|e| e.to_string())?;
                evidence.store.save(&anonymised, &gate_name, at).map(|_| ()).map_err(|e| e.to_string())
            })
            .await;
            let outcome = match kept {
                Ok(Ok(())) => "anonymised frame kept".to_owned(),
                _ => {
                    tracing::warn!(%gate, "an evidence frame could not be kept");
                    "not kept".to_owned()
                }
            };
            governance
                .audit_optional_venue(format!("gate:{venue}/{gate}"), "evidence.keep", Some(&venue), None, outcome)
                .await;
        });
    }

    /// A face already embedded (by the caller's own face stage, or the simulator) at `gate`.
    ///
    /// # Errors
    /// Unknown or busy gate.
    pub async fn face(&self, gate: &str, embedding: &[f32]) -> Result<(Decision, Option<Id>), GateError> {
        let (gate_id, state, _attempt) = self.attempt(gate)?;
        let (reason, visitor) = self.face_reason(&gate_id, state, embedding, &mut GateTimings::default()).await;
        let recognised = visitor.as_ref().map(|v| v.id.clone());
        Ok((self.conclude(&gate_id, state, reason, Via::Face, visitor).await, recognised))
    }

    /// A ticket code from a scanner at `gate`.
    ///
    /// # Errors
    /// Unknown or busy gate.
    pub async fn scan(&self, gate: &str, code: &str) -> Result<Decision, GateError> {
        let (gate_id, state, _attempt) = self.attempt(gate)?;
        let reason = self.ticket_reason(code, &state.zone);
        Ok(self.conclude(&gate_id, state, reason, Via::Ticket, None).await)
    }

    fn now_checked(&self) -> Result<i64, Reason> {
        let now = now_secs();
        lock(&self.inner.clock).observe(now).map(|()| now)
    }

    fn context<'a>(&'a self, zone: &'a Id, now: i64) -> GateContext<'a> {
        GateContext {
            venue: self.inner.venue.as_str(),
            zone: zone.as_str(),
            now,
            skew_secs: self.inner.settings.skew_secs,
        }
    }

    fn capacity(&self, zone: &Id) -> Result<(), Reason> {
        if lock(&self.inner.full_zones).contains(zone.as_str()) {
            Err(Reason::ZoneFull)
        } else {
            Ok(())
        }
    }

    fn ticket_reason(&self, code: &str, zone: &Id) -> Reason {
        let outcome = (|| {
            let now = self.now_checked()?;
            let ticket = self.inner.tickets.verify(code).map_err(|_| Reason::TicketInvalid)?;
            access::check_ticket(&ticket, &self.context(zone, now))?;
            self.capacity(zone)
        })();
        outcome.err().unwrap_or(Reason::Admitted)
    }

    /// The face path after embedding: the reason, and the recognised visitor (if any).
    async fn face_reason(
        &self,
        gate: &Id,
        state: &GateState,
        embedding: &[f32],
        times: &mut GateTimings,
    ) -> (Reason, Option<Visitor>) {
        let now = match self.now_checked() {
            Ok(now) => now,
            Err(reason) => return (reason, None),
        };
        let inner = &self.inner;
        let identified =
            inner.keyholder.identify_timed(&inner.bus, gate, embedding, state.mode, &mut times.identify).await;
        let policy_started = Instant::now();
        let reason = self.policy_reason(identified, gate, state, now).await;
        times.policy_ms = policy_started.elapsed().as_secs_f64() * 1e3;
        reason
    }

    /// The access conditions after identification: consent, linked tickets, capacity.
    async fn policy_reason(
        &self,
        identified: Result<Identification, crate::keyholder::KeyHolderError>,
        gate: &Id,
        state: &GateState,
        now: i64,
    ) -> (Reason, Option<Visitor>) {
        let inner = &self.inner;
        let subject = match identified {
            Ok(Identification::Match(subject)) => subject,
            Ok(Identification::NoMatch | Identification::Ambiguous(_)) => return (Reason::NotRecognised, None),
            Err(error) => {
                tracing::warn!(%gate, %error, "identification failed; red (try again / use ticket)");
                return (Reason::MatcherUnavailable, None);
            }
        };
        let consent = lock(&inner.governance.consent).allows(&subject, &inner.venue, &inner.purpose);
        if !consent {
            return (Reason::ConsentWithdrawn, Some(Visitor { id: subject, contact: Contact::Unread }));
        }
        let (tickets, contact) = match self.visitor_records(&subject).await {
            Ok(read) => read,
            Err(reason) => return (reason, Some(Visitor { id: subject, contact: Contact::Unread })),
        };
        let checked = access::check_linked_tickets(&tickets, &self.context(&state.zone, now))
            .and_then(|()| self.capacity(&state.zone));
        // The contact is kept only for a refusal's notice; an admitted visitor's is wiped now.
        let contact = match checked {
            Ok(()) => {
                if let Some(mut contact) = contact {
                    zeroize::Zeroize::zeroize(&mut contact);
                }
                Contact::Unread
            }
            Err(_) => Contact::Read(contact),
        };
        (checked.err().unwrap_or(Reason::Admitted), Some(Visitor { id: subject, contact }))
    }

    /// What the gate needs of `subject` from the encrypted subject store, in one read (audited
    /// with the decision): the ticket codes linked at this venue, verified, and the latest
    /// contact (where a refusal's notice goes).
    async fn visitor_records(
        &self,
        subject: &Id,
    ) -> Result<(Vec<Result<Ticket, TicketError>>, Option<String>), Reason> {
        let Some(store) = self.inner.governance.subjects.clone() else { return Ok((Vec::new(), None)) };
        let key = subject.to_string();
        let records = tokio::task::spawn_blocking(move || lock(&store).export(&key)).await;
        let records = match records {
            Ok(Ok(records)) => records,
            Ok(Err(passage_policy::subjects::SubjectError::NoKey)) => Vec::new(),
            _ => {
                // The visitor sees the "try again / use ticket" outcome; the operator the cause
                // (not the error itself: its path names the subject's file).
                tracing::warn!("the subject store could not be read; red (try again / use ticket)");
                return Err(Reason::MatcherUnavailable);
            }
        };
        let venue = self.inner.venue.as_str();
        let tickets = records
            .iter()
            .filter_map(|r| match r {
                SubjectRecord::Ticket { venue: v, ticket, .. } if v == venue => Some(self.inner.tickets.verify(ticket)),
                _ => None,
            })
            .collect();
        Ok((tickets, latest_contact(records)))
    }

    /// Shows, audits and (for a recognised visitor refused) notifies.
    async fn conclude(
        &self,
        gate: &Id,
        state: &GateState,
        reason: Reason,
        via: Via,
        visitor: Option<Visitor>,
    ) -> Decision {
        let inner = &self.inner;
        let counter = if reason.is_green() { &inner.stats.green } else { &inner.stats.red };
        counter.fetch_add(1, Ordering::Relaxed);
        let seq = inner.seq.fetch_add(1, Ordering::Relaxed);
        state.kiosk.send_replace(KioskState::decided(seq, reason));
        let (kiosk, display, next) =
            (state.kiosk.clone(), inner.settings.display, inner.seq.fetch_add(1, Ordering::Relaxed));
        inner.tracker.spawn(async move {
            tokio::time::sleep(display).await;
            // Back to idle unless a newer decision is showing.
            kiosk.send_if_modified(|shown| {
                if shown.seq == seq {
                    *shown = KioskState::idle(next);
                    true
                } else {
                    false
                }
            });
        });
        let color = if reason.is_green() { "green" } else { "red" };
        let via_name = match via {
            Via::Face => "face",
            Via::Ticket => "ticket",
        };
        let outcome = format!("{color}: {} ({via_name})", reason.code());
        // A refused subject whose consent is gone is not tied to the entry.
        let audited = visitor.as_ref().map(|v| &v.id).filter(|_| reason != Reason::ConsentWithdrawn);
        inner
            .governance
            .audit_optional_venue(
                format!("gate:{}/{gate}", inner.venue),
                "access.decision",
                Some(&inner.venue),
                audited,
                outcome,
            )
            .await;
        if let (Some(visitor), false) = (visitor, reason.is_green()) {
            // A visitor waiting in view is decided again after each pause: tell them once.
            let now = now_secs();
            let repeated = reason.is_retryable()
                && inner.notices.told_recently(&visitor.id, gate, reason, now, NOTICE_REPEAT_SECS);
            if !repeated {
                self.notify(visitor, Notice::new(&inner.venue, gate, reason, now)).await;
            }
        }
        Decision { reason, via }
    }

    /// Delivers a denial notice to the visitor's own device: the portal's box, their MQTT
    /// topic, their webhook.
    async fn notify(&self, visitor: Visitor, notice: Notice) {
        let inner = &self.inner;
        let subject = &visitor.id;
        inner.notices.post(subject, notice.clone());
        inner.stats.notices.fetch_add(1, Ordering::Relaxed);
        let Ok(payload) = serde_json::to_vec(&notice) else { return };
        if let Some(topic) = inner.notices.topic(subject) {
            if let Err(error) =
                inner.bus.publish(&notice_topic(&inner.venue, &topic), QoS::AtLeastOnce, payload.clone()).await
            {
                tracing::warn!(%error, "denial notice not published");
            }
        }
        let contact = match visitor.contact {
            Contact::Read(contact) => contact,
            Contact::Unread => self.contact(subject).await,
        };
        if let (Some(url), Some(client)) = (contact.as_deref().and_then(webhook_url), inner.webhooks.clone()) {
            let url = url.to_owned();
            inner.tracker.spawn(async move {
                let sent = client.post(&url).header("content-type", "application/json").body(payload).send().await;
                match sent {
                    Ok(response) if response.status().is_success() => {}
                    Ok(response) => tracing::warn!(status = %response.status(), "notice webhook refused"),
                    Err(error) => tracing::warn!(error = %error.without_url(), "notice webhook failed"),
                }
            });
        }
    }

    async fn contact(&self, subject: &Id) -> Option<String> {
        let store = self.inner.governance.subjects.clone()?;
        let key = subject.to_string();
        let records = tokio::task::spawn_blocking(move || lock(&store).export(&key)).await.ok()?.ok()?;
        latest_contact(records)
    }

    /// Issues a ticket code with this venue's key (the box office; `passage ticket issue`).
    ///
    /// # Errors
    /// Invalid claims.
    pub fn issue_ticket(&self, ticket: &passage_policy::tickets::Ticket) -> Result<String, TicketError> {
        self.inner.tickets.issue(ticket)
    }
}

/// A recognised visitor: the pseudonym, and their contact once the gate has read their records.
struct Visitor {
    id: Id,
    contact: Contact,
}

/// Whether a visitor's contact was read with their tickets, so that a refusal's notice does not
/// read the subject store a second time.
enum Contact {
    Unread,
    Read(Option<String>),
}

/// The latest contact among a subject's records (a later record replaces an earlier one).
fn latest_contact(records: Vec<SubjectRecord>) -> Option<String> {
    records.into_iter().rev().find_map(|r| match r {
        SubjectRecord::Contact { value, .. } => Some(value),
        _ => None,
    })
}

/// The venue's ticket key from `path` (32 bytes, mode 0600), created there if missing.
///
/// # Errors
/// An unreadable file, a file of the wrong length, or one that cannot be written.
pub fn load_or_create_ticket_key(path: &std::path::Path) -> std::io::Result<TicketKey> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let bytes = zeroize::Zeroizing::new(bytes);
            let raw: [u8; passage_policy::tickets::KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: not a ticket key (32 bytes)", path.display()),
                )
            })?;
            let key = TicketKey::from_bytes(&raw);
            let mut raw = raw;
            zeroize::Zeroize::zeroize(&mut raw);
            Ok(key)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let key = TicketKey::generate(&mut passage_dp::csprng());
            passage_policy::atomic_file::write(
                path,
                key.to_bytes().as_slice(),
                passage_policy::atomic_file::Access::Private,
            )
            .map_err(std::io::Error::other)?;
            Ok(key)
        }
        Err(error) => Err(error),
    }
}
