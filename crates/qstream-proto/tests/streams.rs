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
