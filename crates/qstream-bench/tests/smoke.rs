//! The benchmark in smoke mode: every scenario runs for every stack and yields figures, so the
//! benchmark cannot rot (churn over a delayed path too). Sizes are tiny; the figures are not
//! checked, only their presence.

use std::process::Command;

/// The `qstream` binary the `cli` scenario runs, beside the benchmark's: built when a test
/// run of this crate alone has not built it.
fn qstream_binary() -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_qstream-bench")).with_file_name("qstream");
    if !path.exists() {
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "-p", "qstream-cli", "--bin", "qstream"]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "building qstream failed");
    }
    path
}

#[test]
fn smoke_every_scenario_yields_figures_for_every_stack() {
    let qstream = qstream_binary();
    let json =
        std::env::temp_dir().join(format!("qstream-bench-smoke-{}.json", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_qstream-bench"))
        .args(["--smoke", "--rtt-us", "1000", "--json"])
        .arg(&json)
        .env("QSTREAM_BIN", &qstream)
        .output()
        .expect("run qstream-bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "qstream-bench failed:\n{stderr}");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("qstream/quinn"), "no table:\n{table}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON written")).unwrap();
    std::fs::remove_file(&json).ok();
    assert_eq!(report["failures"].as_array().map(Vec::len), Some(0));
    let results = report["results"].as_array().expect("results");
    let scenarios: Vec<&str> = results
        .iter()
        .filter_map(|r| r["scenario"].as_str())
        .collect();
    for expected in [
        "bulk",
        "churn c=1",
        "churn c=50",
        "churn c=100",
        "churn c=100 rtt=1.0ms",
        "handshakes c=1",
        "handshakes c=8",
        "idle memory",
        "latency",
    ] {
        assert!(
            scenarios.contains(&expected),
            "{expected} missing from {scenarios:?}"
        );
    }
    for row in results {
        let metric = row["metric"].as_str().unwrap();
        // Packet and datagram counters exist only for the QUIC stacks, and only they run
        // through the datagram relay of a delayed path.
        let quic_only = ["datagrams", "ACKs", "lost", "packets per"];
        let delayed = row["scenario"].as_str().unwrap().contains("rtt=");
        let stacks: &[&str] = if delayed || quic_only.iter().any(|m| metric.contains(m)) {
            &["qstream", "quinn"]
        } else {
            &["qstream", "quinn", "tcp+tls"]
        };
        for stack in stacks {
            let median = row["median"][stack].as_f64();
            assert!(
                median.is_some_and(|m| m.is_finite() && m >= 0.0),
                "{} {metric}: {stack} has no figure: {row}",
                row["scenario"]
            );
        }
        // A ratio needs a non-zero denominator; loss and ACK counts can be zero.
        assert!(
            row["ratio"]["qstream/quinn"].is_number()
                || metric.contains("ACKs")
                || metric.contains("lost")
        );
    }

    // The loss scenario: every pair moved its bytes over every path, in finite time.
    let loss = report["loss"]["results"].as_array().expect("loss results");
    assert_eq!(report["loss"]["failures"].as_array().map(Vec::len), Some(0));
    for case in ["loss 5%", "100Mbit/s rtt=20ms loss 1%"] {
        let time = loss
            .iter()
            .find(|r| r["scenario"] == case && r["metric"] == "time")
            .unwrap_or_else(|| panic!("no time for {case}: {loss:?}"));
        for pair in [
            "qstream",
            "qstream→quinn",
            "quinn→qstream",
            "qstream newreno",
            "qstream bbr",
            "quinn",
        ] {
            let median = time["median"][pair].as_f64();
            assert!(
                median.is_some_and(|m| m.is_finite() && m > 0.0),
                "{case}: {pair} has no time: {time}"
            );
        }
    }
    assert!(table.contains("qstream/quinn") && table.contains("loss 5%"));

    // The resume scenario: both stacks answered a resumed connection's first request, in
    // 0-RTT and after the handshake, on every path; 0-RTT saves a round trip at 20 ms.
    let resume = report["resume"]["results"]
        .as_array()
        .expect("resume results");
    assert_eq!(
        report["resume"]["failures"].as_array().map(Vec::len),
        Some(0)
    );
    let first_byte = |case: &str, metric: &str, stack: &str| {
        resume
            .iter()
            .find(|r| r["scenario"] == case && r["metric"] == metric)
            .and_then(|r| r["median"][stack].as_f64())
            .unwrap_or_else(|| panic!("no {metric} for {case}, {stack}: {resume:?}"))
    };
    for case in ["resume loopback", "resume rtt=1ms", "resume rtt=20ms"] {
        for stack in ["qstream", "quinn"] {
            let early = first_byte(case, "first byte, 0-RTT", stack);
            let late = first_byte(case, "first byte, resumed 1-RTT", stack);
            assert!(early > 0.0 && late > 0.0, "{case} {stack}: {early} {late}");
        }
    }
    assert!(
        first_byte("resume rtt=20ms", "first byte, 0-RTT", "qstream")
            < first_byte("resume rtt=20ms", "first byte, resumed 1-RTT", "qstream") - 10.0
    );

    // The cli scenario: the tools ran as processes, with time and each side's CPU.
    let cli = report["cli"]["results"].as_array().expect("cli results");
    assert_eq!(report["cli"]["failures"].as_array().map(Vec::len), Some(0));
    let figure = |scenario: &str, metric: &str, column: &str| {
        cli.iter()
            .find(|r| {
                r["scenario"] == scenario && r["metric"].as_str().unwrap().starts_with(metric)
            })
            .and_then(|r| r["median"][column].as_f64())
            .unwrap_or_else(|| panic!("no {metric} of {column} in {scenario}: {cli:?}"))
    };
    for column in ["qstream", "quinn ← qstream get", "quinn"] {
        assert!(figure("cli download", "throughput", column) > 0.0);
        assert!(figure("cli download", "client CPU", column) > 0.0);
        assert!(figure("cli download", "server CPU", column) > 0.0);
    }
    assert!(figure("cli send/recv", "throughput", "qstream") > 0.0);
    assert!(figure("cli demo", "throughput", "qstream") > 0.0);
}
