//! Unit tests of the stream map, credit and flow control.

use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::wire::{Frame, MAX_STREAM_COUNT, Payload, Stream as StreamFrame, TransportParameters};

/// Writes what is pending into a packet of `size` bytes; returns the packet and its records.
fn write(streams: &mut Streams, now: Instant, size: usize) -> (Vec<u8>, Vec<StreamFrameRecord>) {
    let (mut buf, mut records) = (Vec::new(), Vec::new());
    let mut payload = Payload::new(&mut buf, size);
    streams.write_frames(&mut payload, &mut records, now, Duration::from_millis(20));
    (buf, records)
}

fn server() -> (Streams, Instant) {
    let config = StreamConfig {
        max_concurrent_bidi: 2,
        stream_window: 1000,
        connection_window: 1500,
        ..StreamConfig::default()
    };
    let mut streams = Streams::new(Side::Server, config);
    let params = TransportParameters {
        initial_max_data: VarInt::from_u32(10_000),
        initial_max_streams_bidi: VarInt::from_u32(5),
        initial_max_streams_uni: VarInt::from_u32(5),
        initial_max_stream_data_bidi_local: VarInt::from_u32(10_000),
        initial_max_stream_data_bidi_remote: VarInt::from_u32(10_000),
        ..TransportParameters::default()
    };
    streams.apply_peer_params(&params);
    (streams, Instant::now())
}

fn client_bidi(index: u64) -> StreamId {
    StreamId::new(Side::Client, Dir::Bi, index).unwrap()
}

fn data(
    streams: &mut Streams,
    now: Instant,
    id: StreamId,
    offset: u64,
    len: usize,
    fin: bool,
) -> Result<(), TransportError> {
    let payload = Bytes::from(vec![7u8; len]);
    let frame = Frame::Stream(StreamFrame {
        id,
        offset: varint(offset),
        fin,
        data: &payload,
    });
    streams.on_frame(now, &frame, &payload)
}

#[test]
fn credit_peer_opening_beyond_the_limit_is_a_stream_limit_error() {
    let (mut streams, now) = server();
    assert!(data(&mut streams, now, client_bidi(1), 0, 1, false).is_ok());
    // RFC 9000 §4.6, RFC9000-029: index 2 with a limit of 2.
    let error = data(&mut streams, now, client_bidi(2), 0, 1, false).unwrap_err();
    assert_eq!(error.code, TransportErrorCode::STREAM_LIMIT_ERROR);
}

#[test]
fn streams_opened_implicitly_by_a_higher_id() {
    let (mut streams, now) = server();
    data(&mut streams, now, client_bidi(1), 0, 1, false).unwrap();
    // RFC 9000 §3.2: stream 0 opened too, and is accepted first.
    assert_eq!(streams.accept(Dir::Bi), Some(client_bidi(0)));
    assert_eq!(streams.accept(Dir::Bi), Some(client_bidi(1)));
    assert_eq!(streams.accept(Dir::Bi), None);
    let opened = std::iter::from_fn(|| streams.poll_event())
        .filter(|e| matches!(e, StreamEvent::Opened(Dir::Bi)))
        .count();
    assert_eq!(opened, 2);
}

#[test]
fn streams_frames_on_the_wrong_direction_or_unopened_streams() {
    let (mut streams, now) = server();
    let ours_uni = StreamId::new(Side::Server, Dir::Uni, 0).unwrap();
    let theirs_uni = StreamId::new(Side::Client, Dir::Uni, 0).unwrap();
    let ours_unopened = StreamId::new(Side::Server, Dir::Bi, 3).unwrap();
    let state_error = |r: Result<(), TransportError>| {
        r.unwrap_err().code == TransportErrorCode::STREAM_STATE_ERROR
    };
    streams.open(now, Dir::Uni).unwrap();
    let payload = Bytes::new();
    // RFC9000-353, RFC9000-345, RFC9000-347, RFC9000-358, RFC9000-367, RFC9000-346/357.
    assert!(state_error(data(&mut streams, now, ours_uni, 0, 1, false)));
    let reset = Frame::ResetStream {
        id: ours_uni,
        error_code: VarInt::ZERO,
        final_size: VarInt::ZERO,
    };
    assert!(state_error(streams.on_frame(now, &reset, &payload)));
    let stop = Frame::StopSending {
        id: theirs_uni,
        error_code: VarInt::ZERO,
    };
    assert!(state_error(streams.on_frame(now, &stop, &payload)));
    let max = Frame::MaxStreamData {
        id: theirs_uni,
        max: VarInt::ZERO,
    };
    assert!(state_error(streams.on_frame(now, &max, &payload)));
    let blocked = Frame::StreamDataBlocked {
        id: ours_uni,
        limit: VarInt::ZERO,
    };
    assert!(state_error(streams.on_frame(now, &blocked, &payload)));
    let stop = Frame::StopSending {
        id: ours_unopened,
        error_code: VarInt::ZERO,
    };
    assert!(state_error(streams.on_frame(now, &stop, &payload)));
}

#[test]
fn flow_peer_exceeding_the_windows_is_a_flow_control_error() {
    let (mut streams, now) = server();
    // Stream window 1000 (RFC9000-360).
    let error = data(&mut streams, now, client_bidi(0), 500, 501, false).unwrap_err();
    assert_eq!(error.code, TransportErrorCode::FLOW_CONTROL_ERROR);
    // Connection window 1500 across streams (RFC9000-356).
    let (mut streams, now) = server();
    data(&mut streams, now, client_bidi(0), 0, 1000, false).unwrap();
    let error = data(&mut streams, now, client_bidi(1), 0, 501, false).unwrap_err();
    assert_eq!(error.code, TransportErrorCode::FLOW_CONTROL_ERROR);
}

#[test]
fn flow_reset_and_stop_return_connection_credit() {
    let (mut streams, now) = server();
    data(&mut streams, now, client_bidi(0), 0, 1000, false).unwrap();
    let id = streams.accept(Dir::Bi).unwrap();
    // Stopping discards 1000 unread bytes: the connection window moves on.
    streams.stop(id, VarInt::ZERO).unwrap();
    assert!(
        streams.conn_recv.limit() >= 2500,
        "max_data {}",
        streams.conn_recv.limit()
    );
    // A reset's unread bytes count too.
    let (mut streams, now) = server();
    data(&mut streams, now, client_bidi(0), 0, 100, false).unwrap();
    let reset = Frame::ResetStream {
        id: client_bidi(0),
        error_code: VarInt::from_u32(3),
        final_size: VarInt::from_u32(900),
    };
    streams.on_frame(now, &reset, &Bytes::new()).unwrap();
    assert!(
        streams.conn_recv.limit() >= 2400,
        "max_data {}",
        streams.conn_recv.limit()
    );
}

/// Sends what is pending; returns the records of the packet.
fn send(streams: &mut Streams, now: Instant) -> Vec<StreamFrameRecord> {
    write(streams, now, 1200).1
}

#[test]
fn streams_one_stream_snapshot_is_its_entry_in_the_whole() {
    let (mut streams, now) = server();
    data(&mut streams, now, client_bidi(1), 0, 10, true).unwrap();
    let ours = streams.open(now, Dir::Uni).unwrap();
    streams.write(ours, b"abc").unwrap();
    let whole = streams.snapshot(now);
    assert_eq!(whole.streams.len(), 3);
    for entry in &whole.streams {
        assert_eq!(streams.stream(entry.id, now).as_ref(), Some(entry));
    }
    assert_eq!(streams.stream(client_bidi(4), now), None);
}

#[test]
fn flow_data_to_send_is_what_was_written_and_flow_control_allows() {
    let (mut streams, now) = server();
    assert!(!streams.has_data_to_send());
    let id = streams.open(now, Dir::Bi).unwrap();
    streams.write(id, &[1; 600]).unwrap();
    assert!(streams.has_data_to_send());
    while !send(&mut streams, now).is_empty() {}
    assert!(!streams.has_data_to_send());
    // A FIN alone is something to send.
    streams.finish(id).unwrap();
    assert!(streams.has_data_to_send());
    send(&mut streams, now);
    assert!(!streams.has_data_to_send());
    // Data beyond the connection window (10,000 bytes, 600 used) waits for credit: it
    // is not something to send now.
    let id = streams.open(now, Dir::Bi).unwrap();
    streams.write(id, &[1; 10_000]).unwrap();
    while !send(&mut streams, now).is_empty() {}
    assert_eq!(streams.conn_send.used(), 10_000);
    assert!(!streams.has_data_to_send());
}

/// Answers a peer stream and finishes both halves: reads its data to the end, writes and
/// finishes, and has what it sent acknowledged.
fn answer_and_acknowledge(streams: &mut Streams, now: Instant, id: StreamId) {
    while let Ok(ReadOutcome::Data(_)) = streams.read(id, usize::MAX) {}
    streams.write(id, b"ok").unwrap();
    streams.finish(id).unwrap();
    let records = send(streams, now);
    streams.on_acked(&records);
}

#[test]
fn credit_the_peer_has_used_up_is_awaited_until_sent() {
    // Limit 2. The peer opens one stream; once it is released the peer still has credit,
    // so the MAX_STREAMS due is not awaited.
    let (mut streams, now) = server();
    data(&mut streams, now, client_bidi(0), 0, 1, true).unwrap();
    let first = streams.accept(Dir::Bi).unwrap();
    answer_and_acknowledge(&mut streams, now, first);
    assert!(!streams.credit_awaited(), "the peer still had credit");
    let sent = send(&mut streams, now);
    assert!(
        sent.iter()
            .any(|r| matches!(r, StreamFrameRecord::MaxStreams { dir: Dir::Bi, .. }))
    );
    // Limit 3, and the peer opens both streams it still may: once one is released, the
    // peer waits for the MAX_STREAMS, until it is sent.
    for index in 1..3 {
        data(&mut streams, now, client_bidi(index), 0, 1, true).unwrap();
    }
    let second = streams.accept(Dir::Bi).unwrap();
    answer_and_acknowledge(&mut streams, now, second);
    assert!(
        streams.credit_awaited(),
        "released at the limit the peer knows"
    );
    let sent = send(&mut streams, now);
    assert!(
        sent.iter()
            .any(|r| matches!(r, StreamFrameRecord::MaxStreams { dir: Dir::Bi, .. }))
    );
    assert!(!streams.credit_awaited(), "sent");
}

#[test]
fn credit_needed_once_all_is_used_before_anyone_waits() {
    let (mut streams, now) = server();
    // No credit in a direction never used is no reason to hurry.
    streams.apply_peer_params(&TransportParameters {
        initial_max_streams_uni: VarInt::ZERO,
        initial_max_streams_bidi: VarInt::from_u32(5),
        ..TransportParameters::default()
    });
    assert!(!streams.needs_credit());
    // The client's limit on our bidirectional streams is 5.
    for _ in 0..5 {
        streams.open(now, Dir::Bi).unwrap();
    }
    assert!(streams.needs_credit(), "the next open will wait");
}

/// Random peer frames interleaved with application calls and with the fate of what we
/// send: typed errors at most, never a panic, whatever the peer does.
mod adversarial {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Step {
        Peer(u8, u8, u64, usize, bool, u64),
        App(u8, u8, usize),
        Send(bool),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (
                0u8..9,
                0u8..12,
                0u64..70_000,
                0usize..3000,
                any::<bool>(),
                0u64..(1 << 62)
            )
                .prop_map(|(k, s, o, l, f, v)| Step::Peer(k, s, o, l, f, v)),
            (0u8..9, 0u8..12, 0usize..5000).prop_map(|(k, s, n)| Step::App(k, s, n)),
            any::<bool>().prop_map(Step::Send),
        ]
    }

    fn id(selector: u8) -> StreamId {
        let side = if selector & 1 == 0 {
            Side::Client
        } else {
            Side::Server
        };
        let dir = if selector & 2 == 0 { Dir::Bi } else { Dir::Uni };
        StreamId::new(side, dir, u64::from(selector >> 2)).unwrap()
    }

    proptest! {
        #[test]
        fn streams_random_peer_frames_never_panic(steps in prop::collection::vec(step(), 1..200)) {
            let (mut streams, now) = server();
            let mut in_flight: Vec<Vec<StreamFrameRecord>> = Vec::new();
            for step in steps {
                match step {
                    Step::Peer(kind, selector, offset, len, fin, value) => {
                        let id = id(selector);
                        let value = VarInt::from_u64(value).unwrap();
                        let payload = Bytes::from(vec![1u8; len]);
                        let frame = match kind {
                            0 | 1 => Frame::Stream(StreamFrame { id, offset: varint(offset), fin, data: &payload }),
                            2 => Frame::ResetStream { id, error_code: value, final_size: varint(offset) },
                            3 => Frame::StopSending { id, error_code: value },
                            4 => Frame::MaxStreamData { id, max: value },
                            5 => Frame::StreamDataBlocked { id, limit: value },
                            6 => Frame::MaxData(value),
                            7 => Frame::MaxStreams { dir: id.dir(), count: varint(value.into_inner() % (MAX_STREAM_COUNT + 1)) },
                            _ => Frame::StreamsBlocked { dir: id.dir(), limit: varint(value.into_inner() % (MAX_STREAM_COUNT + 1)) },
                        };
                        let _ = streams.on_frame(now, &frame, &payload);
                    }
                    Step::App(kind, selector, n) => {
                        let id = id(selector);
                        let _ = match kind {
                            0 => streams.open(now, id.dir()).map(drop).map_err(drop),
                            1 => streams.write(id, &vec![2u8; n]).map(drop).map_err(drop),
                            2 => streams.finish(id).map_err(drop),
                            3 => streams.reset(id, VarInt::from_u32(1)).map_err(drop),
                            4 => streams.read(id, n).map(drop).map_err(drop),
                            5 => streams.stop(id, VarInt::from_u32(2)).map_err(drop),
                            6 => { streams.release(id); Ok(()) }
                            7 => streams.accept(id.dir()).map(drop).ok_or(()),
                            _ => streams.request_open(now, id.dir()).map(drop).map_err(drop),
                        };
                    }
                    Step::Send(acked) => {
                        let (buf, records) = write(&mut streams, now, 1200);
                        prop_assert!(buf.len() <= 1200);
                        in_flight.push(records);
                        if let Some(records) = in_flight.first().cloned() {
                            in_flight.remove(0);
                            if acked {
                                streams.on_acked(&records);
                            } else {
                                streams.on_lost(&records);
                            }
                        }
                    }
                }
                let _ = streams.snapshot(now);
                while streams.poll_event().is_some() {}
            }
        }
    }
}
