//! Flow control (RFC 9000 §4): windows stall a writer without unbounded memory, and credit for
//! discarded data comes back.

mod common;

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
    let mut sid = None;
    let mut body = Vec::new();
    pair.run_until(Duration::from_secs(2), |p| {
        let _ = p.client_conn().unwrap().write(id, &chunk).unwrap();
        let server = p.server_conn().unwrap();
        sid = sid.or_else(|| server.accept(Dir::Uni));
        if let Some(sid) = sid {
            drain(server, sid, &mut body);
            body.clear();
        }
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
    let mut received = 0usize;
    let mut sid = None;
    pair.run_until(Duration::from_secs(5), |p| {
        let client = p.client_conn().unwrap();
        while client.write(id, &chunk).unwrap() > 0 {}
        let server = p.server_conn().unwrap();
        sid = sid.or_else(|| server.accept(Dir::Uni));
        if let Some(sid) = sid {
            let mut sink = Vec::new();
            drain(server, sid, &mut sink);
            received += sink.len();
        }
        false
    });
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
    let (mut sid, mut next_read, mut received, mut body) = (None, now, 0usize, Vec::new());
    let total = 64 << 20;
    let started = pair.sim.now();
    assert!(pair.run_until(Duration::from_secs(10), |p| {
        let client = p.client_conn().unwrap();
        while client.write(id, &chunk).unwrap() > 0 {}
        let now = p.sim.now();
        let server = p.server_conn().unwrap();
        sid = sid.or_else(|| server.accept(Dir::Uni));
        if let Some(sid) = sid.filter(|_| now >= next_read) {
            next_read = now + Duration::from_millis(2);
            drain(server, sid, &mut body);
            received += body.len();
            body.clear();
        }
        received >= total
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
