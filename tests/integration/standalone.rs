//! The standalone commands of a deployment, as separate processes on a real Mosquitto:
//! `passage matcher serve` (persistent galleries, killed with SIGKILL and restarted) and
//! `passage enrol` at a registration desk (a real photo, and an embedding file), then a real
//! probe photo identified under encryption by a key holder using the same key-store key.

use std::io::{BufReader, Lines};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output};
use std::sync::Arc;

use passage_edge::agents::Governance;
use passage_edge::keyholder::{Identification, KeyHolder};
use passage_edge::keystore::KeyStore;
use passage_fhe::Params;
use passage_policy::audit::AuditLog;
use passage_vision::face::{FacePipeline, PipelineConfig};
use passage_wire::Id;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::faces::{image_path, media_present, models};
use crate::pki::Pki;
use crate::portal::{all_bytes, contains};
use crate::support::{connect, runtime, spawn_until, Mosquitto};

const PASS: &str = "desk passphrase 2026";
const FORM: &str = "FORM-2026-0042-DESK";
const FORM_2: &str = "FORM-2026-0043-DESK";

fn passage(args: &[&str], config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_passage"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("PASSAGE_KEY_PASSPHRASE", PASS)
        .env("PASSAGE_LOG", "warn")
        .env("PASSAGE_MODELS", models())
        .output()
        .expect("passage runs")
}

/// The built-in deployment with its data in `data` and the broker on loopback `port`, changed
/// by `adjust`, written to `{data}/passage.toml`.
fn deployment(
    data: &Path,
    port: u16,
    adjust: impl FnOnce(&mut passage_config::Config),
) -> (passage_config::Config, std::path::PathBuf) {
    let mut config = passage_config::Config::default();
    config.deployment.data_dir = Some(data.to_owned());
    config.broker.embedded = false;
    config.broker.port = port;
    adjust(&mut config);
    let path = data.join("passage.toml");
    std::fs::write(&path, toml::to_string(&config).expect("serialise")).expect("write config");
    (config, path)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `passage matcher serve`, up to its "answering" line (the rest of its output is kept open).
fn start_matcher(config: &Path) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_passage"));
    command.args(["matcher", "serve", "--config"]).arg(config);
    let (child, _, lines) = spawn_until(command, "matcher answering on the broker");
    (child, lines)
}

fn kill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn enrolled_subject(out: &Output) -> Id {
    assert!(out.status.success(), "passage enrol failed: {}", stderr(out));
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(line["enrolled"], true);
    Id::new(line["subject"].as_str().expect("a subject")).expect("a valid pseudonym")
}

#[test]
fn the_standalone_matcher_and_desk_enrolment_identify_a_real_face() {
    if !media_present() {
        return;
    }
    let broker = Mosquitto::start();
    let data = tempfile::tempdir().expect("tempdir");
    let (config, config_path) = deployment(data.path(), broker.port, |c| c.matching.threads = 2);
    let venue_config = config.venues.first().expect("a venue").clone();
    let venue = venue_config.id.clone();
    let v = venue.as_str();

    let out = passage(&["keys", "init", "--venue", v], &config_path);
    assert!(out.status.success(), "{}", stderr(&out));
    let (matcher, _lines) = start_matcher(&config_path);

    // A real enrolment photo with the form's reference.
    let photo = image_path("obama.jpg");
    let photo = photo.to_str().expect("utf-8 path");
    let out = passage(&["enrol", "--venue", v, "--photo", photo, "--consent-ref", FORM], &config_path);
    let obama = enrolled_subject(&out);

    // An embedding file (as `passage embed` prints it) enrols a second subject.
    let pipeline = FacePipeline::load(
        &models(),
        PipelineConfig { liveness: false, ..passage_edge::face::pipeline_config(&config.faces) },
    )
    .expect("models load");
    let embed = |name: &str| {
        let bytes = std::fs::read(image_path(name)).expect("photo");
        passage_edge::face::enrolment_embedding(&pipeline, &bytes).expect("one face")
    };
    let biden_file = data.path().join("biden.json");
    let line = serde_json::json!({ "box": [0, 0, 1, 1], "embedding": embed("biden.jpg").as_slice() });
    std::fs::write(&biden_file, line.to_string()).expect("write");
    let file = biden_file.to_str().expect("utf-8 path");
    let out = passage(&["enrol", "--venue", v, "--embedding", file, "--consent-ref", FORM_2], &config_path);
    let biden = enrolled_subject(&out);
    std::fs::remove_file(&biden_file).expect("the test's own embedding file goes");

    // Bad input: each refused with a clear error, nothing enrolled.
    let group = image_path("sample4.jpg");
    let not_image = config_path.to_str().expect("utf-8 path");
    let wrong_dim = data.path().join("short.json");
    std::fs::write(&wrong_dim, "[0.5, 0.5]").expect("write");
    let refusals: [(&[&str], &str); 7] = [
        (&["--venue", v, "--consent-ref", "F-X", "--photo", group.to_str().expect("path")], "more than one face"),
        (&["--venue", v, "--consent-ref", "F-X", "--photo", not_image], "the photo"),
        (&["--venue", v, "--consent-ref", "F-X", "--photo", photo, "--notice-version", "1"], "current notice"),
        (&["--venue", v, "--consent-ref", " ", "--photo", photo], "--consent-ref"),
        (&["--venue", v, "--consent-ref", "F-X", "--embedding", not_image], "is not JSON"),
        (&["--venue", v, "--consent-ref", "F-X", "--embedding", wrong_dim.to_str().expect("path")], "has 2 values"),
        (&["--venue", "nowhere", "--consent-ref", "F-X", "--photo", photo], "not in the configuration"),
    ];
    for (args, expected) in refusals {
        let out = passage(&[&["enrol"], args].concat(), &config_path);
        assert!(!out.status.success(), "{args:?} must be refused");
        assert!(stderr(&out).contains(expected), "{args:?}: {}", stderr(&out));
    }

    // While another process holds the edge's audit log (a running edge agent), the desk is
    // sent to the portal rather than writing beside it.
    {
        let _held = AuditLog::open(&data.path().join("audit")).expect("audit log");
        let out = passage(&["enrol", "--venue", v, "--photo", photo, "--consent-ref", "F-4"], &config_path);
        assert!(stderr(&out).contains("edge agent is running"), "{}", stderr(&out));
    }

    runtime().block_on(async {
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let gate = connect(broker.port, "gate", &cancel, &tracker).await;
        let key =
            KeyStore::open(&data.path().join("keys")).expect("store").load(&venue, Params::DEFAULT, PASS).expect("key");
        let holder = Arc::new(KeyHolder::from_key(venue.clone(), key, config.matching.threshold).expect("holder"));
        let north = Id::new("north-1").expect("id");
        assert_eq!(holder.enrolled_subjects(&gate).await.expect("index").len(), 2, "refused enrolments left nothing");
        let probe = embed("obama2.jpg");
        let got = holder.identify(&gate, &north, probe.as_slice()).await.expect("answered");
        assert_eq!(got, Identification::Match(obama.clone()), "another photo of the enrolled face matches");

        // SIGKILL the matcher and start it again: the gallery is back from disk.
        kill(matcher);
        let (matcher, _lines) = start_matcher(&config_path);
        let mut subjects = holder.enrolled_subjects(&gate).await.expect("index after restart");
        subjects.sort();
        let mut expected = vec![obama.clone(), biden.clone()];
        expected.sort();
        assert_eq!(subjects, expected);
        let got = holder.identify(&gate, &north, embed("biden.jpg").as_slice()).await.expect("answered");
        assert_eq!(got, Identification::Match(biden.clone()));
        let got = holder.identify(&gate, &north, embed("obama3.jpg").as_slice()).await.expect("answered");
        assert_eq!(got, Identification::Match(obama.clone()));
        kill(matcher);
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
    });

    // The consent given at the desk counts when the edge agent opens its stores, the audit
    // log verifies and records both steps, and the form's reference is not readable at rest.
    let audit = Arc::new(AuditLog::open(&data.path().join("audit")).expect("audit log"));
    let verified = audit.verify(None).expect("the audit log verifies");
    assert!(verified.entries >= 4, "{verified:?}");
    let entries =
        passage_policy::audit::read(audit.dir(), usize::MAX, |e| e.event.subject.as_deref() == Some(obama.as_str()))
            .expect("read");
    let actions: Vec<&str> = entries.iter().map(|e| e.event.action.as_str()).collect();
    assert_eq!(actions, ["consent.grant", "template.enrol"]);
    let notice = passage_dpia::privacy_notice(&config, &venue_config).version;
    let governance = Governance::open(&data.path().join("subjects"), audit, [(venue.clone(), notice)]).expect("open");
    let purpose = Id::new(passage_edge::agents::FACE_ACCESS).expect("id");
    assert!(governance.consent.lock().expect("lock").allows(&obama, &venue, &purpose));
    let mut bytes = Vec::new();
    all_bytes(data.path(), &mut bytes);
    for secret in [FORM, FORM_2] {
        assert!(!contains(&bytes, secret.as_bytes()), "a consent form reference is readable in the data directory");
    }
}

/// A GET over TLS (the CA `ca`, as `identity` when given); the status and the whole response,
/// or `None` when the handshake or the request fails.
pub(crate) async fn https_get(
    addr: &str,
    ca: &str,
    identity: Option<(&str, &str)>,
    path: &str,
) -> Option<(u16, String)> {
    https(addr, ca, identity, &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")).await
}

/// One raw HTTP/1.1 `request` over TLS; the status and the whole response.
pub(crate) async fn https(
    addr: &str,
    ca: &str,
    identity: Option<(&str, &str)>,
    request: &str,
) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let client = passage_transport::client_config(ca, identity).ok()?;
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").ok()?;
    let mut stream = tokio_rustls::TlsConnector::from(client).connect(name, tcp).await.ok()?;
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    Some((status, text))
}

#[test]
fn the_standalone_matcher_and_desk_enrolment_work_over_a_tls_broker_with_device_certificates() {
    let data = tempfile::tempdir().expect("tempdir");
    let pki = Pki::init_at(data.path().join("pki"));
    let broker_cert = pki.issue(&["server", "--name", "broker", "--host", "127.0.0.1"]);
    pki.issue(&["server", "--name", "matcher", "--host", "127.0.0.1"]);
    pki.issue(&["issue", "service:matcher"]);
    let edge = pki.issue(&["issue", "edge:arena"]);
    let broker = pki.mosquitto(&broker_cert);
    let d = pki.d();
    let free_port = || std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();

    let (config, config_path) =
        deployment(data.path(), broker.port, |c| c.http.matcher = format!("127.0.0.1:{}", free_port()));
    let venue = Id::new("arena").expect("id");
    assert!(config.venues.iter().any(|v| v.id == venue), "the default deployment has the arena");

    let out = passage(&["keys", "init", "--venue", "arena"], &config_path);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut command = Command::new(env!("CARGO_BIN_EXE_passage"));
    command.args(["matcher", "serve", "--pki", d, "--config"]).arg(&config_path);
    let (matcher, api, _lines) = spawn_until(command, "matcher API on https://");
    let api = api.split('/').next().expect("an address").to_owned();

    let mut faces = passage_edge::sim::FaceSimulator::new(7, 128);
    let identity = faces.identity();
    let file = data.path().join("embedding.json");
    std::fs::write(&file, serde_json::to_string(&faces.observe(&identity)).expect("json")).expect("write");
    let file = file.to_str().expect("utf-8 path");
    let args = ["enrol", "--venue", "arena", "--embedding", file, "--consent-ref", FORM, "--pki", d];
    let subject = enrolled_subject(&passage(&args, &config_path));
    // Without a certificate the TLS broker is out of reach, and nothing is enrolled.
    let out = passage(&["enrol", "--venue", "arena", "--embedding", file, "--consent-ref", FORM], &config_path);
    assert!(!out.status.success() && stderr(&out).contains("cannot reach the broker"), "{}", stderr(&out));

    let ca = std::fs::read_to_string(pki.dir.join("ca.pem")).expect("ca");
    let (cert, cert_key) =
        (std::fs::read_to_string(&edge.0).expect("cert"), std::fs::read_to_string(&edge.1).expect("key"));
    runtime().block_on(async {
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let tls = passage_transport::client_config(&ca, Some((&cert, &cert_key))).expect("client tls");
        let bus_config = passage_transport::BusConfig {
            host: "127.0.0.1".into(),
            port: broker.port,
            client_id: "edge-arena-gate".into(),
        };
        let gate =
            passage_transport::Bus::connect_tls(bus_config, tls, cancel.child_token(), &tracker).await.expect("mTLS");
        let key =
            KeyStore::open(&data.path().join("keys")).expect("store").load(&venue, Params::DEFAULT, PASS).expect("key");
        let holder = KeyHolder::from_key(venue.clone(), key, config.matching.threshold).expect("holder");
        let got =
            holder.identify(&gate, &Id::new("east-1").expect("id"), &faces.observe(&identity)).await.expect("answer");
        assert_eq!(got, Identification::Match(subject.clone()));

        // The HTTPS API answers a device of the CA, and nobody without a certificate.
        let (status, body) = https_get(&api, &ca, Some((&cert, &cert_key)), "/api/v1/health").await.expect("answered");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"enrolments\":1"), "{body}");
        assert!(https_get(&api, &ca, None, "/api/v1/health").await.is_none(), "no certificate, no answer");
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
    });
    kill(matcher);
}

/// `passage matcher serve` killed with SIGKILL while enrolments stream in: restarted on the
/// same directory, its gallery loads, holds every enrolment it acknowledged and nothing it was
/// never sent, and those subjects are identified.
#[test]
fn a_matcher_killed_during_enrolment_restarts_with_a_consistent_gallery() {
    let broker = Mosquitto::start();
    let data = tempfile::tempdir().expect("tempdir");
    let (config, config_path) = deployment(data.path(), broker.port, |_| {});
    let venue = config.venues.first().expect("a venue").id.clone();
    let out = passage(&["keys", "init", "--venue", venue.as_str()], &config_path);
    assert!(out.status.success(), "{}", stderr(&out));
    let key =
        || KeyStore::open(&data.path().join("keys")).expect("store").load(&venue, Params::DEFAULT, PASS).expect("key");
    let (matcher, _lines) = start_matcher(&config_path);

    runtime().block_on(async {
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let gate = connect(broker.port, "edge-kill", &cancel, &tracker).await;
        let holder = Arc::new(
            KeyHolder::from_key(venue.clone(), key(), config.matching.threshold)
                .expect("holder")
                .with_timeout(std::time::Duration::from_secs(3)),
        );
        let mut faces = passage_edge::sim::FaceSimulator::new(11, 128);
        let people: Vec<(Id, Vec<f32>)> =
            (0..400).map(|i| (Id::new(&format!("p-{i:03}")).expect("id"), faces.identity())).collect();
        // Sixteen enrolments in flight; SIGKILL once 60 are acknowledged.
        let acknowledged = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut in_flight = tokio::task::JoinSet::new();
        let mut matcher = Some(matcher);
        let mut sent = 0;
        let mut people_left = people.iter();
        let mut enrol = |in_flight: &mut tokio::task::JoinSet<()>, (subject, identity): &(Id, Vec<f32>)| {
            let (holder, gate, acknowledged) = (holder.clone(), gate.clone(), acknowledged.clone());
            let (subject, face) = (subject.clone(), faces.observe(identity));
            in_flight.spawn(async move {
                if let Ok(response) = holder.enrol(&gate, &subject, &face).await {
                    if response.status == passage_wire::EnrolStatus::Ok {
                        acknowledged.lock().expect("lock").push(subject);
                    }
                }
            });
        };
        while let Some(person) = people_left.next() {
            if acknowledged.lock().expect("lock").len() >= 60 {
                // Sixteen more start right before the kill (each is encrypted first, which
                // takes milliseconds): whatever else is in flight, these are cut off.
                enrol(&mut in_flight, person);
                sent += 1;
                for person in people_left.by_ref().take(15) {
                    enrol(&mut in_flight, person);
                    sent += 1;
                }
                if let Some(child) = matcher.take() {
                    kill(child);
                }
                break;
            }
            enrol(&mut in_flight, person);
            sent += 1;
            while in_flight.len() >= 16 {
                in_flight.join_next().await;
            }
        }
        assert!(matcher.is_none(), "the matcher was killed while enrolments were in flight");
        while in_flight.join_next().await.is_some() {}
        let acknowledged = acknowledged.lock().expect("lock").clone();
        assert!(sent > acknowledged.len(), "some enrolments were cut off by the kill");

        let (matcher, _lines) = start_matcher(&config_path);
        let holder = KeyHolder::from_key(venue.clone(), key(), config.matching.threshold).expect("holder");
        let stored = holder.enrolled_subjects(&gate).await.expect("index after restart");
        let sent_ids: std::collections::HashSet<&Id> = people[..sent].iter().map(|(id, _)| id).collect();
        for subject in &acknowledged {
            assert!(stored.contains(subject), "{subject} was acknowledged but is gone after the kill");
        }
        assert!(stored.iter().all(|s| sent_ids.contains(s)), "the gallery holds a subject never sent");
        for subject in acknowledged.iter().take(3) {
            let identity = &people.iter().find(|(id, _)| id == subject).expect("known").1;
            let got = holder.identify(&gate, &Id::new("north-1").expect("id"), &faces.observe(identity)).await;
            assert_eq!(got.expect("answered"), Identification::Match(subject.clone()));
        }
        kill(matcher);
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
    });
}
