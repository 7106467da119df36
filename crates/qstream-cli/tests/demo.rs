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
