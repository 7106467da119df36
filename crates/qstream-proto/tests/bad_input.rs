//! Malformed input, one test per class, each asserting the exact QUIC error code (RFC 9000 §20.1)
//! that the decoder reports.

mod common;

use common::protected_packet;
use qstream_proto::crypto::{decrypt_payload, initial_keys, protect, unprotect_header};
use qstream_proto::stateless_reset::{
    MIN_STATELESS_RESET_LEN, StatelessResetKey, StatelessResetToken, encode_stateless_reset,
    stateless_reset_len,
};
use qstream_proto::wire::*;
use qstream_proto::{DecodeError, Side, TransportErrorCode as Code};

fn decode_one(bytes: &[u8]) -> Result<Frame<'_>, DecodeError> {
    Frames::new(bytes).next().expect("non-empty input")
}

fn assert_frame_error(bytes: &[u8], code: Code, frame_type: u64) {
    let err = decode_one(bytes).expect_err("must be rejected");
    assert_eq!(
        (err.code, err.frame_type),
        (code, Some(frame_type)),
        "{bytes:02x?}: {err}"
    );
}

fn assert_tp_error(bytes: &[u8], sender: Side) {
    let err = TransportParameters::decode(bytes, sender).expect_err("must be rejected");
    assert_eq!(
        err.code,
        Code::TRANSPORT_PARAMETER_ERROR,
        "{bytes:02x?}: {err}"
    );
}

/// One encoded frame of every type that has fields to truncate.
fn sample_frames() -> Vec<Vec<u8>> {
    let id = StreamId::from(VarInt::from_u32(1234));
    let v = |n: u32| VarInt::from_u32(n);
    let frames = [
        Frame::ResetStream {
            id,
            error_code: v(7),
            final_size: v(100_000),
        },
        Frame::StopSending {
            id,
            error_code: v(70_000),
        },
        Frame::Crypto {
            offset: v(9),
            data: b"client hello",
        },
        Frame::NewToken(b"token"),
        Frame::Stream(Stream {
            id,
            offset: v(1 << 20),
            fin: true,
            data: b"abc",
        }),
        Frame::MaxData(v(1 << 25)),
        Frame::MaxStreamData { id, max: v(5) },
        Frame::MaxStreams {
            dir: Dir::Uni,
            count: v(100),
        },
        Frame::DataBlocked(v(1 << 16)),
        Frame::StreamDataBlocked { id, limit: v(9) },
        Frame::StreamsBlocked {
            dir: Dir::Bi,
            limit: v(10),
        },
        Frame::NewConnectionId(NewConnectionId {
            sequence: v(3),
            retire_prior_to: v(1),
            id: ConnectionId::from_slice(&[7; 8]).unwrap(),
            reset_token: StatelessResetToken::from([9; 16]),
        }),
        Frame::RetireConnectionId { sequence: v(300) },
        Frame::PathChallenge([1; 8]),
        Frame::PathResponse([2; 8]),
        Frame::ConnectionClose(ConnectionClose {
            error_code: v(0x0a),
            frame_type: Some(v(0x08)),
            reason: b"bad",
        }),
        Frame::ConnectionClose(ConnectionClose {
            error_code: v(0x100),
            frame_type: None,
            reason: b"app",
        }),
        Frame::Datagram(b"datagram"),
    ];
    let mut encoded: Vec<Vec<u8>> = frames
        .iter()
        .map(|frame| {
            let mut buf = Vec::new();
            frame.encode(&mut buf);
            buf
        })
        .collect();
    let mut ack = Vec::new();
    Ack::encode(
        [900..=1000, 10..=20, 0..=5].into_iter(),
        v(40),
        Some(EcnCounts::default()),
        &mut ack,
    );
    encoded.push(ack);
    encoded
}

#[test]
fn bad_input_frame_truncated_at_every_byte() {
    for frame in sample_frames() {
        for cut in 1..frame.len() {
            assert_frame_error(
                &frame[..cut],
                Code::FRAME_ENCODING_ERROR,
                u64::from(frame[0]),
            );
        }
        assert!(decode_one(&frame).is_ok());
    }
}

#[test]
fn bad_input_frame_oversized_lengths() {
    // CRYPTO, NEW_TOKEN, STREAM (with LEN), CONNECTION_CLOSE and DATAGRAM lengths past the end.
    assert_frame_error(&[0x06, 0x00, 0x05, 1, 2], Code::FRAME_ENCODING_ERROR, 0x06);
    assert_frame_error(
        &[0x07, 0x80, 0xff, 0xff, 0xff, 1],
        Code::FRAME_ENCODING_ERROR,
        0x07,
    );
    assert_frame_error(
        &[0x0a, 0x04, 0x10, 1, 2, 3],
        Code::FRAME_ENCODING_ERROR,
        0x0a,
    );
    assert_frame_error(
        &[0x1d, 0x00, 0x44, 0x00, b'x'],
        Code::FRAME_ENCODING_ERROR,
        0x1d,
    );
    assert_frame_error(&[0x31, 0x09, 1, 2], Code::FRAME_ENCODING_ERROR, 0x31);
    // A length that does not fit in usize on any platform.
    let mut huge = vec![0x31, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    huge.extend_from_slice(&[0; 8]);
    assert_frame_error(&huge, Code::FRAME_ENCODING_ERROR, 0x31);
    // STREAM and CRYPTO data ending beyond 2^62-1 (RFC9000-354, RFC9000-348).
    let max = [0xff; 8];
    let mut stream = vec![0x0e, 0x00];
    stream.extend_from_slice(&max);
    stream.extend_from_slice(&[0x01, b'x']);
    assert_frame_error(&stream, Code::FRAME_ENCODING_ERROR, 0x0e);
    let mut crypto = vec![0x06];
    crypto.extend_from_slice(&max);
    crypto.extend_from_slice(&[0x01, b'x']);
    assert_frame_error(&crypto, Code::FRAME_ENCODING_ERROR, 0x06);
    // An ACK claiming 2^62-1 ranges in a few bytes fails fast at the end of its input.
    let mut ack = vec![0x02, 0x40, 0x64, 0x00];
    ack.extend_from_slice(&max);
    ack.extend_from_slice(&[0x00, 0x00, 0x00]);
    assert_frame_error(&ack, Code::FRAME_ENCODING_ERROR, 0x02);
}

#[test]
fn bad_input_frame_invalid_values() {
    // NEW_CONNECTION_ID with a 0- or 21-byte connection ID (RFC9000-370).
    let mut ncid = vec![0x18, 0x01, 0x00, 0x00];
    ncid.extend_from_slice(&[0; 16]);
    assert_frame_error(&ncid, Code::FRAME_ENCODING_ERROR, 0x18);
    let mut ncid = vec![0x18, 0x01, 0x00, 21];
    ncid.extend_from_slice(&[0; 21 + 16]);
    assert_frame_error(&ncid, Code::FRAME_ENCODING_ERROR, 0x18);
    // Retire Prior To above Sequence Number (RFC9000-375).
    let mut ncid = vec![0x18, 0x01, 0x02, 0x01, 0xaa];
    ncid.extend_from_slice(&[0; 16]);
    assert_frame_error(&ncid, Code::FRAME_ENCODING_ERROR, 0x18);
    // MAX_STREAMS and STREAMS_BLOCKED above 2^60 (RFC9000-361, RFC9000-369).
    let above = [0xd0, 0, 0, 0, 0, 0, 0, 0x01];
    for ty in [0x12, 0x13, 0x16, 0x17] {
        let mut frame = vec![ty];
        frame.extend_from_slice(&above);
        assert_frame_error(&frame, Code::FRAME_ENCODING_ERROR, u64::from(ty));
        let at_limit = [ty, 0xd0, 0, 0, 0, 0, 0, 0, 0];
        assert!(decode_one(&at_limit).is_ok(), "2^60 itself is valid");
    }
    // An empty NEW_TOKEN (RFC9000-350).
    assert_frame_error(&[0x07, 0x00], Code::FRAME_ENCODING_ERROR, 0x07);
    // ACK whose first range reaches below packet 0, and whose gap does (RFC9000-344).
    assert_frame_error(
        &[0x02, 0x05, 0x00, 0x00, 0x06],
        Code::FRAME_ENCODING_ERROR,
        0x02,
    );
    // Largest 5, first range 1 (4..=5), then gap 3: the next range would end at packet -1.
    assert_frame_error(
        &[0x02, 0x05, 0x00, 0x01, 0x01, 0x03, 0x00],
        Code::FRAME_ENCODING_ERROR,
        0x02,
    );
    // Gap 2 ends the next range exactly at packet 0, which is valid.
    let Ok(Frame::Ack(ack)) = decode_one(&[0x02, 0x05, 0x00, 0x01, 0x01, 0x02, 0x00]) else {
        panic!("valid ACK rejected");
    };
    assert_eq!(ack.ranges().collect::<Vec<_>>(), vec![4..=5, 0..=0]);
}

#[test]
fn bad_input_frame_type_not_minimal() {
    // PING as a two-byte varint, CRYPTO as a four-byte one (RFC9000-229).
    assert_frame_error(&[0x40, 0x01], Code::PROTOCOL_VIOLATION, 0x01);
    assert_frame_error(
        &[0x80, 0x00, 0x00, 0x06, 0x00, 0x00],
        Code::PROTOCOL_VIOLATION,
        0x06,
    );
}

#[test]
fn bad_input_unknown_frame_type() {
    // RFC9000-228: unknown types, including the reserved extension range and a long type.
    for bytes in [
        &[0x20][..],
        &[0x21],
        &[0x2f],
        &[0x32],
        &[0x40, 0x40],
        &[0x7f, 0xff],
    ] {
        let err = decode_one(bytes).unwrap_err();
        assert_eq!(err.code, Code::FRAME_ENCODING_ERROR, "{bytes:02x?}");
        assert!(err.frame_type.is_some());
    }
}

#[test]
fn bad_input_frames_stop_after_first_error() {
    let bytes = [0x01, 0x20, 0x01];
    let frames: Vec<_> = Frames::new(&bytes).collect();
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0], Ok(Frame::Ping));
    assert!(frames[1].is_err());
}

/// A full parameter set: every parameter that has a value, sent by a server.
fn full_params() -> TransportParameters {
    let cid = |b: u8| ConnectionId::from_slice(&[b; 8]).unwrap();
    TransportParameters {
        original_destination_connection_id: Some(cid(1)),
        max_idle_timeout: VarInt::from_u32(30_000),
        stateless_reset_token: Some(StatelessResetToken::from([3; 16])),
        max_udp_payload_size: VarInt::from_u32(1452),
        initial_max_data: VarInt::from_u32(1 << 24),
        initial_max_stream_data_bidi_local: VarInt::from_u32(1 << 20),
        initial_max_stream_data_bidi_remote: VarInt::from_u32(1 << 20),
        initial_max_stream_data_uni: VarInt::from_u32(1 << 20),
        initial_max_streams_bidi: VarInt::from_u32(100),
        initial_max_streams_uni: VarInt::from_u32(100),
        ack_delay_exponent: 5,
        max_ack_delay: VarInt::from_u32(20),
        disable_active_migration: true,
        preferred_address: Some(PreferredAddress {
            ipv4: Some("127.0.0.1:4433".parse().unwrap()),
            ipv6: None,
            connection_id: cid(4),
            stateless_reset_token: StatelessResetToken::from([5; 16]),
        }),
        active_connection_id_limit: VarInt::from_u32(4),
        initial_source_connection_id: Some(cid(6)),
        retry_source_connection_id: Some(cid(7)),
        version_information: Some(VersionInformation {
            chosen: Version::V1,
            available: vec![Version::V1, Version::V2],
        }),
        max_datagram_frame_size: Some(VarInt::from_u32(1200)),
        grease_quic_bit: true,
        min_ack_delay: Some(VarInt::from_u32(1000)),
    }
}

#[test]
fn bad_input_transport_params_truncated_at_every_byte() {
    let mut encoded = Vec::new();
    full_params().encode(&mut encoded);
    // A cut between two parameters leaves a valid, shorter set; any other cut is an error.
    let mut boundaries = 0;
    for cut in 0..encoded.len() {
        match TransportParameters::decode(&encoded[..cut], Side::Server) {
            Ok(_) => boundaries += 1,
            Err(err) => assert_eq!(err.code, Code::TRANSPORT_PARAMETER_ERROR),
        }
    }
    // 21 parameters: the empty prefix and the 20 points between two parameters.
    assert_eq!(boundaries, 21);
    assert_eq!(
        TransportParameters::decode(&encoded, Side::Server),
        Ok(full_params())
    );
}

fn param(id: u64, value: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    VarInt::from_u64(id).unwrap().encode(&mut buf);
    VarInt::try_from(value.len()).unwrap().encode(&mut buf);
    buf.extend_from_slice(value);
    buf
}

#[test]
fn bad_input_transport_params_oversized_lengths() {
    // A value length past the end, and a connection ID longer than 20 bytes.
    assert_tp_error(&[0x04, 0x08, 0x01], Side::Client);
    assert_tp_error(&[0x04, 0xbf, 0xff, 0xff, 0xff], Side::Client);
    assert_tp_error(&param(0x0f, &[0; 21]), Side::Client);
    // An integer parameter with bytes after its varint.
    assert_tp_error(&param(0x04, &[0x01, 0x00]), Side::Client);
}

#[test]
fn bad_input_transport_params_invalid_values() {
    let cases: [(u64, &[u8]); 12] = [
        (0x03, &[0x44, 0xaf]),                         // max_udp_payload_size 1199
        (0x08, &[0xd0, 0, 0, 0, 0, 0, 0, 0x01]),       // initial_max_streams_bidi 2^60+1
        (0x09, &[0xd0, 0, 0, 0, 0, 0, 0, 0x01]),       // initial_max_streams_uni 2^60+1
        (0x0a, &[21]),                                 // ack_delay_exponent 21
        (0x0b, &[0x80, 0x00, 0x40, 0x00]),             // max_ack_delay 2^14
        (0x0e, &[0x01]),                               // active_connection_id_limit 1 (RFC9000-340)
        (0x0c, &[0x00]),                               // disable_active_migration with a value
        (0x2ab2, &[0x01]),                             // grease_quic_bit with a value (RFC9287-002)
        (0x11, &[0, 0, 0, 1, 0, 0]),                   // version_information not a multiple of 4
        (0x11, &[0, 0, 0, 0, 0, 0, 0, 0]),             // chosen version 0 (RFC9368-021)
        (0x11, &[0, 0, 0, 1, 0x6b, 0x33, 0x43, 0xcf]), // client's chosen not available (-022)
        (0x20, &[]),                                   // max_datagram_frame_size without a value
    ];
    for (id, value) in cases {
        assert_tp_error(&param(id, value), Side::Client);
    }
    // draft-ietf-quic-ack-frequency §3: min_ack_delay (µs) above max_ack_delay (ms).
    let mut above = param(0x0b, &[10]);
    above.extend(param(0xff04_de1b, &[0x80, 0x00, 0x27, 0x11]));
    assert_tp_error(&above, Side::Client);
    let mut equal = param(0x0b, &[10]);
    equal.extend(param(0xff04_de1b, &[0x80, 0x00, 0x27, 0x10]));
    assert!(TransportParameters::decode(&equal, Side::Client).is_ok());
    // Reset token of 15 bytes, and preferred_address with a zero-length CID (RFC9000-337).
    assert_tp_error(&param(0x02, &[0; 15]), Side::Server);
    let mut address = vec![127, 0, 0, 1, 0x11, 0x51];
    address.extend_from_slice(&[0; 18]);
    address.push(0);
    address.extend_from_slice(&[0; 16]);
    assert_tp_error(&param(0x0d, &address), Side::Server);
}

#[test]
fn bad_input_transport_params_server_only_from_client() {
    // RFC9000-341/342: original_destination_connection_id, stateless_reset_token,
    // preferred_address and retry_source_connection_id from a client.
    let mut server_only = Vec::new();
    full_params().encode(&mut server_only);
    assert!(TransportParameters::decode(&server_only, Side::Server).is_ok());
    for (id, value) in [(0x00, &[1u8; 8][..]), (0x02, &[3; 16]), (0x10, &[7; 8])] {
        assert_tp_error(&param(id, value), Side::Client);
    }
}

#[test]
fn bad_input_transport_params_duplicate() {
    // RFC9000-079: a known parameter twice.
    let mut twice = param(0x04, &[0x10]);
    twice.extend(param(0x04, &[0x10]));
    assert_tp_error(&twice, Side::Client);
    let mut flags = param(0x0c, &[]);
    flags.extend(param(0x0c, &[]));
    assert_tp_error(&flags, Side::Client);
    // Unknown and grease parameters (31*N+27) are ignored, even repeated (RFC9000-089).
    let mut grease = param(31 * 5 + 27, b"grease");
    grease.extend(param(31 * 5 + 27, b"again"));
    grease.extend(param(0x04, &[0x10]));
    let decoded = TransportParameters::decode(&grease, Side::Client).unwrap();
    assert_eq!(decoded.initial_max_data, VarInt::from_u32(0x10));
}

/// A protected client Initial with a 1-byte packet number and `payload`.
fn client_initial(payload: &[u8]) -> Vec<u8> {
    let dcid = ConnectionId::from_slice(&[0x83; 8]).unwrap();
    let header = Header::Initial {
        version: Version::V1,
        dcid,
        scid: ConnectionId::EMPTY,
        token: b"tok",
    };
    let keys = initial_keys(Version::V1, &dcid, Side::Client).unwrap();
    protected_packet(&header, 0, None, payload, &keys)
}

#[test]
fn bad_input_header_truncated_at_every_byte() {
    let packet = client_initial(&[0x01; 40]);
    assert!(parse_packet(&packet, 0).is_ok());
    for cut in 0..packet.len() {
        let err = parse_packet(&packet[..cut], 0).expect_err("truncated");
        assert_eq!(err.code, Code::PROTOCOL_VIOLATION, "cut at {cut}: {err}");
    }
    // A short header shorter than our connection IDs.
    let err = parse_packet(&[0x40, 1, 2, 3], 8).unwrap_err();
    assert_eq!(err.code, Code::PROTOCOL_VIOLATION);
}

#[test]
fn bad_input_header_invalid_values() {
    // A v1 long header with a 21-byte connection ID is dropped (RFC9000-293).
    let mut long_cid = vec![0xc0, 0, 0, 0, 1, 21];
    long_cid.extend_from_slice(&[0; 21]);
    long_cid.extend_from_slice(&[0, 0, 0x01, 0]);
    assert_eq!(
        parse_packet(&long_cid, 0).unwrap_err().code,
        Code::PROTOCOL_VIOLATION
    );
    // ...while an unknown version's long connection IDs are read, to answer with Version
    // Negotiation (RFC9000-294).
    long_cid[1..5].copy_from_slice(&0x1a2a_3a4a_u32.to_be_bytes());
    let Ok(Packet::UnsupportedVersion { version, dcid, .. }) = parse_packet(&long_cid, 0) else {
        panic!("unsupported version not reported");
    };
    assert!(version.is_reserved());
    assert_eq!(dcid.len(), 21);
    // Version Negotiation with a version list that is not a multiple of 4, or empty.
    for list in [&[0u8, 0, 0, 1, 0][..], &[]] {
        let mut vn = vec![0x80, 0, 0, 0, 0, 0, 0];
        vn.extend_from_slice(list);
        assert_eq!(
            parse_packet(&vn, 0).unwrap_err().code,
            Code::PROTOCOL_VIOLATION
        );
    }
    // A Retry shorter than its integrity tag.
    let mut retry = vec![0xf0, 0, 0, 0, 1, 0, 0];
    retry.extend_from_slice(&[0; 15]);
    assert_eq!(
        parse_packet(&retry, 0).unwrap_err().code,
        Code::PROTOCOL_VIOLATION
    );
}

#[test]
fn bad_input_header_oversized_length() {
    // A Length field claiming more bytes than the datagram holds.
    let mut packet = client_initial(&[0x01; 40]);
    let len = packet.len();
    packet.truncate(len - 1);
    assert_eq!(
        parse_packet(&packet, 0).unwrap_err().code,
        Code::PROTOCOL_VIOLATION
    );
    // The maximum varint as Length.
    let mut huge = vec![0xc0, 0, 0, 0, 1, 0, 0, 0];
    huge.extend_from_slice(&[0xff; 8]);
    assert_eq!(
        parse_packet(&huge, 0).unwrap_err().code,
        Code::PROTOCOL_VIOLATION
    );
}

#[test]
fn bad_input_packet_protection() {
    let dcid = ConnectionId::from_slice(&[0x83; 8]).unwrap();
    let keys = initial_keys(Version::V1, &dcid, Side::Server).unwrap();
    let packet = client_initial(&[0x01; 40]);
    let Packet::Protected(located) = parse_packet(&packet, 0).unwrap() else {
        panic!();
    };
    // Every single-bit corruption of header or payload fails authentication or header checks.
    for byte in 0..packet.len() {
        let mut corrupt = packet.clone();
        corrupt[byte] ^= 0x10;
        let Ok(Packet::Protected(p)) = parse_packet(&corrupt, 0) else {
            continue;
        };
        let Ok(h) = unprotect_header(&mut corrupt[..p.len], p.pn_offset, &*keys.remote.header)
        else {
            continue;
        };
        let err = decrypt_payload(&mut corrupt[..p.len], h.header_len, 0, &*keys.remote.packet)
            .unwrap_err();
        assert_eq!(err.code, Code::PROTOCOL_VIOLATION, "corrupt byte {byte}");
    }
    // A packet too short for a header protection sample (RFC9001-037).
    let mut short = packet[..located.pn_offset + 4 + 15].to_vec();
    let err = unprotect_header(&mut short, located.pn_offset, &*keys.remote.header).unwrap_err();
    assert_eq!(err.code, Code::PROTOCOL_VIOLATION);
    // The sender refuses to protect a payload too short to sample.
    let mut tiny = vec![0x40, 0x00, 0x01];
    tiny.extend_from_slice(&[0; 16]);
    assert!(protect(&mut tiny, 1, 0, &*keys.local.header, &*keys.local.packet).is_err());
}

#[test]
fn bad_input_stateless_reset() {
    let key = StatelessResetKey::new(&[7; 32]);
    let cid = ConnectionId::from_slice(&[1; 8]).unwrap();
    let token = key.token(&cid);
    assert_eq!(token, key.token(&cid), "derivation is deterministic");
    assert_ne!(
        token,
        key.token(&ConnectionId::from_slice(&[2; 8]).unwrap())
    );
    assert_ne!(token, StatelessResetKey::new(&[8; 32]).token(&cid));

    let mut reset = vec![0xaa; 30];
    encode_stateless_reset(&token, &mut reset);
    assert_eq!(reset[0] & 0xc0, 0x40, "short header form, fixed bit set");
    assert!(token.matches_datagram(&reset));
    // Too short to be a reset, even when it ends in the token (RFC9000-194).
    assert!(!token.matches_datagram(&reset[reset.len() - MIN_STATELESS_RESET_LEN + 1..]));
    reset[29] ^= 1;
    assert!(!token.matches_datagram(&reset));

    // RFC9000-206/192/193: always shorter than the trigger, one byte shorter up to 43 bytes.
    assert_eq!(stateless_reset_len(21), None);
    assert_eq!(stateless_reset_len(22), Some(21));
    assert_eq!(stateless_reset_len(43), Some(42));
    assert_eq!(stateless_reset_len(1200), Some(42));
    assert_eq!(stateless_reset_len(0), None);
}
