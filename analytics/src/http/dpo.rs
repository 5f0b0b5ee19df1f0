//! The DPO page: the current DPIA with its downloads, the processing register, retention
//! status (configured periods and the sweeper's log), the audit log's verification result and
//! its latest entries (filterable), and the sign-off form. A sign-off is appended to the
//! tamper-evident audit log (`dpia.signoff`) with the signer, the DPIA version and the SHA-256
//! of `dpia.cnil.json`.
//!
//! Staff login and roles are the governance issue's work; until then the page is as open as
//! the dashboards (HTTPS, loopback by default) and the signer names themselves. The form is
//! refused from another origin.

use std::fmt::Write as _;

use axum::extract::rejection::{FormRejection, PathRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use passage_policy::audit::{self, Entry};
use serde::Deserialize;

use super::dashboard::{clock, date};
use super::{escape_html as esc, ApiError, AppState};

/// Audit entries shown on the page.
const SHOWN_ENTRIES: usize = 50;

/// Query of the page: the audit filter, and whether a sign-off was just recorded.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct PageParams {
    action: Option<String>,
    venue: Option<String>,
    signed: Option<u64>,
}

/// The sign-off form.
#[derive(Debug, Deserialize)]
pub(crate) struct SignOff {
    name: String,
    version: String,
}

fn when(unix: i64) -> String {
    format!("{} {} UTC", date(unix), clock(unix))
}

/// The DPO page's content security policy.
const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'";

/// The verification line and whether the log is intact.
enum Verification {
    Absent,
    Intact(audit::Verified),
    Broken(String),
}

/// GET /dpo
pub(crate) async fn page(
    State(state): State<AppState>,
    principal: Option<axum::Extension<std::sync::Arc<passage_policy::accounts::Principal>>>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    // The log holds pseudonymous references to data subjects: every view of it is itself
    // audited (who, and with which filter).
    let viewer = principal.map_or_else(|| "dpo:(open deployment)".to_owned(), |axum::Extension(p)| p.actor());
    let shown = |v: Option<&str>| match v.filter(|v| !v.is_empty()) {
        None => "*".to_owned(),
        Some(v) if v.len() <= 48 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) => v.to_owned(),
        Some(_) => "(invalid)".to_owned(),
    };
    let filter = format!("action={} venue={}", shown(params.action.as_deref()), shown(params.venue.as_deref()));
    let sweeps = state.query(|store| store.sweep_log(20)).await?;
    let audit_log = state.audit.clone();
    let filter_action = params.action.clone().filter(|a| !a.is_empty());
    let filter_venue = params.venue.clone().filter(|v| !v.is_empty());
    let (verification, entries, signoffs) = tokio::task::spawn_blocking(move || {
        let Some(log) = audit_log else { return (Verification::Absent, Vec::new(), Vec::new()) };
        let dir = log.dir().to_owned();
        if let Err(error) = log.record(&viewer, "audit.view", None, None, &filter) {
            tracing::warn!(%error, "the view of the audit log could not be audited");
        }
        // Under the writer's lock: no entry or checkpoint is appended while it reads.
        let verification = match log.verify(None) {
            Ok(verified) => Verification::Intact(verified),
            Err(error) => Verification::Broken(error.to_string()),
        };
        let entries = audit::read(&dir, SHOWN_ENTRIES, |e: &Entry| {
            filter_action.as_deref().is_none_or(|a| e.event.action.starts_with(a))
                && filter_venue.as_deref().is_none_or(|v| e.event.venue.as_deref() == Some(v))
        })
        .unwrap_or_else(|error| {
            tracing::warn!(%error, "the DPO page could not read the audit log");
            Vec::new()
        });
        let signoffs = audit::read(&dir, 20, |e: &Entry| e.event.action == "dpia.signoff").unwrap_or_else(|error| {
            tracing::warn!(%error, "the DPO page could not read the sign-offs");
            Vec::new()
        });
        (verification, entries, signoffs)
    })
    .await
    .map_err(|_| ApiError::Internal)?;
    let page = render(&state, &params, &verification, &entries, &signoffs, &sweeps);
    let response = super::html_page(StatusCode::OK, page, CSP);
    if matches!(verification, Verification::Broken(_)) {
        tracing::warn!("the DPO page found the audit log broken");
    }
    Ok(response)
}

fn render(
    state: &AppState,
    params: &PageParams,
    verification: &Verification,
    entries: &[Entry],
    signoffs: &[Entry],
    sweeps: &[crate::store::SweepEntry],
) -> String {
    let config = &state.config;
    let dpia = &state.dpia;
    let mut p = String::with_capacity(16 * 1024);
    let _ = write!(
        p,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>DPO — {name}</title><style>{STYLE}</style></head><body><main>\
         <p><a href=\"/\">Passage analytics</a></p><h1>Data protection officer</h1>\
         <p>{name} · controller {controller} · DPIA version <strong data-dpia-version>{version}</strong> of {date}</p>",
        name = esc(&config.deployment.name),
        controller = esc(&config.register.controller),
        version = esc(&dpia.version),
        date = esc(&config.register.dpia_date),
    );
    if params.signed.is_some() {
        p.push_str("<p class=\"ok\" role=\"status\">Sign-off recorded in the audit log.</p>");
    }

    // Audit log verification.
    p.push_str("<h2>Audit log</h2>");
    match verification {
        Verification::Absent => p.push_str("<p data-audit=\"absent\">This service has no audit log attached.</p>"),
        Verification::Intact(v) => {
            let _ = write!(
                p,
                "<p class=\"ok\" data-audit=\"verified\" data-entries=\"{}\">Verified: {} entries, hash chain intact; the first {} are covered by {} signed checkpoints. Head <code>{}</code>.</p>",
                v.entries, v.entries, v.signed_through, v.checkpoints, esc(&v.head)
            );
            if v.signed_through < v.entries {
                let _ = write!(
                    p,
                    "<p>The last {} entries await the next checkpoint (signed every 64 entries and at shutdown).</p>",
                    v.entries - v.signed_through
                );
            }
            p.push_str("<p>Checked against the writer's own key. For an independent check, run <code>passage audit verify --public-key FILE</code> with a copy of <code>signing.pub</code> kept outside this host, and compare the entry count and head with the ones recorded at your last sign-off.</p>");
        }
        Verification::Broken(why) => {
            let _ = write!(p, "<p class=\"bad\" data-audit=\"broken\">Verification failed: {}</p>", esc(why));
        }
    }

    // DPIA and downloads.
    p.push_str("<h2>Current DPIA</h2><table><thead><tr><th scope=\"col\">File</th><th scope=\"col\">Size</th><th scope=\"col\">Download</th></tr></thead><tbody>");
    for file in &dpia.files {
        let name = esc(&file.name);
        let _ = write!(
            p,
            "<tr><td><a href=\"/dpo/files/{name}\">{name}</a></td><td>{} bytes</td><td><a href=\"/dpo/files/{name}\" download=\"{name}\">download</a></td></tr>",
            file.text.len()
        );
    }
    p.push_str("</tbody></table>");

    // Sign-off.
    p.push_str("<h2>Sign-off</h2>");
    if signoffs.is_empty() {
        p.push_str("<p data-signoffs=\"0\">No sign-off recorded yet.</p>");
    } else {
        let _ = write!(p, "<ul data-signoffs=\"{}\">", signoffs.len());
        for s in signoffs.iter().rev() {
            let _ = write!(
                p,
                "<li><span class=\"when\">{}</span> by <strong>{}</strong>: {} (entry {})</li>",
                when(s.event.at),
                esc(s.event.actor.trim_start_matches("dpo:")),
                esc(&s.event.outcome),
                s.seq
            );
        }
        p.push_str("</ul>");
    }
    let _ = write!(
        p,
        "<form method=\"post\" action=\"/dpo/signoff\"><input type=\"hidden\" name=\"version\" value=\"{}\">\
         <label>Your name <input name=\"name\" required maxlength=\"64\" autocomplete=\"name\"></label> \
         <button type=\"submit\">Sign off DPIA version {}</button></form>",
        esc(&dpia.version),
        esc(&dpia.version)
    );

    // Register.
    p.push_str("<h2>Processing register</h2><table><thead><tr><th scope=\"col\">Activity</th><th scope=\"col\">Purpose and legal basis</th><th scope=\"col\">Data subjects</th><th scope=\"col\">Data</th><th scope=\"col\">Recipients</th></tr></thead><tbody>");
    for activity in &config.register.activities {
        let basis = config
            .purposes
            .iter()
            .find(|purpose| purpose.id == activity.purpose)
            .map(|purpose| passage_dpia::content::legal_basis(purpose.legal_basis))
            .unwrap_or("");
        let _ = write!(
            p,
            "<tr><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&activity.name),
            esc(activity.purpose.as_str()),
            esc(basis),
            esc(&activity.data_subjects.join("; ")),
            esc(&activity.data_categories.join("; ")),
            esc(&activity.recipients.join("; "))
        );
    }
    p.push_str("</tbody></table>");

    // Retention.
    p.push_str("<h2>Retention</h2><table><thead><tr><th scope=\"col\">Venue</th><th scope=\"col\">Consent evidence</th><th scope=\"col\">Denial notices</th><th scope=\"col\">Evidence images</th><th scope=\"col\">Counts</th><th scope=\"col\">Audit log</th></tr></thead><tbody>");
    for venue in &config.venues {
        let r = &venue.retention;
        let _ = write!(
            p,
            "<tr><td>{}</td><td>{} days</td><td>{} hours</td><td>{} hours</td><td>{} days</td><td>{} days</td></tr>",
            esc(&venue.name),
            r.consent_evidence_days,
            r.denial_notice_hours,
            r.evidence_image_hours,
            r.counts_days,
            r.audit_days
        );
    }
    p.push_str("</tbody></table>");
    if sweeps.is_empty() {
        p.push_str("<p data-sweeps=\"0\">The retention sweeper has not run yet (it runs at start and every hour).</p>");
    } else {
        let _ = write!(p, "<p>Latest sweeps of the analytics store:</p><table data-sweeps=\"{}\"><thead><tr><th scope=\"col\">When</th><th scope=\"col\">Venue</th><th scope=\"col\">Category</th><th scope=\"col\">Deleted before</th><th scope=\"col\">Rows deleted</th></tr></thead><tbody>", sweeps.len());
        for s in sweeps {
            let _ = write!(
                p,
                "<tr><td class=\"when\">{}</td><td>{}</td><td>{}</td><td class=\"when\">{}</td><td>{}</td></tr>",
                when(s.at),
                esc(&s.venue),
                esc(&s.category),
                when(s.cutoff),
                s.rows
            );
        }
        p.push_str("</tbody></table>");
    }

    // Audit entries.
    let _ = write!(
        p,
        "<h2>Audit entries</h2><form method=\"get\" action=\"/dpo\"><label>Action starts with <input name=\"action\" value=\"{}\"></label> \
         <label>Venue <input name=\"venue\" value=\"{}\"></label> <button type=\"submit\">Filter</button></form>",
        esc(params.action.as_deref().unwrap_or("")),
        esc(params.venue.as_deref().unwrap_or(""))
    );
    let _ = write!(
        p,
        "<table data-entries-shown=\"{}\"><thead><tr><th scope=\"col\">#</th><th scope=\"col\">When</th><th scope=\"col\">Actor</th><th scope=\"col\">Action</th><th scope=\"col\">Venue</th><th scope=\"col\">Subject reference</th><th scope=\"col\">Outcome</th></tr></thead><tbody>",
        entries.len()
    );
    for e in entries.iter().rev() {
        let _ = write!(
            p,
            "<tr><td>{}</td><td class=\"when\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e.seq,
            when(e.event.at),
            esc(&e.event.actor),
            esc(&e.event.action),
            esc(e.event.venue.as_deref().unwrap_or("")),
            esc(e.event.subject.as_deref().unwrap_or("")),
            esc(&e.event.outcome)
        );
    }
    p.push_str("</tbody></table></main></body></html>\n");
    p
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1b1f24}main{max-width:72rem;margin:0 auto;padding:1rem 1.5rem 3rem}\
table{border-collapse:collapse;width:100%;margin:.8rem 0;font-size:.9rem}th,td{border:1px solid #ccd;padding:.3rem .45rem;text-align:left;vertical-align:top}\
th{background:#eef1f5}.ok{color:#1d6b3a}.bad{color:#a1261d;font-weight:bold}form{margin:.8rem 0}code{font-size:.85em}.when{white-space:nowrap}";

/// GET /dpo/files/{name}: one generated artifact.
pub(crate) async fn file(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(name) = name?;
    let Some(file) = state.dpia.get(&name) else {
        return Err(ApiError::NotFound(format!("no DPIA file {name:?}")));
    };
    let mut response = (StatusCode::OK, file.text.clone()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(file.mime));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Rendered documents may not run anything.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; sandbox"),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(response)
}

/// Whether a request comes from this site: a browser's `Sec-Fetch-Site`, when sent, must say
/// `same-origin` (or `none`, typed by the user), and an `Origin`, when sent, must name the
/// `Host` the request was sent to. Non-browser clients send neither.
fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    if text("sec-fetch-site").is_some_and(|site| site != "same-origin" && site != "none") {
        return false;
    }
    let Some(origin) = text(header::ORIGIN.as_str()) else { return true };
    let host = text(header::HOST.as_str()).unwrap_or("");
    origin.split_once("://").is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host))
}

fn valid_name(name: &str) -> bool {
    let name = name.trim();
    !name.is_empty()
        && name.chars().count() <= 64
        && name.chars().all(|c| c.is_alphanumeric() || matches!(c, ' ' | '.' | '-' | '\''))
}

/// POST /dpo/signoff: records the sign-off of the current DPIA version.
pub(crate) async fn sign_off(
    State(state): State<AppState>,
    principal: Option<axum::Extension<std::sync::Arc<passage_policy::accounts::Principal>>>,
    headers: HeaderMap,
    form: Result<Form<SignOff>, FormRejection>,
) -> Result<Response, ApiError> {
    if !same_origin(&headers) {
        return Ok((StatusCode::FORBIDDEN, "sign-off refused: the form was posted from another site").into_response());
    }
    let Form(form) = form.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    if !valid_name(&form.name) {
        return Err(ApiError::BadRequest("name: 1 to 64 letters, digits, spaces, dots, hyphens or apostrophes".into()));
    }
    if form.version != state.dpia.version {
        return Ok((
            StatusCode::CONFLICT,
            format!("the DPIA is now version {}; reload the page and review it before signing", state.dpia.version),
        )
            .into_response());
    }
    let Some(log) = state.audit.clone() else {
        return Err(ApiError::Unavailable);
    };
    // With accounts, the logged-in principal signs (the typed name is only a label);
    // without, the signer names themselves.
    let actor = match &principal {
        Some(axum::Extension(p)) => format!("{} ({})", p.actor(), form.name.trim()),
        None => format!("dpo:{}", form.name.trim()),
    };
    let version = state.dpia.version.clone();
    let digest = state.dpia_digest.clone();
    // The sign-off also records the log's size and head as verified just before: a later
    // rollback of the log below this point contradicts the DPO's own record of it.
    let written = tokio::task::spawn_blocking(move || {
        let verified = log.verify(None)?;
        let outcome = format!(
            "DPIA version {version} (dpia.cnil.json sha256 {digest}); audit log verified at {} entries, head {}",
            verified.entries,
            &verified.head[..16]
        );
        log.record(&actor, "dpia.signoff", None, None, &outcome).and_then(|seq| log.checkpoint().map(|()| seq))
    })
    .await;
    match written {
        Ok(Ok(seq)) => {
            tracing::info!(seq, "DPIA sign-off recorded in the audit log");
            Ok(Redirect::to("/dpo?signed=1").into_response())
        }
        Ok(Err(error)) if error.broken().is_some() => {
            Ok((StatusCode::CONFLICT, format!("sign-off refused: the audit log does not verify ({error})"))
                .into_response())
        }
        Ok(Err(error)) => {
            tracing::error!(%error, "the sign-off could not be written to the audit log");
            Err(ApiError::Internal)
        }
        Err(_) => Err(ApiError::Internal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_origins_are_checked() {
        assert!(valid_name("Ada Lovelace"));
        assert!(valid_name("J.-P. O'Neil"));
        assert!(!valid_name("  "));
        assert!(!valid_name("<script>"));
        assert!(!valid_name(&"a".repeat(65)));
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8443"));
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://127.0.0.1:8443"));
        assert!(same_origin(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h));
        h.remove("sec-fetch-site");
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&h));
    }
}
