//! The tool with a user's files and at its endings, run as binaries: nothing existing is
//! clobbered, no partial file sits under a final name, signals close connections with a reason
//! the peer sees, and trust can be given by fingerprint or by a self-signed certificate.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{Process, Server, free_port, serve, signal, temp_dir};

fn qstream(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_qstream"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn website(name: &str) -> PathBuf {
    let root = temp_dir(name);
    std::fs::write(root.join("a.bin"), b"top-level a\n").unwrap();
    std::fs::create_dir_all(root.join("x")).unwrap();
    std::fs::write(root.join("x/a.bin"), b"nested a\n").unwrap();
    root
}

/// A website with big.bin: large enough to be in flight when a signal comes.
fn website_with_big_file(name: &str) -> PathBuf {
    let root = website(name);
    std::fs::write(root.join("big.bin"), vec![7u8; 256 << 20]).unwrap();
    root
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Certificate parameters of a CA (CA:TRUE) named `name`.
fn ca_params(name: &str) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::new(vec![name.into()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
}

/// Writes `cert` and `key` as cert.pem and key.pem in `dir`; their paths.
fn write_identity(
    dir: &Path,
    cert: &rcgen::Certificate,
    key: &rcgen::KeyPair,
) -> (PathBuf, PathBuf) {
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

/// `qstream serve` of `root` presenting the certificate and key in these files.
fn serve_with_identity(root: &Path, (cert, key): &(PathBuf, PathBuf)) -> Server {
    serve(
        root,
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    )
}

#[test]
fn two_urls_for_one_file_name_are_refused_before_connecting() {
    // Nothing listens there: the refusal comes before any connection is tried.
    let port = free_port();
    let out = temp_dir("same-name-out");
    let (code, _, stderr) = qstream(&[
        "get",
        "--insecure",
        "--output-dir",
        out.to_str().unwrap(),
        &format!("https://127.0.0.1:{port}/a.bin"),
        &format!("https://127.0.0.1:{port}/x/a.bin"),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("would both be saved as"), "{stderr}");
    assert!(entries(&out).is_empty());
    // -o names one file: with two URLs it is refused too.
    let (code, _, stderr) = qstream(&[
        "get",
        "--insecure",
        "-o",
        out.join("one").to_str().unwrap(),
        &format!("https://127.0.0.1:{port}/a.bin"),
        &format!("https://127.0.0.1:{port}/x/a.bin"),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
}

#[test]
fn o_names_a_file_and_a_dash_is_standard_output() {
    let root = website("o-file");
    let server = serve(&root, &[]);
    let out = temp_dir("o-file-out");
    let file = out.join("renamed.bin");
    let url = format!("https://{}/x/a.bin", server.addr);
    let (code, _, stderr) = qstream(&["get", "--insecure", "-o", file.to_str().unwrap(), &url]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(std::fs::read(&file).unwrap(), b"nested a\n");
    assert_eq!(entries(&out), ["renamed.bin"]);
    let (code, stdout, stderr) = qstream(&["get", "--insecure", "-o", "-", &url]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "nested a\n");
}

#[test]
fn an_existing_file_survives_a_missing_one_and_a_download_without_force() {
    let root = website("existing");
    let server = serve(&root, &[]);
    let out = temp_dir("existing-out");
    std::fs::write(out.join("nope.bin"), "keep").unwrap();
    std::fs::write(out.join("a.bin"), "mine").unwrap();
    let get = |name: &str, force: bool| {
        let mut args = vec!["get", "--insecure", "--output-dir", out.to_str().unwrap()];
        if force {
            args.push("--force");
        }
        let url = format!("https://{}/{name}", server.addr);
        args.push(&url);
        qstream(&args)
    };
    // Refused before fetching: the file exists.
    let (code, _, stderr) = get("a.bin", false);
    assert_eq!(code, Some(6), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read(out.join("a.bin")).unwrap(), b"mine");
    // Forced, but the server has no such file (404): the existing one stays.
    let (code, _, stderr) = get("nope.bin", true);
    assert_eq!(code, Some(4), "{stderr}");
    assert_eq!(std::fs::read(out.join("nope.bin")).unwrap(), b"keep");
    // Forced, and found: replaced, and nothing else left in the directory.
    let (code, _, stderr) = get("a.bin", true);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(std::fs::read(out.join("a.bin")).unwrap(), b"top-level a\n");
    assert_eq!(entries(&out), ["a.bin", "nope.bin"]);
}

#[test]
fn recv_leaves_an_existing_output_alone() {
    let out = temp_dir("recv-existing");
    let file = out.join("exists.bin");
    std::fs::write(&file, "precious").unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let (code, _, stderr) = qstream(&["recv", "--listen", &addr, "-o", file.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
}

#[test]
fn sigint_of_get_leaves_no_partial_file_and_the_server_hears_why() {
    let root = website_with_big_file("sigint");
    // 256 MiB take long enough to interrupt.
    let server = serve(&root, &[]);
    let out = temp_dir("sigint-out");
    let url = format!("https://{}/big.bin", server.addr);
    let mut get = Process(
        Command::new(env!("CARGO_BIN_EXE_qstream"))
            .args([
                "get",
                "--insecure",
                "--output-dir",
                out.to_str().unwrap(),
                &url,
            ])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Interrupt once the download is under way.
    let started = Instant::now();
    while entries(&out).is_empty() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!entries(&out).is_empty(), "the download never started");
    signal(&get.0, "INT");
    let interrupted = Instant::now();
    let status = get.0.wait().unwrap();
    let mut stderr = String::new();
    get.0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(entries(&out).is_empty(), "left behind: {:?}", entries(&out));
    let line = server
        .logs("interrupted by the user", Duration::from_secs(1))
        .expect("the server heard the client's close within 1 s");
    assert!(interrupted.elapsed() < Duration::from_secs(2), "{line}");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn sigterm_of_serve_ends_a_download_at_once_with_the_servers_reason() {
    let root = website_with_big_file("sigterm");
    let server = serve(&root, &["--grace", "0.2"]);
    let out = temp_dir("sigterm-out");
    let url = format!("https://{}/big.bin", server.addr);
    let get = Command::new(env!("CARGO_BIN_EXE_qstream"))
        .args([
            "get",
            "--insecure",
            "--output-dir",
            out.to_str().unwrap(),
            &url,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut get = Process(get);
    let started = Instant::now();
    while entries(&out).is_empty() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(&server.process.0, "TERM");
    let terminated = Instant::now();
    let status = get.0.wait().unwrap();
    let mut stderr = String::new();
    get.0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(terminated.elapsed() < Duration::from_secs(2), "{stderr}");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("terminated (SIGTERM)"), "{stderr}");
    assert!(entries(&out).is_empty(), "left behind: {:?}", entries(&out));
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn get_trusts_a_server_by_fingerprint_or_by_its_saved_certificate() {
    let root = website("trust");
    let out = temp_dir("trust-out");
    let cert = out.join("server.pem");
    let server = serve(&root, &["--save-cert", cert.to_str().unwrap()]);
    let port = server.addr.rsplit(':').next().unwrap().to_owned();
    let url = format!("https://localhost:{port}/a.bin");
    let file = out.join("a.bin");
    let (code, _, stderr) = qstream(&[
        "get",
        "--fingerprint",
        &server.fingerprint,
        "-o",
        file.to_str().unwrap(),
        &url,
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(std::fs::read(&file).unwrap(), b"top-level a\n");
    std::fs::remove_file(&file).unwrap();
    let (code, _, stderr) = qstream(&[
        "get",
        "--ca",
        cert.to_str().unwrap(),
        "-o",
        file.to_str().unwrap(),
        &url,
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    // Another fingerprint is refused.
    let (code, _, stderr) = qstream(&[
        "get",
        "--fingerprint",
        &"ab".repeat(32),
        "--force",
        "-o",
        file.to_str().unwrap(),
        &url,
    ]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("not trusted"), "{stderr}");
}

#[test]
fn a_self_signed_ca_certificate_given_to_ca_is_the_servers_own() {
    // What `openssl req -x509` makes: a self-signed certificate with CA:TRUE, which WebPKI
    // refuses as a server's certificate (CaUsedAsEndEntity). Given with --ca, it is trusted
    // as exactly that certificate.
    let dir = temp_dir("openssl-style");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = ca_params("localhost").self_signed(&key).unwrap();
    let identity = write_identity(&dir, &cert, &key);
    let cert_path = identity.0.clone();
    let server = serve_with_identity(&website("openssl-style-root"), &identity);
    let port = server.addr.rsplit(':').next().unwrap().to_owned();
    let (code, stdout, stderr) = qstream(&[
        "get",
        "--ca",
        cert_path.to_str().unwrap(),
        "-o",
        "-",
        &format!("https://localhost:{port}/a.bin"),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "top-level a\n");
}

#[test]
fn get_trusts_the_roots_ssl_cert_file_names_without_any_flag() {
    // A server certificate issued by a CA that only SSL_CERT_FILE names: `get` needs no
    // --ca, --fingerprint or --insecure; without the variable it is refused.
    let dir = temp_dir("ssl-cert-file");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params("qstream test CA").self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params("qstream test CA"), ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let identity = write_identity(&dir, &cert, &key);
    let server = serve_with_identity(&website("ssl-cert-file-root"), &identity);
    let port = server.addr.rsplit(':').next().unwrap().to_owned();
    let url = format!("https://localhost:{port}/a.bin");
    let get = |ssl_cert_file: &Path| {
        Command::new(env!("CARGO_BIN_EXE_qstream"))
            .args(["get", "-o", "-", &url])
            .env("SSL_CERT_FILE", ssl_cert_file)
            .env_remove("SSL_CERT_DIR")
            .output()
            .unwrap()
    };
    let trusted = get(&ca_path);
    let stderr = String::from_utf8_lossy(&trusted.stderr);
    assert_eq!(trusted.status.code(), Some(0), "{stderr}");
    assert_eq!(trusted.stdout, b"top-level a\n");
    // A file of another CA: the server's certificate is not trusted.
    let other = dir.join("other.pem");
    let other_key = rcgen::KeyPair::generate().unwrap();
    std::fs::write(
        &other,
        ca_params("another CA")
            .self_signed(&other_key)
            .unwrap()
            .pem(),
    )
    .unwrap();
    let refused = get(&other);
    assert_ne!(refused.status.code(), Some(0));
    assert!(refused.stdout.is_empty());
}

#[test]
fn bad_urls_exit_with_code_2() {
    for url in ["ftp://example.net/x", "https://", "example.net/x"] {
        let (code, _, stderr) = qstream(&["get", "--insecure", url]);
        assert_eq!(code, Some(2), "{url}: {stderr}");
        assert!(stderr.contains("invalid URL"), "{stderr}");
    }
}
