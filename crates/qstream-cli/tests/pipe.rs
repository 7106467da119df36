//! `qstream send` into `qstream recv`, run as binaries through real pipes.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

mod common;

use common::{fingerprint_until, free_port};

/// A `qstream recv` process with its address and certificate fingerprint.
struct Receiver {
    child: Child,
    addr: String,
    fingerprint: String,
}

/// Starts `qstream recv` writing to its standard output, and waits until it listens.
fn recv() -> Receiver {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_qstream"))
        .args(["recv", "--listen", &addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let fingerprint = fingerprint_until(&mut lines, "listening on ");
    // Keep draining its messages so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Receiver {
        child,
        addr,
        fingerprint,
    }
}

/// Runs `qstream send` with `args`, feeding `input` on its standard input.
fn send(args: &[&str], input: &[u8]) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_qstream"))
        .arg("send")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 1000) as u8).collect()
}

#[test]
fn send_into_recv_through_pipes_delivers_every_byte_and_both_exit_zero() {
    let mut receiver = recv();
    let mut stdout = receiver.child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).unwrap();
        out
    });
    let data = pattern(5_000_000);
    let (ok, stderr) = send(
        &[&receiver.addr, "-", "--fingerprint", &receiver.fingerprint],
        &data,
    );
    assert!(ok, "send failed: {stderr}");
    assert!(stderr.contains("sent 5000000 bytes"), "{stderr}");
    let received = reader.join().unwrap();
    assert!(receiver.child.wait().unwrap().success());
    assert_eq!(received.len(), data.len());
    assert!(received == data, "the bytes differ");
}

#[test]
fn send_refuses_a_receiver_whose_certificate_is_not_the_pinned_one() {
    let mut receiver = recv();
    let wrong = ["00"; 32].join(":");
    let (ok, stderr) = send(&[&receiver.addr, "--fingerprint", &wrong], b"secret");
    assert!(!ok);
    assert!(
        stderr.contains("certificate is not the one named"),
        "{stderr}"
    );
    let (ok, stderr) = send(&[&receiver.addr], b"secret");
    assert!(!ok);
    assert!(stderr.contains("--fingerprint"), "{stderr}");
    let _ = receiver.child.kill();
    let _ = receiver.child.wait();
}

#[test]
fn a_receiver_that_cannot_write_stops_the_sender_with_a_clear_error() {
    let mut receiver = recv();
    // Close the receiver's output: its writes fail with a broken pipe.
    drop(receiver.child.stdout.take());
    let (ok, stderr) = send(&[&receiver.addr, "--insecure"], &pattern(20_000_000));
    assert!(!ok);
    assert!(
        stderr.contains("receiver could not write its output"),
        "{stderr}"
    );
    assert!(!receiver.child.wait().unwrap().success());
}
