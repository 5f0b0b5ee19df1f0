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
