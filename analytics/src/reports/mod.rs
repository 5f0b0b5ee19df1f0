//! Flow reports, computed with Polars from what the store's queries return. No I/O here:
//! every function takes the aggregated figures as data frames (or plain vectors) and returns
//! a data frame whose columns are exactly the fields of the report's row type, which the HTTP
//! layer turns into JSON (through the row type) or CSV (straight from the frame).
//!
//! Every figure carries the standard deviation of its DP noise (`std`, or `<name>_std`), from
//! the variances the edge reported: sums add variances, means divide them by `n²`. A figure
//! whose magnitude is below `flag_k` standard deviations is flagged (`flagged`,
//! `<name>_flagged`): it may be mostly noise. Flagged cells are kept, never dropped.

mod forecast;
mod rows;

use polars::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use forecast::holt_forecast;
pub use rows::{frame_rows, frame_to_csv};

use crate::AnalyticsError;

/// Seconds in a day; occupancy restarts from zero at every UTC day boundary.
pub const DAY: i64 = 86_400;

fn report_error(report: &'static str) -> impl Fn(PolarsError) -> AnalyticsError {
    move |error| AnalyticsError::Report { report, reason: error.to_string() }
}

/// `|value| < k * std`, as a boolean column named `name`.
fn flag(value: &str, std: &str, k: f64, name: &str) -> Expr {
    let v = col(value).cast(DataType::Float64);
    v.clone().lt(lit(k) * col(std)).and(v.gt(lit(-k) * col(std))).alias(name)
}

/// One bucket of the occupancy series of a venue (`zone` absent) or of one zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OccupancyRow {
    /// Bucket start, seconds since the Unix epoch.
    pub start: i64,
    /// The zone, or absent for the whole venue.
    pub zone: Option<String>,
    /// People present: for the venue, the entries minus exits over its lines since the start
    /// of the UTC day up to the end of the bucket; for a zone, the mean of the zone's released
    /// occupancy over the bucket.
    pub value: f64,
    /// Standard deviation of the DP noise in `value`.
    pub std: f64,
    /// `|value| < flag_k * std`.
    pub flagged: bool,
    /// The zone's capacity (absent for the venue).
    pub capacity: Option<i64>,
    /// `value / capacity` (absent for the venue).
    pub load: Option<f64>,
}

/// Venue occupancy from per-bucket net flows.
///
/// `net` has columns `start` (bucket start, i64), `net` (entries minus exits, i64) and `var`
/// (noise variance of `net`, f64), one row per bucket that has data, buckets aligned so that
/// none straddles a day boundary, and starting at a day boundary (or the day's occupancy
/// would miss its morning). Rows before `from` are used for the running sum and then dropped.
pub fn venue_occupancy(net: DataFrame, from: i64, flag_k: f64) -> Result<DataFrame, AnalyticsError> {
    net.lazy()
        .sort(["start"], SortMultipleOptions::default())
        .with_columns([col("start").floor_div(lit(DAY)).alias("day")])
        .with_columns([
            col("net").cum_sum(false).over([col("day")]).cast(DataType::Float64).alias("value"),
            col("var").cum_sum(false).over([col("day")]).sqrt().alias("std"),
        ])
        .filter(col("start").gt_eq(lit(from)))
        .with_columns([flag("value", "std", flag_k, "flagged")])
        .select([
            col("start"),
            lit(NULL).cast(DataType::String).alias("zone"),
            col("value"),
            col("std"),
            col("flagged"),
            lit(NULL).cast(DataType::Int64).alias("capacity"),
            lit(NULL).cast(DataType::Float64).alias("load"),
        ])
        .collect()
        .map_err(report_error("occupancy"))
}

/// Zone occupancy from the released per-interval occupancy levels.
///
/// `levels` has columns `start` (bucket start), `zone`, `sum` (sum of the levels in the
/// bucket, i64), `var` (sum of their variances) and `n` (how many levels, i64); `capacities`
/// has `zone` and `capacity` (i64).
pub fn zone_occupancy(levels: DataFrame, capacities: DataFrame, flag_k: f64) -> Result<DataFrame, AnalyticsError> {
    levels
        .lazy()
        .join(capacities.lazy(), [col("zone")], [col("zone")], JoinArgs::new(JoinType::Left))
        .with_columns([
            (col("sum").cast(DataType::Float64) / col("n").cast(DataType::Float64)).alias("value"),
            (col("var").sqrt() / col("n").cast(DataType::Float64)).alias("std"),
        ])
        .with_columns([
            flag("value", "std", flag_k, "flagged"),
            (col("value") / col("capacity").cast(DataType::Float64)).alias("load"),
        ])
        .sort(["zone", "start"], SortMultipleOptions::default())
        .select([col("start"), col("zone"), col("value"), col("std"), col("flagged"), col("capacity"), col("load")])
        .collect()
        .map_err(report_error("occupancy"))
}

/// Entries and exits through one line in one bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ThroughputRow {
    /// Bucket start, seconds since the Unix epoch.
    pub start: i64,
    /// The counting line (an entrance or gate).
    pub line: String,
    /// Noised crossings "in".
    pub entries: i64,
    /// Noise standard deviation of `entries`.
    pub entries_std: f64,
    /// `|entries| < flag_k * entries_std`.
    pub entries_flagged: bool,
    /// Noised crossings "out".
    pub exits: i64,
    /// Noise standard deviation of `exits`.
    pub exits_std: f64,
    /// `|exits| < flag_k * exits_std`.
    pub exits_flagged: bool,
}

/// Entries and exits per line and bucket. `crossings` has columns `start`, `line`,
/// `entries`, `entries_var`, `exits`, `exits_var` (a direction without data is 0 with
/// variance 0).
pub fn throughput(crossings: DataFrame, flag_k: f64) -> Result<DataFrame, AnalyticsError> {
    crossings
        .lazy()
        .with_columns([col("entries_var").sqrt().alias("entries_std"), col("exits_var").sqrt().alias("exits_std")])
        .with_columns([
            flag("entries", "entries_std", flag_k, "entries_flagged"),
            flag("exits", "exits_std", flag_k, "exits_flagged"),
        ])
        .sort(["start", "line"], SortMultipleOptions::default())
        .select([
            col("start"),
            col("line"),
            col("entries"),
            col("entries_std"),
            col("entries_flagged"),
            col("exits"),
            col("exits_std"),
            col("exits_flagged"),
        ])
        .collect()
        .map_err(report_error("throughput"))
}

/// People moving from one zone to another over the range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FlowRow {
    /// Zone left.
    pub from: String,
    /// Zone entered.
    pub to: String,
    /// Noised number of moves.
    pub value: i64,
    /// Noise standard deviation of `value`.
    pub std: f64,
    /// `|value| < flag_k * std`.
    pub flagged: bool,
    /// Share of the moves out of `from` that went to `to` (negative noisy cells count as 0).
    pub share: f64,
}

/// The zone-to-zone flow matrix (sparse: one row per pair with data). `transitions` has
/// columns `from`, `to`, `value` (i64) and `var`.
pub fn flows(transitions: DataFrame, flag_k: f64) -> Result<DataFrame, AnalyticsError> {
    let positive = when(col("value").gt(lit(0))).then(col("value")).otherwise(lit(0)).cast(DataType::Float64);
    let out_of_from = positive.clone().sum().over([col("from")]);
    transitions
        .lazy()
        .with_columns([col("var").sqrt().alias("std")])
        .with_columns([
            flag("value", "std", flag_k, "flagged"),
            when(out_of_from.clone().gt(lit(0.0))).then(positive / out_of_from).otherwise(lit(0.0)).alias("share"),
        ])
        .sort(["from", "to"], SortMultipleOptions::default())
        .select([col("from"), col("to"), col("value"), col("std"), col("flagged"), col("share")])
        .collect()
        .map_err(report_error("flows"))
}

/// The mean entries in one hour of the day over the days of the range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PeakRow {
    /// Hour of the day, 0 to 23 (UTC).
    pub hour: i64,
    /// Mean noised entries in that hour, over the days that have data for it.
    pub mean_entries: f64,
    /// Noise standard deviation of `mean_entries`.
    pub std: f64,
    /// `|mean_entries| < flag_k * std`.
    pub flagged: bool,
    /// Days averaged.
    pub days: i64,
    /// 1 for the busiest hour, 2 for the next...
    pub rank: i64,
}

/// Peak hours: hourly entries (`start` hour bucket, `entries` i64, `var`) averaged per hour
/// of the day, busiest first.
pub fn peaks(hourly: DataFrame, flag_k: f64) -> Result<DataFrame, AnalyticsError> {
    let hour = (col("start") % lit(DAY)).floor_div(lit(3600i64));
    hourly
        .lazy()
        .with_columns([hour.alias("hour")])
        .group_by([col("hour")])
        .agg([
            col("entries").cast(DataType::Float64).mean().alias("mean_entries"),
            col("var").sum().alias("var"),
            col("entries").count().cast(DataType::Int64).alias("days"),
        ])
        .with_columns([(col("var").sqrt() / col("days").cast(DataType::Float64)).alias("std")])
        .with_columns([flag("mean_entries", "std", flag_k, "flagged")])
        .sort_by_exprs(
            [col("mean_entries"), col("hour")],
            SortMultipleOptions::default().with_order_descending_multi([true, false]),
        )
        .with_row_index("rank0", None)
        .with_columns([(col("rank0").cast(DataType::Int64) + lit(1i64)).alias("rank")])
        .select([col("hour"), col("mean_entries"), col("std"), col("flagged"), col("days"), col("rank")])
        .collect()
        .map_err(report_error("peaks"))
}

/// How long people stayed in a zone: one bucket of the distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DwellRow {
    /// The zone.
    pub zone: String,
    /// Lower bound of the dwell bucket in seconds (0, 60, 300, 900, 1800, 3600).
    pub at_least_secs: i64,
    /// Noised number of stays that ended in the range with a dwell time in this bucket.
    pub value: i64,
    /// Noise standard deviation of `value`.
    pub std: f64,
    /// `|value| < flag_k * std`.
    pub flagged: bool,
    /// Share of the zone's stays in this bucket (negative noisy cells count as 0).
    pub share: f64,
}

/// Dwell-time distribution per zone. `dwell` has columns `zone`, `at_least_secs`, `value`,
/// `var`.
pub fn dwell(dwell: DataFrame, flag_k: f64) -> Result<DataFrame, AnalyticsError> {
    let positive = when(col("value").gt(lit(0))).then(col("value")).otherwise(lit(0)).cast(DataType::Float64);
    let zone_total = positive.clone().sum().over([col("zone")]);
    dwell
        .lazy()
        .with_columns([col("var").sqrt().alias("std")])
        .with_columns([
            flag("value", "std", flag_k, "flagged"),
            when(zone_total.clone().gt(lit(0.0))).then(positive / zone_total).otherwise(lit(0.0)).alias("share"),
        ])
        .sort(["zone", "at_least_secs"], SortMultipleOptions::default())
        .select([col("zone"), col("at_least_secs"), col("value"), col("std"), col("flagged"), col("share")])
        .collect()
        .map_err(report_error("dwell"))
}

/// Entries and exits of one period, for day-over-day and week-over-week comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CompareRow {
    /// `current`, `previous_day` or `previous_week`.
    pub period: String,
    /// Period start, seconds since the Unix epoch.
    pub from: i64,
    /// Period end (exclusive).
    pub to: i64,
    /// Noised entries over all lines.
    pub entries: i64,
    /// Noise standard deviation of `entries`.
    pub entries_std: f64,
    /// Noised exits over all lines.
    pub exits: i64,
    /// Noise standard deviation of `exits`.
    pub exits_std: f64,
    /// Change of the current period's entries relative to this period's, in percent (absent
    /// for the current period, or when this period's entries are not positive).
    pub entries_change_pct: Option<f64>,
    /// `|entries| < flag_k * entries_std`.
    pub flagged: bool,
}

/// Day-over-day and week-over-week. `periods` has columns `period`, `from`, `to`,
/// `entries`, `entries_var`, `exits`, `exits_var`, with the current period first.
pub fn compare(periods: DataFrame, flag_k: f64) -> Result<DataFrame, AnalyticsError> {
    let current = col("entries").first().cast(DataType::Float64);
    let this = col("entries").cast(DataType::Float64);
    periods
        .lazy()
        .with_columns([col("entries_var").sqrt().alias("entries_std"), col("exits_var").sqrt().alias("exits_std")])
        .with_columns([
            when(col("period").neq(lit("current")).and(this.clone().gt(lit(0.0))))
                .then((current - this.clone()) / this * lit(100.0))
                .otherwise(lit(NULL).cast(DataType::Float64))
                .alias("entries_change_pct"),
            flag("entries", "entries_std", flag_k, "flagged"),
        ])
        .select([
            col("period"),
            col("from"),
            col("to"),
            col("entries"),
            col("entries_std"),
            col("exits"),
            col("exits_std"),
            col("entries_change_pct"),
            col("flagged"),
        ])
        .collect()
        .map_err(report_error("compare"))
}

/// One bucket of the short-horizon venue occupancy forecast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ForecastRow {
    /// Bucket start, seconds since the Unix epoch.
    pub start: i64,
    /// Forecast occupancy at the end of the bucket.
    pub value: f64,
    /// Standard deviation of the forecast: the one-step residuals' spread widened with the
    /// horizon, plus the DP noise of the last observed level.
    pub std: f64,
    /// Buckets ahead of the last observed one (1, 2, ...).
    pub horizon: i64,
}

/// The frame of a forecast, as [`ForecastRow`]s.
pub fn forecast_frame(rows: &[ForecastRow]) -> Result<DataFrame, AnalyticsError> {
    df!(
        "start" => rows.iter().map(|r| r.start).collect::<Vec<_>>(),
        "value" => rows.iter().map(|r| r.value).collect::<Vec<_>>(),
        "std" => rows.iter().map(|r| r.std).collect::<Vec<_>>(),
        "horizon" => rows.iter().map(|r| r.horizon).collect::<Vec<_>>(),
    )
    .map_err(report_error("forecast"))
}

/// Reads a float column of `frame` (nulls as NaN).
pub fn f64_column(frame: &DataFrame, name: &str) -> Result<Vec<f64>, AnalyticsError> {
    let column = frame.column(name).and_then(|c| c.f64().cloned()).map_err(report_error("column read"))?;
    Ok(column.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

/// Reads an integer column of `frame` (nulls as 0).
pub fn i64_column(frame: &DataFrame, name: &str) -> Result<Vec<i64>, AnalyticsError> {
    let column = frame.column(name).and_then(|c| c.i64().cloned()).map_err(report_error("column read"))?;
    Ok(column.into_iter().map(|v| v.unwrap_or(0)).collect())
}

#[cfg(test)]
mod tests;
