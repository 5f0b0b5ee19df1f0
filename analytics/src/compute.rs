//! Each report, end to end: the store's aggregation for a venue and range, then the Polars
//! computation of [`crate::reports`]. Blocking; the HTTP layer runs it on a blocking thread.

use passage_config::{Config, Venue};
use polars::prelude::{df, DataFrame};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::reports::{self, ForecastRow, DAY};
use crate::{AnalyticsError, Store};

/// The reports the service computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// Occupancy of the venue and of each zone per bucket.
    Occupancy,
    /// Entries and exits per line and bucket.
    Throughput,
    /// Zone-to-zone flow matrix over the range.
    Flows,
    /// Busiest hours of the day.
    Peaks,
    /// Dwell-time distribution per zone.
    Dwell,
    /// Day-over-day and week-over-week.
    Compare,
    /// Short-horizon venue occupancy forecast.
    Forecast,
}

impl ReportKind {
    /// Every report, in the order the API lists them.
    pub const ALL: [ReportKind; 7] = [
        ReportKind::Occupancy,
        ReportKind::Throughput,
        ReportKind::Flows,
        ReportKind::Peaks,
        ReportKind::Dwell,
        ReportKind::Compare,
        ReportKind::Forecast,
    ];

    /// The report's name in URLs and file names.
    pub fn name(self) -> &'static str {
        match self {
            ReportKind::Occupancy => "occupancy",
            ReportKind::Throughput => "throughput",
            ReportKind::Flows => "flows",
            ReportKind::Peaks => "peaks",
            ReportKind::Dwell => "dwell",
            ReportKind::Compare => "compare",
            ReportKind::Forecast => "forecast",
        }
    }
}

/// Bucket lengths a report may ask for, in seconds: each divides a day.
pub const BUCKETS: [i64; 6] = [60, 300, 900, 3600, 21_600, DAY];

/// The bucket used when a request names none: the smallest allowed one that gives at most
/// `max_points` buckets over `span` seconds, and is no finer than the release interval.
pub fn auto_bucket(span: i64, interval_secs: i64, max_points: i64) -> i64 {
    BUCKETS.iter().copied().find(|&bucket| bucket >= interval_secs && span / bucket <= max_points).unwrap_or(DAY)
}

/// What a report is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportRange {
    /// First second (inclusive).
    pub from: i64,
    /// Last second (exclusive).
    pub to: i64,
    /// Bucket length in seconds, one of [`BUCKETS`].
    pub bucket: i64,
}

/// Computes `kind` for `venue` over `range` from `store`.
pub fn compute(
    store: &Store,
    config: &Config,
    venue: &Venue,
    kind: ReportKind,
    range: ReportRange,
) -> Result<DataFrame, AnalyticsError> {
    let k = config.privacy.flag_below_std_multiple;
    let id = &venue.id;
    let ReportRange { from, to, bucket } = range;
    match kind {
        ReportKind::Occupancy => occupancy_and_forecast(store, config, venue, range).map(|(occupancy, _)| occupancy),
        ReportKind::Throughput => reports::throughput(store.line_crossings(id, from, to, bucket)?, k),
        ReportKind::Flows => reports::flows(store.transitions(id, from, to)?, k),
        ReportKind::Peaks => reports::peaks(store.hourly_entries(id, from, to)?, k),
        ReportKind::Dwell => reports::dwell(store.dwell(id, from, to)?, k),
        ReportKind::Compare => {
            let span = to - from;
            let periods = [("current", from), ("previous_day", from - DAY), ("previous_week", from - 7 * DAY)];
            let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for (name, start) in periods {
                let (entries, entries_var, exits, exits_var) = store.period_totals(id, start, start + span)?;
                columns.0.push(name);
                columns.1.push(start);
                columns.2.push(start + span);
                columns.3.push(entries);
                columns.4.push(entries_var);
                columns.5.push(exits);
                columns.6.push(exits_var);
            }
            let periods = df!(
                "period" => columns.0,
                "from" => columns.1,
                "to" => columns.2,
                "entries" => columns.3,
                "entries_var" => columns.4,
                "exits" => columns.5,
                "exits_var" => columns.6,
            )
            .map_err(|e| AnalyticsError::Report { report: "compare", reason: e.to_string() })?;
            reports::compare(periods, k)
        }
        ReportKind::Forecast => forecast(&venue_occupancy(store, venue, range, k)?, config, range),
    }
}

/// The occupancy report (venue and zones) and the venue's forecast, from one venue series:
/// what a page showing both needs, without summing the venue's flows twice.
pub fn occupancy_and_forecast(
    store: &Store,
    config: &Config,
    venue: &Venue,
    range: ReportRange,
) -> Result<(DataFrame, DataFrame), AnalyticsError> {
    let k = config.privacy.flag_below_std_multiple;
    let mut occupancy = venue_occupancy(store, venue, range, k)?;
    let forecast = forecast(&occupancy, config, range)?;
    let capacities = df!(
        "zone" => venue.zones.iter().map(|z| z.id.to_string()).collect::<Vec<_>>(),
        "capacity" => venue.zones.iter().map(|z| i64::from(z.capacity)).collect::<Vec<_>>(),
    )
    .map_err(|e| AnalyticsError::Report { report: "occupancy", reason: e.to_string() })?;
    let levels = store.zone_levels(&venue.id, range.from, range.to, range.bucket)?;
    let zones = reports::zone_occupancy(levels, capacities, k)?;
    occupancy.vstack_mut(&zones).map_err(|e| AnalyticsError::Report { report: "occupancy", reason: e.to_string() })?;
    Ok((occupancy, forecast))
}

/// The forecast of the venue series `observed` (a [`reports::venue_occupancy`] frame).
fn forecast(observed: &DataFrame, config: &Config, range: ReportRange) -> Result<DataFrame, AnalyticsError> {
    let starts = reports::i64_column(observed, "start")?;
    let values = reports::f64_column(observed, "value")?;
    let stds = reports::f64_column(observed, "std")?;
    let last_start = starts.last().copied().unwrap_or(range.to - range.bucket);
    let last_std = stds.last().copied().unwrap_or(0.0);
    let horizon = usize::try_from(config.analytics.forecast_buckets).unwrap_or(6);
    let rows: Vec<ForecastRow> = reports::holt_forecast(&values, last_std, horizon)
        .into_iter()
        .enumerate()
        .map(|(i, (value, std))| {
            let h = i as i64 + 1;
            ForecastRow { start: last_start + h * range.bucket, value, std, horizon: h }
        })
        .collect();
    reports::forecast_frame(&rows)
}

/// The venue's occupancy series over `range`, summing from the start of `from`'s UTC day.
fn venue_occupancy(store: &Store, venue: &Venue, range: ReportRange, k: f64) -> Result<DataFrame, AnalyticsError> {
    let day_start = range.from - range.from.rem_euclid(DAY);
    let net = store.net_flow(&venue.id, day_start, range.to, range.bucket)?;
    reports::venue_occupancy(net, range.from - range.from.rem_euclid(range.bucket), k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_automatic_bucket_keeps_charts_readable() {
        assert_eq!(auto_bucket(3600, 60, 240), 60);
        assert_eq!(auto_bucket(86_400, 60, 240), 900);
        assert_eq!(auto_bucket(7 * 86_400, 60, 240), 3600);
        assert_eq!(auto_bucket(3600, 300, 240), 300);
        assert_eq!(auto_bucket(400 * 86_400, 60, 240), DAY);
    }
}
