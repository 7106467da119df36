//! `qstream interop` in both roles, configured through the runner's environment variables.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;

use common::{Process, free_port, required_tool, temp_dir, write_self_signed};

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
    run_client(host, server.port, testcase, &www, &files, qlog_dir)
}

/// Runs the `qstream interop` client for `testcase` against the server on `host:port` and
/// checks every file of `www` named in `files` arrived intact. Returns its diagnostics.
fn run_client(
    host: &str,
    port: u16,
    testcase: &str,
    www: &Path,
    files: &[String],
    qlog_dir: Option<&PathBuf>,
) -> String {
    // Named after www, which is the test's own: tests run in parallel in one process.
    let www_name = www.file_name().unwrap().to_string_lossy();
    let downloads = temp_dir(&format!("{www_name}-downloads"));
    let requests: Vec<String> = files
        .iter()
        .map(|f| format!("https://{host}:{port}/{f}"))
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
            std::fs::read(www.join(file)).unwrap() == std::fs::read(downloads.join(file)).unwrap(),
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

/// The host a test case runs on: ipv6 on ::1, the others on 127.0.0.1.
fn case_host(testcase: &str) -> &'static str {
    if testcase == "ipv6" {
        "[::1]"
    } else {
        "127.0.0.1"
    }
}

/// Starts a foreign server and waits until it says `listening` on standard error.
fn foreign_server(mut command: Command, label: &str) -> Process {
    let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let process = Process(child);
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l == "listening"),
        "{label}: the server did not start"
    );
    std::thread::spawn(move || lines.for_each(drop));
    process
}

/// Runs a foreign client that downloads `files` of `www` into `downloads`; checks it succeeded
/// and every file is intact. Returns its standard error.
fn foreign_client(
    mut command: Command,
    label: &str,
    www: &Path,
    downloads: &Path,
    files: &[String],
) -> String {
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{label}: {stderr}");
    for file in files {
        assert!(
            std::fs::read(www.join(file)).unwrap() == std::fs::read(downloads.join(file)).unwrap(),
            "{label}: {file} differs"
        );
    }
    stderr
}

/// The hq-interop client and server on aioquic (tests/aioquic/hq.py), a stack nobody here wrote.
const AIOQUIC_HQ: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/aioquic/hq.py");

fn aioquic_available() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import aioquic"])
        .output()
        .is_ok_and(|o| o.status.success());
    required_tool(found, "aioquic", "`pip install aioquic`")
}

/// The aioquic flags a test case needs, on the server's side and on the client's.
fn aioquic_flags(testcase: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match testcase {
        "retry" => (&["--retry"], &[]),
        "v2" => (&["--versions", "v1,v2"], &["--versions", "v1,v2"]),
        "v2-retry" => (&["--versions", "v1,v2", "--retry"], &[]),
        "keyupdate" => (&[], &["--key-update"]),
        "resumption" => (&["--tickets"], &["--connections", "2"]),
        "zerortt" => (&["--tickets"], &["--connections", "2", "--zero-rtt"]),
        _ => (&[], &[]),
    }
}

/// RFC 9368 §3 and RFC 9001 §5.2 against a foreign server: the `qstream interop` client in
/// each runner test case against an aioquic server. The client fails unless the case's
/// feature happened (v2 switched to, session resumed, early data accepted), and every file
/// arrives intact. "v2-retry" is v2 behind a Retry, which the client once got wrong.
#[test]
fn interop_aioquic_server_serves_the_qstream_client_in_every_case() {
    if !aioquic_available() {
        return;
    }
    for testcase in [
        "handshake",
        "transfer",
        "retry",
        "v2",
        "v2-retry",
        "keyupdate",
        "chacha20",
        "resumption",
        "zerortt",
        "ipv6",
    ] {
        let (www, certs, files) = runner_dirs(&format!("aioquic-{testcase}"), 2, 1_000_000);
        let (host, port) = (case_host(testcase), free_port());
        let mut server = Command::new("python3");
        server
            .args([AIOQUIC_HQ, "server", "--listen", &format!("{host}:{port}")])
            .arg("--www")
            .arg(&www)
            .arg("--cert")
            .arg(certs.join("cert.pem"))
            .arg("--key")
            .arg(certs.join("priv.key"))
            .args(aioquic_flags(testcase).0);
        let _server = foreign_server(server, testcase);
        let client_case = testcase.strip_suffix("-retry").unwrap_or(testcase);
        let stderr = run_client(host, port, client_case, &www, &files, None);
        if testcase == "keyupdate" {
            assert!(stderr.contains("key updates: "), "{stderr}");
        }
    }
}

/// The `qstream interop` server in each runner test case for an aioquic client. The client's
/// report shows what happened on its side: the version it ended in, resumption and early data,
/// and key updates the qstream server started (the keyupdate case has both ends start them).
#[test]
fn interop_aioquic_client_downloads_from_the_qstream_server_in_every_case() {
    if !aioquic_available() {
        return;
    }
    for (testcase, expected) in [
        ("handshake", "version=0x00000001"),
        ("transfer", "version=0x00000001"),
        ("retry", "version=0x00000001"),
        ("v2", "version=0x6b3343cf"),
        ("keyupdate", "local_key_updates=1"),
        ("chacha20", "version=0x00000001"),
        ("resumption", "resumed=True"),
        ("zerortt", "early_data=True"),
        ("ipv6", "version=0x00000001"),
    ] {
        let label = format!("aioquic-client-{testcase}");
        let (www, certs, files) = runner_dirs(&label, 2, 1_000_000);
        let host = case_host(testcase);
        let server = server_on(host, testcase, &www, &certs);
        let downloads = temp_dir(&format!("{label}-downloads"));
        let mut client = Command::new("python3");
        client
            .args([AIOQUIC_HQ, "client", "--downloads"])
            .arg(&downloads)
            .args(aioquic_flags(testcase).1)
            .args(
                files
                    .iter()
                    .map(|f| format!("https://{host}:{}/{f}", server.port)),
            );
        let stderr = foreign_client(client, &label, &www, &downloads, &files);
        let last = stderr
            .lines()
            .rfind(|l| l.starts_with("connection: "))
            .unwrap_or_else(|| panic!("{testcase}: no connection report: {stderr}"));
        assert!(last.contains(expected), "{testcase}: {last}");
        if testcase == "keyupdate" {
            let by_server: u64 = last
                .split("remote_key_updates=")
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unreadable report {last:?}"));
            assert!(
                by_server > 1,
                "the qstream server started no key update: {last}"
            );
        }
    }
}

/// Where Debian's quic-go package puts its source (golang-github-lucas-clemente-quic-go-dev).
const QUIC_GO_GOPATH: &str = "/usr/share/gocode";

/// tests/quicgo/hq.go, the hq-interop client and server on quic-go, built once per test run
/// (GOPATH mode against Debian's quic-go 0.29); `None` when Go or quic-go is missing.
fn quic_go_hq() -> Option<&'static Path> {
    static BUILT: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let source = Path::new(QUIC_GO_GOPATH).join("src/github.com/lucas-clemente/quic-go");
            if !source.is_dir() {
                return None;
            }
            let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("quic-go-hq");
            let status = Command::new("go")
                .args(["build", "-o"])
                .arg(&out)
                .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/quicgo/hq.go"))
                .env("GO111MODULE", "off")
                .env("GOPATH", QUIC_GO_GOPATH)
                .env(
                    "GOCACHE",
                    Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-cache"),
                )
                .status()
                .ok()?;
            assert!(status.success(), "tests/quicgo/hq.go does not build");
            Some(out)
        })
        .as_deref()
}

fn quic_go_available() -> Option<&'static Path> {
    let hq = quic_go_hq();
    required_tool(
        hq.is_some(),
        "quic-go",
        "`apt-get install golang-go golang-github-lucas-clemente-quic-go-dev`",
    )
    .then(|| hq.expect("found"))
}

/// The runner test cases quic-go 0.29 speaks (it has no RFC 9369 v2).
const QUIC_GO_CASES: [&str; 8] = [
    "handshake",
    "transfer",
    "retry",
    "keyupdate",
    "chacha20",
    "resumption",
    "zerortt",
    "ipv6",
];

/// The `qstream interop` client in each of those cases against a quic-go server, the stack
/// whose stream lifecycle this project began with.
/// The client fails unless the case's feature happened (session resumed, early data accepted).
#[test]
fn interop_quic_go_server_serves_the_qstream_client_in_every_case() {
    let Some(hq) = quic_go_available() else {
        return;
    };
    for testcase in QUIC_GO_CASES {
        let (www, certs, files) = runner_dirs(&format!("quic-go-{testcase}"), 2, 1_000_000);
        let (host, port) = (case_host(testcase), free_port());
        let mut server = Command::new(hq);
        server
            .args(["server", "-listen", &format!("{host}:{port}"), "-www"])
            .arg(&www)
            .arg("-cert")
            .arg(certs.join("cert.pem"))
            .arg("-key")
            .arg(certs.join("priv.key"));
        if testcase == "retry" {
            server.arg("-retry");
        }
        let _server = foreign_server(server, testcase);
        run_client(host, port, testcase, &www, &files, None);
    }
}

/// The `qstream interop` server in each runner test case for a quic-go client: handshake,
/// transfer, Retry, key updates the server starts, ChaCha20, resumption and 0-RTT (the
/// client reports whether its second connection resumed), IPv6.
#[test]
fn interop_quic_go_client_downloads_from_the_qstream_server_in_every_case() {
    let Some(hq) = quic_go_available() else {
        return;
    };
    for testcase in QUIC_GO_CASES {
        let label = format!("quic-go-client-{testcase}");
        let (www, certs, files) = runner_dirs(&label, 2, 1_000_000);
        let host = case_host(testcase);
        let server = server_on(host, testcase, &www, &certs);
        let downloads = temp_dir(&format!("{label}-downloads"));
        let mut client = Command::new(hq);
        client.args(["client", "-downloads"]).arg(&downloads);
        match testcase {
            "resumption" => client.arg("-resume"),
            "zerortt" => client.args(["-resume", "-zerortt"]),
            _ => &mut client,
        };
        client.args(
            files
                .iter()
                .map(|f| format!("https://{host}:{}/{f}", server.port)),
        );
        let stderr = foreign_client(client, &label, &www, &downloads, &files);
        if ["resumption", "zerortt"].contains(&testcase) {
            assert!(stderr.contains("resumed: true"), "{testcase}: {stderr}");
        }
    }
}
