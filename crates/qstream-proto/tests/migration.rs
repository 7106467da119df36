//! What happens when the path under a connection changes (RFC 9000 §9, §14.3), in the
//! simulator.

mod common;

use std::time::Duration;

use common::*;
use qstream_proto::sim::LinkConfig;

/// RFC 8899 §4.4: a path that stops carrying the size path MTU discovery found (a route
/// change, a tunnel) would drop every full datagram for good. The sender notices that large
/// datagrams are lost while smaller ones arrive, falls back to 1200 bytes, and searches
/// again below the size that stopped passing; the transfer completes, every byte checked.
#[test]
fn migration_black_hole_mtu_falls_back_to_the_base_size() {
    for delay in [Duration::from_micros(25), Duration::from_millis(10)] {
        let mut pair = Pair::new(PairOptions {
            link: LinkConfig {
                delay,
                mtu: 1500,
                ..LinkConfig::default()
            },
            ..PairOptions::default()
        });
        assert!(pair.drive_handshake(Duration::from_secs(5)));
        assert!(bulk_transfer(&mut pair, 1 << 20, Duration::from_secs(10)).is_some());
        assert_eq!(pair.client_conn().unwrap().path_mtu(), 1452);
        // The path now drops every datagram above 1300 bytes.
        pair.sim.set_link(LinkConfig {
            delay,
            mtu: 1300,
            ..LinkConfig::default()
        });
        let took = bulk_transfer(&mut pair, 4 << 20, Duration::from_secs(30));
        let client = pair.client_conn().unwrap();
        let stats = client.stats();
        assert!(
            took.is_some(),
            "{delay:?}: stalled in the black hole: {stats:?}"
        );
        assert_eq!(stats.mtu_black_holes, 1, "{delay:?}");
        let mtu = client.path_mtu();
        assert!((1200..=1300).contains(&mtu), "{delay:?}: {mtu}");
        // The search found the new size again.
        assert!(
            pair.run_until(Duration::from_secs(5), |p| p
                .client_conn()
                .unwrap()
                .path_mtu()
                > 1280),
            "{delay:?}: the search did not resume"
        );
    }
}

/// Random loss takes large datagrams too, but large ones keep arriving in between: no black
/// hole is seen, and the size path MTU discovery found stays.
#[test]
fn migration_random_loss_is_not_taken_for_a_black_hole() {
    for seed in seeds(3) {
        let link = LinkConfig {
            delay: Duration::from_micros(150),
            loss: 0.2,
            ..LinkConfig::default()
        };
        let mut pair = Pair::new(PairOptions {
            seed,
            link,
            ..PairOptions::default()
        });
        assert!(pair.drive_handshake(Duration::from_secs(10)), "seed {seed}");
        assert!(
            bulk_transfer(&mut pair, 4 << 20, Duration::from_secs(60)).is_some(),
            "seed {seed}"
        );
        let client = pair.client_conn().unwrap();
        assert_eq!(client.stats().mtu_black_holes, 0, "seed {seed}");
        assert_eq!(client.path_mtu(), 1452, "seed {seed}");
    }
}
