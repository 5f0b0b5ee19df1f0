//! `passage bench analytics`: ingest throughput (decoded records to committed rows, and end to
//! end through the embedded broker), the occupancy report over a year of 1-minute data for
//! 100 gates, and the same report written directly in DuckDB's and Polars' Python APIs, in
//! the same run. Progress on stderr; one final JSON line on stdout.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use clap::Args;
use passage_analytics::compute::{compute, ReportKind, ReportRange};
use passage_analytics::reports::{self, f64_column};
use passage_analytics::{IngestStats, PreparedBatch, Store};
use passage_config::{Camera, Config, Line, Retention, Venue};
use passage_transport::{Bus, BusConfig, EmbeddedBroker, QoS};
use passage_wire::{topics, CountItem, CountRecord, Direction, Id, Metric, NoiseMechanism};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Options of `passage bench analytics`.
#[derive(Debug, Args)]
pub struct AnalyticsArgs {
    /// Records for the ingest measurement (each: one gate, one minute, "in" and "out").
    #[arg(long, default_value_t = 2_000_000)]
    records: usize,
    /// Records per committed batch (default: the most the service commits at a time).
    #[arg(long, default_value_t = passage_analytics::MAX_BATCH)]
    batch: usize,
    /// Records published through the embedded broker for the end-to-end rate.
    #[arg(long, default_value_t = 100_000)]
    e2e_records: usize,
    /// Gates (counting lines) of the report's venue.
    #[arg(long, default_value_t = 100)]
    gates: usize,
    /// Days of 1-minute data for the report.
    #[arg(long, default_value_t = 365)]
    days: usize,
    /// Timed runs of each report query (after two warm-up runs).
    #[arg(long, default_value_t = 20)]
    iterations: usize,
    /// Python with duckdb and polars for the peer side (scripts/peer-venv makes one), or
    /// `none` to skip it.
    #[arg(long, default_value = ".cache/peer-venv/bin/python")]
    peer: String,
    /// Where the databases go (a temporary directory when absent; removed at the end).
    #[arg(long)]
    dir: Option<PathBuf>,
}

const VENUE: &str = "bench";
const DAY: i64 = 86_400;
/// The report data starts on 2025-01-01 00:00 UTC.
const EPOCH: i64 = 1_735_689_600;

fn id(text: &str) -> anyhow::Result<Id> {
    Id::new(text).with_context(|| format!("bad identifier {text}"))
}

fn gate(i: usize) -> String {
    format!("gate-{i:03}")
}

fn camera(i: usize) -> String {
    format!("cam-{i:03}")
}

/// One gate-minute: noised crossings in and out, as a camera releases them.
fn record(n: usize, gates: usize, start: i64) -> anyhow::Result<CountRecord> {
    let g = n % gates;
    let minute = (n / gates) as i64;
    let line = id(&gate(g))?;
    let value = |salt: usize| ((n.wrapping_mul(2_654_435_761) ^ salt) % 9) as i64 - 1;
    Ok(CountRecord {
        v: 1,
        // Shaped like the edge's ids: 32 hex digits, no order (a fixed odd multiplier).
        id: format!("{:032x}", (n as u128 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)),
        venue: id(VENUE)?,
        camera: id(&camera(g))?,
        start: start + minute * 60,
        secs: 60,
        mechanism: NoiseMechanism::DiscreteGaussian,
        epsilon: 0.5,
        items: vec![
            CountItem {
                metric: Metric::Crossings { line: line.clone(), dir: Direction::In },
                value: value(1),
                std: 2.5,
            },
            CountItem { metric: Metric::Crossings { line, dir: Direction::Out }, value: value(2), std: 2.5 },
        ],
    })
}

/// The bench venue: `gates` lines, one camera each.
fn bench_config(gates: usize) -> anyhow::Result<Config> {
    let venues = vec![Venue {
        id: id(VENUE)?,
        name: "Benchmark venue".into(),
        zones: vec![],
        lines: (0..gates)
            .map(|g| {
                Ok(Line {
                    id: id(&gate(g))?,
                    name: gate(g),
                    from: [0.0, 0.0],
                    to: [1.0, 0.0],
                    classes: passage_config::default_classes(),
                })
            })
            .collect::<anyhow::Result<_>>()?,
        gates: vec![],
        cameras: (0..gates)
            .map(|g| Ok(Camera { id: id(&camera(g))?, lines: vec![id(&gate(g))?], zones: vec![] }))
            .collect::<anyhow::Result<_>>()?,
        retention: Retention::default(),
    }];
    Ok(Config { venues, ..Config::default() })
}

fn percentile(samples: &[f64], q: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let index = ((q * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1);
    sorted[index]
}

/// Decoded records to committed rows: `records` records in batches of `batch`.
fn measure_ingest(dir: &Path, args: &AnalyticsArgs) -> anyhow::Result<(f64, u64)> {
    let path = dir.join("ingest.duckdb");
    let mut store = Store::open(&path).context("open the ingest database")?;
    let now = passage_analytics::now_unix();
    let start = now - (args.records / args.gates) as i64 * 60 - 3600;
    let records: Vec<CountRecord> =
        (0..args.records).map(|n| record(n, args.gates, start)).collect::<anyhow::Result<_>>()?;
    eprintln!(
        "bench analytics: ingesting {} records in batches of {} (the next batch prepared while one commits, as the service does)",
        args.records, args.batch
    );
    let book = store.code_book();
    let started = Instant::now();
    let mut inserted = 0u64;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let (prepared_tx, prepared_rx) = std::sync::mpsc::sync_channel(1);
        let chunks = &records;
        let batch = args.batch;
        scope.spawn(move || {
            for chunk in chunks.chunks(batch) {
                let prepared = PreparedBatch::new(chunk, &[], &book, passage_analytics::now_unix());
                if prepared_tx.send(prepared).is_err() {
                    return;
                }
            }
        });
        for (i, prepared) in prepared_rx.into_iter().enumerate() {
            inserted += store.insert_prepared(prepared.context("prepare a batch")?).context("insert a batch")?.inserted;
            if (i + 1) % 5 == 0 {
                eprintln!("bench analytics:   {inserted} records committed ({:.1} s)", started.elapsed().as_secs_f64());
            }
        }
        Ok(())
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    ensure!(inserted == args.records as u64, "only {inserted} of {} records were stored", args.records);
    // Redelivery of a tenth: nothing stored twice.
    let again = store.insert_batch(&records[..args.records / 10]).context("insert duplicates")?;
    ensure!(again.inserted == 0, "a redelivered record was stored again");
    let summary = store.summary().context("read the summary")?;
    ensure!(summary.records == args.records as u64, "{} records stored", summary.records);
    ensure!(summary.items == 2 * args.records as u64, "{} items stored", summary.items);
    Ok((args.records as f64 / elapsed, summary.items))
}

/// Publish through the embedded broker, ingest task commits: records per second from the
/// first publish to the last commit.
async fn measure_e2e(dir: &Path, args: &AnalyticsArgs) -> anyhow::Result<f64> {
    let broker = EmbeddedBroker::start(0).context("start the embedded broker")?;
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let bus_config = |client: &str| BusConfig {
        host: broker.addr().ip().to_string(),
        port: broker.addr().port(),
        client_id: client.to_owned(),
    };
    let ingest_bus = Bus::connect(bus_config("bench-analytics"), cancel.clone(), &tracker).await?;
    let camera_bus = Bus::connect(bus_config("bench-cameras"), cancel.clone(), &tracker).await?;
    let store = Store::open(&dir.join("e2e.duckdb")).context("open the end-to-end database")?;
    let stats = Arc::new(IngestStats::default());
    let config = Arc::new(bench_config(args.gates)?);
    passage_analytics::spawn_ingest(&ingest_bus, config, store, stats.clone(), cancel.clone(), &tracker).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let now = passage_analytics::now_unix();
    let start = now - (args.e2e_records / args.gates) as i64 * 60 - 3600;
    let payloads: Vec<(String, Vec<u8>)> = (0..args.e2e_records)
        .map(|n| {
            let record = record(n, args.gates, start)?;
            Ok((topics::counts(&record.venue, &record.camera), record.encode()))
        })
        .collect::<anyhow::Result<_>>()?;
    eprintln!("bench analytics: publishing {} records through the embedded broker", args.e2e_records);
    let started = Instant::now();
    for (topic, payload) in payloads {
        camera_bus.publish(&topic, QoS::AtLeastOnce, payload).await.context("publish")?;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let counts = stats.snapshot();
        if counts.inserted + counts.duplicates >= args.e2e_records as u64 {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {} of {} records were committed in 10 minutes", counts.inserted, args.e2e_records);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let counts = stats.snapshot();
    ensure!(counts.quarantined == 0, "{} records were quarantined", counts.quarantined);
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    Ok(counts.inserted as f64 / elapsed)
}

/// Fills a database with `days` of 1-minute crossings for `gates` gates (half of them
/// entrances reporting "in", half exits reporting "out"): one item row per gate-minute, in the
/// store's coded layout, and the hourly rollup the store keeps beside them at ingest.
fn build_report_db(path: &Path, gates: usize, days: usize) -> anyhow::Result<u64> {
    let store = Store::open(path).context("open the report database")?;
    drop(store);
    let conn = duckdb::Connection::open(path).context("open the report database")?;
    let minutes = days as i64 * 1440;
    let half = gates / 2;
    eprintln!(
        "bench analytics: generating {} rows ({days} days x 1440 minutes x {gates} gates) and their hourly rollup",
        minutes * gates as i64
    );
    let started = Instant::now();
    // Codes: the venue 1, gate g 2 + g, its camera 2 + gates + g.
    conn.execute_batch(&format!(
        "INSERT INTO names VALUES (1, '{VENUE}');
         INSERT INTO names SELECT 2 + g, 'gate-' || lpad(g::VARCHAR, 3, '0') FROM range(0, {gates}) AS t(g);
         INSERT INTO names SELECT 2 + {gates} + g, 'cam-' || lpad(g::VARCHAR, 3, '0') FROM range(0, {gates}) AS t(g);
         INSERT INTO count_items
         SELECT m * {gates} + g + 1, 1, {EPOCH} + m * 60, 60, 1, 2 + g, CASE WHEN g < {half} THEN 0 ELSE 1 END,
                CAST(hash(m, g) % 9 AS BIGINT) - 1, 2.5
         FROM range(0, {minutes}) AS t(m), range(0, {gates}) AS u(g)
         ORDER BY m, g;
         INSERT INTO count_hourly
         SELECT venue, metric, subject, other, (start // 3600) * 3600, CAST(SUM(value) AS BIGINT), SUM(std * std),
                COUNT(*)
         FROM count_items GROUP BY ALL ORDER BY ALL;
         CHECKPOINT;"
    ))
    .context("generate the report data")?;
    let rows: i64 = conn.query_row("SELECT COUNT(*) FROM count_items", [], |row| row.get(0))?;
    let cells: i64 = conn.query_row("SELECT COUNT(*) FROM count_hourly", [], |row| row.get(0))?;
    eprintln!("bench analytics:   {rows} rows, {cells} rollup cells in {:.1} s", started.elapsed().as_secs_f64());
    Ok(u64::try_from(rows).unwrap_or(0))
}

/// Runs the benchmark.
pub fn run_analytics(args: &AnalyticsArgs) -> anyhow::Result<()> {
    ensure!(args.records >= 1000 && args.batch >= 1, "--records must be at least 1000, --batch at least 1");
    ensure!(args.gates >= 2 && args.gates <= 1000, "--gates must be between 2 and 1000");
    ensure!(args.days >= 1 && args.days <= 400, "--days must be between 1 and 400");
    ensure!(args.iterations >= 2, "--iterations must be at least 2");
    let temp = tempfile::tempdir().context("create a temporary directory")?;
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().to_owned());
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;

    let (ingest_rate, _items) = measure_ingest(&dir, args)?;
    eprintln!("bench analytics: ingest {ingest_rate:.0} records/s");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("start a runtime")?;
    let e2e_rate = runtime.block_on(measure_e2e(&dir, args))?;
    eprintln!("bench analytics: end to end {e2e_rate:.0} records/s");
    drop(runtime);

    let report_db = dir.join("report.duckdb");
    let rows = build_report_db(&report_db, args.gates, args.days)?;
    let store = Store::open(&report_db).context("open the report database")?;
    let config = bench_config(args.gates)?;
    let venue = config.venues[0].clone();
    let range = ReportRange { from: EPOCH, to: EPOCH + args.days as i64 * DAY, bucket: 3600 };
    let k = config.privacy.flag_below_std_multiple;
    eprintln!("bench analytics: occupancy report over {} days, {} timed runs", args.days, args.iterations);
    let mut ours = Vec::new();
    let mut full = Vec::new();
    let mut checksum = 0.0;
    let mut result_rows = 0;
    for i in 0..args.iterations + 2 {
        let started = Instant::now();
        let net = store.net_flow(&venue.id, range.from, range.to, range.bucket)?;
        let frame = reports::venue_occupancy(net, range.from, k)?;
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        let started = Instant::now();
        let report = compute(&store, &config, &venue, ReportKind::Occupancy, range)?;
        let full_elapsed = started.elapsed().as_secs_f64() * 1000.0;
        if i >= 2 {
            ours.push(elapsed);
            full.push(full_elapsed);
        }
        checksum = f64_column(&frame, "value")?.iter().sum();
        result_rows = frame.height();
        ensure!(
            report.height() == result_rows,
            "the full report has {} rows, the venue series {result_rows}",
            report.height()
        );
    }
    let report_p95 = percentile(&ours, 0.95);
    eprintln!(
        "bench analytics: occupancy p95 {report_p95:.1} ms (full report with zones {:.1} ms)",
        percentile(&full, 0.95)
    );
    drop(store);

    let mut out = json!({
        "bench": "analytics",
        "ingest_records_per_s": ingest_rate.round(),
        "ingest_items_per_s": (2.0 * ingest_rate).round(),
        "e2e_records_per_s": e2e_rate.round(),
        "rows": rows,
        "report": format!("venue occupancy, 1-hour buckets, {} days", args.days),
        "report_rows": result_rows,
        "report_p50_ms": percentile(&ours, 0.5),
        "report_p95_ms": report_p95,
        "full_occupancy_report_p95_ms": percentile(&full, 0.95),
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "batch": args.batch,
    });
    if args.peer != "none" {
        let (parquet, hourly) = (dir.join("report.parquet"), dir.join("report-hourly.parquet"));
        let conn = duckdb::Connection::open(&report_db)?;
        let quoted = |path: &Path| path.to_string_lossy().replace('\'', "''");
        conn.execute_batch(&format!(
            "COPY (SELECT venue, metric, other, start, value, std FROM count_items) TO '{}' (FORMAT PARQUET);
             COPY (SELECT venue, metric, other, hour, value, var, n FROM count_hourly) TO '{}' (FORMAT PARQUET);",
            quoted(&parquet),
            quoted(&hourly)
        ))
        .context("write the Parquet copies for Polars")?;
        drop(conn);
        eprintln!("bench analytics: running the same query in DuckDB's and Polars' Python APIs ({})", args.peer);
        let output = Command::new(&args.peer)
            .arg("benches/peer/analytics_occupancy.py")
            .arg("--db")
            .arg(&report_db)
            .arg("--parquet")
            .arg(&parquet)
            .arg("--hourly-parquet")
            .arg(&hourly)
            .args(["--venue", VENUE, "--from", &range.from.to_string(), "--to", &range.to.to_string()])
            .args(["--bucket", "3600", "--iterations", &args.iterations.to_string()])
            .output()
            .with_context(|| format!("run {} (make one with scripts/peer-venv, or pass --peer none)", args.peer))?;
        ensure!(
            output.status.success(),
            "the peer script failed: {}",
            String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or("")
        );
        let peer: serde_json::Value =
            serde_json::from_slice(output.stdout.split(|b| *b == b'\n').rfind(|l| !l.is_empty()).unwrap_or_default())
                .context("the peer script's output is not JSON")?;
        let number = |key: &str| peer[key].as_f64().with_context(|| format!("the peer reported no {key}"));
        let (duck, polars) = (number("duckdb_p95_ms")?, number("polars_p95_ms")?);
        ensure!(
            peer["rows"].as_u64() == Some(result_rows as u64),
            "the peers' report has {} rows, ours {result_rows}",
            peer["rows"]
        );
        for key in ["checksum", "polars_checksum"] {
            ensure!(
                (number(key)? - checksum).abs() < 1e-6,
                "the peers' {key} {} differs from ours {checksum}",
                peer[key]
            );
        }
        out["peer"] = peer;
        out["ratio_vs_duckdb_python"] = json!(report_p95 / duck);
        out["ratio_vs_polars_python"] = json!(report_p95 / polars);
        out["ratio_vs_faster"] = json!(report_p95 / duck.min(polars));
        out["results_equal"] = json!(true);
    }
    println!("{out}");
    Ok(())
}
