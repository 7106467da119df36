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
