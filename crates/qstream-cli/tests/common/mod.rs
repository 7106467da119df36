//! Helpers shared by the tests that run the `qstream` binary: free ports, scratch directories,
//! and child processes that do not outlive a failed test.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An empty directory under the system's temporary directory, unique to this test process.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qstream-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A child process, killed and reaped when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A new self-signed certificate for `name`, and its key.
pub fn self_signed(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert, key)
}

/// Writes a new self-signed certificate for `name` to `cert` and its key to `key`, as PEM.
pub fn write_self_signed(name: &str, cert: &Path, key: &Path) {
    let (certificate, key_pair) = self_signed(name);
    std::fs::write(cert, certificate.pem()).unwrap();
    std::fs::write(key, key_pair.serialize_pem()).unwrap();
}

/// A `qstream serve` process; its standard error lines arrive on `log`.
pub struct Server {
    pub process: Process,
    pub addr: String,
    pub fingerprint: String,
    pub log: mpsc::Receiver<String>,
}

/// `qstream serve` of `root` on a free port with `extra` flags, once it says it is serving.
pub fn serve(root: &Path, extra: &[&str]) -> Server {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_qstream"))
        .args(["serve", "--listen", &addr, "--root"])
        .arg(root)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, log) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let fingerprint = fingerprint_until(&mut lines, "serving ");
    Server {
        process: Process(child),
        addr,
        fingerprint,
        log,
    }
}

impl Server {
    /// Waits up to `within` for a line of the log containing `text`.
    pub fn logs(&self, text: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(text) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }
}

/// Sends the signal `name` (INT, TERM, ...) to `child`.
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Whether a tool a test needs is here (`found`). `.ci/run` installs every such tool, so under
/// CI its absence is a failure; elsewhere the test says it was skipped and passes.
pub fn required_tool(found: bool, what: &str, install: &str) -> bool {
    assert!(
        found || std::env::var_os("CI").is_none(),
        "{what} is missing: {install} (.ci/run does)"
    );
    if !found {
        eprintln!("skipped: {what} is missing ({install})");
    }
    found
}

/// Reads `lines` of a starting `qstream` command up to the one that starts with `ready`; the
/// certificate fingerprint it printed on the way (`fingerprint ...`), or an empty string.
pub fn fingerprint_until(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    ready: &str,
) -> String {
    let mut fingerprint = String::new();
    for line in lines {
        let line = line.unwrap();
        if let Some(rest) = line.split("fingerprint ").nth(1) {
            fingerprint = rest.trim().to_owned();
        }
        if line.starts_with(ready) {
            break;
        }
    }
    fingerprint
}
