//! `qstream interop` in both roles, configured through the runner's environment variables.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

mod common;

use common::{Process, free_port, temp_dir, write_self_signed};

/// A running `qstream interop` server, killed when dropped.
struct Server {
    _process: Process,
    port: u16,
}

/// /www with `count` files of `size` bytes, and /certs as the runner lays them out.
fn runner_dirs(name: &str, count: usize, size: usize) -> (PathBuf, PathBuf, Vec<String>) {
    let www = temp_dir(&format!("{name}-www"));
    let certs = temp_dir(&format!("{name}-certs"));
    write_self_signed("server", &certs.join("cert.pem"), &certs.join("priv.key"));
    let files = (0..count)
        .map(|i| {
            let name = format!("file{i}");
            let data: Vec<u8> = (0..size)
                .map(|j| (j * 31 + i * 7 + j / 977) as u8)
                .collect();
            std::fs::write(www.join(&name), data).unwrap();
            name
        })
        .collect();
    (www, certs, files)
}

fn server(testcase: &str, www: &PathBuf, certs: &PathBuf) -> Server {
    server_on("127.0.0.1", testcase, www, certs)
}

/// A server listening on `host` (an IPv4 address, or an IPv6 one in brackets).
fn server_on(host: &str, testcase: &str, www: &PathBuf, certs: &PathBuf) -> Server {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_qstream"))
        .arg("interop")
        .args(["--listen", &format!("{host}:{port}"), "--www"])
        .arg(www)
        .arg("--certs")
        .arg(certs)
        .env("ROLE", "server")
        .env("TESTCASE", testcase)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().starts_with("interop server") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    Server {
        _process: Process(child),
        port,
    }
}

/// Runs the client for `testcase` and checks every file arrived intact; the client writes
/// qlog files to `qlog_dir` when given. Returns the client's diagnostics.
fn run_case(testcase: &str, count: usize, size: usize, qlog_dir: Option<&PathBuf>) -> String {
    run_case_on("127.0.0.1", testcase, count, size, qlog_dir)
}

fn run_case_on(
    host: &str,
    testcase: &str,
    count: usize,
    size: usize,
    qlog_dir: Option<&PathBuf>,
) -> String {
    let (www, certs, files) = runner_dirs(testcase, count, size);
    let server = server_on(host, testcase, &www, &certs);
    let downloads = temp_dir(&format!("{testcase}-downloads"));
    let requests: Vec<String> = files
        .iter()
        .map(|f| format!("https://{host}:{}/{f}", server.port))
        .collect();
    let mut client = Command::new(env!("CARGO_BIN_EXE_qstream"));
    client
        .arg("interop")
        .arg("--downloads")
        .arg(&downloads)
        .env("ROLE", "client")
        .env("TESTCASE", testcase)
        .env("REQUESTS", requests.join(" "));
    if let Some(dir) = qlog_dir {
        client.env("QLOGDIR", dir);
    }
    let output = client.output().unwrap();
    assert!(
        output.status.success(),
        "{testcase}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for file in files {
        assert!(
            std::fs::read(www.join(&file)).unwrap()
                == std::fs::read(downloads.join(&file)).unwrap(),
            "{testcase}: {file} differs"
        );
    }
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn interop_transfer_downloads_files_concurrently_through_growing_windows() {
    run_case("transfer", 3, 2_000_000, None);
}

#[test]
fn interop_multiconnect_uses_a_connection_per_file() {
    let qlog = temp_dir("multiconnect-qlog");
    run_case("multiconnect", 5, 1024, Some(&qlog));
    // One qlog per connection (QLOGDIR): five connections.
    assert_eq!(std::fs::read_dir(&qlog).unwrap().count(), 5);
}

#[test]
fn interop_retry_keyupdate_chacha20_and_handshake_complete() {
    for testcase in ["retry", "keyupdate", "chacha20", "handshake"] {
        let stderr = run_case(testcase, 1, 1_000_000, None);
        if testcase == "keyupdate" {
            // Both ends start key updates in this case, not only the client.
            let line = stderr
                .lines()
                .find(|l| l.starts_with("key updates: "))
                .unwrap_or_else(|| panic!("no key update summary: {stderr}"));
            let by_server: u64 = line
                .rsplit(", ")
                .next()
                .and_then(|part| part.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unreadable summary {line:?}"));
            assert!(
                by_server > 0,
                "the server never started a key update: {line}"
            );
        }
    }
}

#[test]
fn interop_ipv6_transfers_between_ipv6_addresses() {
    run_case_on("[::1]", "ipv6", 2, 500_000, None);
}

#[test]
fn interop_resumption_resumes_the_tls_session_on_the_second_connection() {
    // The client fails unless its second handshake resumed.
    run_case("resumption", 3, 10_000, None);
}

#[test]
fn interop_zerortt_sends_the_second_connections_requests_in_0rtt() {
    // The client fails unless the server took the second connection's early data.
    run_case("zerortt", 3, 10_000, None);
}

#[test]
fn interop_connectionmigration_moves_the_client_to_the_preferred_address() {
    // The client fails unless it moved to the server's preferred address.
    let stderr = run_case("connectionmigration", 2, 2_000_000, None);
    assert!(
        stderr.contains("preferred address: moved to 127.0.0.1:"),
        "{stderr}"
    );
}

#[test]
fn interop_exits_127_for_test_cases_it_does_not_support() {
    for (role, testcase) in [("client", "http3"), ("server", "http3")] {
        let output = Command::new(env!("CARGO_BIN_EXE_qstream"))
            .arg("interop")
            .env("ROLE", role)
            .env("TESTCASE", testcase)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(127), "{role} {testcase}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("is not supported"), "{stderr}");
    }
}

#[test]
fn interop_v2_client_and_server_switch_to_v2() {
    // The client fails unless the server switched its connection to v2; the server prefers v2
    // and still serves a client that offers only v1.
    run_case("v2", 2, 100_000, None);
    let (www, certs, files) = runner_dirs("v2-v1-client", 1, 10_000);
    let server = server("v2", &www, &certs);
    let downloads = temp_dir("v2-v1-client-downloads");
    let output = Command::new(env!("CARGO_BIN_EXE_qstream"))
        .arg("interop")
        .arg("--downloads")
        .arg(&downloads)
        .env("ROLE", "client")
        .env("TESTCASE", "handshake")
        .env(
            "REQUESTS",
            format!("https://127.0.0.1:{}/{}", server.port, files[0]),
        )
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        std::fs::read(downloads.join(&files[0])).unwrap(),
        std::fs::read(www.join(&files[0])).unwrap()
    );
}
