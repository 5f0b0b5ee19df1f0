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

use super::{metric_code, stored_direction, stored_id, LineTotal, Point, Store, DIR_IN, DIR_OUT};
use crate::{now_unix, AnalyticsError};

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

/// Which rows an aggregation over `[from, to)` reads: the hourly rollup for the whole hours
/// inside the range when buckets are whole hours (or there are none), and the raw items for
/// the partial hours at either end; the raw items alone otherwise. Both give the same sums:
/// an item belongs to the bucket, and the rollup hour, its interval starts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    /// Raw items starting in `[head.0, head.1)`.
    pub head: (i64, i64),
    /// Raw items starting in `[tail.0, tail.1)`.
    pub tail: (i64, i64),
    /// Rollup hours in `[hours.0, hours.1)`.
    pub hours: (i64, i64),
}

impl Span {
    pub(crate) fn new(from: i64, to: i64, bucket: Option<i64>) -> Span {
        let first = ceil_hour(from);
        let last = to.div_euclid(HOUR).saturating_mul(HOUR);
        if bucket.is_none_or(|b| b % HOUR == 0) && first < last {
            Span { head: (from, first), tail: (last, to), hours: (first, last) }
        } else {
            Span { head: (from, to), tail: (to, to), hours: (to, to) }
        }
    }
}

const HOUR: i64 = 3600;

/// The first whole hour at or after `t` (saturating at the ends of `i64`).
fn ceil_hour(t: i64) -> i64 {
    let hour = t.div_euclid(HOUR).saturating_mul(HOUR);
    if hour == t {
        hour
    } else {
        hour.saturating_add(HOUR)
    }
}

/// The cells of one metric of one venue over a [`Span`]: columns `start`, `subject`, `other`,
/// `value`, `var` (noise variance) and `n` (items summed). Parameters: `$1` venue code, `$2`
/// metric code, `$3`..`$8` the span; queries add theirs from `$9`.
const CELLS: &str = "(SELECT start, subject, other, value, std * std AS var, 1 AS n FROM count_items
       WHERE venue = $1 AND metric = $2 AND start >= $3 AND start < $4
     UNION ALL
     SELECT start, subject, other, value, std * std AS var, 1 AS n FROM count_items
       WHERE venue = $1 AND metric = $2 AND start >= $5 AND start < $6
     UNION ALL
     SELECT hour, subject, other, value, var, n FROM count_hourly
       WHERE venue = $1 AND metric = $2 AND hour >= $7 AND hour < $8) AS cells";

/// One query's result rows, read column by column.
fn read<T: duckdb::types::FromSql>(row: &duckdb::Row<'_>, index: usize) -> Result<T, AnalyticsError> {
    row.get(index).map_err(AnalyticsError::db("read a report row"))
}

impl Store {
    /// Parameters `$1`..`$8` of [`CELLS`], then `extra`. An unknown venue gets code -1, which
    /// matches nothing.
    fn cell_params(
        &self,
        venue: &Id,
        metric: u8,
        span: Span,
        extra: &[i64],
    ) -> Result<Vec<duckdb::types::Value>, AnalyticsError> {
        use duckdb::types::Value;
        let code = self.code_of(venue.as_str())?.unwrap_or(-1);
        let mut values = vec![Value::Int(code), Value::UTinyInt(metric)];
        for bound in [span.head.0, span.head.1, span.tail.0, span.tail.1, span.hours.0, span.hours.1] {
            values.push(Value::BigInt(bound));
        }
        values.extend(extra.iter().map(|v| Value::BigInt(*v)));
        Ok(values)
    }

    /// Prepares `sql` and runs it with `params`, handing each row to `each`.
    fn each_row(
        &self,
        sql: &str,
        params: Vec<duckdb::types::Value>,
        context: &'static str,
        mut each: impl FnMut(&duckdb::Row<'_>) -> Result<(), AnalyticsError>,
    ) -> Result<(), AnalyticsError> {
        let mut statement = self.conn.prepare_cached(sql).map_err(AnalyticsError::db(context))?;
        let mut rows = statement.query(duckdb::params_from_iter(params)).map_err(AnalyticsError::db(context))?;
        while let Some(row) = rows.next().map_err(AnalyticsError::db(context))? {
            each(row)?;
        }
        Ok(())
    }

    /// Net flow into `venue` (crossings in minus out over all its lines) per bucket, with
    /// the summed noise variance: columns `start`, `net`, `var`.
    pub fn net_flow(&self, venue: &Id, from: i64, to: i64, bucket: i64) -> Result<DataFrame, AnalyticsError> {
        let sql = format!(
            "SELECT (start // $9) * $9 AS b, CAST(SUM(CASE WHEN other = {DIR_IN} THEN value ELSE -value END) AS BIGINT),
                    SUM(var)
             FROM {CELLS} GROUP BY b ORDER BY b"
        );
        let params = self.cell_params(venue, metric_code::CROSSINGS, Span::new(from, to, Some(bucket)), &[bucket])?;
        let (mut start, mut net, mut var) = (Vec::new(), Vec::new(), Vec::new());
        self.each_row(&sql, params, "run the net flow query", |row| {
            start.push(read::<i64>(row, 0)?);
            net.push(read::<i64>(row, 1)?);
            var.push(read::<f64>(row, 2)?);
            Ok(())
        })?;
        df!("start" => start, "net" => net, "var" => var).map_err(frame_error)
    }

    /// Released zone occupancy levels per bucket and zone: columns `start`, `zone`, `sum`,
    /// `var`, `n`.
    pub fn zone_levels(&self, venue: &Id, from: i64, to: i64, bucket: i64) -> Result<DataFrame, AnalyticsError> {
        let sql = format!(
            "SELECT a.b, z.name, a.s, a.v, a.k
             FROM (SELECT (start // $9) * $9 AS b, subject, CAST(SUM(value) AS BIGINT) AS s, SUM(var) AS v,
                          CAST(SUM(n) AS BIGINT) AS k
                   FROM {CELLS} GROUP BY b, subject) a
             JOIN names z ON z.code = a.subject
             ORDER BY z.name, a.b"
        );
        let params = self.cell_params(venue, metric_code::OCCUPANCY, Span::new(from, to, Some(bucket)), &[bucket])?;
        let (mut start, mut zone, mut sum, mut var, mut n) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        self.each_row(&sql, params, "run the zone level query", |row| {
            start.push(read::<i64>(row, 0)?);
            zone.push(read::<String>(row, 1)?);
            sum.push(read::<i64>(row, 2)?);
            var.push(read::<f64>(row, 3)?);
            n.push(read::<i64>(row, 4)?);
            Ok(())
        })?;
        df!("start" => start, "zone" => zone, "sum" => sum, "var" => var, "n" => n).map_err(frame_error)
    }

    /// Crossings per bucket and line, both directions: columns `start`, `line`, `entries`,
    /// `entries_var`, `exits`, `exits_var`.
    pub fn line_crossings(&self, venue: &Id, from: i64, to: i64, bucket: i64) -> Result<DataFrame, AnalyticsError> {
        let sql = format!(
            "SELECT a.b, l.name, a.e, a.ev, a.x, a.xv
             FROM (SELECT (start // $9) * $9 AS b, subject,
                          CAST(COALESCE(SUM(value) FILTER (WHERE other = {DIR_IN}), 0) AS BIGINT) AS e,
                          COALESCE(SUM(var) FILTER (WHERE other = {DIR_IN}), 0) AS ev,
                          CAST(COALESCE(SUM(value) FILTER (WHERE other = {DIR_OUT}), 0) AS BIGINT) AS x,
                          COALESCE(SUM(var) FILTER (WHERE other = {DIR_OUT}), 0) AS xv
                   FROM {CELLS} GROUP BY b, subject) a
             JOIN names l ON l.code = a.subject
             ORDER BY a.b, l.name"
        );
        let params = self.cell_params(venue, metric_code::CROSSINGS, Span::new(from, to, Some(bucket)), &[bucket])?;
        let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        self.each_row(&sql, params, "run the crossings query", |row| {
            columns.0.push(read::<i64>(row, 0)?);
            columns.1.push(read::<String>(row, 1)?);
            columns.2.push(read::<i64>(row, 2)?);
            columns.3.push(read::<f64>(row, 3)?);
            columns.4.push(read::<i64>(row, 4)?);
            columns.5.push(read::<f64>(row, 5)?);
            Ok(())
        })?;
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
        let sql = format!(
            "SELECT f.name, t.name, a.v, a.var
             FROM (SELECT subject, other, CAST(SUM(value) AS BIGINT) AS v, SUM(var) AS var
                   FROM {CELLS} GROUP BY subject, other) a
             JOIN names f ON f.code = a.subject
             JOIN names t ON t.code = a.other
             ORDER BY f.name, t.name"
        );
        let params = self.cell_params(venue, metric_code::TRANSITION, Span::new(from, to, None), &[])?;
        let (mut a, mut b, mut value, mut var) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        self.each_row(&sql, params, "run the transition query", |row| {
            a.push(read::<String>(row, 0)?);
            b.push(read::<String>(row, 1)?);
            value.push(read::<i64>(row, 2)?);
            var.push(read::<f64>(row, 3)?);
            Ok(())
        })?;
        df!("from" => a, "to" => b, "value" => value, "var" => var).map_err(frame_error)
    }

    /// Dwell-time buckets per zone summed over the range: columns `zone`, `at_least_secs`,
    /// `value`, `var`.
    pub fn dwell(&self, venue: &Id, from: i64, to: i64) -> Result<DataFrame, AnalyticsError> {
        let sql = format!(
            "SELECT z.name, CAST(a.other AS BIGINT), a.v, a.var
             FROM (SELECT subject, other, CAST(SUM(value) AS BIGINT) AS v, SUM(var) AS var
                   FROM {CELLS} GROUP BY subject, other) a
             JOIN names z ON z.code = a.subject
             ORDER BY z.name, a.other"
        );
        let params = self.cell_params(venue, metric_code::DWELL, Span::new(from, to, None), &[])?;
        let (mut zone, mut at_least, mut value, mut var) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        self.each_row(&sql, params, "run the dwell query", |row| {
            zone.push(read::<String>(row, 0)?);
            at_least.push(read::<i64>(row, 1)?);
            value.push(read::<i64>(row, 2)?);
            var.push(read::<f64>(row, 3)?);
            Ok(())
        })?;
        df!("zone" => zone, "at_least_secs" => at_least, "value" => value, "var" => var).map_err(frame_error)
    }

    /// Entries (crossings in, all lines) per hour: columns `start`, `entries`, `var`.
    pub fn hourly_entries(&self, venue: &Id, from: i64, to: i64) -> Result<DataFrame, AnalyticsError> {
        let sql = format!(
            "SELECT (start // 3600) * 3600 AS b, CAST(SUM(value) AS BIGINT), SUM(var)
             FROM {CELLS} WHERE other = {DIR_IN} GROUP BY b ORDER BY b"
        );
        let params = self.cell_params(venue, metric_code::CROSSINGS, Span::new(from, to, Some(HOUR)), &[])?;
        let (mut start, mut entries, mut var) = (Vec::new(), Vec::new(), Vec::new());
        self.each_row(&sql, params, "run the hourly entries query", |row| {
            start.push(read::<i64>(row, 0)?);
            entries.push(read::<i64>(row, 1)?);
            var.push(read::<f64>(row, 2)?);
            Ok(())
        })?;
        df!("start" => start, "entries" => entries, "var" => var).map_err(frame_error)
    }

    /// Entries and exits over all lines in `[from, to)`: `(entries, entries_var, exits,
    /// exits_var)`.
    pub fn period_totals(&self, venue: &Id, from: i64, to: i64) -> Result<(i64, f64, i64, f64), AnalyticsError> {
        let sql = format!(
            "SELECT CAST(COALESCE(SUM(value) FILTER (WHERE other = {DIR_IN}), 0) AS BIGINT),
                    COALESCE(SUM(var) FILTER (WHERE other = {DIR_IN}), 0),
                    CAST(COALESCE(SUM(value) FILTER (WHERE other = {DIR_OUT}), 0) AS BIGINT),
                    COALESCE(SUM(var) FILTER (WHERE other = {DIR_OUT}), 0)
             FROM {CELLS}"
        );
        let params = self.cell_params(venue, metric_code::CROSSINGS, Span::new(from, to, None), &[])?;
        let mut totals = (0, 0.0, 0, 0.0);
        self.each_row(&sql, params, "run the period totals query", |row| {
            totals = (read(row, 0)?, read(row, 1)?, read(row, 2)?, read(row, 3)?);
            Ok(())
        })?;
        Ok(totals)
    }

    /// Crossings of every line of `venue` per direction, summed over the intervals that start
    /// in `[from, to)`, ordered by line then direction. Lines without data are absent.
    pub fn totals(&self, venue: &Id, from: i64, to: i64) -> Result<Vec<LineTotal>, AnalyticsError> {
        let sql = format!(
            "SELECT l.name, a.other, a.v, SQRT(a.var), a.k
             FROM (SELECT subject, other, CAST(SUM(value) AS BIGINT) AS v, SUM(var) AS var, CAST(SUM(n) AS BIGINT) AS k
                   FROM {CELLS} GROUP BY subject, other) a
             JOIN names l ON l.code = a.subject
             ORDER BY l.name, a.other"
        );
        let params = self.cell_params(venue, metric_code::CROSSINGS, Span::new(from, to, None), &[])?;
        let mut totals = Vec::new();
        self.each_row(&sql, params, "run the totals query", |row| {
            totals.push(LineTotal {
                line: stored_id(&read::<String>(row, 0)?)?,
                dir: stored_direction(read::<i32>(row, 1)?)?,
                value: read(row, 2)?,
                std: read(row, 3)?,
                items: u64::try_from(read::<i64>(row, 4)?).unwrap_or(0),
            });
            Ok(())
        })?;
        Ok(totals)
    }

    /// Crossings of `line` of `venue` per interval starting in `[from, to)`, in time order.
    /// Intervals with no record are absent (no data is not zero).
    pub fn series(&self, venue: &Id, line: &Id, from: i64, to: i64) -> Result<Vec<Point>, AnalyticsError> {
        let (Some(venue), Some(line)) = (self.code_of(venue.as_str())?, self.code_of(line.as_str())?) else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT start, MAX(secs),
                    CAST(SUM(value) FILTER (WHERE other = {DIR_IN}) AS BIGINT),
                    SQRT(SUM(std * std) FILTER (WHERE other = {DIR_IN})),
                    CAST(SUM(value) FILTER (WHERE other = {DIR_OUT}) AS BIGINT),
                    SQRT(SUM(std * std) FILTER (WHERE other = {DIR_OUT}))
             FROM count_items
             WHERE venue = $1 AND metric = $2 AND subject = $3 AND start >= $4 AND start < $5
             GROUP BY start
             ORDER BY start"
        );
        use duckdb::types::Value;
        let params = vec![
            Value::Int(venue),
            Value::UTinyInt(metric_code::CROSSINGS),
            Value::Int(line),
            Value::BigInt(from),
            Value::BigInt(to),
        ];
        let mut points = Vec::new();
        self.each_row(&sql, params, "run the series query", |row| {
            points.push(Point {
                start: read(row, 0)?,
                secs: read(row, 1)?,
                in_value: read(row, 2)?,
                in_std: read(row, 3)?,
                out_value: read(row, 4)?,
                out_std: read(row, 5)?,
            });
            Ok(())
        })?;
        Ok(points)
    }

    /// The latest released occupancy of every zone of `venue` whose interval started at or
    /// after `since`, in zone order.
    pub fn latest_zone_levels(&self, venue: &Id, since: i64) -> Result<Vec<ZoneLevel>, AnalyticsError> {
        let Some(venue) = self.code_of(venue.as_str())? else {
            return Ok(Vec::new());
        };
        use duckdb::types::Value;
        let params = vec![Value::Int(venue), Value::UTinyInt(metric_code::OCCUPANCY), Value::BigInt(since)];
        let mut levels = Vec::new();
        self.each_row(
            "SELECT z.name, a.s, a.v, a.d
             FROM (SELECT subject, MAX(start) AS s, CAST(arg_max(value, start) AS BIGINT) AS v,
                          arg_max(std, start) AS d
                   FROM count_items WHERE venue = $1 AND metric = $2 AND start >= $3
                   GROUP BY subject) a
             JOIN names z ON z.code = a.subject
             ORDER BY z.name",
            params,
            "run the latest level query",
            |row| {
                levels.push(ZoneLevel {
                    zone: read(row, 0)?,
                    start: read(row, 1)?,
                    value: read(row, 2)?,
                    std: read(row, 3)?,
                });
                Ok(())
            },
        )?;
        Ok(levels)
    }

    /// Writes the noised count items of `venue` in `[from, to)` to the Parquet file `path`.
    pub fn export_parquet(&self, venue: &Id, from: i64, to: i64, path: &Path) -> Result<(), AnalyticsError> {
        // COPY takes no parameters: the venue is an `Id` (a-z, 0-9, '-', '_') and the bounds
        // are integers, so they are inlined safely; the path is quoted.
        let sql = format!(
            "COPY (SELECT venue, camera, start, secs, metric, line_or_zone, dir_or_to, value, std
                   FROM count_items_named WHERE venue = '{venue}' AND start >= {from} AND start < {to}
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
                   FROM count_items_named {filter})
             TO {} (FORMAT PARQUET, PARTITION_BY (venue, day), OVERWRITE_OR_IGNORE, FILENAME_PATTERN 'part_{{uuid}}')",
            sql_string(&dir.to_string_lossy())
        );
        self.conn.execute_batch(&sql).map_err(AnalyticsError::db("export a partitioned Parquet dataset"))?;
        Ok(u64::try_from(rows).unwrap_or(0))
    }

    /// Deletes what the retention rules say has expired: the count records and items of
    /// `venue` whose interval ended before `cutoff`, in one transaction, and writes what it
    /// did to the sweep log. Returns the log entry.
    ///
    /// The hourly rollup follows: its hours up to the cutoff are deleted and rebuilt from the
    /// items that remain there (intervals that started before the cutoff and end after it).
    pub fn sweep_counts(&mut self, venue: &Id, cutoff: i64) -> Result<SweepEntry, AnalyticsError> {
        let code = self.code_of(venue.as_str())?.unwrap_or(-1);
        let hour = ceil_hour(cutoff);
        let transaction = self.conn.transaction().map_err(AnalyticsError::db("begin a retention sweep"))?;
        let items = transaction
            .execute("DELETE FROM count_items WHERE venue = ? AND start + secs <= ?", params![code, cutoff])
            .map_err(AnalyticsError::db("delete expired count items"))?;
        let records = transaction
            .execute("DELETE FROM count_records WHERE venue = ? AND start + secs <= ?", params![code, cutoff])
            .map_err(AnalyticsError::db("delete expired count records"))?;
        transaction
            .execute("DELETE FROM count_hourly WHERE venue = ? AND hour < ?", params![code, hour])
            .map_err(AnalyticsError::db("delete expired rollup hours"))?;
        transaction
            .execute(
                "INSERT INTO count_hourly
                 SELECT venue, metric, subject, other, (start // 3600) * 3600, CAST(SUM(value) AS BIGINT),
                        SUM(std * std), COUNT(*)
                 FROM count_items WHERE venue = ? AND start < ? GROUP BY ALL",
                params![code, hour],
            )
            .map_err(AnalyticsError::db("rebuild the rollup hours at the cutoff"))?;
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

    /// Merges the partial rows that inserts append to the hourly rollup into one row per cell,
    /// in one transaction; returns the rows it removed. Readers sum the rows of a cell either
    /// way, so this only keeps the rollup small. Inserts running meanwhile append rows this
    /// transaction does not see, and does not delete.
    pub fn compact_rollup(&mut self) -> Result<u64, AnalyticsError> {
        let (rows, cells): (i64, i64) = self
            .conn
            .query_row(
                "SELECT COUNT(*), (SELECT COUNT(*) FROM (SELECT DISTINCT venue, metric, subject, other, hour
                                                         FROM count_hourly))
                 FROM count_hourly",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(AnalyticsError::db("count the rollup rows"))?;
        if rows == cells {
            return Ok(0);
        }
        let transaction = self.conn.transaction().map_err(AnalyticsError::db("begin a rollup compaction"))?;
        transaction
            .execute_batch(
                "CREATE OR REPLACE TEMP TABLE compacted AS
                     SELECT venue, metric, subject, other, hour, CAST(SUM(value) AS BIGINT) AS value,
                            SUM(var) AS var, CAST(SUM(n) AS BIGINT) AS n
                     FROM count_hourly GROUP BY ALL;
                 DELETE FROM count_hourly;
                 INSERT INTO count_hourly SELECT * FROM temp.compacted ORDER BY hour, venue, metric, subject, other;
                 DROP TABLE temp.compacted;",
            )
            .map_err(AnalyticsError::db("compact the hourly rollup"))?;
        let after: i64 = transaction
            .query_row("SELECT COUNT(*) FROM count_hourly", [], |row| row.get(0))
            .map_err(AnalyticsError::db("count the rollup rows"))?;
        transaction.commit().map_err(AnalyticsError::db("commit a rollup compaction"))?;
        Ok(u64::try_from(rows - after).unwrap_or(0))
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
    fn a_span_uses_the_rollup_only_for_whole_hours_and_hourly_buckets() {
        assert_eq!(
            Span::new(1_000, 10_000, Some(3600)),
            Span { head: (1_000, 3600), tail: (7200, 10_000), hours: (3600, 7200) }
        );
        assert_eq!(Span::new(0, 7200, None), Span { head: (0, 0), tail: (7200, 7200), hours: (0, 7200) });
        // Buckets shorter than an hour, or no whole hour inside: raw items only.
        assert_eq!(Span::new(0, 7200, Some(900)), Span { head: (0, 7200), tail: (7200, 7200), hours: (7200, 7200) });
        assert_eq!(Span::new(100, 3700, None), Span { head: (100, 3700), tail: (3700, 3700), hours: (3700, 3700) });
        assert_eq!(Span::new(-5_000, 0, None), Span { head: (-5_000, -3600), tail: (0, 0), hours: (-3600, 0) });
        // The ends of i64 saturate instead of overflowing.
        let edge = Span::new(i64::MIN, i64::MAX, None);
        assert!(edge.hours.0 < edge.hours.1);
        assert_eq!(
            Span::new(i64::MAX - 10, i64::MAX, Some(3600)).hours.0,
            Span::new(i64::MAX - 10, i64::MAX, Some(3600)).hours.1
        );
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
        // Started in the cutoff's hour, before it, but ends after it: kept, in the rollup too.
        let mut long =
            record("long", "arena", "cam-north", 49_000, vec![crossing("north-gate", Direction::In, 3, 1.0)]);
        long.secs = 3000;
        store.insert_batch(&[long]).expect("insert");
        let entry = store.sweep_counts(&id("arena"), 50_000).expect("sweep");
        assert_eq!(entry.rows, 2, "one record and its item");
        let totals = store.totals(&id("arena"), 0, 200_000).expect("totals");
        assert_eq!(
            totals.iter().map(|t| t.value).collect::<Vec<_>>(),
            vec![10],
            "the rollup forgot the old item or the long one"
        );
        let summary = store.summary().expect("summary");
        assert_eq!((summary.records, summary.items), (2, 2));
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
