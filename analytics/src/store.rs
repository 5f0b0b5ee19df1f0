//! The DuckDB store of noised count records: schema and migrations, idempotent batch
//! inserts, the quarantine of refused messages, and the queries behind the API.
//!
//! All functions block; callers run them on a blocking thread. One [`Store`] is one DuckDB
//! connection; [`Store::try_clone`] opens another connection to the same database, so the
//! ingest writer and the HTTP readers do not wait for each other (DuckDB is MVCC).
//!
//! Time parameters are seconds since the Unix epoch. A record belongs to the range
//! `[from, to)` when its interval *starts* in it.

use std::collections::HashSet;
use std::path::Path;

use duckdb::{params, Connection};
use passage_wire::{CountRecord, Direction, Id, Metric, NoiseMechanism};
use serde::Serialize;

use crate::{now_unix, AnalyticsError};

mod columns;
mod queries;

pub use queries::{AlertEntry, SweepEntry, ZoneLevel};

/// Newest schema version this build writes and reads.
pub const SCHEMA_VERSION: i64 = 2;

/// Migrations, in order: `(version, statements)`. Each runs in its own transaction together
/// with the row that records it in `schema_version`.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE count_records (
        id          TEXT PRIMARY KEY,
        venue       TEXT NOT NULL,
        camera      TEXT NOT NULL,
        start       BIGINT NOT NULL,
        secs        INTEGER NOT NULL,
        mechanism   TEXT NOT NULL,
        epsilon     DOUBLE NOT NULL,
        received_at BIGINT NOT NULL
    );
    CREATE TABLE count_items (
        record_id    TEXT NOT NULL,
        venue        TEXT NOT NULL,
        camera       TEXT NOT NULL,
        start        BIGINT NOT NULL,
        secs         INTEGER NOT NULL,
        metric       TEXT NOT NULL,
        line_or_zone TEXT NOT NULL,
        dir_or_to    TEXT,
        value        BIGINT NOT NULL,
        std          DOUBLE NOT NULL
    );
    CREATE TABLE quarantine (
        received_at BIGINT NOT NULL,
        topic       TEXT NOT NULL,
        reason      TEXT NOT NULL,
        payload_len INTEGER NOT NULL
    );",
    ),
    (
        2,
        "CREATE TABLE alerts (
        occurred_at BIGINT NOT NULL,
        venue     TEXT NOT NULL,
        zone      TEXT NOT NULL,
        state     TEXT NOT NULL,
        occupancy DOUBLE NOT NULL,
        std       DOUBLE NOT NULL,
        capacity  BIGINT NOT NULL
    );
    CREATE TABLE sweep_log (
        swept_at BIGINT NOT NULL,
        venue    TEXT NOT NULL,
        category TEXT NOT NULL,
        cutoff   BIGINT NOT NULL,
        rows     BIGINT NOT NULL
    );",
    ),
];

/// Longest topic kept in the quarantine table (topics of refused messages are untrusted).
pub(crate) const MAX_QUARANTINE_TOPIC: usize = 200;

/// What one [`Store::insert_batch`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct InsertOutcome {
    /// Records stored by this call.
    pub inserted: u64,
    /// Records skipped because a record with the same id was already stored (or appeared
    /// earlier in the same batch).
    pub duplicates: u64,
}

/// Sum of the `crossings` of one line in one direction over a time range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineTotal {
    /// The line.
    pub line: Id,
    /// The direction.
    pub dir: Direction,
    /// Sum of the noised per-interval values.
    pub value: i64,
    /// Standard deviation of the noise in `value`: `sqrt(sum of the item variances)`.
    pub std: f64,
    /// Number of count items summed.
    pub items: u64,
}

/// Crossings of one line in one interval, both directions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// Interval start, seconds since the Unix epoch.
    pub start: i64,
    /// Interval length in seconds.
    pub secs: u32,
    /// Noised crossings "in", when reported.
    pub in_value: Option<i64>,
    /// Noise standard deviation of `in_value`.
    pub in_std: Option<f64>,
    /// Noised crossings "out", when reported.
    pub out_value: Option<i64>,
    /// Noise standard deviation of `out_value`.
    pub out_std: Option<f64>,
}

/// One stored record, without its figures ([`Store::record_index`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredRecord {
    /// The record id.
    pub id: String,
    /// The camera.
    pub camera: Id,
    /// Interval start, seconds since the Unix epoch.
    pub start: i64,
    /// Interval length in seconds.
    pub secs: u32,
}

/// Records stored for one venue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VenueSummary {
    /// The venue.
    pub venue: Id,
    /// Records stored.
    pub records: u64,
    /// Earliest interval start.
    pub first_start: i64,
    /// Latest interval end.
    pub last_end: i64,
}

/// Messages quarantined for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantineCount {
    /// The reason code.
    pub reason: String,
    /// How many.
    pub count: u64,
}

/// What the database holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Schema version of the file.
    pub schema_version: i64,
    /// Count records stored.
    pub records: u64,
    /// Count items stored.
    pub items: u64,
    /// Messages quarantined.
    pub quarantined: u64,
    /// Quarantined messages by reason, most frequent first.
    pub quarantine_reasons: Vec<QuarantineCount>,
    /// Per venue, in id order.
    pub venues: Vec<VenueSummary>,
}

/// One refused message, as the quarantine table keeps it: never the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QuarantineEntry {
    /// Topic it arrived on.
    pub topic: String,
    /// Reason code.
    pub reason: String,
    /// Payload size in bytes.
    pub payload_len: usize,
}

/// One DuckDB connection to the analytics database.
pub struct Store {
    conn: Connection,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.conn.path()).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the database file at `path`, creating it when absent, and migrates its schema to
    /// [`SCHEMA_VERSION`]. Refuses a file written by a newer version.
    pub fn open(path: &Path) -> Result<Store, AnalyticsError> {
        let mut conn = Connection::open(path).map_err(AnalyticsError::db("open the database file"))?;
        migrate(&mut conn)?;
        create_staging(&conn)?;
        Ok(Store { conn })
    }

    /// Another connection to the same database, for a second thread.
    pub fn try_clone(&self) -> Result<Store, AnalyticsError> {
        let conn = self.conn.try_clone().map_err(AnalyticsError::db("open a second connection"))?;
        create_staging(&conn)?;
        Ok(Store { conn })
    }

    /// The schema version recorded in the file.
    pub fn schema_version(&self) -> Result<i64, AnalyticsError> {
        schema_version(&self.conn)
    }

    /// Stores `records` in one transaction. A record whose id is already stored (or appeared
    /// earlier in `records`) is skipped and counted as a duplicate, so redelivered messages
    /// never count twice. Either the whole batch is stored or, on error, none of it.
    ///
    /// The batch travels as Arrow columns: the records are appended to a per-connection
    /// staging table, moved into `count_records` with one `INSERT .. ON CONFLICT DO NOTHING
    /// RETURNING id` (the primary key index decides what is new), and the items of the new
    /// records are appended to `count_items` directly. The commit is durable (DuckDB's WAL).
    pub fn insert_batch(&mut self, records: &[CountRecord]) -> Result<InsertOutcome, AnalyticsError> {
        let received_at = now_unix();
        let mut outcome = InsertOutcome::default();
        let mut seen: HashSet<&str> = HashSet::with_capacity(records.len());
        let unique: Vec<&CountRecord> = records.iter().filter(|record| seen.insert(record.id.as_str())).collect();
        outcome.duplicates = (records.len() - unique.len()) as u64;
        if unique.is_empty() {
            return Ok(outcome);
        }
        let transaction = self.conn.transaction().map_err(AnalyticsError::db("begin an insert transaction"))?;
        transaction
            .execute_batch("DELETE FROM stage_records")
            .map_err(AnalyticsError::db("empty the staging table"))?;
        {
            let mut appender = transaction
                .appender_to_catalog_and_db("stage_records", "temp", "main")
                .map_err(AnalyticsError::db("open the staging appender"))?;
            appender
                .append_record_batch(columns::records(&unique, received_at)?)
                .map_err(AnalyticsError::db("stage the count records"))?;
            appender.flush().map_err(AnalyticsError::db("flush the staged records"))?;
        }
        let fresh: HashSet<String> = {
            let mut statement = transaction
                .prepare_cached(
                    "INSERT INTO count_records SELECT * FROM temp.stage_records ON CONFLICT DO NOTHING RETURNING id",
                )
                .map_err(AnalyticsError::db("prepare the record insert"))?;
            let ids = statement
                .query_map([], |row| row.get::<_, String>(0))
                .map_err(AnalyticsError::db("insert the count records"))?;
            ids.collect::<Result<_, _>>().map_err(AnalyticsError::db("read an inserted record id"))?
        };
        let fresh_records: Vec<&CountRecord> =
            unique.iter().copied().filter(|record| fresh.contains(record.id.as_str())).collect();
        if fresh_records.iter().any(|record| !record.items.is_empty()) {
            let mut appender =
                transaction.appender("count_items").map_err(AnalyticsError::db("open the count item appender"))?;
            appender
                .append_record_batch(columns::items(&fresh_records)?)
                .map_err(AnalyticsError::db("append the count items"))?;
            appender.flush().map_err(AnalyticsError::db("flush the count items"))?;
        }
        transaction.commit().map_err(AnalyticsError::db("commit an insert transaction"))?;
        outcome.inserted = fresh_records.len() as u64;
        outcome.duplicates += (unique.len() - fresh_records.len()) as u64;
        Ok(outcome)
    }

    /// Records that a message on `topic` of `payload_len` bytes was refused for `reason`.
    /// The payload itself is untrusted and never stored; an overlong topic is truncated.
    pub fn quarantine(&self, topic: &str, reason: &str, payload_len: usize) -> Result<(), AnalyticsError> {
        self.conn
            .execute(
                "INSERT INTO quarantine (received_at, topic, reason, payload_len) VALUES (?, ?, ?, ?)",
                params![now_unix(), truncate(topic, MAX_QUARANTINE_TOPIC), reason, clamp_len(payload_len)],
            )
            .map_err(AnalyticsError::db("insert a quarantine entry"))?;
        Ok(())
    }

    /// Quarantines several messages in one transaction.
    pub(crate) fn quarantine_all(&mut self, entries: &[QuarantineEntry]) -> Result<(), AnalyticsError> {
        if entries.is_empty() {
            return Ok(());
        }
        let received_at = now_unix();
        let transaction = self.conn.transaction().map_err(AnalyticsError::db("begin a quarantine transaction"))?;
        {
            let mut insert = transaction
                .prepare_cached("INSERT INTO quarantine (received_at, topic, reason, payload_len) VALUES (?, ?, ?, ?)")
                .map_err(AnalyticsError::db("prepare the quarantine insert"))?;
            for entry in entries {
                insert
                    .execute(params![
                        received_at,
                        truncate(&entry.topic, MAX_QUARANTINE_TOPIC),
                        entry.reason,
                        clamp_len(entry.payload_len),
                    ])
                    .map_err(AnalyticsError::db("insert a quarantine entry"))?;
            }
        }
        transaction.commit().map_err(AnalyticsError::db("commit a quarantine transaction"))
    }

    /// Crossings of every line of `venue` per direction, summed over the intervals that start
    /// in `[from, to)`, ordered by line then direction. Lines without data are absent.
    pub fn totals(&self, venue: &Id, from: i64, to: i64) -> Result<Vec<LineTotal>, AnalyticsError> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT line_or_zone, dir_or_to, CAST(SUM(value) AS BIGINT), SQRT(SUM(std * std)),
                        CAST(COUNT(*) AS BIGINT)
                 FROM count_items
                 WHERE venue = ? AND metric = 'crossings' AND start >= ? AND start < ?
                 GROUP BY line_or_zone, dir_or_to
                 ORDER BY line_or_zone, dir_or_to",
            )
            .map_err(AnalyticsError::db("prepare the totals query"))?;
        let rows = statement
            .query_map(params![venue.as_str(), from, to], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, f64>(3)?,
                    row.get::<_, i64>(4)?,
                ))
            })
            .map_err(AnalyticsError::db("run the totals query"))?;
        let mut totals = Vec::new();
        for row in rows {
            let (line, dir, value, std, items) = row.map_err(AnalyticsError::db("read a totals row"))?;
            totals.push(LineTotal {
                line: stored_id(&line)?,
                dir: stored_direction(dir.as_deref())?,
                value,
                std,
                items: u64::try_from(items).unwrap_or(0),
            });
        }
        Ok(totals)
    }

    /// Crossings of `line` of `venue` per interval starting in `[from, to)`, in time order.
    /// Intervals with no record are absent (no data is not zero).
    pub fn series(&self, venue: &Id, line: &Id, from: i64, to: i64) -> Result<Vec<Point>, AnalyticsError> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT start, MAX(secs),
                        CAST(SUM(value) FILTER (WHERE dir_or_to = 'in') AS BIGINT),
                        SQRT(SUM(std * std) FILTER (WHERE dir_or_to = 'in')),
                        CAST(SUM(value) FILTER (WHERE dir_or_to = 'out') AS BIGINT),
                        SQRT(SUM(std * std) FILTER (WHERE dir_or_to = 'out'))
                 FROM count_items
                 WHERE venue = ? AND metric = 'crossings' AND line_or_zone = ?
                   AND start >= ? AND start < ?
                 GROUP BY start
                 ORDER BY start",
            )
            .map_err(AnalyticsError::db("prepare the series query"))?;
        let rows = statement
            .query_map(params![venue.as_str(), line.as_str(), from, to], |row| {
                Ok(Point {
                    start: row.get(0)?,
                    secs: row.get(1)?,
                    in_value: row.get(2)?,
                    in_std: row.get(3)?,
                    out_value: row.get(4)?,
                    out_std: row.get(5)?,
                })
            })
            .map_err(AnalyticsError::db("run the series query"))?;
        rows.collect::<Result<Vec<Point>, _>>().map_err(AnalyticsError::db("read a series row"))
    }

    /// Row counts, quarantine reasons and per-venue coverage.
    pub fn summary(&self) -> Result<Summary, AnalyticsError> {
        let count = |sql: &str, context: &'static str| -> Result<u64, AnalyticsError> {
            let n: i64 = self.conn.query_row(sql, [], |row| row.get(0)).map_err(AnalyticsError::db(context))?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        let records = count("SELECT COUNT(*) FROM count_records", "count records")?;
        let items = count("SELECT COUNT(*) FROM count_items", "count items")?;
        let quarantined = count("SELECT COUNT(*) FROM quarantine", "count quarantined messages")?;

        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT reason, CAST(COUNT(*) AS BIGINT) FROM quarantine
                 GROUP BY reason ORDER BY COUNT(*) DESC, reason",
            )
            .map_err(AnalyticsError::db("prepare the quarantine summary"))?;
        let quarantine_reasons = statement
            .query_map([], |row| {
                Ok(QuarantineCount { reason: row.get(0)?, count: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0) })
            })
            .map_err(AnalyticsError::db("run the quarantine summary"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(AnalyticsError::db("read a quarantine summary row"))?;

        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT venue, CAST(COUNT(*) AS BIGINT), MIN(start), MAX(start + secs)
                 FROM count_records GROUP BY venue ORDER BY venue",
            )
            .map_err(AnalyticsError::db("prepare the venue summary"))?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?, row.get::<_, i64>(3)?))
            })
            .map_err(AnalyticsError::db("run the venue summary"))?;
        let mut venues = Vec::new();
        for row in rows {
            let (venue, records, first_start, last_end) =
                row.map_err(AnalyticsError::db("read a venue summary row"))?;
            venues.push(VenueSummary {
                venue: stored_id(&venue)?,
                records: u64::try_from(records).unwrap_or(0),
                first_start,
                last_end,
            });
        }

        Ok(Summary { schema_version: self.schema_version()?, records, items, quarantined, quarantine_reasons, venues })
    }

    /// The records stored for `venue` (id, camera and interval; no values), ordered by camera,
    /// then interval start, then id: what an edge's spool can be reconciled against.
    pub fn record_index(&self, venue: &Id) -> Result<Vec<StoredRecord>, AnalyticsError> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT id, camera, start, secs FROM count_records WHERE venue = ? ORDER BY camera, start, id",
            )
            .map_err(AnalyticsError::db("prepare the record index query"))?;
        let rows = statement
            .query_map(params![venue.as_str()], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?, row.get::<_, i64>(3)?))
            })
            .map_err(AnalyticsError::db("run the record index query"))?;
        let mut index = Vec::new();
        for row in rows {
            let (id, camera, start, secs) = row.map_err(AnalyticsError::db("read a record index row"))?;
            let secs = u32::try_from(secs).map_err(|_| AnalyticsError::Corrupt { what: "interval length" })?;
            index.push(StoredRecord { id, camera: stored_id(&camera)?, start, secs });
        }
        Ok(index)
    }

    /// A trivial query, to tell whether the database answers.
    pub fn ping(&self) -> Result<(), AnalyticsError> {
        self.conn
            .query_row("SELECT 1", [], |row| row.get::<_, i32>(0))
            .map_err(AnalyticsError::db("ping the database"))?;
        Ok(())
    }
}

#[cfg(test)]
impl Store {
    /// Breaks the database under the API, to exercise its 5xx path.
    pub(crate) fn drop_items_for_test(&self) -> Result<(), AnalyticsError> {
        self.conn.execute_batch("DROP TABLE count_items").map_err(AnalyticsError::db("drop the count items"))
    }
}

/// The connection's own staging table for [`Store::insert_batch`] (temporary: never on disk
/// beyond DuckDB's spill space, gone with the connection).
fn create_staging(conn: &Connection) -> Result<(), AnalyticsError> {
    // Same columns as `count_records` by construction, without its key.
    conn.execute_batch("CREATE TEMP TABLE IF NOT EXISTS stage_records AS SELECT * FROM count_records LIMIT 0")
        .map_err(AnalyticsError::db("create the staging table"))
}

fn schema_version(conn: &Connection) -> Result<i64, AnalyticsError> {
    conn.query_row("SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM schema_version", [], |row| row.get(0))
        .map_err(AnalyticsError::db("read the schema version"))
}

/// Brings the schema up to [`SCHEMA_VERSION`], one migration per transaction.
fn migrate(conn: &mut Connection) -> Result<(), AnalyticsError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version    INTEGER NOT NULL,
            applied_at BIGINT NOT NULL
        )",
    )
    .map_err(AnalyticsError::db("create the schema_version table"))?;
    let current = schema_version(conn)?;
    if current > SCHEMA_VERSION {
        return Err(AnalyticsError::SchemaTooNew { found: current, supported: SCHEMA_VERSION });
    }
    for (version, statements) in MIGRATIONS.iter().filter(|(version, _)| *version > current) {
        let transaction = conn.transaction().map_err(AnalyticsError::db("begin a migration"))?;
        transaction.execute_batch(statements).map_err(AnalyticsError::db("apply a schema migration"))?;
        transaction
            .execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", params![version, now_unix()])
            .map_err(AnalyticsError::db("record a schema migration"))?;
        transaction.commit().map_err(AnalyticsError::db("commit a schema migration"))?;
        tracing::info!(version, "analytics database schema migrated");
    }
    Ok(())
}

fn mechanism_name(mechanism: NoiseMechanism) -> &'static str {
    match mechanism {
        NoiseMechanism::DiscreteLaplace => "discrete_laplace",
        NoiseMechanism::DiscreteGaussian => "discrete_gaussian",
        NoiseMechanism::BinaryTree => "binary_tree",
        NoiseMechanism::SqrtFactorization => "sqrt_factorization",
    }
}

fn direction_name(dir: Direction) -> &'static str {
    match dir {
        Direction::In => "in",
        Direction::Out => "out",
    }
}

/// `(metric, line_or_zone, dir_or_to)` columns of a metric.
fn metric_columns(metric: &Metric) -> (&'static str, &str, Option<&str>) {
    match metric {
        Metric::Crossings { line, dir } => ("crossings", line.as_str(), Some(direction_name(*dir))),
        Metric::Total { line, dir } => ("total", line.as_str(), Some(direction_name(*dir))),
        Metric::Occupancy { zone } => ("occupancy", zone.as_str(), None),
        Metric::Transition { from, to } => ("transition", from.as_str(), Some(to.as_str())),
        Metric::Dwell { zone, bucket } => ("dwell", zone.as_str(), Some(dwell_label(*bucket))),
        Metric::Entries { zone } => ("entries", zone.as_str(), None),
        Metric::Exits { zone } => ("exits", zone.as_str(), None),
    }
}

/// The stored label of a dwell bucket: its lower bound in seconds.
fn dwell_label(bucket: u8) -> &'static str {
    match bucket {
        0 => "0",
        1 => "60",
        2 => "300",
        3 => "900",
        4 => "1800",
        _ => "3600",
    }
}

fn stored_id(text: &str) -> Result<Id, AnalyticsError> {
    Id::new(text).map_err(|_| AnalyticsError::Corrupt { what: "identifier" })
}

fn stored_direction(text: Option<&str>) -> Result<Direction, AnalyticsError> {
    match text {
        Some("in") => Ok(Direction::In),
        Some("out") => Ok(Direction::Out),
        _ => Err(AnalyticsError::Corrupt { what: "direction" }),
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn clamp_len(len: usize) -> i64 {
    i64::try_from(len).unwrap_or(i64::MAX).min(i64::from(i32::MAX))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use passage_wire::CountItem;

    pub(crate) fn id(s: &str) -> Id {
        Id::new(s).expect("valid id")
    }

    pub(crate) fn crossing(line: &str, dir: Direction, value: i64, std: f64) -> CountItem {
        CountItem { metric: Metric::Crossings { line: id(line), dir }, value, std }
    }

    pub(crate) fn record(record_id: &str, venue: &str, camera: &str, start: i64, items: Vec<CountItem>) -> CountRecord {
        CountRecord {
            v: 1,
            id: record_id.into(),
            venue: id(venue),
            camera: id(camera),
            start,
            secs: 60,
            mechanism: NoiseMechanism::DiscreteLaplace,
            epsilon: 0.5,
            items,
        }
    }

    fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("analytics.duckdb")).expect("open store");
        (dir, store)
    }

    fn row_count(store: &Store, table: &str) -> i64 {
        store.conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| row.get(0)).expect("count")
    }

    /// A record the edge spool merged from three one-minute intervals (secs 180, starting off
    /// the usual grid) is stored like any other and counts once in totals and series.
    #[test]
    fn merged_coarse_records_are_stored_and_reported() {
        let (_dir, mut store) = temp_store();
        let mut merged =
            record("m1", "arena", "cam-north", 1_030, vec![crossing("north-gate", Direction::In, 21, 5.2)]);
        merged.secs = 180;
        let mut whole_day =
            record("d1", "arena", "cam-east", 86_400, vec![crossing("east-gate", Direction::In, 7, 2.0)]);
        whole_day.secs = 86_400;
        let next = record("r9", "arena", "cam-north", 1_210, vec![crossing("north-gate", Direction::In, 4, 3.0)]);
        let outcome = store.insert_batch(&[merged, whole_day, next]).expect("insert");
        assert_eq!(outcome, InsertOutcome { inserted: 3, duplicates: 0 });
        let totals = store.totals(&id("arena"), 0, 200_000).expect("totals");
        let north = totals.iter().find(|t| t.line == id("north-gate")).expect("north");
        assert_eq!((north.value, north.items), (25, 2));
        let series = store.series(&id("arena"), &id("north-gate"), 0, 10_000).expect("series");
        let points: Vec<(i64, u32, Option<i64>)> = series.iter().map(|p| (p.start, p.secs, p.in_value)).collect();
        assert_eq!(points, vec![(1_030, 180, Some(21)), (1_210, 60, Some(4))]);
        let index: Vec<(String, String, i64, u32)> = store
            .record_index(&id("arena"))
            .expect("index")
            .into_iter()
            .map(|r| (r.camera.to_string(), r.id, r.start, r.secs))
            .collect();
        let expected =
            [("cam-east", "d1", 86_400, 86_400), ("cam-north", "m1", 1_030, 180), ("cam-north", "r9", 1_210, 60)];
        let expected: Vec<(String, String, i64, u32)> =
            expected.iter().map(|(c, i, s, n)| ((*c).to_owned(), (*i).to_owned(), *s, *n)).collect();
        assert_eq!(index, expected);
    }

    fn sample_batch() -> Vec<CountRecord> {
        vec![
            record(
                "r1",
                "arena",
                "cam-north",
                1_000,
                vec![crossing("north-gate", Direction::In, 10, 3.0), crossing("north-gate", Direction::Out, 2, 3.0)],
            ),
            record(
                "r2",
                "arena",
                "cam-north",
                1_060,
                vec![
                    crossing("north-gate", Direction::In, 5, 4.0),
                    CountItem { metric: Metric::Occupancy { zone: id("concourse") }, value: 99, std: 1.0 },
                ],
            ),
            record("r3", "arena", "cam-east", 1_000, vec![crossing("east-gate", Direction::In, 7, 2.0)]),
        ]
    }

    #[test]
    fn open_creates_the_newest_schema_and_reopening_keeps_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("analytics.duckdb");
        {
            let mut store = Store::open(&path).expect("open");
            assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
            store.insert_batch(&sample_batch()).expect("insert");
        }
        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
        assert_eq!(row_count(&store, "schema_version"), SCHEMA_VERSION, "a migration ran twice");
        assert_eq!(row_count(&store, "count_records"), 3, "data lost on reopen");
    }

    #[test]
    fn a_version_1_file_is_migrated_in_place() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("analytics.duckdb");
        {
            // A file as the first release wrote it: migration 1 only, with data.
            let mut conn = Connection::open(&path).expect("open");
            conn.execute_batch("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at BIGINT NOT NULL)")
                .expect("schema_version");
            let transaction = conn.transaction().expect("transaction");
            transaction.execute_batch(MIGRATIONS[0].1).expect("migration 1");
            transaction.execute("INSERT INTO schema_version VALUES (1, 0)", []).expect("version");
            transaction
                .execute(
                    "INSERT INTO count_records VALUES ('old', 'arena', 'cam-north', 0, 60, 'discrete_laplace', 0.5, 0)",
                    [],
                )
                .expect("a record");
            transaction.commit().expect("commit");
        }
        let store = Store::open(&path).expect("migrate");
        assert_eq!(store.schema_version().expect("version"), 2);
        assert_eq!(row_count(&store, "count_records"), 1, "data kept");
        assert_eq!(row_count(&store, "alerts"), 0);
        assert_eq!(row_count(&store, "sweep_log"), 0);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("analytics.duckdb");
        {
            let store = Store::open(&path).expect("open");
            store.conn.execute("INSERT INTO schema_version VALUES (99, 0)", []).expect("bump version");
        }
        match Store::open(&path) {
            Err(AnalyticsError::SchemaTooNew { found: 99, supported: SCHEMA_VERSION }) => {}
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }

    #[test]
    fn inserting_the_same_batch_twice_stores_it_once() {
        let (_dir, mut store) = temp_store();
        let batch = sample_batch();
        let first = store.insert_batch(&batch).expect("first insert");
        assert_eq!(first, InsertOutcome { inserted: 3, duplicates: 0 });
        let records = row_count(&store, "count_records");
        let items = row_count(&store, "count_items");
        assert_eq!((records, items), (3, 5));

        let second = store.insert_batch(&batch).expect("second insert");
        assert_eq!(second, InsertOutcome { inserted: 0, duplicates: 3 });
        assert_eq!(row_count(&store, "count_records"), records);
        assert_eq!(row_count(&store, "count_items"), items);
    }

    #[test]
    fn duplicates_inside_one_batch_and_mixed_batches_are_counted() {
        let (_dir, mut store) = temp_store();
        let batch = sample_batch();
        store.insert_batch(&batch[..1]).expect("first insert");
        let mixed = vec![batch[0].clone(), batch[1].clone(), batch[1].clone(), batch[2].clone()];
        let outcome = store.insert_batch(&mixed).expect("mixed insert");
        assert_eq!(outcome, InsertOutcome { inserted: 2, duplicates: 2 });
        assert_eq!(row_count(&store, "count_records"), 3);
        assert_eq!(row_count(&store, "count_items"), 5);
    }

    #[test]
    fn totals_sum_values_and_combine_variances() {
        let (_dir, mut store) = temp_store();
        store.insert_batch(&sample_batch()).expect("insert");
        // Another venue and an interval outside the range must not leak into the sums.
        store
            .insert_batch(&[
                record("other", "mall", "cam-1", 1_000, vec![crossing("north-gate", Direction::In, 1_000, 1.0)]),
                record("late", "arena", "cam-north", 2_000, vec![crossing("north-gate", Direction::In, 500, 1.0)]),
            ])
            .expect("insert");

        let totals = store.totals(&id("arena"), 1_000, 2_000).expect("totals");
        let expected = vec![
            LineTotal { line: id("east-gate"), dir: Direction::In, value: 7, std: 2.0, items: 1 },
            LineTotal { line: id("north-gate"), dir: Direction::In, value: 15, std: 5.0, items: 2 },
            LineTotal { line: id("north-gate"), dir: Direction::Out, value: 2, std: 3.0, items: 1 },
        ];
        assert_eq!(totals.len(), expected.len(), "{totals:?}");
        for (got, want) in totals.iter().zip(&expected) {
            assert_eq!((&got.line, got.dir, got.value, got.items), (&want.line, want.dir, want.value, want.items));
            assert!((got.std - want.std).abs() < 1e-9, "std {} != {}", got.std, want.std);
        }

        // `to` is exclusive, `from` inclusive.
        let only_first = store.totals(&id("arena"), 1_000, 1_060).expect("totals");
        let north_in =
            only_first.iter().find(|t| t.line == id("north-gate") && t.dir == Direction::In).expect("north in");
        assert_eq!(north_in.value, 10);
        assert!(store.totals(&id("arena"), 5_000, 6_000).expect("totals").is_empty());
    }

    #[test]
    fn series_gives_one_point_per_interval_with_both_directions() {
        let (_dir, mut store) = temp_store();
        store.insert_batch(&sample_batch()).expect("insert");
        let series = store.series(&id("arena"), &id("north-gate"), 0, 10_000).expect("series");
        assert_eq!(
            series,
            vec![
                Point {
                    start: 1_000,
                    secs: 60,
                    in_value: Some(10),
                    in_std: Some(3.0),
                    out_value: Some(2),
                    out_std: Some(3.0)
                },
                Point { start: 1_060, secs: 60, in_value: Some(5), in_std: Some(4.0), out_value: None, out_std: None },
            ]
        );
        assert!(store.series(&id("arena"), &id("nowhere"), 0, 10_000).expect("series").is_empty());
    }

    #[test]
    fn quarantine_keeps_reason_and_size_but_no_payload() {
        let (_dir, mut store) = temp_store();
        store.quarantine("passage/v1/arena/counts/cam-x", "unknown-camera", 321).expect("quarantine");
        let long_topic = format!("passage/v1/arena/counts/{}", "é".repeat(300));
        store
            .quarantine_all(&[
                QuarantineEntry { topic: long_topic, reason: "bad-topic".into(), payload_len: 5 },
                QuarantineEntry { topic: "t".into(), reason: "unknown-camera".into(), payload_len: 7 },
            ])
            .expect("quarantine all");
        let columns: Vec<String> = store
            .conn
            .prepare("SELECT column_name FROM information_schema.columns WHERE table_name = 'quarantine' ORDER BY ordinal_position")
            .expect("prepare")
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(columns, ["received_at", "topic", "reason", "payload_len"]);
        let longest: i64 =
            store.conn.query_row("SELECT MAX(strlen(topic)) FROM quarantine", [], |row| row.get(0)).expect("query");
        assert!(longest <= MAX_QUARANTINE_TOPIC as i64, "topic not truncated: {longest}");

        let summary = store.summary().expect("summary");
        assert_eq!(summary.quarantined, 3);
        assert_eq!(
            summary.quarantine_reasons,
            vec![
                QuarantineCount { reason: "unknown-camera".into(), count: 2 },
                QuarantineCount { reason: "bad-topic".into(), count: 1 },
            ]
        );
    }

    #[test]
    fn summary_counts_rows_and_venues() {
        let (_dir, mut store) = temp_store();
        store.insert_batch(&sample_batch()).expect("insert");
        let summary = store.summary().expect("summary");
        assert_eq!(summary.schema_version, SCHEMA_VERSION);
        assert_eq!((summary.records, summary.items, summary.quarantined), (3, 5, 0));
        assert_eq!(
            summary.venues,
            vec![VenueSummary { venue: id("arena"), records: 3, first_start: 1_000, last_end: 1_120 }]
        );
    }

    #[test]
    fn every_metric_kind_is_stored_in_its_columns() {
        let (_dir, mut store) = temp_store();
        let items = vec![
            crossing("l", Direction::Out, 1, 0.5),
            CountItem { metric: Metric::Total { line: id("l"), dir: Direction::In }, value: 2, std: 0.5 },
            CountItem { metric: Metric::Occupancy { zone: id("z") }, value: 3, std: 0.5 },
            CountItem { metric: Metric::Transition { from: id("a"), to: id("b") }, value: 4, std: 0.5 },
        ];
        store.insert_batch(&[record("m", "arena", "cam", 0, items)]).expect("insert");
        let rows: Vec<(String, String, Option<String>, i64)> = store
            .conn
            .prepare("SELECT metric, line_or_zone, dir_or_to, value FROM count_items ORDER BY value")
            .expect("prepare")
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(
            rows,
            vec![
                ("crossings".into(), "l".into(), Some("out".into()), 1),
                ("total".into(), "l".into(), Some("in".into()), 2),
                ("occupancy".into(), "z".into(), None, 3),
                ("transition".into(), "a".into(), Some("b".into()), 4),
            ]
        );
    }
}
