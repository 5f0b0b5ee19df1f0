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
use std::net::SocketAddr;
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
use passage_policy::audit::AuditLog;
use passage_transport::ServerTls;
use passage_wire::Id;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alerts::AlertBoard;
use crate::{now_unix, AnalyticsError, IngestCounts, IngestStats, LineTotal, Point, Store, Summary};

pub mod auth;
pub(crate) mod dashboard;
pub(crate) mod dpo;
pub(crate) mod reports;

/// Longest range a query may ask for.
const MAX_RANGE_SECS: i64 = 31 * 86_400;
/// Range when `from` is not given.
const DEFAULT_RANGE_SECS: i64 = 86_400;
/// Longest a request may take before it is answered 503.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// What the handlers share: the configuration, a database connection for reads, and the
/// ingest counters. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    config: Arc<Config>,
    store: Arc<Mutex<Store>>,
    stats: Arc<IngestStats>,
    alerts: Arc<AlertBoard>,
    /// The DPIA artifacts of `config`, generated once at start.
    dpia: Arc<passage_dpia::Artifacts>,
    /// Hex SHA-256 of `dpia.cnil.json` (named by every sign-off).
    dpia_digest: Arc<str>,
    /// The audit log the DPO page verifies and sign-offs are appended to.
    audit: Option<Arc<AuditLog>>,
    /// Staff accounts; `None` leaves the service open (the demo).
    auth: Option<Arc<auth::Auth>>,
}

impl AppState {
    /// State over `store` (a connection used only for reads) for the venues of `config`.
    pub fn new(config: Arc<Config>, store: Store, stats: Arc<IngestStats>) -> AppState {
        let dpia = passage_dpia::generate(&config);
        let digest = dpia.get("dpia.cnil.json").map(|f| sha256_hex(f.text.as_bytes())).unwrap_or_default();
        AppState {
            config,
            store: Arc::new(Mutex::new(store)),
            stats,
            alerts: Arc::default(),
            dpia: Arc::new(dpia),
            dpia_digest: digest.into(),
            audit: None,
            auth: None,
        }
    }

    /// The same state, requiring a login from the accounts in `auth`.
    pub fn with_auth(mut self, auth: Option<Arc<auth::Auth>>) -> AppState {
        self.auth = auth;
        self
    }

    /// The same state, with the audit log the DPO page verifies and appends sign-offs to.
    pub fn with_audit(mut self, audit: Option<Arc<AuditLog>>) -> AppState {
        self.audit = audit;
        self
    }

    /// The same state, showing the alert task's `board`.
    pub fn with_alerts(mut self, board: Arc<AlertBoard>) -> AppState {
        self.alerts = board;
        self
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

/// Every error answer.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    /// What was wrong.
    error: String,
}

/// The router: API, dashboard, a JSON 404 for anything else, and a request timeout.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", axum::routing::post(auth::logout))
        .route("/api/v1/health", get(health))
        .route("/api/v1/summary", get(summary))
        .route("/api/v1/venues/{venue}/totals", get(totals))
        .route("/api/v1/venues/{venue}/series", get(series))
        .route("/api/v1/venues/{venue}/reports/occupancy", get(reports::occupancy))
        .route("/api/v1/venues/{venue}/reports/throughput", get(reports::throughput))
        .route("/api/v1/venues/{venue}/reports/flows", get(reports::flows))
        .route("/api/v1/venues/{venue}/reports/peaks", get(reports::peaks))
        .route("/api/v1/venues/{venue}/reports/dwell", get(reports::dwell))
        .route("/api/v1/venues/{venue}/reports/compare", get(reports::compare))
        .route("/api/v1/venues/{venue}/reports/forecast", get(reports::forecast))
        .route("/api/v1/venues/{venue}/export.parquet", get(reports::export_parquet))
        .route("/api/v1/venues/{venue}/live", get(reports::live))
        .route("/api/v1/venues/{venue}/alerts", get(reports::alerts))
        .route("/api/v1/retention", get(reports::retention))
        .route("/api/v1/openapi.json", get(reports::openapi))
        .route("/venues/{venue}", get(dashboard::venue_page))
        .route("/dpo", get(dpo::page))
        .route("/dpo/files/{name}", get(dpo::file))
        .route("/dpo/signoff", axum::routing::post(dpo::sign_off))
        .route("/assets/dashboard.js", get(dashboard::script))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .layer(middleware::from_fn_with_state(state.clone(), auth::require))
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
    passage_transport::https::serve("analytics", listen, tls, app(state), cancel, tracker)
        .await
        .map_err(|source| AnalyticsError::Bind { addr: listen, source })
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
    if from < 0 || to > now.saturating_add(366 * 86_400) {
        return Err(ApiError::BadRequest("the range must lie between 1970 and a year from now".into()));
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
// Index page.

async fn dashboard(
    State(state): State<AppState>,
    principal: Option<axum::Extension<Arc<passage_policy::accounts::Principal>>>,
) -> Result<Response, ApiError> {
    // The index only needs the database to answer; each venue has its own page.
    state.query(|store| store.ping()).await?;
    let principal = principal.map(|axum::Extension(p)| p);
    let page = render_index(&state.config, state.stats.snapshot(), now_unix(), principal.as_deref());
    Ok(html_page(StatusCode::OK, page, "default-src 'none'; style-src 'unsafe-inline'"))
}

/// An HTML page that is never cached or framed, under the content security policy `csp`.
pub(crate) fn html_page(status: StatusCode, body: String, csp: &'static str) -> Response {
    let mut response = (status, Html(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
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

/// The index: one link per venue dashboard, and the ingest counters.
fn render_index(
    config: &Config,
    ingest: IngestCounts,
    now: i64,
    principal: Option<&passage_policy::accounts::Principal>,
) -> String {
    let mut page = String::with_capacity(2048);
    let title = escape_html(&config.deployment.name);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Passage analytics — {title}</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:1.5rem;max-width:50rem}}li{{margin:.4rem 0}}\
         footer{{color:#666;font-size:.85em}}</style></head><body>\
         <h1>Passage analytics</h1><p>{title} · {} venues · <a href=\"/api/v1/openapi.json\">API</a></p><ul>",
        config.venues.len(),
    );
    for venue in config.venues.iter().filter(|v| auth::may_see(principal, &v.id)) {
        let _ = write!(
            page,
            "<li><a href=\"/venues/{}\">{}</a> ({} zones, {} lines)</li>",
            escape_html(venue.id.as_str()),
            escape_html(&venue.name),
            venue.zones.len(),
            venue.lines.len(),
        );
    }
    let _ = writeln!(
        page,
        "</ul><footer>at {now}: ingest {} received · {} stored · {} duplicates · {} quarantined · {} failed</footer></body></html>",
        ingest.received, ingest.inserted, ingest.duplicates, ingest.quarantined, ingest.failed,
    );
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{crossing, record};
    use crate::SCHEMA_VERSION;
    use axum::body::{to_bytes, Body};
    use axum::http::Request as HttpRequest;
    use passage_wire::Direction;
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
        assert_eq!(body["schema_version"], SCHEMA_VERSION);
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
    async fn the_venue_page_shows_every_chart_with_its_data() {
        let f = fixture();
        let uri = format!("/venues/arena?from={}&to={}", f.now - 3600, f.now + 60);
        let (status, page, _) = get(&f.state, &uri).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for chart in ["zone-occupancy", "occupancy-series", "gate-throughput", "flows"] {
            assert!(page.contains(&format!("data-chart=\"{chart}\"")), "{chart} missing");
        }
        // The north gate's intervals are in the throughput chart and the occupancy series.
        assert!(page.contains("data-chart=\"gate-throughput\" data-points=\"2\""), "{page}");
        assert!(page.contains("data-chart=\"occupancy-series\" data-points=\"2\""), "{page}");
        assert!(page.contains("<form id=\"range\""));
        assert!(page.contains("data-export=\"csv\"") && page.contains("data-export=\"parquet\""));
        let (status, _, _) = get(&f.state, "/venues/arena?range=fortnight").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _, _) = get(&f.state, "/venues/nowhere").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_index_links_every_venue_and_escapes_names() {
        let mut config = Config::default();
        config.deployment.name = "<b>Deploy</b>".into();
        config.venues[0].name = "<script>alert(1)</script>".into();
        let page = render_index(&config, IngestCounts::default(), 1_700_000_000, None);
        assert!(page.contains("<a href=\"/venues/arena\">&lt;script&gt;alert(1)&lt;/script&gt;</a>"), "{page}");
        assert!(!page.contains("<b>Deploy"), "{page}");
        assert_eq!(
            escape_html(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[tokio::test]
    async fn reports_answer_json_csv_and_pages() {
        let f = fixture();
        let range = format!("from={}&to={}&bucket=60", f.now - 3600, f.now + 60);
        let (status, body) = get_json(&f.state, &format!("/api/v1/venues/arena/reports/throughput?{range}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["total_rows"], 2);
        assert_eq!(body["rows"][0]["line"], "north-gate");
        let (status, body) =
            get_json(&f.state, &format!("/api/v1/venues/arena/reports/throughput?{range}&limit=1&offset=1")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["rows"].as_array().map(Vec::len), Some(1));
        assert_eq!(body["next_offset"], serde_json::Value::Null);
        let (status, body) =
            get_json(&f.state, &format!("/api/v1/venues/arena/reports/throughput?{range}&limit=1")).await;
        assert_eq!((status, body["next_offset"].as_u64()), (StatusCode::OK, Some(1)));
        let (status, csv, content_type) =
            get(&f.state, &format!("/api/v1/venues/arena/reports/throughput?{range}&format=csv")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type.as_deref(), Some("text/csv; charset=utf-8"));
        assert!(
            csv.starts_with("start,line,entries,entries_std,entries_flagged,exits,exits_std,exits_flagged\n"),
            "{csv}"
        );
        assert_eq!(csv.lines().count(), 3);
        for report in ["occupancy", "flows", "peaks", "dwell", "compare", "forecast"] {
            let (status, body) = get_json(&f.state, &format!("/api/v1/venues/arena/reports/{report}?{range}")).await;
            assert_eq!(status, StatusCode::OK, "{report}: {body}");
            assert_eq!(body["report"], report);
        }
    }

    #[tokio::test]
    async fn report_parameters_are_checked_with_clear_errors() {
        let f = fixture();
        for (query, needle) in [
            ("bucket=7", "`bucket` must be one of"),
            ("limit=0", "`limit` must be between"),
            ("format=xml", "`format` must be"),
            ("from=10&to=5", "`from` must be before `to`"),
            ("from=0&to=40000000", "longer than 400 days"),
            ("from=abc", "Failed to deserialize"),
        ] {
            let (status, body) = get_json(&f.state, &format!("/api/v1/venues/arena/reports/occupancy?{query}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
            assert!(body["error"].as_str().is_some_and(|e| e.contains(needle)), "{query}: {body}");
        }
        let (status, _) = get_json(&f.state, "/api/v1/venues/nowhere/reports/occupancy").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn the_parquet_export_and_the_openapi_document_are_served() {
        let f = fixture();
        let uri = format!("/api/v1/venues/arena/export.parquet?from={}&to={}", f.now - 3600, f.now + 60);
        let response = app(f.state.clone())
            .oneshot(HttpRequest::get(uri.as_str()).body(Body::empty()).expect("request"))
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        let body = to_bytes(response.into_body(), 1 << 20).await.expect("body");
        assert!(body.starts_with(b"PAR1"), "not Parquet");
        let (status, doc) = get_json(&f.state, "/api/v1/openapi.json").await;
        assert_eq!(status, StatusCode::OK);
        for path in
            ["/api/v1/venues/{venue}/reports/occupancy", "/api/v1/venues/{venue}/export.parquet", "/api/v1/retention"]
        {
            assert!(doc["paths"][path]["get"].is_object(), "{path} not documented");
        }
        assert!(doc["components"]["schemas"]["OccupancyRow"].is_object(), "{doc}");
    }

    #[test]
    fn ranges_default_and_are_checked() {
        assert_eq!(resolve_range(None, None, 100_000), Ok((100_000 - 86_400, 100_000)));
        assert_eq!(resolve_range(Some(5), Some(5), 0), Ok((5, 5)));
        assert_eq!(resolve_range(Some(0), Some(MAX_RANGE_SECS), 0), Ok((0, MAX_RANGE_SECS)));
        assert!(resolve_range(Some(0), Some(MAX_RANGE_SECS + 1), 0).is_err());
        assert!(resolve_range(Some(10), None, 5).is_err());
        // Outside 1970 .. a year from now: refused (the rollup's hour arithmetic and the
        // stored data start at 1970).
        assert!(resolve_range(None, Some(i64::MIN), 0).is_err());
        assert!(resolve_range(Some(i64::MAX - 10), Some(i64::MAX), 0).is_err());
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
