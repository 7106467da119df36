//! Compatible version negotiation on the server (RFC 9368 §2.3, RFC 9369 §4.1), in front of a
//! hand-driven client: a rustls client whose first flight goes out in a QUIC v1 Initial,
//! offering v2, and which reads the server's answer with v2 keys.

mod common;

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use common::*;
use qstream_proto::crypto::{decrypt_payload, initial_keys, unprotect_header};
use qstream_proto::wire::{
    ConnectionId, Frame, Frames, Header, Packet, PacketType, TransportParameters, VarInt, Version,
    VersionInformation, parse_packet,
};
use qstream_proto::{
    ConnectionError, ConnectionHandle, Endpoint, EndpointConfig, ServerConfig, Side,
    TransportErrorCode,
};

const DCID: [u8; 16] = [0xdd; 16];

/// A server that prefers v2 and also speaks v1, with `cert`.
fn server_preferring_v2(
    cert: &rustls::pki_types::CertificateDer<'static>,
    key: &rustls::pki_types::PrivateKeyDer<'static>,
) -> Endpoint {
    let (cert, key) = (cert.clone(), key.clone_key());
    let mut config = ServerConfig::new(Arc::new(server_tls(&cert, &key, ALPN)));
    config.versions = vec![Version::V2, Version::V1];
    Endpoint::new(EndpointConfig::from_seed([9; 32]), Some(config))
}

/// The client's TLS, trusting `cert`, run with `tls_version`'s key schedule, announcing `info`.
fn client_tls_with(
    cert: &rustls::pki_types::CertificateDer<'static>,
    info: VersionInformation,
    tls_version: rustls::quic::Version,
) -> rustls::quic::ClientConnection {
    let params = TransportParameters {
        initial_source_connection_id: Some(ConnectionId::from_slice(&CLIENT_SCID).unwrap()),
        version_information: Some(info),
        ..TransportParameters::default()
    };
    let mut encoded = Vec::new();
    params.encode(&mut encoded);
    rustls::quic::ClientConnection::new(
        Arc::new(client_tls(cert, ALPN)),
        tls_version,
        "localhost".try_into().unwrap(),
        encoded,
    )
    .unwrap()
}

/// The client's first datagram: a v1 Initial carrying the ClientHello, padded to 1200 bytes.
fn first_flight(tls: &mut rustls::quic::ClientConnection) -> Vec<u8> {
    let mut hello = Vec::new();
    tls.write_hs(&mut hello);
    client_initial(&ConnectionId::from_slice(&DCID).unwrap(), |b| {
        Frame::Crypto {
            offset: VarInt::ZERO,
            data: &hello,
        }
        .encode(b)
    })
}

/// A server preferring v2, and the first flight of a client announcing `info` (its TLS run
/// with `tls_version`'s key schedule) handled by it: the server, its connection, the client's
/// TLS, and the time.
fn offer(
    info: VersionInformation,
    tls_version: rustls::quic::Version,
) -> (
    Endpoint,
    ConnectionHandle,
    rustls::quic::ClientConnection,
    Instant,
) {
    let (cert, key) = certificate();
    let mut server = server_preferring_v2(&cert, &key);
    let now = Instant::now();
    let mut tls = client_tls_with(&cert, info, tls_version);
    let first = first_flight(&mut tls);
    let handle = server
        .handle_datagram(now, client_addr(), None, BytesMut::from(&first[..]))
        .expect("a connection");
    (server, handle, tls, now)
}

/// Everything the server sends now.
fn server_datagrams(server: &mut Endpoint, now: Instant) -> Vec<Vec<u8>> {
    let mut datagrams = Vec::new();
    let mut buf = Vec::new();
    while let Some(transmit) = server.poll_transmit(now, &mut buf) {
        datagrams.push(buf[buf.len() - transmit.size..].to_vec());
        buf.clear();
    }
    datagrams
}

/// The long-header packets of `datagrams`: version, type, and the CRYPTO data each carried,
/// decrypted with the client's `initial` or `handshake` keys (none when there are no keys yet).
fn crypto_by_packet(
    datagrams: &[Vec<u8>],
    initial: &rustls::quic::Keys,
    handshake: Option<&rustls::quic::Keys>,
) -> Vec<(Version, PacketType, Vec<u8>)> {
    let mut packets = Vec::new();
    for datagram in datagrams {
        let mut at = 0;
        while at < datagram.len() {
            let Ok(Packet::Protected(packet)) = parse_packet(&datagram[at..], 8) else {
                break;
            };
            let Some(version) = packet.version else {
                break;
            };
            let mut bytes = datagram[at..at + packet.len].to_vec();
            at += packet.len;
            let keys = match packet.ty {
                PacketType::Initial => Some(initial),
                PacketType::Handshake => handshake,
                _ => None,
            };
            let Some(keys) = keys else {
                packets.push((version, packet.ty, Vec::new()));
                continue;
            };
            let header = unprotect_header(&mut bytes, packet.pn_offset, &*keys.remote.header)
                .expect("header protection");
            let pn = header.pn.decode(None);
            let payload = decrypt_payload(&mut bytes, header.header_len, pn, &*keys.remote.packet)
                .expect("the packet decrypts with keys of its version");
            let mut crypto = Vec::new();
            for frame in Frames::new(payload) {
                if let Ok(Frame::Crypto { data, .. }) = frame {
                    crypto.extend_from_slice(data);
                }
            }
            packets.push((version, packet.ty, crypto));
        }
    }
    packets
}

/// RFC 9368 §2.3, RFC9369-009/012: a server preferring v2 answers a v1 Initial that offers v2
/// entirely in v2: Initial keys of v2, TLS with v2's key schedule, and transport parameters
/// naming v2 as chosen (RFC9369-004).
#[test]
fn version_negotiation_server_switches_a_client_offering_v2_to_it() {
    // The test's client knows it will be switched, so it runs TLS with v2's key schedule from
    // the start; the bytes of its ClientHello do not depend on it.
    let (mut server, handle, mut tls, now) = offer(
        VersionInformation {
            chosen: Version::V1,
            available: vec![Version::V1, Version::V2],
        },
        rustls::quic::Version::V2,
    );
    assert_eq!(server.connection(handle).unwrap().version(), Version::V2);
    let datagrams = server_datagrams(&mut server, now);

    let initial = initial_keys(Version::V2, &DCID, Side::Client).unwrap();
    let packets = crypto_by_packet(&datagrams, &initial, None);
    assert!(
        packets
            .iter()
            .all(|(version, _, _)| *version == Version::V2),
        "every long header is v2: {:?}",
        packets.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>()
    );
    let server_hello: Vec<u8> = packets
        .iter()
        .filter(|p| p.1 == PacketType::Initial)
        .flat_map(|p| p.2.iter().copied())
        .collect();
    tls.read_hs(&server_hello).expect("the ServerHello");
    let Some(rustls::quic::KeyChange::Handshake { keys }) = tls.write_hs(&mut Vec::new()) else {
        panic!("no handshake keys");
    };
    // The server's Handshake packets open with v2 handshake keys, and carry its parameters.
    let handshake: Vec<u8> = crypto_by_packet(&datagrams, &initial, Some(&keys))
        .into_iter()
        .filter(|p| p.1 == PacketType::Handshake)
        .flat_map(|p| p.2)
        .collect();
    tls.read_hs(&handshake)
        .expect("EncryptedExtensions, certificate and Finished under v2 handshake keys");
    let params = TransportParameters::decode(
        tls.quic_transport_parameters().expect("server parameters"),
        Side::Server,
    )
    .unwrap();
    let info = params.version_information.expect("version_information");
    assert_eq!(info.chosen, Version::V2);
    assert_eq!(info.available, vec![Version::V2, Version::V1]);

    // The server's Finished verified, the client answers with its own in a v2 Handshake
    // packet, and the server completes the handshake in v2.
    let mut finished = Vec::new();
    let Some(rustls::quic::KeyChange::OneRtt { .. }) = tls.write_hs(&mut finished) else {
        panic!("no 1-RTT keys after the server's Finished");
    };
    let mut payload = Vec::new();
    Frame::Crypto {
        offset: VarInt::ZERO,
        data: &finished,
    }
    .encode(&mut payload);
    let header = Header::Handshake {
        version: Version::V2,
        dcid: server.connection(handle).unwrap().local_cid(),
        scid: ConnectionId::from_slice(&CLIENT_SCID).unwrap(),
    };
    let packet = protected_packet(&header, 0, None, &payload, &keys);
    server.handle_datagram(now, client_addr(), None, BytesMut::from(&packet[..]));
    let connection = server.connection(handle).unwrap();
    assert!(
        connection.is_established(),
        "{:?}",
        connection.close_reason()
    );
    assert_eq!(connection.version(), Version::V2);
}

/// A client that offers only v1 stays in v1, whatever the server prefers (RFC9368-008).
#[test]
fn version_negotiation_server_keeps_v1_for_a_client_offering_only_v1() {
    let (mut server, handle, _tls, now) = offer(
        VersionInformation {
            chosen: Version::V1,
            available: vec![Version::V1],
        },
        rustls::quic::Version::V1,
    );
    assert_eq!(server.connection(handle).unwrap().version(), Version::V1);
    let datagrams = server_datagrams(&mut server, now);
    let initial = initial_keys(Version::V1, &DCID, Side::Client).unwrap();
    let packets = crypto_by_packet(&datagrams, &initial, None);
    assert!(
        packets
            .iter()
            .all(|(version, _, _)| *version == Version::V1)
    );
    assert!(
        packets
            .iter()
            .any(|(_, ty, crypto)| *ty == PacketType::Initial && !crypto.is_empty())
    );
}

/// RFC9368-024/025: a client whose Chosen Version is not the version its Initial used is
/// closed with VERSION_NEGOTIATION_ERROR.
#[test]
fn version_negotiation_chosen_version_must_match_the_initial() {
    let (server, handle, _tls, _) = offer(
        VersionInformation {
            chosen: Version::V2,
            available: vec![Version::V2],
        },
        rustls::quic::Version::V2,
    );
    let Some(ConnectionError::TransportError(error)) =
        server.connection(handle).unwrap().close_reason().cloned()
    else {
        panic!("not closed");
    };
    assert_eq!(error.code, TransportErrorCode::VERSION_NEGOTIATION_ERROR);
}

/// Both sides of qstream: a client starting in v1 and offering v2, a server preferring v2.
fn switching_pair(seed: u64, link: qstream_proto::sim::LinkConfig) -> Pair {
    Pair::new(PairOptions {
        seed,
        link,
        client_compatible_versions: vec![Version::V2],
        server_versions: vec![Version::V2, Version::V1],
        client_transport: qstream_proto::TransportConfig {
            key_update_interval: Some(40),
            ..qstream_proto::TransportConfig::default()
        },
        ..PairOptions::default()
    })
}

/// RFC 9368 §2.3, RFC 9369 §4.1: the qstream client follows the server to v2 during the
/// handshake (its Handshake and 1-RTT keys derived for v2 from the TLS secrets), data flows
/// both ways, and key updates work in v2's key schedule.
#[test]
fn version_negotiation_client_and_server_switch_to_v2_and_transfer() {
    for seed in seeds(3) {
        let mut pair = switching_pair(seed, qstream_proto::sim::LinkConfig::default());
        assert!(
            pair.drive_handshake(std::time::Duration::from_secs(5)),
            "seed {seed}"
        );
        assert_eq!(pair.client_conn().unwrap().version(), Version::V2);
        assert_eq!(pair.server_conn().unwrap().version(), Version::V2);
        let now = pair.sim.now();
        let data = pattern(seed, 200_000);
        let client = pair.client_conn().unwrap();
        let id = client.open(now, qstream_proto::wire::Dir::Uni).unwrap();
        client.write(id, &data).unwrap();
        client.finish(id).unwrap();
        let mut download = Download::new(qstream_proto::wire::Dir::Uni);
        assert!(
            pair.run_until(std::time::Duration::from_secs(10), |p| {
                download.pull(p.server_conn().unwrap())
            }) && download.finished(),
            "seed {seed}: {} of {} bytes",
            download.received,
            data.len()
        );
        assert!(download.body == data, "seed {seed}: corrupted");
        assert!(
            pair.client_conn().unwrap().stats().key_updates > 0,
            "seed {seed}: no key update in v2"
        );
    }
}

/// RFC 9001 §5.2, RFC 9368 §2.3: after a Retry the Initial keys of every version derive from
/// the Retry's Source Connection ID, those of the version the server switches to as well. The
/// client had derived its v2 keys from the original Destination Connection ID, so an aioquic
/// server that sent a Retry and then switched to v2 was never understood.
#[test]
fn version_negotiation_a_client_follows_the_server_to_v2_after_a_retry() {
    for seed in seeds(3) {
        let mut pair = Pair::new(PairOptions {
            seed,
            retry: true,
            client_compatible_versions: vec![Version::V2],
            server_versions: vec![Version::V2, Version::V1],
            ..PairOptions::default()
        });
        assert!(
            pair.drive_handshake(std::time::Duration::from_secs(5)),
            "seed {seed}: no handshake"
        );
        let client = pair.client_conn().unwrap();
        assert_eq!(client.version(), Version::V2, "seed {seed}");
        assert!(
            client
                .peer_transport_parameters()
                .unwrap()
                .retry_source_connection_id
                .is_some(),
            "seed {seed}: no Retry"
        );
    }
}

/// RFC 9368 §3, RFC9368-016: a client's Available Versions are in descending preference. One
/// that offers v2 prefers it, so v2 comes first: servers that take the client's order (aioquic,
/// picoquic) kept v1 when the client listed `[v1, v2]`.
#[test]
fn version_negotiation_a_client_offering_v2_lists_it_first() {
    let mut pair = switching_pair(1, qstream_proto::sim::LinkConfig::default());
    assert!(pair.drive_handshake(std::time::Duration::from_secs(5)));
    let info = pair
        .server_conn()
        .unwrap()
        .peer_transport_parameters()
        .and_then(|p| p.version_information.clone())
        .expect("the client sent version_information");
    assert_eq!(info.chosen, Version::V1);
    assert_eq!(info.available, vec![Version::V2, Version::V1]);
}

/// The switch survives loss: the client's v1 Initials are retransmitted, the server keeps
/// reading them until the client's v2 Handshake packets arrive (RFC9369-011).
#[test]
fn version_negotiation_switch_survives_loss() {
    for seed in seeds(10) {
        let link = qstream_proto::sim::LinkConfig {
            loss: 0.2,
            ..qstream_proto::sim::LinkConfig::default()
        };
        let mut pair = switching_pair(seed, link);
        assert!(
            pair.drive_handshake(std::time::Duration::from_secs(30)),
            "seed {seed}"
        );
        assert_eq!(
            pair.client_conn().unwrap().version(),
            Version::V2,
            "seed {seed}"
        );
        assert_eq!(
            pair.server_conn().unwrap().version(),
            Version::V2,
            "seed {seed}"
        );
    }
}

/// A qstream client offering v2 to a server that does not prefer it stays in v1.
#[test]
fn version_negotiation_client_offering_v2_stays_v1_with_a_v1_server() {
    let mut pair = Pair::new(PairOptions {
        client_compatible_versions: vec![Version::V2],
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(std::time::Duration::from_secs(5)));
    assert_eq!(pair.client_conn().unwrap().version(), Version::V1);
    assert_eq!(pair.server_conn().unwrap().version(), Version::V1);
}
