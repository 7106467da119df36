//! Stream data, state transitions and error cases in the simulator (RFC 9000 §2-§4).

mod common;

use std::time::Duration;

use common::*;
use qstream_proto::Event;
use qstream_proto::streams::{ReadOutcome, RecvState, SendState, StreamEvent};
use qstream_proto::wire::{Dir, VarInt};

fn connected() -> Pair {
    let mut pair = Pair::new(PairOptions::default());
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    pair
}

#[test]
fn streams_request_and_response_on_a_bidirectional_stream() {
    let mut pair = connected();
    let now = pair.sim.now();
    let request = pattern(1, 100_000);
    let client = pair.client_conn().unwrap();
    let id = client.open(now, Dir::Bi).unwrap();
    assert_eq!(client.write(id, &request).unwrap(), request.len());
    client.finish(id).unwrap();
    let mut server_stream = None;
    let mut responded = false;
    let mut got_request = Vec::new();
    let mut got_response = Vec::new();
    let response = pattern(2, 50_000);
    let done = pair.run_until(Duration::from_secs(10), |p| {
        let server = p.server_conn().unwrap();
        if server_stream.is_none() {
            server_stream = server.accept(Dir::Bi);
        }
        if let Some(sid) = server_stream {
            if drain(server, sid, &mut got_request) == Some(ReadOutcome::Finished) && !responded {
                assert_eq!(server.write(sid, &response).unwrap(), response.len());
                server.finish(sid).unwrap();
                responded = true;
            }
        }
        let client = p.client_conn().unwrap();
        drain(client, id, &mut got_response) == Some(ReadOutcome::Finished)
    });
    let now = pair.sim.now();
    let snapshot = pair.client_conn().unwrap().streams_snapshot(now);
    let server_snapshot = pair.server_conn().unwrap().streams_snapshot(now);
    assert!(
        done,
        "request {} of {}, response {}; client {snapshot:#?} server {server_snapshot:#?}",
        got_request.len(),
        request.len(),
        got_response.len()
    );
    assert_eq!(got_request, request);
    assert_eq!(got_response, response);
}

/// Runs until `id`'s stream on the server is accepted and returns it.
fn accept_on_server(pair: &mut Pair, dir: Dir) -> qstream_proto::wire::StreamId {
    let mut accepted = None;
    assert!(pair.run_until(Duration::from_secs(5), |p| {
        accepted = p.server_conn().unwrap().accept(dir);
        accepted.is_some()
    }));
    accepted.unwrap()
}

#[test]
fn streams_state_transitions_through_the_snapshot() {
    let mut pair = connected();
    let now = pair.sim.now();
    let client = pair.client_conn().unwrap();
    let id = client.open(now, Dir::Bi).unwrap();
    let send_state = |pair: &mut Pair| {
        let now = pair.sim.now();
        let snapshot = pair.client_conn().unwrap().streams_snapshot(now);
        snapshot
            .streams
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.send.as_ref().unwrap().state)
    };
    assert_eq!(send_state(&mut pair), Some(SendState::Send));
    pair.client_conn().unwrap().write(id, b"hello").unwrap();
    pair.client_conn().unwrap().finish(id).unwrap();
    // Sent (the FIN with it), not yet acknowledged: Data Sent.
    pair.sim.step();
    assert_eq!(send_state(&mut pair), Some(SendState::DataSent));
    let sid = accept_on_server(&mut pair, Dir::Bi);
    let recv_state = |pair: &mut Pair| {
        let now = pair.sim.now();
        let snapshot = pair.server_conn().unwrap().streams_snapshot(now);
        snapshot
            .streams
            .iter()
            .find(|s| s.id == sid)
            .map(|s| s.recv.as_ref().unwrap().state)
    };
    assert_eq!(recv_state(&mut pair), Some(RecvState::DataRecvd));
    pair.run_until(Duration::from_millis(100), |_| false);
    assert_eq!(send_state(&mut pair), Some(SendState::DataRecvd));
    let mut body = Vec::new();
    assert_eq!(
        drain(pair.server_conn().unwrap(), sid, &mut body),
        Some(ReadOutcome::Finished)
    );
    assert_eq!(body, b"hello");
    // The receive half is Data Read; the server's send half is still open: not released.
    assert_eq!(recv_state(&mut pair), Some(RecvState::DataRead));
    pair.server_conn().unwrap().finish(sid).unwrap();
    pair.run_until(Duration::from_millis(100), |_| false);
    let mut empty = Vec::new();
    assert_eq!(
        drain(pair.client_conn().unwrap(), id, &mut empty),
        Some(ReadOutcome::Finished)
    );
    pair.run_until(Duration::from_millis(100), |_| false);
    let now = pair.sim.now();
    assert!(
        pair.server_conn()
            .unwrap()
            .streams_snapshot(now)
            .streams
            .is_empty()
    );
    assert!(
        pair.client_conn()
            .unwrap()
            .streams_snapshot(now)
            .streams
            .is_empty()
    );
    assert!(
        pair.server_events
            .contains(&Event::Stream(StreamEvent::Released(sid)))
    );
}

#[test]
fn streams_unidirectional_carry_data_one_way() {
    let mut pair = connected();
    let now = pair.sim.now();
    let client = pair.client_conn().unwrap();
    let id = client.open(now, Dir::Uni).unwrap();
    assert_eq!(
        client.read(id, 10),
        Err(qstream_proto::streams::StreamError::WrongDirection)
    );
    client.write(id, b"one way").unwrap();
    client.finish(id).unwrap();
    let sid = accept_on_server(&mut pair, Dir::Uni);
    assert_eq!(sid, id);
    let server = pair.server_conn().unwrap();
    assert_eq!(
        server.write(sid, b"x"),
        Err(qstream_proto::streams::StreamError::WrongDirection)
    );
    let mut body = Vec::new();
    pair.run_until(Duration::from_secs(1), |p| {
        drain(p.server_conn().unwrap(), sid, &mut body) == Some(ReadOutcome::Finished)
    });
    assert_eq!(body, b"one way");
}

#[test]
fn streams_reset_after_fin_reaches_the_peer() {
    let mut pair = connected();
    let now = pair.sim.now();
    let client = pair.client_conn().unwrap();
    let id = client.open(now, Dir::Bi).unwrap();
    client.write(id, &[1; 5000]).unwrap();
    client.finish(id).unwrap();
    // Data Sent to Reset Sent (RFC 9000 §3.1): allowed until everything is acknowledged.
    pair.sim.step();
    pair.client_conn()
        .unwrap()
        .reset_stream(id, VarInt::from_u32(77))
        .unwrap();
    let sid = accept_on_server(&mut pair, Dir::Bi);
    let mut body = Vec::new();
    let mut end = None;
    pair.run_until(Duration::from_secs(1), |p| {
        end = drain(p.server_conn().unwrap(), sid, &mut body);
        end.is_some()
    });
    // Either all data and the end arrived before the reset, or the reset won: never a short
    // stream that looks complete.
    match end {
        Some(ReadOutcome::Finished) => assert_eq!(body.len(), 5000),
        Some(ReadOutcome::Reset(code)) => assert_eq!(code, VarInt::from_u32(77)),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn streams_lost_fin_then_reset_has_the_same_final_size() {
    let mut pair = connected();
    let now = pair.sim.now();
    // Everything the client sends is lost for a while, so the FIN never arrives; then it
    // resets. The RESET_STREAM's final size must equal what was sent (RFC 9000 §4.5).
    pair.sim
        .set_filter(Some(Box::new(|from, _, _| from != client_addr())));
    let client = pair.client_conn().unwrap();
    let id = client.open(now, Dir::Bi).unwrap();
    client.write(id, &[2; 3000]).unwrap();
    client.finish(id).unwrap();
    pair.run_until(Duration::from_millis(5), |_| false);
    pair.client_conn()
        .unwrap()
        .reset_stream(id, VarInt::from_u32(5))
        .unwrap();
    pair.sim.set_filter(None);
    let sid = accept_on_server(&mut pair, Dir::Bi);
    let mut body = Vec::new();
    let mut end = None;
    pair.run_until(Duration::from_secs(5), |p| {
        end = drain(p.server_conn().unwrap(), sid, &mut body);
        end.is_some()
    });
    assert_eq!(end, Some(ReadOutcome::Reset(VarInt::from_u32(5))));
    assert!(
        pair.server_conn().unwrap().close_reason().is_none(),
        "no FINAL_SIZE_ERROR"
    );
}

#[test]
fn streams_stop_before_any_data_and_writing_to_a_stopped_stream() {
    let mut pair = connected();
    let now = pair.sim.now();
    let client = pair.client_conn().unwrap();
    let id = client.open(now, Dir::Bi).unwrap();
    client.write(id, b"first").unwrap();
    let sid = accept_on_server(&mut pair, Dir::Bi);
    // The server stops before reading anything.
    pair.server_conn()
        .unwrap()
        .stop(sid, VarInt::from_u32(9))
        .unwrap();
    assert!(pair.run_until(Duration::from_secs(1), |p| {
        p.client_events
            .contains(&Event::Stream(StreamEvent::Stopped {
                id,
                code: VarInt::from_u32(9),
            }))
    }));
    // Writing to a stream the peer stopped fails with the peer's code; the send half was reset
    // with it (RFC 9000 §3.5).
    let now = pair.sim.now();
    let client = pair.client_conn().unwrap();
    assert_eq!(
        client.write(id, b"more"),
        Err(qstream_proto::streams::StreamError::Stopped(
            VarInt::from_u32(9)
        ))
    );
    let snapshot = client.streams_snapshot(now);
    let send = snapshot
        .streams
        .iter()
        .find(|s| s.id == id)
        .and_then(|s| s.send.clone());
    assert!(send.is_none_or(|s| matches!(s.state, SendState::ResetSent | SendState::ResetRecvd)));
}

#[test]
fn streams_overlapping_duplicated_and_reordered_frames_reassemble() {
    for seed in seeds(5) {
        let mut pair = Pair::new(PairOptions {
            seed,
            link: qstream_proto::sim::LinkConfig {
                duplicate: 0.2,
                reorder: 0.3,
                loss: 0.05,
                ..Default::default()
            },
            ..PairOptions::default()
        });
        assert!(pair.drive_handshake(Duration::from_secs(10)));
        let now = pair.sim.now();
        let data = pattern(seed, 300_000);
        let id = pair.client_conn().unwrap().open(now, Dir::Uni).unwrap();
        let mut upload = Upload::new(id, data.clone());
        let mut download = Download::new(Dir::Uni);
        let done = pair.run_until(Duration::from_secs(30), |p| {
            upload.push(p.client_conn().unwrap());
            download.pull(p.server_conn().unwrap())
        });
        assert!(
            done && download.finished(),
            "seed {seed}: {} of {}",
            download.received,
            data.len()
        );
        assert!(download.body == data, "seed {seed}: corrupted");
    }
}

#[test]
fn streams_priority_first_then_round_robin() {
    let mut pair = connected();
    let now = pair.sim.now();
    let client = pair.client_conn().unwrap();
    // A bulk stream with a lot to send, then a small stream at the same priority: round-robin
    // lets the small one finish long before the bulk one.
    let bulk = client.open(now, Dir::Uni).unwrap();
    client.write(bulk, &[1; 1_000_000]).unwrap();
    client.finish(bulk).unwrap();
    let small = client.open(now, Dir::Uni).unwrap();
    client.write(small, &[2; 2_000]).unwrap();
    client.finish(small).unwrap();
    // An urgent stream opened last but with a higher priority goes first.
    let urgent = client.open(now, Dir::Uni).unwrap();
    client.set_priority(urgent, 10).unwrap();
    client.write(urgent, &[3; 20_000]).unwrap();
    client.finish(urgent).unwrap();
    let mut finished_order = Vec::new();
    let mut bodies = std::collections::HashMap::new();
    assert!(pair.run_until(Duration::from_secs(30), |p| {
        let server = p.server_conn().unwrap();
        while let Some(id) = server.accept(Dir::Uni) {
            bodies.insert(id, Vec::new());
        }
        for (id, body) in bodies.iter_mut() {
            if !finished_order.contains(id)
                && drain(server, *id, body) == Some(ReadOutcome::Finished)
            {
                finished_order.push(*id);
            }
        }
        finished_order.len() == 3
    }));
    assert_eq!(finished_order, vec![urgent, small, bulk]);
}
