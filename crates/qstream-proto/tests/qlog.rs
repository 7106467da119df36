//! qlog traces (draft-ietf-quic-qlog-main-schema-14, quic-events-13) recorded in the simulator.

mod common;

use std::time::Duration;

use common::*;
use qstream_proto::sim::LinkConfig;
use qstream_proto::streams::ReadOutcome;
use qstream_proto::wire::Dir;
use serde_json::Value;

/// A pair recording qlog over a link that loses 5 % of datagrams, once connected, with the
/// records of the handshake.
fn connected_with_qlog(seed: u64) -> (Pair, Vec<Value>, Vec<Value>) {
    let mut pair = Pair::new(PairOptions {
        qlog: true,
        link: LinkConfig {
            loss: 0.05,
            ..LinkConfig::default()
        },
        seed,
        ..PairOptions::default()
    });
    let (mut client_log, mut server_log) = (Vec::new(), Vec::new());
    assert!(pair.run_until(Duration::from_secs(10), |p| {
        p.take_qlog(&mut client_log, &mut server_log);
        p.client_connected() && p.server_connected()
    }));
    (pair, client_log, server_log)
}

#[test]
fn qlog_records_every_packet_with_its_frames_and_every_stream_state_change() {
    let (mut pair, mut client_log, mut server_log) = connected_with_qlog(7);
    let now = pair.sim.now();
    let client = pair.client_conn().unwrap();
    let id = client.open(now, Dir::Bi).unwrap();
    let request = pattern(3, 20_000);
    client.write(id, &request).unwrap();
    client.finish(id).unwrap();
    let mut accepted = None;
    let mut got = Vec::new();
    let mut answered = false;
    let mut response = Vec::new();
    let mut client_done = false;
    assert!(pair.run_until(Duration::from_secs(20), |p| {
        let server = p.server_conn().unwrap();
        accepted = accepted.or_else(|| server.accept(Dir::Bi));
        if let Some(sid) = accepted {
            if drain(server, sid, &mut got) == Some(ReadOutcome::Finished) && !answered {
                server.write(sid, b"done").unwrap();
                server.finish(sid).unwrap();
                answered = true;
            }
        }
        if !client_done {
            client_done =
                drain(p.client_conn().unwrap(), id, &mut response) == Some(ReadOutcome::Finished);
        }
        p.take_qlog(&mut client_log, &mut server_log);
        // Until both sides released the stream and logged it.
        client_done && {
            let destroyed = |log: &[Value]| {
                log.iter().any(|e| {
                    e["name"] == "quic:stream_state_updated" && e["data"]["new"] == "destroyed"
                })
            };
            destroyed(&client_log) && destroyed(&server_log)
        }
    }));
    assert_eq!(got, request);

    for (log, vantage) in [(&client_log, "client"), (&server_log, "server")] {
        let header = &log[0];
        assert_eq!(
            header["file_schema"],
            "urn:ietf:params:qlog:file:sequential"
        );
        assert_eq!(header["serialization_format"], "application/qlog+json-seq");
        assert_eq!(header["trace"]["vantage_point"]["type"], vantage);
        let events = &log[1..];
        let times: Vec<f64> = events.iter().map(|e| e["time"].as_f64().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "time goes forward");
        let named = |name: &'static str| events.iter().filter(move |e| e["name"] == name);
        let frames_of = |name: &'static str| {
            named(name)
                .flat_map(|e| e["data"]["frames"].as_array().unwrap().clone())
                .map(|f| f["frame_type"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        for packet_type in ["initial", "handshake", "1RTT"] {
            assert!(
                named("quic:packet_sent")
                    .any(|e| e["data"]["header"]["packet_type"] == packet_type),
                "{vantage} sent no {packet_type} packet"
            );
        }
        for frames in [
            frames_of("quic:packet_sent"),
            frames_of("quic:packet_received"),
        ] {
            for ty in ["crypto", "ack", "stream"] {
                assert!(frames.iter().any(|f| f == ty), "{vantage}: no {ty} frame");
            }
        }
        // Both halves of the stream, through their RFC 9000 §3 states to release.
        let changes: Vec<(String, String)> = named("quic:stream_state_updated")
            .filter(|e| e["data"]["stream_id"] == u64::from(id))
            .map(|e| {
                (
                    e["data"]["stream_side"].as_str().unwrap().to_owned(),
                    e["data"]["new"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        for side in ["sending", "receiving"] {
            assert_eq!(
                changes
                    .iter()
                    .rfind(|(s, _)| s == side)
                    .map(|(_, n)| n.as_str()),
                Some("destroyed"),
                "{vantage} {side}: {changes:?}"
            );
        }
    }
    // Lost packets are logged by the side that sent them.
    let lost = client_log
        .iter()
        .chain(&server_log)
        .filter(|e| e["name"] == "quic:packet_lost")
        .count();
    let stats_lost = pair.client_conn().unwrap().stats().packets_lost
        + pair.server_conn().unwrap().stats().packets_lost;
    assert!(lost > 0, "the link lost nothing: pick another seed");
    assert_eq!(lost as u64, stats_lost);
}

#[test]
fn qlog_is_off_unless_asked_for() {
    let mut pair = Pair::new(PairOptions::default());
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    let now = pair.sim.now();
    assert!(pair.client_conn().unwrap().poll_qlog(now).is_none());
    assert!(pair.server_conn().unwrap().poll_qlog(now).is_none());
}

/// The fields quic-events-13 defines for an event's data or a frame: `(required, optional)`.
type Fields = (&'static [&'static str], &'static [&'static str]);

/// quic-events-13 §4–§7: the data fields of each event qstream logs.
fn event_fields(name: &str) -> Option<Fields> {
    Some(match name {
        "quic:packet_sent" => (
            &["header"],
            &[
                "frames",
                "stateless_reset_token",
                "supported_versions",
                "raw",
                "datagram_id",
                "is_mtu_probe_packet",
                "trigger",
            ],
        ),
        "quic:packet_received" => (
            &["header"],
            &[
                "frames",
                "stateless_reset_token",
                "supported_versions",
                "raw",
                "datagram_id",
                "trigger",
            ],
        ),
        "quic:packet_lost" => (&[], &["header", "frames", "is_mtu_probe_packet", "trigger"]),
        "quic:recovery_metrics_updated" => (
            &[],
            &[
                "min_rtt",
                "smoothed_rtt",
                "latest_rtt",
                "rtt_variance",
                "pto_count",
                "congestion_window",
                "bytes_in_flight",
                "ssthresh",
                "packets_in_flight",
                "pacing_rate",
            ],
        ),
        "quic:stream_state_updated" => (
            &["stream_id", "new", "stream_side"],
            &["stream_type", "old", "trigger"],
        ),
        "quic:parameters_set" => (
            &[],
            &[
                "initiator",
                "resumption_allowed",
                "early_data_enabled",
                "tls_cipher",
                "original_destination_connection_id",
                "initial_source_connection_id",
                "retry_source_connection_id",
                "stateless_reset_token",
                "disable_active_migration",
                "max_idle_timeout",
                "max_udp_payload_size",
                "ack_delay_exponent",
                "max_ack_delay",
                "active_connection_id_limit",
                "initial_max_data",
                "initial_max_stream_data_bidi_local",
                "initial_max_stream_data_bidi_remote",
                "initial_max_stream_data_uni",
                "initial_max_streams_bidi",
                "initial_max_streams_uni",
                "preferred_address",
                "unknown_parameters",
                "max_datagram_frame_size",
                "grease_quic_bit",
                "reset_stream_at",
            ],
        ),
        "quic:version_information" => (
            &[],
            &["server_versions", "client_versions", "chosen_version"],
        ),
        "quic:alpn_information" => (&[], &["server_alpns", "client_alpns", "chosen_alpn"]),
        _ => return None,
    })
}

/// quic-events-13 §8.13: the fields of each frame type, besides `frame_type` and `raw`.
fn frame_fields(frame_type: &str) -> Option<Fields> {
    Some(match frame_type {
        "padding" | "ping" | "handshake_done" | "datagram" => (&[], &[]),
        "ack" => (&[], &["ack_delay", "acked_ranges", "ect1", "ect0", "ce"]),
        "reset_stream" => (&["stream_id", "error", "final_size"], &["error_code"]),
        "stop_sending" => (&["stream_id", "error"], &["error_code"]),
        "crypto" => (&["offset", "raw"], &[]),
        "new_token" => (&["token"], &[]),
        "stream" => (&["stream_id"], &["offset", "fin"]),
        "max_data" => (&["maximum"], &[]),
        "max_stream_data" => (&["stream_id", "maximum"], &[]),
        "max_streams" => (&["stream_type", "maximum"], &[]),
        "data_blocked" => (&["limit"], &[]),
        "stream_data_blocked" => (&["stream_id", "limit"], &[]),
        "streams_blocked" => (&["stream_type", "limit"], &[]),
        "new_connection_id" => (
            &["sequence_number", "retire_prior_to", "connection_id"],
            &["connection_id_length", "stateless_reset_token"],
        ),
        "retire_connection_id" => (&["sequence_number"], &[]),
        "path_challenge" | "path_response" => (&[], &["data"]),
        "connection_close" => (
            &[],
            &[
                "error_space",
                "error",
                "error_code",
                "reason",
                "reason_bytes",
                "trigger_frame_type",
            ],
        ),
        "unknown" => (&["frame_type_bytes"], &[]),
        _ => return None,
    })
}

/// Checks that `object` has every required field and no other than the optional ones.
fn check_fields(what: &str, object: &Value, (required, optional): Fields, extra: &[&str]) {
    let map = object
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {object}"));
    for field in required {
        assert!(map.contains_key(*field), "{what}: no {field}: {object}");
    }
    for field in map.keys() {
        assert!(
            required.contains(&field.as_str())
                || optional.contains(&field.as_str())
                || extra.contains(&field.as_str()),
            "{what}: {field} is not a field quic-events-13 defines: {object}"
        );
    }
}

/// main-schema-14 §9.2 RawInfo.
fn check_raw(what: &str, raw: &Value) {
    check_fields(what, raw, (&[], &["length", "payload_length", "data"]), &[]);
}

/// RFC 9000 §3.1, §3.2: whether a half may go from `old` to `new` in one step (quic-events
/// §5.13 names; "destroyed" once released).
fn allowed_step(side: &str, old: Option<&str>, new: &str) -> bool {
    if new == "destroyed" {
        return old.is_some();
    }
    match (side, old) {
        ("sending", None) => new == "send",
        ("sending", Some("send")) => ["data_sent", "reset_sent"].contains(&new),
        ("sending", Some("data_sent")) => ["data_received", "reset_sent"].contains(&new),
        ("sending", Some("reset_sent")) => new == "reset_received",
        ("receiving", None) => new == "receive",
        ("receiving", Some("receive")) => ["size_known", "reset_received"].contains(&new),
        ("receiving", Some("size_known")) => ["data_received", "reset_received"].contains(&new),
        ("receiving", Some("data_received")) => new == "data_read",
        ("receiving", Some("reset_received")) => new == "reset_read",
        _ => false,
    }
}

/// Every event of a real transfer (handshake, streams finished, reset and stopped, a
/// datagram, loss, an application close) is valid against quic-events-13: its data fields and
/// each frame's fields are the draft's, triggers come from the draft's lists, ACK delays are
/// in milliseconds, times never go back, and every half passes through each RFC 9000 §3 state
/// one step at a time.
#[test]
fn qlog_every_event_of_a_transfer_matches_the_quic_events_13_definitions() {
    let (mut pair, mut client_log, mut server_log) = connected_with_qlog(11);
    let now = pair.sim.now();
    let client = pair.client_conn().unwrap();
    let finished = client.open(now, Dir::Bi).unwrap();
    client.write(finished, &pattern(1, 50_000)).unwrap();
    client.finish(finished).unwrap();
    let reset = client.open(now, Dir::Uni).unwrap();
    client.write(reset, &pattern(2, 5_000)).unwrap();
    client.reset_stream(reset, 7u32.into()).unwrap();
    let stopped = client.open(now, Dir::Uni).unwrap();
    client.write(stopped, &pattern(3, 300_000)).unwrap();
    client
        .send_datagram(bytes::Bytes::from_static(b"datagram"))
        .unwrap();
    let mut body = Vec::new();
    let mut accepted = Vec::new();
    assert!(pair.run_until(Duration::from_secs(20), |p| {
        let server = p.server_conn().unwrap();
        while let Some(id) = server.accept(Dir::Bi).or_else(|| server.accept(Dir::Uni)) {
            accepted.push(id);
            if id == stopped {
                server.stop(id, 9u32.into()).unwrap();
            }
        }
        let done = accepted.contains(&finished)
            && drain(server, finished, &mut body) == Some(ReadOutcome::Finished);
        if accepted.contains(&reset) {
            let _ = server.read(reset, 65536);
        }
        p.take_qlog(&mut client_log, &mut server_log);
        done
    }));
    let now = pair.sim.now();
    pair.client_conn()
        .unwrap()
        .close(now, 42u32.into(), b"done \"here\"");
    pair.run_until(Duration::from_secs(2), |p| {
        p.take_qlog(&mut client_log, &mut server_log);
        false
    });

    let mut seen_frames = std::collections::BTreeSet::new();
    for (log, vantage) in [(&client_log, "client"), (&server_log, "server")] {
        assert_eq!(
            log[0]["trace"]["event_schemas"],
            serde_json::json!(["urn:ietf:params:qlog:events:quic-13"])
        );
        assert_eq!(
            log[0]["trace"]["common_fields"]["reference_time"]["clock_type"],
            "monotonic"
        );
        let mut last_time = 0.0;
        let mut halves: std::collections::BTreeMap<(u64, String), Option<String>> =
            Default::default();
        let mut names = std::collections::BTreeSet::new();
        for event in &log[1..] {
            let what = format!("{vantage} {}", event["name"]);
            check_fields(&what, event, (&["time", "name", "data"], &[]), &[]);
            let time = event["time"].as_f64().unwrap();
            assert!(time >= last_time, "{what}: time went back to {time}");
            last_time = time;
            let name = event["name"].as_str().unwrap();
            names.insert(name.to_owned());
            let fields = event_fields(name).unwrap_or_else(|| panic!("{what}: not an event"));
            let data = &event["data"];
            check_fields(&what, data, fields, &[]);
            if let Some(raw) = data.get("raw") {
                check_raw(&what, raw);
            }
            if let Some(trigger) = data.get("trigger").and_then(Value::as_str) {
                let allowed: &[&str] = match name {
                    "quic:packet_lost" => {
                        &["reordering_threshold", "time_threshold", "pto_expired"]
                    }
                    "quic:stream_state_updated" => &["local", "remote"],
                    "quic:packet_received" => &["keys_available"],
                    _ => &[
                        "retransmit_reordered",
                        "retransmit_timeout",
                        "pto_probe",
                        "retransmit_crypto",
                        "cc_bandwidth_probe",
                    ],
                };
                assert!(allowed.contains(&trigger), "{what}: trigger {trigger}");
            }
            if let Some(header) = data.get("header") {
                check_fields(
                    &what,
                    header,
                    (
                        &["packet_type"],
                        &[
                            "packet_type_bytes",
                            "spin_bit",
                            "key_phase",
                            "key_phase_bit",
                            "packet_number_length",
                            "packet_number",
                            "token",
                            "length",
                            "version",
                            "scil",
                            "dcil",
                            "scid",
                            "dcid",
                        ],
                    ),
                    &[],
                );
            }
            for frame in data
                .get("frames")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let ty = frame["frame_type"].as_str().unwrap();
                seen_frames.insert(ty.to_owned());
                let what = format!("{what} {ty} frame");
                let fields = frame_fields(ty).unwrap_or_else(|| panic!("{what}: not a frame type"));
                check_fields(&what, frame, fields, &["frame_type", "raw"]);
                if let Some(raw) = frame.get("raw") {
                    check_raw(&what, raw);
                }
                if ty == "ack" {
                    // Milliseconds: never more than the 25 ms max_ack_delay plus scheduling.
                    let delay = frame["ack_delay"].as_f64().unwrap();
                    assert!((0.0..=30.0).contains(&delay), "{what}: ack_delay {delay}");
                }
                if ty == "connection_close" && frame["error_space"] == "application" {
                    assert_eq!(frame["error"], "unknown");
                    assert_eq!(frame["error_code"], 42);
                    assert_eq!(frame["reason"], "done \"here\"");
                }
                if ty == "reset_stream" || ty == "stop_sending" {
                    assert_eq!(frame["error"], "unknown", "{what}");
                    assert!(frame["error_code"].is_u64(), "{what}");
                }
            }
            if name == "quic:stream_state_updated" {
                let side = data["stream_side"].as_str().unwrap().to_owned();
                let key = (data["stream_id"].as_u64().unwrap(), side.clone());
                let old = halves.get(&key).cloned().flatten();
                assert_eq!(
                    data.get("old").and_then(Value::as_str),
                    old.as_deref(),
                    "{what}: old is not the last state logged"
                );
                let new = data["new"].as_str().unwrap();
                assert!(
                    allowed_step(&side, old.as_deref(), new),
                    "{what}: {side} {old:?} -> {new} skips a state"
                );
                halves.insert(key, Some(new.to_owned()));
            }
        }
        for name in [
            "quic:packet_sent",
            "quic:packet_received",
            "quic:recovery_metrics_updated",
            "quic:stream_state_updated",
            "quic:parameters_set",
            "quic:version_information",
            "quic:alpn_information",
        ] {
            assert!(names.contains(name), "{vantage}: no {name}");
        }
        let parameters: Vec<&Value> = log[1..]
            .iter()
            .filter(|e| e["name"] == "quic:parameters_set")
            .collect();
        for initiator in ["local", "remote"] {
            assert!(
                parameters
                    .iter()
                    .any(|e| e["data"]["initiator"] == initiator),
                "{vantage}: no {initiator} parameters"
            );
        }
    }
    // The client sends the data, so it loses packets; the server only acknowledges.
    assert!(
        client_log.iter().any(|e| e["name"] == "quic:packet_lost"),
        "the link lost nothing: pick another seed"
    );
    for ty in [
        "ack",
        "crypto",
        "stream",
        "reset_stream",
        "stop_sending",
        "datagram",
        "connection_close",
        "handshake_done",
        "new_connection_id",
    ] {
        assert!(seen_frames.contains(ty), "no {ty} frame was logged");
    }
}
