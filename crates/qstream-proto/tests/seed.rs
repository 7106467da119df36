//! The seed scenario (quic-go #4530), with the server's stream limit at 10.
//!
//! The client opens streams one after another, writes a request and finishes. The server writes
//! a response and finishes, and then either holds the stream (reads nothing, stops nothing: the
//! quic-go hang), drops its handle (`release`), or stops reading explicitly.

mod common;

use std::time::Duration;

use common::*;
use qstream_proto::streams::{HeldReason, ReadOutcome, StreamEvent};
use qstream_proto::wire::{Dir, StreamId, VarInt};
use qstream_proto::{Event, TransportConfig};

const LIMIT: u64 = 10;

fn limited_server() -> Pair {
    let mut server_transport = TransportConfig::default();
    server_transport.streams.max_concurrent_bidi = LIMIT;
    let mut pair = Pair::new(PairOptions {
        server_transport,
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    pair
}

/// 64-byte requests and responses: a batch of ten responses fits in one packet, the case where
/// a delayed ACK would hold credit back. Without the immediate ACK of stream-completing packets
/// while opens wait, the longest wait here is 65 ms, not 40 ms.
fn request(index: u64) -> Vec<u8> {
    pattern(index, 64)
}

fn response(index: u64) -> Vec<u8> {
    pattern(index + 1_000_000, 64)
}

/// What the server application does once it has written its response and finished.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ServerHabit {
    /// Nothing: neither reads to the end nor stops.
    Hold,
    /// Drops its handle.
    Release,
    /// Stops reading with code 7.
    Stop,
}

/// Serves every newly accepted stream: response, finish, then the habit.
fn serve(pair: &mut Pair, habit: ServerHabit, served: &mut Vec<StreamId>) {
    let server = pair.server_conn().unwrap();
    while let Some(id) = server.accept(Dir::Bi) {
        let body = response(id.index());
        assert_eq!(server.write(id, &body).unwrap(), body.len());
        server.finish(id).unwrap();
        match habit {
            ServerHabit::Hold => {}
            ServerHabit::Release => server.release(id),
            ServerHabit::Stop => server.stop(id, VarInt::from_u32(7)).unwrap(),
        }
        served.push(id);
    }
}

#[test]
fn seed_half_open_server_blocks_the_client_and_says_why() {
    let mut pair = limited_server();
    let mut served = Vec::new();
    let mut opened = Vec::new();
    // (a) Ten streams open one after another; the eleventh is refused with the limit.
    for i in 0..LIMIT {
        let now = pair.sim.now();
        let client = pair.client_conn().unwrap();
        let id = client
            .open(now, Dir::Bi)
            .unwrap_or_else(|e| panic!("open {i}: {e}"));
        client.write(id, &request(i)).unwrap();
        client.finish(id).unwrap();
        opened.push(id);
        pair.run_until(Duration::from_millis(50), |p| {
            serve(p, ServerHabit::Hold, &mut served);
            false
        });
    }
    let now = pair.sim.now();
    let client = pair.client_conn().unwrap();
    let error = client.open(now, Dir::Bi).unwrap_err();
    assert_eq!(
        error,
        qstream_proto::streams::OpenError::NoCredit {
            limit: LIMIT,
            waiting: 0
        }
    );
    let ticket = client.request_open(now, Dir::Bi).unwrap_err();
    // The client read every response to the end and released its streams; still it stays
    // blocked, and the server hears it is blocked (STREAMS_BLOCKED, RFC 9000 §4.6).
    for id in &opened {
        let mut body = Vec::new();
        assert_eq!(
            drain(pair.client_conn().unwrap(), *id, &mut body),
            Some(ReadOutcome::Finished)
        );
        assert_eq!(body, response(id.index()));
        pair.client_conn().unwrap().release(*id);
    }
    pair.run_until(Duration::from_secs(5), |p| {
        serve(p, ServerHabit::Hold, &mut served);
        false
    });
    assert!(
        !pair.client_events.iter().any(|e| matches!(e, Event::Stream(StreamEvent::OpenGranted { ticket: t, .. }) if *t == ticket)),
        "the client must stay blocked while the server holds its streams"
    );
    let now = pair.sim.now();
    let server_snapshot = pair.server_conn().unwrap().streams_snapshot(now);
    assert!(server_snapshot.counters.streams_blocked_received >= 1);
    // (b) The server names exactly the ten streams, and why they are held.
    let report = pair
        .server_events
        .iter()
        .find_map(|e| match e {
            Event::Stream(StreamEvent::PeerBlocked(report)) => Some(report.clone()),
            _ => None,
        })
        .expect("a PeerBlocked report");
    assert_eq!(report.dir, Dir::Bi);
    assert_eq!(report.limit, LIMIT);
    assert_eq!(
        report.held.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        opened
    );
    assert!(
        report
            .held
            .iter()
            .all(|(_, why)| *why == HeldReason::ReceiveNotReadOrStopped)
    );
    assert_eq!(
        HeldReason::ReceiveNotReadOrStopped.to_string(),
        "receive half not read to the end and not stopped"
    );
    let client_snapshot = pair.client_conn().unwrap().streams_snapshot(now);
    let credit = client_snapshot.credit(qstream_proto::Side::Client, Dir::Bi);
    assert_eq!(
        (credit.limit, credit.available, credit.waiting),
        (LIMIT, 0, 1)
    );
}

/// Runs `count` request/response exchanges, the client opening a new stream whenever credit
/// allows (so up to the limit are in flight and opens wait for credit). Returns the number of
/// opens that waited and the longest wait.
fn pipelined_exchanges(habit: ServerHabit, count: u64) -> (u64, Duration) {
    let mut pair = limited_server();
    let start = pair.sim.now();
    let mut served = Vec::new();
    let mut opened = 0u64;
    let mut done = 0u64;
    let mut waits = 0u64;
    let mut longest_wait = Duration::ZERO;
    let mut open: Vec<(StreamId, Vec<u8>)> = Vec::new();
    let mut waiting: Option<(qstream_proto::streams::OpenTicket, std::time::Instant)> = None;
    let finished = pair.run_until(Duration::from_secs(3600), |p| {
        serve(p, habit, &mut served);
        let now = p.sim.now();
        let mut granted = None;
        for event in p.client_events.drain(..) {
            if let Event::Stream(StreamEvent::OpenGranted { ticket, id }) = event {
                assert_eq!(
                    waiting.map(|(t, _)| t),
                    Some(ticket),
                    "grants come in order"
                );
                granted = Some(id);
            }
        }
        if let (Some(id), Some((_, since))) = (granted, waiting) {
            longest_wait = longest_wait.max(now - since);
            waiting = None;
            start_request(p, id);
            open.push((id, Vec::new()));
            opened += 1;
        }
        while waiting.is_none() && opened < count {
            match p.client_conn().unwrap().request_open(now, Dir::Bi) {
                Ok(id) => {
                    start_request(p, id);
                    open.push((id, Vec::new()));
                    opened += 1;
                }
                Err(ticket) => {
                    waits += 1;
                    waiting = Some((ticket, now));
                }
            }
        }
        let client = p.client_conn().unwrap();
        open.retain_mut(|(id, body)| match drain(client, *id, body) {
            Some(end) => {
                // (e) Every response arrives complete, never cut off by a reset.
                assert_eq!(end, ReadOutcome::Finished, "stream {id}");
                assert_eq!(*body, response(id.index()), "stream {id}");
                client.release(*id);
                done += 1;
                false
            }
            None => true,
        });
        done == count
    });
    assert!(finished, "{done} of {count} exchanges completed");
    let now = pair.sim.now();
    let snapshot = pair.server_conn().unwrap().streams_snapshot(now);
    let client = pair.client_conn().unwrap().stats();
    eprintln!(
        "{count} exchanges in {:?} virtual; {waits} opens waited, longest {longest_wait:?}; \
         client sent {} packets; server MAX_STREAMS sent {}",
        now - start,
        client.packets_sent,
        snapshot.counters.max_streams_sent
    );
    // Every server stream was released and its credit returned.
    assert!(
        snapshot.streams.len() <= LIMIT as usize,
        "{} streams held",
        snapshot.streams.len()
    );
    (waits, longest_wait)
}

fn start_request(pair: &mut Pair, id: StreamId) {
    let client = pair.client_conn().unwrap();
    client.write(id, &request(id.index())).unwrap();
    client.finish(id).unwrap();
}

/// One round trip on the simulated link (10 ms each way).
const RTT: Duration = Duration::from_millis(20);

#[test]
fn seed_released_server_streams_never_block_10000_opens() {
    // (c) The server drops its handles after finishing: 10,000 opens, as many at once as the
    // limit allows, and none waits longer than 2 RTT for credit.
    let (waits, longest) = pipelined_exchanges(ServerHabit::Release, 10_000);
    // Ten streams per batch: every batch after the first waits once for credit.
    assert!(waits >= 999, "the limit was reached only {waits} times");
    assert!(longest <= 2 * RTT, "an open waited {longest:?}");
}

#[test]
fn seed_stopped_server_streams_never_block_10000_opens() {
    // (d) The same with an explicit stop.
    let (waits, longest) = pipelined_exchanges(ServerHabit::Stop, 10_000);
    // Ten streams per batch: every batch after the first waits once for credit.
    assert!(waits >= 999, "the limit was reached only {waits} times");
    assert!(longest <= 2 * RTT, "an open waited {longest:?}");
}

#[test]
fn seed_client_out_of_credit_acknowledges_answers_before_it_asks_again() {
    // A worker pool: the client opens as many streams as the limit allows and asks for the
    // next only after it has read the answers, so when the packet with all ten answers
    // arrives no open waits yet. The client has no credit left, so it acknowledges that packet
    // at once: the server releases its streams and credit is back one round trip after the
    // answers, not a delayed ACK (25 ms) later (docs/design.md rule 1).
    let mut pair = limited_server();
    let mut open: Vec<(StreamId, Vec<u8>)> = Vec::new();
    for _ in 0..LIMIT {
        let now = pair.sim.now();
        let id = pair.client_conn().unwrap().open(now, Dir::Bi).unwrap();
        open.push((id, Vec::new()));
        start_request(&mut pair, id);
    }
    let mut served = Vec::new();
    let answered = pair.run_until(Duration::from_secs(5), |p| {
        serve(p, ServerHabit::Release, &mut served);
        let client = p.client_conn().unwrap();
        open.retain_mut(|(id, body)| match drain(client, *id, body) {
            Some(end) => {
                assert_eq!(end, ReadOutcome::Finished, "stream {id}");
                client.release(*id);
                false
            }
            None => true,
        });
        open.is_empty()
    });
    assert!(answered, "every answer arrives");
    let answered_at = pair.sim.now();
    let available = |p: &mut Pair| {
        let now = p.sim.now();
        let snapshot = p.client_conn().unwrap().streams_snapshot(now);
        snapshot
            .credit
            .iter()
            .find(|c| c.initiator == qstream_proto::Side::Client && c.dir == Dir::Bi)
            .map_or(0, |c| c.available)
    };
    assert_eq!(available(&mut pair), 0, "all credit used");
    assert!(pair.run_until(Duration::from_secs(5), |p| available(p) == LIMIT));
    let waited = pair.sim.now() - answered_at;
    assert!(
        waited <= RTT + Duration::from_millis(2),
        "credit came back {waited:?} after the answers"
    );
}
