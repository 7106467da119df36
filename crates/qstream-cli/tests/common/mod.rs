//! Helpers shared by the tests that run the `qstream` binary: free ports, scratch directories,
//! and child processes that do not outlive a failed test.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Child;

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
