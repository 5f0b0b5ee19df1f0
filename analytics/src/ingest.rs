//! The ingest task: count records from MQTT into the store.
//!
//! It subscribes through an MQTT 5 shared subscription (group `analytics`) to every venue's
//! count topic, so several analytics workers can split the load on a clustered broker. Each
//! payload is decoded with [`CountRecord::decode`] and checked against the deployment's
//! configuration; a refused message goes to the quarantine table with a reason code (never
//! its bytes). Valid records are batched, up to [`MAX_BATCH`] or [`MAX_BATCH_DELAY`], and
//! each batch is prepared (coded into Arrow columns) and committed in one transaction on a
//! blocking thread; the next batch is received and prepared while one commits. Redelivered
//! messages (QoS 1 is at-least-once) are absorbed by the store's idempotency on the record id
//! and interval start.
//!
//! Once a batch has committed, every record id in it (stored now, or already stored: a
//! redelivery) is acknowledged to its camera with a [`CountAck`] on
//! `passage/v1/{venue}/counts-ack/{camera}`; the edge deletes acknowledged records from its
//! spool and publishes the others again. A valid record refused for good (unknown camera,
//! unconfigured line or zone, topic mismatch, absurd value) is acknowledged as refused, so the
//! edge stops sending it; one that starts too far in the future is not (a later retry may be
//! accepted). Acknowledgements are best effort: a lost one only means the record comes again.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use passage_config::Config;
use passage_transport::{Bus, Message, QoS};
use std::collections::{BTreeMap, VecDeque};

use passage_wire::{topics, CountAck, CountRecord, DecodeError, Id, Metric, MAX_ACK_IDS, PROTOCOL_VERSION};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::{truncate, QuarantineEntry, MAX_QUARANTINE_TOPIC};
use crate::{now_unix, AnalyticsError, CodeBook, InsertOutcome, PreparedBatch, Store};

/// Most records committed in one transaction: one DuckDB row group. Large batches are what
/// make ingest fast: DuckDB writes an append of a full row group straight into the data file,
/// compressed, instead of through its WAL; under light load the delay below ends a batch long
/// before it is full.
pub const MAX_BATCH: usize = 122_880;
/// Most count items in one batch: a record may carry up to 512 (a camera watching many
/// zones), and a batch, with two more on their way, is held in memory.
pub const MAX_BATCH_ITEMS: usize = 2 * MAX_BATCH;
/// Longest a valid record waits before its batch is committed.
pub(crate) const MAX_BATCH_DELAY: Duration = Duration::from_millis(200);
/// Shared-subscription group of the analytics workers.
const GROUP: &str = "analytics";
/// Messages the bus may hold for this task before it applies back-pressure.
const CHANNEL_CAPACITY: usize = 8192;
/// How far in the future an interval may start (clock skew between camera and server).
const MAX_FUTURE_SECS: i64 = 5 * 60;
/// Largest magnitude of a released value that is still plausible.
const MAX_ABS_VALUE: u64 = 10_000_000;

/// Live ingest counters, shared with the HTTP side.
#[derive(Debug, Default)]
pub struct IngestStats {
    received: AtomicU64,
    inserted: AtomicU64,
    duplicates: AtomicU64,
    quarantined: AtomicU64,
    failed: AtomicU64,
}

/// A consistent-enough copy of [`IngestStats`] (each counter is read atomically).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IngestCounts {
    /// Messages received on the count topics.
    pub received: u64,
    /// Records stored.
    pub inserted: u64,
    /// Records already stored (redeliveries), skipped.
    pub duplicates: u64,
    /// Messages refused and quarantined.
    pub quarantined: u64,
    /// Valid records in batches the database refused: not acknowledged, so cameras that
    /// spool (the edge agent) send them again; lost for senders that do not.
    pub failed: u64,
}

impl IngestStats {
    /// Reads the counters.
    pub fn snapshot(&self) -> IngestCounts {
        IngestCounts {
            received: self.received.load(Ordering::Relaxed),
            inserted: self.inserted.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            quarantined: self.quarantined.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// Why a message was quarantined. The [`fmt::Display`] form is the stable reason code stored
/// in the quarantine table; it never contains payload content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// The topic is not `passage/v1/{venue}/counts/{camera}` with valid identifiers.
    BadTopic,
    /// Larger than the wire limit.
    Oversize,
    /// Written by another protocol version.
    UnsupportedVersion,
    /// Not a count record (syntax or shape).
    Malformed,
    /// A field outside its domain (the field name is a constant of the wire crate).
    InvalidField(&'static str),
    /// The venue or camera in the body is not the one in the topic.
    TopicMismatch,
    /// The venue is not configured.
    UnknownVenue,
    /// The camera is not configured for the venue.
    UnknownCamera,
    /// A count names a line or zone the camera is not configured to count.
    UnconfiguredMetric,
    /// The interval starts more than five minutes in the future.
    FutureStart,
    /// The interval starts before 1970 (no camera's clock says that; the hour arithmetic of
    /// the rollup assumes it does not happen).
    BeforeEpoch,
    /// A value's magnitude exceeds [`MAX_ABS_VALUE`].
    AbsurdValue,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::BadTopic => f.write_str("bad-topic"),
            Rejection::Oversize => f.write_str("oversize"),
            Rejection::UnsupportedVersion => f.write_str("unsupported-version"),
            Rejection::Malformed => f.write_str("malformed"),
            Rejection::InvalidField(field) => write!(f, "invalid-field:{field}"),
            Rejection::TopicMismatch => f.write_str("topic-mismatch"),
            Rejection::UnknownVenue => f.write_str("unknown-venue"),
            Rejection::UnknownCamera => f.write_str("unknown-camera"),
            Rejection::UnconfiguredMetric => f.write_str("unconfigured-metric"),
            Rejection::FutureStart => f.write_str("future-start"),
            Rejection::BeforeEpoch => f.write_str("before-epoch"),
            Rejection::AbsurdValue => f.write_str("absurd-value"),
        }
    }
}

impl From<DecodeError> for Rejection {
    /// Keeps only the kind of a decode error: JSON error texts may quote the payload.
    fn from(error: DecodeError) -> Rejection {
        match error {
            DecodeError::Oversize { .. } => Rejection::Oversize,
            DecodeError::UnsupportedVersion { .. } => Rejection::UnsupportedVersion,
            DecodeError::Invalid { field, .. } => Rejection::InvalidField(field),
            _ => Rejection::Malformed,
        }
    }
}

/// The venue and camera levels of a count topic `passage/v1/{venue}/counts/{camera}`.
fn parse_counts_topic(topic: &str) -> Option<(Id, Id)> {
    let venue = topics::venue_of(topic)?;
    let rest = topic.strip_prefix(topics::ROOT)?.strip_prefix('/')?;
    let mut levels = rest.split('/');
    let _venue_level = levels.next()?;
    if levels.next()? != "counts" {
        return None;
    }
    let camera = Id::new(levels.next()?).ok()?;
    if levels.next().is_some() {
        return None;
    }
    Some((venue, camera))
}

/// Decodes a payload received on `topic` and checks it against `config`, at time `now`
/// (seconds since the Unix epoch).
pub(crate) fn validate(topic: &str, payload: &[u8], config: &Config, now: i64) -> Result<CountRecord, Rejection> {
    let (topic_venue, topic_camera) = parse_counts_topic(topic).ok_or(Rejection::BadTopic)?;
    let record = CountRecord::decode(payload)?;
    if record.venue != topic_venue || record.camera != topic_camera {
        return Err(Rejection::TopicMismatch);
    }
    let venue = config.venue(&record.venue).ok_or(Rejection::UnknownVenue)?;
    let camera = venue.cameras.iter().find(|camera| camera.id == record.camera).ok_or(Rejection::UnknownCamera)?;
    let counts_line = |line: &Id| camera.lines.contains(line);
    let watches_zone = |zone: &Id| camera.zones.contains(zone);
    for item in &record.items {
        let configured = match &item.metric {
            Metric::Crossings { line, .. } | Metric::Total { line, .. } => counts_line(line),
            Metric::Occupancy { zone }
            | Metric::Dwell { zone, .. }
            | Metric::Entries { zone }
            | Metric::Exits { zone } => watches_zone(zone),
            Metric::Transition { from, to } => watches_zone(from) && watches_zone(to),
        };
        if !configured {
            return Err(Rejection::UnconfiguredMetric);
        }
    }
    if record.start > now.saturating_add(MAX_FUTURE_SECS) {
        return Err(Rejection::FutureStart);
    }
    if record.start < 0 {
        return Err(Rejection::BeforeEpoch);
    }
    if record.items.iter().any(|item| item.value.unsigned_abs() > MAX_ABS_VALUE) {
        return Err(Rejection::AbsurdValue);
    }
    Ok(record)
}

/// Subscribes to every venue's count records on `bus` (shared subscription, QoS 1) and spawns
/// the ingest task on `tracker`. The task stores into `store` and counts into `stats`; when
/// `cancel` fires it takes what the bus has already delivered, commits its pending batch and
/// ends.
pub async fn spawn_ingest(
    bus: &Bus,
    config: Arc<Config>,
    store: Store,
    stats: Arc<IngestStats>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Result<(), AnalyticsError> {
    let filter = topics::shared(GROUP, topics::COUNTS_FILTER);
    let messages =
        bus.subscribe(&filter, QoS::AtLeastOnce, CHANNEL_CAPACITY).await.map_err(AnalyticsError::Subscribe)?;
    tracing::info!(filter = %filter, "analytics ingest subscribed");
    tracker.spawn(run(messages, config, Arc::new(Mutex::new(store)), stats, Some(bus.clone()), cancel));
    Ok(())
}

/// A record id to acknowledge to the camera whose count topic it came on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AckTarget {
    venue: Id,
    camera: Id,
    id: String,
}

/// Records and quarantine entries waiting for the next commit.
#[derive(Default)]
struct Pending {
    records: Vec<CountRecord>,
    /// Payload size of each of `records`.
    sizes: Vec<usize>,
    /// Count items in `records`.
    items: usize,
    quarantined: Vec<QuarantineEntry>,
    /// Valid records refused for good, acknowledged as refused after the commit.
    refused: Vec<AckTarget>,
    /// When the oldest waiting entry must be committed.
    deadline: Option<Instant>,
}

impl Pending {
    fn len(&self) -> usize {
        self.records.len() + self.quarantined.len()
    }

    /// Whether the batch should be committed now, before its delay is up.
    fn full(&self) -> bool {
        self.len() >= MAX_BATCH || self.items >= MAX_BATCH_ITEMS
    }

    fn touch(&mut self) {
        if self.deadline.is_none() {
            self.deadline = Some(Instant::now() + MAX_BATCH_DELAY);
        }
    }
}

/// The ingest loop. Ends when `cancel` fires or the bus closes; commits what it holds first.
/// Acknowledgements go out on `acks` (none when `None`).
pub(crate) async fn run(
    mut messages: mpsc::Receiver<Message>,
    config: Arc<Config>,
    store: Arc<Mutex<Store>>,
    stats: Arc<IngestStats>,
    acks: Option<Bus>,
    cancel: CancellationToken,
) {
    let mut pending = Pending::default();
    let book = store.lock().unwrap_or_else(PoisonError::into_inner).code_book();
    let mut commits =
        Commits { store, book, stats: stats.clone(), acks, in_flight: VecDeque::new(), acknowledging: Vec::new() };
    loop {
        let deadline = pending.deadline;
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            result = commits.oldest_done(), if !commits.in_flight.is_empty() => {
                commits.finish_oldest(result);
            }
            () = sleep_until(deadline) => {
                commits.flush(&mut pending).await;
            }
            message = messages.recv() => {
                let Some(message) = message else {
                    tracing::warn!("the MQTT subscription closed; analytics ingest stops");
                    break;
                };
                accept(&message, &config, &stats, &mut pending);
                if pending.full() {
                    commits.flush(&mut pending).await;
                }
            }
        }
    }
    // The bus has acknowledged what it delivered: take it before leaving.
    while let Ok(message) = messages.try_recv() {
        accept(&message, &config, &stats, &mut pending);
        if pending.full() {
            commits.flush(&mut pending).await;
        }
    }
    commits.flush(&mut pending).await;
    while !commits.in_flight.is_empty() {
        let result = commits.oldest_done().await;
        commits.finish_oldest(result);
    }
    // The last acknowledgements go out before the loop ends (each waits at most ACK_WAIT).
    for handle in commits.acknowledging.drain(..) {
        let _ = handle.await;
    }
    tracing::info!(counts = ?stats.snapshot(), "analytics ingest stopped");
}

/// Sleeps until `deadline`, or forever when there is none.
///
/// # Cancel safety
/// Cancel safe: it holds no state.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Validates one message into the pending batch or the pending quarantine.
fn accept(message: &Message, config: &Config, stats: &IngestStats, pending: &mut Pending) {
    stats.received.fetch_add(1, Ordering::Relaxed);
    match validate(&message.topic, &message.payload, config, now_unix()) {
        Ok(record) => {
            pending.items += record.items.len();
            pending.records.push(record);
            pending.sizes.push(message.payload.len());
        }
        Err(rejection) => {
            stats.quarantined.fetch_add(1, Ordering::Relaxed);
            if let Some(target) = refused_for_good(&message.topic, &message.payload, rejection) {
                pending.refused.push(target);
            }
            let reason = rejection.to_string();
            // The topic is untrusted too: bounded, and escaped so it cannot forge log lines.
            let topic = truncate(&message.topic, MAX_QUARANTINE_TOPIC);
            tracing::warn!(
                topic = %topic.escape_debug(),
                reason = %reason,
                payload_len = message.payload.len(),
                "count record quarantined"
            );
            pending.quarantined.push(QuarantineEntry {
                topic: topic.to_owned(),
                reason,
                payload_len: message.payload.len(),
            });
        }
    }
    pending.touch();
}

/// The record behind a refused message, when the refusal is final and the record can be told
/// back to its camera: the topic is a count topic and the payload a valid record. A start too
/// far in the future is not final (the clocks may catch up), nor is a message that does not
/// decode (it has no id to name).
fn refused_for_good(topic: &str, payload: &[u8], rejection: Rejection) -> Option<AckTarget> {
    if matches!(rejection, Rejection::FutureStart) {
        return None;
    }
    let (venue, camera) = parse_counts_topic(topic)?;
    let record = CountRecord::decode(payload).ok()?;
    Some(AckTarget { venue, camera, id: record.id })
}

/// Longest the acknowledgements of one batch wait for room in the MQTT client's queue.
const ACK_WAIT: Duration = Duration::from_secs(5);

/// The acknowledgements of `stored` and `refused` record ids, grouped per camera and at most
/// [`MAX_ACK_IDS`] ids a message: `(topic, payload, ids in it)`.
fn acknowledgements(stored: Vec<AckTarget>, refused: Vec<AckTarget>) -> Vec<(String, Vec<u8>, usize)> {
    let mut per_camera: BTreeMap<(Id, Id), (Vec<String>, Vec<String>)> = BTreeMap::new();
    for target in stored {
        per_camera.entry((target.venue, target.camera)).or_default().0.push(target.id);
    }
    for target in refused {
        per_camera.entry((target.venue, target.camera)).or_default().1.push(target.id);
    }
    let mut messages = Vec::new();
    for ((venue, camera), (mut ids, mut refused)) in per_camera {
        // A redelivery in the same batch is acknowledged once.
        ids.sort_unstable();
        ids.dedup();
        refused.sort_unstable();
        refused.dedup();
        let topic = topics::counts_ack(&venue, &camera);
        let mut ids = ids.into_iter().peekable();
        let mut refused = refused.into_iter().peekable();
        while ids.peek().is_some() || refused.peek().is_some() {
            let ack_ids: Vec<String> = ids.by_ref().take(MAX_ACK_IDS).collect();
            let ack_refused: Vec<String> = refused.by_ref().take(MAX_ACK_IDS - ack_ids.len()).collect();
            let n_ids = ack_ids.len() + ack_refused.len();
            let ack = CountAck {
                v: u32::from(PROTOCOL_VERSION),
                venue: venue.clone(),
                camera: camera.clone(),
                ids: ack_ids,
                refused: ack_refused,
            };
            messages.push((topic.clone(), ack.encode(), n_ids));
        }
    }
    messages
}

/// Publishes the acknowledgements of one batch, waiting at most [`ACK_WAIT`] in all for room
/// in the client's queue (a large batch acknowledges hundreds of cameras at once). Best
/// effort: while the broker is away the queue stays full; the edge then publishes the records
/// again and they are acknowledged next time.
async fn acknowledge(bus: Bus, stored: Vec<AckTarget>, refused: Vec<AckTarget>) {
    let messages = acknowledgements(stored, refused);
    let total: usize = messages.iter().map(|(_, _, n)| n).sum();
    let mut sent = 0;
    let published = tokio::time::timeout(ACK_WAIT, async {
        for (topic, payload, n) in messages {
            bus.publish(&topic, QoS::AtLeastOnce, payload).await?;
            sent += n;
        }
        Ok::<(), passage_transport::BusError>(())
    })
    .await;
    let problem = match published {
        Ok(Ok(())) => return,
        Ok(Err(error)) => error.to_string(),
        Err(_) => format!("no room in the MQTT client's queue within {} s", ACK_WAIT.as_secs()),
    };
    tracing::warn!(records = total - sent, reason = %problem, "acknowledgements not sent; the cameras will send again");
}

/// Most batches on their way into the store at once: one committing, the next one being
/// prepared (coded into Arrow columns on another core) and waiting for the store.
const MAX_IN_FLIGHT: usize = 2;

/// A batch handed to a blocking thread, with what its acknowledgement needs.
struct InFlight {
    handle: tokio::task::JoinHandle<Result<InsertOutcome, AnalyticsError>>,
    committed_ids: Vec<AckTarget>,
    refused: Vec<AckTarget>,
    n_records: u64,
    n_quarantined: usize,
}

/// The batches being committed, oldest first, and what committing and acknowledging needs.
struct Commits {
    store: Arc<Mutex<Store>>,
    book: CodeBook,
    stats: Arc<IngestStats>,
    acks: Option<Bus>,
    in_flight: VecDeque<InFlight>,
    /// Acknowledgements being published (awaited before the loop ends).
    acknowledging: Vec<tokio::task::JoinHandle<()>>,
}

impl Commits {
    /// Hands the pending batch and quarantine entries to a blocking thread, which prepares the
    /// batch and then commits it; the ingest loop goes on receiving meanwhile. With
    /// [`MAX_IN_FLIGHT`] batches already on their way, waits for the oldest first
    /// (back-pressure: the bus holds what arrives meanwhile).
    async fn flush(&mut self, pending: &mut Pending) {
        pending.deadline = None;
        if pending.len() == 0 {
            return;
        }
        while self.in_flight.len() >= MAX_IN_FLIGHT {
            let result = self.oldest_done().await;
            self.finish_oldest(result);
        }
        let records = std::mem::take(&mut pending.records);
        let sizes = std::mem::take(&mut pending.sizes);
        pending.items = 0;
        let quarantined = std::mem::take(&mut pending.quarantined);
        let refused = std::mem::take(&mut pending.refused);
        let committed_ids: Vec<AckTarget> = records
            .iter()
            .map(|record| AckTarget {
                venue: record.venue.clone(),
                camera: record.camera.clone(),
                id: record.id.clone(),
            })
            .collect();
        let n_records = records.len() as u64;
        let n_quarantined = quarantined.len();
        let (store, book) = (self.store.clone(), self.book.clone());
        let handle = tokio::task::spawn_blocking(move || {
            let prepared = PreparedBatch::new(&records, &sizes, &book, now_unix());
            drop(records);
            let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(error) = store.quarantine_all(&quarantined) {
                tracing::error!(%error, entries = n_quarantined, "could not record quarantined messages");
            }
            store.insert_prepared(prepared?)
        });
        self.in_flight.push_back(InFlight { handle, committed_ids, refused, n_records, n_quarantined });
    }

    /// Waits for the oldest batch's commit (forever when none is on its way).
    ///
    /// # Cancel safety
    /// Cancel safe: the commit goes on, and the next call waits for it again.
    async fn oldest_done(&mut self) -> Result<Result<InsertOutcome, AnalyticsError>, tokio::task::JoinError> {
        match self.in_flight.front_mut() {
            Some(flight) => (&mut flight.handle).await,
            None => std::future::pending().await,
        }
    }

    /// Counts the oldest batch's outcome and acknowledges it: the stored (and already
    /// stored) records once committed, none if the commit failed; the refused ones always.
    fn finish_oldest(&mut self, committed: Result<Result<InsertOutcome, AnalyticsError>, tokio::task::JoinError>) {
        let Some(InFlight { committed_ids, refused, n_records, n_quarantined, .. }) = self.in_flight.pop_front() else {
            return;
        };
        let stats = &self.stats;
        let stored = match committed {
            Ok(Ok(outcome)) => {
                stats.inserted.fetch_add(outcome.inserted, Ordering::Relaxed);
                stats.duplicates.fetch_add(outcome.duplicates, Ordering::Relaxed);
                tracing::debug!(
                    inserted = outcome.inserted,
                    duplicates = outcome.duplicates,
                    quarantined = n_quarantined,
                    "count batch committed"
                );
                if outcome.duplicates > 0 {
                    tracing::info!(
                        records = outcome.duplicates,
                        reason = "duplicate",
                        "redelivered count records quarantined (already stored; acknowledged again)"
                    );
                }
                // Committed: now, and only now, the cameras may forget these records.
                committed_ids
            }
            Ok(Err(error)) => {
                stats.failed.fetch_add(n_records, Ordering::Relaxed);
                tracing::error!(%error, records = n_records, "could not store a count batch; cameras will send it again");
                Vec::new()
            }
            Err(error) => {
                stats.failed.fetch_add(n_records, Ordering::Relaxed);
                tracing::error!(%error, records = n_records, "the database worker failed; cameras will send the batch again");
                Vec::new()
            }
        };
        if let Some(bus) = &self.acks {
            self.acknowledging.retain(|handle| !handle.is_finished());
            self.acknowledging.push(tokio::spawn(acknowledge(bus.clone(), stored, refused)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{crossing, id, record};
    use passage_wire::{CountItem, Direction};

    const NOW: i64 = 1_700_000_000;

    fn topic(venue: &str, camera: &str) -> String {
        format!("passage/v1/{venue}/counts/{camera}")
    }

    fn good() -> CountRecord {
        record("rec-1", "arena", "cam-north", NOW - 60, vec![crossing("north-gate", Direction::In, 12, 1.5)])
    }

    fn check(topic: &str, record: &CountRecord) -> Result<CountRecord, Rejection> {
        validate(topic, &record.encode(), &Config::default(), NOW)
    }

    #[test]
    fn a_valid_record_passes() {
        assert_eq!(check(&topic("arena", "cam-north"), &good()), Ok(good()));
        let mut near_future = good();
        near_future.start = NOW + MAX_FUTURE_SECS;
        assert!(check(&topic("arena", "cam-north"), &near_future).is_ok());
    }

    #[test]
    fn each_problem_has_its_reason() {
        let mut other_venue = good();
        other_venue.venue = id("mall");
        let mut other_camera = good();
        other_camera.camera = id("cam-ghost");
        let mut wrong_line = good();
        wrong_line.items = vec![crossing("east-gate", Direction::In, 1, 1.0)];
        let mut wrong_zone = good();
        wrong_zone.items = vec![CountItem { metric: Metric::Occupancy { zone: id("concourse") }, value: 1, std: 1.0 }];
        let mut future = good();
        future.start = NOW + MAX_FUTURE_SECS + 1;
        let mut absurd = good();
        absurd.items[0].value = -10_000_001;
        let mut extreme = good();
        extreme.items[0].value = i64::MIN;
        let mut bad_secs = good();
        bad_secs.secs = 0;
        let mut ancient = good();
        ancient.start = i64::MIN;

        let cases: Vec<(&str, String, CountRecord, &str)> = vec![
            ("venue in body differs from topic", topic("arena", "cam-north"), other_venue.clone(), "topic-mismatch"),
            ("camera in body differs from topic", topic("arena", "cam-north"), other_camera.clone(), "topic-mismatch"),
            ("unknown venue", topic("mall", "cam-north"), other_venue, "unknown-venue"),
            ("unknown camera", topic("arena", "cam-ghost"), other_camera, "unknown-camera"),
            ("line the camera does not count", topic("arena", "cam-north"), wrong_line, "unconfigured-metric"),
            ("zone the camera does not watch", topic("arena", "cam-north"), wrong_zone, "unconfigured-metric"),
            ("start too far ahead", topic("arena", "cam-north"), future, "future-start"),
            ("start before 1970", topic("arena", "cam-north"), ancient, "before-epoch"),
            ("absurd value", topic("arena", "cam-north"), absurd, "absurd-value"),
            ("most negative value", topic("arena", "cam-north"), extreme, "absurd-value"),
            ("zero-length interval", topic("arena", "cam-north"), bad_secs, "invalid-field:secs"),
            ("not a counts topic", "passage/v1/arena/match".into(), good(), "bad-topic"),
            ("extra topic level", format!("{}/x", topic("arena", "cam-north")), good(), "bad-topic"),
            ("invalid camera level", topic("arena", "Cam"), good(), "bad-topic"),
        ];
        for (name, topic, record, expected) in cases {
            let got = check(&topic, &record).map(|_| ()).map_err(|r| r.to_string());
            assert_eq!(got, Err(expected.to_owned()), "case {name}");
        }
    }

    #[test]
    fn undecodable_payloads_are_refused_without_quoting_them() {
        let config = Config::default();
        let at = topic("arena", "cam-north");
        let secret = br#"{"v":1,"id":"x","venue":"arena","camera":"cam-north","start":0,"secs":60,"mechanism":"jane-doe-was-here","epsilon":1,"items":[]}"#;
        let reason = validate(&at, secret, &config, NOW).map(|_| ()).map_err(|r| r.to_string());
        assert_eq!(reason, Err("malformed".to_owned()));
        let reason = validate(&at, b"\xff\x00", &config, NOW).map(|_| ()).map_err(|r| r.to_string());
        assert_eq!(reason, Err("malformed".to_owned()));
        let future_version = br#"{"v":9}"#;
        let reason = validate(&at, future_version, &config, NOW).map(|_| ()).map_err(|r| r.to_string());
        assert_eq!(reason, Err("unsupported-version".to_owned()));
        let huge = vec![b' '; passage_wire::MAX_JSON_BYTES + 1];
        let reason = validate(&at, &huge, &config, NOW).map(|_| ()).map_err(|r| r.to_string());
        assert_eq!(reason, Err("oversize".to_owned()));
    }

    fn message(topic: String, payload: Vec<u8>) -> Message {
        Message { topic, payload: payload.into(), response_topic: None, correlation: None }
    }

    /// The loop, fed directly: valid records are stored once, redeliveries counted, bad ones
    /// quarantined, and what is pending at shutdown is committed.
    #[tokio::test]
    async fn the_loop_stores_quarantines_and_flushes_on_shutdown() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("a.duckdb")).expect("open");
        let reader = store.try_clone().expect("clone");
        let stats = Arc::new(IngestStats::default());
        let cancel = CancellationToken::new();
        let (tx, rx) = mpsc::channel(16);
        let now = now_unix();
        let mut first = good();
        first.start = now - 120;
        let mut second = good();
        second.id = "rec-2".into();
        second.start = now - 60;
        tx.send(message(topic("arena", "cam-north"), first.encode())).await.expect("send");
        tx.send(message(topic("arena", "cam-north"), first.encode())).await.expect("send");
        tx.send(message(topic("arena", "cam-north"), second.encode())).await.expect("send");
        tx.send(message(topic("arena", "cam-ghost"), second.encode())).await.expect("send");
        // Cancel before the loop has even started: everything delivered must still be stored.
        cancel.cancel();
        run(rx, Arc::new(Config::default()), Arc::new(Mutex::new(store)), stats.clone(), None, cancel).await;

        let counts = stats.snapshot();
        assert_eq!(counts, IngestCounts { received: 4, inserted: 2, duplicates: 1, quarantined: 1, failed: 0 });
        let summary = reader.summary().expect("summary");
        assert_eq!(
            (summary.records, summary.items, summary.quarantined),
            (2, 2, 2),
            "the redelivery is quarantined too"
        );
        let reasons: Vec<&str> = summary.quarantine_reasons.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(reasons, ["duplicate", "topic-mismatch"]);
        let totals = reader.totals(&id("arena"), now - 3600, now).expect("totals");
        assert_eq!(totals.len(), 1);
        assert_eq!(totals[0].value, 24);
    }

    /// A batch is committed after at most MAX_BATCH_DELAY while the task keeps running.
    #[tokio::test]
    async fn a_partial_batch_is_committed_after_the_delay() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("a.duckdb")).expect("open");
        let stats = Arc::new(IngestStats::default());
        let cancel = CancellationToken::new();
        let (tx, rx) = mpsc::channel(16);
        let tracker = TaskTracker::new();
        tracker.spawn(run(
            rx,
            Arc::new(Config::default()),
            Arc::new(Mutex::new(store)),
            stats.clone(),
            None,
            cancel.clone(),
        ));
        let mut record = good();
        record.start = now_unix() - 60;
        tx.send(message(topic("arena", "cam-north"), record.encode())).await.expect("send");
        let deadline = Instant::now() + Duration::from_secs(5);
        while stats.snapshot().inserted == 0 {
            assert!(Instant::now() < deadline, "batch never committed: {:?}", stats.snapshot());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
    }

    /// An embedded broker on loopback and two connected clients (`analytics-{tag}`,
    /// `camera-{tag}`).
    async fn broker_and_two_clients(
        tag: &str,
    ) -> (passage_transport::EmbeddedBroker, CancellationToken, TaskTracker, Bus, Bus) {
        let broker = passage_transport::EmbeddedBroker::start(0).expect("broker");
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let bus_config = |client: String| passage_transport::BusConfig {
            host: broker.addr().ip().to_string(),
            port: broker.addr().port(),
            client_id: client,
        };
        let a = Bus::connect(bus_config(format!("analytics-{tag}")), cancel.clone(), &tracker).await.expect("connect");
        let b = Bus::connect(bus_config(format!("camera-{tag}")), cancel.clone(), &tracker).await.expect("connect");
        (broker, cancel, tracker, a, b)
    }

    /// After the commit, every record of the batch (stored now or a redelivery) is
    /// acknowledged to its camera; a record refused for good is acknowledged as refused; one
    /// that starts too far in the future is not acknowledged (a later retry may pass).
    #[tokio::test]
    async fn committed_records_are_acknowledged_to_their_camera() {
        let (_broker, cancel, tracker, ingest_bus, camera_bus) = broker_and_two_clients("ack").await;
        let mut acks =
            camera_bus.subscribe("passage/v1/+/counts-ack/+", QoS::AtLeastOnce, 64).await.expect("subscribe");
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("a.duckdb")).expect("open");
        let stats = Arc::new(IngestStats::default());
        spawn_ingest(&ingest_bus, Arc::new(Config::default()), store, stats.clone(), cancel.clone(), &tracker)
            .await
            .expect("spawn ingest");
        tokio::time::sleep(Duration::from_millis(200)).await;

        let now = now_unix();
        let mut first = good();
        first.start = now - 120;
        let mut second = good();
        second.id = "rec-2".into();
        second.start = now - 60;
        let mut ghost = good();
        ghost.id = "rec-ghost".into();
        ghost.camera = id("cam-ghost");
        ghost.start = now - 60;
        let mut future = good();
        future.id = "rec-future".into();
        future.start = now + 3600;
        for record in [&first, &first, &second, &ghost, &future] {
            let at = topics::counts(&record.venue, &record.camera);
            camera_bus.publish(&at, QoS::AtLeastOnce, record.encode()).await.expect("publish");
        }

        let mut stored = std::collections::BTreeSet::new();
        let mut refused = std::collections::BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while stored.len() < 2 || refused.is_empty() {
            let message =
                tokio::time::timeout_at(deadline, acks.recv()).await.expect("acknowledged in time").expect("open");
            let ack = CountAck::decode(&message.payload).expect("a valid acknowledgement");
            assert_eq!(message.topic, topics::counts_ack(&ack.venue, &ack.camera));
            stored.extend(ack.ids.into_iter().map(|id| (ack.camera.to_string(), id)));
            refused.extend(ack.refused.into_iter().map(|id| (ack.camera.to_string(), id)));
        }
        // Whatever else comes within another batch delay must not name the future record.
        while let Ok(Some(message)) = tokio::time::timeout(MAX_BATCH_DELAY * 2, acks.recv()).await {
            let ack = CountAck::decode(&message.payload).expect("a valid acknowledgement");
            stored.extend(ack.ids.into_iter().map(|id| (ack.camera.to_string(), id)));
            refused.extend(ack.refused.into_iter().map(|id| (ack.camera.to_string(), id)));
        }
        let pairs = |items: &[(&str, &str)]| -> std::collections::BTreeSet<(String, String)> {
            items.iter().map(|(camera, id)| ((*camera).to_owned(), (*id).to_owned())).collect()
        };
        assert_eq!(stored, pairs(&[("cam-north", "rec-1"), ("cam-north", "rec-2")]));
        assert_eq!(refused, pairs(&[("cam-ghost", "rec-ghost")]));
        let counts = stats.snapshot();
        assert_eq!((counts.inserted, counts.duplicates, counts.quarantined), (2, 1, 2), "{counts:?}");
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
    }

    /// Through a real broker on loopback: a camera publishes, the shared subscription
    /// delivers, the record lands in the database.
    #[tokio::test]
    async fn records_published_on_the_broker_are_stored() {
        let (_broker, cancel, tracker, ingest_bus, camera_bus) = broker_and_two_clients("test").await;
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("a.duckdb")).expect("open");
        let reader = store.try_clone().expect("clone");
        let stats = Arc::new(IngestStats::default());
        spawn_ingest(&ingest_bus, Arc::new(Config::default()), store, stats.clone(), cancel.clone(), &tracker)
            .await
            .expect("spawn ingest");
        // Give the broker a moment to register the subscription.
        tokio::time::sleep(Duration::from_millis(200)).await;

        let mut record = good();
        record.start = now_unix() - 60;
        let at = topics::counts(&record.venue, &record.camera);
        camera_bus.publish(&at, QoS::AtLeastOnce, record.encode()).await.expect("publish");
        camera_bus.publish(&at, QoS::AtLeastOnce, record.encode()).await.expect("publish again");
        camera_bus.publish(&at, QoS::AtLeastOnce, b"not json".to_vec()).await.expect("publish junk");

        let deadline = Instant::now() + Duration::from_secs(10);
        while stats.snapshot().inserted + stats.snapshot().duplicates < 2 || stats.snapshot().quarantined < 1 {
            assert!(Instant::now() < deadline, "not ingested: {:?}", stats.snapshot());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
        assert_eq!(
            stats.snapshot(),
            IngestCounts { received: 3, inserted: 1, duplicates: 1, quarantined: 1, failed: 0 }
        );
        let summary = reader.summary().expect("summary");
        assert_eq!((summary.records, summary.quarantined), (1, 2));
        let reasons: Vec<&str> = summary.quarantine_reasons.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(reasons, ["duplicate", "malformed"]);
    }
}
