//! The `qstream` binary, run as a user would.

use std::process::Command;

fn qstream(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_qstream"))
        .args(args)
        .output()
        .expect("the qstream binary runs")
}

#[test]
fn demo_transfers_and_verifies_every_byte() {
    let output = qstream(&["demo", "--bytes", "8M", "--streams", "3", "--quiet"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("8388608 bytes over 3 streams"), "{stdout}");
    assert!(stdout.contains("every byte verified (BLAKE3)"), "{stdout}");
}

#[test]
fn demo_rejects_bad_sizes_with_a_clear_message() {
    for (size, message) in [
        ("0", "zero"),
        ("3X", "unknown size unit"),
        ("many", "not a size"),
    ] {
        let output = qstream(&["demo", "--bytes", size]);
        assert!(!output.status.success(), "--bytes {size} accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "--bytes {size}: {stderr}");
    }
    let output = qstream(&["demo", "--streams", "0"]);
    assert!(!output.status.success());
}

#[test]
fn qlogdir_writes_one_json_seq_qlog_per_connection_with_stream_states() {
    let dir = std::env::temp_dir().join(format!("qstream-qlog-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let output = Command::new(env!("CARGO_BIN_EXE_qstream"))
        .args(["demo", "--bytes", "256K", "--streams", "2", "--quiet"])
        .env("QLOGDIR", &dir)
        .output()
        .unwrap();
    assert!(output.status.success());
    let mut roles = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.ends_with(".sqlog"), "{name}");
        roles.push(name.rsplit('_').next().unwrap().to_owned());
        let text = std::fs::read_to_string(&path).unwrap();
        // JSON-SEQ (RFC 7464): every record starts with RS and ends with a newline.
        let records: Vec<&str> = text.split('\u{1e}').skip(1).collect();
        assert!(text.starts_with('\u{1e}') && records.iter().all(|r| r.ends_with('\n')));
        assert!(records[0].contains("\"file_schema\":\"urn:ietf:params:qlog:file:sequential\""));
        for event in [
            "quic:packet_sent",
            "quic:packet_received",
            "quic:stream_state_updated",
        ] {
            assert!(text.contains(event), "{name}: no {event}");
        }
        assert!(text.contains("\"frame_type\":\"stream\""), "{name}");
        // The process ends when the client is done, possibly before the server's driver logs
        // its own releases.
        if name.ends_with("client.sqlog") {
            assert!(text.contains("\"new\":\"destroyed\""), "{name}");
        }
    }
    roles.sort();
    assert_eq!(roles, ["client.sqlog", "server.sqlog"]);
}
