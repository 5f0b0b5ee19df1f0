//! The matcher's HTTPS API: the same requests as over MQTT, as binary frames.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use passage_transport::ServerTls;
use passage_wire::{DecisionKeyUpload, EnrolRequest, EnrolStatus, Id, MatchRequest, MatchResponse, MatchStatus};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Matcher;

fn binary(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn health(State(matcher): State<Matcher>) -> Response {
    let mut body = matcher.stats().snapshot();
    body["status"] = "ok".into();
    Json(body).into_response()
}

async fn match_probe(State(matcher): State<Matcher>, body: Bytes) -> Response {
    let response = match MatchRequest::decode(&body) {
        Ok(request) => matcher.handle_match(request).await,
        Err(decode) => MatchResponse::failed(MatchStatus::BadRequest, decode.to_string()),
    };
    let status = match response.status {
        MatchStatus::Ok => StatusCode::OK,
        MatchStatus::Busy => StatusCode::SERVICE_UNAVAILABLE,
        MatchStatus::UnknownVenue => StatusCode::NOT_FOUND,
        MatchStatus::EmptyGallery | MatchStatus::UnknownSlot | MatchStatus::NoDecisionKey => StatusCode::CONFLICT,
        MatchStatus::BadRequest => StatusCode::BAD_REQUEST,
        MatchStatus::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, binary(response.encode())).into_response()
}

async fn enrol(State(matcher): State<Matcher>, body: Bytes) -> Response {
    let request = match EnrolRequest::decode(&body) {
        Ok(request) => request,
        Err(decode) => return error(StatusCode::BAD_REQUEST, &decode.to_string()),
    };
    match tokio::task::spawn_blocking(move || matcher.enrol(&request)).await {
        Ok(response) => binary(response.encode()),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    }
}

async fn decision_key(State(matcher): State<Matcher>, body: Bytes) -> Response {
    let upload = match DecisionKeyUpload::decode(&body) {
        Ok(upload) => upload,
        Err(decode) => return error(StatusCode::BAD_REQUEST, &decode.to_string()),
    };
    match tokio::task::spawn_blocking(move || matcher.install_decision_key(&upload)).await {
        Ok(response) => {
            let status = match response.status {
                EnrolStatus::Ok => StatusCode::OK,
                EnrolStatus::UnknownVenue => StatusCode::NOT_FOUND,
                EnrolStatus::Rejected => StatusCode::BAD_REQUEST,
                EnrolStatus::Busy => StatusCode::SERVICE_UNAVAILABLE,
                EnrolStatus::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (status, binary(response.encode())).into_response()
        }
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    }
}

async fn index(State(matcher): State<Matcher>, Path(venue): Path<String>) -> Response {
    let Ok(venue) = Id::new(&venue) else { return error(StatusCode::BAD_REQUEST, "invalid venue id") };
    match matcher.index(&venue) {
        Some(index) => ([(header::CONTENT_TYPE, "application/json")], index.encode()).into_response(),
        None => error(StatusCode::NOT_FOUND, "unknown venue"),
    }
}

/// The matcher's routes: `GET /api/v1/health`; `POST /api/v1/match`, `POST /api/v1/enrol` and
/// `POST /api/v1/decision-key` (binary frames of `passage-wire`);
/// `GET /api/v1/venues/{venue}/index`.
pub fn app(matcher: Matcher) -> Router {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/match", post(match_probe))
        .route("/api/v1/enrol", post(enrol))
        .route("/api/v1/venues/{venue}/index", get(index))
        .layer(DefaultBodyLimit::max(passage_wire::MAX_JSON_BYTES + 600 * 1024))
        .route(
            "/api/v1/decision-key",
            post(decision_key).layer(DefaultBodyLimit::max(passage_wire::MAX_DECISION_KEY_BYTES + 1024)),
        )
        .with_state(matcher)
}

/// Serves [`app`] on `addr` over TLS until `cancel` fires; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    tls: ServerTls,
    matcher: Matcher,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> std::io::Result<SocketAddr> {
    passage_transport::https::serve("matcher", addr, Some(tls), app(matcher), cancel, tracker).await
}
