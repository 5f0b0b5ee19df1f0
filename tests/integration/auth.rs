//! Staff login in front of the analytics service (`passage analytics serve --accounts FILE`):
//! accounts made with `passage accounts add`, a password and TOTP login over HTTP, a replayed
//! code refused, a venue manager refused (403) on another venue and on the DPO page, the DPO
//! let in, and every login, failure and refusal in the verified audit log.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use passage_transport::EmbeddedBroker;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request; returns (status, headers, body).
fn http(addr: SocketAddr, method: &str, path: &str, cookie: Option<&str>, form: Option<&str>) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(cookie) = cookie {
        request.push_str(&format!("Cookie: passage_session={cookie}\r\n"));
    }
    if let Some(form) = form {
        request.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        ));
    } else {
        request.push_str("\r\n");
    }
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

fn add(file: &str, name: &str, role: &str, venue: Option<&str>) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_passage"));
    command.args(["accounts", "add", "--file", file, "--name", name, "--role", role]);
    if let Some(venue) = venue {
        command.args(["--venue", venue]);
    }
    let out = command.env("PASSAGE_ACCOUNT_PASSWORD", format!("{name} has a long password")).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let secret = stdout.lines().find_map(|l| l.strip_prefix("totp secret: ")).expect("secret printed");
    secret.trim().to_owned()
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn login(addr: SocketAddr, name: &str, code: &str) -> (u16, Option<String>) {
    let form = format!("name={name}&password={name}+has+a+long+password&code={code}");
    let (status, head, _) = http(addr, "POST", "/login", None, Some(&form));
    if status == 303 {
        assert!(head.contains("; Path=/; HttpOnly; Secure; SameSite=Strict"), "cookie flags: {head}");
    }
    let cookie = head.lines().find_map(|l| {
        let value = l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: "))?;
        value.strip_prefix("passage_session=")?.split(';').next().map(str::to_owned)
    });
    (status, cookie)
}

#[test]
fn logins_need_a_fresh_code_and_venues_and_roles_are_enforced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("accounts.json");
    let file = file.to_str().expect("utf-8");
    let mia = add(file, "mia", "manager", Some("arena"));
    let dana = add(file, "dana", "dpo", None);

    let broker = EmbeddedBroker::start(0).expect("broker");
    let audit = dir.path().join("audit");
    let mut child = Command::new(env!("CARGO_BIN_EXE_passage"))
        .args(["analytics", "serve", "--plain-http", "--listen", "127.0.0.1:0", "--client-id", "auth-test"])
        .arg("--broker")
        .arg(broker.addr().to_string())
        .arg("--db")
        .arg(dir.path().join("analytics.duckdb"))
        .args(["--accounts", file])
        .arg("--audit-store")
        .arg(&audit)
        .env("PASSAGE_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let server = Server(child);
    let line = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("analytics listening on"))
        .expect("listening line");
    let addr: SocketAddr =
        line.trim_start_matches("analytics listening on http://").trim_end_matches('/').parse().expect("address");

    // Nothing without a login.
    assert_eq!(http(addr, "GET", "/venues/arena", None, None).0, 303, "pages redirect to /login");
    assert_eq!(http(addr, "GET", "/api/v1/venues/arena/totals", None, None).0, 401);
    assert_eq!(http(addr, "GET", "/api/v1/health", None, None).0, 200, "health stays open");
    assert_eq!(http(addr, "GET", "/login", None, None).0, 200);
    assert_eq!(http(addr, "GET", "/venues/arena", Some("forged"), None).0, 303, "a forged cookie is no session");

    // Wrong password, then the right one with a fresh code; the same code again is refused.
    let code = passage_policy::accounts::code_at(&mia, now()).expect("code");
    let wrong = http(addr, "POST", "/login", None, Some(&format!("name=mia&password=nope+nope+nope&code={code}")));
    assert_eq!(wrong.0, 401);
    let (status, cookie) = login(addr, "mia", &code);
    assert_eq!(status, 303);
    let cookie = cookie.expect("session cookie");
    assert_eq!(cookie.len(), 64, "a 256-bit session token");
    assert_eq!(login(addr, "mia", &code).0, 401, "a TOTP code is usable once");

    // A manager of arena: arena yes, another venue and the DPO page no.
    let (status, _, body) = http(addr, "GET", "/venues/arena", Some(&cookie), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(http(addr, "GET", "/api/v1/venues/arena/totals", Some(&cookie), None).0, 200);
    assert_eq!(http(addr, "GET", "/api/v1/venues/hall/totals", Some(&cookie), None).0, 403);
    assert_eq!(http(addr, "GET", "/venues/hall", Some(&cookie), None).0, 403);
    assert_eq!(http(addr, "GET", "/dpo", Some(&cookie), None).0, 403);
    assert_eq!(http(addr, "GET", "/api/v1/summary", Some(&cookie), None).0, 403);

    // The DPO gets the DPO page; logging out ends the session.
    let code = passage_policy::accounts::code_at(&dana, now()).expect("code");
    let (status, dpo) = login(addr, "dana", &code);
    assert_eq!(status, 303);
    let dpo = dpo.expect("cookie");
    let (status, _, body) = http(addr, "GET", "/dpo", Some(&dpo), None);
    assert_eq!(status, 200);
    assert!(body.contains("data-audit=\"verified\""), "the DPO page verifies the log");
    assert_eq!(http(addr, "POST", "/logout", Some(&dpo), Some("")).0, 303);
    assert_eq!(http(addr, "GET", "/dpo", Some(&dpo), None).0, 303, "logged out");

    // Guessing from one address is cut off after the per-address budget (4 logins so far).
    let guess = "name=ghost&password=guess+guess+guess&code=000000";
    for _ in 4..passage_analytics::LOGINS_PER_ADDRESS {
        assert_eq!(http(addr, "POST", "/login", None, Some(guess)).0, 401);
    }
    let (status, head, _) = http(addr, "POST", "/login", None, Some(guess));
    assert_eq!(status, 429, "per-address login limit");
    assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
    drop(server);

    // Everything above is in the audit log, which verifies.
    let store = audit.to_str().expect("utf-8");
    let verified = Command::new(env!("CARGO_BIN_EXE_passage")).args(["audit", "verify", "--store", store]).output();
    let verified = verified.expect("runs");
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
    let shown = Command::new(env!("CARGO_BIN_EXE_passage"))
        .args(["audit", "show", "--store", store, "--action", "auth."])
        .output()
        .expect("runs");
    let log = String::from_utf8_lossy(&shown.stdout);
    assert!(
        log.contains("\"actor\":\"account:mia\",\"action\":\"auth.login\",\"outcome\":\"failed: wrong password\""),
        "{log}"
    );
    assert!(log.contains("\"outcome\":\"failed: wrong or reused code\""), "{log}");
    assert!(log.contains("\"actor\":\"manager:mia\",\"action\":\"auth.forbidden\""), "{log}");
    assert!(log.contains("refused: too many attempts from one address"), "{log}");
    assert_eq!(log.matches("\"outcome\":\"ok\"").count(), 2, "{log}");
    assert!(!log.contains("long password"), "no password in the log");
    let views = Command::new(env!("CARGO_BIN_EXE_passage"))
        .args(["audit", "show", "--store", store, "--action", "audit.view"])
        .output()
        .expect("runs");
    let views = String::from_utf8_lossy(&views.stdout);
    assert!(
        views.contains("\"actor\":\"dpo:dana\",\"action\":\"audit.view\""),
        "reads of the log are audited: {views}"
    );
}

/// `passage demo --accounts FILE`: the demo's dashboard, its API and the DPO page (HTTPS, the
/// demo's CA) need a staff login; the same account file's manager gets in with a fresh code.
#[test]
fn the_demo_puts_its_dashboard_and_dpo_page_behind_staff_login() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("accounts.json");
    let file = file.to_str().expect("utf-8");
    let mia = add(file, "mia", "manager", Some("arena"));
    let data = dir.path().join("data");
    let (demo, url, _lines) = crate::support::start_demo(
        &["--ephemeral-ports", "--visitors", "0", "--accounts", file, "--exit-after", "120"],
        &data,
        "dashboard:",
    );
    let demo = Server(demo);
    let addr = url.trim_start_matches("https://").split('/').next().expect("address").to_owned();
    let ca = std::fs::read_to_string(data.join("pki").join("ca.pem")).expect("the demo's CA");
    crate::support::runtime().block_on(async {
        let get = |path: &'static str| crate::standalone::https_get(&addr, &ca, None, path);
        let (status, _) = get("/api/v1/venues/arena/totals").await.expect("answered");
        assert_eq!(status, 401, "the API needs a login");
        let (status, head) = get("/venues/arena").await.expect("answered");
        assert_eq!(status, 303, "the dashboard redirects to the login: {head}");
        assert_eq!(get("/dpo").await.expect("answered").0, 303);
        assert_eq!(get("/login").await.expect("answered").0, 200);
        // The manager logs in with a fresh code and sees the arena.
        let code = passage_policy::accounts::code_at(&mia, now()).expect("code");
        let form = format!("name=mia&password=mia+has+a+long+password&code={code}");
        let request = format!(
            "POST /login HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        );
        let (status, head) = crate::standalone::https(&addr, &ca, None, &request).await.expect("answered");
        assert_eq!(status, 303, "{head}");
        let cookie = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().starts_with("set-cookie: passage_session=").then(|| l[28..].to_owned()))
            .and_then(|v| v.split(';').next().map(str::to_owned))
            .expect("a session cookie");
        let request = format!(
            "GET /api/v1/venues/arena/totals HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nCookie: passage_session={cookie}\r\n\r\n"
        );
        let (status, body) = crate::standalone::https(&addr, &ca, None, &request).await.expect("answered");
        assert_eq!(status, 200, "{body}");
    });
    drop(demo);
}
