//! Property tests: decode(encode(x)) == x for varints, every frame type, ACK ranges, packet
//! headers (through real packet protection) and transport parameter sets; and decoding arbitrary
//! bytes never panics.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::ops::RangeInclusive;

use common::protected_packet;
use proptest::prelude::*;
use qstream_proto::Side;
use qstream_proto::crypto::{decrypt_payload, initial_keys, unprotect_header};
use qstream_proto::stateless_reset::StatelessResetToken;
use qstream_proto::wire::*;

fn varint() -> impl Strategy<Value = VarInt> {
    prop_oneof![
        0u64..64,
        64u64..16_384,
        16_384u64..1 << 30,
        (1u64 << 30)..=VarInt::MAX.into_inner(),
    ]
    .prop_map(|v| VarInt::from_u64(v).unwrap())
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

fn cid(min: usize, max: usize) -> impl Strategy<Value = ConnectionId> {
    prop::collection::vec(any::<u8>(), min..=max)
        .prop_map(|b| ConnectionId::from_slice(&b).unwrap())
}

fn stream_count() -> impl Strategy<Value = VarInt> {
    (0..=MAX_STREAM_COUNT).prop_map(|v| VarInt::from_u64(v).unwrap())
}

fn dir() -> impl Strategy<Value = Dir> {
    prop_oneof![Just(Dir::Bi), Just(Dir::Uni)]
}

fn token() -> impl Strategy<Value = StatelessResetToken> {
    any::<[u8; 16]>().prop_map(StatelessResetToken::from)
}

/// An owned description of a frame, from which the borrowed [`Frame`] is built.
#[derive(Clone, Debug)]
enum Spec {
    Padding(usize),
    Ping,
    ResetStream(VarInt, VarInt, VarInt),
    StopSending(VarInt, VarInt),
    Crypto(VarInt, Vec<u8>),
    NewToken(Vec<u8>),
    Stream(VarInt, VarInt, bool, Vec<u8>),
    MaxData(VarInt),
    MaxStreamData(VarInt, VarInt),
    MaxStreams(Dir, VarInt),
    DataBlocked(VarInt),
    StreamDataBlocked(VarInt, VarInt),
    StreamsBlocked(Dir, VarInt),
    NewConnectionId(VarInt, VarInt, ConnectionId, StatelessResetToken),
    RetireConnectionId(VarInt),
    PathChallenge([u8; 8]),
    PathResponse([u8; 8]),
    ConnectionClose(VarInt, Option<VarInt>, Vec<u8>),
    HandshakeDone,
    Datagram(Vec<u8>),
    AckFrequency(VarInt, VarInt, VarInt, VarInt),
    ImmediateAck,
}

fn offset_for(len: usize) -> impl Strategy<Value = VarInt> {
    (0..=VarInt::MAX.into_inner() - len as u64).prop_map(|v| VarInt::from_u64(v).unwrap())
}

fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        (1usize..40).prop_map(Spec::Padding),
        Just(Spec::Ping),
        (varint(), varint(), varint()).prop_map(|(a, b, c)| Spec::ResetStream(a, b, c)),
        (varint(), varint()).prop_map(|(a, b)| Spec::StopSending(a, b)),
        bytes(64)
            .prop_flat_map(|d| (offset_for(d.len()), Just(d)))
            .prop_map(|(o, d)| Spec::Crypto(o, d)),
        prop::collection::vec(any::<u8>(), 1..64).prop_map(Spec::NewToken),
        (varint(), any::<bool>(), bytes(64))
            .prop_flat_map(|(id, fin, d)| (Just(id), offset_for(d.len()), Just(fin), Just(d)))
            .prop_map(|(id, o, fin, d)| Spec::Stream(id, o, fin, d)),
        varint().prop_map(Spec::MaxData),
        (varint(), varint()).prop_map(|(a, b)| Spec::MaxStreamData(a, b)),
        (dir(), stream_count()).prop_map(|(d, c)| Spec::MaxStreams(d, c)),
        varint().prop_map(Spec::DataBlocked),
        (varint(), varint()).prop_map(|(a, b)| Spec::StreamDataBlocked(a, b)),
        (dir(), stream_count()).prop_map(|(d, c)| Spec::StreamsBlocked(d, c)),
        (varint(), varint(), cid(1, 20), token()).prop_map(|(a, b, c, t)| {
            let (retire, seq) = if a <= b { (a, b) } else { (b, a) };
            Spec::NewConnectionId(seq, retire, c, t)
        }),
        varint().prop_map(Spec::RetireConnectionId),
        any::<[u8; 8]>().prop_map(Spec::PathChallenge),
        any::<[u8; 8]>().prop_map(Spec::PathResponse),
        (varint(), prop::option::of(varint()), bytes(64))
            .prop_map(|(c, t, r)| Spec::ConnectionClose(c, t, r)),
        Just(Spec::HandshakeDone),
        bytes(64).prop_map(Spec::Datagram),
        (varint(), varint(), varint(), varint())
            .prop_map(|(a, b, c, d)| Spec::AckFrequency(a, b, c, d)),
        Just(Spec::ImmediateAck),
    ]
}

fn frame(spec: &Spec) -> Frame<'_> {
    match spec {
        Spec::Padding(n) => Frame::Padding(*n),
        Spec::Ping => Frame::Ping,
        Spec::ResetStream(id, code, size) => Frame::ResetStream {
            id: StreamId::from(*id),
            error_code: *code,
            final_size: *size,
        },
        Spec::StopSending(id, code) => Frame::StopSending {
            id: StreamId::from(*id),
            error_code: *code,
        },
        Spec::Crypto(offset, data) => Frame::Crypto {
            offset: *offset,
            data,
        },
        Spec::NewToken(t) => Frame::NewToken(t),
        Spec::Stream(id, offset, fin, data) => Frame::Stream(Stream {
            id: StreamId::from(*id),
            offset: *offset,
            fin: *fin,
            data,
        }),
        Spec::MaxData(v) => Frame::MaxData(*v),
        Spec::MaxStreamData(id, v) => Frame::MaxStreamData {
            id: StreamId::from(*id),
            max: *v,
        },
        Spec::MaxStreams(dir, count) => Frame::MaxStreams {
            dir: *dir,
            count: *count,
        },
        Spec::DataBlocked(v) => Frame::DataBlocked(*v),
        Spec::StreamDataBlocked(id, v) => Frame::StreamDataBlocked {
            id: StreamId::from(*id),
            limit: *v,
        },
        Spec::StreamsBlocked(dir, limit) => Frame::StreamsBlocked {
            dir: *dir,
            limit: *limit,
        },
        Spec::NewConnectionId(sequence, retire_prior_to, id, reset_token) => {
            Frame::NewConnectionId(NewConnectionId {
                sequence: *sequence,
                retire_prior_to: *retire_prior_to,
                id: *id,
                reset_token: *reset_token,
            })
        }
        Spec::RetireConnectionId(sequence) => Frame::RetireConnectionId {
            sequence: *sequence,
        },
        Spec::PathChallenge(d) => Frame::PathChallenge(*d),
        Spec::PathResponse(d) => Frame::PathResponse(*d),
        Spec::ConnectionClose(error_code, frame_type, reason) => {
            Frame::ConnectionClose(ConnectionClose {
                error_code: *error_code,
                frame_type: *frame_type,
                reason,
            })
        }
        Spec::HandshakeDone => Frame::HandshakeDone,
        Spec::Datagram(d) => Frame::Datagram(d),
        Spec::AckFrequency(sequence, threshold, delay, reordering) => {
            Frame::AckFrequency(AckFrequency {
                sequence: *sequence,
                ack_eliciting_threshold: *threshold,
                request_max_ack_delay: *delay,
                reordering_threshold: *reordering,
            })
        }
        Spec::ImmediateAck => Frame::ImmediateAck,
    }
}

/// Descending, non-adjacent ACK ranges below 2^62.
fn ack_ranges() -> impl Strategy<Value = Vec<RangeInclusive<u64>>> {
    (
        0u64..1 << 40,
        prop::collection::vec((0u64..1000, 0u64..1000), 1..30),
    )
        .prop_map(|(mut top, pieces)| {
            let mut ranges = Vec::new();
            for (gap, len) in pieces {
                let Some(start) = top.checked_sub(len) else {
                    break;
                };
                ranges.push(start..=top);
                match start.checked_sub(gap + 2) {
                    Some(next) => top = next,
                    None => break,
                }
            }
            ranges
        })
}

fn ecn() -> impl Strategy<Value = Option<EcnCounts>> {
    prop::option::of(
        (varint(), varint(), varint()).prop_map(|(ect0, ect1, ce)| EcnCounts { ect0, ect1, ce }),
    )
}

fn version() -> impl Strategy<Value = Version> {
    prop_oneof![Just(Version::V1), Just(Version::V2)]
}

/// An owned description of a protected packet's header.
#[derive(Clone, Debug)]
enum HeaderSpec {
    Initial(Version, ConnectionId, ConnectionId, Vec<u8>),
    ZeroRtt(Version, ConnectionId, ConnectionId),
    Handshake(Version, ConnectionId, ConnectionId),
    Short(ConnectionId, bool, bool),
}

fn header_spec(short_cid_len: usize) -> impl Strategy<Value = HeaderSpec> {
    prop_oneof![
        (version(), cid(0, 20), cid(0, 20), bytes(80))
            .prop_map(|(v, d, s, t)| HeaderSpec::Initial(v, d, s, t)),
        (version(), cid(0, 20), cid(0, 20)).prop_map(|(v, d, s)| HeaderSpec::ZeroRtt(v, d, s)),
        (version(), cid(0, 20), cid(0, 20)).prop_map(|(v, d, s)| HeaderSpec::Handshake(v, d, s)),
        (
            cid(short_cid_len, short_cid_len),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(d, s, k)| HeaderSpec::Short(d, s, k)),
    ]
}

fn header(spec: &HeaderSpec) -> Header<'_> {
    match spec {
        HeaderSpec::Initial(version, dcid, scid, token) => Header::Initial {
            version: *version,
            dcid: *dcid,
            scid: *scid,
            token,
        },
        HeaderSpec::ZeroRtt(version, dcid, scid) => Header::ZeroRtt {
            version: *version,
            dcid: *dcid,
            scid: *scid,
        },
        HeaderSpec::Handshake(version, dcid, scid) => Header::Handshake {
            version: *version,
            dcid: *dcid,
            scid: *scid,
        },
        HeaderSpec::Short(dcid, spin, key_phase) => Header::Short {
            dcid: *dcid,
            spin: *spin,
            key_phase: *key_phase,
        },
    }
}

fn keys_version(header: &Header<'_>) -> Version {
    match header {
        Header::Initial { version, .. }
        | Header::ZeroRtt { version, .. }
        | Header::Handshake { version, .. } => *version,
        Header::Short { .. } => Version::V1,
    }
}

/// Appends one protected packet to `datagram`. Every packet type is protected with Initial keys
/// derived from a fixed connection ID: what is under test is the header and protection layout.
fn push_packet(
    datagram: &mut Vec<u8>,
    header: &Header<'_>,
    pn: u64,
    largest_acked: Option<u64>,
    payload: &[u8],
) {
    let keys = initial_keys(keys_version(header), b"roundtrip", Side::Client).unwrap();
    datagram.extend_from_slice(&protected_packet(header, pn, largest_acked, payload, &keys));
}

const SHORT_CID_LEN: usize = 8;

proptest! {
    #[test]
    fn roundtrip_varint(value in varint()) {
        let mut buf = Vec::new();
        value.encode(&mut buf);
        prop_assert_eq!(buf.len(), value.size());
        prop_assert_eq!(VarInt::decode_prefix(&buf), Some((value, buf.len())));
    }

    #[test]
    fn roundtrip_varint_longer_encodings(value in 0u64..64, len_bits in 0u8..4) {
        // Any encoding length decodes to the same value (RFC 9000 §16).
        let len = 1usize << len_bits;
        let mut buf = value.to_be_bytes()[8 - len..].to_vec();
        buf[0] |= len_bits << 6;
        prop_assert_eq!(VarInt::decode_prefix(&buf), Some((VarInt::from_u64(value).unwrap(), len)));
    }

    #[test]
    fn roundtrip_frame(spec in spec()) {
        let frame = frame(&spec);
        let mut buf = Vec::new();
        frame.encode(&mut buf);
        let decoded: Vec<_> = Frames::new(&buf).collect();
        prop_assert_eq!(decoded, vec![Ok(frame)]);
    }

    #[test]
    fn roundtrip_frame_sequences(specs in prop::collection::vec(spec(), 1..20)) {
        // Adjacent PADDING runs merge on the wire; merge them in the expectation too.
        let mut expected: Vec<Frame<'_>> = Vec::new();
        for frame in specs.iter().map(frame) {
            match (expected.last_mut(), &frame) {
                (Some(Frame::Padding(n)), Frame::Padding(m)) => *n += m,
                _ => expected.push(frame),
            }
        }
        let mut buf = Vec::new();
        for frame in &expected {
            frame.encode(&mut buf);
        }
        let decoded: Result<Vec<_>, _> = Frames::new(&buf).collect();
        prop_assert_eq!(decoded, Ok(expected));
    }

    #[test]
    fn roundtrip_ack(ranges in ack_ranges(), delay in varint(), ecn in ecn()) {
        let mut buf = Vec::new();
        Ack::encode(ranges.iter().cloned(), delay, ecn, &mut buf);
        let frames: Vec<_> = Frames::new(&buf).collect();
        prop_assert_eq!(frames.len(), 1);
        let Ok(Frame::Ack(ack)) = &frames[0] else {
            return Err(TestCaseError::fail(format!("not an ACK: {:?}", frames[0])));
        };
        prop_assert_eq!(ack.ranges().collect::<Vec<_>>(), ranges.clone());
        prop_assert_eq!((ack.delay, ack.ecn), (delay, ecn));
        prop_assert_eq!(ack.largest.into_inner(), *ranges[0].end());
        // Re-encoding the decoded frame gives the same bytes.
        let mut again = Vec::new();
        Frame::Ack(ack.clone()).encode(&mut again);
        prop_assert_eq!(again, buf);
    }

    #[test]
    fn roundtrip_packet_number(largest_acked in 0u64..1 << 50, ahead in 1u64..1 << 20, seen in 0u64..1 << 20) {
        // The receiver has seen some packet between the largest acknowledged and the one sent.
        let full = largest_acked + ahead;
        let largest_received = largest_acked + seen % ahead;
        let truncated = TruncatedPacketNumber::encode(full, Some(largest_acked));
        prop_assert_eq!(truncated.decode(Some(largest_received)), full);
    }

    #[test]
    fn roundtrip_headers(
        specs in prop::collection::vec((header_spec(SHORT_CID_LEN), 0u64..1 << 32, bytes(100)), 1..4),
    ) {
        // Several packets coalesced in one datagram; a short header packet can only be last.
        let mut specs = specs;
        let last_short = specs.iter().position(|(h, ..)| matches!(h, HeaderSpec::Short(..)));
        if let Some(i) = last_short {
            specs.truncate(i + 1);
        }
        let mut datagram = Vec::new();
        let mut expected = Vec::new();
        for (spec, pn, frames) in &specs {
            let header = header(spec);
            // At least 4 bytes of frames so there is always a header protection sample.
            let mut payload = frames.clone();
            payload.resize(payload.len().max(4), 0);
            let start = datagram.len();
            push_packet(&mut datagram, &header, *pn, pn.checked_sub(100), &payload);
            expected.push((start, header, *pn, payload));
        }

        let packets: Vec<_> = CoalescedPackets::new(&datagram, SHORT_CID_LEN)
            .map(|p| p.map(|(offset, packet)| match packet {
                Packet::Protected(p) => (offset, p),
                other => panic!("unexpected {other:?}"),
            }))
            .collect::<Result<_, _>>()
            .unwrap();
        prop_assert_eq!(packets.len(), expected.len());
        for ((offset, located), (start, header, pn, payload)) in packets.into_iter().zip(expected) {
            prop_assert_eq!(offset, start);
            prop_assert!(located.fixed_bit);
            let keys = initial_keys(keys_version(&header), b"roundtrip", Side::Server).unwrap();
            let mut packet = datagram[offset..offset + located.len].to_vec();
            let unprotected = unprotect_header(&mut packet, located.pn_offset, &*keys.remote.header).unwrap();
            prop_assert!(reserved_bits_valid(unprotected.first_byte));
            let full_pn = unprotected.pn.decode(pn.checked_sub(1));
            prop_assert_eq!(full_pn, pn);
            prop_assert_eq!(located.header(&packet, unprotected.first_byte), header);
            let plaintext = decrypt_payload(&mut packet, unprotected.header_len, pn, &*keys.remote.packet).unwrap();
            prop_assert_eq!(plaintext, &payload[..]);
        }
    }

    #[test]
    fn roundtrip_version_negotiation(
        dcid in bytes(255), scid in bytes(255),
        versions in prop::collection::vec(any::<u32>().prop_map(Version), 1..8),
        unused in 0u8..0x40,
    ) {
        let mut buf = Vec::new();
        VersionNegotiation::encode(&dcid, &scid, &versions, unused, &mut buf);
        let Ok(Packet::VersionNegotiation(vn)) = parse_packet(&buf, 0) else {
            return Err(TestCaseError::fail("not a Version Negotiation packet"));
        };
        // The reply swaps the connection IDs it echoes.
        prop_assert_eq!((vn.dcid, vn.scid), (&scid[..], &dcid[..]));
        prop_assert_eq!(vn.versions().collect::<Vec<_>>(), versions);
    }

    #[test]
    fn roundtrip_transport_params(params in transport_params(), sender in prop_oneof![Just(Side::Client), Just(Side::Server)]) {
        let mut params = params;
        if sender == Side::Client {
            params.original_destination_connection_id = None;
            params.stateless_reset_token = None;
            params.preferred_address = None;
            params.retry_source_connection_id = None;
        }
        let mut buf = Vec::new();
        params.encode(&mut buf);
        prop_assert_eq!(TransportParameters::decode(&buf, sender), Ok(params));
    }

    #[test]
    fn roundtrip_decode_arbitrary_bytes_never_panics(input in bytes(300), cid_len in 0usize..=20) {
        // Whatever decodes re-encodes to the same frame.
        for frame in Frames::new(&input).map_while(Result::ok) {
            let mut buf = Vec::new();
            frame.encode(&mut buf);
            prop_assert_eq!(Frames::new(&buf).next(), Some(Ok(frame)));
        }
        for packet in CoalescedPackets::new(&input, cid_len) {
            let _ = packet;
        }
        let _ = TransportParameters::decode(&input, Side::Client);
        let _ = TransportParameters::decode(&input, Side::Server);
    }
}

fn optional_cid() -> impl Strategy<Value = Option<ConnectionId>> {
    prop::option::of(cid(0, 20))
}

fn preferred_address() -> impl Strategy<Value = PreferredAddress> {
    (
        prop::option::of((any::<u32>(), 1u16..)),
        prop::option::of((any::<u128>(), 1u16..)),
        cid(1, 20),
        token(),
    )
        .prop_map(
            |(v4, v6, connection_id, stateless_reset_token)| PreferredAddress {
                ipv4: v4.map(|(ip, port)| SocketAddrV4::new(Ipv4Addr::from(ip), port)),
                ipv6: v6.map(|(ip, port)| SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0)),
                connection_id,
                stateless_reset_token,
            },
        )
}

fn transport_params() -> impl Strategy<Value = TransportParameters> {
    let limits = (
        varint(),
        1200u64..=65527,
        varint(),
        varint(),
        varint(),
        varint(),
        stream_count(),
        stream_count(),
        0u8..=20,
        0u64..1 << 14,
        2u64..100,
    );
    let ids = (
        optional_cid(),
        prop::option::of(token()),
        any::<bool>(),
        prop::option::of(preferred_address()),
        optional_cid(),
        optional_cid(),
        prop::option::of((version(), prop::collection::vec(version(), 0..4))),
        prop::option::of(varint()),
        any::<bool>(),
        prop::option::of(0u64..=1000),
    );
    (limits, ids).prop_map(|(l, i)| TransportParameters {
        max_idle_timeout: l.0,
        max_udp_payload_size: VarInt::from_u64(l.1).unwrap(),
        initial_max_data: l.2,
        initial_max_stream_data_bidi_local: l.3,
        initial_max_stream_data_bidi_remote: l.4,
        initial_max_stream_data_uni: l.5,
        initial_max_streams_bidi: l.6,
        initial_max_streams_uni: l.7,
        ack_delay_exponent: l.8,
        max_ack_delay: VarInt::from_u64(l.9).unwrap(),
        active_connection_id_limit: VarInt::from_u64(l.10).unwrap(),
        original_destination_connection_id: i.0,
        stateless_reset_token: i.1,
        disable_active_migration: i.2,
        preferred_address: i.3,
        initial_source_connection_id: i.4,
        retry_source_connection_id: i.5,
        version_information: i.6.map(|(chosen, mut others)| {
            others.insert(0, chosen);
            VersionInformation {
                chosen,
                available: others,
            }
        }),
        max_datagram_frame_size: i.7,
        grease_quic_bit: i.8,
        // At most max_ack_delay, which is at least 0 ms: a microsecond count up to 1 ms
        // scaled by it.
        min_ack_delay: i.9.map(|us| VarInt::from_u64(us * l.9).unwrap()),
    })
}
