//! Path MTU discovery (RFC 9000 §14.3) in the simulator.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use qstream_proto::sim::LinkConfig;
use qstream_proto::wire::Dir;

fn link_with_mtu(mtu: usize) -> LinkConfig {
    LinkConfig {
        mtu,
        ..LinkConfig::default()
    }
}

/// RFC9000-275: DPLPMTUD raises the datagram size to the configured maximum (1452) when the
/// path carries it, on both sides, and data then travels in datagrams up to that size.
#[test]
fn mtu_discovery_reaches_the_configured_maximum_on_a_wide_path() {
    let mut pair = Pair::new(PairOptions {
        link: link_with_mtu(1500),
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    assert!(pair.run_until(Duration::from_secs(2), |p| {
        p.client_conn().unwrap().path_mtu() == 1452 && p.server_conn().unwrap().path_mtu() == 1452
    }));
    let largest = Rc::new(Cell::new(0));
    let seen = largest.clone();
    pair.sim.set_filter(Some(Box::new(move |from, _, data| {
        if from == client_addr() {
            seen.set(seen.get().max(data.len()));
        }
        true
    })));
    let now = pair.sim.now();
    let client = pair.client_conn().unwrap();
    let id = client.open(now, Dir::Uni).unwrap();
    client.write(id, &pattern(1, 100_000)).unwrap();
    client.finish(id).unwrap();
    pair.run_until(Duration::from_secs(2), |_| false);
    // Stream frames fill the datagram up to the room their worst-case header needs.
    assert!(
        (1420..=1452).contains(&largest.get()),
        "largest datagram {}",
        largest.get()
    );
}

/// RFC9000-277, RFC9000-287: on a path narrower than the maximum the search settles just
/// below it, nothing else is sent larger than what was validated, and lost probes cause no
/// congestion response.
#[test]
fn mtu_discovery_settles_below_a_narrow_path_without_congestion_response() {
    for path in [1200, 1333, 1400] {
        let mut pair = Pair::new(PairOptions {
            link: link_with_mtu(path),
            ..PairOptions::default()
        });
        assert!(pair.drive_handshake(Duration::from_secs(5)));
        pair.run_until(Duration::from_secs(10), |_| false);
        let client = pair.client_conn().unwrap();
        let found = usize::from(client.path_mtu());
        // RFC 9002 §7.2, RFC9002-038: the initial window follows the datagram size found; no
        // lost probe reduced it.
        let window = (10 * found as u64).min(14_720u64.max(2 * found as u64));
        assert!(
            found <= path && path - found <= 16,
            "path {path}: found {found}"
        );
        assert!(
            client.stats().packets_lost > 0,
            "path {path}: no probe was lost"
        );
        assert_eq!(
            client.congestion_window(),
            window,
            "path {path}: a lost probe moved the window"
        );
        assert!(client.close_reason().is_none(), "path {path}: {client:?}");
    }
}
