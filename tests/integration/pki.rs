//! Device identity end to end: certificates from `passage pki`, the mTLS device gateway in
//! front of the embedded broker (and Mosquitto with the generated ACL), topic rules per
//! certificate, revocation.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use passage_transport::{client_config, Bus, BusConfig, EmbeddedBroker, Gateway, GatewayEvent, GatewayOptions, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::support::{runtime, Mosquitto};

fn passage(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_passage")).args(args).output().expect("passage runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "passage {args:?}: {}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// A PKI made with the CLI: the CA, a server certificate for 127.0.0.1 and device
/// certificates. Returns the paths `(cert, key)` per name.
pub(crate) struct Pki {
    pub(crate) dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Pki {
    fn new() -> Pki {
        let temp = tempfile::tempdir().expect("tempdir");
        let mut pki = Pki::init_at(temp.path().join("pki"));
        pki._temp = Some(temp);
        pki
    }

    /// A new CA in `dir` (a deployment's `{data_dir}/pki`, say).
    pub(crate) fn init_at(dir: PathBuf) -> Pki {
        passage(&["pki", "init", "--dir", dir.to_str().expect("utf-8")]);
        Pki { dir, _temp: None }
    }

    pub(crate) fn d(&self) -> &str {
        self.dir.to_str().expect("utf-8")
    }

    /// Writes the ACL of every certificate issued so far and starts Mosquitto on a free
    /// loopback port with TLS: `server`'s certificate, client certificates of this CA required
    /// (the CRL checked), the certificate's name as user, the ACL enforced.
    pub(crate) fn mosquitto(&self, server: &(PathBuf, PathBuf)) -> Mosquitto {
        let acl = self.dir.join("mosquitto.acl");
        passage(&["pki", "acl", "--dir", self.d(), "--out", acl.to_str().expect("utf-8")]);
        let settings = format!(
            "user root\nallow_anonymous false\ncafile {}\ncertfile {}\nkeyfile {}\ncrlfile {}\nrequire_certificate true\nuse_identity_as_username true\nacl_file {}\n",
            self.dir.join("ca.pem").display(),
            server.0.display(),
            server.1.display(),
            self.dir.join("crl.pem").display(),
            acl.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
        Mosquitto::start_with(port, &settings)
    }

    /// Issues and returns (cert, key) paths, read from the command's output.
    pub(crate) fn issue(&self, args: &[&str]) -> (PathBuf, PathBuf) {
        let mut all = vec!["pki"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--dir", self.d()]);
        let out = passage(&all);
        let path = |label: &str| {
            let line = out.lines().find(|l| l.trim_start().starts_with(label)).expect("path in the output");
            PathBuf::from(line.split_whitespace().nth(1).expect("a path"))
        };
        (path("certificate:"), path("key:"))
    }

    fn ca(&self) -> String {
        std::fs::read_to_string(self.dir.join("ca.pem")).expect("ca.pem")
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("readable")
}

async fn connect_as(
    port: u16,
    ca: &str,
    identity: Option<&(PathBuf, PathBuf)>,
    client_id: &str,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<Bus, String> {
    let (cert, key) = match identity {
        Some((cert, key)) => (Some(read(cert)), Some(read(key))),
        None => (None, None),
    };
    let identity = cert.as_deref().zip(key.as_deref());
    let tls = client_config(ca, identity).map_err(|e| e.to_string())?;
    let config = BusConfig { host: "127.0.0.1".into(), port, client_id: client_id.into() };
    Bus::connect_tls(config, tls, cancel.child_token(), tracker).await.map_err(|e| e.to_string())
}

/// The next refusal whose reason contains `what` (a misbehaving client retries, so the same
/// refusal can repeat; other events are skipped).
async fn refusal(events: &mut mpsc::UnboundedReceiver<GatewayEvent>, what: &str) -> Option<String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(GatewayEvent::Refused { principal, reason })) if reason.contains(what) => return principal,
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => panic!("no refusal containing {what:?} reported"),
        }
    }
}

async fn nothing_arrives(rx: &mut mpsc::Receiver<passage_transport::Message>) {
    if let Ok(Some(message)) = tokio::time::timeout(Duration::from_millis(800), rx.recv()).await {
        panic!("a refused message arrived on {}", message.topic);
    }
}

#[test]
fn the_gateway_enforces_certificates_topic_rules_and_revocation() {
    let pki = Pki::new();
    let server = pki.issue(&["server", "--name", "broker", "--host", "127.0.0.1", "--host", "localhost"]);
    let cam1 = pki.issue(&["issue", "camera:arena/cam-1"]);
    let cam2 = pki.issue(&["issue", "camera:arena/cam-2"]);
    let analytics = pki.issue(&["issue", "service:analytics"]);
    let ca = pki.ca();
    // A certificate from another CA, for the same principal.
    let foreign = Pki::new();
    let forged = foreign.issue(&["issue", "camera:arena/cam-1"]);

    let rt = runtime();
    rt.block_on(async {
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let broker = tokio::task::spawn_blocking(|| EmbeddedBroker::start(0)).await.expect("join").expect("broker");
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let options = GatewayOptions {
            listen: "127.0.0.1:0".parse().expect("addr"),
            upstream: broker.addr(),
            pki: pki.dir.clone(),
            server_cert: server.0.clone(),
            server_key: server.1.clone(),
        };
        let gateway = Gateway::start(options, Some(events_tx), cancel.child_token(), &tracker).await.expect("gateway");
        let port = gateway.local_addr().port();

        let sink = connect_as(port, &ca, Some(&analytics), "analytics-t", &cancel, &tracker).await.expect("analytics");
        let mut counts =
            sink.subscribe("$share/analytics/passage/v1/+/counts/+", QoS::AtLeastOnce, 16).await.expect("sub");

        // A camera publishes its own counts.
        let camera =
            connect_as(port, &ca, Some(&cam1), "camera-arena-cam-1-t", &cancel, &tracker).await.expect("cam-1");
        camera.publish("passage/v1/arena/counts/cam-1", QoS::AtLeastOnce, b"noised".to_vec()).await.expect("publish");
        let got =
            tokio::time::timeout(Duration::from_secs(10), counts.recv()).await.expect("in time").expect("message");
        assert_eq!(got.topic, "passage/v1/arena/counts/cam-1");

        // ... and cannot publish on another camera's topic: refused, never forwarded (the
        // client retries after each reconnect and is refused each time, so it is stopped).
        let forger_stop = cancel.child_token();
        let forger =
            connect_as(port, &ca, Some(&cam1), "camera-arena-cam-1-f", &forger_stop, &tracker).await.expect("cam-1");
        forger.publish("passage/v1/arena/counts/cam-2", QoS::AtLeastOnce, b"forged".to_vec()).await.expect("queued");
        let principal = refusal(&mut events, "publish on passage/v1/arena/counts/cam-2 not allowed").await;
        assert_eq!(principal.as_deref(), Some("camera:arena/cam-1"));
        nothing_arrives(&mut counts).await;
        forger_stop.cancel();

        // Nor read what is not its own.
        let snoop_stop = cancel.child_token();
        let snoop =
            connect_as(port, &ca, Some(&cam1), "camera-arena-cam-1-s", &snoop_stop, &tracker).await.expect("cam-1");
        let _ignored = snoop.subscribe("passage/v1/+/counts/+", QoS::AtLeastOnce, 4).await;
        refusal(&mut events, "subscription to passage/v1/+/counts/+ not allowed").await;
        snoop_stop.cancel();

        // A client id of another device is refused at CONNECT.
        let error =
            connect_as(port, &ca, Some(&cam2), "camera-arena-cam-1", &cancel, &tracker).await.expect_err("refused");
        assert!(error.contains("NotAuthorized"), "{error}");
        refusal(&mut events, "client id camera-arena-cam-1 is not bound").await;

        // No certificate, or one from another CA: the handshake fails.
        assert!(connect_as(port, &ca, None, "camera-arena-cam-1-x", &cancel, &tracker).await.is_err());
        assert_eq!(refusal(&mut events, "TLS handshake").await, None);
        assert!(connect_as(port, &ca, Some(&forged), "camera-arena-cam-1-x", &cancel, &tracker).await.is_err());
        assert_eq!(refusal(&mut events, "TLS handshake").await, None);

        // Garbage instead of MQTT: refused, and the gateway keeps serving.
        {
            let tls = client_config(&ca, Some((&read(&cam2.0), &read(&cam2.1)))).expect("tls");
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("tcp");
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
            let mut stream = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await.expect("handshake");
            use tokio::io::AsyncWriteExt;
            stream.write_all(&[0x10, 0xff, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3]).await.expect("write");
            refusal(&mut events, "malformed packet").await;
        }

        // Revocation: camera 2 is connected, then revoked. Its connection is closed and it
        // cannot connect again; camera 1 is unaffected.
        let cam2_bus =
            connect_as(port, &ca, Some(&cam2), "camera-arena-cam-2", &cancel, &tracker).await.expect("cam-2");
        cam2_bus.publish("passage/v1/arena/counts/cam-2", QoS::AtLeastOnce, b"ok".to_vec()).await.expect("publish");
        let got =
            tokio::time::timeout(Duration::from_secs(10), counts.recv()).await.expect("in time").expect("message");
        assert_eq!(got.topic, "passage/v1/arena/counts/cam-2");
        let out = passage(&["pki", "revoke", "camera:arena/cam-2", "--dir", pki.d()]);
        assert!(out.contains("revoked"), "{out}");
        let revoked = loop {
            match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
                Ok(Some(GatewayEvent::Revoked { principal })) => break principal,
                Ok(Some(_)) => continue,
                _ => panic!("the revoked device's connection was not closed"),
            }
        };
        assert_eq!(revoked, "camera:arena/cam-2");
        assert!(connect_as(port, &ca, Some(&cam2), "camera-arena-cam-2", &cancel, &tracker).await.is_err());
        camera.publish("passage/v1/arena/counts/cam-1", QoS::AtLeastOnce, b"still".to_vec()).await.expect("publish");
        let got = loop {
            let message =
                tokio::time::timeout(Duration::from_secs(10), counts.recv()).await.expect("in time").expect("message");
            if message.payload.as_ref() == b"still" {
                break message;
            }
        };
        assert_eq!(got.topic, "passage/v1/arena/counts/cam-1");

        cancel.cancel();
        tracker.close();
        tracker.wait().await;
    });
    let list = passage(&["pki", "list", "--dir", pki.d()]);
    assert!(list.lines().any(|l| l.contains("camera:arena/cam-2") && l.contains("revoked")), "{list}");
    assert!(list.lines().any(|l| l.contains("camera:arena/cam-1") && l.contains("valid")), "{list}");
}

#[test]
fn mosquitto_with_the_generated_acl_refuses_another_cameras_topic() {
    let pki = Pki::new();
    let server = pki.issue(&["server", "--name", "broker", "--host", "127.0.0.1"]);
    let cam1 = pki.issue(&["issue", "camera:arena/cam-1"]);
    let analytics = pki.issue(&["issue", "service:analytics"]);
    let mosquitto = pki.mosquitto(&server);
    let ca = pki.ca();
    let rt = runtime();
    rt.block_on(async {
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let sink =
            connect_as(mosquitto.port, &ca, Some(&analytics), "analytics-m", &cancel, &tracker).await.expect("sink");
        let mut counts = sink.subscribe("passage/v1/+/counts/+", QoS::AtLeastOnce, 16).await.expect("sub");
        let camera =
            connect_as(mosquitto.port, &ca, Some(&cam1), "camera-arena-cam-1", &cancel, &tracker).await.expect("cam");
        camera.publish("passage/v1/arena/counts/cam-2", QoS::AtLeastOnce, b"forged".to_vec()).await.expect("queued");
        camera.publish("passage/v1/arena/counts/cam-1", QoS::AtLeastOnce, b"own".to_vec()).await.expect("queued");
        let got =
            tokio::time::timeout(Duration::from_secs(10), counts.recv()).await.expect("in time").expect("message");
        assert_eq!((got.topic.as_str(), got.payload.as_ref()), ("passage/v1/arena/counts/cam-1", b"own".as_slice()));
        nothing_arrives(&mut counts).await;
        // Without a certificate Mosquitto refuses the handshake.
        assert!(connect_as(mosquitto.port, &ca, None, "camera-arena-cam-1-x", &cancel, &tracker).await.is_err());
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
    });
}

#[test]
fn https_listeners_that_require_client_certificates_check_the_crl() {
    let pki = Pki::new();
    let server = pki.issue(&["server", "--name", "services", "--host", "127.0.0.1"]);
    let gate = pki.issue(&["issue", "gate:arena/east-1"]);
    let ca = pki.ca();
    let serve_once = |pki: &Pki| {
        let material = passage_transport::PkiPem {
            ca: pki.ca(),
            crl: read(&pki.dir.join("crl.pem")),
            cert: read(&server.0),
            key: zeroize::Zeroizing::new(read(&server.1)),
        };
        // What the matcher API serves with in the demo.
        passage_transport::ServerTls::from_pki(&material, passage_transport::ClientAuth::Required).expect("tls")
    };
    let rt = runtime();
    let handshake = |tls: passage_transport::ServerTls, identity: Option<(String, String)>| {
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let port = listener.local_addr().expect("addr").port();
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
            let server = tokio::spawn(async move {
                let (tcp, _) = listener.accept().await.expect("accept");
                acceptor.accept(tcp).await.is_ok()
            });
            let client = client_config(&ca, identity.as_ref().map(|(c, k)| (c.as_str(), k.as_str()))).expect("client");
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("tcp");
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
            let mut stream = tokio_rustls::TlsConnector::from(client).connect(name, tcp).await;
            // TLS 1.3 reports a refused client certificate on the first read.
            if let Ok(stream) = stream.as_mut() {
                use tokio::io::AsyncReadExt;
                let mut byte = [0u8; 1];
                let _ = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut byte)).await;
            }
            server.await.expect("join")
        })
    };
    let with_cert = Some((read(&gate.0), read(&gate.1)));
    assert!(handshake(serve_once(&pki), with_cert.clone()), "a valid gate certificate is accepted");
    assert!(!handshake(serve_once(&pki), None), "no certificate, no connection");
    passage(&["pki", "revoke", "gate:arena/east-1", "--dir", pki.d()]);
    assert!(!handshake(serve_once(&pki), with_cert), "a revoked certificate is refused by the CRL");
}

/// `broker.tls` with an external broker: the whole demo (matcher, analytics, every venue's
/// edge agent) reaches Mosquitto over mTLS with the certificates of its data directory's CA,
/// under the generated ACL, and does its work: gate decisions answered, counts acknowledged.
#[test]
fn the_demo_reaches_an_external_mosquitto_over_mtls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let pki = Pki::init_at(data.join("pki"));
    let server = pki.issue(&["server", "--name", "broker", "--host", "127.0.0.1"]);
    let mut config = passage_config::Config::default();
    // The demo's own principals, issued before the ACL is written.
    let mut principals = vec!["service:matcher".to_owned(), "service:analytics".to_owned()];
    principals.extend(config.venues.iter().map(|v| format!("edge:{}", v.id)));
    for principal in &principals {
        pki.issue(&["issue", principal]);
    }
    let mosquitto = pki.mosquitto(&server);

    config.deployment.data_dir = Some(data.clone());
    config.broker.embedded = false;
    config.broker.tls = true;
    config.broker.port = mosquitto.port;
    let config_path = dir.path().join("passage.toml");
    std::fs::write(&config_path, toml::to_string(&config).expect("toml")).expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_passage"))
        .args(["demo", "--ephemeral-ports", "--exit-after", "35", "--visitors", "8", "--interval", "5", "--config"])
        .arg(&config_path)
        .env("PASSAGE_LOG", "warn")
        .current_dir(crate::support::repo_root())
        .output()
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "demo failed: {}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a summary line")).expect("JSON summary");
    let n = |path: &str| summary.pointer(path).and_then(serde_json::Value::as_u64).unwrap_or(0);
    assert!(n("/matches_answered") >= 5, "{summary}");
    assert!(n("/counts_acknowledged") >= 3, "{summary}");
    // As in the demo's own test: decisions agree with the simulation's ground truth (a match
    // that times out on a loaded machine is red `matcher_unavailable`, by design).
    let decided = n("/decisions/green") + n("/decisions/red");
    assert!(n("/decisions/agreeing_with_ground_truth") * 10 >= decided * 9, "{summary}");
}
