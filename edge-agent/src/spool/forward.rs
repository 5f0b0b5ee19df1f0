//! The forwarder: the task that publishes a venue's spooled records and deletes them once
//! analytics has acknowledged them.
//!
//! * **Order.** Each round walks the spool oldest first: retries of records in flight come
//!   before records never sent, so per camera the records go out in release order.
//! * **Window.** At most `max_in_flight` records are published and unacknowledged at once.
//!   The rest wait, unpublished, in the spool, where the size bound may still merge them; a
//!   long outage therefore leaves at most one window of records unmergeable.
//! * **Retries.** A record not acknowledged within `ack_timeout` is published again, after
//!   `ack_timeout` × 1, 2, 4, then 8 at most. A broker PUBACK proves nothing here: a broker that
//!   restarts forgets its sessions, and a record published before analytics has subscribed
//!   again is dropped by the broker; only analytics' acknowledgement, sent after its database
//!   commit, counts. While no acknowledgement has come for a timeout, the forwarder only
//!   probes (one retry per timeout). When an acknowledgement comes, every record still in
//!   flight that was sent more than half a timeout before the acknowledged one is presumed
//!   lost and published again at once (analytics takes records in order). The timeout in
//!   force is `ack_timeout`, or three times the smoothed acknowledgement latency when
//!   analytics is slower (Karn's rule: only records sent once are measured; at most four times
//!   `ack_timeout`), so a busy database is not flooded with copies. Analytics stores each record id once, so the
//!   duplicates retries produce are absorbed there.
//! * **Non-blocking.** Records are handed to the MQTT client with [`Bus::try_publish`]: while
//!   the broker is away the client's queue fills up, and the forwarder keeps the records
//!   instead of waiting on it.
//!
//! The spool's file I/O (append, mark published, acknowledge) runs on blocking threads.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use passage_transport::{Bus, BusError, Message, QoS};
use passage_wire::{topics, CountAck, CountRecord, Id};
use tokio::sync::{mpsc, Notify};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Spool, SpoolError};
use crate::agents::CountingStats;

/// Records published and not yet acknowledged, at most, by default.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 128;
/// The retry delay grows up to this multiple of the acknowledgement timeout.
const MAX_BACKOFF_FACTOR: u32 = 8;
/// The timeout in force grows with a slow receiver up to this multiple of the configured one.
const MAX_ADAPTIVE_FACTOR: u32 = 4;
/// Acknowledgements the bus may hold for the forwarder.
const ACK_CHANNEL_CAPACITY: usize = 256;
/// Acknowledgement messages handled in one go (one blocking call, one write).
const ACKS_PER_BATCH: usize = 64;

/// Where a venue's spool lives and how its records are forwarded.
#[derive(Debug, Clone)]
pub struct ForwardOptions {
    /// The venue's spool directory (the demo uses `{data}/edge/spool/{venue}`).
    pub dir: PathBuf,
    /// Bound on the spool file, in bytes.
    pub max_bytes: u64,
    /// How long to wait for analytics' acknowledgement before publishing a record again.
    pub ack_timeout: Duration,
    /// Records published and not yet acknowledged, at most.
    pub max_in_flight: usize,
}

impl ForwardOptions {
    /// Options from the deployment's `[spool]` section, for the spool directory `dir`.
    pub fn from_config(dir: PathBuf, config: &passage_config::Spool) -> ForwardOptions {
        ForwardOptions {
            dir,
            max_bytes: config.max_bytes_per_venue,
            ack_timeout: Duration::from_secs(u64::from(config.ack_timeout_secs)),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

/// Why the forwarder could not start, or a record could not be spooled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// The spool refused the record or its file failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// Subscribing to the acknowledgements failed.
    #[error("cannot subscribe to count acknowledgements: {0}")]
    Subscribe(#[source] BusError),
    /// A blocking spool task panicked or was cancelled.
    #[error("the spool worker thread failed: {0}")]
    Worker(String),
}

struct Shared {
    venue: Id,
    spool: Mutex<Spool>,
    /// Woken when records were appended.
    wake: Notify,
    stats: Arc<CountingStats>,
}

fn lock(spool: &Mutex<Spool>) -> MutexGuard<'_, Spool> {
    spool.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The counting agent's handle on its venue's spool: appends records, which the forwarder
/// then publishes. Cheap to clone.
#[derive(Clone)]
pub struct SpoolWriter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SpoolWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoolWriter").field("venue", &self.shared.venue).finish_non_exhaustive()
    }
}

impl SpoolWriter {
    /// The venue's counting counters (spooled, published, acknowledged, ...).
    pub fn stats(&self) -> Arc<CountingStats> {
        self.shared.stats.clone()
    }

    /// Records waiting in the spool for acknowledgement.
    pub fn waiting(&self) -> usize {
        lock(&self.shared.spool).len()
    }

    /// Appends `records` to the spool durably (fsync) and wakes the forwarder; returns once
    /// they are on disk. A record the spool refuses is counted as dropped, the others are
    /// still spooled.
    ///
    /// # Errors
    /// The first record's error, if any record could not be spooled.
    ///
    /// # Cancel safety
    /// Dropping the future does not stop the append: it completes on its blocking thread.
    pub async fn push(&self, records: Vec<CountRecord>) -> Result<(), ForwardError> {
        let shared = self.shared.clone();
        let first_error = tokio::task::spawn_blocking(move || {
            let mut spool = lock(&shared.spool);
            let stats = &shared.stats;
            let mut first_error = None;
            for record in &records {
                match spool.append(record) {
                    Ok(outcome) => {
                        stats.records_spooled.fetch_add(1, Ordering::Relaxed);
                        stats.spool_merges.fetch_add(outcome.merged, Ordering::Relaxed);
                        stats.records_dropped.fetch_add(outcome.dropped, Ordering::Relaxed);
                    }
                    Err(error) => {
                        stats.records_dropped.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert(error);
                    }
                }
            }
            first_error
        })
        .await
        .map_err(|error| ForwardError::Worker(error.to_string()))?;
        self.shared.wake.notify_one();
        match first_error {
            None => Ok(()),
            Some(error) => Err(error.into()),
        }
    }
}

/// Opens the spool of `venue` (resuming what an earlier run left), subscribes to its
/// acknowledgements on `bus` and starts the forwarder on `tracker`. It counts into `stats` and
/// stops when `cancel` fires; records still waiting stay in the spool for the next start.
///
/// # Errors
/// [`ForwardError`] when the spool cannot be opened or the subscription fails.
pub async fn start(
    venue: &Id,
    options: ForwardOptions,
    bus: Bus,
    stats: Arc<CountingStats>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Result<SpoolWriter, ForwardError> {
    let open_venue = venue.clone();
    let (dir, max_bytes) = (options.dir.clone(), options.max_bytes);
    let (spool, report) = tokio::task::spawn_blocking(move || Spool::open(&open_venue, &dir, max_bytes))
        .await
        .map_err(|error| ForwardError::Worker(error.to_string()))??;
    if report.records > 0 {
        tracing::info!(
            venue = %venue,
            records = report.records,
            published_before = report.published,
            "spooled count records found: forwarding resumes"
        );
    }
    let acks = bus
        .subscribe(&topics::counts_ack_filter(venue), QoS::AtLeastOnce, ACK_CHANNEL_CAPACITY)
        .await
        .map_err(ForwardError::Subscribe)?;
    let shared = Arc::new(Shared { venue: venue.clone(), spool: Mutex::new(spool), wake: Notify::new(), stats });
    let forwarder = Forwarder {
        shared: shared.clone(),
        bus,
        options,
        flights: HashMap::new(),
        last_ack: None,
        last_probe: None,
        ack_latency: None,
    };
    tracker.spawn(forwarder.run(acks, cancel));
    Ok(SpoolWriter { shared })
}

/// A record handed to the MQTT client and not yet acknowledged.
struct Flight {
    attempts: u32,
    sent_at: Instant,
    due: Instant,
}

/// A record to hand over in this round.
struct Planned {
    id: String,
    camera: Id,
    payload: Bytes,
    /// Marked published in the spool before this round.
    marked: bool,
    /// In flight already (this is a retry).
    retry: bool,
}

struct Forwarder {
    shared: Arc<Shared>,
    bus: Bus,
    options: ForwardOptions,
    flights: HashMap<String, Flight>,
    /// When the last acknowledgement for this venue arrived.
    last_ack: Option<Instant>,
    /// When the last retry went out while analytics was silent.
    last_probe: Option<Instant>,
    /// Smoothed time from publication to acknowledgement (records sent once only).
    ack_latency: Option<Duration>,
}

impl Forwarder {
    async fn run(mut self, mut acks: mpsc::Receiver<Message>, cancel: CancellationToken) {
        let tick = (self.options.ack_timeout / 10).clamp(Duration::from_millis(20), Duration::from_secs(1));
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let shared = self.shared.clone();
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                message = acks.recv() => {
                    let Some(message) = message else {
                        tracing::warn!(venue = %shared.venue, "the acknowledgement subscription closed; the spool forwarder stops");
                        break;
                    };
                    let mut batch = vec![message];
                    while batch.len() < ACKS_PER_BATCH {
                        match acks.try_recv() {
                            Ok(message) => batch.push(message),
                            Err(_) => break,
                        }
                    }
                    self.acknowledge(batch).await;
                }
                () = shared.wake.notified() => {}
                _ = ticker.tick() => {}
            }
            self.send_round().await;
        }
        tracing::info!(
            venue = %shared.venue,
            waiting = lock(&shared.spool).len(),
            "spool forwarder stopped; waiting records stay spooled"
        );
    }

    /// Removes acknowledged and refused records from the spool.
    async fn acknowledge(&mut self, batch: Vec<Message>) {
        let venue = &self.shared.venue;
        let mut stored = Vec::new();
        let mut refused = Vec::new();
        for message in batch {
            match CountAck::decode(&message.payload) {
                Ok(ack) if ack.venue == *venue => {
                    stored.extend(ack.ids);
                    refused.extend(ack.refused);
                    self.last_ack = Some(Instant::now());
                }
                Ok(_) => tracing::warn!(venue = %venue, "acknowledgement for another venue ignored"),
                // The error kind only: no payload content in logs.
                Err(_) => {
                    tracing::warn!(venue = %venue, payload_len = message.payload.len(), "malformed acknowledgement ignored")
                }
            }
        }
        let now = Instant::now();
        let mut newest_acknowledged: Option<Instant> = None;
        for id in stored.iter().chain(&refused) {
            if let Some(flight) = self.flights.remove(id) {
                newest_acknowledged = newest_acknowledged.max(Some(flight.sent_at));
                // Karn's rule: only a record sent once tells how long an acknowledgement takes.
                if flight.attempts == 1 {
                    let sample = now.duration_since(flight.sent_at);
                    self.ack_latency = Some(match self.ack_latency {
                        Some(smoothed) => smoothed.mul_f64(0.875) + sample.mul_f64(0.125),
                        None => sample,
                    });
                }
            }
        }
        // Analytics takes records in order: one still waiting that was sent well before a
        // record just acknowledged was lost on the way (published while the broker or
        // analytics was away) and goes out again now, without waiting for its timeout.
        if let Some(newest) = newest_acknowledged {
            let grace = self.timeout() / 2;
            for flight in self.flights.values_mut() {
                if flight.sent_at + grace < newest {
                    flight.due = now;
                }
            }
        }
        if stored.is_empty() && refused.is_empty() {
            return;
        }
        let shared = self.shared.clone();
        let removed = tokio::task::spawn_blocking(move || {
            let mut spool = lock(&shared.spool);
            let mut remove = |ids: &[String]| {
                let waiting = ids.iter().filter(|id| spool.contains(id)).count();
                match spool.acknowledge(ids) {
                    Ok(n) => n,
                    Err(error) => {
                        // Removed in memory all the same; a restart may publish them again.
                        tracing::error!(venue = %shared.venue, %error, "acknowledgement not written to the spool");
                        waiting
                    }
                }
            };
            (remove(&stored), remove(&refused))
        })
        .await;
        match removed {
            Ok((n_stored, n_refused)) => {
                let stats = &self.shared.stats;
                stats.records_acknowledged.fetch_add(n_stored as u64, Ordering::Relaxed);
                stats.records_refused.fetch_add(n_refused as u64, Ordering::Relaxed);
                if n_refused > 0 {
                    tracing::warn!(
                        venue = %venue,
                        records = n_refused,
                        "analytics refused count records for good (quarantined: do the edge and analytics \
                         configurations agree?); removed from the spool"
                    );
                }
            }
            Err(error) => tracing::error!(venue = %venue, %error, "the spool worker thread failed"),
        }
    }

    /// Publishes what is due: retries first (in spool order), then new records up to the
    /// window.
    async fn send_round(&mut self) {
        let mut plan = self.plan();
        if plan.is_empty() {
            return;
        }
        let unmarked: Vec<String> = plan.iter().filter(|p| !p.marked).map(|p| p.id.clone()).collect();
        if !unmarked.is_empty() {
            // Durably marked before the hand-over, so that these records are never merged.
            let shared = self.shared.clone();
            let marked = tokio::task::spawn_blocking(move || {
                let ids: Vec<&str> = unmarked.iter().map(String::as_str).collect();
                lock(&shared.spool).mark_published(&ids)
            })
            .await;
            let failure = match marked {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(error.to_string()),
                Err(error) => Some(error.to_string()),
            };
            if let Some(error) = failure {
                tracing::error!(venue = %self.shared.venue, %error, "records not marked published in the spool; held back");
                plan.retain(|p| p.marked);
            }
        }
        let now = Instant::now();
        let timeout = self.timeout();
        let stats = &self.shared.stats;
        for planned in plan {
            let topic = topics::counts(&self.shared.venue, &planned.camera);
            if self.bus.try_publish(&topic, QoS::AtLeastOnce, planned.payload).is_err() {
                stats.publish_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(venue = %self.shared.venue, "MQTT client queue full: records wait in the spool");
                break;
            }
            let flight = self.flights.entry(planned.id).or_insert(Flight { attempts: 0, sent_at: now, due: now });
            flight.attempts += 1;
            flight.sent_at = now;
            // 1, 2, 4, 8, 8, ... times the timeout.
            let factor = 2u32.saturating_pow(flight.attempts - 1).min(MAX_BACKOFF_FACTOR);
            flight.due = now + timeout * factor;
            if planned.retry {
                stats.records_republished.fetch_add(1, Ordering::Relaxed);
                if self.silent(now) {
                    self.last_probe = Some(now);
                }
            } else {
                stats.records_published.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The acknowledgement timeout in force: the configured one, or three times the smoothed
    /// acknowledgement latency when analytics is slower than that (a busy database), so that
    /// a slow receiver is not flooded with copies of what it is still committing.
    /// It is at most [`MAX_ADAPTIVE_FACTOR`] times the configured one, as a record that waited
    /// out an outage in the client's queue makes one very long sample.
    fn timeout(&self) -> Duration {
        let configured = self.options.ack_timeout;
        self.ack_latency.map_or(configured, |latency| (latency * 3).clamp(configured, configured * MAX_ADAPTIVE_FACTOR))
    }

    /// Whether analytics has been silent for longer than the configured acknowledgement
    /// timeout (then only probes go out, one per configured timeout).
    fn silent(&self, now: Instant) -> bool {
        self.last_ack.is_none_or(|at| now.duration_since(at) > self.options.ack_timeout)
    }

    /// Chooses this round's records, reading the spool's memory only (no I/O). Skips the round
    /// when the spool is busy (a long rewrite on a blocking thread).
    fn plan(&mut self) -> Vec<Planned> {
        let Ok(spool) = self.shared.spool.try_lock() else { return Vec::new() };
        let now = Instant::now();
        // While analytics is silent, one probe per timeout instead of every due retry.
        let mut retry_budget = if !self.silent(now) {
            usize::MAX
        } else if self.last_probe.is_none_or(|at| now.duration_since(at) >= self.options.ack_timeout) {
            1
        } else {
            0
        };
        self.flights.retain(|id, _| spool.contains(id));
        let in_flight = self.flights.len();
        let mut plan = Vec::new();
        let (mut seen, mut fresh) = (0, 0);
        for record in spool.records() {
            match self.flights.get(record.id) {
                Some(flight) => {
                    seen += 1;
                    if flight.due <= now && retry_budget > 0 {
                        retry_budget -= 1;
                        plan.push(Planned {
                            id: record.id.to_owned(),
                            camera: record.camera.clone(),
                            payload: record.payload.clone(),
                            marked: record.published,
                            retry: true,
                        });
                    }
                }
                None if in_flight + fresh < self.options.max_in_flight => {
                    fresh += 1;
                    plan.push(Planned {
                        id: record.id.to_owned(),
                        camera: record.camera.clone(),
                        payload: record.payload.clone(),
                        marked: record.published,
                        retry: false,
                    });
                }
                None => {}
            }
            if seen == in_flight && in_flight + fresh >= self.options.max_in_flight {
                break;
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use passage_transport::{BusConfig, EmbeddedBroker};
    use passage_wire::{CountItem, Direction, Metric, NoiseMechanism};

    fn id(s: &str) -> Id {
        Id::new(s).expect("valid id")
    }

    fn record(n: i64, camera: &str) -> CountRecord {
        CountRecord {
            v: 1,
            id: format!("fwd-{camera}-{n}"),
            venue: id("arena"),
            camera: id(camera),
            start: 1_700_006_400 + 60 * n,
            secs: 60,
            mechanism: NoiseMechanism::DiscreteLaplace,
            epsilon: 1.0,
            items: vec![CountItem {
                metric: Metric::Crossings { line: id("gate"), dir: Direction::In },
                value: n,
                std: 2.0,
            }],
        }
    }

    async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Through a real broker: records go out in order, unacknowledged ones go out again, an
    /// acknowledgement removes them, refusals too, and a restart resumes from the file.
    #[tokio::test]
    async fn spool_forwarder_publishes_in_order_retries_and_forgets_acknowledged() {
        let broker = EmbeddedBroker::start(0).expect("broker");
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let config = |client: &str| BusConfig {
            host: broker.addr().ip().to_string(),
            port: broker.addr().port(),
            client_id: client.into(),
        };
        let edge = Bus::connect(config("spool-edge"), cancel.clone(), &tracker).await.expect("connect");
        let receiver = Bus::connect(config("spool-receiver"), cancel.clone(), &tracker).await.expect("connect");
        let mut counts = receiver.subscribe(topics::COUNTS_FILTER, QoS::AtLeastOnce, 64).await.expect("subscribe");
        tokio::time::sleep(Duration::from_millis(200)).await;

        let dir = tempfile::tempdir().expect("tempdir");
        let options = ForwardOptions {
            dir: dir.path().to_owned(),
            max_bytes: 1 << 20,
            ack_timeout: Duration::from_millis(300),
            max_in_flight: 16,
        };
        let stats = Arc::new(CountingStats::default());
        let spool_cancel = cancel.child_token();
        let writer = start(&id("arena"), options.clone(), edge.clone(), stats.clone(), spool_cancel.clone(), &tracker)
            .await
            .expect("forwarder starts");
        let records: Vec<CountRecord> = (0..4).flat_map(|n| [record(n, "cam-1"), record(n, "cam-2")]).collect();
        writer.push(records.clone()).await.expect("spooled");

        // First deliveries arrive in release order; then the same ids again (no ack yet).
        let mut seen = Vec::new();
        while seen.len() < records.len() + 1 {
            let message = tokio::time::timeout(Duration::from_secs(5), counts.recv())
                .await
                .expect("published in time")
                .expect("open");
            seen.push(CountRecord::decode(&message.payload).expect("a record").id);
        }
        let expected: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
        assert_eq!(seen[..records.len()].to_vec(), expected);
        assert_eq!(seen[records.len()], expected[0], "the oldest unacknowledged record is retried first");
        assert!(stats.records_republished.load(Ordering::Relaxed) >= 1);

        // Acknowledge cam-1's records, refuse cam-2's first: they leave the spool.
        let ack = |camera: &str, ids: Vec<String>, refused: Vec<String>| CountAck {
            v: 1,
            venue: id("arena"),
            camera: id(camera),
            ids,
            refused,
        };
        let cam1: Vec<String> = records.iter().filter(|r| r.camera.as_str() == "cam-1").map(|r| r.id.clone()).collect();
        receiver
            .publish(
                &topics::counts_ack(&id("arena"), &id("cam-1")),
                QoS::AtLeastOnce,
                ack("cam-1", cam1, vec![]).encode(),
            )
            .await
            .expect("ack");
        receiver
            .publish(
                &topics::counts_ack(&id("arena"), &id("cam-2")),
                QoS::AtLeastOnce,
                ack("cam-2", vec![], vec![records[1].id.clone()]).encode(),
            )
            .await
            .expect("ack");
        wait_until("acknowledgements", || writer.waiting() == 3).await;
        assert_eq!(stats.records_acknowledged.load(Ordering::Relaxed), 4);
        assert_eq!(stats.records_refused.load(Ordering::Relaxed), 1);
        assert_eq!(stats.records_spooled.load(Ordering::Relaxed), 8);

        // Restart: the three waiting records are loaded and forwarded again.
        spool_cancel.cancel();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stats = Arc::new(CountingStats::default());
        let writer = start(&id("arena"), options, edge.clone(), stats.clone(), cancel.child_token(), &tracker)
            .await
            .expect("forwarder restarts");
        assert_eq!(writer.waiting(), 3);
        let left: Vec<String> = records[3..].iter().step_by(2).map(|r| r.id.clone()).collect();
        wait_until("resumed publication", || stats.records_published.load(Ordering::Relaxed) >= 3).await;
        receiver
            .publish(
                &topics::counts_ack(&id("arena"), &id("cam-2")),
                QoS::AtLeastOnce,
                ack("cam-2", left, vec![]).encode(),
            )
            .await
            .expect("ack");
        wait_until("the spool drains", || writer.waiting() == 0).await;

        cancel.cancel();
        tracker.close();
        tracker.wait().await;
    }
}
