//! The analytics service as its own process against a real broker (Mosquitto): kill -9 during
//! ingest loses nothing that was acknowledged and stores nothing twice; two workers split the
//! count topics through the shared subscription without duplicates; the partitioned Parquet
//! export of both reads back whole.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use passage_transport::QoS;
use passage_wire::{topics, CountAck, CountItem, CountRecord, Direction, Id, Metric, NoiseMechanism};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::support::{connect, runtime, Mosquitto};

/// A `passage analytics serve` child process, killed (SIGKILL) when dropped.
struct Service {
    child: Child,
}

impl Service {
    fn start(broker: u16, db: &Path, client: &str) -> Service {
        let mut child = Command::new(env!("CARGO_BIN_EXE_passage"))
            .args(["analytics", "serve", "--plain-http", "--listen", "127.0.0.1:0", "--client-id", client])
            .arg("--broker")
            .arg(format!("127.0.0.1:{broker}"))
            .arg("--db")
            .arg(db)
            .env("PASSAGE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("passage analytics starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = lines.next().expect("a first line").expect("readable");
        assert!(line.starts_with("analytics listening on http://127.0.0.1:"), "{line}");
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Service { child }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn id(text: &str) -> Id {
    Id::new(text).expect("valid id")
}

/// `n` records of the demo arena's north camera, one crossing each, in the last hours.
fn records(n: usize, prefix: &str) -> Vec<CountRecord> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    (0..n)
        .map(|i| CountRecord {
            v: 1,
            id: format!("{prefix}-{i:06}"),
            venue: id("arena"),
            camera: id("cam-north"),
            start: now - 7200 + (i as i64 % 7000),
            secs: 60,
            mechanism: NoiseMechanism::DiscreteLaplace,
            epsilon: 0.5,
            items: vec![CountItem {
                metric: Metric::Crossings { line: id("north-gate"), dir: Direction::In },
                value: 1 + i as i64 % 5,
                std: 2.0,
            }],
        })
        .collect()
}

/// Rows of `table` in the database at `db`, and distinct record ids in it.
fn stored(db: &Path) -> (i64, i64, BTreeSet<String>) {
    let conn = duckdb::Connection::open(db).expect("open the database");
    let records: i64 = conn.query_row("SELECT COUNT(*) FROM count_records", [], |r| r.get(0)).expect("count");
    let items: i64 = conn.query_row("SELECT COUNT(*) FROM count_items", [], |r| r.get(0)).expect("count");
    let mut statement = conn.prepare("SELECT id FROM count_records").expect("prepare");
    let ids = statement.query_map([], |r| r.get::<_, String>(0)).expect("query").map(|r| r.expect("id")).collect();
    (records, items, ids)
}

/// Publishes `records` and collects acknowledgements until `want` ids are acknowledged or
/// `timeout` passes; returns the acknowledged ids.
async fn publish_and_collect(
    bus: &passage_transport::Bus,
    acks: &mut tokio::sync::mpsc::Receiver<passage_transport::Message>,
    records: &[CountRecord],
    acked: &mut BTreeSet<String>,
    want: usize,
    timeout: Duration,
) {
    for record in records {
        bus.publish(&topics::counts(&record.venue, &record.camera), QoS::AtLeastOnce, record.encode())
            .await
            .expect("publish");
    }
    let deadline = tokio::time::Instant::now() + timeout;
    while acked.len() < want {
        match tokio::time::timeout_at(deadline, acks.recv()).await {
            Ok(Some(message)) => {
                let ack = CountAck::decode(&message.payload).expect("a valid acknowledgement");
                assert!(ack.refused.is_empty(), "refused: {:?}", ack.refused);
                acked.extend(ack.ids);
            }
            _ => break,
        }
    }
}

/// Publishes `first`, then, like the edge spool, publishes again whatever of `all` is still
/// unacknowledged after a while, until everything is acknowledged or four minutes pass. A broker
/// may drop QoS 1 messages queued for a slow subscriber (Mosquitto keeps 1,000 per client by
/// default); only the acknowledgement says a record is safe.
async fn publish_until_acknowledged(
    bus: &passage_transport::Bus,
    acks: &mut tokio::sync::mpsc::Receiver<passage_transport::Message>,
    first: Vec<CountRecord>,
    all: &[CountRecord],
    acked: &mut BTreeSet<String>,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    let mut batch = first;
    let mut rounds = 0;
    while acked.len() < all.len() && tokio::time::Instant::now() < deadline {
        rounds += 1;
        publish_and_collect(bus, acks, &batch, acked, all.len(), Duration::from_secs(20)).await;
        // Publish again only once the service has been quiet for a while: a record still in
        // its pipeline would otherwise reach the other worker too.
        while let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(3), acks.recv()).await {
            acked.extend(CountAck::decode(&message.payload).expect("a valid acknowledgement").ids);
        }
        batch = all.iter().filter(|r| !acked.contains(&r.id)).cloned().collect();
    }
    eprintln!("{} of {} acknowledged after {rounds} publishing round(s)", acked.len(), all.len());
}

#[test]
fn kill_9_during_ingest_keeps_every_acknowledged_record_exactly_once() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("analytics.duckdb");
    let all = records(6000, "kill");
    let rt = runtime();
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    rt.block_on(async {
        let camera = connect(broker.port, "camera", &cancel, &tracker).await;
        let mut acks = camera.subscribe("passage/v1/arena/counts-ack/+", QoS::AtLeastOnce, 4096).await.expect("sub");
        let mut acked = BTreeSet::new();

        // First life: a camera publishes steadily; kill -9 once part of it is acknowledged,
        // while records are still arriving and batches are being committed.
        let service = Service::start(broker.port, &db, "analytics-kill");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let publisher = camera.clone();
        let stream = all.clone();
        let acked_count = Arc::new(AtomicUsize::new(0));
        let killed = Arc::new(AtomicBool::new(false));
        let (count, stop) = (acked_count.clone(), killed.clone());
        let publishing = tokio::spawn(async move {
            for (i, chunk) in stream.chunks(50).enumerate() {
                // At most 1,000 records ahead of the acknowledgements until the kill, however
                // slow the service is under load: the kill always lands while records arrive.
                while !stop.load(Ordering::Relaxed) && (i * 50).saturating_sub(count.load(Ordering::Relaxed)) > 1000 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                for record in chunk {
                    let topic = topics::counts(&record.venue, &record.camera);
                    if publisher.publish(&topic, QoS::AtLeastOnce, record.encode()).await.is_err() {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while acked.len() < 1500 {
            match tokio::time::timeout_at(deadline, acks.recv()).await {
                Ok(Some(message)) => {
                    let ack = CountAck::decode(&message.payload).expect("a valid acknowledgement");
                    assert!(ack.refused.is_empty(), "refused: {:?}", ack.refused);
                    acked.extend(ack.ids);
                    acked_count.store(acked.len(), Ordering::Relaxed);
                }
                _ => break,
            }
        }
        service.kill();
        killed.store(true, Ordering::Relaxed);
        let at_kill = acked.len();
        assert!(at_kill >= 1500, "only {at_kill} acknowledged before the kill");
        assert!(!publishing.is_finished(), "the kill came after the camera had published everything");
        publishing.await.expect("publisher");
        // Acknowledgements still in flight at the kill are drained.
        while let Ok(Some(message)) = tokio::time::timeout(Duration::from_millis(500), acks.recv()).await {
            acked.extend(CountAck::decode(&message.payload).expect("ack").ids);
        }
        assert!(acked.len() < all.len(), "the kill lost no in-flight record: nothing was tested");
        eprintln!("kill -9 after {at_kill} acknowledgements; {} acknowledged in all before the restart", acked.len());
        let (_, _, ids) = stored(&db);
        for id in &acked {
            assert!(ids.contains(id), "{id} was acknowledged but is not stored after kill -9");
        }

        // Second life: the camera publishes again what was not acknowledged (what the edge
        // spool does), plus a hundred acknowledged ones (a lost acknowledgement).
        let service = Service::start(broker.port, &db, "analytics-kill");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut again: Vec<CountRecord> = all.iter().filter(|r| !acked.contains(&r.id)).cloned().collect();
        again.extend(all.iter().filter(|r| acked.contains(&r.id)).take(100).cloned());
        publish_until_acknowledged(&camera, &mut acks, again, &all, &mut acked).await;
        assert_eq!(acked.len(), all.len(), "every record is acknowledged in the end");
        service.kill();
    });
    cancel.cancel();
    let (records, items, ids) = stored(&db);
    assert_eq!(records, all.len() as i64, "each record stored once");
    assert_eq!(items, all.len() as i64, "each item stored once (items have no key of their own)");
    assert_eq!(ids.len(), all.len());
}

#[test]
fn two_workers_split_the_topics_without_duplicates_and_export_one_dataset() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (db_a, db_b) = (dir.path().join("a.duckdb"), dir.path().join("b.duckdb"));
    let all = records(3000, "share");
    let rt = runtime();
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    rt.block_on(async {
        let a = Service::start(broker.port, &db_a, "analytics-a");
        let b = Service::start(broker.port, &db_b, "analytics-b");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let camera = connect(broker.port, "camera", &cancel, &tracker).await;
        let mut acks = camera.subscribe("passage/v1/arena/counts-ack/+", QoS::AtLeastOnce, 4096).await.expect("sub");
        let mut acked = BTreeSet::new();
        publish_until_acknowledged(&camera, &mut acks, all.clone(), &all, &mut acked).await;
        assert_eq!(acked.len(), all.len());
        a.kill();
        b.kill();
    });
    cancel.cancel();
    let (records_a, _, ids_a) = stored(&db_a);
    let (records_b, _, ids_b) = stored(&db_b);
    assert!(records_a > 0 && records_b > 0, "both workers got a share: {records_a} and {records_b}");
    assert_eq!(records_a + records_b, all.len() as i64, "no record twice");
    assert!(ids_a.is_disjoint(&ids_b));

    // Both databases exported into one partitioned dataset, read back whole by DuckDB.
    let out = dir.path().join("dataset");
    for db in [&db_a, &db_b] {
        let status = Command::new(env!("CARGO_BIN_EXE_passage"))
            .args(["analytics", "export"])
            .arg("--db")
            .arg(db)
            .arg("--out")
            .arg(&out)
            .status()
            .expect("export runs");
        assert!(status.success());
    }
    let conn = duckdb::Connection::open_in_memory().expect("duckdb");
    let glob = format!("{}/**/*.parquet", out.display());
    let (rows, distinct): (i64, i64) = conn
        .query_row(
            &format!(
                "SELECT COUNT(*), COUNT(DISTINCT record_id) FROM read_parquet('{glob}', hive_partitioning = true)"
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("read the dataset");
    assert_eq!((rows, distinct), (all.len() as i64, all.len() as i64));
}
