//! What the privacy scan's demo run goes through: two visitors register on the portal with
//! real photos, contacts and a ticket; the gates see their faces, strangers, a group, a QR
//! ticket in a camera frame and scanned codes; one visitor exports their data, the other
//! withdraws consent; one erases everything. The outcomes are collected so the test can check
//! that every path ran (a scan of a run that did nothing would prove nothing).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A visitor of the run.
pub struct Person {
    /// What they give as contact for denial notices (name, email, phone).
    pub contact: String,
    /// The enrolment photo.
    pub enrol_photo: &'static str,
    /// Photos of them the gate cameras see.
    pub gate_photos: Vec<&'static str>,
}

/// The inputs of the run.
pub struct Script {
    /// A day ticket linked to Alpha's registration.
    pub alpha_ticket: String,
    /// A day ticket shown as a QR code to the camera and typed into the scanner.
    pub qr_ticket: String,
    /// A ticket that expired days ago.
    pub old_ticket: String,
    /// `qr_ticket` as a PNG QR code.
    pub qr_png: Vec<u8>,
    /// Registers with a ticket, passes, then withdraws consent.
    pub alpha: Person,
    /// Registers without a ticket (refused: no valid ticket, notified), exports, then erases.
    pub bravo: Person,
    /// Faces nobody enrolled, one per image (PNG crops of group photos): (name, bytes).
    pub strangers: Vec<(String, Vec<u8>)>,
    /// A photo with several faces.
    pub group: &'static str,
}

/// What happened: reason codes seen per kind of attempt, and the visitors' keys and topics.
#[derive(Debug, Default)]
pub struct Outcome {
    /// `kind -> reason codes` (kinds: alpha, alpha-withdrawn, bravo, bravo-erased, stranger,
    /// group, qr-frame, qr-scan, expired-scan, forged-scan).
    pub reasons: BTreeMap<&'static str, Vec<String>>,
    /// The visitors' access keys (secrets that must not be stored in the clear).
    pub access_keys: Vec<String>,
    /// Bravo's notice topic.
    pub bravo_notice_topic: String,
    /// Whether Bravo's export listed the linked data.
    pub exported: bool,
}

impl Outcome {
    /// Asserts that every path ran with its expected outcome.
    pub fn assert_covered(&self) {
        let has = |kind: &str, reason: &str| self.reasons.get(kind).is_some_and(|r| r.iter().any(|x| x == reason));
        // After the withdrawal the template is gone: red, as not recognised (or consent
        // withdrawn, for an attempt that was already under way), never admitted.
        let after = self.reasons.get("alpha-withdrawn").map(Vec::as_slice).unwrap_or_default();
        assert!(
            !after.is_empty() && after.iter().all(|r| r == "not_recognised" || r == "consent_withdrawn"),
            "Alpha after withdrawing: {after:?}"
        );
        for (kind, reason) in [
            ("alpha", "admitted"),
            ("bravo", "no_valid_ticket"),
            ("stranger", "not_recognised"),
            ("group", "one_at_a_time"),
            ("qr-frame", "admitted"),
            ("qr-scan", "admitted"),
            ("expired-scan", "ticket_expired"),
            ("forged-scan", "ticket_invalid"),
        ] {
            assert!(has(kind, reason), "no {kind} attempt gave {reason}: {:?}", self.reasons);
        }
        assert!(self.exported, "Bravo's export did not list their data");
        assert!(!self.bravo_notice_topic.is_empty());
    }
}

/// An HTTPS client for the demo's portal and gate inputs (trusting the demo's CA).
struct Client {
    addr: std::net::SocketAddr,
    tls: tokio_rustls::TlsConnector,
}

impl Client {
    async fn request(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> (u16, Value) {
        let tcp = tokio::net::TcpStream::connect(self.addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let mut stream = self.tls.connect(name, tcp).await.expect("TLS handshake");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if let Some(key) = bearer {
            head.push_str(&format!("Authorization: Bearer {key}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.expect("send");
        stream.write_all(body).await.expect("send body");
        let mut response = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(120), stream.read_to_end(&mut response)).await;
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").map_or(response.len(), |i| i + 4);
        let head = String::from_utf8_lossy(&response[..split]);
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let value = serde_json::from_slice(&response[split..]).unwrap_or(Value::Null);
        (status, value)
    }

    async fn json(&self, method: &str, path: &str, bearer: Option<&str>, body: &Value) -> (u16, Value) {
        let bytes = serde_json::to_vec(body).expect("json");
        self.request(method, path, bearer, "application/json", &bytes).await
    }
}

fn photo(name: &str) -> Vec<u8> {
    std::fs::read(crate::photo_path(name)).expect("photo")
}

/// One attempt at a gate.
enum Attempt<'a> {
    Frame(String, Vec<u8>),
    Scan(&'static str, &'a str),
}

/// Runs the script against the demo's portal at `portal` (an `https://` URL) until `until`.
pub async fn run(portal: &str, input_key: &str, ca: &str, script: &Script, until: Instant) -> Outcome {
    let addr = portal
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|_| panic!("portal address in {portal}"));
    let tls = passage_transport::client_config(ca, None).expect("client TLS");
    let client = Client { addr, tls: tokio_rustls::TlsConnector::from(Arc::clone(&tls)) };
    let mut out = Outcome::default();

    let (status, venues) = client.request("GET", "/api/v1/venues", None, "application/json", b"").await;
    assert_eq!(status, 200, "{venues}");
    let version = venues["venues"][0]["notice_version"].clone();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut keys = Vec::new();
    for (person, ticket) in [(&script.alpha, Some(&script.alpha_ticket)), (&script.bravo, None)] {
        let form = json!({
            "venue": "arena", "notice_version": version, "consent": true,
            "photo": b64(&photo(person.enrol_photo)), "contact": person.contact, "ticket": ticket,
        });
        let (status, body) = client.json("POST", "/api/v1/register", None, &form).await;
        assert_eq!(status, 201, "registration: {body}");
        let key = body["access_key"].as_str().expect("access key").to_owned();
        keys.push((key.clone(), body["notice_topic"].as_str().unwrap_or_default().to_owned()));
        out.access_keys.push(key);
    }
    let (alpha_key, bravo_key) = (keys[0].0.clone(), keys[1].0.clone());
    out.bravo_notice_topic = keys[1].1.clone();

    let forged = {
        let mut code = script.qr_ticket.clone();
        code.pop();
        code.push(if script.qr_ticket.ends_with('A') { 'B' } else { 'A' });
        code
    };
    let schedule: Vec<(&'static str, Attempt<'_>)> = vec![
        ("alpha", Attempt::Frame(script.alpha.gate_photos[0].into(), photo(script.alpha.gate_photos[0]))),
        ("qr-scan", Attempt::Scan("east-1", &script.qr_ticket)),
        ("stranger", Attempt::Frame(script.strangers[0].0.clone(), script.strangers[0].1.clone())),
        ("bravo", Attempt::Frame(script.bravo.gate_photos[0].into(), photo(script.bravo.gate_photos[0]))),
        ("qr-frame", Attempt::Frame("qr-ticket.png".into(), script.qr_png.clone())),
        ("group", Attempt::Frame(script.group.into(), photo(script.group))),
        ("expired-scan", Attempt::Scan("north-1", &script.old_ticket)),
        ("stranger", Attempt::Frame(script.strangers[1].0.clone(), script.strangers[1].1.clone())),
        ("alpha", Attempt::Frame(script.alpha.gate_photos[1].into(), photo(script.alpha.gate_photos[1]))),
        ("forged-scan", Attempt::Scan("east-1", &forged)),
        ("stranger", Attempt::Frame(script.strangers[2].0.clone(), script.strangers[2].1.clone())),
    ];
    let started = Instant::now();
    let total = until.saturating_duration_since(started);
    let (mut exported, mut withdrawn, mut erased) = (false, false, false);
    let gates = ["north-1", "east-1"];
    let mut step = 0usize;
    while Instant::now() < until {
        let elapsed = started.elapsed();
        if !exported && elapsed >= total.mul_f64(0.4) {
            let (status, body) = client.request("GET", "/api/v1/me", Some(&bravo_key), "application/json", b"").await;
            assert_eq!(status, 200, "export: {body}");
            out.exported = body.to_string().contains("bertram.vollrath@example.net");
            exported = true;
        }
        if !withdrawn && elapsed >= total.mul_f64(0.5) {
            let (status, body) =
                client.json("POST", "/api/v1/me/withdraw", Some(&alpha_key), &json!({ "venue": "arena" })).await;
            assert_eq!(status, 200, "withdrawal: {body}");
            withdrawn = true;
        }
        if !erased && elapsed >= total.mul_f64(0.75) {
            let (status, body) =
                client.request("POST", "/api/v1/me/erase", Some(&bravo_key), "application/json", b"").await;
            assert_eq!(status, 200, "erasure: {body}");
            erased = true;
        }
        let (kind, attempt) = &schedule[step % schedule.len()];
        let kind: &'static str = match *kind {
            "alpha" if withdrawn => "alpha-withdrawn",
            "bravo" if erased => "bravo-erased",
            other => other,
        };
        let gate = gates[step % gates.len()];
        let (status, body) = match attempt {
            Attempt::Frame(_, bytes) => {
                let content_type = if bytes.starts_with(b"\x89PNG") { "image/png" } else { "image/jpeg" };
                let path = format!("/gate/arena/{gate}/frame");
                client.request("POST", &path, Some(input_key), content_type, bytes).await
            }
            Attempt::Scan(gate, code) => {
                let path = format!("/gate/arena/{gate}/scan");
                client.json("POST", &path, Some(input_key), &json!({ "code": code })).await
            }
        };
        match status {
            200 => {
                if let Some(reason) = body["reason"].as_str() {
                    out.reasons.entry(kind).or_default().push(reason.to_owned());
                }
            }
            // Busy (one attempt per gate at a time): a camera sends its next frame.
            429 => {}
            _ => {
                let what = match attempt {
                    Attempt::Frame(name, _) => name.as_str(),
                    Attempt::Scan(..) => "a scanned code",
                };
                panic!("{kind} ({what}) at {gate}: {status} {body}")
            }
        }
        step += 1;
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    out
}
