//! Protocol errors in received packets close the connection with the right code, and version
//! negotiation in both directions. Packets are crafted by hand with the real Initial keys.

mod common;

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use common::*;
use qstream_proto::wire::{
    ConnectionId, Frame, Packet, VarInt, Version, VersionNegotiation, parse_packet,
};
use qstream_proto::{ConnectionError, Endpoint, EndpointConfig, ServerConfig, TransportErrorCode};

fn server() -> Endpoint {
    let (cert, key) = certificate();
    let config = ServerConfig::new(Arc::new(server_tls(&cert, &key, ALPN)));
    Endpoint::new(EndpointConfig::from_seed([3; 32]), Some(config))
}

/// Feeds the datagram to a fresh server and returns why its connection closed.
fn close_reason(datagram: &[u8]) -> ConnectionError {
    let mut server = server();
    let now = Instant::now();
    let handle = server
        .handle_datagram(now, client_addr(), None, BytesMut::from(datagram))
        .expect("a connection is created");
    let connection = server.connection(handle).unwrap();
    connection
        .close_reason()
        .cloned()
        .expect("the connection closed")
}

fn assert_closed_with(datagram: &mut [u8], code: TransportErrorCode, frame_type: Option<u64>) {
    let ConnectionError::TransportError(error) = close_reason(datagram) else {
        panic!("not closed by a transport error");
    };
    assert_eq!(
        (error.code, error.frame_type),
        (code, frame_type),
        "{error}"
    );
}

fn dcid() -> ConnectionId {
    ConnectionId::from_slice(&[0x83; 8]).unwrap()
}

#[test]
fn protocol_error_frame_not_permitted_in_initial() {
    // HANDSHAKE_DONE may only travel in 1-RTT packets (RFC 9000 §12.4, RFC9000-227).
    let mut datagram = client_initial(&dcid(), |b| Frame::HandshakeDone.encode(b));
    assert_closed_with(
        &mut datagram,
        TransportErrorCode::PROTOCOL_VIOLATION,
        Some(0x1e),
    );
    // So may STREAM frames.
    let mut datagram = client_initial(&dcid(), |b| {
        Frame::Stream(qstream_proto::wire::Stream {
            id: VarInt::from_u32(0).into(),
            offset: VarInt::ZERO,
            fin: false,
            data: b"x",
        })
        .encode(b)
    });
    assert_closed_with(
        &mut datagram,
        TransportErrorCode::PROTOCOL_VIOLATION,
        Some(0x0a),
    );
}

#[test]
fn protocol_error_unknown_frame() {
    // RFC9000-228: FRAME_ENCODING_ERROR.
    let mut datagram = client_initial(&dcid(), |b| b.push(0x21));
    assert_closed_with(
        &mut datagram,
        TransportErrorCode::FRAME_ENCODING_ERROR,
        Some(0x21),
    );
}

#[test]
fn protocol_error_crypto_beyond_the_buffer() {
    // CRYPTO data far beyond what TLS consumed (RFC 9000 §7.5).
    let mut datagram = client_initial(&dcid(), |b| {
        Frame::Crypto {
            offset: VarInt::from_u32(1_000_000),
            data: b"hello",
        }
        .encode(b)
    });
    assert_closed_with(
        &mut datagram,
        TransportErrorCode::CRYPTO_BUFFER_EXCEEDED,
        None,
    );
}

#[test]
fn protocol_error_ack_of_a_packet_never_sent() {
    // RFC 9000 §13.1: the server never sent packet 5.
    let mut datagram = client_initial(&dcid(), |b| {
        qstream_proto::wire::Ack::encode([5..=5].into_iter(), VarInt::ZERO, None, b)
    });
    assert_closed_with(
        &mut datagram,
        TransportErrorCode::PROTOCOL_VIOLATION,
        Some(0x02),
    );
}

#[test]
fn protocol_error_garbage_clienthello_is_a_tls_alert() {
    let datagram = client_initial(&dcid(), |b| {
        Frame::Crypto {
            offset: VarInt::ZERO,
            data: &[0x01, 0x00, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef],
        }
        .encode(b)
    });
    let error = close_reason(&datagram);
    let alert = error.tls_alert().expect("CRYPTO_ERROR with an alert");
    assert!(alert > 0, "{error}");
}

#[test]
fn protocol_error_closing_server_tells_the_client() {
    let mut server = server();
    let now = Instant::now();
    let datagram = client_initial(&dcid(), |b| b.push(0x21));
    server.handle_datagram(now, client_addr(), None, BytesMut::from(&datagram[..]));
    // The server answers with CONNECTION_CLOSE in an Initial the client can read.
    let mut buf = Vec::new();
    let transmit = server
        .poll_transmit(now, &mut buf)
        .expect("a CONNECTION_CLOSE");
    assert_eq!(transmit.destination, client_addr());
    let Ok(Packet::Protected(p)) = parse_packet(&buf[..transmit.size], 8) else {
        panic!("not a protected packet");
    };
    assert_eq!(p.ty, qstream_proto::wire::PacketType::Initial);
}

#[test]
fn handshake_version_negotiation_from_the_server() {
    let mut server = server();
    let now = Instant::now();
    // A long header of an unknown version, padded to 1200 bytes.
    let mut datagram = vec![0xc0, 0x1a, 0x2a, 0x3a, 0x4a, 8];
    datagram.extend_from_slice(&[0x11; 8]);
    datagram.push(4);
    datagram.extend_from_slice(&[0x22; 4]);
    datagram.resize(1200, 0);
    assert!(
        server
            .handle_datagram(now, client_addr(), None, BytesMut::from(&datagram[..]))
            .is_none()
    );
    let mut buf = Vec::new();
    let transmit = server
        .poll_transmit(now, &mut buf)
        .expect("Version Negotiation");
    let Ok(Packet::VersionNegotiation(vn)) = parse_packet(&buf[..transmit.size], 0) else {
        panic!("not Version Negotiation");
    };
    assert_eq!((vn.dcid, vn.scid), (&[0x22; 4][..], &[0x11; 8][..]));
    assert_eq!(
        vn.versions().collect::<Vec<_>>(),
        Version::SUPPORTED.to_vec()
    );
    // Only one per datagram, and none for a datagram below 1200 bytes (RFC 9000 §14.1).
    assert!(server.poll_transmit(now, &mut buf).is_none());
    let small = datagram[..1199].to_vec();
    server.handle_datagram(now, client_addr(), None, BytesMut::from(&small[..]));
    assert!(server.poll_transmit(now, &mut buf).is_none());
}

#[test]
fn handshake_version_negotiation_ends_the_client_attempt() {
    let (cert, _) = certificate();
    let config = qstream_proto::ClientConfig::new(Arc::new(client_tls(&cert, ALPN)));
    let mut client = Endpoint::new(EndpointConfig::from_seed([4; 32]), None);
    let now = Instant::now();
    let handle = client
        .connect(now, &config, server_addr(), "localhost")
        .unwrap();
    let mut buf = Vec::new();
    let transmit = client.poll_transmit(now, &mut buf).unwrap();
    let Ok(Packet::Protected(first)) = parse_packet(&buf[..transmit.size], 8) else {
        panic!();
    };
    // A Version Negotiation listing our own version is ignored (RFC9368-017)...
    let mut vn = Vec::new();
    VersionNegotiation::encode(&first.dcid, &first.scid, &[Version::V1], 0, &mut vn);
    client.handle_datagram(now, server_addr(), None, BytesMut::from(&vn[..]));
    assert!(client.connection(handle).unwrap().close_reason().is_none());
    // ...one that does not ends the attempt.
    let mut vn = Vec::new();
    VersionNegotiation::encode(
        &first.dcid,
        &first.scid,
        &[Version(0x1a2a_3a4a)],
        0,
        &mut vn,
    );
    client.handle_datagram(now, server_addr(), None, BytesMut::from(&vn[..]));
    assert_eq!(
        client.connection(handle).unwrap().close_reason(),
        Some(&ConnectionError::VersionMismatch)
    );
}
