//! `qstream serve` and `qstream get`, run as binaries, with the failures a user meets.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

mod common;

use common::{free_port, self_signed, serve, temp_dir, write_self_signed};

fn qstream(args: &[&str]) -> (bool, String, String) {
    let (code, stdout, stderr) = qstream_exit(args);
    (code == Some(0), stdout, stderr)
}

/// Runs `qstream` with `args`: its exit code, standard output and standard error.
fn qstream_exit(args: &[&str]) -> (Option<i32>, String, String) {
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
    std::fs::write(root.join("small.txt"), b"hello over QUIC\n").unwrap();
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(root.join("big.bin"), big).unwrap();
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/nested.txt"), b"nested").unwrap();
    root
}

#[test]
fn get_fetches_several_files_byte_for_byte() {
    let root = website("several");
    let server = serve(&root, &[]);
    let out = temp_dir("several-out");
    let urls: Vec<String> = ["small.txt", "big.bin", "sub/nested.txt"]
        .iter()
        .map(|f| format!("https://{}/{f}", server.addr))
        .collect();
    let mut args = vec!["get", "--insecure", "--output-dir", out.to_str().unwrap()];
    args.extend(urls.iter().map(String::as_str));
    let (ok, stdout, stderr) = qstream(&args);
    assert!(ok, "{stdout}{stderr}");
    for (served, saved) in [
        ("small.txt", "small.txt"),
        ("big.bin", "big.bin"),
        ("sub/nested.txt", "nested.txt"),
    ] {
        assert_eq!(
            std::fs::read(root.join(served)).unwrap(),
            std::fs::read(out.join(saved)).unwrap(),
            "{served}"
        );
    }
}

#[test]
fn get_with_ca_trusts_the_servers_own_certificate() {
    let root = website("ca");
    let certs = temp_dir("ca-certs");
    write_self_signed("localhost", &certs.join("cert.pem"), &certs.join("key.pem"));
    let (cert_path, key_path) = (certs.join("cert.pem"), certs.join("key.pem"));
    let server = serve(
        &root,
        &[
            "--cert",
            cert_path.to_str().unwrap(),
            "--key",
            key_path.to_str().unwrap(),
        ],
    );
    let port = server.addr.rsplit(':').next().unwrap().to_owned();
    let out = temp_dir("ca-out");
    let url = format!("https://localhost:{port}/small.txt");
    let (ok, stdout, stderr) = qstream(&[
        "get",
        "--ca",
        cert_path.to_str().unwrap(),
        "--output-dir",
        out.to_str().unwrap(),
        &url,
    ]);
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(
        std::fs::read(out.join("small.txt")).unwrap(),
        b"hello over QUIC\n"
    );
}

#[test]
fn get_reports_missing_files_and_refused_paths_and_fetches_the_rest() {
    let root = website("missing");
    let server = serve(&root, &[]);
    let out = temp_dir("missing-out");
    let good = format!("https://{}/small.txt", server.addr);
    let missing = format!("https://{}/nope.txt", server.addr);
    let escape = format!("https://{}/../../etc/passwd", server.addr);
    let (code, _, stderr) = qstream_exit(&[
        "get",
        "--insecure",
        "--output-dir",
        out.to_str().unwrap(),
        &good,
        &missing,
        &escape,
    ]);
    assert_eq!(code, Some(4), "exit code for a missing file");
    assert!(
        stderr.contains("/nope.txt: not found on the server"),
        "{stderr}"
    );
    assert!(stderr.contains("/../../etc/passwd: not found"), "{stderr}");
    assert!(stderr.contains("2 of 3 downloads failed"), "{stderr}");
    assert!(out.join("small.txt").exists());
}

#[test]
fn get_explains_untrusted_certificates_unreachable_servers_and_bad_urls() {
    let root = website("errors");
    let server = serve(&root, &[]);
    let url = format!("https://{}/small.txt", server.addr);
    let (ok, _, stderr) = qstream(&[
        "get",
        "--output-dir",
        temp_dir("errors-out").to_str().unwrap(),
        &url,
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("not trusted") && stderr.contains("--ca"),
        "{stderr}"
    );
    let unreachable = format!("https://127.0.0.1:{}/x", free_port());
    let (code, _, stderr) =
        qstream_exit(&["get", "--insecure", "--connect-timeout", "1", &unreachable]);
    assert_eq!(code, Some(3), "exit code for no connection");
    assert!(stderr.contains("no answer within 1 s"), "{stderr}");
    let (ok, _, stderr) = qstream(&["get", "--insecure", "ftp://example.net/x"]);
    assert!(!ok);
    assert!(stderr.contains("invalid URL"), "{stderr}");
}

#[test]
fn serve_explains_a_port_in_use_and_a_missing_root() {
    let root = website("port");
    let server = serve(&root, &[]);
    let (ok, stdout, stderr) = qstream(&[
        "serve",
        "--listen",
        &server.addr,
        "--root",
        root.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("cannot listen") && stderr.contains("another program"),
        "{stderr}"
    );
    // Nothing announced for a server that never ran.
    assert!(stdout.is_empty(), "{stdout}");
    let (ok, _, stderr) = qstream(&["serve", "--listen", "127.0.0.1:0", "--root", "/no/such/dir"]);
    assert!(!ok);
    assert!(stderr.contains("cannot serve /no/such/dir"), "{stderr}");
}

#[test]
fn serve_never_holds_streams_half_open_for_a_client_that_never_finishes() {
    // The seed scenario's client: it never finishes its streams, reads each response to the
    // end and drops them. Through --max-streams 10, it must open stream after stream.
    let root = website("seed");
    let server = serve(&root, &["--max-streams", "10"]);
    let addr: std::net::SocketAddr = server.addr.parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(NoVerification))
        .with_no_client_auth();
        tls.alpn_protocols = vec![b"hq-interop".to_vec()];
        let client = qstream::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let connection = client
            .connect(
                &qstream::ClientConfig::new(std::sync::Arc::new(tls)),
                addr,
                "localhost",
            )
            .unwrap()
            .await
            .unwrap();
        for i in 0..2000 {
            let (mut send, mut recv) =
                tokio::time::timeout(Duration::from_secs(5), connection.open_bi())
                    .await
                    .unwrap_or_else(|_| {
                        panic!("stream {i}: no credit: the server holds streams half-open")
                    })
                    .unwrap();
            send.write_all(b"GET /small.txt\r\n").await.unwrap();
            // Never finished.
            assert_eq!(
                recv.read_to_end(1 << 10).await.unwrap(),
                b"hello over QUIC\n"
            );
        }
    });
}

#[derive(Debug)]
struct NoVerification;

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[test]
fn get_says_when_a_server_never_returns_credit_and_gives_up_naming_the_cause() {
    // The seed scenario's server: it answers and finishes each response but never reads its
    // requests to the end nor stops them, so it never releases a stream and never raises
    // MAX_STREAMS (here 2).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (cert, key) = self_signed("localhost");
    let mut tls = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    tls.alpn_protocols = vec![b"hq-interop".to_vec()];
    let mut config = qstream::ServerConfig::new(std::sync::Arc::new(tls));
    let mut transport = qstream::TransportConfig::default();
    transport.streams.max_concurrent_bidi = 2;
    config.transport = std::sync::Arc::new(transport);
    let server = {
        let _guard = runtime.enter();
        qstream::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap()
    };
    let addr = server.local_addr().unwrap();
    runtime.spawn(async move {
        while let Some(Ok(connection)) = server.accept().await {
            tokio::spawn(async move {
                let mut held = Vec::new();
                while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                    let mut request = [0u8; 64];
                    let _ = tokio::io::AsyncReadExt::read(&mut recv, &mut request).await;
                    let _ = send.write_all(b"response\n").await;
                    let _ = send.finish();
                    // Never read to the end, never stopped.
                    held.push((send, recv));
                }
            });
        }
    });
    let urls: Vec<String> = (0..4)
        .map(|i| format!("https://127.0.0.1:{}/file{i}", addr.port()))
        .collect();
    let out = temp_dir("no-credit");
    let mut args = vec![
        "get",
        "--insecure",
        "--stats",
        "--open-timeout",
        "3",
        "--output-dir",
        out.to_str().unwrap(),
    ];
    args.extend(urls.iter().map(String::as_str));
    let started = std::time::Instant::now();
    let (code, _, stderr) = qstream_exit(&args);
    assert_eq!(code, Some(5), "exit code for no stream credit");
    assert!(started.elapsed() < Duration::from_secs(20), "it hung");
    // Said while waiting, then again as the cause of the failure.
    assert!(stderr.contains(": waiting for stream credit"), "{stderr}");
    assert!(
        stderr.contains("gave up after 3s: waiting for stream credit: the server allows 2"),
        "{stderr}"
    );
    assert!(
        stderr.contains("2 of ours are finished on our side"),
        "{stderr}"
    );
    assert!(stderr.contains("2 of 4 downloads failed"), "{stderr}");
    // --stats shows the opens waiting and the STREAMS_BLOCKED we sent.
    assert!(stderr.contains("2 opens waiting"), "{stderr}");
    assert!(stderr.contains("STREAMS_BLOCKED sent 1"), "{stderr}");
}

#[test]
fn rust_log_turns_on_the_stacks_logging_and_it_is_quiet_by_default() {
    let root = website("rust-log");
    let server = serve(&root, &[]);
    let out = temp_dir("rust-log-out");
    let url = format!("https://{}/small.txt", server.addr);
    let run = |rust_log: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_qstream"));
        command.args([
            "get",
            "--insecure",
            "--force",
            "--output-dir",
            out.to_str().unwrap(),
            &url,
        ]);
        command.env_remove("RUST_LOG");
        if let Some(filter) = rust_log {
            command.env("RUST_LOG", filter);
        }
        let output = command.output().unwrap();
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let logged = run(Some("qstream=debug"));
    assert!(
        logged.contains("DEBUG") && logged.contains("connected"),
        "{logged}"
    );
    let quiet = run(None);
    assert!(!quiet.contains("DEBUG"), "{quiet}");
}

#[test]
fn serve_explains_unreadable_and_mismatched_certificates_and_keys() {
    let dir = temp_dir("bad-keys");
    let root = website("bad-keys-root");
    let write_identity = |name: &str| {
        let cert_path = dir.join(format!("{name}.crt"));
        let key_path = dir.join(format!("{name}.key"));
        write_self_signed("localhost", &cert_path, &key_path);
        (
            cert_path.to_str().unwrap().to_owned(),
            key_path.to_str().unwrap().to_owned(),
        )
    };
    let (cert_a, _) = write_identity("a");
    let (_, key_b) = write_identity("b");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a PEM file\n").unwrap();
    let garbage = garbage.to_str().unwrap();
    let root = root.to_str().unwrap();
    for (cert, key, message) in [
        (
            cert_a.as_str(),
            key_b.as_str(),
            "does not belong to the certificate",
        ),
        (
            "/no/such.crt",
            key_b.as_str(),
            "cannot read the certificate /no/such.crt",
        ),
        (cert_a.as_str(), root, "cannot read the private key"),
        (garbage, key_b.as_str(), "no certificate in the file"),
        (cert_a.as_str(), garbage, "cannot read the private key"),
    ] {
        let (ok, _, stderr) = qstream(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--root",
            root,
            "--cert",
            cert,
            "--key",
            key,
        ]);
        assert!(!ok, "{cert} {key} accepted");
        assert!(stderr.contains(message), "{cert} {key}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
}

#[test]
fn get_says_the_disk_is_full() {
    let root = website("disk-full");
    let server = serve(&root, &[]);
    let url = format!("https://{}/big.bin", server.addr);
    // Writes to /dev/full fail with ENOSPC, as on a full disk.
    let output = Command::new(env!("CARGO_BIN_EXE_qstream"))
        .args(["get", "--insecure", "-o", "-", &url])
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(6),
        "exit code for a write failure"
    );
    assert!(
        stderr.contains("No space left on device") && stderr.contains("disk full"),
        "{stderr}"
    );
    assert!(stderr.contains("1 of 1 downloads failed"), "{stderr}");
}
