//! The visitor portal against the real broker, matcher, key holder, audit log and subject store
//! on loopback: a visitor registers with a real photo (consent against the venue's current
//! notice first), is recognised by the gate under encryption, exports a copy of their data,
//! withdraws (the next match is impossible: the template is gone before the call returns) and
//! erases (nothing they gave is left readable in any file; the access key stops working).
//! Bad input: no consent, a stale notice, several faces, bad and missing keys, oversize and
//! malformed bodies, and the per-address rate limits.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use passage_edge::agents::{Governance, FACE_ACCESS};
use passage_edge::face::FaceStage;
use passage_edge::gate::kiosk::{self, Kiosks};
use passage_edge::gate::{GateParts, GateSettings, Gates};
use passage_edge::keyholder::{Identification, KeyHolder};
use passage_edge::notices::Notices;
use passage_edge::portal::{self, Portal, PortalVenue};
use passage_fhe::Params;
use passage_matcher::{Matcher, MatcherOptions};
use passage_policy::audit::AuditLog;
use passage_policy::subjects::SubjectStore;
use passage_policy::tickets::{Ticket, TicketKey};
use passage_policy::ConsentRegistry;
use passage_transport::EmbeddedBroker;
use passage_vision::face::{FacePipeline, PipelineConfig};
use passage_wire::Id;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::faces::{image_path, media_present, models};
use crate::support::{connect, runtime};

/// One HTTP/1.1 request to the portal; returns (status, headers, body).
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&[u8]>,
) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(key) = key {
        request.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    let body = body.unwrap_or_default();
    request.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()));
    stream.write_all(request.as_bytes()).expect("send head");
    // A refused oversize body may close the connection before all of it is written.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").map_or(response.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head, response[split..].to_vec())
}

pub(crate) fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| panic!("JSON body: {}", String::from_utf8_lossy(body)))
}

pub(crate) fn photo(name: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(image_path(name)).expect("photo"))
}

pub(crate) fn registration(version: &Value, photo: &str, consent: bool, contact: &str, ticket: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "venue": "arena", "notice_version": version, "consent": consent, "photo": photo,
        "contact": contact, "ticket": ticket,
    }))
    .expect("json")
}

pub(crate) fn all_bytes(dir: &Path, out: &mut Vec<u8>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            all_bytes(&path, out);
        } else {
            out.extend(std::fs::read(&path).expect("read file"));
        }
    }
}

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A broker, a matcher for venue `arena`, its key holder, its gates and the portal with the
/// kiosks (plain HTTP on loopback; the demo serves the same router over TLS).
pub(crate) struct Rig {
    pub(crate) rt: tokio::runtime::Runtime,
    cancel: CancellationToken,
    /// Stops the matcher alone (an unreachable matcher).
    pub(crate) matcher_cancel: CancellationToken,
    tracker: TaskTracker,
    pub(crate) addr: SocketAddr,
    keyholder: Arc<KeyHolder>,
    pub(crate) bus: passage_transport::Bus,
    pub(crate) governance: Governance,
    pub(crate) gates: Gates,
    pub(crate) tickets: Arc<TicketKey>,
    pub(crate) input_key: String,
    _broker: EmbeddedBroker,
}

/// The gates' input key of the rig.
const INPUT_KEY: &str = "test-gate-input-key";

impl Rig {
    pub(crate) fn start(dir: &Path, faces: Option<FacePipeline>) -> Rig {
        let stage = passage_edge::face::FaceStageConfig { window: Duration::from_secs(2), ..Default::default() };
        Rig::start_with(dir, faces, stage)
    }

    pub(crate) fn start_with(
        dir: &Path,
        faces: Option<FacePipeline>,
        stage: passage_edge::face::FaceStageConfig,
    ) -> Rig {
        let broker = EmbeddedBroker::start(0).expect("embedded broker");
        let port = broker.addr().port();
        let rt = runtime();
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let venue = Id::new("arena").expect("id");
        let matcher_cancel = cancel.child_token();
        let tickets = Arc::new(TicketKey::generate(&mut rand::rng()));
        let (addr, keyholder, bus, governance, gates) = rt.block_on(async {
            let options =
                MatcherOptions { gallery_dir: dir.join("galleries"), params: Params::DEFAULT, threads: 2, queue: 4 };
            let matcher =
                Matcher::start(&options, std::slice::from_ref(&venue), matcher_cancel.child_token(), &tracker)
                    .expect("matcher");
            let matcher_bus = connect(port, "matcher-portal", &matcher_cancel, &tracker).await;
            matcher.serve_mqtt(&matcher_bus, matcher_cancel.child_token(), &tracker).await.expect("serve");
            let bus = connect(port, "edge-portal", &cancel, &tracker).await;
            let keyholder = Arc::new(KeyHolder::generate(venue.clone(), Params::DEFAULT, 0.45).expect("key"));
            let audit = Arc::new(AuditLog::open(&dir.join("audit")).expect("audit log"));
            let (subjects, _) = SubjectStore::open(&dir.join("subjects"), |_| false).expect("subject store");
            let governance = Governance {
                consent: Arc::new(Mutex::new(ConsentRegistry::new())),
                audit: Some(audit),
                subjects: Some(Arc::new(Mutex::new(subjects))),
            };
            let config = passage_config::Config::default();
            let arena = config.venues.iter().find(|v| v.id == venue).expect("demo venue");
            let venues = BTreeMap::from([(
                venue.clone(),
                PortalVenue {
                    name: arena.name.clone(),
                    notice: passage_dpia::privacy_notice(&config, arena),
                    keyholder: keyholder.clone(),
                    bus: bus.clone(),
                    tickets: Some(tickets.clone()),
                },
            )]);
            let notices = Arc::new(Notices::new(24 * 3600));
            let gate_faces = faces.clone().map(|pipeline| {
                Box::new(move || FaceStage::new(pipeline.clone(), stage.clone())) as Box<dyn Fn() -> FaceStage + Send>
            });
            let gates = Gates::new(
                arena,
                config.matching.mode,
                GateParts {
                    keyholder: keyholder.clone(),
                    bus: bus.clone(),
                    governance: governance.clone(),
                    tickets: tickets.clone(),
                    notices: notices.clone(),
                    faces: gate_faces,
                    // Evidence mode whenever the rig has faces (the gate test checks it).
                    evidence: faces.as_ref().map(|_| passage_edge::evidence::GateEvidence {
                        store: passage_edge::evidence::EvidenceStore::open(
                            &dir.join("evidence"),
                            Duration::from_secs(6 * 3600),
                            std::time::SystemTime::now(),
                        )
                        .expect("evidence store"),
                        anonymiser: Arc::new(
                            passage_vision::anonymize::Anonymiser::load(&models(), Default::default())
                                .expect("anonymiser"),
                        ),
                    }),
                },
                GateSettings {
                    display: Duration::from_secs(1),
                    retry_pause: Duration::from_secs(1),
                    ..GateSettings::default()
                },
                &tracker,
            );
            gates.follow_capacity_alerts(cancel.child_token(), &tracker).await.expect("capacity alerts followed");
            let portal = Portal::new(venues, governance.clone(), faces, Some(dir.join("portal-keys.json")), notices)
                .expect("portal");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let router = portal::app(portal).merge(kiosk::app(Kiosks::new([gates.clone()], INPUT_KEY)));
            let service = router.into_make_service_with_connect_info::<SocketAddr>();
            let stop = cancel.child_token();
            tracker.spawn(async move {
                let _ = axum::serve(listener, service).with_graceful_shutdown(stop.cancelled_owned()).await;
            });
            (addr, keyholder, bus, governance, gates)
        });
        Rig {
            rt,
            cancel,
            matcher_cancel,
            tracker,
            addr,
            keyholder,
            bus,
            governance,
            gates,
            tickets,
            input_key: INPUT_KEY.to_owned(),
            _broker: broker,
        }
    }

    /// A ticket code for `zones` of the arena, valid from `from` to `until` (Unix seconds).
    pub(crate) fn ticket(&self, id: &str, zones: &[&str], from: i64, until: i64) -> String {
        let ticket = Ticket {
            id: id.into(),
            venue: "arena".into(),
            zones: zones.iter().map(|z| (*z).to_owned()).collect(),
            not_before: from,
            not_after: until,
        };
        self.tickets.issue(&ticket).expect("ticket issued")
    }

    pub(crate) fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), self.tracker.wait()).await.expect("tasks stop");
        });
    }
}

#[test]
fn a_visitor_registers_with_a_photo_is_recognised_exports_withdraws_and_erases() {
    if !media_present() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let config = PipelineConfig { liveness: false, ..PipelineConfig::default() };
    let faces = FacePipeline::load(&models(), config).expect("models load");
    let rig = Rig::start(dir.path(), Some(faces.clone()));
    let addr = rig.addr;

    let (status, head, page) = http(addr, "GET", "/", None, None);
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("content-security-policy: default-src 'none'; script-src 'self'"));
    assert!(String::from_utf8_lossy(&page).contains("id=\"consent\""));
    let (status, _, body) = http(addr, "GET", "/api/v1/venues", None, None);
    assert_eq!(status, 200);
    let venues = json_of(&body);
    let version = venues["venues"][0]["notice_version"].clone();
    assert!(venues["venues"][0]["notice"]["de"]["paragraphs"][0].as_str().is_some_and(|p| p.contains("Kameras")));

    // Bad input first: nothing is enrolled by any of these.
    let obama = photo("obama.jpg");
    let (status, _, body) =
        http(addr, "POST", "/api/v1/register", None, Some(&registration(&version, &obama, false, "", "")));
    assert_eq!(status, 422, "no consent: {}", String::from_utf8_lossy(&body));
    let stale = json!(version.as_u64().expect("u32") ^ 1);
    let (status, _, _) =
        http(addr, "POST", "/api/v1/register", None, Some(&registration(&stale, &obama, true, "", "")));
    assert_eq!(status, 409, "a notice the visitor did not read");
    let group = photo("sample4.jpg");
    let (status, _, body) =
        http(addr, "POST", "/api/v1/register", None, Some(&registration(&version, &group, true, "", "")));
    assert_eq!(status, 422);
    assert!(json_of(&body)["error"].as_str().is_some_and(|e| e.contains("more than one face")));
    let (status, _, _) = http(addr, "POST", "/api/v1/register", None, Some(b"{\"venue\":"));
    assert_eq!(status, 400);
    let not_an_image = base64::engine::general_purpose::STANDARD.encode(b"GIF89a not a photo");
    let (status, _, _) =
        http(addr, "POST", "/api/v1/register", None, Some(&registration(&version, &not_an_image, true, "", "")));
    assert_eq!(status, 422);
    let huge = vec![b'A'; portal::MAX_PHOTO_BYTES * 2];
    let (status, _, _) = http(addr, "POST", "/api/v1/register", None, Some(&huge));
    assert_eq!(status, 413);
    let enrolled = rig.rt.block_on(rig.keyholder.enrolled_subjects(&rig.bus)).expect("index");
    assert!(enrolled.is_empty(), "nothing enrolled by refused registrations");

    // Two visitors register.
    let (contact, ticket) = ("push:obama-phone-7731", rig.ticket("T-ARENA-0042", &[], 1_700_000_000, 4_000_000_000));
    let ticket = ticket.as_str();
    let (status, _, body) =
        http(addr, "POST", "/api/v1/register", None, Some(&registration(&version, &obama, true, contact, ticket)));
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let registered = json_of(&body);
    let key = registered["access_key"].as_str().expect("access key").to_owned();
    let subject = Id::new(registered["subject"].as_str().expect("subject")).expect("pseudonym");
    assert!(key.len() >= 43, "at least 256 bits");
    let (status, _, body) =
        http(addr, "POST", "/api/v1/register", None, Some(&registration(&version, &photo("biden.jpg"), true, "", "")));
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));

    // The gate recognises another photo of the first visitor under encryption.
    let probe = {
        let image =
            passage_vision::decode::decode(&std::fs::read(image_path("obama3.jpg")).expect("read")).expect("decode");
        let (found, _) = faces.process(&image.rgb, image.w, image.h).expect("processes");
        found.into_iter().find_map(|f| f.embedding).expect("a face").as_slice().to_vec()
    };
    let gate = Id::new("north-1").expect("id");
    let got = rig.rt.block_on(rig.keyholder.identify(&rig.bus, &gate, &probe)).expect("answered");
    assert_eq!(got, Identification::Match(subject.clone()));
    let (venue, purpose) = (Id::new("arena").expect("id"), Id::new(FACE_ACCESS).expect("id"));
    assert!(rig.governance.consent.lock().expect("lock").allows(&subject, &venue, &purpose));

    // Keys: missing, forged, then the real one.
    assert_eq!(http(addr, "GET", "/api/v1/me", None, None).0, 401);
    assert_eq!(http(addr, "GET", "/api/v1/me", Some("forged-key"), None).0, 401);
    let (status, head, body) = http(addr, "GET", "/api/v1/me", Some(&key), None);
    assert_eq!(status, 200);
    assert!(head.contains("passage-my-data.json"));
    let bundle = json_of(&body);
    assert_eq!(bundle["subject"], subject.as_str());
    let kinds: Vec<&str> =
        bundle["records"].as_array().expect("records").iter().filter_map(|r| r["kind"].as_str()).collect();
    assert_eq!(kinds, ["consent", "contact", "ticket"]);
    assert_eq!(bundle["records"][1]["value"], contact);
    assert_eq!(bundle["venues"][0]["encrypted_template_stored_at_matcher"], true);
    assert_eq!(bundle["venues"][0]["face_access_consent_active"], true);
    let actions: Vec<&str> =
        bundle["history"].as_array().expect("history").iter().filter_map(|h| h["action"].as_str()).collect();
    assert!(actions.contains(&"consent.grant") && actions.contains(&"template.enrol"), "{actions:?}");

    // Withdrawal: the template is gone before the answer, so the next match is impossible.
    let (status, _, _) = http(addr, "POST", "/api/v1/me/withdraw", Some(&key), Some(b"{\"venue\":\"hall\"}"));
    assert_eq!(status, 403, "not registered at that venue");
    let (status, _, body) = http(addr, "POST", "/api/v1/me/withdraw", Some(&key), Some(b"{\"venue\":\"arena\"}"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json_of(&body)["template_erased"], true);
    let got = rig.rt.block_on(rig.keyholder.identify(&rig.bus, &gate, &probe)).expect("answered");
    assert_eq!(got, Identification::NoMatch, "withdrawn: no template to match");
    assert!(!rig.governance.consent.lock().expect("lock").allows(&subject, &venue, &purpose));
    let bundle = json_of(&http(addr, "GET", "/api/v1/me", Some(&key), None).2);
    assert_eq!(bundle["venues"][0]["encrypted_template_stored_at_matcher"], false);
    assert_eq!(bundle["records"][3]["granted"], false, "the withdrawal is kept as evidence");

    // Erasure: every store, then the key stops working.
    let (status, _, body) = http(addr, "POST", "/api/v1/me/erase", Some(&key), None);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json_of(&body)["records_shredded"], 4);
    assert_eq!(http(addr, "GET", "/api/v1/me", Some(&key), None).0, 401, "the access key is revoked");
    let audit = rig.governance.audit.clone().expect("audit");
    rig.stop();
    let mut files = Vec::new();
    all_bytes(dir.path(), &mut files);
    for secret in [contact.as_bytes(), ticket.as_bytes(), key.as_bytes()] {
        assert!(!contains(&files, secret), "{} readable after erasure", String::from_utf8_lossy(secret));
    }
    let verified = audit.verify(None).expect("the audit log verifies");
    assert!(verified.entries >= 10);
    let entries = passage_policy::audit::read(audit.dir(), usize::MAX, |_| true).expect("read");
    let ours: Vec<&str> = entries
        .iter()
        .filter(|e| e.event.subject.as_deref() == Some(subject.as_str()))
        .map(|e| e.event.action.as_str())
        .collect();
    for action in
        ["consent.grant", "template.enrol", "subject.export", "consent.withdraw", "template.erase", "subject.erased"]
    {
        assert!(ours.contains(&action), "{action} not audited: {ours:?}");
    }
    // The log holds the pseudonym only, never what the visitor gave.
    let log = std::fs::read(audit.dir().join("audit.jsonl")).unwrap_or_default();
    assert!(!contains(&log, contact.as_bytes()) && !contains(&log, ticket.as_bytes()));
}

#[test]
fn registrations_and_bad_access_keys_are_rate_limited_per_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No face models: registrations are refused (503) after the rate limit's check.
    let rig = Rig::start(dir.path(), None);
    let addr = rig.addr;
    let version = json_of(&http(addr, "GET", "/api/v1/venues", None, None).2)["venues"][0]["notice_version"].clone();
    let body = registration(&version, "AAAA", true, "", "");
    for _ in 0..portal::REGISTRATIONS_PER_WINDOW {
        assert_eq!(http(addr, "POST", "/api/v1/register", None, Some(&body)).0, 503);
    }
    let (status, head, _) = http(addr, "POST", "/api/v1/register", None, Some(&body));
    assert_eq!(status, 429);
    assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
    for _ in 0..portal::BAD_KEYS_PER_WINDOW {
        assert_eq!(http(addr, "GET", "/api/v1/me", Some("guess"), None).0, 401);
    }
    assert_eq!(http(addr, "GET", "/api/v1/me", Some("guess"), None).0, 429);
    rig.stop();
}

/// The registration page in headless Chromium against `passage demo` (real broker through the
/// device gateway, matcher, face models): register with a photo, export, withdraw, erase
/// (tests/browser/portal.mjs); then, with the demo stopped, nothing the visitor typed is left
/// in any file of its data directory.
#[test]
fn the_registration_page_works_in_chromium_and_erasure_leaves_nothing_readable() {
    if !crate::support::browser_available() || !media_present() {
        return;
    }
    let data = tempfile::tempdir().expect("tempdir");
    let (demo, url, lines) = crate::support::start_demo(
        &["--exit-after", "150", "--ephemeral-ports", "--visitors", "2", "--gate-every", "5"],
        data.path(),
        "portal:",
    );
    std::thread::spawn(move || for _ in lines {});
    // The box office issues the visitor's ticket with the demo's ticket key.
    let ticket = crate::support::issue_ticket(data.path(), &["--id", "T-ARENA-7781"]);
    let (contact, ticket) = ("push:browser-visitor-5521", ticket.as_str());
    let artifacts = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("portal-screenshots");
    std::fs::create_dir_all(&artifacts).expect("artifact dir");
    let (photo, group) = (image_path("obama.jpg"), image_path("sample4.jpg"));
    let args: [&std::ffi::OsStr; 12] = [
        "--url".as_ref(),
        url.as_ref(),
        "--contact".as_ref(),
        contact.as_ref(),
        "--ticket".as_ref(),
        ticket.as_ref(),
        "--photo".as_ref(),
        photo.as_ref(),
        "--group".as_ref(),
        group.as_ref(),
        "--out".as_ref(),
        artifacts.as_ref(),
    ];
    let result = crate::support::run_browser_check("portal.mjs", args, demo);
    assert_eq!(result["shredded"], 4, "consent, contact, ticket and the withdrawal: {result}");
    let mut files = Vec::new();
    all_bytes(data.path(), &mut files);
    for secret in [contact, ticket] {
        assert!(!contains(&files, secret.as_bytes()), "{secret} is readable in the demo's files after erasure");
    }
    crate::support::validate_html("edge-agent/src/portal/page.html");
    eprintln!("portal screenshots: {}", artifacts.display());
}
