//! `passage keys`: the encrypted key store and key rotation, the CLI against a real broker and
//! matcher on loopback.

use std::process::{Command, Output};
use std::sync::Arc;

use passage_edge::keyholder::{Identification, KeyHolder};
use passage_edge::keystore::KeyStore;
use passage_edge::sim::FaceSimulator;
use passage_fhe::Params;
use passage_matcher::{Matcher, MatcherOptions};
use passage_transport::EmbeddedBroker;
use passage_wire::{EnrolStatus, Id, MatchMode};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::support::{connect, runtime};

const PASS: &str = "integration passphrase";

fn id(s: &str) -> Id {
    Id::new(s).expect("valid id")
}

async fn passage(args: &[&str], config: &std::path::Path, passphrase: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_passage"));
    command.arg("keys").args(args).arg("--config").arg(config).env("PASSAGE_KEY_PASSPHRASE", passphrase);
    command.env("PASSAGE_LOG", "warn");
    tokio::task::spawn_blocking(move || command.output().expect("passage runs")).await.expect("joined")
}

#[test]
fn keys_are_stored_encrypted_and_rotation_forces_re_enrolment() {
    let broker = EmbeddedBroker::start(0).expect("embedded broker");
    let data = tempfile::tempdir().expect("tempdir");
    let mut config = passage_config::Config::default();
    config.deployment.data_dir = Some(data.path().to_owned());
    config.broker.embedded = false;
    config.broker.port = broker.addr().port();
    let config_path = data.path().join("passage.toml");
    std::fs::write(&config_path, toml::to_string(&config).expect("serialise")).expect("write config");
    let venue = id("arena");

    runtime().block_on(async {
        let out = passage(&["init", "--venue", "arena"], &config_path, PASS).await;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let out = passage(&["init", "--venue", "arena"], &config_path, PASS).await;
        assert!(!out.status.success(), "a second init must not overwrite the key");
        assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let options = MatcherOptions {
            gallery_dir: data.path().join("galleries"),
            params: Params::DEFAULT,
            threads: 2,
            queue: 8,
        };
        std::fs::create_dir_all(&options.gallery_dir).expect("gallery dir");
        let matcher =
            Matcher::start(&options, std::slice::from_ref(&venue), cancel.child_token(), &tracker).expect("matcher");
        let bus = connect(broker.addr().port(), "matcher", &cancel, &tracker).await;
        matcher.serve_mqtt(&bus, cancel.child_token(), &tracker).await.expect("serve");
        let gate = connect(broker.addr().port(), "gate", &cancel, &tracker).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;

        let store = KeyStore::open(&data.path().join("keys")).expect("store");
        let old_key = store.load(&venue, Params::DEFAULT, PASS).expect("the CLI's key loads");
        let old_bytes = old_key.to_bytes().to_vec();
        let holder = Arc::new(KeyHolder::from_key(venue.clone(), old_key, 0.5).expect("holder"));
        let mut faces = FaceSimulator::new(5, 128);
        let people: Vec<(Id, Vec<f32>)> = (0..3).map(|i| (id(&format!("p{i}")), faces.identity())).collect();
        for (subject, identity) in &people {
            let response = holder.enrol(&gate, subject, &faces.observe(identity)).await.expect("enrol");
            assert_eq!(response.status, EnrolStatus::Ok);
        }
        let got = holder.identify(&gate, &id("north-1"), &faces.observe(&people[1].1)).await.expect("answered");
        assert_eq!(got, Identification::Match(people[1].0.clone()));

        // A wrong passphrase stops the rotation before anything changes.
        let out = passage(&["rotate", "--venue", "arena"], &config_path, "not the passphrase").await;
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"), "{out:?}");
        assert_eq!(matcher.gallery_len(&venue), Some(3));

        let out = passage(&["rotate", "--venue", "arena"], &config_path, PASS).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("3 template(s) erased"), "{stdout}");
        assert!(stdout.contains("new decision key published"), "{stdout}");
        assert_eq!(matcher.gallery_len(&venue), Some(0), "every template made under the old key is gone");
        assert!(matcher.has_decision_key(&venue));

        // The new key differs, and the subjects re-enrol under it; decision mode works with the
        // decision key the rotation published.
        let new_key = store.load(&venue, Params::DEFAULT, PASS).expect("new key");
        assert_ne!(new_key.to_bytes().to_vec(), old_bytes);
        let holder = KeyHolder::from_key(venue.clone(), new_key, 0.5).expect("holder");
        for (subject, identity) in &people {
            let response = holder.enrol(&gate, subject, &faces.observe(identity)).await.expect("enrol");
            assert_eq!(response.status, EnrolStatus::Ok);
        }
        let got = holder
            .identify_with(&gate, &id("east-1"), &faces.observe(&people[2].1), MatchMode::Decision)
            .await
            .expect("answered");
        assert_eq!(got, Identification::Match(people[2].0.clone()));
        let names: Vec<String> = std::fs::read_dir(data.path().join("keys"))
            .expect("keys dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["arena.key"], "no old or temporary key file is left");

        let out = passage(&["destroy", "--venue", "arena"], &config_path, PASS).await;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(!store.exists(&venue));

        cancel.cancel();
        tracker.close();
        tracker.wait().await;
    });
}
