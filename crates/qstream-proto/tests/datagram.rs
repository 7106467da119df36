//! Unreliable datagrams (RFC 9221).

mod common;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use qstream_proto::TransportConfig;
use qstream_proto::connection::SendDatagramError;
use qstream_proto::sim::LinkConfig;

#[test]
fn datagram_arrive_or_are_lost_but_never_corrupt_state() {
    for seed in seeds(10) {
        let mut pair = Pair::new(PairOptions {
            seed,
            link: LinkConfig {
                loss: 0.1,
                reorder: 0.2,
                duplicate: 0.05,
                ..LinkConfig::default()
            },
            ..PairOptions::default()
        });
        assert!(pair.drive_handshake(Duration::from_secs(30)), "seed {seed}");
        let mut received = HashSet::new();
        for i in 0u32..300 {
            let mut payload = i.to_be_bytes().to_vec();
            payload.extend(std::iter::repeat_n(i as u8, 100 + (i as usize % 400)));
            pair.client_conn()
                .unwrap()
                .send_datagram(Bytes::from(payload))
                .unwrap();
            pair.run_until(Duration::from_millis(2), |_| false);
            while let Some(datagram) = pair.server_conn().unwrap().recv_datagram() {
                let i = u32::from_be_bytes(datagram[..4].try_into().unwrap());
                assert_eq!(datagram.len(), 4 + 100 + (i as usize % 400), "seed {seed}");
                assert!(
                    datagram[4..].iter().all(|&b| b == i as u8),
                    "seed {seed}: corrupt"
                );
                received.insert(i);
            }
        }
        pair.run_until(Duration::from_secs(1), |_| false);
        while let Some(datagram) = pair.server_conn().unwrap().recv_datagram() {
            received.insert(u32::from_be_bytes(datagram[..4].try_into().unwrap()));
        }
        // About 10 % are lost and none is retransmitted (RFC 9221 §5.2).
        assert!(
            received.len() >= 200 && received.len() < 300,
            "seed {seed}: {}",
            received.len()
        );
        let server = pair.server_conn().unwrap().close_reason().cloned();
        assert!(server.is_none(), "seed {seed}: server closed: {server:?}");
        let client = pair.client_conn().unwrap().close_reason().cloned();
        assert!(client.is_none(), "seed {seed}: client closed: {client:?}");
    }
}

#[test]
fn datagram_too_large_is_refused_at_the_sender() {
    let mut pair = Pair::new(PairOptions {
        server_transport: TransportConfig {
            max_datagram_frame_size: Some(500),
            ..TransportConfig::default()
        },
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    let client = pair.client_conn().unwrap();
    let max = client.max_datagram_size().unwrap();
    assert!(max < 500);
    assert_eq!(
        client.send_datagram(Bytes::from(vec![0; max + 1])),
        Err(SendDatagramError::TooLarge { max })
    );
    client.send_datagram(Bytes::from(vec![7; max])).unwrap();
    assert!(pair.run_until(Duration::from_secs(1), |p| {
        p.server_conn().unwrap().recv_datagram().is_some()
    }));
}

#[test]
fn datagram_to_a_peer_without_support_is_refused() {
    let mut pair = Pair::new(PairOptions {
        server_transport: TransportConfig {
            max_datagram_frame_size: None,
            ..TransportConfig::default()
        },
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    assert_eq!(
        pair.client_conn()
            .unwrap()
            .send_datagram(Bytes::from_static(b"hi")),
        Err(SendDatagramError::UnsupportedByPeer)
    );
}
