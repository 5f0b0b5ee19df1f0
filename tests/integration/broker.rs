//! The MQTT layer and the encrypted-matching flow against the embedded broker and against a
//! real Mosquitto: the same components, unchanged.

use std::sync::Arc;
use std::time::Duration;

use passage_edge::keyholder::{HttpsMatcher, Identification, KeyHolder, KeyHolderError};
use passage_edge::sim::FaceSimulator;
use passage_fhe::Params;
use passage_matcher::{Matcher, MatcherOptions};
use passage_transport::{EmbeddedBroker, QoS};
use passage_wire::{topics, CountRecord, EnrolStatus, Id, MatchMode, MatchStatus};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::support::{connect, runtime, Mosquitto};

fn id(s: &str) -> Id {
    Id::new(s).expect("valid id")
}

/// Publish/subscribe with wildcards and shared subscriptions, request/response, and a
/// count record decoded on the other side.
async fn pubsub_and_request_response(port: u16) {
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let a = connect(port, "a", &cancel, &tracker).await;
    let b = connect(port, "b", &cancel, &tracker).await;

    let mut counts =
        b.subscribe(&topics::shared("ingest", topics::COUNTS_FILTER), QoS::AtLeastOnce, 16).await.expect("subscribe");
    let mut requests = b.subscribe("passage/v1/+/match", QoS::AtLeastOnce, 16).await.expect("subscribe");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let record = CountRecord {
        v: 1,
        id: "rec-1".into(),
        venue: id("arena"),
        camera: id("cam-1"),
        start: 1_700_000_000,
        secs: 60,
        mechanism: passage_wire::NoiseMechanism::DiscreteLaplace,
        epsilon: 1.0,
        items: vec![],
    };
    a.publish(&topics::counts(&id("arena"), &id("cam-1")), QoS::AtLeastOnce, record.encode()).await.expect("publish");
    let got =
        tokio::time::timeout(Duration::from_secs(5), counts.recv()).await.expect("delivered in time").expect("open");
    assert_eq!(got.topic, "passage/v1/arena/counts/cam-1");
    assert_eq!(CountRecord::decode(&got.payload), Ok(record));

    let responder = b.clone();
    tracker.spawn(async move {
        while let Some(message) = requests.recv().await {
            let mut reply = b"echo:".to_vec();
            reply.extend_from_slice(&message.payload);
            responder.respond(&message, reply).await.expect("respond");
        }
    });
    for i in 0..3 {
        let reply = a
            .request("passage/v1/arena/match", format!("q{i}").into_bytes(), Duration::from_secs(5))
            .await
            .expect("reply");
        assert_eq!(&reply.payload[..], format!("echo:q{i}").as_bytes());
    }
    let unanswered = a.request("passage/v1/arena/nobody", b"?".to_vec(), Duration::from_millis(300)).await;
    assert!(matches!(unanswered, Err(passage_transport::BusError::Timeout { .. })), "{unanswered:?}");
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
}

/// Enrol encrypted templates and identify faces through the matcher over MQTT.
async fn encrypted_matching(port: u16) {
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let venue = id("arena");
    let options = MatcherOptions { gallery_dir: dir.path().to_owned(), params: Params::DEFAULT, threads: 2, queue: 4 };
    let matcher =
        Matcher::start(&options, std::slice::from_ref(&venue), cancel.child_token(), &tracker).expect("matcher");
    let matcher_bus = connect(port, "matcher", &cancel, &tracker).await;
    matcher.serve_mqtt(&matcher_bus, cancel.child_token(), &tracker).await.expect("serve");
    let gate_bus = connect(port, "gate", &cancel, &tracker).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let keyholder = Arc::new(KeyHolder::generate(venue.clone(), Params::DEFAULT, 0.5).expect("key"));
    let gate = id("north-1");
    let mut faces = FaceSimulator::new(7, 128);
    let people: Vec<(Id, Vec<f32>)> = (0..20).map(|i| (id(&format!("s{i}")), faces.identity())).collect();

    // An empty gallery answers "no match", not an error.
    let stranger = faces.identity();
    assert_eq!(
        keyholder.identify(&gate_bus, &gate, &faces.observe(&stranger)).await.expect("answered"),
        Identification::NoMatch
    );

    for (subject, identity) in &people {
        let response = keyholder.enrol(&gate_bus, subject, &faces.observe(identity)).await.expect("enrolled");
        assert_eq!(response.status, EnrolStatus::Ok, "{}", response.detail);
    }
    assert_eq!(matcher.gallery_len(&venue), Some(20));
    for (subject, identity) in people.iter().step_by(3) {
        let got = keyholder.identify(&gate_bus, &gate, &faces.observe(identity)).await.expect("answered");
        assert_eq!(got, Identification::Match(subject.clone()));
    }
    let got = keyholder.identify(&gate_bus, &gate, &faces.observe(&stranger)).await.expect("answered");
    assert_eq!(got, Identification::NoMatch);

    // Decision mode: refused until the key holder publishes its decision key, then the key
    // holder learns only which template matched.
    let (subject, identity) = &people[2];
    let refused = keyholder.identify_with(&gate_bus, &gate, &faces.observe(identity), MatchMode::Decision).await;
    assert!(matches!(refused, Err(KeyHolderError::Refused { status: MatchStatus::NoDecisionKey, .. })), "{refused:?}");
    keyholder.publish_decision_key(&gate_bus).await.expect("decision key installed");
    assert!(matcher.has_decision_key(&venue));
    for (subject, identity) in people.iter().step_by(5) {
        let got = keyholder
            .identify_with(&gate_bus, &gate, &faces.observe(identity), MatchMode::Decision)
            .await
            .expect("answered");
        assert_eq!(got, Identification::Match(subject.clone()));
    }
    let got = keyholder
        .identify_with(&gate_bus, &gate, &faces.observe(&stranger), MatchMode::Decision)
        .await
        .expect("answered");
    assert_eq!(got, Identification::NoMatch);
    // 1:1 verification (a ticket names the subject), in both modes.
    let (other, _) = &people[3];
    for mode in [MatchMode::Score, MatchMode::Decision] {
        assert!(keyholder.verify(&gate_bus, &gate, subject, &faces.observe(identity), mode).await.expect("answered"));
        assert!(!keyholder.verify(&gate_bus, &gate, other, &faces.observe(identity), mode).await.expect("answered"));
    }

    // Erasure: the subject can no longer be matched, and others still are (slots moved).
    let (erased, identity) = &people[4];
    assert!(matcher.erase(&venue, erased).expect("erased"));
    let got = keyholder.identify(&gate_bus, &gate, &faces.observe(identity)).await.expect("answered");
    assert_eq!(got, Identification::NoMatch);
    let (last, identity) = &people[19];
    let got = keyholder.identify(&gate_bus, &gate, &faces.observe(identity)).await.expect("answered");
    assert_eq!(got, Identification::Match(last.clone()));

    // The gallery reloads from disk identically after a restart.
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let reopened =
        Matcher::start(&options, std::slice::from_ref(&venue), cancel.child_token(), &tracker).expect("reopen");
    assert_eq!(reopened.gallery_len(&venue), Some(19));
    assert_eq!(reopened.index(&venue).map(|i| i.subjects.contains(erased)), Some(false));
    assert!(reopened.has_decision_key(&venue), "the decision key survives a restart");
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
}

#[test]
fn embedded_broker_carries_the_protocol() {
    let broker = EmbeddedBroker::start(0).expect("embedded broker");
    let rt = runtime();
    rt.block_on(pubsub_and_request_response(broker.addr().port()));
    rt.block_on(encrypted_matching(broker.addr().port()));
}

#[test]
fn mosquitto_carries_the_same_components_unchanged() {
    let mosquitto = Mosquitto::start();
    let rt = runtime();
    rt.block_on(pubsub_and_request_response(mosquitto.port));
    rt.block_on(encrypted_matching(mosquitto.port));
}

/// `[matching] link = "https"`: the key holder sends match requests straight to the matcher's
/// HTTPS API with the edge's client certificate (enrolment stays on the bus), and gets the same
/// answers as over the broker; without a certificate of the CA, or with the matcher gone, it
/// gets a clear error (the gate's "try again / use ticket"), never a match.
#[test]
fn the_key_holder_matches_over_the_matchers_https_api_with_mutual_tls() {
    use passage_policy::devices::Principal;
    use passage_policy::pki::{PkiDir, Subject};
    use passage_transport::{client_config, ClientAuth, PkiPem, ServerTls};

    let broker = EmbeddedBroker::start(0).expect("embedded broker");
    let rt = runtime();
    rt.block_on(async {
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let venue = id("arena");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
        let pki = PkiDir::new(dir.path().join("pki"));
        pki.init("test CA", now).expect("CA");
        let server = Subject::Server { name: "services".into(), hosts: vec!["127.0.0.1".into()] };
        let edge = Subject::Device(Principal::Edge { venue: venue.clone() });
        let pem = |subject: &Subject| {
            let (cert, key, _) = pki.issue(subject, now, 1, rand::random()).expect("issued");
            PkiPem::load(&pki, &cert, &key).expect("pem")
        };
        let server_pem = pem(&server);
        let edge_pem = pem(&edge);

        let options =
            MatcherOptions { gallery_dir: dir.path().join("galleries"), params: Params::DEFAULT, threads: 2, queue: 4 };
        let matcher =
            Matcher::start(&options, std::slice::from_ref(&venue), cancel.child_token(), &tracker).expect("matcher");
        let matcher_bus = connect(broker.addr().port(), "matcher", &cancel, &tracker).await;
        // The bus serves enrolment and the gallery index; it stops before the last matches.
        let mqtt = cancel.child_token();
        matcher.serve_mqtt(&matcher_bus, mqtt.clone(), &tracker).await.expect("serve");
        let tls = ServerTls::from_pki(&server_pem, ClientAuth::Required).expect("server TLS");
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let addr = passage_matcher::serve(listen, tls, matcher.clone(), cancel.child_token(), &tracker)
            .await
            .expect("matcher API");
        let base = format!("https://{addr}");
        let gate_bus = connect(broker.addr().port(), "gate", &cancel, &tracker).await;
        tokio::time::sleep(Duration::from_millis(300)).await;

        let edge_tls = client_config(&edge_pem.ca, Some((&edge_pem.cert, &edge_pem.key))).expect("client TLS");
        let client = passage_transport::https::client(&edge_tls).expect("client");
        // A short timeout: a match that went over the stopped bus would fail the test at once.
        let keyholder = KeyHolder::generate(venue.clone(), Params::DEFAULT, 0.5)
            .expect("key")
            .with_timeout(Duration::from_secs(5))
            .with_https_matcher(HttpsMatcher::new(client, &base));
        let gate = id("north-1");
        let mut faces = FaceSimulator::new(11, 128);
        let people: Vec<(Id, Vec<f32>)> = (0..12).map(|i| (id(&format!("s{i}")), faces.identity())).collect();
        let stranger = faces.identity();
        // An empty gallery: "no match" over HTTPS too (the matcher's 409 carries the frame).
        assert_eq!(
            keyholder.identify(&gate_bus, &gate, &faces.observe(&stranger)).await.expect("answered"),
            Identification::NoMatch
        );
        for (subject, identity) in &people {
            let response = keyholder.enrol(&gate_bus, subject, &faces.observe(identity)).await.expect("enrolled");
            assert_eq!(response.status, EnrolStatus::Ok, "{}", response.detail);
        }
        // The first match also caches the gallery index (read over the bus).
        let (first, identity) = &people[0];
        let got = keyholder.identify(&gate_bus, &gate, &faces.observe(identity)).await.expect("answered");
        assert_eq!(got, Identification::Match(first.clone()));
        let (subject, identity) = &people[5];
        assert!(keyholder
            .verify(&gate_bus, &gate, subject, &faces.observe(identity), MatchMode::Score)
            .await
            .expect("answered"));
        // With the matcher off the bus, matches still arrive: they go over HTTPS.
        mqtt.cancel();
        tokio::time::sleep(Duration::from_millis(100)).await;
        for (subject, identity) in people.iter().skip(1).step_by(4) {
            let got = keyholder.identify(&gate_bus, &gate, &faces.observe(identity)).await.expect("answered");
            assert_eq!(got, Identification::Match(subject.clone()));
        }
        let got = keyholder.identify(&gate_bus, &gate, &faces.observe(&stranger)).await.expect("answered");
        assert_eq!(got, Identification::NoMatch);
        assert_eq!(matcher.stats().snapshot()["answered"], 6, "every match was evaluated");

        // A client without a certificate of the CA is refused at the handshake.
        let anonymous = client_config(&edge_pem.ca, None).expect("client TLS");
        let stranger_keyholder =
            KeyHolder::generate(venue.clone(), Params::DEFAULT, 0.5).expect("key").with_https_matcher(
                HttpsMatcher::new(passage_transport::https::client(&anonymous).expect("client"), &base),
            );
        let refused = stranger_keyholder.identify(&gate_bus, &gate, &faces.observe(identity)).await;
        assert!(matches!(refused, Err(KeyHolderError::Https(_))), "{refused:?}");

        // The matcher gone: a clear error within the timeout, never a match.
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
        let gone = keyholder.identify(&gate_bus, &gate, &faces.observe(identity)).await;
        assert!(matches!(gone, Err(KeyHolderError::Https(_))), "{gone:?}");
    });
}

#[test]
fn the_matcher_answers_busy_when_its_queue_is_full() {
    let broker = EmbeddedBroker::start(0).expect("embedded broker");
    let rt = runtime();
    rt.block_on(async {
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let venue = id("arena");
        let options =
            MatcherOptions { gallery_dir: dir.path().to_owned(), params: Params::DEFAULT, threads: 1, queue: 1 };
        let matcher =
            Matcher::start(&options, std::slice::from_ref(&venue), cancel.child_token(), &tracker).expect("matcher");
        let bus = connect(broker.addr().port(), "busy", &cancel, &tracker).await;
        matcher.serve_mqtt(&bus, cancel.child_token(), &tracker).await.expect("serve");
        let keyholder = KeyHolder::generate(venue.clone(), Params::DEFAULT, 0.5).expect("key");
        let mut faces = FaceSimulator::new(1, 128);
        for i in 0..64 {
            let identity = faces.identity();
            keyholder.enrol(&bus, &id(&format!("s{i}")), &identity).await.expect("enrol");
        }
        // Fire many requests at once straight at the matcher: with a queue of one, some must
        // be refused as busy, none may fail otherwise. The probes are encrypted first, so the
        // twelve submissions take microseconds while one evaluation takes milliseconds.
        let requests: Vec<_> =
            (0..12).map(|_| keyholder.probe_request(&id("g"), &faces.identity()).expect("probe")).collect();
        let handles: Vec<_> = requests
            .into_iter()
            .map(|request| {
                let m = matcher.clone();
                tokio::spawn(async move { m.handle_match(request).await.status })
            })
            .collect();
        let mut statuses = Vec::new();
        for h in handles {
            statuses.push(h.await.expect("task"));
        }
        assert!(statuses.contains(&passage_wire::MatchStatus::Busy), "{statuses:?}");
        assert!(statuses.contains(&passage_wire::MatchStatus::Ok), "{statuses:?}");
        assert!(statuses.iter().all(|s| matches!(s, passage_wire::MatchStatus::Busy | passage_wire::MatchStatus::Ok)));
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
    });
}
