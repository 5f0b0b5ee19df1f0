//! The visitor portal, served by the edge agent (the venue's key holder) over HTTPS: a visitor
//! reads the venue's versioned privacy notice, gives explicit consent, enrols with a photo
//! (taken in the browser or uploaded), may link a ticket and a contact for denial notices,
//! and later, with the access key shown once at registration, exports, withdraws or erases.
//!
//! Routes (JSON in and out; errors are `{"error": "..."}` with a 4xx/5xx status):
//! * `GET /` — the page (`portal/page.html`, `page.js`, `page.css`);
//! * `GET /api/v1/venues` — venues with their current notice (English and German) and version;
//! * `POST /api/v1/register` — `{venue, notice_version, consent, photo (base64 JPEG/PNG),
//!   contact?, ticket?}`; a bearer token adds a venue to an existing registration;
//! * `GET /api/v1/me` — the "copy of my data" bundle (bearer);
//! * `POST /api/v1/me/withdraw` — `{venue}`: consent withdrawn and the template erased at the
//!   matcher before the response;
//! * `POST /api/v1/me/erase` — everything erased: templates at every venue, the subject's
//!   encrypted records (crypto-shredding), the access key; a tombstone stays in the audit log.
//!
//! The photo is decoded, embedded and encrypted in this process's RAM; the pixels and the
//! embedding are wiped once the encrypted template is sent. Every export, withdrawal and
//! erasure is audited with the subject's pseudonym only. Registration and failed access-key
//! checks are rate limited per client address.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use passage_dpia::PrivacyNotice;
use passage_policy::accounts::{Accounts, Principal, Role};
use passage_policy::ratelimit::RateLimiter;
use passage_policy::subjects::{SubjectError, SubjectRecord};
use passage_policy::tickets::TicketKey;
use passage_transport::{Bus, ServerTls};
use passage_vision::face::FacePipeline;
use passage_wire::Id;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agents::{Governance, FACE_ACCESS};
use crate::enrolment::{enrol_with_consent, Enrolment, EnrolmentError};
use crate::face::{enrolment_embedding, EnrolmentPhotoError};
use crate::keyholder::KeyHolder;
use crate::notices::{topic_for_token_hash, Notices};
use crate::{lock, now_secs};

/// Largest photo accepted, in bytes (before base64).
pub const MAX_PHOTO_BYTES: usize = 8 * 1024 * 1024;
/// Registrations per client address per window.
pub const REGISTRATIONS_PER_WINDOW: usize = 10;
/// Failed access-key checks per client address per window.
pub const BAD_KEYS_PER_WINDOW: usize = 20;
/// The rate-limit window, in seconds.
pub const WINDOW_SECS: u64 = 600;

const PAGE: &str = include_str!("portal/page.html");
const SCRIPT: &str = include_str!("portal/page.js");
const STYLE: &str = include_str!("portal/page.css");
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
                   media-src 'self' blob:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
                   base-uri 'none'";

/// One venue the portal registers for: its notice and its key holder.
#[derive(Debug, Clone)]
pub struct PortalVenue {
    /// Display name.
    pub name: String,
    /// The current privacy notice.
    pub notice: PrivacyNotice,
    /// The venue's key holder (encrypts templates; erases them at the matcher).
    pub keyholder: Arc<KeyHolder>,
    /// The key holder's connection to the broker.
    pub bus: Bus,
    /// The venue's ticket key: linked ticket codes must verify (`None`: tickets are not
    /// linked at this venue).
    pub tickets: Option<Arc<TicketKey>>,
}

/// The portal's state. Cheap to clone.
#[derive(Clone)]
pub struct Portal {
    inner: Arc<Inner>,
}

struct Inner {
    venues: BTreeMap<Id, PortalVenue>,
    /// The purpose consented to ([`FACE_ACCESS`]).
    purpose: Id,
    governance: Governance,
    faces: Option<FacePipeline>,
    tokens: Mutex<Accounts>,
    tokens_file: Option<PathBuf>,
    registrations: Mutex<RateLimiter>,
    bad_keys: Mutex<RateLimiter>,
    notices: Arc<Notices>,
}

impl std::fmt::Debug for Portal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Portal").field("venues", &self.inner.venues.len()).finish_non_exhaustive()
    }
}

/// Why the portal could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PortalError {
    /// The purpose identifier is invalid (a build defect).
    #[error("the purpose {FACE_ACCESS:?} is not a valid identifier")]
    Purpose,
    /// The access-key file could not be read.
    #[error("visitor access keys {path}: {source}")]
    Tokens {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Portal {
    /// A portal for `venues`. `faces` is the loaded face chain (`None`: registration answers
    /// 503 until models are installed). Visitors' access keys are kept hashed in
    /// `tokens_file` (mode 0600) or in memory only. Denial notices from the gates reach the
    /// visitors through `notices`, whose MQTT topics the portal binds to the access keys.
    ///
    /// # Errors
    /// An unreadable access-key file.
    pub fn new(
        venues: BTreeMap<Id, PortalVenue>,
        governance: Governance,
        faces: Option<FacePipeline>,
        tokens_file: Option<PathBuf>,
        notices: Arc<Notices>,
    ) -> Result<Portal, PortalError> {
        let tokens = match &tokens_file {
            Some(path) if path.exists() => passage_policy::accounts::load(path)
                .map_err(|source| PortalError::Tokens { path: path.clone(), source })?,
            _ => Accounts::new(),
        };
        // The notice each venue shows is the one consent is checked against.
        {
            let mut registry = lock(&governance.consent);
            for (id, venue) in &venues {
                registry.publish_notice(id, venue.notice.version);
            }
        }
        let purpose = Id::new(FACE_ACCESS).map_err(|_| PortalError::Purpose)?;
        for (hash, principal) in tokens.token_hashes(Role::Visitor) {
            if let Ok(subject) = Id::new(&principal.name) {
                notices.bind_topic(&subject, topic_for_token_hash(&hash));
            }
        }
        Ok(Portal {
            inner: Arc::new(Inner {
                venues,
                purpose,
                governance,
                faces,
                tokens: Mutex::new(tokens),
                tokens_file,
                registrations: Mutex::new(RateLimiter::new(REGISTRATIONS_PER_WINDOW, WINDOW_SECS)),
                bad_keys: Mutex::new(RateLimiter::new(BAD_KEYS_PER_WINDOW, WINDOW_SECS)),
                notices,
            }),
        })
    }

    fn persist_tokens(&self) -> Result<(), ApiError> {
        let Some(path) = &self.inner.tokens_file else { return Ok(()) };
        let tokens = lock(&self.inner.tokens).clone();
        passage_policy::accounts::save(path, &tokens).map_err(|error| {
            tracing::error!(%error, "visitor access keys not saved");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the access key could not be stored; try again")
        })
    }

    /// The visitor behind the request's bearer token; failed checks count against the
    /// address's limit.
    fn visitor(&self, headers: &HeaderMap, ip: IpAddr) -> Result<(Principal, Id), ApiError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let found = token
            .and_then(|t| lock(&self.inner.tokens).bearer(t))
            .filter(|p| p.role == Role::Visitor)
            .and_then(|p| Id::new(&p.name).ok().map(|subject| (p, subject)));
        match found {
            Some(visitor) => Ok(visitor),
            None => {
                if let Err(retry) = lock(&self.inner.bad_keys).check(ip, now_secs()) {
                    return Err(ApiError::too_many(retry.0));
                }
                Err(ApiError::new(StatusCode::UNAUTHORIZED, "a valid access key is required"))
            }
        }
    }

    async fn audit(&self, actor: String, action: &'static str, venue: Option<&Id>, subject: &Id, outcome: String) {
        self.inner.governance.audit_optional_venue(actor, action, venue, Some(subject), outcome).await;
    }
}

/// An error answer.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), retry_after: None }
    }

    fn too_many(secs: u64) -> ApiError {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!("too many attempts from this address; try again in {secs} s"),
            retry_after: Some(secs),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        no_store(response)
    }
}

/// Marks a response as not to be cached or sniffed (every answer of the edge's pages and APIs).
pub(crate) fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    static_asset(CSP, content_type, body)
}

/// A page or its script or style, under the content security policy `csp`, never framed.
pub(crate) fn static_asset(csp: &'static str, content_type: &'static str, body: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    no_store(response)
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

fn notice_json(doc: &passage_dpia::doc::Doc) -> Value {
    let paragraphs: Vec<&str> = doc
        .blocks
        .iter()
        .filter_map(|b| match b {
            passage_dpia::doc::Block::Para(text) => Some(text.as_str()),
            _ => None,
        })
        .collect();
    json!({ "title": doc.title, "paragraphs": paragraphs })
}

async fn venues(State(portal): State<Portal>) -> Response {
    let list: Vec<Value> = portal
        .inner
        .venues
        .iter()
        .map(|(id, v)| {
            json!({
                "id": id,
                "name": v.name,
                "notice_version": v.notice.version,
                "notice": { "en": notice_json(&v.notice.en), "de": notice_json(&v.notice.de) },
            })
        })
        .collect();
    no_store(Json(json!({ "venues": list, "face_models": portal.inner.faces.is_some() })).into_response())
}

/// A registration.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Registration {
    venue: String,
    notice_version: u32,
    consent: bool,
    photo: String,
    #[serde(default)]
    contact: Option<String>,
    #[serde(default)]
    ticket: Option<String>,
}

/// A body that is not the expected JSON: 413 when too large, 415 without the JSON content
/// type, 400 or 422 otherwise (axum's classification), with its reason.
fn rejected(rejection: JsonRejection) -> ApiError {
    ApiError::new(rejection.status(), format!("malformed request: {}", rejection.body_text()))
}

fn check_contact(contact: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(contact) = contact.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()) else { return Ok(None) };
    if contact.chars().count() > 200 || contact.chars().any(char::is_control) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the contact must be at most 200 printable characters",
        ));
    }
    Ok(Some(contact))
}

/// A ticket code to link: it must verify with the venue's ticket key and be for this venue
/// (its window is checked at the gate, so a ticket for a later day can be linked today).
fn check_ticket(ticket: Option<String>, venue: &Id, key: Option<&TicketKey>) -> Result<Option<String>, ApiError> {
    let Some(ticket) = ticket.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()) else { return Ok(None) };
    let invalid = |m: &str| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m);
    let Some(key) = key else { return Err(invalid("tickets cannot be linked at this venue")) };
    match key.verify(&ticket) {
        Ok(claims) if claims.venue == venue.as_str() => Ok(Some(ticket)),
        Ok(_) => Err(invalid("this ticket is for another venue")),
        Err(_) => Err(invalid("this is not a valid ticket code: copy it exactly as printed under the QR code")),
    }
}

/// The one face of an enrolment photo, embedded (wiped on drop).
fn embed_photo(faces: &FacePipeline, photo: &[u8]) -> Result<passage_vision::face::Embedding, ApiError> {
    enrolment_embedding(faces, photo).map_err(|error| match error {
        EnrolmentPhotoError::Pipeline(_) => {
            tracing::warn!(%error, "face chain failed on an enrolment photo");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the photo could not be processed")
        }
        EnrolmentPhotoError::NoFace => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no face large enough was found: use a well-lit photo of your face, looking at the camera",
        ),
        EnrolmentPhotoError::SeveralFaces => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "more than one face is in the photo: only yours may be")
        }
        other => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, other.to_string()),
    })
}

async fn register(
    State(portal): State<Portal>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<Registration>, JsonRejection>,
) -> Result<Response, ApiError> {
    if let Err(retry) = lock(&portal.inner.registrations).check(addr.ip(), now_secs()) {
        return Err(ApiError::too_many(retry.0));
    }
    let Json(form) = body.map_err(rejected)?;
    // An existing visitor adds a venue with their access key.
    let existing =
        if headers.contains_key(header::AUTHORIZATION) { Some(portal.visitor(&headers, addr.ip())?) } else { None };
    let venue_id = Id::new(&form.venue).map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "no such venue"))?;
    let venue =
        portal.inner.venues.get(&venue_id).ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such venue"))?;
    if !form.consent {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "face access needs your explicit consent; without it, use your ticket at the gate",
        ));
    }
    if form.notice_version != venue.notice.version {
        return Err(ApiError::new(StatusCode::CONFLICT, "the privacy notice has changed: please read the current one"));
    }
    let contact = check_contact(form.contact)?;
    let ticket = check_ticket(form.ticket, &venue_id, venue.tickets.as_deref())?;
    let Some(faces) = portal.inner.faces.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "face enrolment is not available here; use your ticket",
        ));
    };
    let photo = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(form.photo.trim())
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "the photo must be base64"))?,
    );
    drop(form.photo);
    if photo.len() > MAX_PHOTO_BYTES {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "the photo is larger than 8 MiB"));
    }
    let embedding = tokio::task::spawn_blocking(move || embed_photo(&faces, &photo))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the photo could not be processed"))??;

    let subject = match &existing {
        Some((_, subject)) => subject.clone(),
        None => {
            let bits: u128 = rand::random();
            Id::new(&format!("v-{bits:032x}"))
                .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "no pseudonym"))?
        }
    };
    let now = now_secs();
    let version = venue.notice.version;
    let mut records = Vec::new();
    if let Some(value) = contact {
        records.push(SubjectRecord::Contact { value, at: now });
    }
    if let Some(ticket) = ticket {
        records.push(SubjectRecord::Ticket { venue: venue_id.to_string(), ticket, at: now });
    }
    // Consent first, with its evidence, then the biometric template: no consent, no template.
    let enrolment = Enrolment {
        venue: &venue_id,
        subject: &subject,
        notice_version: version,
        actor: format!("visitor:{subject}"),
        records,
    };
    let enrolled =
        enrol_with_consent(&portal.inner.governance, &venue.keyholder, &venue.bus, enrolment, embedding.as_slice())
            .await;
    drop(embedding);
    match enrolled {
        Ok(()) => {}
        Err(EnrolmentError::Consent(error)) => return Err(ApiError::new(StatusCode::CONFLICT, error.to_string())),
        Err(EnrolmentError::Evidence(_)) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "your consent could not be recorded; nothing was enrolled",
            ))
        }
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "enrolment is unavailable right now (nothing biometric was kept); try again later or use your ticket",
            ))
        }
    }

    let token = match existing {
        Some((mut principal, _)) => {
            if !principal.venues.contains(&venue_id) {
                principal.venues.push(venue_id.clone());
            }
            lock(&portal.inner.tokens).rescope_principal(&principal.name, Role::Visitor, &principal.venues);
            None
        }
        None => {
            let principal =
                Principal { name: subject.to_string(), role: Role::Visitor, venues: vec![venue_id.clone()] };
            let mut rng = rand::rng();
            let token = lock(&portal.inner.tokens).issue_token(principal, now, &mut rng);
            portal.inner.notices.bind_topic(&subject, topic_for_token_hash(&Accounts::token_hash(&token)));
            Some(token)
        }
    };
    portal.persist_tokens()?;
    let notice_topic = portal.inner.notices.topic(&subject);
    let body = json!({
        "subject": subject,
        "venue": venue_id,
        "notice_version": version,
        "access_key": token,
        "notice_topic": notice_topic,
    });
    Ok(no_store((StatusCode::CREATED, Json(body)).into_response()))
}

async fn export(
    State(portal): State<Portal>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (principal, subject) = portal.visitor(&headers, addr.ip())?;
    let records = match &portal.inner.governance.subjects {
        Some(store) => {
            let (store, s) = (store.clone(), subject.to_string());
            match tokio::task::spawn_blocking(move || lock(&store).export(&s)).await {
                Ok(Ok(records)) => records,
                Ok(Err(SubjectError::NoKey)) => Vec::new(),
                _ => return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "your records could not be read")),
            }
        }
        None => Vec::new(),
    };
    let purpose = &portal.inner.purpose;
    let mut venues = Vec::new();
    for venue_id in &principal.venues {
        let Some(venue) = portal.inner.venues.get(venue_id) else { continue };
        let consent = lock(&portal.inner.governance.consent).allows(&subject, venue_id, purpose);
        let template = match venue.keyholder.enrolled_subjects(&venue.bus).await {
            Ok(subjects) => json!(subjects.contains(&subject)),
            Err(_) => json!("unknown (the matcher is unreachable)"),
        };
        venues.push(json!({
            "venue": venue_id,
            "name": venue.name,
            "face_access_consent_active": consent,
            "encrypted_template_stored_at_matcher": template,
        }));
    }
    // What the audit log holds about this pseudonym: consents, enrolments, gate decisions.
    let history = match &portal.inner.governance.audit {
        Some(log) => {
            let (dir, s) = (log.dir().to_owned(), subject.to_string());
            let read = tokio::task::spawn_blocking(move || {
                passage_policy::audit::read(&dir, usize::MAX, |e| e.event.subject.as_deref() == Some(s.as_str()))
            })
            .await;
            match read {
                Ok(Ok(entries)) => entries
                    .into_iter()
                    .map(|e| json!({ "at": e.event.at, "by": e.event.actor, "action": e.event.action, "venue": e.event.venue, "outcome": e.event.outcome }))
                    .collect(),
                _ => return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the history could not be read")),
            }
        }
        None => Vec::new(),
    };
    portal.audit(principal.actor(), "subject.export", None, &subject, format!("{} records", records.len())).await;
    let bundle = json!({
        "format": "passage-subject-export/1",
        "generated_at": now_secs(),
        "subject": subject,
        "note": "Your face is stored only as an encrypted template that nobody but the venue's gate can use; no photo was kept. Records below are everything else held about you.",
        "venues": venues,
        "records": records,
        "history": history,
    });
    let mut response = Json(bundle).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"passage-my-data.json\""));
    Ok(no_store(response))
}

/// A withdrawal.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Withdrawal {
    venue: String,
}

async fn withdraw(
    State(portal): State<Portal>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<Withdrawal>, JsonRejection>,
) -> Result<Response, ApiError> {
    let (principal, subject) = portal.visitor(&headers, addr.ip())?;
    let Json(form) = body.map_err(rejected)?;
    let venue_id = Id::new(&form.venue).map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "no such venue"))?;
    if !principal.can_access(&venue_id) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "you are not registered at this venue"));
    }
    let venue =
        portal.inner.venues.get(&venue_id).ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such venue"))?;
    // The gates refuse this subject from here on, whatever happens next.
    let evidence = portal
        .inner
        .governance
        .withdraw_face_access(format!("visitor:{subject}"), &subject, &venue_id, venue.notice.version)
        .await;
    let erased = erase_template(&portal, venue, &venue_id, &subject).await?;
    Ok(no_store(
        Json(json!({ "withdrawn": true, "evidence_recorded": evidence, "template_erased": erased })).into_response(),
    ))
}

/// Erases the subject's template at `venue`'s matcher before returning; audited.
async fn erase_template(portal: &Portal, venue: &PortalVenue, venue_id: &Id, subject: &Id) -> Result<bool, ApiError> {
    let actor = format!("keyholder:{venue_id}");
    match venue.keyholder.erase(&venue.bus, subject).await {
        Ok(found) => {
            let outcome = if found { "erased" } else { "none stored" };
            portal.audit(actor, "template.erase", Some(venue_id), subject, outcome.into()).await;
            Ok(found)
        }
        Err(error) => {
            tracing::warn!(%error, "template erasure failed");
            portal.audit(actor, "template.erase", Some(venue_id), subject, "failed: matcher unreachable".into()).await;
            Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "your consent is withdrawn and the gates refuse you, but the template could not be erased yet: try again",
            ))
        }
    }
}

async fn erase(
    State(portal): State<Portal>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (principal, subject) = portal.visitor(&headers, addr.ip())?;
    // Templates first: if a matcher is unreachable the visitor keeps the key to try again.
    let mut templates = 0;
    for venue_id in &principal.venues {
        let Some(venue) = portal.inner.venues.get(venue_id) else { continue };
        lock(&portal.inner.governance.consent).withdraw(&subject, venue_id, &portal.inner.purpose);
        if erase_template(&portal, venue, venue_id, &subject).await? {
            templates += 1;
        }
    }
    let shredded = match &portal.inner.governance.subjects {
        Some(store) => {
            let (store, s) = (store.clone(), subject.to_string());
            match tokio::task::spawn_blocking(move || lock(&store).erase(&s)).await {
                Ok(Ok(n)) => n,
                _ => {
                    return Err(ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "your records could not be erased; try again",
                    ))
                }
            }
        }
        None => 0,
    };
    // The tombstone: a restored backup of the subject store loses this key again at open.
    portal
        .audit(
            principal.actor(),
            "subject.erased",
            None,
            &subject,
            format!("{shredded} records, {templates} templates"),
        )
        .await;
    lock(&portal.inner.tokens).revoke_principal(&principal.name, Role::Visitor);
    portal.inner.notices.forget(&subject);
    portal.persist_tokens()?;
    Ok(no_store(
        Json(json!({ "erased": true, "templates_erased": templates, "records_shredded": shredded })).into_response(),
    ))
}

/// The visitor's denial notices as server-sent events (`notice` events): those still kept,
/// then new ones as the gates post them. The page reads it with `fetch` (an `EventSource`
/// cannot send the access key).
async fn notices(
    State(portal): State<Portal>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let (_, subject) = portal.visitor(&headers, addr.ip())?;
    let live = portal.inner.notices.subscribe();
    let kept = portal.inner.notices.pending(&subject, now_secs());
    let event = |n: &crate::notices::Notice| {
        Ok::<_, std::convert::Infallible>(Event::default().event("notice").json_data(n).unwrap_or_default())
    };
    let first = futures_util::stream::iter(kept.iter().map(event).collect::<Vec<_>>());
    let rest = futures_util::stream::unfold((live, subject), move |(mut live, subject)| async move {
        loop {
            match live.recv().await {
                Ok((to, notice)) if to == subject => {
                    return Some((event(&notice), (live, subject)));
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    use futures_util::StreamExt;
    let sse = Sse::new(first.chain(rest)).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)));
    Ok(no_store(sse.into_response()))
}

/// The portal's routes. Serve them with connect info (as [`serve`] does): the rate limits key
/// on the client address.
pub fn app(portal: Portal) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/page.js", get(script))
        .route("/page.css", get(style))
        .route("/api/v1/venues", get(venues))
        .route("/api/v1/register", post(register))
        .route("/api/v1/me", get(export))
        .route("/api/v1/me/withdraw", post(withdraw))
        .route("/api/v1/me/erase", post(erase))
        .route("/api/v1/me/notices", get(notices))
        .layer(DefaultBodyLimit::max(MAX_PHOTO_BYTES / 3 * 4 + 64 * 1024))
        .with_state(portal)
}

/// Serves `router` (the portal's [`app`], usually merged with the kiosks') on `addr` over
/// TLS until `cancel` fires; returns the bound address.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    tls: ServerTls,
    router: Router,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> std::io::Result<SocketAddr> {
    passage_transport::https::serve("portal", addr, Some(tls), router, cancel, tracker).await
}
