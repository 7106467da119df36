//! Loss recovery (RFC 9002) in the simulator.

mod common;

use std::time::Duration;

use common::*;
use qstream_proto::TransportConfig;
use qstream_proto::sim::LinkConfig;
use qstream_proto::wire::FrameType;

fn pinging(interval_ms: u64) -> TransportConfig {
    TransportConfig {
        keep_alive_interval: Some(Duration::from_millis(interval_ms)),
        ..TransportConfig::default()
    }
}

#[test]
fn recovery_tail_loss_is_repaired_by_a_pto_probe() {
    // No path MTU probes (the largest size is the smallest), so the server's first 1-RTT
    // datagram, carrying HANDSHAKE_DONE, is the last thing it sends: losing it is a tail loss
    // that no later acknowledgment can reveal.
    let mut pair = Pair::new(PairOptions {
        server_transport: TransportConfig {
            max_udp_payload_size: 1200,
            ..TransportConfig::default()
        },
        ..PairOptions::default()
    });
    let mut dropped = false;
    pair.sim.set_filter(Some(Box::new(move |from, _, data| {
        let short_header = data[0] & 0x80 == 0;
        if from == server_addr() && short_header && !dropped {
            dropped = true;
            return false;
        }
        true
    })));
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    let server = pair.server_conn().unwrap();
    assert!(server.stats().pto_count >= 1, "{:?}", server.stats());
    // Without the loss the client is confirmed at 40 ms; the probe follows one PTO later.
    let client = pair.client_conn().unwrap();
    assert!(client.is_handshake_confirmed());
}

#[test]
fn recovery_persistent_congestion_collapses_the_window() {
    let mut pair = Pair::new(PairOptions {
        client_transport: pinging(10),
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    pair.run_until(Duration::from_millis(500), |_| false);
    let before = pair.client_conn().unwrap().congestion_window();
    assert!(before >= 12_000, "initial window: {before}");
    // Every client packet is lost for two seconds: many PTOs, far more than three.
    pair.sim
        .set_filter(Some(Box::new(|from, _, _| from != client_addr())));
    pair.run_until(Duration::from_secs(2), |_| false);
    pair.sim.set_filter(None);
    assert!(pair.run_until(Duration::from_secs(5), |p| {
        p.client_conn().unwrap().stats().packets_lost > 0
    }));
    // RFC 9002 §7.6.2: the window collapses to the minimum, two datagrams of the size in use
    // (§7.2), which path MTU discovery raised.
    let client = pair.client_conn().unwrap();
    assert!(client.path_mtu() > 1200);
    assert_eq!(client.congestion_window(), 2 * u64::from(client.path_mtu()));
}

#[test]
fn recovery_reordering_within_the_thresholds_is_not_loss() {
    for seed in seeds(10) {
        let mut pair = Pair::new(PairOptions {
            seed,
            // RTT 100 ms. A datagram and the ACK that answers it may each be held back 6 ms:
            // 12 ms together, less than 1/8 RTT (the time threshold), and less than two ping
            // intervals (the packet threshold), so no loss may be declared (RFC 9002 §6.1).
            link: LinkConfig {
                delay: Duration::from_millis(50),
                reorder: 0.3,
                reorder_delay: Duration::from_millis(6),
                ..LinkConfig::default()
            },
            client_transport: pinging(5),
            ..PairOptions::default()
        });
        assert!(pair.drive_handshake(Duration::from_secs(5)));
        pair.run_until(Duration::from_secs(3), |_| false);
        assert!(
            pair.sim.stats().reordered > 100,
            "seed {seed}: too little reordering"
        );
        let stats = pair.client_conn().unwrap().stats();
        assert_eq!(
            stats.packets_lost, 0,
            "seed {seed}: spurious loss, {stats:?}"
        );
        assert!(stats.packets_sent > 400, "seed {seed}: {stats:?}");
    }
}

#[test]
fn recovery_rtt_estimate_converges_to_the_link() {
    for delay_ms in [5, 30, 120] {
        let mut pair = Pair::new(PairOptions {
            link: LinkConfig {
                delay: Duration::from_millis(delay_ms),
                ..LinkConfig::default()
            },
            client_transport: pinging(7),
            ..PairOptions::default()
        });
        assert!(pair.drive_handshake(Duration::from_secs(5)));
        pair.run_until(Duration::from_secs(5), |_| false);
        let rtt = *pair.client_conn().unwrap().rtt();
        let link_rtt = Duration::from_millis(2 * delay_ms);
        // The peer delays ACKs (up to 25 ms) and reports it; the estimate subtracts it.
        assert_eq!(rtt.min(), link_rtt, "{delay_ms} ms: {rtt:?}");
        let error = rtt.smoothed().abs_diff(link_rtt);
        assert!(error <= Duration::from_millis(2), "{delay_ms} ms: {rtt:?}");
    }
}

#[test]
fn recovery_ecn_ce_is_acknowledged_at_once_and_shrinks_the_window() {
    let mut pair = Pair::new(PairOptions {
        client_transport: pinging(100),
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    pair.run_until(Duration::from_secs(1), |_| false);
    // One ping per 100 ms is acknowledged after a quarter of the RTT (within max_ack_delay):
    // 20 ms + 5 ms.
    let client = pair.client_conn().unwrap();
    assert_eq!(client.rtt().latest(), Duration::from_millis(25));
    let window = client.congestion_window();
    assert!(client.ecn_sending());
    // Now every ECN-capable datagram is marked CE instead of dropped.
    pair.sim.set_link(LinkConfig {
        ce_mark: 1.0,
        ..LinkConfig::default()
    });
    pair.run_until(Duration::from_secs(1), |_| false);
    let client = pair.client_conn().unwrap();
    // RFC 9000 §13.2.1: CE-marked packets are acknowledged without delay.
    assert_eq!(client.rtt().latest(), Duration::from_millis(20));
    // RFC 9002 §7.1: a rising CE count is a congestion event, though nothing was lost.
    let stats = client.stats();
    assert!(stats.ecn_congestion_events > 0, "{stats:?}");
    assert_eq!(stats.packets_lost, 0);
    assert!(client.congestion_window() < window);
    assert!(client.ecn_sending(), "consistent counts keep ECN validated");
}

#[test]
fn recovery_ecn_stops_on_a_path_that_bleaches_it() {
    let mut pair = Pair::new(PairOptions {
        link: LinkConfig {
            ecn_bleach: true,
            ..LinkConfig::default()
        },
        client_transport: pinging(20),
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    pair.run_until(Duration::from_millis(500), |_| false);
    // RFC 9000 §13.4.2.1: ECT(0) packets acknowledged without ECN counts fail validation.
    assert!(!pair.client_conn().unwrap().ecn_sending());
    assert!(!pair.server_conn().unwrap().ecn_sending());
    assert!(pair.client_conn().unwrap().close_reason().is_none());
}

#[test]
fn recovery_probe_timeouts_do_not_multiply_control_frames() {
    // Every 1-RTT datagram of the server is lost for three seconds: its HANDSHAKE_DONE,
    // NEW_TOKEN and NEW_CONNECTION_ID frames stay unacknowledged through probe timeout after
    // probe timeout. Each probe may carry them again; copies must not pile up (they used to
    // double with each timeout: dozens of copies of one frame in a packet).
    let mut pair = Pair::new(PairOptions::default());
    let blackout = pair.sim.now() + Duration::from_secs(3);
    let clock = std::rc::Rc::new(std::cell::Cell::new(pair.sim.now()));
    let seen = clock.clone();
    pair.sim.set_filter(Some(Box::new(move |from, _, data| {
        let short_header = data[0] & 0x80 == 0;
        !(from == server_addr() && short_header && seen.get() < blackout)
    })));
    pair.run_until(Duration::from_secs(5), |p| {
        clock.set(p.sim.now());
        false
    });
    assert!(pair.client_conn().unwrap().is_handshake_confirmed());
    let server = pair.server_conn().unwrap();
    let stats = server.stats();
    assert!(stats.pto_count >= 5, "{stats:?}");
    let issued = server.active_local_cids() as u64 - 1;
    assert!(issued >= 1, "{stats:?}");
    // At most one copy per probe timeout, and the first transmission; once acknowledged,
    // none.
    let counts = stats.frames_sent;
    let new_cids = counts.get(FrameType::NEW_CONNECTION_ID);
    assert!(
        new_cids <= issued * (stats.pto_count + 1),
        "{new_cids} NEW_CONNECTION_ID frames for {issued} IDs over {} probe timeouts",
        stats.pto_count
    );
    for ty in [FrameType::HANDSHAKE_DONE, FrameType::NEW_TOKEN] {
        assert!(
            counts.get(ty) <= stats.pto_count + 1,
            "{ty:?}: {counts:?} over {} probe timeouts",
            stats.pto_count
        );
    }
    pair.run_until(Duration::from_secs(2), |_| false);
    assert_eq!(
        pair.server_conn()
            .unwrap()
            .stats()
            .frames_sent
            .get(FrameType::NEW_CONNECTION_ID),
        new_cids,
        "sent again once acknowledged"
    );
}

/// A connected pair, settled, whose client has just written `bytes` on a new stream: nothing
/// of it sent yet.
fn client_with_data_to_send(bytes: usize) -> (Pair, std::time::Instant) {
    let mut pair = Pair::new(PairOptions::default());
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    pair.run_until(Duration::from_millis(200), |_| false);
    let now = pair.sim.now();
    let client = pair.client_conn().unwrap();
    let id = client.open(now, qstream_proto::wire::Dir::Uni).unwrap();
    client.write(id, &pattern(5, bytes)).unwrap();
    (pair, now)
}

/// RFC 9002 §6.2.4: the datagrams a probe timeout sends are marked to go out alone, so the I/O
/// layer never puts two probes into one GSO batch that a single loss would take whole; the
/// datagrams of ordinary sending are not marked.
#[test]
fn recovery_probe_datagrams_are_marked_to_be_sent_alone() {
    let (mut pair, now) = client_with_data_to_send(20_000);
    // Taken from the endpoint directly: nothing reaches the server, nothing is acknowledged.
    let endpoint = pair.sim.endpoint(CLIENT);
    let mut buf = Vec::new();
    let mut first = Vec::new();
    while let Some(transmit) = endpoint.poll_transmit(now, &mut buf) {
        first.push(transmit.probe);
    }
    assert!(first.len() >= 2, "{first:?}");
    assert!(first.iter().all(|probe| !probe), "{first:?}");
    // The pacer's timers come first (what it held back goes, unmarked), then the probe timeout.
    let client = pair.client;
    let pto_count = |endpoint: &mut qstream_proto::Endpoint| {
        endpoint.connection(client).unwrap().stats().pto_count
    };
    loop {
        let endpoint = pair.sim.endpoint(CLIENT);
        let at = endpoint.poll_timeout().expect("a timer is armed");
        endpoint.handle_timeout(at);
        let fired = pto_count(endpoint) > 0;
        let mut sent = Vec::new();
        while let Some(transmit) = endpoint.poll_transmit(at, &mut buf) {
            sent.push(transmit.probe);
        }
        if fired {
            assert_eq!(
                sent[..2],
                [true, true],
                "two probe datagrams, each marked: {sent:?}"
            );
            assert!(sent[2..].iter().all(|probe| !probe), "{sent:?}");
            return;
        }
        assert!(sent.iter().all(|probe| !probe), "{sent:?}");
    }
}

/// RFC 9000 §13.2.1: a packet that arrives after a gap makes the receiver acknowledge at once,
/// and the connection says that this ACK reports a gap, so a driver sends it before handling
/// the rest of a receive batch (the sender learns of the loss a batch earlier). In-order
/// packets do not raise it, and sending the ACK clears it.
#[test]
fn recovery_an_ack_that_reports_a_gap_is_flagged_until_sent() {
    let (mut pair, now) = client_with_data_to_send(8_000);
    let mut datagrams = Vec::new();
    let endpoint = pair.sim.endpoint(CLIENT);
    let mut buf = Vec::new();
    while endpoint.poll_transmit(now, &mut buf).is_some() {
        datagrams.push(std::mem::take(&mut buf));
    }
    assert!(datagrams.len() >= 3, "{} datagrams", datagrams.len());
    let server = pair.server.unwrap();
    let feed = |pair: &mut Pair, datagram: &[u8]| {
        pair.sim.endpoint(SERVER).handle_datagram(
            now,
            client_addr(),
            None,
            bytes::BytesMut::from(datagram),
        );
    };
    let gap_report = |pair: &mut Pair| {
        pair.sim
            .endpoint(SERVER)
            .connection(server)
            .unwrap()
            .has_gap_report()
    };
    feed(&mut pair, &datagrams[0]);
    assert!(!gap_report(&mut pair), "in order");
    // The second datagram is lost: the third arrives after a gap.
    feed(&mut pair, &datagrams[2]);
    assert!(gap_report(&mut pair), "after a gap");
    let mut ack = Vec::new();
    assert!(
        pair.sim
            .endpoint(SERVER)
            .poll_transmit(now, &mut ack)
            .is_some()
    );
    assert!(!gap_report(&mut pair), "cleared once the ACK is sent");
}
