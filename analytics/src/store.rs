//! The DuckDB store of noised count records: schema and migrations, idempotent batch
//! inserts, the quarantine of refused messages, and the queries behind the API.
//!
//! All functions block; callers run them on a blocking thread. One [`Store`] is one DuckDB
//! connection; [`Store::try_clone`] opens another connection to the same database, so the
//! ingest writer and the HTTP readers do not wait for each other (DuckDB is MVCC).
//!
//! Time parameters are seconds since the Unix epoch. A record belongs to the range
//! `[from, to)` when its interval *starts* in it.

use std::path::Path;

use duckdb::{params, Connection};
use passage_wire::{CountRecord, Direction, Id};
use serde::Serialize;

use crate::{now_unix, AnalyticsError};

mod columns;
mod queries;

pub use columns::{CodeBook, PreparedBatch};

pub use queries::{AlertEntry, SweepEntry, ZoneLevel};

/// Newest schema version this build writes and reads.
pub const SCHEMA_VERSION: i64 = 3;

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
    (
        // Fixed-width rows: identifiers become codes of the `names` table, metric kinds,
        // directions and mechanisms small integers; items refer to their record by a sequence
        // number; duplicates are found by (id, start) within the batch's time window instead
        // of a text primary key; and an hourly rollup, appended to at every insert (partial
        // sums per cell, merged by the sweeper), serves reports over long ranges. Existing
        // rows are carried over.
        3,
        "CREATE TABLE names (
        code INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    INSERT INTO names
        SELECT CAST(row_number() OVER (ORDER BY name) AS INTEGER), name FROM (
            SELECT venue AS name FROM count_records UNION SELECT camera FROM count_records
            UNION SELECT venue FROM count_items UNION SELECT camera FROM count_items
            UNION SELECT line_or_zone FROM count_items
            UNION SELECT dir_or_to FROM count_items WHERE metric = 'transition');
    CREATE TABLE counters (
        name  TEXT NOT NULL,
        value BIGINT NOT NULL
    );
    INSERT INTO counters SELECT 'record_seq', COUNT(*) + 1 FROM count_records;
    CREATE TABLE records_v3 (
        seq         BIGINT NOT NULL,
        id          TEXT USING COMPRESSION uncompressed NOT NULL,
        venue       INTEGER NOT NULL,
        camera      INTEGER NOT NULL,
        start       BIGINT NOT NULL,
        secs        INTEGER NOT NULL,
        mechanism   UTINYINT NOT NULL,
        epsilon     DOUBLE NOT NULL,
        received_at BIGINT NOT NULL
    );
    INSERT INTO records_v3
        SELECT row_number() OVER (ORDER BY r.start, r.id), r.id, v.code, c.code, r.start, r.secs,
               CASE r.mechanism WHEN 'discrete_laplace' THEN 1 WHEN 'discrete_gaussian' THEN 2
                                WHEN 'binary_tree' THEN 3 ELSE 4 END,
               r.epsilon, r.received_at
        FROM count_records r JOIN names v ON v.name = r.venue JOIN names c ON c.name = r.camera;
    CREATE TABLE items_v3 (
        seq     BIGINT NOT NULL,
        venue   INTEGER NOT NULL,
        start   BIGINT NOT NULL,
        secs    INTEGER NOT NULL,
        metric  UTINYINT NOT NULL,
        subject INTEGER NOT NULL,
        other   INTEGER NOT NULL,
        value   BIGINT NOT NULL,
        std     DOUBLE NOT NULL
    );
    INSERT INTO items_v3
        SELECT r.seq, r.venue, i.start, i.secs,
               CASE i.metric WHEN 'crossings' THEN 1 WHEN 'total' THEN 2 WHEN 'occupancy' THEN 3
                             WHEN 'transition' THEN 4 WHEN 'dwell' THEN 5 WHEN 'entries' THEN 6 ELSE 7 END,
               s.code,
               CASE WHEN i.metric IN ('crossings', 'total') THEN CASE i.dir_or_to WHEN 'in' THEN 0 ELSE 1 END
                    WHEN i.metric = 'transition' THEN o.code
                    WHEN i.metric = 'dwell' THEN CAST(i.dir_or_to AS INTEGER)
                    ELSE -1 END,
               i.value, i.std
        FROM count_items i
        JOIN records_v3 r ON r.id = i.record_id
        JOIN names s ON s.name = i.line_or_zone
        LEFT JOIN names o ON i.metric = 'transition' AND o.name = i.dir_or_to;
    DROP TABLE count_items;
    DROP TABLE count_records;
    ALTER TABLE records_v3 RENAME TO count_records;
    ALTER TABLE items_v3 RENAME TO count_items;
    CREATE TABLE count_hourly (
        venue   INTEGER NOT NULL,
        metric  UTINYINT NOT NULL,
        subject INTEGER NOT NULL,
        other   INTEGER NOT NULL,
        hour    BIGINT NOT NULL,
        value   BIGINT NOT NULL,
        var     DOUBLE NOT NULL,
        n       BIGINT NOT NULL
    );
    INSERT INTO count_hourly
        SELECT venue, metric, subject, other, (start // 3600) * 3600 AS hour,
               CAST(SUM(value) AS BIGINT), SUM(std * std), COUNT(*)
        FROM count_items GROUP BY ALL;
    CREATE VIEW count_items_named AS
        SELECT r.id AS record_id, v.name AS venue, c.name AS camera, i.start, i.secs,
               CASE i.metric WHEN 1 THEN 'crossings' WHEN 2 THEN 'total' WHEN 3 THEN 'occupancy'
                             WHEN 4 THEN 'transition' WHEN 5 THEN 'dwell' WHEN 6 THEN 'entries'
                             ELSE 'exits' END AS metric,
               s.name AS line_or_zone,
               CASE WHEN i.metric IN (1, 2) THEN CASE i.other WHEN 0 THEN 'in' ELSE 'out' END
                    WHEN i.metric = 4 THEN o.name
                    WHEN i.metric = 5 THEN CAST(i.other AS TEXT) END AS dir_or_to,
               i.value, i.std
        FROM count_items i
        JOIN count_records r ON r.seq = i.seq
        JOIN names v ON v.code = i.venue
        JOIN names c ON c.code = r.camera
        JOIN names s ON s.code = i.subject
        LEFT JOIN names o ON i.metric = 4 AND o.code = i.other;",
    ),
];

/// Codes of the `metric` column (migration 3 writes the same numbers).
pub(crate) mod metric_code {
    pub const CROSSINGS: u8 = 1;
    pub const TOTAL: u8 = 2;
    pub const OCCUPANCY: u8 = 3;
    pub const TRANSITION: u8 = 4;
    pub const DWELL: u8 = 5;
    pub const ENTRIES: u8 = 6;
    pub const EXITS: u8 = 7;
}

/// The `other` column of an item without a second key.
pub(crate) const NO_OTHER: i32 = -1;
/// The `other` column of crossings and totals: the direction.
pub(crate) const DIR_IN: i32 = 0;
pub(crate) const DIR_OUT: i32 = 1;

/// Longest topic kept in the quarantine table (topics of refused messages are untrusted).
pub(crate) const MAX_QUARANTINE_TOPIC: usize = 200;

/// What one [`Store::insert_batch`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct InsertOutcome {
    /// Records stored by this call.
    pub inserted: u64,
    /// Records skipped because a record with the same id and interval start was already
    /// stored (or appeared earlier in the same batch); they are quarantined as `duplicate`.
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
    /// Codes of the identifiers stored (`names` table), shared with the connections cloned
    /// from this one.
    codes: CodeBook,
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
        let store = Store { conn, codes: CodeBook::default() };
        store.load_codes()?;
        Ok(store)
    }

    /// Another connection to the same database, for a second thread.
    pub fn try_clone(&self) -> Result<Store, AnalyticsError> {
        let conn = self.conn.try_clone().map_err(AnalyticsError::db("open a second connection"))?;
        Ok(Store { conn, codes: self.codes.clone() })
    }

    fn load_codes(&self) -> Result<(), AnalyticsError> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT name, code FROM names")
            .map_err(AnalyticsError::db("prepare the name query"))?;
        let rows = statement
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i32>(1)?)))
            .map_err(AnalyticsError::db("read the names"))?;
        self.codes.replace(rows.collect::<Result<_, _>>().map_err(AnalyticsError::db("read a name"))?);
        Ok(())
    }

    /// The codes of the stored identifiers, for [`PreparedBatch::new`] on another thread.
    pub fn code_book(&self) -> CodeBook {
        self.codes.clone()
    }

    /// The code of `name`, when anything with that identifier is stored.
    pub(crate) fn code_of(&self, name: &str) -> Result<Option<i32>, AnalyticsError> {
        if let Some(code) = self.codes.get(name) {
            return Ok(Some(code));
        }
        // Written through another database handle since the names were loaded.
        let mut statement = self
            .conn
            .prepare_cached("SELECT code FROM names WHERE name = ?")
            .map_err(AnalyticsError::db("prepare the name lookup"))?;
        let mut rows = statement.query(params![name]).map_err(AnalyticsError::db("look up a name"))?;
        match rows.next().map_err(AnalyticsError::db("look up a name"))? {
            Some(row) => Ok(Some(row.get(0).map_err(AnalyticsError::db("read a name code"))?)),
            None => Ok(None),
        }
    }

    /// The schema version recorded in the file.
    pub fn schema_version(&self) -> Result<i64, AnalyticsError> {
        schema_version(&self.conn)
    }

    /// Stores `records` in one transaction: [`PreparedBatch::new`] then
    /// [`insert_prepared`](Self::insert_prepared). Duplicates are quarantined with a payload
    /// size of 0 (these records did not arrive as messages).
    pub fn insert_batch(&mut self, records: &[CountRecord]) -> Result<InsertOutcome, AnalyticsError> {
        let batch = PreparedBatch::new(records, &[], &self.codes, now_unix())?;
        self.insert_prepared(batch)
    }

    /// Stores a prepared batch in one transaction. A record already stored (same id and
    /// interval start: a redelivery carries both), or appearing earlier in the batch, is
    /// skipped, counted as a duplicate and quarantined (reason `duplicate`, its topic and
    /// size, never its bytes), so redelivered messages never count twice. Either the whole
    /// batch is stored or, on error, none of it.
    ///
    /// Names the batch's code book did not know get their codes here (or the ones another
    /// batch gave them meanwhile). The records are appended, then those already stored are
    /// deleted again: they are looked up only among the records whose interval starts inside
    /// the batch's own time window (DuckDB skips the other row groups by their min/max
    /// statistics), so the check costs the same after a year as on the first day. The items
    /// of the new records are appended, and so are the batch's own sums per hourly rollup cell
    /// (readers sum the partial rows of a cell; [`Store::compact_rollup`] merges them). The
    /// commit is durable (DuckDB's WAL, or the data file itself for a full row group).
    pub fn insert_prepared(&mut self, batch: PreparedBatch) -> Result<InsertOutcome, AnalyticsError> {
        let mut outcome = InsertOutcome { inserted: 0, duplicates: (batch.given - batch.rows()) as u64 };
        let Some((low, high)) = batch.window else {
            return Ok(outcome);
        };
        let PreparedBatch { mut records, mut items, mut hourly, unknown, sizes, mut repeats, .. } = batch;
        let transaction = self.conn.transaction().map_err(AnalyticsError::db("begin an insert transaction"))?;
        let mut added = Vec::new();
        if !unknown.is_empty() {
            let mut next: i32 = transaction
                .query_row("SELECT CAST(COALESCE(MAX(code), 0) + 1 AS INTEGER) FROM names", [], |row| row.get(0))
                .map_err(AnalyticsError::db("read the next name code"))?;
            let mut insert = transaction
                .prepare_cached("INSERT INTO names (code, name) VALUES (?, ?)")
                .map_err(AnalyticsError::db("prepare the name insert"))?;
            let mut table = Vec::with_capacity(unknown.len());
            for name in unknown {
                let code = match self.codes.get(&name) {
                    Some(code) => code,
                    None => {
                        insert.execute(params![next, name]).map_err(AnalyticsError::db("insert a name"))?;
                        next += 1;
                        added.push((name, next - 1));
                        next - 1
                    }
                };
                table.push(code);
            }
            let map = |code: i32| match code.checked_sub(columns::PROVISIONAL) {
                Some(index) if code < 0 && (index as usize) < table.len() => table[index as usize],
                _ => code,
            };
            records = columns::remap(&records, columns::RECORD_CODE_COLUMNS, &map)?;
            items = columns::remap(&items, columns::ITEM_CODE_COLUMNS, &map)?;
            hourly = columns::remap(&hourly, columns::HOURLY_CODE_COLUMNS, &map)?;
        }
        // DuckDB cannot prepare an UPDATE or DELETE .. RETURNING with parameters: the values
        // inlined below are integers this function computed.
        let count = records.num_rows() as i64;
        let first_seq: i64 = transaction
            .query_row(
                &format!(
                    "UPDATE counters SET value = value + {count} WHERE name = 'record_seq' RETURNING value - {count}"
                ),
                [],
                |row| row.get(0),
            )
            .map_err(AnalyticsError::db("allocate record sequence numbers"))?;
        {
            let mut appender =
                transaction.appender("count_records").map_err(AnalyticsError::db("open the record appender"))?;
            appender
                .append_record_batch(columns::with_seq(&records, first_seq)?)
                .map_err(AnalyticsError::db("append the count records"))?;
            appender.flush().map_err(AnalyticsError::db("flush the count records"))?;
        }
        // The batch's records that were already stored (same id and start), looked up only
        // among the records whose interval starts in the batch's own window, are removed again.
        let duplicate_seqs: foldhash::HashSet<i64> = {
            let mut statement = transaction
                .prepare(&format!(
                    "DELETE FROM count_records n
                     WHERE n.seq >= {first_seq}
                       AND EXISTS (SELECT 1 FROM count_records o
                                   WHERE o.start BETWEEN {low} AND {high} AND o.seq < {first_seq}
                                     AND o.start = n.start AND o.id = n.id)
                     RETURNING seq"
                ))
                .map_err(AnalyticsError::db("prepare the duplicate removal"))?;
            let seqs = statement
                .query_map([], |row| row.get::<_, i64>(0))
                .map_err(AnalyticsError::db("remove already stored records"))?;
            seqs.collect::<Result<_, _>>().map_err(AnalyticsError::db("read a duplicate record"))?
        };
        outcome.duplicates += duplicate_seqs.len() as u64;
        if !duplicate_seqs.is_empty() {
            // Quarantined with their topic and size, beside the records repeated in the batch.
            let mut statement = transaction
                .prepare_cached("SELECT code, name FROM names")
                .map_err(AnalyticsError::db("prepare the name query"))?;
            let names: foldhash::HashMap<i32, String> = statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(AnalyticsError::db("read the names"))?
                .collect::<Result<_, _>>()
                .map_err(AnalyticsError::db("read a name"))?;
            let name = |code: i32| names.get(&code).map(String::as_str).unwrap_or("?");
            let mut seqs: Vec<i64> = duplicate_seqs.iter().copied().collect();
            seqs.sort_unstable();
            for seq in seqs {
                let row = usize::try_from(seq - first_seq)
                    .map_err(|_| AnalyticsError::Corrupt { what: "sequence number" })?;
                let (venue, camera) = columns::venue_camera(&records, row)?;
                let topic = match (Id::new(name(venue)), Id::new(name(camera))) {
                    (Ok(venue), Ok(camera)) => passage_wire::topics::counts(&venue, &camera),
                    _ => "?".to_owned(),
                };
                repeats.push(QuarantineEntry {
                    topic,
                    reason: columns::DUPLICATE.to_owned(),
                    payload_len: sizes.get(row).copied().unwrap_or(0),
                });
            }
        }
        if !repeats.is_empty() {
            let mut appender =
                transaction.appender("quarantine").map_err(AnalyticsError::db("open the quarantine appender"))?;
            appender
                .append_record_batch(columns::quarantine(&repeats, now_unix())?)
                .map_err(AnalyticsError::db("quarantine the duplicates"))?;
            appender.flush().map_err(AnalyticsError::db("flush the quarantined duplicates"))?;
        }
        let mut items = columns::with_seq(&items, first_seq)?;
        if !duplicate_seqs.is_empty() {
            items = columns::without(&items, &duplicate_seqs)?;
            hourly = columns::hourly(&items)?;
        }
        if items.num_rows() > 0 {
            let mut appender =
                transaction.appender("count_items").map_err(AnalyticsError::db("open the count item appender"))?;
            appender.append_record_batch(items).map_err(AnalyticsError::db("append the count items"))?;
            appender.flush().map_err(AnalyticsError::db("flush the count items"))?;
            let mut appender =
                transaction.appender("count_hourly").map_err(AnalyticsError::db("open the rollup appender"))?;
            appender.append_record_batch(hourly).map_err(AnalyticsError::db("append the hourly sums"))?;
            appender.flush().map_err(AnalyticsError::db("flush the hourly sums"))?;
        }
        transaction.commit().map_err(AnalyticsError::db("commit an insert transaction"))?;
        self.codes.extend(added);
        outcome.inserted = count as u64 - duplicate_seqs.len() as u64;
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

    /// Quarantines several messages in one transaction (one append, however many).
    pub(crate) fn quarantine_all(&mut self, entries: &[QuarantineEntry]) -> Result<(), AnalyticsError> {
        if entries.is_empty() {
            return Ok(());
        }
        let bounded: Vec<QuarantineEntry> = entries
            .iter()
            .map(|entry| QuarantineEntry {
                topic: truncate(&entry.topic, MAX_QUARANTINE_TOPIC).to_owned(),
                reason: entry.reason.clone(),
                payload_len: entry.payload_len,
            })
            .collect();
        let transaction = self.conn.transaction().map_err(AnalyticsError::db("begin a quarantine transaction"))?;
        {
            let mut appender =
                transaction.appender("quarantine").map_err(AnalyticsError::db("open the quarantine appender"))?;
            appender
                .append_record_batch(columns::quarantine(&bounded, now_unix())?)
                .map_err(AnalyticsError::db("insert the quarantine entries"))?;
            appender.flush().map_err(AnalyticsError::db("flush the quarantine entries"))?;
        }
        transaction.commit().map_err(AnalyticsError::db("commit a quarantine transaction"))
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
                "SELECT n.name, r.records, r.first_start, r.last_end
                 FROM (SELECT venue, CAST(COUNT(*) AS BIGINT) AS records, MIN(start) AS first_start,
                              MAX(start + secs) AS last_end
                       FROM count_records GROUP BY venue) r
                 JOIN names n ON n.code = r.venue
                 ORDER BY n.name",
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
        let Some(venue) = self.code_of(venue.as_str())? else {
            return Ok(Vec::new());
        };
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT r.id, n.name, r.start, r.secs FROM count_records r JOIN names n ON n.code = r.camera
                 WHERE r.venue = ? ORDER BY n.name, r.start, r.id",
            )
            .map_err(AnalyticsError::db("prepare the record index query"))?;
        let rows = statement
            .query_map(params![venue], |row| {
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

fn stored_id(text: &str) -> Result<Id, AnalyticsError> {
    Id::new(text).map_err(|_| AnalyticsError::Corrupt { what: "identifier" })
}

fn stored_direction(code: i32) -> Result<Direction, AnalyticsError> {
    match code {
        DIR_IN => Ok(Direction::In),
        DIR_OUT => Ok(Direction::Out),
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
    use passage_wire::{CountItem, Metric, NoiseMechanism};

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
        assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
        assert_eq!(row_count(&store, "count_records"), 1, "data kept");
        assert_eq!(row_count(&store, "alerts"), 0);
        assert_eq!(row_count(&store, "sweep_log"), 0);
    }

    /// A version-2 file (text columns, text primary key) with records of every metric kind
    /// is rewritten into codes: the same rows read back through the named view, the rollup is
    /// built from them, and new records get sequence numbers after the old ones.
    #[test]
    fn a_version_2_file_is_rewritten_into_codes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("analytics.duckdb");
        {
            let mut conn = Connection::open(&path).expect("open");
            conn.execute_batch("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at BIGINT NOT NULL)")
                .expect("schema_version");
            let transaction = conn.transaction().expect("transaction");
            transaction.execute_batch(MIGRATIONS[0].1).expect("migration 1");
            transaction.execute_batch(MIGRATIONS[1].1).expect("migration 2");
            transaction.execute_batch("INSERT INTO schema_version VALUES (1, 0), (2, 0)").expect("versions");
            transaction
                .execute_batch(
                    "INSERT INTO count_records VALUES
                        ('r1', 'arena', 'cam-north', 3600, 60, 'discrete_gaussian', 0.5, 0),
                        ('r2', 'arena', 'cam-bowl', 3660, 60, 'sqrt_factorization', 0.5, 0);
                     INSERT INTO count_items VALUES
                        ('r1', 'arena', 'cam-north', 3600, 60, 'crossings', 'north-gate', 'in', 5, 2.0),
                        ('r1', 'arena', 'cam-north', 3600, 60, 'crossings', 'north-gate', 'out', 3, 2.0),
                        ('r2', 'arena', 'cam-bowl', 3660, 60, 'transition', 'stand-a', 'concourse', 4, 1.0),
                        ('r2', 'arena', 'cam-bowl', 3660, 60, 'dwell', 'stand-a', '900', 2, 1.0),
                        ('r2', 'arena', 'cam-bowl', 3660, 60, 'occupancy', 'stand-a', NULL, 40, 3.0);",
                )
                .expect("rows");
            transaction.commit().expect("commit");
        }
        let mut store = Store::open(&path).expect("migrate");
        assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
        let rows: Vec<(String, String, String, Option<String>, i64)> = store
            .conn
            .prepare("SELECT record_id, metric, line_or_zone, dir_or_to, value FROM count_items_named ORDER BY record_id, metric, dir_or_to")
            .expect("prepare")
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        let expected: Vec<(String, String, String, Option<String>, i64)> = vec![
            ("r1".into(), "crossings".into(), "north-gate".into(), Some("in".into()), 5),
            ("r1".into(), "crossings".into(), "north-gate".into(), Some("out".into()), 3),
            ("r2".into(), "dwell".into(), "stand-a".into(), Some("900".into()), 2),
            ("r2".into(), "occupancy".into(), "stand-a".into(), None, 40),
            ("r2".into(), "transition".into(), "stand-a".into(), Some("concourse".into()), 4),
        ];
        assert_eq!(rows, expected);
        assert_eq!(row_count(&store, "count_hourly"), 5, "one rollup cell per item here");
        let totals = store.totals(&id("arena"), 0, 7200).expect("totals");
        assert_eq!(totals.iter().map(|t| t.value).collect::<Vec<_>>(), vec![5, 3]);
        // A redelivery of an old record is still a duplicate; a new one is numbered after the
        // old ones (a duplicate's number is not reused).
        let mut again = record("r1", "arena", "cam-north", 3600, vec![crossing("north-gate", Direction::In, 5, 2.0)]);
        again.mechanism = passage_wire::NoiseMechanism::DiscreteGaussian;
        let fresh = record("r3", "arena", "cam-north", 3720, vec![crossing("north-gate", Direction::In, 1, 2.0)]);
        let outcome = store.insert_batch(&[again, fresh]).expect("insert");
        assert_eq!(outcome, InsertOutcome { inserted: 1, duplicates: 1 });
        let seqs: Vec<i64> = store
            .conn
            .prepare("SELECT seq FROM count_records ORDER BY seq")
            .expect("prepare")
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(seqs.len(), 3);
        assert_eq!(&seqs[..2], &[1, 2], "the old records keep their numbers");
        assert!(seqs[2] > 2, "the new record's number follows them");
    }

    /// Batches prepared before the one ahead of them commits (the ingest pipeline) code the
    /// names that one introduces provisionally; the commit gives them the codes already
    /// stored, and its own new names fresh codes.
    #[test]
    fn batches_prepared_with_a_stale_code_book_get_the_right_codes() {
        let (_dir, mut store) = temp_store();
        let book = store.code_book();
        let first = PreparedBatch::new(
            &[record("a", "arena", "cam-north", 0, vec![crossing("north-gate", Direction::In, 1, 1.0)])],
            &[],
            &book,
            0,
        )
        .expect("prepare");
        let second = PreparedBatch::new(
            &[
                record("b", "arena", "cam-north", 60, vec![crossing("north-gate", Direction::Out, 2, 1.0)]),
                record("c", "mall", "cam-1", 60, vec![crossing("door", Direction::In, 3, 1.0)]),
            ],
            &[],
            &book,
            0,
        )
        .expect("prepare");
        assert_eq!(second.unknown, vec!["arena", "cam-north", "north-gate", "mall", "cam-1", "door"]);
        store.insert_prepared(first).expect("first");
        store.insert_prepared(second).expect("second");
        let names: i64 = row_count(&store, "names");
        assert_eq!(names, 6, "every name once");
        let rows: Vec<(String, String, String, Option<String>, i64)> = store
            .conn
            .prepare(
                "SELECT record_id, venue, line_or_zone, dir_or_to, value FROM count_items_named ORDER BY record_id",
            )
            .expect("prepare")
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        let expected: Vec<(String, String, String, Option<String>, i64)> = vec![
            ("a".into(), "arena".into(), "north-gate".into(), Some("in".into()), 1),
            ("b".into(), "arena".into(), "north-gate".into(), Some("out".into()), 2),
            ("c".into(), "mall".into(), "door".into(), Some("in".into()), 3),
        ];
        assert_eq!(rows, expected);
        let totals = store.totals(&id("mall"), 0, 7200).expect("totals");
        assert_eq!(totals.iter().map(|t| (t.line.to_string(), t.value)).collect::<Vec<_>>(), vec![("door".into(), 3)]);
    }

    /// Reports read the hourly rollup for whole hours and the raw items for the partial
    /// hours at the ends; over any range and bucket the sums equal the raw items' own.
    #[test]
    fn the_rollup_and_the_raw_items_give_the_same_sums() {
        let (_dir, mut store) = temp_store();
        let mut batch = Vec::new();
        for i in 0..400_i64 {
            let start = 1_000 + i * 97;
            let mut r = record(
                &format!("x{i}"),
                "arena",
                if i % 3 == 0 { "cam-north" } else { "cam-east" },
                start,
                vec![
                    crossing(if i % 2 == 0 { "north-gate" } else { "east-gate" }, Direction::In, i % 7, 1.5),
                    crossing("north-gate", Direction::Out, i % 5, 0.5),
                ],
            );
            r.secs = if i % 11 == 0 { 180 } else { 60 };
            batch.push(r);
        }
        // In several batches, so the rollup cells are summed across batches too.
        for chunk in batch.chunks(70) {
            store.insert_batch(chunk).expect("insert");
        }
        let raw = |from: i64, to: i64, bucket: i64| -> Vec<(i64, i64)> {
            let mut statement = store
                .conn
                .prepare(
                    "SELECT (start // ?) * ? AS b, CAST(SUM(CASE WHEN other = 0 THEN value ELSE -value END) AS BIGINT)
                     FROM count_items WHERE start >= ? AND start < ? GROUP BY b ORDER BY b",
                )
                .expect("prepare");
            statement
                .query_map(params![bucket, bucket, from, to], |row| Ok((row.get(0)?, row.get(1)?)))
                .expect("query")
                .collect::<Result<_, _>>()
                .expect("rows")
        };
        for (from, to, bucket) in
            [(0, 40_000, 3600), (1_234, 38_000, 3600), (3600, 36_000, 7200), (500, 39_000, 900), (7_000, 7_100, 3600)]
        {
            let frame = store.net_flow(&id("arena"), from, to, bucket).expect("net flow");
            let starts = crate::reports::i64_column(&frame, "start").expect("start");
            let net = crate::reports::i64_column(&frame, "net").expect("net");
            let ours: Vec<(i64, i64)> = starts.into_iter().zip(net).collect();
            assert_eq!(ours, raw(from, to, bucket), "range [{from}, {to}) bucket {bucket}");
        }
        let (entries, _, exits, _) = store.period_totals(&id("arena"), 1_234, 38_000).expect("totals");
        let all = raw(1_234, 38_000, 100_000);
        assert_eq!(entries - exits, all.iter().map(|(_, v)| v).sum::<i64>());

        // Compaction merges the batches' partial rows and changes no sum.
        let before = store.net_flow(&id("arena"), 0, 40_000, 3600).expect("net flow");
        let rows = row_count(&store, "count_hourly");
        let merged = store.compact_rollup().expect("compact");
        assert!(merged > 0, "six batches over the same hours left nothing to merge");
        assert_eq!(row_count(&store, "count_hourly"), rows - merged as i64);
        assert_eq!(store.compact_rollup().expect("compact again"), 0);
        let after = store.net_flow(&id("arena"), 0, 40_000, 3600).expect("net flow");
        assert_eq!(
            crate::reports::i64_column(&before, "net").expect("net"),
            crate::reports::i64_column(&after, "net").expect("net")
        );
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
        let summary = store.summary().expect("summary");
        assert_eq!(summary.quarantine_reasons, vec![QuarantineCount { reason: "duplicate".into(), count: 3 }]);
        let topics: Vec<String> = store
            .conn
            .prepare("SELECT topic FROM quarantine ORDER BY topic")
            .expect("prepare")
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(
            topics,
            [
                "passage/v1/arena/counts/cam-east",
                "passage/v1/arena/counts/cam-north",
                "passage/v1/arena/counts/cam-north"
            ]
        );
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
        assert_eq!(store.summary().expect("summary").quarantined, 2, "both duplicates quarantined");
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
            CountItem { metric: Metric::Dwell { zone: id("z"), bucket: 2 }, value: 5, std: 0.5 },
            CountItem { metric: Metric::Entries { zone: id("z") }, value: 6, std: 0.5 },
            CountItem { metric: Metric::Exits { zone: id("z") }, value: 7, std: 0.5 },
        ];
        store.insert_batch(&[record("m", "arena", "cam", 0, items)]).expect("insert");
        let rows: Vec<(String, String, Option<String>, i64)> = store
            .conn
            .prepare("SELECT metric, line_or_zone, dir_or_to, value FROM count_items_named ORDER BY value")
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
                ("dwell".into(), "z".into(), Some("300".into()), 5),
                ("entries".into(), "z".into(), None, 6),
                ("exits".into(), "z".into(), None, 7),
            ]
        );
    }
}
