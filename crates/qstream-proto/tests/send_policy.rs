//! The send policy a driver asks the endpoint for ([`qstream_proto::transmit`]): when to send
//! before handling the rest of a receive batch. Datagrams are handed over by hand here, as a
//! driver with a batch of them would, instead of by the simulator's delivery.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::*;
use qstream_proto::sim::LinkConfig;
use qstream_proto::wire::Dir;

/// Takes every datagram `endpoint` has to send now.
fn datagrams(pair: &mut Pair, endpoint: usize) -> Vec<BytesMut> {
    let now = pair.sim.now();
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while let Some(transmit) = pair.sim.endpoint(endpoint).poll_transmit(now, &mut buf) {
        out.push(BytesMut::from(&buf[..transmit.size]));
        buf.clear();
    }
    out
}

#[test]
fn send_policy_sends_after_a_handshake_packet_before_the_rest_of_the_batch() {
    let mut pair = Pair::new(PairOptions::default());
    let initial = datagrams(&mut pair, CLIENT);
    assert!(!initial.is_empty());
    let now = pair.sim.now();
    let receipt = pair
        .sim
        .endpoint(SERVER)
        .receive(now, client_addr(), None, initial[0].clone());
    assert!(receipt.connection.is_some(), "a new connection");
    assert!(receipt.send_now, "its handshake flight goes out first");
}

#[test]
fn send_policy_sends_a_gap_report_before_the_rest_of_the_batch() {
    let mut pair = Pair::new(PairOptions::default());
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    // Let the handshake's last acknowledgments settle.
    pair.run_until(Duration::from_millis(200), |_| false);
    let now = pair.sim.now();
    let client = pair.client_conn().unwrap();
    let id = client.open(now, Dir::Uni).unwrap();
    client.write(id, &[5u8; 6000]).unwrap();
    let sent = datagrams(&mut pair, CLIENT);
    assert!(sent.len() >= 3, "{} datagrams", sent.len());
    let server = pair.sim.endpoint(SERVER);
    let first = server.receive(now, client_addr(), None, sent[0].clone());
    assert!(first.connection.is_some());
    assert!(
        !first.send_now,
        "in order: the rest of the batch is handled first"
    );
    // The second datagram is lost: the third opens a gap, which is reported at once.
    let third = server.receive(now, client_addr(), None, sent[2].clone());
    assert!(
        third.send_now,
        "the gap report goes out before the rest is handled"
    );
}

/// `count` request/response exchanges one after another on new bidirectional streams (64
/// bytes each way, every stream released at once), after ten to settle; returns the packets
/// the client and the server sent for them.
fn exchanges(link: LinkConfig, count: u64) -> (u64, u64) {
    use qstream_proto::streams::ReadOutcome;
    let mut pair = Pair::new(PairOptions {
        link,
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    let exchange = |pair: &mut Pair| {
        let now = pair.sim.now();
        let client = pair.client_conn().unwrap();
        let id = client.open(now, Dir::Bi).unwrap();
        client.write(id, &[7; 64]).unwrap();
        client.finish(id).unwrap();
        let (mut request, mut response) = (Vec::new(), Vec::new());
        let mut served = false;
        let done = pair.run_until(Duration::from_secs(5), |p| {
            let server = p.server_conn().unwrap();
            while let Some(sid) = server.accept(Dir::Bi) {
                assert_eq!(sid, id);
            }
            if !served && drain(server, id, &mut request) == Some(ReadOutcome::Finished) {
                server.write(id, &request).unwrap();
                server.finish(id).unwrap();
                server.release(id);
                served = true;
            }
            let client = p.client_conn().unwrap();
            let ended = drain(client, id, &mut response) == Some(ReadOutcome::Finished);
            if ended {
                client.release(id);
            }
            ended
        });
        assert!(done && response == [7; 64], "exchange on {id}");
    };
    for _ in 0..10 {
        exchange(&mut pair);
    }
    let sent = |pair: &mut Pair| {
        (
            pair.client_conn().unwrap().stats().packets_sent,
            pair.server_conn().unwrap().stats().packets_sent,
        )
    };
    let before = sent(&mut pair);
    for _ in 0..count {
        exchange(&mut pair);
    }
    let after = sent(&mut pair);
    (after.0 - before.0, after.1 - before.1)
}

#[test]
fn send_policy_answers_share_packets_with_acks_and_credit() {
    // Each side sends one packet per exchange: the server's answer carries its ACK and the
    // MAX_STREAMS the released stream calls for, the client's next request its ACK. The
    // application answers what arrived before anything is sent, as the driver lets it.
    const EXCHANGES: u64 = 200;
    for (name, delay) in [
        ("loopback", Duration::from_micros(25)),
        ("wan", Duration::from_millis(10)),
    ] {
        let link = LinkConfig {
            delay,
            ..LinkConfig::default()
        };
        let (client, server) = exchanges(link, EXCHANGES);
        // A few more for path MTU probes and their acknowledgments.
        let most = EXCHANGES + EXCHANGES / 10;
        assert!(
            client <= most && server <= most,
            "{name}: {EXCHANGES} exchanges: the client sent {client} packets, the server {server}"
        );
    }
}
