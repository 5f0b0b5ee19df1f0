//! Helpers shared by the test targets (`tests/integration`, `tests/privacy_scan`), each of which
//! includes this file with `#[path]`: the checkout's root and a Mosquitto broker on loopback.
// Each target uses only some of these.
#![allow(dead_code)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository root of the checkout under test, read when the test runs (cargo sets
/// `CARGO_MANIFEST_DIR` for test processes): a test binary reused from another checkout through
/// a shared target directory must not read that checkout's files.
pub fn repo_root() -> std::path::PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
}

/// Single faces nobody enrolled: PNG crops of the group photo `sample4.jpg` (scripts/fetch-faces),
/// each face with a margin of its width, boxes from the hand-made ground truth.
pub fn stranger_crops() -> Vec<Vec<u8>> {
    let root = repo_root();
    let truth: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/data/faces-ground-truth.json")).expect("ground truth"),
    )
    .expect("ground truth is JSON");
    let photo = std::fs::read(root.join(".cache/testdata/faces/sample4.jpg")).expect("sample4.jpg");
    let image = passage_vision::decode::decode(&photo).expect("the photo decodes");
    let (w, h) = (i64::from(image.w), i64::from(image.h));
    let faces = truth["images"]["sample4.jpg"]["faces"].as_array().expect("faces");
    faces
        .iter()
        .map(|face| {
            let b: Vec<i64> =
                face["box"].as_array().expect("box").iter().filter_map(serde_json::Value::as_i64).collect();
            let margin = b[2] - b[0];
            let (x1, y1) = ((b[0] - margin).max(0), (b[1] - margin).max(0));
            let (x2, y2) = ((b[2] + margin).min(w), (b[3] + margin).min(h));
            let mut crop = Vec::with_capacity((3 * (x2 - x1) * (y2 - y1)) as usize);
            for y in y1..y2 {
                let row = (3 * (y * w + x1)) as usize;
                crop.extend_from_slice(&image.rgb[row..row + 3 * (x2 - x1) as usize]);
            }
            let (cw, ch) = ((x2 - x1) as u32, (y2 - y1) as u32);
            passage_vision::decode::encode(&crop, cw, ch, passage_vision::decode::OutputFormat::Png).expect("PNG")
        })
        .collect()
}

/// Where Mosquitto is installed, if it is.
pub fn mosquitto_binary() -> Option<&'static str> {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

/// A Mosquitto broker on 127.0.0.1, killed when dropped.
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts `mosquitto` (Debian package; `scripts/test` installs it) on a free loopback port.
    pub fn start() -> Mosquitto {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        Mosquitto::start_on(port)
    }

    /// Starts `mosquitto` on `port` of 127.0.0.1 (to restart a stopped broker on its port). It
    /// keeps nothing on disk (`persistence false`): a restart forgets every session.
    pub fn start_on(port: u16) -> Mosquitto {
        Mosquitto::start_with(port, "allow_anonymous true\n")
    }

    /// Starts `mosquitto` on `port` of 127.0.0.1 with `settings` added to its listener (TLS,
    /// ACL file, …).
    pub fn start_with(port: u16, settings: &str) -> Mosquitto {
        let binary =
            mosquitto_binary().expect("mosquitto is not installed: run scripts/test, or apt-get install mosquitto");
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("mosquitto.conf");
        let mut f = std::fs::File::create(&conf).expect("config file");
        writeln!(f, "listener {port} 127.0.0.1\nmessage_size_limit 0\npersistence false\n{settings}")
            .expect("write config");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Mosquitto { child, port, _dir: dir }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
