//! The gate's HTTP side, served by the edge agent next to the portal:
//!
//! * `GET /gate/{venue}/{gate}` — the kiosk page (full-screen green/red, EN/DE, no name, no
//!   face), following `GET /gate/{venue}/{gate}/events` (server-sent events, one `state`
//!   event per change, the current state first);
//! * `POST /gate/{venue}/{gate}/frame` — a camera frame (JPEG or PNG body);
//! * `POST /gate/{venue}/{gate}/scan` — `{"code": "..."}` from a ticket scanner.
//!
//! Frames and scans open the gate, so they need the gates' input key (a bearer token the
//! edge agent generated, kept hashed here; cameras and scanners are configured with it). The
//! answer to the device is `{"decision": "green"|"red"|null, "reason": code, "via": ...}`;
//! a frame the gate is still deciding on is answered 429 "busy" (the camera sends the next).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::Stream;
use passage_wire::Id;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Decision, GateError, Gates, Via};
use crate::frames::RgbFrame;
use crate::portal::{no_store, static_asset};

/// Largest frame accepted, in bytes.
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

const PAGE: &str = include_str!("kiosk.html");
const SCRIPT: &str = include_str!("kiosk.js");
const STYLE: &str = include_str!("kiosk.css");
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The kiosks of every venue this edge agent hosts.
#[derive(Clone)]
pub struct Kiosks {
    venues: BTreeMap<Id, Gates>,
    input_key_sha256: [u8; 32],
}

impl std::fmt::Debug for Kiosks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kiosks").field("venues", &self.venues.len()).finish_non_exhaustive()
    }
}

impl Kiosks {
    /// Kiosks for `gates`, accepting frames and scans from holders of `input_key`.
    pub fn new(gates: impl IntoIterator<Item = Gates>, input_key: &str) -> Kiosks {
        let venues = gates.into_iter().map(|g| (g.venue().clone(), g)).collect();
        Kiosks { venues, input_key_sha256: Sha256::digest(input_key.as_bytes()).into() }
    }

    fn gates(&self, venue: &str) -> Result<&Gates, Refusal> {
        Id::new(venue)
            .ok()
            .and_then(|v| self.venues.get(&v))
            .ok_or_else(|| Refusal(StatusCode::NOT_FOUND, "no such venue".into()))
    }

    fn authorised(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| <[u8; 32]>::from(Sha256::digest(t.trim().as_bytes())));
        // Comparing digests of the key: timing tells nothing about the key itself.
        match presented {
            Some(digest) if digest == self.input_key_sha256 => Ok(()),
            _ => Err(Refusal(StatusCode::UNAUTHORIZED, "the gates' input key is required".into())),
        }
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    no_store((status, Json(json!({ "error": message }))).into_response())
}

/// A refused request: its status and message.
#[derive(Debug)]
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.0, &self.1)
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    static_asset(CSP, content_type, body)
}

fn gate_error(e: &GateError) -> Refusal {
    let status = match e {
        GateError::UnknownGate(_) => StatusCode::NOT_FOUND,
        GateError::Busy => StatusCode::TOO_MANY_REQUESTS,
        GateError::NoFaces => StatusCode::SERVICE_UNAVAILABLE,
        GateError::Frame(_) => StatusCode::UNPROCESSABLE_ENTITY,
    };
    Refusal(status, e.to_string())
}

fn decided(decision: Option<Decision>) -> Response {
    let body = match decision {
        Some(d) => json!({
            "decision": if d.reason.is_green() { "green" } else { "red" },
            "reason": d.reason.code(),
            "via": match d.via { Via::Face => "face", Via::Ticket => "ticket" },
        }),
        None => json!({ "decision": null }),
    };
    no_store(Json(body).into_response())
}

async fn page(State(kiosks): State<Kiosks>, Path((venue, gate)): Path<(String, String)>) -> Response {
    match kiosks.gates(&venue).and_then(|g| g.kiosk(&gate).map_err(|e| gate_error(&e))) {
        Ok(_) => asset("text/html; charset=utf-8", PAGE),
        Err(refusal) => refusal.into_response(),
    }
}

async fn events(
    State(kiosks): State<Kiosks>,
    Path((venue, gate)): Path<(String, String)>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Refusal> {
    let receiver = kiosks.gates(&venue)?.kiosk(&gate).map_err(|e| gate_error(&e))?;
    // The current state first, then every change.
    let stream = futures_util::stream::unfold((receiver, true), |(mut receiver, first)| async move {
        if !first && receiver.changed().await.is_err() {
            return None;
        }
        let state = receiver.borrow_and_update().clone();
        let event = Event::default().event("state").json_data(&state).unwrap_or_else(|_| Event::default());
        Some((Ok(event), (receiver, false)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

async fn frame(
    State(kiosks): State<Kiosks>,
    Path((venue, gate)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refusal) = kiosks.authorised(&headers) {
        return refusal.into_response();
    }
    let gates = match kiosks.gates(&venue) {
        Ok(gates) => gates.clone(),
        Err(refusal) => return refusal.into_response(),
    };
    if body.len() > MAX_FRAME_BYTES {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "the frame is larger than 8 MiB");
    }
    // A busy gate answers before the frame is decoded.
    if let Err(e) = gates.ready(&gate) {
        return gate_error(&e).into_response();
    }
    let decoded = tokio::task::spawn_blocking(move || passage_vision::decode::decode(&body)).await;
    let image = match decoded {
        Ok(Ok(image)) => image,
        Ok(Err(e)) => return error(StatusCode::UNPROCESSABLE_ENTITY, &format!("the frame: {e}")),
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "the frame could not be decoded"),
    };
    let frame = RgbFrame { w: image.w, h: image.h, index: 0, t: 0.0, rgb: image.rgb };
    match gates.frame(&gate, frame).await {
        Ok(decision) => decided(decision),
        Err(e) => gate_error(&e).into_response(),
    }
}

/// A scanner's input.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scan {
    code: String,
}

async fn scan(
    State(kiosks): State<Kiosks>,
    Path((venue, gate)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Json<Scan>, JsonRejection>,
) -> Response {
    if let Err(refusal) = kiosks.authorised(&headers) {
        return refusal.into_response();
    }
    let Json(scan) = match body {
        Ok(scan) => scan,
        Err(rejection) => return error(rejection.status(), &format!("malformed request: {}", rejection.body_text())),
    };
    let gates = match kiosks.gates(&venue) {
        Ok(gates) => gates.clone(),
        Err(refusal) => return refusal.into_response(),
    };
    match gates.scan(&gate, &scan.code).await {
        Ok(decision) => decided(Some(decision)),
        Err(e) => gate_error(&e).into_response(),
    }
}

/// The kiosk and gate-input routes.
pub fn app(kiosks: Kiosks) -> Router {
    Router::new()
        .route("/gate/kiosk.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/gate/kiosk.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
        .route("/gate/{venue}/{gate}", get(page))
        .route("/gate/{venue}/{gate}/events", get(events))
        .route("/gate/{venue}/{gate}/frame", post(frame))
        .route("/gate/{venue}/{gate}/scan", post(scan))
        .layer(DefaultBodyLimit::max(MAX_FRAME_BYTES + 1024))
        .with_state(kiosks)
}
