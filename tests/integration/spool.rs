//! Store-and-forward (issue 5): the broker stopped for ten minutes under 50 cameras, then
//! restarted; analytics ends up with every released record exactly once.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use passage_analytics::{AnalyticsOptions, Store};
use passage_config::{Camera, Config, Line, Privacy, Retention, Venue};
use passage_dp::{Budget, BudgetLedger};
use passage_edge::agents::CountingStats;
use passage_edge::count::release::VenueReleaser;
use passage_edge::count::CameraCounter;
use passage_edge::spool::forward::{self, ForwardOptions};
use passage_wire::{CountRecord, Id};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::support::{connect, runtime, Mosquitto};

const CAMERAS: usize = 50;
/// Scene seconds per release interval (the deployment default).
const INTERVAL_SECS: u32 = 60;
/// Wall time one interval takes in this test (`PASSAGE_OUTAGE_WALL_MS` overrides it).
const WALL_PER_INTERVAL_MS: u64 = 150;
/// Intervals released before the broker stops, while it is down (`PASSAGE_OUTAGE_INTERVALS`
/// overrides it), and after it is back.
const BEFORE: usize = 8;
const OUTAGE: usize = 12;
const AFTER: usize = 8;

/// A knob from the environment, for the long-form run (see the test's documentation).
fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn id(s: &str) -> Id {
    Id::new(s).expect("valid id")
}

/// One venue with 50 cameras, each counting its own entrance line.
fn fifty_cameras() -> Venue {
    let lines = (0..CAMERAS)
        .map(|i| Line {
            id: id(&format!("gate-{i:02}")),
            name: format!("Gate {i}"),
            from: [100.0, 180.0],
            to: [600.0, 180.0],
            classes: passage_config::default_classes(),
        })
        .collect();
    let cameras = (0..CAMERAS)
        .map(|i| Camera { id: id(&format!("cam-{i:02}")), lines: vec![id(&format!("gate-{i:02}"))], zones: vec![] })
        .collect();
    Venue {
        id: id("stadium"),
        name: "Fifty-camera stadium".into(),
        zones: vec![],
        lines,
        gates: vec![],
        cameras,
        retention: Retention::default(),
    }
}

/// Store-and-forward: broker stopped for 10 minutes under a simulated load of 50 cameras,
/// then restarted: zero records lost or duplicated at analytics.
///
/// How the ten minutes are simulated: the load is the real release path (50 camera counters
/// and the venue's `VenueReleaser`: one noised record per camera per 60-second interval, the
/// default continual-release mechanism and budget ledger), driven with synthetic interval
/// starts (consecutive minutes from yesterday's midnight UTC) instead of the wall clock, one
/// interval every 150 ms of wall time, so scene time runs 400 times faster. Every record goes
/// through the venue's spool and forwarder to a real Mosquitto broker, and from there to the
/// real analytics service (DuckDB). After 8 intervals the broker is killed (no persistence:
/// every session and queued message is lost); 12 intervals (12 scene-minutes, 600 records)
/// are released while it is down; it is then restarted on the same port, 8 more intervals
/// follow, and the test waits for the spool to drain. The forwarder's acknowledgement
/// timeout is scaled down with the clock (1 s instead of 10 s), and its window raised to 256
/// records in flight (50 records per 150 ms is 400 times the production rate).
///
/// The long form, with a broker down for ten minutes of wall time (docs/benchmarks.md):
/// `PASSAGE_OUTAGE_WALL_MS=15000 PASSAGE_OUTAGE_INTERVALS=40 cargo test --test integration
/// store_and_forward` (40 intervals of 15 s while the broker is down).
#[test]
fn store_and_forward_loses_and_duplicates_nothing_across_a_broker_outage() {
    let started = Instant::now();
    let wall_per_interval = Duration::from_millis(knob("PASSAGE_OUTAGE_WALL_MS", WALL_PER_INTERVAL_MS));
    let outage = knob("PASSAGE_OUTAGE_INTERVALS", OUTAGE);
    let mut broker = Some(Mosquitto::start());
    let port = broker.as_ref().map(|b| b.port).expect("started");
    let venue = fifty_cameras();
    let config = Arc::new(Config { venues: vec![venue.clone()], ..Config::default() });
    let data = tempfile::tempdir().expect("tempdir");
    let db_path = data.path().join("analytics.duckdb");
    let rt = runtime();

    let (released, stats, waiting_at_restart, analytics_counts) = rt.block_on(async {
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let analytics_bus = connect(port, "spool-analytics", &cancel, &tracker).await;
        let analytics = passage_analytics::start(
            AnalyticsOptions {
                db_path: db_path.clone(),
                listen: "127.0.0.1:0".parse().expect("addr"),
                tls: None,
                audit: None,
                accounts: None,
            },
            config.clone(),
            analytics_bus,
            cancel.child_token(),
            &tracker,
        )
        .await
        .expect("analytics starts");
        let edge_bus = connect(port, "spool-edge", &cancel, &tracker).await;
        let options = ForwardOptions {
            dir: data.path().join("edge").join("spool").join("stadium"),
            max_bytes: config.spool.max_bytes_per_venue,
            ack_timeout: Duration::from_secs(1),
            max_in_flight: 256,
        };
        let spool = forward::start(
            &venue.id,
            options,
            edge_bus,
            Arc::new(CountingStats::default()),
            cancel.child_token(),
            &tracker,
        )
        .await
        .expect("spool opens");
        tokio::time::sleep(Duration::from_millis(300)).await;

        // The release path of the counting agent, at synthetic interval starts.
        let mut counters: Vec<CameraCounter> =
            venue.cameras.iter().map(|c| CameraCounter::new(&venue, &c.id).expect("counter")).collect();
        let privacy = Privacy { interval_secs: INTERVAL_SECS, ..Privacy::default() };
        let mut releaser = VenueReleaser::new(&venue, &counters, &privacy).expect("releaser");
        let mut ledger = BudgetLedger::new(Budget { epsilon: privacy.epsilon_per_day, delta: privacy.delta_per_day })
            .expect("ledger");
        let mut rng = passage_dp::csprng();
        let mut next_id = 0u64;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
        let yesterday = (i64::try_from(now).expect("time") / 86_400 - 1) * 86_400;

        let mut released: Vec<CountRecord> = Vec::new();
        let mut waiting_at_restart = 0;
        let mut ticker = tokio::time::interval(wall_per_interval);
        for interval in 0..BEFORE + outage + AFTER {
            ticker.tick().await;
            if interval == BEFORE {
                drop(broker.take()); // kills Mosquitto: sessions and queued messages are gone
            }
            if interval == BEFORE + outage {
                waiting_at_restart = spool.waiting();
                broker = Some(Mosquitto::start_on(port));
            }
            let tallies = counters.iter_mut().map(CameraCounter::close_interval).collect();
            let start = yesterday + i64::from(INTERVAL_SECS) * interval as i64;
            let records = releaser
                .release(tallies, start, &mut ledger, &mut rng, |_| {
                    next_id += 1;
                    format!("rec-{next_id:06}")
                })
                .expect("released");
            assert_eq!(records.len(), CAMERAS);
            released.extend(records.iter().cloned());
            spool.push(records).await.expect("spooled");
        }

        let deadline = Instant::now() + Duration::from_secs(45);
        while spool.waiting() > 0 || analytics.stats.snapshot().inserted < released.len() as u64 {
            assert!(
                Instant::now() < deadline,
                "not drained: {} waiting, analytics {:?}",
                spool.waiting(),
                analytics.stats.snapshot()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cancel.cancel();
        tracker.close();
        tokio::time::timeout(Duration::from_secs(15), tracker.wait()).await.expect("everything stops");
        (released, spool.stats(), waiting_at_restart, analytics.stats.snapshot())
    });
    drop(broker);

    // The outage was real: the spool held at least the 600 records released while the broker
    // was down, and records were published again.
    assert!(waiting_at_restart >= outage * CAMERAS, "only {waiting_at_restart} records waited for the broker");
    let count = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    assert!(count(&stats.records_republished) > 0, "{stats:?}");
    assert_eq!(count(&stats.records_spooled), released.len() as u64, "{stats:?}");
    assert_eq!(count(&stats.records_acknowledged), released.len() as u64, "{stats:?}");
    assert_eq!((count(&stats.spool_merges), count(&stats.records_dropped), count(&stats.records_refused)), (0, 0, 0));
    assert_eq!(analytics_counts.inserted, released.len() as u64, "{analytics_counts:?}");
    assert_eq!((analytics_counts.quarantined, analytics_counts.failed), (0, 0), "{analytics_counts:?}");

    // The database holds exactly the released ids, once each, and per camera the released
    // sequence of intervals, in order.
    let store = Store::open(&db_path).expect("database reopens");
    let stored = store.record_index(&id("stadium")).expect("record index");
    assert_eq!(stored.len(), released.len(), "rows: stored {} of {} released", stored.len(), released.len());
    let mut expected: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
    for record in &released {
        expected.entry(record.camera.to_string()).or_default().push((record.id.clone(), record.start));
    }
    let mut got: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
    for record in &stored {
        got.entry(record.camera.to_string()).or_default().push((record.id.clone(), record.start));
    }
    assert_eq!(got.len(), CAMERAS);
    assert_eq!(got, expected, "per camera, the stored records are the released ones in release order");
    eprintln!(
        "store-and-forward: {} records, {} waited out the outage, {} republished, {} duplicates absorbed, {:.1} s",
        released.len(),
        waiting_at_restart,
        count(&stats.records_republished),
        analytics_counts.duplicates,
        started.elapsed().as_secs_f64()
    );
}
