//! The MQTT layer and the encrypted-matching flow against the embedded broker and against a
//! real Mosquitto: the same components, unchanged.

use std::sync::Arc;
use std::time::Duration;

use passage_edge::keyholder::{Identification, KeyHolder, KeyHolderError};
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
