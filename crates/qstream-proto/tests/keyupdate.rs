//! Key updates (RFC 9001 §6) on a long-lived connection.

mod common;

use std::time::Duration;

use common::*;
use qstream_proto::TransportConfig;
use qstream_proto::sim::LinkConfig;

fn updating_every(packets: u64) -> TransportConfig {
    TransportConfig {
        keep_alive_interval: Some(Duration::from_millis(5)),
        key_update_interval: Some(packets),
        ..TransportConfig::default()
    }
}

#[test]
fn keyupdate_several_initiated_by_each_side() {
    let pinging = || TransportConfig {
        keep_alive_interval: Some(Duration::from_millis(5)),
        ..TransportConfig::default()
    };
    let mut pair = Pair::new(PairOptions {
        client_transport: pinging(),
        server_transport: pinging(),
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    pair.run_until(Duration::from_millis(200), |_| false);
    for round in 0..4 {
        assert!(
            pair.client_conn().unwrap().initiate_key_update(),
            "client, round {round}"
        );
        pair.run_until(Duration::from_millis(300), |_| false);
        assert!(
            pair.server_conn().unwrap().initiate_key_update(),
            "server, round {round}"
        );
        pair.run_until(Duration::from_millis(300), |_| false);
    }
    let client = pair.client_conn().unwrap().stats();
    let server = pair.server_conn().unwrap().stats();
    assert!(pair.client_conn().unwrap().close_reason().is_none());
    assert_eq!(
        (client.key_updates_initiated, server.key_updates_initiated),
        (4, 4)
    );
    // Every update, from either side, was followed by the other.
    assert_eq!((client.key_updates, server.key_updates), (8, 8));
    assert_eq!(client.packets_dropped + server.packets_dropped, 0);
    assert_eq!(
        client.packets_lost + server.packets_lost,
        0,
        "{client:?} {server:?}"
    );
}

#[test]
fn keyupdate_interval_starts_updates() {
    let mut pair = Pair::new(PairOptions {
        client_transport: updating_every(60),
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    pair.run_until(Duration::from_secs(3), |_| false);
    let client = pair.client_conn().unwrap().stats();
    // Pings every 5 ms: 600 packets in 3 s, an update every 60 of them.
    assert!(client.key_updates_initiated >= 8, "{client:?}");
    assert_eq!(
        pair.server_conn().unwrap().stats().key_updates,
        client.key_updates
    );
}

#[test]
fn keyupdate_reordered_packets_across_a_phase_change_still_decrypt() {
    for seed in seeds(5) {
        let mut pair = Pair::new(PairOptions {
            seed,
            link: LinkConfig {
                reorder: 0.3,
                reorder_delay: Duration::from_millis(15),
                ..LinkConfig::default()
            },
            client_transport: updating_every(40),
            server_transport: TransportConfig {
                keep_alive_interval: Some(Duration::from_millis(3)),
                ..TransportConfig::default()
            },
            ..PairOptions::default()
        });
        assert!(pair.drive_handshake(Duration::from_secs(5)));
        pair.run_until(Duration::from_secs(5), |_| false);
        let client = pair.client_conn().unwrap().stats();
        let server = pair.server_conn().unwrap().stats();
        assert!(client.key_updates >= 5, "seed {seed}: {client:?}");
        assert!(pair.sim.stats().reordered > 100);
        assert!(
            pair.server_conn().unwrap().close_reason().is_none(),
            "seed {seed}"
        );
        // Packets of the old phase that arrive after the new one still open with the previous
        // key: none is dropped.
        assert_eq!(server.packets_dropped, 0, "seed {seed}: {server:?}");
        assert_eq!(client.packets_dropped, 0, "seed {seed}: {client:?}");
    }
}
