//! The aggregations behind the flow reports, pushed down to DuckDB, handed over as Polars
//! frames (small: one row per bucket, line or zone), plus exports, the retention sweep and
//! the alert history.
//!
//! Buckets are `(start // bucket) * bucket` over interval starts, in seconds since the Unix
//! epoch; a bucket length divides a day, so no bucket straddles midnight UTC.

use std::path::Path;

use duckdb::params;
use passage_wire::Id;
use polars::prelude::{df, DataFrame};
use serde::Serialize;
use utoipa::ToSchema;

use super::Store;
use crate::{now_unix, AnalyticsError};

/// Columns of a two-key aggregation: first key, second key, sum, variance.
type PairColumns = (Vec<String>, Vec<String>, Vec<i64>, Vec<f64>);

fn frame_error(error: polars::prelude::PolarsError) -> AnalyticsError {
    AnalyticsError::Report { report: "frame", reason: error.to_string() }
}

/// The latest released occupancy of one zone.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ZoneLevel {
    /// The zone.
    pub zone: String,
    /// Start of the interval the level was released for.
    pub start: i64,
    /// The noised level.
    pub value: i64,
    /// Its noise standard deviation.
    pub std: f64,
}

/// One capacity alert transition, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AlertEntry {
    /// When it happened, seconds since the Unix epoch.
    pub at: i64,
    /// The zone.
    pub zone: String,
    /// `raised` or `cleared`.
    pub state: String,
    /// The noised occupancy that caused it.
    pub occupancy: f64,
    /// Its noise standard deviation.
    pub std: f64,
    /// The zone's capacity.
    pub capacity: i64,
}

/// What one retention sweep deleted for one venue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SweepEntry {
    /// When, seconds since the Unix epoch.
    pub at: i64,
    /// The venue (`*` for the quarantine, which has none).
    pub venue: String,
    /// The data category (`counts`, `quarantine`, `alerts`).
    pub category: String,
    /// Everything that ended before this instant was deleted.
    pub cutoff: i64,
    /// Rows deleted.
    pub rows: i64,
}

impl Store {
    /// Net flow into `venue` (crossings in minus out over all its lines) per bucket, with
    /// the summed noise variance: columns `start`, `net`, `var`.
    pub fn net_flow(&self, venue: &Id, from: i64, to: i64, bucket: i64) -> Result<DataFrame, AnalyticsError> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT (start // ?) * ? AS b,
                        CAST(SUM(CASE WHEN dir_or_to = 'in' THEN value ELSE -value END) AS BIGINT),
                        SUM(std * std)
                 FROM count_items
                 WHERE venue = ? AND metric = 'crossings' AND start >= ? AND start < ?
                 GROUP BY b ORDER BY b",
            )
            .map_err(AnalyticsError::db("prepare the net flow query"))?;
        let mut start = Vec::new();
        let mut net = Vec::new();
        let mut var = Vec::new();
        let mut rows = statement
            .query(params![bucket, bucket, venue.as_str(), from, to])
            .map_err(AnalyticsError::db("run the net flow query"))?;
        while let Some(row) = rows.next().map_err(AnalyticsError::db("read a net flow row"))? {
            start.push(row.get::<_, i64>(0).map_err(AnalyticsError::db("read a net flow row"))?);
            net.push(row.get::<_, i64>(1).map_err(AnalyticsError::db("read a net flow row"))?);
            var.push(row.get::<_, f64>(2).map_err(AnalyticsError::db("read a net flow row"))?);
        }
        df!("start" => start, "net" => net, "var" => var).map_err(frame_error)
    }

    /// Released zone occupancy levels per bucket and zone: columns `start`, `zone`, `sum`,
    /// `var`, `n`.
    pub fn zone_levels(&self, venue: &Id, from: i64, to: i64, bucket: i64) -> Result<DataFrame, AnalyticsError> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT (start // ?) * ? AS b, line_or_zone, CAST(SUM(value) AS BIGINT), SUM(std * std),
                        CAST(COUNT(*) AS BIGINT)
                 FROM count_items
                 WHERE venue = ? AND metric = 'occupancy' AND start >= ? AND start < ?
                 GROUP BY b, line_or_zone ORDER BY line_or_zone, b",
            )
            .map_err(AnalyticsError::db("prepare the zone level query"))?;
        let (mut start, mut zone, mut sum, mut var, mut n) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut rows = statement
            .query(params![bucket, bucket, venue.as_str(), from, to])
            .map_err(AnalyticsError::db("run the zone level query"))?;
        let read = AnalyticsError::db;
        while let Some(row) = rows.next().map_err(read("read a zone level row"))? {
            start.push(row.get::<_, i64>(0).map_err(read("read a zone level row"))?);
            zone.push(row.get::<_, String>(1).map_err(read("read a zone level row"))?);
            sum.push(row.get::<_, i64>(2).map_err(read("read a zone level row"))?);
            var.push(row.get::<_, f64>(3).map_err(read("read a zone level row"))?);
            n.push(row.get::<_, i64>(4).map_err(read("read a zone level row"))?);
        }
        df!("start" => start, "zone" => zone, "sum" => sum, "var" => var, "n" => n).map_err(frame_error)
    }

    /// Crossings per bucket and line, both directions: columns `start`, `line`, `entries`,
    /// `entries_var`, `exits`, `exits_var`.
    pub fn line_crossings(&self, venue: &Id, from: i64, to: i64, bucket: i64) -> Result<DataFrame, AnalyticsError> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT (start // ?) * ? AS b, line_or_zone,
                        CAST(COALESCE(SUM(value) FILTER (WHERE dir_or_to = 'in'), 0) AS BIGINT),
                        COALESCE(SUM(std * std) FILTER (WHERE dir_or_to = 'in'), 0),
                        CAST(COALESCE(SUM(value) FILTER (WHERE dir_or_to = 'out'), 0) AS BIGINT),
                        COALESCE(SUM(std * std) FILTER (WHERE dir_or_to = 'out'), 0)
                 FROM count_items
                 WHERE venue = ? AND metric = 'crossings' AND start >= ? AND start < ?
                 GROUP BY b, line_or_zone ORDER BY b, line_or_zone",
            )
            .map_err(AnalyticsError::db("prepare the crossings query"))?;
        let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut rows = statement
            .query(params![bucket, bucket, venue.as_str(), from, to])
            .map_err(AnalyticsError::db("run the crossings query"))?;
        let read = AnalyticsError::db;
        while let Some(row) = rows.next().map_err(read("read a crossings row"))? {
            columns.0.push(row.get::<_, i64>(0).map_err(read("read a crossings row"))?);
            columns.1.push(row.get::<_, String>(1).map_err(read("read a crossings row"))?);
            columns.2.push(row.get::<_, i64>(2).map_err(read("read a crossings row"))?);
            columns.3.push(row.get::<_, f64>(3).map_err(read("read a crossings row"))?);
            columns.4.push(row.get::<_, i64>(4).map_err(read("read a crossings row"))?);
            columns.5.push(row.get::<_, f64>(5).map_err(read("read a crossings row"))?);
        }
        df!(
            "start" => columns.0,
            "line" => columns.1,
            "entries" => columns.2,
            "entries_var" => columns.3,
            "exits" => columns.4,
            "exits_var" => columns.5,
        )
        .map_err(frame_error)
    }

    /// Zone-to-zone transitions summed over the range: columns `from`, `to`, `value`, `var`.
    pub fn transitions(&self, venue: &Id, from: i64, to: i64) -> Result<DataFrame, AnalyticsError> {
        self.pairs(
            "SELECT line_or_zone, dir_or_to, CAST(SUM(value) AS BIGINT), SUM(std * std)
             FROM count_items
             WHERE venue = ? AND metric = 'transition' AND start >= ? AND start < ?
             GROUP BY line_or_zone, dir_or_to ORDER BY line_or_zone, dir_or_to",
            venue,
            from,
            to,
        )
        .and_then(|(a, b, value, var)| df!("from" => a, "to" => b, "value" => value, "var" => var).map_err(frame_error))
    }

    /// Dwell-time buckets per zone summed over the range: columns `zone`, `at_least_secs`,
    /// `value`, `var`.
    pub fn dwell(&self, venue: &Id, from: i64, to: i64) -> Result<DataFrame, AnalyticsError> {
        let (zone, label, value, var) = self.pairs(
            "SELECT line_or_zone, dir_or_to, CAST(SUM(value) AS BIGINT), SUM(std * std)
             FROM count_items
             WHERE venue = ? AND metric = 'dwell' AND start >= ? AND start < ?
             GROUP BY line_or_zone, dir_or_to ORDER BY line_or_zone, dir_or_to",
            venue,
            from,
            to,
        )?;
        let at_least: Vec<i64> = label
            .iter()
            .map(|l| l.parse::<i64>().map_err(|_| AnalyticsError::Corrupt { what: "dwell bucket" }))
            .collect::<Result<_, _>>()?;
        df!("zone" => zone, "at_least_secs" => at_least, "value" => value, "var" => var).map_err(frame_error)
    }

    fn pairs(&self, sql: &str, venue: &Id, from: i64, to: i64) -> Result<PairColumns, AnalyticsError> {
        let mut statement = self.conn.prepare_cached(sql).map_err(AnalyticsError::db("prepare a pair query"))?;
        let mut out = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut rows =
            statement.query(params![venue.as_str(), from, to]).map_err(AnalyticsError::db("run a pair query"))?;
        let read = AnalyticsError::db;
        while let Some(row) = rows.next().map_err(read("read a pair row"))? {
            out.0.push(row.get::<_, String>(0).map_err(read("read a pair row"))?);
            out.1.push(row.get::<_, Option<String>>(1).map_err(read("read a pair row"))?.unwrap_or_default());
            out.2.push(row.get::<_, i64>(2).map_err(read("read a pair row"))?);
            out.3.push(row.get::<_, f64>(3).map_err(read("read a pair row"))?);
        }
        Ok(out)
    }

    /// Entries (crossings in, all lines) per hour: columns `start`, `entries`, `var`.
    pub fn hourly_entries(&self, venue: &Id, from: i64, to: i64) -> Result<DataFrame, AnalyticsError> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT (start // 3600) * 3600 AS b, CAST(SUM(value) AS BIGINT), SUM(std * std)
                 FROM count_items
                 WHERE venue = ? AND metric = 'crossings' AND dir_or_to = 'in' AND start >= ? AND start < ?
                 GROUP BY b ORDER BY b",
            )
            .map_err(AnalyticsError::db("prepare the hourly entries query"))?;
        let (mut start, mut entries, mut var) = (Vec::new(), Vec::new(), Vec::new());
        let mut rows = statement
            .query(params![venue.as_str(), from, to])
            .map_err(AnalyticsError::db("run the hourly entries query"))?;
        let read = AnalyticsError::db;
        while let Some(row) = rows.next().map_err(read("read an hourly entries row"))? {
            start.push(row.get::<_, i64>(0).map_err(read("read an hourly entries row"))?);
            entries.push(row.get::<_, i64>(1).map_err(read("read an hourly entries row"))?);
            var.push(row.get::<_, f64>(2).map_err(read("read an hourly entries row"))?);
        }
        df!("start" => start, "entries" => entries, "var" => var).map_err(frame_error)
    }

    /// Entries and exits over all lines in `[from, to)`: `(entries, entries_var, exits,
    /// exits_var)`.
    pub fn period_totals(&self, venue: &Id, from: i64, to: i64) -> Result<(i64, f64, i64, f64), AnalyticsError> {
        self.conn
            .query_row(
                "SELECT CAST(COALESCE(SUM(value) FILTER (WHERE dir_or_to = 'in'), 0) AS BIGINT),
                        COALESCE(SUM(std * std) FILTER (WHERE dir_or_to = 'in'), 0),
                        CAST(COALESCE(SUM(value) FILTER (WHERE dir_or_to = 'out'), 0) AS BIGINT),
                        COALESCE(SUM(std * std) FILTER (WHERE dir_or_to = 'out'), 0)
                 FROM count_items
                 WHERE venue = ? AND metric = 'crossings' AND start >= ? AND start < ?",
                params![venue.as_str(), from, to],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .map_err(AnalyticsError::db("run the period totals query"))
    }

    /// The latest released occupancy of every zone of `venue` whose interval started at or
    /// after `since`, in zone order.
    pub fn latest_zone_levels(&self, venue: &Id, since: i64) -> Result<Vec<ZoneLevel>, AnalyticsError> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT line_or_zone, MAX(start), CAST(arg_max(value, start) AS BIGINT), arg_max(std, start)
                 FROM count_items
                 WHERE venue = ? AND metric = 'occupancy' AND start >= ?
                 GROUP BY line_or_zone ORDER BY line_or_zone",
            )
            .map_err(AnalyticsError::db("prepare the latest level query"))?;
        let rows = statement
            .query_map(params![venue.as_str(), since], |row| {
                Ok(ZoneLevel { zone: row.get(0)?, start: row.get(1)?, value: row.get(2)?, std: row.get(3)? })
            })
            .map_err(AnalyticsError::db("run the latest level query"))?;
        rows.collect::<Result<_, _>>().map_err(AnalyticsError::db("read a latest level row"))
    }

    /// Writes the noised count items of `venue` in `[from, to)` to the Parquet file `path`.
    pub fn export_parquet(&self, venue: &Id, from: i64, to: i64, path: &Path) -> Result<(), AnalyticsError> {
        // COPY takes no parameters: the venue is an `Id` (a-z, 0-9, '-', '_') and the bounds
        // are integers, so they are inlined safely; the path is quoted.
        let sql = format!(
            "COPY (SELECT venue, camera, start, secs, metric, line_or_zone, dir_or_to, value, std
                   FROM count_items WHERE venue = '{venue}' AND start >= {from} AND start < {to}
                   ORDER BY start, camera, metric, line_or_zone, dir_or_to)
             TO {} (FORMAT PARQUET)",
            sql_string(&path.to_string_lossy())
        );
        self.conn.execute_batch(&sql).map_err(AnalyticsError::db("export count items to Parquet"))
    }

    /// Writes every stored count item (the whole database, or `[from, to)`) as a Hive-
    /// partitioned Parquet dataset under `dir`: `dir/venue=V/day=YYYY-MM-DD/*.parquet`,
    /// readable by DuckDB, Spark or Trino. Returns the rows written.
    pub fn export_partitioned(&self, dir: &Path, range: Option<(i64, i64)>) -> Result<u64, AnalyticsError> {
        let filter = match range {
            Some((from, to)) => format!("WHERE start >= {from} AND start < {to}"),
            None => String::new(),
        };
        let rows: i64 = self
            .conn
            .query_row(&format!("SELECT COUNT(*) FROM count_items {filter}"), [], |row| row.get(0))
            .map_err(AnalyticsError::db("count the rows to export"))?;
        let sql = format!(
            "COPY (SELECT venue, strftime(to_timestamp(start), '%Y-%m-%d') AS day, record_id, camera, start, secs,
                          metric, line_or_zone, dir_or_to, value, std
                   FROM count_items {filter})
             TO {} (FORMAT PARQUET, PARTITION_BY (venue, day), OVERWRITE_OR_IGNORE, FILENAME_PATTERN 'part_{{uuid}}')",
            sql_string(&dir.to_string_lossy())
        );
        self.conn.execute_batch(&sql).map_err(AnalyticsError::db("export a partitioned Parquet dataset"))?;
        Ok(u64::try_from(rows).unwrap_or(0))
    }

    /// Deletes what the retention rules say has expired: the count records and items of
    /// `venue` whose interval ended before `cutoff`, in one transaction, and writes what it
    /// did to the sweep log. Returns the log entry.
    pub fn sweep_counts(&mut self, venue: &Id, cutoff: i64) -> Result<SweepEntry, AnalyticsError> {
        let transaction = self.conn.transaction().map_err(AnalyticsError::db("begin a retention sweep"))?;
        let items = transaction
            .execute("DELETE FROM count_items WHERE venue = ? AND start + secs <= ?", params![venue.as_str(), cutoff])
            .map_err(AnalyticsError::db("delete expired count items"))?;
        let records = transaction
            .execute("DELETE FROM count_records WHERE venue = ? AND start + secs <= ?", params![venue.as_str(), cutoff])
            .map_err(AnalyticsError::db("delete expired count records"))?;
        let entry = SweepEntry {
            at: now_unix(),
            venue: venue.to_string(),
            category: "counts".into(),
            cutoff,
            rows: i64::try_from(items + records).unwrap_or(i64::MAX),
        };
        log_sweep(&transaction, &entry)?;
        transaction.commit().map_err(AnalyticsError::db("commit a retention sweep"))?;
        Ok(entry)
    }

    /// Deletes quarantine entries and alert history older than `cutoff`, logging both.
    pub fn sweep_operational(&mut self, cutoff: i64) -> Result<Vec<SweepEntry>, AnalyticsError> {
        let transaction = self.conn.transaction().map_err(AnalyticsError::db("begin a retention sweep"))?;
        let quarantined = transaction
            .execute("DELETE FROM quarantine WHERE received_at < ?", params![cutoff])
            .map_err(AnalyticsError::db("delete expired quarantine entries"))?;
        let alerts = transaction
            .execute("DELETE FROM alerts WHERE occurred_at < ?", params![cutoff])
            .map_err(AnalyticsError::db("delete expired alerts"))?;
        let at = now_unix();
        let entries = vec![
            SweepEntry { at, venue: "*".into(), category: "quarantine".into(), cutoff, rows: quarantined as i64 },
            SweepEntry { at, venue: "*".into(), category: "alerts".into(), cutoff, rows: alerts as i64 },
        ];
        for entry in &entries {
            log_sweep(&transaction, entry)?;
        }
        transaction.commit().map_err(AnalyticsError::db("commit a retention sweep"))?;
        Ok(entries)
    }

    /// The sweep log, newest first, at most `limit` entries.
    pub fn sweep_log(&self, limit: usize) -> Result<Vec<SweepEntry>, AnalyticsError> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT swept_at, venue, category, cutoff, rows FROM sweep_log ORDER BY swept_at DESC, venue, category LIMIT ?",
            )
            .map_err(AnalyticsError::db("prepare the sweep log query"))?;
        let rows = statement
            .query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
                Ok(SweepEntry {
                    at: row.get(0)?,
                    venue: row.get(1)?,
                    category: row.get(2)?,
                    cutoff: row.get(3)?,
                    rows: row.get(4)?,
                })
            })
            .map_err(AnalyticsError::db("run the sweep log query"))?;
        rows.collect::<Result<_, _>>().map_err(AnalyticsError::db("read a sweep log row"))
    }

    /// Appends an alert transition for `venue`.
    pub fn record_alert(&self, venue: &Id, alert: &AlertEntry) -> Result<(), AnalyticsError> {
        self.conn
            .execute(
                "INSERT INTO alerts (occurred_at, venue, zone, state, occupancy, std, capacity) VALUES (?, ?, ?, ?, ?, ?, ?)",
                params![alert.at, venue.as_str(), alert.zone, alert.state, alert.occupancy, alert.std, alert.capacity],
            )
            .map_err(AnalyticsError::db("record an alert"))?;
        Ok(())
    }

    /// Alert transitions of `venue` at or after `since`, newest first, at most `limit`.
    pub fn alerts(&self, venue: &Id, since: i64, limit: usize) -> Result<Vec<AlertEntry>, AnalyticsError> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT occurred_at, zone, state, occupancy, std, capacity FROM alerts
                 WHERE venue = ? AND occurred_at >= ? ORDER BY occurred_at DESC, zone LIMIT ?",
            )
            .map_err(AnalyticsError::db("prepare the alert query"))?;
        let rows = statement
            .query_map(params![venue.as_str(), since, i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
                Ok(AlertEntry {
                    at: row.get(0)?,
                    zone: row.get(1)?,
                    state: row.get(2)?,
                    occupancy: row.get(3)?,
                    std: row.get(4)?,
                    capacity: row.get(5)?,
                })
            })
            .map_err(AnalyticsError::db("run the alert query"))?;
        rows.collect::<Result<_, _>>().map_err(AnalyticsError::db("read an alert row"))
    }
}

fn log_sweep(transaction: &duckdb::Transaction<'_>, entry: &SweepEntry) -> Result<(), AnalyticsError> {
    transaction
        .execute(
            "INSERT INTO sweep_log (swept_at, venue, category, cutoff, rows) VALUES (?, ?, ?, ?, ?)",
            params![entry.at, entry.venue, entry.category, entry.cutoff, entry.rows],
        )
        .map_err(AnalyticsError::db("log a retention sweep"))?;
    Ok(())
}

/// `text` as an SQL string literal.
fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{crossing, id, record};
    use passage_wire::{CountItem, Direction, Metric};

    fn occupancy(zone: &str, value: i64) -> CountItem {
        CountItem { metric: Metric::Occupancy { zone: id(zone) }, value, std: 3.0 }
    }

    fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("analytics.duckdb")).expect("open store");
        (dir, store)
    }

    #[test]
    fn the_partitioned_export_reads_back_the_same_rows() {
        let (dir, mut store) = temp_store();
        let day = 1_767_225_600; // 2026-01-01
        store
            .insert_batch(&[
                record("a1", "arena", "cam-north", day + 60, vec![crossing("north-gate", Direction::In, 5, 1.0)]),
                record("a2", "arena", "cam-north", day + 86_400, vec![crossing("north-gate", Direction::In, 7, 1.0)]),
                record("b1", "hall", "cam-1", day + 120, vec![crossing("door", Direction::Out, 11, 1.0)]),
            ])
            .expect("insert");
        let out = dir.path().join("dataset");
        assert_eq!(store.export_partitioned(&out, None).expect("export"), 3);
        assert!(out.join("venue=arena").join("day=2026-01-01").is_dir());
        assert!(out.join("venue=arena").join("day=2026-01-02").is_dir());
        assert!(out.join("venue=hall").join("day=2026-01-01").is_dir());
        let reader = duckdb::Connection::open_in_memory().expect("duckdb");
        let glob = format!("{}/**/*.parquet", out.display());
        let (rows, sum, venues): (i64, i64, i64) = reader
            .query_row(
                &format!("SELECT COUNT(*), SUM(value), COUNT(DISTINCT venue) FROM read_parquet('{glob}', hive_partitioning = true)"),
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .expect("read back");
        assert_eq!((rows, sum, venues), (3, 23, 2));
    }

    #[test]
    fn the_retention_sweep_deletes_what_expired_and_logs_it() {
        let (_dir, mut store) = temp_store();
        store
            .insert_batch(&[
                record("old", "arena", "cam-north", 1000, vec![crossing("north-gate", Direction::In, 5, 1.0)]),
                record("new", "arena", "cam-north", 100_000, vec![crossing("north-gate", Direction::In, 7, 1.0)]),
            ])
            .expect("insert");
        let entry = store.sweep_counts(&id("arena"), 50_000).expect("sweep");
        assert_eq!(entry.rows, 2, "one record and its item");
        let summary = store.summary().expect("summary");
        assert_eq!((summary.records, summary.items), (1, 1));
        let log = store.sweep_log(10).expect("log");
        assert_eq!(log.len(), 1);
        assert_eq!((log[0].category.as_str(), log[0].cutoff, log[0].rows), ("counts", 50_000, 2));
        // Sweeping again deletes nothing more, and says so.
        assert_eq!(store.sweep_counts(&id("arena"), 50_000).expect("sweep").rows, 0);
    }

    #[test]
    fn the_latest_zone_level_is_the_newest_interval() {
        let (_dir, mut store) = temp_store();
        store
            .insert_batch(&[
                record("o1", "arena", "cam-bowl", 1000, vec![occupancy("concourse", 10)]),
                record("o2", "arena", "cam-bowl", 1060, vec![occupancy("concourse", 20), occupancy("stand-a", 4)]),
            ])
            .expect("insert");
        let levels = store.latest_zone_levels(&id("arena"), 0).expect("levels");
        assert_eq!(
            levels.iter().map(|l| (l.zone.as_str(), l.start, l.value)).collect::<Vec<_>>(),
            vec![("concourse", 1060, 20), ("stand-a", 1060, 4)]
        );
        assert!(store.latest_zone_levels(&id("arena"), 2000).expect("levels").is_empty());
    }

    #[test]
    fn net_flow_and_crossings_aggregate_per_bucket() {
        let (_dir, mut store) = temp_store();
        store
            .insert_batch(&[
                record(
                    "r1",
                    "arena",
                    "cam-north",
                    0,
                    vec![
                        crossing("north-gate", Direction::In, 10, 1.0),
                        crossing("north-gate", Direction::Out, 3, 1.0),
                    ],
                ),
                record("r2", "arena", "cam-north", 60, vec![crossing("north-gate", Direction::In, 4, 2.0)]),
                record("r3", "arena", "cam-north", 3600, vec![crossing("north-gate", Direction::In, 1, 1.0)]),
            ])
            .expect("insert");
        let net = store.net_flow(&id("arena"), 0, 7200, 3600).expect("net");
        assert_eq!(crate::reports::i64_column(&net, "net").expect("net"), vec![11, 1]);
        assert_eq!(crate::reports::f64_column(&net, "var").expect("var"), vec![6.0, 1.0]);
        let lines = store.line_crossings(&id("arena"), 0, 7200, 60).expect("crossings");
        assert_eq!(crate::reports::i64_column(&lines, "exits").expect("exits"), vec![3, 0, 0]);
    }
}
