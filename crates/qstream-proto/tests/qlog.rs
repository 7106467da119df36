//! qlog traces (draft-ietf-quic-qlog-main-schema-14, quic-events-13) recorded in the simulator.

mod common;

use std::time::Duration;

use common::*;
use qstream_proto::sim::LinkConfig;
use qstream_proto::streams::ReadOutcome;
use qstream_proto::wire::Dir;
use serde_json::Value;

/// Takes every queued qlog record of both connections, checking the JSON-SEQ framing.
fn take_records(pair: &mut Pair, client: &mut Vec<Value>, server: &mut Vec<Value>) {
    let now = pair.sim.now();
    let take = |connection: Option<&mut qstream_proto::Connection>, out: &mut Vec<Value>| {
        let Some(connection) = connection else { return };
        while let Some(record) = connection.poll_qlog(now) {
            let json = record
                .strip_prefix('\u{1e}')
                .and_then(|r| r.strip_suffix('\n'))
                .unwrap_or_else(|| panic!("not a JSON-SEQ record: {record:?}"));
            out.push(serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}")));
        }
    };
    take(pair.client_conn(), client);
    take(pair.server_conn(), server);
}

#[test]
fn qlog_records_every_packet_with_its_frames_and_every_stream_state_change() {
    let mut pair = Pair::new(PairOptions {
        qlog: true,
        link: LinkConfig {
            loss: 0.05,
            ..LinkConfig::default()
        },
        seed: 7,
        ..PairOptions::default()
    });
    let (mut client_log, mut server_log) = (Vec::new(), Vec::new());
    assert!(pair.run_until(Duration::from_secs(10), |p| {
        take_records(p, &mut client_log, &mut server_log);
        p.client_connected() && p.server_connected()
    }));
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
        take_records(p, &mut client_log, &mut server_log);
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
