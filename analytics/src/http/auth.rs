//! Staff login for the analytics service, when the deployment has an accounts file
//! (`passage analytics serve --accounts FILE`): every page and API except `/login`,
//! `/api/v1/health` and the dashboard script needs a session cookie (or a bearer token);
//! venue pages and APIs need a principal scoped to that venue (403 otherwise); the DPO pages
//! need the DPO or an operator. Logins, failures and refusals are audited.
//!
//! Without an accounts file the service is open (the demo), and the pages say so.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Form, Request, State};
use axum::http::Extensions;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use passage_policy::accounts::{self, AccountError, Accounts, Principal, Role};
use passage_policy::ratelimit::RateLimiter;
use passage_wire::Id;
use serde::Deserialize;

use super::{escape_html as esc, AppState};
use crate::now_unix;

/// Name of the session cookie.
const COOKIE: &str = "passage_session";

/// The accounts and the file they are kept in.
#[derive(Debug)]
pub struct Auth {
    path: PathBuf,
    accounts: Mutex<Accounts>,
    /// Login attempts per client address (on top of the per-account lockout).
    attempts: Mutex<RateLimiter>,
}

/// Login attempts allowed per client address per [`LOGIN_WINDOW_SECS`].
pub const LOGINS_PER_ADDRESS: usize = 30;
/// The window of [`LOGINS_PER_ADDRESS`], in seconds.
pub const LOGIN_WINDOW_SECS: u64 = 600;

impl Auth {
    /// Loads the accounts file at `path`.
    ///
    /// # Errors
    /// An unreadable or malformed file.
    pub fn load(path: PathBuf) -> std::io::Result<Auth> {
        let accounts = accounts::load(&path)?;
        Ok(Auth {
            path,
            accounts: Mutex::new(accounts),
            attempts: Mutex::new(RateLimiter::new(LOGINS_PER_ADDRESS, LOGIN_WINDOW_SECS)),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Accounts) -> T) -> T {
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut accounts)
    }

    fn persist(&self) {
        let accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(error) = accounts::save(&self.path, &accounts) {
            tracing::error!(%error, "the accounts file could not be written; sessions live in memory only");
        }
    }
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == COOKIE).then(|| value.to_owned())
    })
}

fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(|t| t.trim().to_owned())
}

/// The venue a path is about, if any (`/venues/{v}`, `/api/v1/venues/{v}/...`).
fn venue_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/venues/").or_else(|| path.strip_prefix("/api/v1/venues/"))?;
    Some(rest.split('/').next().unwrap_or(rest))
}

fn is_public(path: &str) -> bool {
    matches!(path, "/login" | "/api/v1/health" | "/assets/dashboard.js")
}

fn audit(state: &AppState, actor: &str, action: &str, outcome: &str) {
    if let Some(log) = &state.audit {
        if let Err(error) = log.record(actor, action, None, None, outcome) {
            tracing::warn!(%error, action, "audit entry not written");
        }
    }
}

/// The middleware: authenticates and authorises every request when accounts are configured,
/// and passes the [`Principal`] on to the handlers.
pub(crate) async fn require(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(auth) = state.auth.clone() else { return next.run(request).await };
    let path = request.uri().path().to_owned();
    if is_public(&path) {
        return next.run(request).await;
    }
    let now = now_unix();
    let principal = match (cookie_token(request.headers()), bearer_token(request.headers())) {
        (Some(token), _) => auth.with(|a| a.session(&token, now)),
        (None, Some(token)) => auth.with(|a| a.bearer(&token)),
        (None, None) => None,
    };
    let Some(principal) = principal else {
        let api = path.starts_with("/api/");
        return if api || request.method() != axum::http::Method::GET {
            (StatusCode::UNAUTHORIZED, "log in first").into_response()
        } else {
            Redirect::to("/login").into_response()
        };
    };
    let allowed = if path.starts_with("/dpo") || path == "/api/v1/retention" || path == "/api/v1/summary" {
        matches!(principal.role, Role::Dpo | Role::Operator)
    } else if let Some(venue) = venue_of(&path) {
        Id::new(venue).is_ok_and(|venue| principal.can_access(&venue))
    } else {
        true
    };
    if !allowed {
        let outcome = format!("refused: {} {path}", request.method());
        audit(&state, &principal.actor(), "auth.forbidden", &outcome[..outcome.len().min(200)]);
        return (StatusCode::FORBIDDEN, "not for this account").into_response();
    }
    request.extensions_mut().insert(Arc::new(principal));
    next.run(request).await
}

/// GET /login
pub(crate) async fn login_page(State(state): State<AppState>) -> Response {
    page(&state, None, StatusCode::OK)
}

fn page(state: &AppState, error: Option<&str>, status: StatusCode) -> Response {
    let notice = match (state.auth.is_some(), error) {
        (false, _) => "<p>This deployment has no accounts configured: its pages are open.</p>".to_owned(),
        (true, Some(error)) => format!("<p role=\"alert\" class=\"bad\">{}</p>", esc(error)),
        (true, None) => String::new(),
    };
    let body = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Log in — {name}</title><style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:28rem}}label{{display:block;margin:.6rem 0}}\
         input{{display:block;width:100%}}.bad{{color:#a1261d}}</style></head><body><main><h1>Log in</h1><p>{name}</p>{notice}\
         <form method=\"post\" action=\"/login\"><label>Account <input name=\"name\" required autocomplete=\"username\"></label>\
         <label>Password <input name=\"password\" type=\"password\" required autocomplete=\"current-password\"></label>\
         <label>Code from your authenticator <input name=\"code\" required inputmode=\"numeric\" pattern=\"[0-9]{{6}}\" autocomplete=\"one-time-code\"></label>\
         <button type=\"submit\">Log in</button></form></main></body></html>\n",
        name = esc(&state.config.deployment.name)
    );
    super::html_page(
        status,
        body,
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    )
}

/// The login form.
#[derive(Deserialize)]
pub(crate) struct LoginForm {
    name: String,
    password: String,
    code: String,
}

/// POST /login
pub(crate) async fn login(
    State(state): State<AppState>,
    extensions: Extensions,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Some(auth) = state.auth.clone() else { return Redirect::to("/").into_response() };
    // Served with connect info (see `serve`); without it every client shares one budget.
    let address = extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    let limited = auth.attempts.lock().unwrap_or_else(PoisonError::into_inner).check(address, now_unix());
    if let Err(retry) = limited {
        audit(&state, "account:(rate limited)", "auth.login", "refused: too many attempts from one address");
        let mut response = page(
            &state,
            Some("Too many login attempts from your address; try again later."),
            StatusCode::TOO_MANY_REQUESTS,
        );
        if let Ok(value) = HeaderValue::from_str(&retry.0.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let Ok(Form(form)) = form else {
        return page(&state, Some("Fill in account, password and code."), StatusCode::BAD_REQUEST);
    };
    let name = form.name.trim().to_owned();
    let attempt = tokio::task::spawn_blocking(move || {
        let mut rng = rand::rng();
        let result = auth.with(|a| a.login(&name, &form.password, &form.code, now_unix(), &mut rng));
        auth.persist();
        (name, result)
    })
    .await;
    let Ok((name, result)) = attempt else {
        return page(&state, Some("Login is unavailable."), StatusCode::INTERNAL_SERVER_ERROR);
    };
    // Names that are not valid account names are not echoed into the audit log.
    let actor = if name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        format!("account:{name}")
    } else {
        "account:(invalid name)".to_owned()
    };
    match result {
        Ok(token) => {
            audit(&state, &actor, "auth.login", "ok");
            let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict");
            let mut response = Redirect::to("/").into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(AccountError::Login(why)) => {
            audit(&state, &actor, "auth.login", &format!("failed: {}", why.as_str()));
            page(&state, Some("Login failed."), StatusCode::UNAUTHORIZED)
        }
        Err(_) => page(&state, Some("Login failed."), StatusCode::UNAUTHORIZED),
    }
}

/// POST /logout
pub(crate) async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let (Some(auth), Some(token)) = (state.auth.clone(), cookie_token(&headers)) {
        auth.with(|a| a.logout(&token));
        auth.persist();
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("passage_session=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0"),
    );
    response
}

/// Whether `principal` (absent in an open deployment) may see `venue`.
pub(crate) fn may_see(principal: Option<&Principal>, venue: &Id) -> bool {
    principal.is_none_or(|p| p.can_access(venue))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_venues_are_read_from_requests() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; passage_session=abc; b=2"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer xyz"));
        assert_eq!(cookie_token(&h).as_deref(), Some("abc"));
        assert_eq!(bearer_token(&h).as_deref(), Some("xyz"));
        assert_eq!(venue_of("/venues/arena"), Some("arena"));
        assert_eq!(venue_of("/api/v1/venues/hall/reports/occupancy"), Some("hall"));
        assert_eq!(venue_of("/dpo"), None);
        assert!(is_public("/login") && !is_public("/"));
    }
}
