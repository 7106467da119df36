//! Loss recovery and congestion control under random loss on fast paths (RFC 9002): bulk
//! transfers keep moving where the window used to collapse into a probe timeout per round
//! trip.

mod common;

use std::time::Duration;

use common::*;
use qstream_proto::TransportConfig;
use qstream_proto::sim::LinkConfig;

/// A loopback-like path: `one_way` each way, `loss` of the datagrams each way, no bandwidth
/// limit, so that a flight arrives at once and is acknowledged once, as by a receiver that
/// reads its socket in batches.
fn fast_lossy_link(one_way: Duration, loss: f64) -> LinkConfig {
    LinkConfig {
        delay: one_way,
        loss,
        ..LinkConfig::default()
    }
}

/// 2 MiB from client to server with the default configuration; the virtual time it took.
fn transfer_time(seed: u64, link: LinkConfig) -> Duration {
    let mut pair = Pair::new(PairOptions {
        seed,
        link,
        ..PairOptions::default()
    });
    assert!(
        pair.drive_handshake(Duration::from_secs(60)),
        "seed {seed}: no handshake"
    );
    bulk_transfer(&mut pair, 2 << 20, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("seed {seed}: 2 MiB not moved in 60 s"))
}

#[test]
fn loss_bulk_keeps_moving_at_300us_rtt_and_10_percent_loss() {
    // Halving on every loss, with the growth of the Reno-friendly estimate counted per
    // acknowledgment, this took 4.5-5.7 s: the window stayed at one or two datagrams and
    // every lost acknowledgment cost a 25 ms probe timeout.
    for seed in seeds(3) {
        let took = transfer_time(seed, fast_lossy_link(Duration::from_micros(150), 0.1));
        assert!(took < Duration::from_millis(1500), "seed {seed}: {took:?}");
    }
}

#[test]
fn loss_bulk_keeps_moving_at_50us_rtt_and_20_percent_loss() {
    // 17-20 s before.
    for seed in seeds(3) {
        let took = transfer_time(seed, fast_lossy_link(Duration::from_micros(25), 0.2));
        assert!(took < Duration::from_secs(4), "seed {seed}: {took:?}");
    }
}

#[test]
fn loss_a_lone_packet_is_acknowledged_within_a_quarter_rtt_or_a_millisecond() {
    // RFC 9000 §13.2.1 bounds the delay of an acknowledgment by max_ack_delay (25 ms) and
    // lets it come sooner. On a 300 µs path a sender with one packet left in its window
    // waited the whole 25 ms, 80 round trips, for each acknowledgment.
    let mut pair = Pair::new(PairOptions {
        link: fast_lossy_link(Duration::from_micros(150), 0.0),
        client_transport: TransportConfig {
            keep_alive_interval: Some(Duration::from_millis(10)),
            ..TransportConfig::default()
        },
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    pair.run_until(Duration::from_secs(1), |_| false);
    let rtt = *pair.client_conn().unwrap().rtt();
    assert_eq!(rtt.min(), Duration::from_micros(300));
    // The timer granularity (RFC 9002 §6.1.2, kGranularity) is the floor.
    assert_eq!(rtt.latest(), Duration::from_micros(1300), "{rtt:?}");
}

/// The time from the first packets the client sends into a silenced path (every datagram of
/// the server lost) to the next, its first probe, over a 300 µs path; `server_transport`
/// configures the server.
fn first_probe_after_silence(server_transport: TransportConfig) -> Duration {
    let mut pair = Pair::new(PairOptions {
        link: fast_lossy_link(Duration::from_micros(150), 0.0),
        client_transport: TransportConfig {
            keep_alive_interval: Some(Duration::from_millis(50)),
            ..TransportConfig::default()
        },
        server_transport,
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    pair.run_until(Duration::from_millis(500), |_| false);
    let sent = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let clock = std::rc::Rc::new(std::cell::Cell::new(pair.sim.now()));
    let (times, now) = (sent.clone(), clock.clone());
    pair.sim.set_filter(Some(Box::new(move |from, _, _| {
        if from == client_addr() {
            times.borrow_mut().push(now.get());
        }
        from != server_addr()
    })));
    let before = pair.client_conn().unwrap().stats().pto_count;
    pair.run_until(Duration::from_millis(100), |p| {
        clock.set(p.sim.now());
        false
    });
    assert!(pair.client_conn().unwrap().stats().pto_count > before);
    // Datagrams that leave together (an acknowledgment and a ping) are one sending.
    let mut sent = sent.borrow().clone();
    sent.dedup();
    assert!(sent.len() >= 2, "{sent:?}");
    sent[1] - sent[0]
}

#[test]
fn loss_a_probe_timeout_on_a_fast_path_does_not_wait_for_the_peers_max_ack_delay() {
    // Both sides advertise max_ack_delay 25 ms, and RFC 9002 §6.2.1 adds it to every probe
    // timeout. With the ACK frequency extension the client asks the server to acknowledge
    // within a quarter of the RTT (at least 1 ms), and its probe timeout shrinks with that:
    // on a 300 µs path a lost acknowledgment costs about 2 ms, not 26.
    let probe_after = first_probe_after_silence(TransportConfig::default());
    assert!(
        probe_after < Duration::from_millis(4),
        "the first probe came {probe_after:?} after the unanswered packet"
    );
}

#[test]
fn loss_without_the_ack_frequency_extension_the_probe_timeout_waits_for_max_ack_delay() {
    // The same with the extension off on the server: it advertises no min_ack_delay, so
    // nothing may be asked of it, and the client's probe timeout allows for its 25 ms.
    let probe_after = first_probe_after_silence(TransportConfig {
        ack_frequency: false,
        ..TransportConfig::default()
    });
    assert!(
        probe_after > Duration::from_millis(25),
        "the first probe came {probe_after:?} after the unanswered packet"
    );
}
