//! Flow control (RFC 9000 §4): windows stall a writer without unbounded memory, and credit for
//! discarded data comes back.

mod common;

use std::cell::Cell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use qstream_proto::sim::LinkConfig;
use qstream_proto::streams::StreamEvent;
use qstream_proto::wire::{Dir, VarInt};
use qstream_proto::{Event, TransportConfig};

#[test]
fn flow_reader_that_never_reads_stalls_the_writer_with_bounded_memory() {
    let mut server_transport = TransportConfig::default();
    server_transport.streams.stream_window = 64 * 1024;
    server_transport.streams.connection_window = 256 * 1024;
    let mut pair = Pair::new(PairOptions {
        server_transport,
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    let now = pair.sim.now();
    let id = pair.client_conn().unwrap().open(now, Dir::Uni).unwrap();
    let chunk = vec![5u8; 100_000];
    let mut written = 0usize;
    pair.run_until(Duration::from_secs(3), |p| {
        let client = p.client_conn().unwrap();
        written += client.write(id, &chunk).unwrap();
        // The server accepts the stream and never reads it.
        let _ = p.server_conn().unwrap().accept(Dir::Uni);
        false
    });
    let now = pair.sim.now();
    let client = pair.client_conn().unwrap().streams_snapshot(now);
    let send = client.streams[0].send.clone().unwrap();
    // The writer stopped exactly at the stream window and buffers at most its send buffer.
    assert_eq!(send.sent, 64 * 1024);
    assert!(send.buffered <= 1024 * 1024, "{send:?}");
    assert_eq!(written as u64, send.written);
    assert!(written <= 1024 * 1024 + 100_000);
    let server = pair.server_conn().unwrap().streams_snapshot(now);
    let recv = server.streams[0].recv.clone().unwrap();
    assert_eq!(
        recv.buffered,
        64 * 1024,
        "the reader buffers one window, no more"
    );
    assert!(pair.server_conn().unwrap().close_reason().is_none());
}

#[test]
fn flow_a_writer_blocked_by_the_stream_window_makes_no_empty_packets() {
    // A window far below the bandwidth-delay product: each round trip the stream sends its
    // window and waits for MAX_STREAM_DATA, while the acknowledgments that arrive meanwhile
    // free send buffer and the application writes more. A stream that cannot send must not
    // make the connection build packets that carry nothing of it: each would be a bare
    // repeat of an ACK (a bulk sender once sent four of those for every data packet).
    let mut server_transport = TransportConfig::default();
    server_transport.streams.stream_window = 64 * 1024;
    server_transport.streams.max_stream_window = 64 * 1024;
    let mut pair = Pair::new(PairOptions {
        link: LinkConfig {
            bandwidth: Some(100_000_000),
            ..LinkConfig::default()
        },
        server_transport,
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    let before = pair.client_conn().unwrap().stats();
    let now = pair.sim.now();
    let id = pair.client_conn().unwrap().open(now, Dir::Uni).unwrap();
    let chunk = vec![5u8; 4000];
    let mut download = Download::counting(Dir::Uni);
    pair.run_until(Duration::from_secs(2), |p| {
        let _ = p.client_conn().unwrap().write(id, &chunk).unwrap();
        download.pull(p.server_conn().unwrap());
        false
    });
    let stats = pair.client_conn().unwrap().stats();
    let packets = stats.packets_sent - before.packets_sent;
    let stream_packets = stats.frames_sent.stream() - before.frames_sent.stream();
    assert!(stream_packets > 1000, "{stats:?}");
    // Besides the stream's packets: STREAM_DATA_BLOCKED, acknowledgments of the server's
    // MAX_STREAM_DATA, path MTU probes.
    assert!(
        packets <= stream_packets + stream_packets / 10,
        "{packets} packets for {stream_packets} with stream data: {stats:?}"
    );
}

#[test]
fn flow_10000_stopped_streams_return_connection_credit() {
    // A connection window of 16 KiB, 1200 bytes per stream: without credit coming back for the
    // discarded data, the connection would stall after about 13 streams.
    let mut server_transport = TransportConfig::default();
    server_transport.streams.connection_window = 16 * 1024;
    server_transport.streams.max_concurrent_uni = 50;
    let mut pair = Pair::new(PairOptions {
        server_transport,
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    let payload = vec![9u8; 1200];
    let mut opened = 0u32;
    let mut stopped = 0u32;
    let done = pair.run_until(Duration::from_secs(3600), |p| {
        let now = p.sim.now();
        let client = p.client_conn().unwrap();
        while opened < 10_000 {
            match client.open(now, Dir::Uni) {
                Ok(id) => {
                    client.write(id, &payload).unwrap();
                    opened += 1;
                }
                Err(_) => break,
            }
        }
        // The client releases streams the server stopped.
        let client_events: Vec<Event> = p.client_events.drain(..).collect();
        for event in client_events {
            if let Event::Stream(StreamEvent::Stopped { id, .. }) = event {
                p.client_conn().unwrap().release(id);
            }
        }
        // The server accepts every stream and stops it without reading a byte.
        p.server_events.clear();
        let server = p.server_conn().unwrap();
        while let Some(id) = server.accept(Dir::Uni) {
            server.stop(id, VarInt::from_u32(1)).unwrap();
            stopped += 1;
        }
        stopped == 10_000
    });
    assert!(done, "stalled after {stopped} streams");
    let now = pair.sim.now();
    let server = pair.server_conn().unwrap().streams_snapshot(now);
    // Far more than one window's worth flowed: credit for the discarded bytes came back.
    assert!(
        server.data_received > 100 * 16 * 1024,
        "only {} bytes flowed through a 16 KiB window",
        server.data_received
    );
    assert!(server.max_data_sent > 16 * 1024, "credit came back");
}

#[test]
fn flow_windows_grow_when_the_reader_keeps_up() {
    // A long fat link: 100 ms RTT, 20 MB/s. 64 KiB windows would cap throughput at 655 KB/s.
    let mut server_transport = TransportConfig::default();
    server_transport.streams.stream_window = 64 * 1024;
    server_transport.streams.connection_window = 128 * 1024;
    let mut pair = Pair::new(PairOptions {
        link: qstream_proto::sim::LinkConfig {
            delay: Duration::from_millis(50),
            bandwidth: Some(20_000_000),
            ..Default::default()
        },
        server_transport,
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    let now = pair.sim.now();
    let id = pair.client_conn().unwrap().open(now, Dir::Uni).unwrap();
    let chunk = vec![1u8; 256 * 1024];
    let mut download = Download::counting(Dir::Uni);
    pair.run_until(Duration::from_secs(5), |p| {
        let client = p.client_conn().unwrap();
        while client.write(id, &chunk).unwrap() > 0 {}
        download.pull(p.server_conn().unwrap());
        false
    });
    let received = download.received;
    let now = pair.sim.now();
    let snapshot = pair.server_conn().unwrap().streams_snapshot(now);
    let window = snapshot.streams[0].recv.as_ref().unwrap().window;
    assert!(window >= 1024 * 1024, "stream window stayed at {window}");
    assert!(
        snapshot.connection_window >= 1024 * 1024,
        "{}",
        snapshot.connection_window
    );
    // Far beyond what 64 KiB per 100 ms allows in 5 s (3.3 MB).
    assert!(received > 20_000_000, "received {received}");
}

#[test]
fn flow_unread_bytes_keep_at_most_256_received_packets_alive() {
    // One byte per packet for a stream the server never reads: each byte kept without a copy
    // would keep its packet (in the async layer, its whole datagram batch) in memory, far
    // beyond the byte flow control counts. At most 256 kept pieces share their packet per
    // connection; the rest are copied.
    let mut pair = Pair::new(PairOptions::default());
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    let now = pair.sim.now();
    let id = pair.client_conn().unwrap().open(now, Dir::Uni).unwrap();
    const BYTES: usize = 400;
    for i in 0..BYTES {
        assert_eq!(
            pair.client_conn().unwrap().write(id, &[i as u8]).unwrap(),
            1
        );
        pair.run_until(Duration::from_millis(1), |_| false);
    }
    pair.run_until(Duration::from_millis(100), |_| false);
    let now = pair.sim.now();
    let snapshot = pair.server_conn().unwrap().streams_snapshot(now);
    let stream = snapshot.streams.iter().find(|s| s.id == id).unwrap();
    assert_eq!(stream.recv.as_ref().unwrap().buffered, BYTES as u64);
    assert!(
        pair.server_conn().unwrap().stats().packets_received > BYTES as u64,
        "one packet per byte"
    );
    assert_eq!(snapshot.shared_pieces, 256);
    // Reading gives the shares back.
    let server = pair.server_conn().unwrap();
    let accepted = server.accept(Dir::Uni).unwrap();
    let mut read = Vec::new();
    drain(server, accepted, &mut read);
    assert_eq!(read, (0..BYTES).map(|i| i as u8).collect::<Vec<_>>());
    let now = pair.sim.now();
    assert_eq!(
        pair.server_conn()
            .unwrap()
            .streams_snapshot(now)
            .shared_pieces,
        0
    );
}

#[test]
fn flow_windows_grow_on_a_fast_path_for_a_reader_that_reads_in_bursts() {
    // A 50 µs path at 1 GB/s, and a reader woken every 2 ms, as a busy application's task
    // is. The window is the limit (1 MiB per 2 ms), though updates come forty round trips
    // apart: auto-tuning that waits for two updates within two RTTs never grows it. The
    // sender's STREAM_DATA_BLOCKED, and round trips counted as at least a millisecond, say it
    // is the limit.
    let mut pair = Pair::new(PairOptions {
        link: LinkConfig {
            delay: Duration::from_micros(25),
            bandwidth: Some(1_000_000_000),
            ..LinkConfig::default()
        },
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    let now = pair.sim.now();
    let id = pair.client_conn().unwrap().open(now, Dir::Uni).unwrap();
    let chunk = vec![1u8; 256 * 1024];
    let (mut download, mut next_read) = (Download::counting(Dir::Uni), now);
    let total = 64 << 20;
    let started = pair.sim.now();
    assert!(pair.run_until(Duration::from_secs(10), |p| {
        let client = p.client_conn().unwrap();
        while client.write(id, &chunk).unwrap() > 0 {}
        let now = p.sim.now();
        if now >= next_read {
            next_read = now + Duration::from_millis(2);
            download.pull(p.server_conn().unwrap());
        }
        p.wake_at(next_read);
        download.received >= total
    }));
    let took = pair.sim.now() - started;
    let now = pair.sim.now();
    let snapshot = pair.server_conn().unwrap().streams_snapshot(now);
    let window = snapshot.streams[0].recv.as_ref().unwrap().window;
    // Enough for 1 GB/s at a read every 2 ms, and so no more than that.
    assert!(window > 1 << 20, "the window stayed at {window}");
    // At 1 MiB per 2 ms, 64 MiB would take 128 ms.
    assert!(took < Duration::from_millis(110), "{took:?}");
}

/// Adds the packet numbers the ACK frames of a received packet's qlog event acknowledge.
fn record_acked(event: &serde_json::Value, acked: &mut HashSet<u64>) {
    let frames = event["data"]["frames"].as_array().into_iter().flatten();
    for ack in frames.filter(|f| f["frame_type"] == "ack") {
        for range in ack["acked_ranges"].as_array().into_iter().flatten() {
            let (low, high) = (range[0].as_u64().unwrap(), range[1].as_u64().unwrap());
            acked.extend(low..=high);
        }
    }
}

/// A connected pair recording qlog, the server configured with `server_transport`, whose
/// datagrams from `sender` are all lost while the returned switch is on (it starts as
/// `dropping`). The handshake's qlog records are taken.
fn connected_losing_from(
    sender: std::net::SocketAddr,
    server_transport: TransportConfig,
    dropping: bool,
) -> (Pair, Rc<Cell<bool>>) {
    let mut pair = Pair::new(PairOptions {
        server_transport,
        qlog: true,
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    pair.take_qlog(&mut Vec::new(), &mut Vec::new());
    let switch = Rc::new(Cell::new(dropping));
    let drop_now = switch.clone();
    pair.sim.set_filter(Some(Box::new(move |from, _, _| {
        from != sender || !drop_now.get()
    })));
    (pair, switch)
}

/// A copy of a frame in a client's qlog trace: the packet that carried it, and its limit.
#[derive(Debug)]
struct Copy {
    pn: u64,
    limit: u64,
    /// Whether an earlier copy was acknowledged when this one was sent.
    after_ack: bool,
}

/// In a client's qlog trace: every `kind` frame its 1-RTT packets carried, and the numbers of
/// the packets it declared lost.
fn copies_sent_and_lost(log: &[serde_json::Value], kind: &str) -> (Vec<Copy>, HashSet<u64>) {
    let pn = |e: &serde_json::Value| e["data"]["header"]["packet_number"].as_u64().unwrap();
    let frames =
        |e: &serde_json::Value| e["data"]["frames"].as_array().cloned().unwrap_or_default();
    let (mut copies, mut lost, mut acked) = (Vec::<Copy>::new(), HashSet::new(), HashSet::new());
    for event in log {
        if event["data"]["header"]["packet_type"] != "1RTT" {
            continue;
        }
        match event["name"].as_str() {
            Some("quic:packet_sent") => {
                for frame in frames(event).iter().filter(|f| f["frame_type"] == kind) {
                    copies.push(Copy {
                        pn: pn(event),
                        limit: frame["limit"].as_u64().unwrap(),
                        after_ack: copies.iter().any(|c| acked.contains(&c.pn)),
                    });
                }
            }
            Some("quic:packet_received") => record_acked(event, &mut acked),
            Some("quic:packet_lost") => {
                lost.insert(pn(event));
            }
            _ => {}
        }
    }
    (copies, lost)
}

/// The client blocks itself with `block` (against a server configured by `server`) while
/// everything it sends for the next 40 ms is lost, then runs on for two seconds, still
/// blocked at one limit. Its `kind` frame for that limit must be sent again after each loss
/// until a copy arrives (RFC 9000 §13.3), and never once one was acknowledged.
fn lost_blocked_frame_is_repeated_while_it_applies(
    server: impl FnOnce(&mut TransportConfig),
    block: impl FnOnce(&mut Pair),
    kind: &str,
) {
    let mut server_transport = TransportConfig::default();
    server(&mut server_transport);
    let (mut pair, dropping) = connected_losing_from(client_addr(), server_transport, true);
    let (mut client_log, mut server_log) = (Vec::new(), Vec::new());
    block(&mut pair);
    let until = pair.sim.now() + Duration::from_millis(40);
    pair.run_until(Duration::from_secs(2), |p| {
        dropping.set(p.sim.now() < until);
        let server = p.server_conn().unwrap();
        // The server takes what the client opens and never reads it.
        let _ = (server.accept(Dir::Bi), server.accept(Dir::Uni));
        p.take_qlog(&mut client_log, &mut server_log);
        false
    });
    let (copies, lost) = copies_sent_and_lost(&client_log, kind);
    assert!(!copies.is_empty(), "no {kind} sent");
    assert!(
        copies.iter().all(|c| c.limit == copies[0].limit),
        "one limit only: {copies:?}"
    );
    assert!(
        lost.contains(&copies[0].pn),
        "the test lost no {kind}: {copies:?}"
    );
    let last = copies.last().unwrap();
    assert!(
        !lost.contains(&last.pn),
        "{kind} lost and not repeated: {copies:?}, lost {lost:?}"
    );
    assert!(
        copies.iter().all(|c| !c.after_ack),
        "{kind} repeated after the peer acknowledged it: {copies:?}"
    );
    assert!(pair.client_conn().unwrap().close_reason().is_none());
}

/// The client writes far more on a new unidirectional stream than the server's windows allow.
fn write_beyond_the_windows(pair: &mut Pair) {
    let now = pair.sim.now();
    let client = pair.client_conn().unwrap();
    let id = client.open(now, Dir::Uni).unwrap();
    client.write(id, &[9u8; 100_000]).unwrap();
}

#[test]
fn flow_lost_data_blocked_is_repeated_while_still_blocked() {
    // RFC 9000 §4.1, RFC9000-365; §13.3.
    lost_blocked_frame_is_repeated_while_it_applies(
        |t| {
            t.streams.connection_window = 4096;
            t.streams.max_connection_window = 4096;
        },
        write_beyond_the_windows,
        "data_blocked",
    );
}

#[test]
fn flow_lost_stream_data_blocked_is_repeated_while_still_blocked() {
    // RFC 9000 §4.1, RFC9000-366; §13.3.
    lost_blocked_frame_is_repeated_while_it_applies(
        |t| {
            t.streams.stream_window = 4096;
            t.streams.max_stream_window = 4096;
        },
        write_beyond_the_windows,
        "stream_data_blocked",
    );
}

#[test]
fn flow_lost_streams_blocked_is_repeated_while_still_blocked() {
    // RFC 9000 §4.6, RFC9000-031; §13.3.
    lost_blocked_frame_is_repeated_while_it_applies(
        |t| t.streams.max_concurrent_bidi = 1,
        |pair| {
            let now = pair.sim.now();
            let client = pair.client_conn().unwrap();
            client.open(now, Dir::Bi).unwrap();
            assert!(
                client.request_open(now, Dir::Bi).is_err(),
                "waits for credit"
            );
        },
        "streams_blocked",
    );
}

/// The server reads all it gets of a stream through windows of 4 KiB (stream and connection,
/// never tuned up), while everything it sends for 40 ms after its first read is lost. Lost
/// updates (`kind`) must be repeated (by a probe or once declared lost); one declared lost
/// while it was still the latest, in the next packet the server sends with frames beyond ACK,
/// so that the writer waits no longer. No update is repeated once a copy was acknowledged, and
/// none goes out below one sent before.
fn lost_update_is_repeated_while_it_is_the_latest(kind: &str, limit_field: &str) {
    let mut server_transport = TransportConfig::default();
    server_transport.streams.stream_window = 4096;
    server_transport.streams.max_stream_window = 4096;
    server_transport.streams.connection_window = 4096;
    server_transport.streams.max_connection_window = 4096;
    let (mut pair, dropping) = connected_losing_from(server_addr(), server_transport, false);
    let (mut client_log, mut server_log) = (Vec::new(), Vec::new());
    write_beyond_the_windows(&mut pair);
    let (mut download, mut until) = (Download::counting(Dir::Uni), None);
    pair.run_until(Duration::from_secs(3), |p| {
        download.pull(p.server_conn().unwrap());
        let now = p.sim.now();
        if download.received > 0 && until.is_none() {
            until = Some(now + Duration::from_millis(40));
        }
        dropping.set(until.is_some_and(|until| now < until));
        p.take_qlog(&mut client_log, &mut server_log);
        download.received == 100_000
    });
    assert_eq!(download.received, 100_000, "the transfer completes");
    check_update_repetition(&server_log, kind, limit_field);
}

/// Checks the updates (`kind`, carrying `limit_field`) in a server's qlog trace: a lost one is
/// repeated (by a probe or once declared lost); one declared lost while it was still the
/// latest, in the next packet sent with frames beyond ACK. None is repeated once a copy was
/// acknowledged, and none goes out below one sent before.
fn check_update_repetition(server_log: &[serde_json::Value], kind: &str, limit_field: &str) {
    let pn = |e: &serde_json::Value| e["data"]["header"]["packet_number"].as_u64().unwrap();
    let frames =
        |e: &serde_json::Value| e["data"]["frames"].as_array().cloned().unwrap_or_default();
    let mut sent: Vec<(u64, u64)> = Vec::new();
    let (mut acked, mut repeats, mut awaiting) = (HashSet::new(), 0, None::<u64>);
    for event in server_log
        .iter()
        .filter(|e| e["data"]["header"]["packet_type"] == "1RTT")
    {
        match event["name"].as_str() {
            Some("quic:packet_sent") => {
                let frames = frames(event);
                let updates: Vec<u64> = frames
                    .iter()
                    .filter(|f| f["frame_type"] == kind)
                    .map(|f| f[limit_field].as_u64().unwrap())
                    .collect();
                if let Some(limit) = awaiting.take() {
                    let more_than_ack = frames.iter().any(|f| f["frame_type"] != "ack");
                    if more_than_ack {
                        assert!(
                            updates.iter().any(|l| *l >= limit),
                            "{kind} {limit} lost and not repeated in the next packet: {frames:?}"
                        );
                    } else {
                        awaiting = Some(limit);
                    }
                }
                for limit in updates {
                    repeats += usize::from(sent.iter().any(|(_, l)| *l == limit));
                    let highest = sent.iter().map(|(_, l)| *l).max().unwrap_or(0);
                    assert!(limit >= highest, "{kind} {limit} after {highest}");
                    assert!(
                        !sent.iter().any(|(p, l)| *l == limit && acked.contains(p)),
                        "{kind} {limit} repeated after it was acknowledged"
                    );
                    sent.push((pn(event), limit));
                }
            }
            Some("quic:packet_received") => record_acked(event, &mut acked),
            Some("quic:packet_lost") => {
                let latest = sent.iter().map(|(_, l)| *l).max();
                let lost = sent.iter().find(|(p, _)| *p == pn(event)).map(|(_, l)| *l);
                let arrived = sent
                    .iter()
                    .any(|(p, l)| Some(*l) == lost && acked.contains(p));
                if lost.is_some() && lost == latest && !arrived {
                    awaiting = lost;
                }
            }
            _ => {}
        }
    }
    assert!(repeats >= 1, "no lost {kind} was repeated: {sent:?}");
}

#[test]
fn flow_lost_max_stream_data_is_repeated_while_it_is_the_latest() {
    // RFC 9000 §4.1, §13.3.
    lost_update_is_repeated_while_it_is_the_latest("max_stream_data", "maximum");
}

#[test]
fn flow_lost_max_data_is_repeated_while_it_is_the_latest() {
    // RFC 9000 §4.1, §13.3.
    lost_update_is_repeated_while_it_is_the_latest("max_data", "maximum");
}

#[test]
fn flow_lost_max_streams_is_repeated_while_it_is_the_latest() {
    // RFC 9000 §4.6, RFC9000-032; §13.3. The client opens both streams it may, the server
    // answers them; everything the server sends after the client read its answers is lost
    // for 40 ms, which takes the MAX_STREAMS the releases send.
    let mut server_transport = TransportConfig::default();
    server_transport.streams.max_concurrent_bidi = 2;
    let (mut pair, dropping) = connected_losing_from(server_addr(), server_transport, false);
    let (mut client_log, mut server_log) = (Vec::new(), Vec::new());
    let now = pair.sim.now();
    let client = pair.client_conn().unwrap();
    let ids: Vec<_> = (0..2).map(|_| client.open(now, Dir::Bi).unwrap()).collect();
    for id in &ids {
        client.write(*id, b"request").unwrap();
        client.finish(*id).unwrap();
    }
    let (mut answered, mut until) = (HashSet::new(), None);
    pair.run_until(Duration::from_secs(2), |p| {
        let server = p.server_conn().unwrap();
        while let Some(id) = server.accept(Dir::Bi) {
            let mut request = Vec::new();
            drain(server, id, &mut request);
            server.write(id, b"answer").unwrap();
            server.finish(id).unwrap();
        }
        let client = p.client_conn().unwrap();
        for id in &ids {
            let mut answer = Vec::new();
            if drain(client, *id, &mut answer).is_some() {
                answered.insert(*id);
            }
        }
        let now = p.sim.now();
        if answered.len() == ids.len() && until.is_none() {
            until = Some(now + Duration::from_millis(40));
        }
        dropping.set(until.is_some_and(|until| now < until));
        p.take_qlog(&mut client_log, &mut server_log);
        false
    });
    assert_eq!(answered.len(), ids.len(), "both answers arrive");
    check_update_repetition(&server_log, "max_streams", "maximum");
}
