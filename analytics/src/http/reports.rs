//! The report endpoints, their CSV and Parquet exports, live occupancy, alerts, the
//! retention log, and the OpenAPI document generated from these handlers.
//!
//! ```text
//! GET /api/v1/venues/{venue}/reports/{report}?from=&to=&bucket=&offset=&limit=&format=json|csv
//!     report: occupancy, throughput, flows, peaks, dwell, compare, forecast
//! GET /api/v1/venues/{venue}/export.parquet?from=&to=   the noised count items (Parquet)
//! GET /api/v1/venues/{venue}/live                       latest zone occupancy vs capacity
//! GET /api/v1/venues/{venue}/alerts?since=&limit=       capacity alert history
//! GET /api/v1/retention?limit=                          what the retention sweeper deleted
//! GET /api/v1/openapi.json                              this API, as OpenAPI 3.1
//! ```

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::{find_venue, ApiError, AppState, ErrorBody};
use crate::alerts::live_window;
use crate::compute::{self, ReportKind, ReportRange, BUCKETS};
use crate::reports::{
    frame_rows, frame_to_csv, CompareRow, DwellRow, FlowRow, ForecastRow, OccupancyRow, PeakRow, ThroughputRow,
};
use crate::{now_unix, AlertEntry, SweepEntry};

/// Longest range a report may cover (the default count retention).
pub(crate) const MAX_REPORT_RANGE_SECS: i64 = 400 * 86_400;
/// Rows per page when `limit` is not given.
const DEFAULT_LIMIT: usize = 1000;
/// Most rows per page.
const MAX_LIMIT: usize = 10_000;
/// Buckets an automatically chosen bucket length keeps a series under.
pub(crate) const AUTO_POINTS: i64 = 240;

/// Query parameters of every report.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReportParams {
    /// Start of the range, seconds since the Unix epoch (default: 24 hours before `to`).
    pub from: Option<i64>,
    /// End of the range, exclusive (default: now). At most 400 days after `from`.
    pub to: Option<i64>,
    /// Bucket length in seconds: 60, 300, 900, 3600, 21600 or 86400, and no shorter than
    /// the release interval (default: the smallest giving at most 240 buckets).
    pub bucket: Option<i64>,
    /// Rows to skip (default 0).
    pub offset: Option<usize>,
    /// Rows to return, 1 to 10000 (default 1000).
    pub limit: Option<usize>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// One page of a report.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReportBody<R> {
    /// The report.
    pub report: ReportKind,
    /// The venue.
    pub venue: String,
    /// Range start, seconds since the Unix epoch.
    pub from: i64,
    /// Range end (exclusive).
    pub to: i64,
    /// Bucket length in seconds.
    pub bucket_secs: i64,
    /// Figures below this many noise standard deviations are flagged.
    pub flag_k: f64,
    /// Rows in the whole report.
    pub total_rows: usize,
    /// Rows skipped.
    pub offset: usize,
    /// Page size asked for.
    pub limit: usize,
    /// The offset of the next page, when there is one.
    pub next_offset: Option<usize>,
    /// This page's rows.
    pub rows: Vec<R>,
}

/// The checked parameters of a report request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checked {
    pub range: ReportRange,
    pub offset: usize,
    pub limit: usize,
    pub csv: bool,
}

/// Checks a report request's parameters at time `now` against a release interval of
/// `interval_secs`.
pub(crate) fn check_params(params: &ReportParams, now: i64, interval_secs: i64) -> Result<Checked, ApiError> {
    let to = params.to.unwrap_or(now);
    let from = params.from.unwrap_or_else(|| to.saturating_sub(86_400));
    if from >= to {
        return Err(ApiError::BadRequest("`from` must be before `to`".into()));
    }
    if i128::from(to) - i128::from(from) > i128::from(MAX_REPORT_RANGE_SECS) {
        return Err(ApiError::BadRequest("the range is longer than 400 days".into()));
    }
    if from < 0 || to > now.saturating_add(366 * 86_400) {
        return Err(ApiError::BadRequest("the range must lie between 1970 and a year from now".into()));
    }
    let bucket = match params.bucket {
        None => compute::auto_bucket(to - from, interval_secs, AUTO_POINTS),
        Some(bucket) if BUCKETS.contains(&bucket) && bucket >= interval_secs => bucket,
        Some(_) => {
            return Err(ApiError::BadRequest(format!(
                "`bucket` must be one of {BUCKETS:?} seconds and at least the release interval ({interval_secs} s)"
            )))
        }
    };
    let limit = check_limit(params.limit, DEFAULT_LIMIT)?;
    let csv = match params.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::BadRequest("`format` must be `json` or `csv`".into())),
    };
    Ok(Checked { range: ReportRange { from, to, bucket }, offset: params.offset.unwrap_or(0), limit, csv })
}

/// A page size: `limit`, or `default`, between 1 and [`MAX_LIMIT`].
fn check_limit(limit: Option<usize>, default: usize) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(default);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!("`limit` must be between 1 and {MAX_LIMIT}")));
    }
    Ok(limit)
}

/// Computes one report for a request and answers it as JSON or CSV.
async fn report<R>(
    state: AppState,
    venue: Result<Path<String>, PathRejection>,
    params: Result<Query<ReportParams>, QueryRejection>,
    kind: ReportKind,
) -> Result<Response, ApiError>
where
    R: DeserializeOwned + Serialize + Send + 'static,
{
    let Path(venue) = venue?;
    let Query(params) = params?;
    let venue = find_venue(&state.config, &venue)?.clone();
    let checked = check_params(&params, now_unix(), i64::from(state.config.privacy.interval_secs))?;
    let config = state.config.clone();
    let v = venue.clone();
    let frame = state.query(move |store| compute::compute(store, &config, &v, kind, checked.range)).await?;
    let total_rows = frame.height();
    let offset = checked.offset.min(total_rows);
    let mut page = frame.slice(i64::try_from(offset).unwrap_or(i64::MAX), checked.limit);
    let name = kind.name();
    if checked.csv {
        let csv = frame_to_csv(name, &mut page).map_err(|error| {
            tracing::error!(%error, "report CSV failed");
            ApiError::Internal
        })?;
        let file = format!("{}-{name}-{}-{}.csv", venue.id, checked.range.from, checked.range.to);
        return Ok(attachment(csv, "text/csv; charset=utf-8", &file));
    }
    let rows: Vec<R> = frame_rows(name, &page).map_err(|error| {
        tracing::error!(%error, "report rows failed");
        ApiError::Internal
    })?;
    let next = offset + rows.len();
    Ok(Json(ReportBody {
        report: kind,
        venue: venue.id.to_string(),
        from: checked.range.from,
        to: checked.range.to,
        bucket_secs: checked.range.bucket,
        flag_k: state.config.privacy.flag_below_std_multiple,
        total_rows,
        offset,
        limit: checked.limit,
        next_offset: (next < total_rows).then_some(next),
        rows,
    })
    .into_response())
}

/// A download: `body` with its content type and a file name.
fn attachment(body: Vec<u8>, content_type: &'static str, file: &str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The file name is built from an `Id` and integers: always a valid header value.
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

macro_rules! report_endpoint {
    ($handler:ident, $kind:expr, $row:ty, $path:literal, $what:literal) => {
        #[doc = $what]
        #[utoipa::path(
            get,
            path = $path,
            tag = "reports",
            description = $what,
            params(("venue" = String, Path, description = "Venue id"), ReportParams),
            responses(
                (status = 200, description = "One page of the report (JSON), or the page as CSV with `format=csv`", body = ReportBody<$row>),
                (status = 400, description = "Bad parameters", body = ErrorBody),
                (status = 404, description = "Unknown venue", body = ErrorBody),
            )
        )]
        pub(crate) async fn $handler(
            State(state): State<AppState>,
            venue: Result<Path<String>, PathRejection>,
            params: Result<Query<ReportParams>, QueryRejection>,
        ) -> Result<Response, ApiError> {
            report::<$row>(state, venue, params, $kind).await
        }
    };
}

report_endpoint!(
    occupancy,
    ReportKind::Occupancy,
    OccupancyRow,
    "/api/v1/venues/{venue}/reports/occupancy",
    "Occupancy per bucket: the venue's (running net flow over its lines since the start of the UTC day) and each zone's (mean released level), with capacity and load."
);
report_endpoint!(
    throughput,
    ReportKind::Throughput,
    ThroughputRow,
    "/api/v1/venues/{venue}/reports/throughput",
    "Entries and exits per line (gate) and bucket."
);
report_endpoint!(
    flows,
    ReportKind::Flows,
    FlowRow,
    "/api/v1/venues/{venue}/reports/flows",
    "Zone-to-zone moves over the range, with each pair's share of the moves out of its zone."
);
report_endpoint!(
    peaks,
    ReportKind::Peaks,
    PeakRow,
    "/api/v1/venues/{venue}/reports/peaks",
    "Mean entries per hour of the day (UTC) over the range, busiest first."
);
report_endpoint!(
    dwell,
    ReportKind::Dwell,
    DwellRow,
    "/api/v1/venues/{venue}/reports/dwell",
    "Dwell-time distribution per zone over the range."
);
report_endpoint!(
    compare,
    ReportKind::Compare,
    CompareRow,
    "/api/v1/venues/{venue}/reports/compare",
    "Entries and exits of the range against the same range a day and a week earlier."
);
report_endpoint!(
    forecast,
    ReportKind::Forecast,
    ForecastRow,
    "/api/v1/venues/{venue}/reports/forecast",
    "Venue occupancy forecast for the buckets after the range (Holt's linear smoothing)."
);

/// Range of a Parquet export.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ExportParams {
    /// Start, seconds since the Unix epoch (default: 24 hours before `to`).
    pub from: Option<i64>,
    /// End, exclusive (default: now); at most 400 days after `from`.
    pub to: Option<i64>,
}

/// The noised count items of a venue over a range as a Parquet file (columns venue, camera,
/// start, secs, metric, line_or_zone, dir_or_to, value, std).
#[utoipa::path(
    get,
    path = "/api/v1/venues/{venue}/export.parquet",
    tag = "exports",
    params(("venue" = String, Path, description = "Venue id"), ExportParams),
    responses(
        (status = 200, description = "A Parquet file", content_type = "application/vnd.apache.parquet"),
        (status = 400, description = "Bad parameters", body = ErrorBody),
        (status = 404, description = "Unknown venue", body = ErrorBody),
    )
)]
pub(crate) async fn export_parquet(
    State(state): State<AppState>,
    venue: Result<Path<String>, PathRejection>,
    params: Result<Query<ExportParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(venue) = venue?;
    let Query(params) = params?;
    let venue = find_venue(&state.config, &venue)?.id.clone();
    let report_params = ReportParams { from: params.from, to: params.to, ..ReportParams::default() };
    let checked = check_params(&report_params, now_unix(), i64::from(state.config.privacy.interval_secs))?;
    let ReportRange { from, to, .. } = checked.range;
    let v = venue.clone();
    let bytes = state
        .query(move |store| {
            let dir = tempfile::tempdir().map_err(|source| AnalyticsError::Export { source })?;
            let path = dir.path().join("export.parquet");
            store.export_parquet(&v, from, to, &path)?;
            std::fs::read(&path).map_err(|source| AnalyticsError::Export { source })
        })
        .await?;
    Ok(attachment(bytes, "application/vnd.apache.parquet", &format!("{venue}-counts-{from}-{to}.parquet")))
}

use crate::AnalyticsError;

/// A zone's latest occupancy against its capacity.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct LiveZone {
    /// The zone.
    pub zone: String,
    /// Its display name.
    pub name: String,
    /// People allowed at once.
    pub capacity: i64,
    /// Latest released (noised) occupancy, absent when none is recent.
    pub value: Option<i64>,
    /// Its noise standard deviation.
    pub std: Option<f64>,
    /// `value / capacity`.
    pub load: Option<f64>,
    /// Start of the interval the value was released for.
    pub start: Option<i64>,
    /// Whether a capacity alert is raised for the zone.
    pub alert: bool,
}

/// Latest occupancy of every zone of a venue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct LiveBody {
    /// The venue.
    pub venue: String,
    /// When this was read, seconds since the Unix epoch.
    pub at: i64,
    /// Per configured zone, in configuration order.
    pub zones: Vec<LiveZone>,
}

/// Latest occupancy of each zone against its capacity, and which zones are in alert.
#[utoipa::path(
    get,
    path = "/api/v1/venues/{venue}/live",
    tag = "live",
    params(("venue" = String, Path, description = "Venue id")),
    responses((status = 200, body = LiveBody), (status = 404, description = "Unknown venue", body = ErrorBody))
)]
pub(crate) async fn live(
    State(state): State<AppState>,
    venue: Result<Path<String>, PathRejection>,
) -> Result<Json<LiveBody>, ApiError> {
    let Path(venue) = venue?;
    let venue = find_venue(&state.config, &venue)?.clone();
    let now = now_unix();
    Ok(Json(live_body(&state, &venue, now).await?))
}

pub(crate) async fn live_body(state: &AppState, venue: &passage_config::Venue, now: i64) -> Result<LiveBody, ApiError> {
    let since = now - live_window(state.config.privacy.interval_secs);
    let id = venue.id.clone();
    let levels = state.query(move |store| store.latest_zone_levels(&id, since)).await?;
    let raised = state.alerts.raised(&venue.id);
    let zones = venue
        .zones
        .iter()
        .map(|zone| {
            let level = levels.iter().find(|l| l.zone == zone.id.as_str());
            let capacity = i64::from(zone.capacity);
            LiveZone {
                zone: zone.id.to_string(),
                name: zone.name.clone(),
                capacity,
                value: level.map(|l| l.value),
                std: level.map(|l| l.std),
                load: level.map(|l| l.value as f64 / capacity as f64),
                start: level.map(|l| l.start),
                alert: raised.iter().any(|z| z == zone.id.as_str()),
            }
        })
        .collect();
    Ok(LiveBody { venue: venue.id.to_string(), at: now, zones })
}

/// Alert history query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AlertParams {
    /// Oldest transition to list, seconds since the Unix epoch (default: 24 hours ago).
    pub since: Option<i64>,
    /// Most transitions to list, 1 to 10000 (default 100).
    pub limit: Option<usize>,
}

/// Capacity alert transitions of a venue, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct AlertsBody {
    /// The venue.
    pub venue: String,
    /// Zones whose alert is raised now.
    pub raised: Vec<String>,
    /// Transitions, newest first.
    pub alerts: Vec<AlertEntry>,
}

/// Capacity alerts: which are raised now, and the history.
#[utoipa::path(
    get,
    path = "/api/v1/venues/{venue}/alerts",
    tag = "live",
    params(("venue" = String, Path, description = "Venue id"), AlertParams),
    responses(
        (status = 200, body = AlertsBody),
        (status = 400, description = "Bad parameters", body = ErrorBody),
        (status = 404, description = "Unknown venue", body = ErrorBody)
    )
)]
pub(crate) async fn alerts(
    State(state): State<AppState>,
    venue: Result<Path<String>, PathRejection>,
    params: Result<Query<AlertParams>, QueryRejection>,
) -> Result<Json<AlertsBody>, ApiError> {
    let Path(venue) = venue?;
    let Query(params) = params?;
    let venue = find_venue(&state.config, &venue)?.id.clone();
    let limit = check_limit(params.limit, 100)?;
    let since = params.since.unwrap_or_else(|| now_unix() - 86_400);
    let id = venue.clone();
    let alerts = state.query(move |store| store.alerts(&id, since, limit)).await?;
    Ok(Json(AlertsBody { venue: venue.to_string(), raised: state.alerts.raised(&venue), alerts }))
}

/// Retention log query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RetentionParams {
    /// Most entries, 1 to 10000 (default 100).
    pub limit: Option<usize>,
}

/// What the retention sweeper deleted, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct RetentionBody {
    /// Sweep log entries.
    pub sweeps: Vec<SweepEntry>,
}

/// The retention sweeper's log: what was deleted, when, up to which cutoff.
#[utoipa::path(
    get,
    path = "/api/v1/retention",
    tag = "retention",
    params(RetentionParams),
    responses((status = 200, body = RetentionBody), (status = 400, description = "Bad parameters", body = ErrorBody))
)]
pub(crate) async fn retention(
    State(state): State<AppState>,
    params: Result<Query<RetentionParams>, QueryRejection>,
) -> Result<Json<RetentionBody>, ApiError> {
    let Query(params) = params?;
    let limit = check_limit(params.limit, 100)?;
    let sweeps = state.query(move |store| store.sweep_log(limit)).await?;
    Ok(Json(RetentionBody { sweeps }))
}

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Passage analytics",
        description = "Differentially private flow reports for venue managers. Every figure carries the standard deviation of its noise; figures within `flag_k` standard deviations of zero are flagged."
    ),
    paths(occupancy, throughput, flows, peaks, dwell, compare, forecast, export_parquet, live, alerts, retention),
    components(schemas(ErrorBody, ReportKind))
)]
pub(crate) struct ApiDoc;

/// The OpenAPI document of this API.
pub(crate) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
