//! The HTTP side: the JSON API under `/api/v1`, the server-rendered dashboard at `/`, and the
//! HTTPS listener.
//!
//! ```text
//! GET /                                       dashboard (HTML, inline SVG, no JavaScript)
//! GET /api/v1/health                          {"status":"ok"} when the database answers
//! GET /api/v1/summary                         what the database holds + live ingest counters
//! GET /api/v1/venues/{venue}/totals?from=&to=        crossings per line and direction
//! GET /api/v1/venues/{venue}/series?line=&from=&to=  crossings of one line per interval
//! ```
//!
//! `from` (inclusive) and `to` (exclusive) are seconds since the Unix epoch and select the
//! intervals that start in between; `to` defaults to now and `from` to 24 hours before `to`.
//! A range may span at most 31 days. Every error is `{"error": "..."}`; a 5xx body never
//! says anything about the server's internals (those go to the log).

use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use passage_config::{Config, Venue};
use passage_transport::ServerTls;
use passage_wire::{Direction, Id};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{now_unix, AnalyticsError, IngestCounts, IngestStats, LineTotal, Point, Store, Summary};

/// Longest range a query may ask for.
const MAX_RANGE_SECS: i64 = 31 * 86_400;
/// Range when `from` is not given.
const DEFAULT_RANGE_SECS: i64 = 86_400;
/// Longest a request may take before it is answered 503.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long in-flight requests may finish after shutdown is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a new connection may take to send its first request.
const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The window of the dashboard's charts.
const CHART_SECS: i64 = 3600;

/// What the handlers share: the configuration, a database connection for reads, and the
/// ingest counters. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    config: Arc<Config>,
    store: Arc<Mutex<Store>>,
    stats: Arc<IngestStats>,
}

impl AppState {
    /// State over `store` (a connection used only for reads) for the venues of `config`.
    pub fn new(config: Arc<Config>, store: Store, stats: Arc<IngestStats>) -> AppState {
        AppState { config, store: Arc::new(Mutex::new(store)), stats }
    }

    /// Runs `query` on the store on a blocking thread.
    async fn query<T, F>(&self, query: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, AnalyticsError> + Send + 'static,
    {
        let store = self.store.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let store = store.lock().unwrap_or_else(PoisonError::into_inner);
            query(&store)
        })
        .await;
        match answer {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                tracing::error!(%error, "analytics query failed");
                Err(ApiError::Internal)
            }
            Err(error) => {
                tracing::error!(%error, "analytics query worker failed");
                Err(ApiError::Internal)
            }
        }
    }
}

/// Every error the API answers, as `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiError {
    /// 400: the request's parameters are wrong; the text says how.
    BadRequest(String),
    /// 404: no such venue or endpoint.
    NotFound(String),
    /// 503: the request took too long or the database does not answer.
    Unavailable,
    /// 500: something failed inside; the log says what.
    Internal,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, message),
            ApiError::NotFound(message) => (StatusCode::NOT_FOUND, message),
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "service unavailable".to_owned()),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal error".to_owned()),
        };
        (status, Json(ErrorBody { error: message })).into_response()
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        ApiError::BadRequest(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> ApiError {
        ApiError::BadRequest(rejection.body_text())
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

/// The router: API, dashboard, a JSON 404 for anything else, and a request timeout.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/api/v1/health", get(health))
        .route("/api/v1/summary", get(summary))
        .route("/api/v1/venues/{venue}/totals", get(totals))
        .route("/api/v1/venues/{venue}/series", get(series))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .layer(middleware::from_fn(request_timeout))
        .with_state(state)
}

/// Answers 503 when a request takes longer than [`REQUEST_TIMEOUT`].
async fn request_timeout(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(timeout_s = REQUEST_TIMEOUT.as_secs(), "request timed out");
            ApiError::Unavailable.into_response()
        }
    }
}

/// Binds `listen` (port 0 picks a free port) and serves [`app`] on it, over HTTPS when `tls`
/// is given. The server runs on `tracker` until `cancel` fires, then lets in-flight requests
/// finish for a few seconds. Returns the bound address.
pub async fn serve(
    listen: SocketAddr,
    tls: Option<ServerTls>,
    state: AppState,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Result<SocketAddr, AnalyticsError> {
    let bind_error = |source| AnalyticsError::Bind { addr: listen, source };
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    let listener = listener.into_std().map_err(bind_error)?;
    let handle = axum_server::Handle::new();
    let service = app(state).into_make_service();
    let https = tls.is_some();
    let mut serving: Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> = match tls {
        Some(tls) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_config(tls.config);
            let server = axum_server::tls_rustls::from_tcp_rustls(listener, config).map_err(bind_error)?;
            Box::pin(server.handle(handle.clone()).first_request_timeout(FIRST_REQUEST_TIMEOUT).serve(service))
        }
        None => {
            let server = axum_server::from_tcp(listener).map_err(bind_error)?;
            Box::pin(server.handle(handle.clone()).first_request_timeout(FIRST_REQUEST_TIMEOUT).serve(service))
        }
    };
    tracker.spawn(async move {
        let result = tokio::select! {
            result = &mut serving => result,
            () = cancel.cancelled() => {
                handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
                serving.await
            }
        };
        match result {
            Ok(()) => tracing::info!(%addr, "analytics listener stopped"),
            Err(error) => tracing::error!(%addr, %error, "analytics listener failed"),
        }
    });
    tracing::info!(%addr, https, "analytics listening");
    Ok(addr)
}

// ---------------------------------------------------------------------------------------------
// JSON API.

#[derive(Serialize)]
struct Health {
    status: &'static str,
}

async fn health(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    match state.query(|store| store.ping()).await {
        Ok(()) => Ok(Json(Health { status: "ok" })),
        Err(_) => Err(ApiError::Unavailable),
    }
}

#[derive(Serialize)]
struct SummaryBody {
    #[serde(flatten)]
    store: Summary,
    ingest: IngestCounts,
}

async fn summary(State(state): State<AppState>) -> Result<Json<SummaryBody>, ApiError> {
    let store = state.query(|store| store.summary()).await?;
    Ok(Json(SummaryBody { store, ingest: state.stats.snapshot() }))
}

#[derive(Deserialize)]
struct RangeParams {
    from: Option<i64>,
    to: Option<i64>,
}

#[derive(Deserialize)]
struct SeriesParams {
    line: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
}

#[derive(Serialize)]
struct TotalsBody {
    venue: Id,
    from: i64,
    to: i64,
    lines: Vec<LineTotal>,
}

#[derive(Serialize)]
struct SeriesBody {
    venue: Id,
    line: Id,
    from: i64,
    to: i64,
    points: Vec<Point>,
}

/// The configured venue named `name`, or 404.
fn find_venue<'a>(config: &'a Config, name: &str) -> Result<&'a Venue, ApiError> {
    Id::new(name).ok().and_then(|id| config.venue(&id)).ok_or_else(|| ApiError::NotFound("unknown venue".into()))
}

/// `[from, to)` from the optional parameters, checked.
fn resolve_range(from: Option<i64>, to: Option<i64>, now: i64) -> Result<(i64, i64), ApiError> {
    let to = to.unwrap_or(now);
    let from = from.unwrap_or_else(|| to.saturating_sub(DEFAULT_RANGE_SECS));
    if from > to {
        return Err(ApiError::BadRequest("`from` is after `to`".into()));
    }
    if i128::from(to) - i128::from(from) > i128::from(MAX_RANGE_SECS) {
        return Err(ApiError::BadRequest("the range is longer than 31 days".into()));
    }
    Ok((from, to))
}

async fn totals(
    State(state): State<AppState>,
    venue: Result<Path<String>, PathRejection>,
    params: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Json<TotalsBody>, ApiError> {
    let Path(venue) = venue?;
    let Query(params) = params?;
    let venue = find_venue(&state.config, &venue)?.id.clone();
    let (from, to) = resolve_range(params.from, params.to, now_unix())?;
    let id = venue.clone();
    let lines = state.query(move |store| store.totals(&id, from, to)).await?;
    Ok(Json(TotalsBody { venue, from, to, lines }))
}

async fn series(
    State(state): State<AppState>,
    venue: Result<Path<String>, PathRejection>,
    params: Result<Query<SeriesParams>, QueryRejection>,
) -> Result<Json<SeriesBody>, ApiError> {
    let Path(venue) = venue?;
    let Query(params) = params?;
    let venue = find_venue(&state.config, &venue)?;
    let Some(line) = params.line else {
        return Err(ApiError::BadRequest("the `line` parameter is required".into()));
    };
    let Some(line) = venue.lines.iter().find(|l| l.id.as_str() == line) else {
        return Err(ApiError::BadRequest("unknown line for this venue".into()));
    };
    let (from, to) = resolve_range(params.from, params.to, now_unix())?;
    let (venue, line) = (venue.id.clone(), line.id.clone());
    let (v, l) = (venue.clone(), line.clone());
    let points = state.query(move |store| store.series(&v, &l, from, to)).await?;
    Ok(Json(SeriesBody { venue, line, from, to, points }))
}

// ---------------------------------------------------------------------------------------------
// Dashboard.

/// What the dashboard shows of one venue.
struct VenueView {
    totals: Vec<LineTotal>,
    /// Per configured line, in configuration order.
    series: Vec<Vec<Point>>,
}

async fn dashboard(State(state): State<AppState>) -> Result<Response, ApiError> {
    let page = dashboard_page(&state, now_unix()).await?;
    let mut response = Html(page).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    Ok(response)
}

/// The dashboard as it is at `now`: today's totals (UTC day) and the last hour's intervals.
async fn dashboard_page(state: &AppState, now: i64) -> Result<String, ApiError> {
    let day_start = now - now.rem_euclid(86_400);
    let config = state.config.clone();
    let views = state
        .query(move |store| {
            config
                .venues
                .iter()
                .map(|venue| {
                    let totals = store.totals(&venue.id, day_start, day_start + 86_400)?;
                    let series = venue
                        .lines
                        .iter()
                        .map(|line| store.series(&venue.id, &line.id, now - CHART_SECS, now + 1))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok::<_, AnalyticsError>(VenueView { totals, series })
                })
                .collect::<Result<Vec<_>, AnalyticsError>>()
        })
        .await?;
    Ok(render_dashboard(&state.config, &views, state.stats.snapshot(), now))
}

/// `text` with the five HTML-special characters replaced by entities, safe in element content
/// and in quoted attribute values.
pub(crate) fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// `HH:MM` (UTC) of a Unix time.
fn clock(unix: i64) -> String {
    let of_day = unix.rem_euclid(86_400);
    format!("{:02}:{:02}", of_day / 3600, of_day % 3600 / 60)
}

/// A noised value with its noise, as table cell content; flagged when it is within
/// `flag_multiple` standard deviations of zero (it may be mostly noise).
fn cell(total: Option<&LineTotal>, flag_multiple: f64) -> String {
    match total {
        None => "<td class=\"none\">no data</td>".to_owned(),
        Some(total) => {
            let small = (total.value as f64).abs() < flag_multiple * total.std;
            let (class, note) =
                if small { (" class=\"small\"", " title=\"within the noise: read with care\"") } else { ("", "") };
            format!("<td{class}{note}>{} &plusmn; {:.1}</td>", total.value, total.std)
        }
    }
}

fn render_dashboard(config: &Config, views: &[VenueView], ingest: IngestCounts, now: i64) -> String {
    let mut page = String::with_capacity(16 * 1024);
    let title = escape_html(&config.deployment.name);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"10\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Passage analytics &mdash; {title}</title><style>{STYLE}</style></head><body>\
         <h1>Passage analytics</h1><p class=\"meta\">{title} &middot; updated {} UTC &middot; \
         every figure is differentially private; &plusmn; is the standard deviation of its noise</p>",
        clock(now),
    );
    let flag_multiple = config.privacy.flag_below_std_multiple;
    for (venue, view) in config.venues.iter().zip(views) {
        let _ = write!(
            page,
            "<section><h2>{} <small>{}</small></h2><h3>Crossings today (UTC)</h3>\
             <table><thead><tr><th>Line</th><th>In</th><th>Out</th></tr></thead><tbody>",
            escape_html(&venue.name),
            escape_html(venue.id.as_str()),
        );
        let find = |line: &Id, dir: Direction| view.totals.iter().find(|t| &t.line == line && t.dir == dir);
        let mut rows: Vec<(String, &Id)> = venue.lines.iter().map(|line| (line.name.clone(), &line.id)).collect();
        // Lines with data but no longer configured are shown under their id.
        for total in &view.totals {
            if !rows.iter().any(|(_, id)| *id == &total.line) {
                rows.push((total.line.to_string(), &total.line));
            }
        }
        for (name, line) in &rows {
            let _ = write!(
                page,
                "<tr><th scope=\"row\">{}</th>{}{}</tr>",
                escape_html(name),
                cell(find(line, Direction::In), flag_multiple),
                cell(find(line, Direction::Out), flag_multiple),
            );
        }
        if rows.is_empty() {
            page.push_str("<tr><td colspan=\"3\" class=\"none\">no counting lines configured</td></tr>");
        }
        page.push_str("</tbody></table>");
        if !venue.lines.is_empty() {
            page.push_str(
                "<h3>Crossings per interval, last hour \
                 <span class=\"key in\">in</span> <span class=\"key out\">out</span></h3>",
            );
        }
        for (line, points) in venue.lines.iter().zip(&view.series) {
            let _ = write!(
                page,
                "<figure><figcaption>{}</figcaption>{}</figure>",
                escape_html(&line.name),
                render_chart(&line.name, points, now - CHART_SECS, now),
            );
        }
        page.push_str("</section>");
    }
    let _ = writeln!(
        page,
        "<footer>ingest: {} received &middot; {} stored &middot; {} duplicates &middot; \
         {} quarantined &middot; {} failed</footer></body></html>",
        ingest.received, ingest.inserted, ingest.duplicates, ingest.quarantined, ingest.failed,
    );
    page
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222;max-width:60rem}\
h1{margin:0 0 .2rem}.meta{color:#666;margin-top:0}section{margin:1.5rem 0}\
h2 small{color:#888;font-weight:normal;font-size:.7em}\
table{border-collapse:collapse}th,td{padding:.25rem .8rem;border-bottom:1px solid #ddd;text-align:right}\
th[scope=row],thead th:first-child{text-align:left}td.none{color:#999}td.small{color:#a60}\
figure{margin:.5rem 0}figcaption{font-weight:600}.key{padding:0 .4rem;font-size:.8em}\
.key.in,rect.in{background:#2a7;fill:#2a7}.key.out,rect.out{background:#c54;fill:#c54}\
.key{color:#fff}svg text{font-size:11px;fill:#555}footer{color:#888;font-size:.85em}";

/// An SVG bar chart of `points` over `[from, to]`: per interval an "in" and an "out" bar,
/// each with a tooltip giving the value and its noise.
fn render_chart(line_name: &str, points: &[Point], from: i64, to: i64) -> String {
    const WIDTH: f64 = 640.0;
    const HEIGHT: f64 = 170.0;
    const LEFT: f64 = 44.0;
    const RIGHT: f64 = 8.0;
    const TOP: f64 = 8.0;
    const BOTTOM: f64 = 20.0;
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let span = (to - from).max(1) as f64;

    let values = points.iter().flat_map(|p| [p.in_value, p.out_value]).flatten();
    let high = values.clone().max().unwrap_or(0).max(1) as f64;
    let low = values.min().unwrap_or(0).min(0) as f64;
    let y = |v: f64| TOP + (high - v) / (high - low) * plot_height;
    let x = |t: i64| LEFT + ((t - from) as f64 / span * plot_width).clamp(0.0, plot_width);

    let mut svg = String::with_capacity(256 + points.len() * 160);
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\">",
        escape_html(&format!("Crossings per interval at {line_name}, last hour")),
    );
    let zero = y(0.0);
    let _ = write!(
        svg,
        "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{zero:.1}\" y2=\"{zero:.1}\" stroke=\"#999\"/>\
         <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{high}</text>\
         <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">0</text>",
        LEFT + plot_width,
        LEFT - 4.0,
        y(high) + 4.0,
        LEFT - 4.0,
        zero + 4.0,
    );
    if low < 0.0 {
        let _ = write!(svg, "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{low}</text>", LEFT - 4.0, y(low),);
    }
    for (t, anchor) in [(from, "start"), (from + (to - from) / 2, "middle"), (to, "end")] {
        let _ =
            write!(svg, "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text>", x(t), HEIGHT - 4.0, clock(t),);
    }
    if points.is_empty() {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">no data in the last hour</text>",
            LEFT + plot_width / 2.0,
            TOP + plot_height / 2.0,
        );
    }
    for point in points {
        let left = x(point.start);
        let right = x(point.start.saturating_add(i64::from(point.secs)));
        let bar = ((right - left) / 2.0 - 0.5).max(0.5);
        let bars = [("in", point.in_value, point.in_std, left), ("out", point.out_value, point.out_std, left + bar)];
        for (class, value, std, bar_x) in bars {
            let Some(value) = value else { continue };
            let top = y((value as f64).max(0.0));
            let bottom = y((value as f64).min(0.0));
            let _ = write!(
                svg,
                "<rect class=\"{class}\" x=\"{bar_x:.1}\" y=\"{top:.1}\" width=\"{bar:.1}\" \
                 height=\"{:.1}\"><title>{} {class} {value} &#177; {:.1}</title></rect>",
                (bottom - top).max(0.0),
                clock(point.start),
                std.unwrap_or(0.0),
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{crossing, record};
    use axum::body::{to_bytes, Body};
    use axum::http::Request as HttpRequest;
    use tower::ServiceExt;

    struct Fixture {
        _dir: tempfile::TempDir,
        state: AppState,
        now: i64,
    }

    /// A store holding two intervals of the demo arena's north gate, ending a few minutes
    /// before now.
    fn fixture() -> Fixture {
        fixture_at(now_unix())
    }

    /// The same, ending a few minutes before `now`.
    fn fixture_at(now: i64) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = Store::open(&dir.path().join("a.duckdb")).expect("open");
        let start = now - now.rem_euclid(60) - 180;
        store
            .insert_batch(&[
                record(
                    "a",
                    "arena",
                    "cam-north",
                    start,
                    vec![
                        crossing("north-gate", Direction::In, 30, 3.0),
                        crossing("north-gate", Direction::Out, 4, 3.0),
                    ],
                ),
                record("b", "arena", "cam-north", start + 60, vec![crossing("north-gate", Direction::In, 12, 4.0)]),
            ])
            .expect("insert");
        let state = AppState::new(Arc::new(Config::default()), store, Arc::new(IngestStats::default()));
        Fixture { _dir: dir, state, now }
    }

    async fn get(state: &AppState, uri: &str) -> (StatusCode, String, Option<String>) {
        let response = app(state.clone())
            .oneshot(HttpRequest::get(uri).body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = response.status();
        let content_type =
            response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = to_bytes(response.into_body(), 1 << 20).await.expect("body");
        (status, String::from_utf8(body.to_vec()).expect("utf-8"), content_type)
    }

    async fn get_json(state: &AppState, uri: &str) -> (StatusCode, serde_json::Value) {
        let (status, body, content_type) = get(state, uri).await;
        assert_eq!(content_type.as_deref(), Some("application/json"), "{uri}: {body}");
        (status, serde_json::from_str(&body).expect("json"))
    }

    #[tokio::test]
    async fn health_and_summary_answer() {
        let f = fixture();
        let (status, body) = get_json(&f.state, "/api/v1/health").await;
        assert_eq!((status, body), (StatusCode::OK, serde_json::json!({"status": "ok"})));
        let (status, body) = get_json(&f.state, "/api/v1/summary").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["records"], 2);
        assert_eq!(body["items"], 3);
        assert_eq!(body["schema_version"], 1);
        assert_eq!(body["venues"][0]["venue"], "arena");
        assert_eq!(body["ingest"]["received"], 0);
    }

    #[tokio::test]
    async fn totals_sum_the_range() {
        let f = fixture();
        let uri = format!("/api/v1/venues/arena/totals?from={}&to={}", f.now - 3600, f.now + 1);
        let (status, body) = get_json(&f.state, &uri).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["venue"], "arena");
        let lines = body["lines"].as_array().expect("lines");
        assert_eq!(lines.len(), 2, "{body}");
        assert_eq!(
            (&lines[0]["line"], &lines[0]["dir"], &lines[0]["value"]),
            (&"north-gate".into(), &"in".into(), &42.into())
        );
        assert!((lines[0]["std"].as_f64().expect("std") - 5.0).abs() < 1e-9);
        assert_eq!((&lines[1]["dir"], &lines[1]["value"]), (&"out".into(), &4.into()));
        // Default range: the last 24 hours.
        let (status, body) = get_json(&f.state, "/api/v1/venues/arena/totals").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["lines"][0]["value"], 42);
    }

    #[tokio::test]
    async fn series_has_one_point_per_interval() {
        let f = fixture();
        let uri = format!("/api/v1/venues/arena/series?line=north-gate&from={}&to={}", f.now - 3600, f.now + 1);
        let (status, body) = get_json(&f.state, &uri).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let points = body["points"].as_array().expect("points");
        assert_eq!(points.len(), 2);
        assert_eq!((&points[0]["in_value"], &points[0]["out_value"]), (&30.into(), &4.into()));
        assert_eq!((&points[1]["in_value"], &points[1]["out_value"]), (&12.into(), &serde_json::Value::Null));
    }

    #[tokio::test]
    async fn bad_requests_are_400_and_unknown_venues_404() {
        let f = fixture();
        let cases = [
            ("/api/v1/venues/arena/totals?from=200&to=100", StatusCode::BAD_REQUEST, "`from` is after `to`"),
            (
                "/api/v1/venues/arena/totals?from=0&to=2678401",
                StatusCode::BAD_REQUEST,
                "the range is longer than 31 days",
            ),
            ("/api/v1/venues/arena/series?line=nowhere", StatusCode::BAD_REQUEST, "unknown line for this venue"),
            ("/api/v1/venues/arena/series", StatusCode::BAD_REQUEST, "the `line` parameter is required"),
            ("/api/v1/venues/mall/totals", StatusCode::NOT_FOUND, "unknown venue"),
            ("/api/v1/venues/Not%20An%20Id/series?line=north-gate", StatusCode::NOT_FOUND, "unknown venue"),
            ("/api/v1/nothing-here", StatusCode::NOT_FOUND, "no such endpoint"),
        ];
        for (uri, expected_status, expected_error) in cases {
            let (status, body) = get_json(&f.state, uri).await;
            assert_eq!((status, body["error"].as_str()), (expected_status, Some(expected_error)), "{uri}");
        }
        // Extreme values must not overflow the range arithmetic.
        let uri = format!("/api/v1/venues/arena/totals?from={}&to={}", i64::MIN, i64::MAX);
        let (status, _) = get_json(&f.state, &uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // A parameter that is not a number gets the same JSON error shape.
        let (status, body) = get_json(&f.state, "/api/v1/venues/arena/totals?from=yesterday").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
    }

    #[tokio::test]
    async fn internal_errors_say_nothing_internal() {
        let response = ApiError::Internal.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = to_bytes(response.into_body(), 1024).await.expect("body");
        assert_eq!(&body[..], br#"{"error":"internal error"}"#);

        // A database that lost its tables: the handler fails inside, the body stays generic.
        let f = fixture();
        f.state.query(|store| store.drop_items_for_test()).await.expect("drop");
        let (status, body) = get_json(&f.state, "/api/v1/venues/arena/totals").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, serde_json::json!({"error": "internal error"}));
    }

    #[tokio::test]
    async fn the_dashboard_shows_totals_and_charts() {
        let f = fixture();
        let (status, page, content_type) = get(&f.state, "/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type.as_deref(), Some("text/html; charset=utf-8"));
        assert!(page.contains("<h2>Demo Arena <small>arena</small></h2>"), "{page}");

        // At a fixed time of day (22:13 UTC), so that "today" and "the last hour" are known.
        let f = fixture_at(1_700_000_000);
        let page = dashboard_page(&f.state, f.now).await.expect("page");
        assert!(page.contains("<h2>Demo Arena <small>arena</small></h2>"), "{page}");
        assert!(
            page.contains("<tr><th scope=\"row\">North entrance</th><td>42 &plusmn; 5.0</td><td class=\"small\""),
            "{page}"
        );
        assert!(page.contains("<th scope=\"row\">East entrance</th><td class=\"none\">no data</td>"));
        // One chart per line; the north gate has three bars, the east gate none.
        assert_eq!(page.matches("<svg ").count(), 2);
        assert_eq!(page.matches("<rect class=\"in\"").count(), 2);
        assert_eq!(page.matches("<rect class=\"out\"").count(), 1);
        assert!(page.contains("no data in the last hour"));
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"10\">"));
        assert!(!page.contains("<script"), "the dashboard must not need JavaScript");
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        let mut config = Config::default();
        config.deployment.name = "<b>Deploy</b>".into();
        config.venues[0].name = "<script>alert(1)</script>".into();
        config.venues[0].lines[0].name = "\"><img src=x onerror=alert(1)>".into();
        let views = vec![VenueView { totals: vec![], series: vec![vec![], vec![]] }];
        let page = render_dashboard(&config, &views, IngestCounts::default(), 1_700_000_000);
        assert!(!page.contains("<script>alert(1)"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<b>Deploy"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
    }

    #[test]
    fn charts_scale_to_the_data_and_show_negative_noise() {
        let points = vec![Point {
            start: 0,
            secs: 60,
            in_value: Some(10),
            in_std: Some(1.0),
            out_value: Some(-2),
            out_std: Some(1.0),
        }];
        let svg = render_chart("l", &points, 0, 3600);
        assert!(svg.contains(">10</text>"), "{svg}");
        assert!(svg.contains(">-2</text>"), "{svg}");
        assert!(svg.contains("<title>00:00 in 10 &#177; 1.0</title>"), "{svg}");
        assert!(svg.contains("<title>00:00 out -2 &#177; 1.0</title>"), "{svg}");
    }

    #[test]
    fn ranges_default_and_are_checked() {
        assert_eq!(resolve_range(None, None, 100_000), Ok((100_000 - 86_400, 100_000)));
        assert_eq!(resolve_range(Some(5), Some(5), 0), Ok((5, 5)));
        assert_eq!(resolve_range(Some(0), Some(MAX_RANGE_SECS), 0), Ok((0, MAX_RANGE_SECS)));
        assert!(resolve_range(Some(0), Some(MAX_RANGE_SECS + 1), 0).is_err());
        assert!(resolve_range(Some(10), None, 5).is_err());
        assert_eq!(resolve_range(None, Some(i64::MIN), 0), Ok((i64::MIN, i64::MIN)));
    }

    /// The real listener, over HTTPS with the self-signed certificate, on loopback; and it
    /// stops when cancelled.
    #[tokio::test]
    async fn serves_https_and_shuts_down() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, ServerName};
        use std::io::{Read, Write};

        let f = fixture();
        let tls = ServerTls::self_signed().expect("tls");
        let cert = CertificateDer::from_pem_slice(tls.cert_pem.as_bytes()).expect("pem");
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let addr = serve(listen, Some(tls), f.state.clone(), cancel.clone(), &tracker).await.expect("serve");
        assert_ne!(addr.port(), 0);

        let response = tokio::task::spawn_blocking(move || {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(cert).expect("root");
            let config =
                rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .expect("versions")
                    .with_root_certificates(roots)
                    .with_no_client_auth();
            let name = ServerName::try_from("localhost").expect("name");
            let connection = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
            let socket = std::net::TcpStream::connect(addr).expect("connect");
            socket.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            let mut stream = rustls::StreamOwned::new(connection, socket);
            stream
                .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .expect("write");
            let mut response = Vec::new();
            // A peer that closes without close_notify is an error here; what was read stays.
            let _ = stream.read_to_end(&mut response);
            String::from_utf8_lossy(&response).into_owned()
        })
        .await
        .expect("client thread");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with(r#"{"status":"ok"}"#), "{response}");

        cancel.cancel();
        tracker.close();
        tokio::time::timeout(Duration::from_secs(10), tracker.wait()).await.expect("listener stops on cancel");
        assert!(std::net::TcpStream::connect(addr).is_err(), "still listening after shutdown");
    }

    #[tokio::test]
    async fn serves_plain_http_when_no_tls_is_given() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let f = fixture();
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let addr = serve("127.0.0.1:0".parse().expect("addr"), None, f.state.clone(), cancel.clone(), &tracker)
            .await
            .expect("serve");
        let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
        socket
            .write_all(b"GET /api/v1/venues/nowhere/totals HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut response = String::new();
        socket.read_to_string(&mut response).await.expect("read");
        assert!(response.starts_with("HTTP/1.1 404"), "{response}");
        assert!(response.ends_with(r#"{"error":"unknown venue"}"#), "{response}");
        cancel.cancel();
        tracker.close();
        tracker.wait().await;

        // Binding an address in use is a clear error.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let taken_addr = taken.local_addr().expect("addr");
        let error = serve(taken_addr, None, f.state.clone(), CancellationToken::new(), &TaskTracker::new())
            .await
            .expect_err("address in use");
        assert!(matches!(error, AnalyticsError::Bind { .. }), "{error}");
    }
}
