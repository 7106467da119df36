//! Stream credit (RFC 9000 §4.6): FIFO waiters, cancelled opens, credit only on release.

mod common;

use std::time::Duration;

use common::*;
use qstream_proto::streams::{HeldReason, ReadOutcome, StreamEvent};
use qstream_proto::wire::Dir;
use qstream_proto::{Event, Side, TransportConfig};

fn limited(limit: u64) -> Pair {
    let mut server_transport = TransportConfig::default();
    server_transport.streams.max_concurrent_bidi = limit;
    let mut pair = Pair::new(PairOptions {
        server_transport,
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    pair
}

/// The server answers and releases every stream it accepts.
fn serve_and_release(pair: &mut Pair) {
    let server = pair.server_conn().unwrap();
    while let Some(id) = server.accept(Dir::Bi) {
        server.write(id, b"ok").unwrap();
        server.finish(id).unwrap();
        server.release(id);
    }
}

fn granted(events: &[Event]) -> Vec<(u64, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Stream(StreamEvent::OpenGranted { ticket, id }) => Some((ticket.0, id.index())),
            _ => None,
        })
        .collect()
}

#[test]
fn credit_waiters_are_served_first_come_first_served() {
    let mut pair = limited(2);
    let now = pair.sim.now();
    let client = pair.client_conn().unwrap();
    let first = client.request_open(now, Dir::Bi).unwrap();
    let second = client.request_open(now, Dir::Bi).unwrap();
    let tickets: Vec<_> = (0..3)
        .map(|_| client.request_open(now, Dir::Bi).unwrap_err())
        .collect();
    // An immediate open may not jump the queue.
    assert!(client.open(now, Dir::Bi).is_err());
    for id in [first, second] {
        client.write(id, b"request").unwrap();
        client.finish(id).unwrap();
    }
    let mut open = vec![first, second];
    pair.run_until(Duration::from_secs(5), |p| {
        serve_and_release(p);
        for (_, id) in granted(&p.client_events).into_iter().skip(open.len() - 2) {
            let id = qstream_proto::wire::StreamId::new(Side::Client, Dir::Bi, id).unwrap();
            let client = p.client_conn().unwrap();
            client.write(id, b"request").unwrap();
            client.finish(id).unwrap();
            open.push(id);
        }
        let client = p.client_conn().unwrap();
        for id in &open {
            let mut body = Vec::new();
            if drain(client, *id, &mut body) == Some(ReadOutcome::Finished) {
                client.release(*id);
            }
        }
        open.len() == 5
    });
    let grants = granted(&pair.client_events);
    assert_eq!(
        grants.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        tickets.iter().map(|t| t.0).collect::<Vec<_>>(),
        "granted in request order"
    );
    assert_eq!(
        grants.iter().map(|(_, i)| *i).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
}

#[test]
fn credit_cancelled_open_consumes_no_stream_id() {
    let mut pair = limited(1);
    let now = pair.sim.now();
    let client = pair.client_conn().unwrap();
    let first = client.open(now, Dir::Bi).unwrap();
    let ticket = client.request_open(now, Dir::Bi).unwrap_err();
    assert!(client.cancel_open(ticket));
    assert!(!client.cancel_open(ticket), "a ticket is cancelled once");
    client.write(first, b"request").unwrap();
    client.finish(first).unwrap();
    let mut body = Vec::new();
    pair.run_until(Duration::from_secs(5), |p| {
        serve_and_release(p);
        let client = p.client_conn().unwrap();
        if drain(client, first, &mut body) == Some(ReadOutcome::Finished) {
            client.release(first);
        }
        let now = p.sim.now();
        p.client_conn()
            .unwrap()
            .streams_snapshot(now)
            .credit(Side::Client, Dir::Bi)
            .available
            == 1
    });
    assert!(
        granted(&pair.client_events).is_empty(),
        "nothing granted to a cancelled request"
    );
    // The next stream is index 1: the cancelled request took no ID.
    let now = pair.sim.now();
    let next = pair.client_conn().unwrap().open(now, Dir::Bi).unwrap();
    assert_eq!(next.index(), 1);
}

#[test]
fn credit_is_returned_only_when_both_halves_are_done() {
    let mut pair = limited(1);
    let now = pair.sim.now();
    let client = pair.client_conn().unwrap();
    let id = client.open(now, Dir::Bi).unwrap();
    client.write(id, b"request").unwrap();
    client.finish(id).unwrap();
    let mut server_stream = None;
    // The server reads the request to the end but never finishes its send half: the stream is
    // half-closed and keeps its credit.
    pair.run_until(Duration::from_secs(2), |p| {
        let server = p.server_conn().unwrap();
        if let Some(sid) = server_stream.or_else(|| server.accept(Dir::Bi)) {
            server_stream = Some(sid);
            let mut body = Vec::new();
            drain(server, sid, &mut body);
        }
        false
    });
    let now = pair.sim.now();
    let snapshot = pair.server_conn().unwrap().streams_snapshot(now);
    assert_eq!(snapshot.streams.len(), 1);
    assert_eq!(snapshot.streams[0].held, Some(HeldReason::SendNotFinished));
    assert_eq!(snapshot.credit(Side::Client, Dir::Bi).limit, 1);
    assert!(pair.client_conn().unwrap().open(now, Dir::Bi).is_err());
    // Finishing the send half (and the client reading it) completes the stream: credit returns.
    let sid = server_stream.unwrap();
    let server = pair.server_conn().unwrap();
    server.write(sid, b"response").unwrap();
    server.finish(sid).unwrap();
    let mut body = Vec::new();
    assert!(pair.run_until(Duration::from_secs(2), |p| {
        let now = p.sim.now();
        let client = p.client_conn().unwrap();
        if drain(client, id, &mut body) == Some(ReadOutcome::Finished) {
            client.release(id);
        }
        client
            .streams_snapshot(now)
            .credit(Side::Client, Dir::Bi)
            .limit
            == 2
    }));
    let now = pair.sim.now();
    let snapshot = pair.server_conn().unwrap().streams_snapshot(now);
    assert!(snapshot.streams.is_empty());
    assert_eq!(snapshot.counters.max_streams_sent, 1);
}

#[test]
fn credit_blocked_open_sends_streams_blocked_once_per_limit() {
    let mut pair = limited(1);
    let now = pair.sim.now();
    let client = pair.client_conn().unwrap();
    client.open(now, Dir::Bi).unwrap();
    for _ in 0..5 {
        assert!(client.open(now, Dir::Bi).is_err());
    }
    pair.run_until(Duration::from_millis(200), |_| false);
    let now = pair.sim.now();
    let snapshot = pair.server_conn().unwrap().streams_snapshot(now);
    assert_eq!(snapshot.counters.streams_blocked_received, 1);
}
