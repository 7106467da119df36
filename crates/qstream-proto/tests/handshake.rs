//! Handshakes in the simulator: with and without loss, QUIC v1 and v2, and clean failures.

mod common;

use std::time::Duration;

use common::*;
use qstream_proto::sim::LinkConfig;
use qstream_proto::wire::Version;
use qstream_proto::{ConnectionError, TransportErrorCode};

fn lossy(loss: f64) -> LinkConfig {
    LinkConfig {
        loss,
        ..LinkConfig::default()
    }
}

#[test]
fn handshake_completes_without_loss() {
    let mut pair = Pair::new(PairOptions::default());
    let start = pair.sim.now();
    assert!(
        pair.drive_handshake(Duration::from_secs(5)),
        "seed {}",
        pair.sim.seed()
    );
    // 10 ms each way: the client completes after one round trip (20 ms) and is confirmed by
    // HANDSHAKE_DONE, which the server sends on the client's Finished (another round trip).
    let elapsed = pair.sim.now() - start;
    assert_eq!(
        elapsed,
        Duration::from_millis(40),
        "handshake took {elapsed:?}"
    );
    let client = pair.client_conn().unwrap();
    assert_eq!(client.alpn_protocol(), Some(ALPN));
    assert!(client.rtt().has_sample());
    assert_eq!(client.rtt().smoothed(), Duration::from_millis(20));
    assert_eq!(client.stats().packets_lost, 0);
    let server = pair.server_conn().unwrap();
    assert!(server.is_handshake_confirmed());
    assert!(server.peer_transport_parameters().is_some());
}

#[test]
fn handshake_completes_with_v2() {
    let mut pair = Pair::new(PairOptions {
        version: Version::V2,
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    assert_eq!(pair.server_conn().unwrap().version(), Version::V2);
}

fn handshake_under_loss(loss: f64, seeds: u64) {
    for seed in common::seeds(seeds) {
        for (version, retry) in [
            (Version::V1, false),
            (Version::V2, false),
            (Version::V1, true),
        ] {
            let mut pair = Pair::new(PairOptions {
                seed,
                link: lossy(loss),
                version,
                retry,
                ..PairOptions::default()
            });
            let done = pair.drive_handshake(Duration::from_secs(60));
            assert!(
                done,
                "seed {seed} ({version:?}, retry {retry}, {loss} loss): no handshake; {:?} / {:?}",
                pair.client_events, pair.server_events
            );
            assert!(
                Pair::closed_event(&pair.client_events).is_none(),
                "seed {seed}"
            );
        }
    }
}

#[test]
fn handshake_completes_with_retry() {
    for version in [Version::V1, Version::V2] {
        let mut pair = Pair::new(PairOptions {
            retry: true,
            version,
            ..PairOptions::default()
        });
        let start = pair.sim.now();
        assert!(pair.drive_handshake(Duration::from_secs(5)), "{version:?}");
        // The Retry costs one extra round trip.
        assert_eq!(pair.sim.now() - start, Duration::from_millis(60));
        let params = pair
            .client_conn()
            .unwrap()
            .peer_transport_parameters()
            .unwrap();
        assert!(params.retry_source_connection_id.is_some());
    }
}

#[test]
fn handshake_completes_with_10_percent_loss() {
    handshake_under_loss(0.10, 50);
}

#[test]
fn handshake_completes_with_30_percent_loss() {
    handshake_under_loss(0.30, 50);
}

#[test]
fn handshake_fails_cleanly_with_untrusted_certificate() {
    let mut pair = Pair::new(PairOptions {
        untrusted: true,
        ..PairOptions::default()
    });
    assert!(pair.run_until(Duration::from_secs(5), |p| {
        Pair::closed_event(&p.client_events).is_some()
            && Pair::closed_event(&p.server_events).is_some()
    }));
    // The client rejects the certificate with a certificate alert (RFC 8446 §6.2: which one is
    // rustls's choice; for a self-signed certificate it reports decrypt_error), carried as
    // CRYPTO_ERROR 0x1XX (RFC 9001 §4.8); the server sees the same code.
    let client_error = Pair::closed_event(&pair.client_events).unwrap();
    assert!(
        matches!(client_error, ConnectionError::TransportError(_)),
        "{client_error}"
    );
    let alert = client_error.tls_alert().expect("a TLS alert");
    const BAD_CERTIFICATE: u8 = 42;
    const UNKNOWN_CA: u8 = 48;
    const DECRYPT_ERROR: u8 = 51;
    assert!(
        [BAD_CERTIFICATE, UNKNOWN_CA, DECRYPT_ERROR].contains(&alert),
        "{client_error}"
    );
    let server_error = Pair::closed_event(&pair.server_events).unwrap();
    let ConnectionError::ConnectionClosed(error) = server_error else {
        panic!("server saw {server_error}");
    };
    assert_eq!(error.code, TransportErrorCode::crypto(alert));
    assert!(!pair.client_connected());
}

#[test]
fn handshake_fails_cleanly_with_alpn_mismatch() {
    let mut pair = Pair::new(PairOptions {
        server_alpn: b"something-else",
        ..PairOptions::default()
    });
    assert!(pair.run_until(Duration::from_secs(5), |p| {
        Pair::closed_event(&p.client_events).is_some()
            && Pair::closed_event(&p.server_events).is_some()
    }));
    // The server refuses with no_application_protocol, alert 120 (RFC 9001 §8.1).
    let server_error = Pair::closed_event(&pair.server_events).unwrap();
    assert_eq!(server_error.tls_alert(), Some(120), "{server_error}");
    let client_error = Pair::closed_event(&pair.client_events).unwrap();
    let ConnectionError::ConnectionClosed(error) = client_error else {
        panic!("client saw {client_error}");
    };
    assert_eq!(error.code, TransportErrorCode::crypto(120));
}

#[test]
fn handshake_then_both_sides_issue_connection_ids() {
    let mut pair = Pair::new(PairOptions::default());
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    pair.run_until(Duration::from_millis(200), |_| false);
    // Both advertise active_connection_id_limit 4: each issues three more IDs with
    // NEW_CONNECTION_ID (RFC 9000 §5.1.1), and holds the peer's four.
    for side in [CLIENT, SERVER] {
        let conn = if side == CLIENT {
            pair.client_conn().unwrap()
        } else {
            pair.server_conn().unwrap()
        };
        assert_eq!(conn.active_local_cids(), 4, "side {side}");
        assert_eq!(conn.active_remote_cids(), 4, "side {side}");
        assert!(conn.close_reason().is_none());
    }
}

#[test]
fn handshake_new_token_skips_retry_on_the_next_connection() {
    let mut pair = Pair::new(PairOptions {
        retry: true,
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    // Let the NEW_TOKEN frame arrive.
    pair.run_until(Duration::from_millis(100), |_| false);
    let now = pair.sim.now();
    let config = pair.client_config.clone();
    let second = pair
        .sim
        .endpoint(CLIENT)
        .connect(now, &config, server_addr(), "localhost")
        .unwrap();
    let start = pair.sim.now();
    assert!(pair.run_until(Duration::from_secs(5), |p| {
        p.sim
            .endpoint(CLIENT)
            .connection(second)
            .is_some_and(|c| c.is_handshake_confirmed())
    }));
    // No Retry round trip this time: 40 ms, as without Retry.
    assert_eq!(pair.sim.now() - start, Duration::from_millis(40));
    let params = pair.sim.endpoint(CLIENT).connection(second).unwrap();
    assert!(
        params
            .peer_transport_parameters()
            .unwrap()
            .retry_source_connection_id
            .is_none()
    );
}

#[test]
fn handshake_frame_counts_agree_on_both_sides() {
    use qstream_proto::wire::FrameType;
    let mut pair = Pair::new(PairOptions::default());
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    pair.run_until(Duration::from_millis(200), |_| false);
    let client = pair.client_conn().unwrap().stats();
    let server = pair.server_conn().unwrap().stats();
    // No loss: what one side sent, the other received.
    for ty in [
        FrameType::CRYPTO,
        FrameType::HANDSHAKE_DONE,
        FrameType::NEW_CONNECTION_ID,
        FrameType::NEW_TOKEN,
    ] {
        assert_eq!(
            server.frames_sent.get(ty),
            client.frames_received.get(ty),
            "{ty:?}"
        );
        assert_eq!(
            client.frames_sent.get(ty),
            server.frames_received.get(ty),
            "{ty:?}"
        );
    }
    assert_eq!(server.frames_sent.get(FrameType::HANDSHAKE_DONE), 1);
    assert!(
        client.frames_sent.get(FrameType::CRYPTO) >= 2,
        "ClientHello and Finished"
    );
    // With ECN in use, ACKs carry ECN counts (type 0x03).
    let acks = server.frames_sent.get(FrameType::ACK) + server.frames_sent.get(FrameType::ACK_ECN);
    assert!(acks > 0);
}

/// The packet types of each coalesced packet in a datagram.
fn packet_types(datagram: &[u8]) -> Vec<qstream_proto::wire::PacketType> {
    use qstream_proto::wire::{CoalescedPackets, Packet};
    CoalescedPackets::new(datagram, 8)
        .filter_map(|p| match p {
            Ok((_, Packet::Protected(packet))) => Some(packet.ty),
            _ => None,
        })
        .collect()
}

#[test]
fn handshake_a_lost_server_initial_is_repaired_before_the_probe_timeout() {
    // The server's first flight spans several datagrams; the first, with its Initial
    // (ServerHello), is lost. The client then receives Handshake packets it has no keys for:
    // RFC 9002 §6.2.3 lets it send its Initial again at once, and the server, seeing that
    // CRYPTO data a second time, sends its unacknowledged Initial data without waiting for
    // its probe timeout (about a second before any RTT sample).
    let mut pair = Pair::new(PairOptions {
        extra_names: 100,
        ..PairOptions::default()
    });
    let mut dropped = false;
    pair.sim.set_filter(Some(Box::new(move |from, _, data| {
        let first = from == server_addr() && !dropped;
        if first {
            dropped = true;
            assert!(packet_types(data).contains(&qstream_proto::wire::PacketType::Initial));
        }
        !first
    })));
    let start = pair.sim.now();
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    let elapsed = pair.sim.now() - start;
    // Without the loss: confirmed after two round trips of 20 ms. One more round trip for
    // the client's repeated Initial and the server's answer.
    assert!(elapsed < Duration::from_millis(150), "{elapsed:?}");
    assert_eq!(pair.server_conn().unwrap().stats().pto_count, 0);
}

#[test]
fn handshake_probes_carry_every_space_with_data_in_flight() {
    // Nothing the server sends arrives for the first 1.5 s, so its Initial and Handshake
    // packets stay in flight through probe timeouts. RFC9002-031: each probe datagram
    // carries both, coalesced, since the client may have keys for only one of them; probes
    // of the Initial space alone spent the anti-amplification allowance without ever
    // repeating the Handshake data.
    let mut pair = Pair::new(PairOptions::default());
    let started = pair.sim.now();
    let clock = std::rc::Rc::new(std::cell::Cell::new(started));
    let seen = clock.clone();
    let probes = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let recorded = probes.clone();
    pair.sim.set_filter(Some(Box::new(move |from, _, data| {
        if from != server_addr() {
            return true;
        }
        let elapsed = seen.get() - started;
        // A probe is ack-eliciting, so a server pads its datagram to 1200 bytes (RFC 9000
        // §14.1); a lone acknowledgment of the client's own probe is not one.
        if elapsed > Duration::from_millis(100) && data.len() >= 1200 {
            recorded.borrow_mut().push(packet_types(data));
        }
        elapsed > Duration::from_millis(1500)
    })));
    assert!(pair.run_until(Duration::from_secs(10), |p| {
        clock.set(p.sim.now());
        p.client_connected() && p.server_connected()
    }));
    let probes = probes.borrow();
    let with_initial: Vec<_> = probes
        .iter()
        .filter(|types| types.contains(&qstream_proto::wire::PacketType::Initial))
        .collect();
    assert!(!with_initial.is_empty(), "no probe: {probes:?}");
    for types in with_initial {
        assert!(
            types.contains(&qstream_proto::wire::PacketType::Handshake),
            "a probe without the Handshake space: {probes:?}"
        );
    }
}
