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

#[test]
fn send_policy_the_first_answer_leaves_before_the_rest_is_handled() {
    // Eight requests of 1000 bytes leave the client in one burst and reach the server as one
    // batch of datagrams. The answer to the first request leaves before the server handles
    // the others, so the client can work on it meanwhile; the other seven answers share a
    // packet. Handling the whole batch first would send all eight answers in one packet;
    // answering datagram by datagram, in about six.
    use qstream_proto::streams::ReadOutcome;
    let mut pair = Pair::new(PairOptions {
        link: LinkConfig {
            delay: Duration::from_micros(25),
            ..LinkConfig::default()
        },
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    pair.run_until(Duration::from_millis(100), |_| false);
    let eliciting_received = |pair: &mut Pair| {
        let stats = pair.client_conn().unwrap().stats();
        stats.packets_received
            - stats.non_eliciting_packets_received
            - stats
                .frames_received
                .get(qstream_proto::wire::FrameType::PING)
    };
    let before = eliciting_received(&mut pair);
    let now = pair.sim.now();
    let client = pair.client_conn().unwrap();
    let ids: Vec<_> = (0..8)
        .map(|_| {
            let id = client.open(now, Dir::Bi).unwrap();
            client.write(id, &[7; 1000]).unwrap();
            client.finish(id).unwrap();
            id
        })
        .collect();
    let mut requests = vec![Vec::new(); ids.len()];
    let mut answered = vec![false; ids.len()];
    let mut responses = vec![Vec::new(); ids.len()];
    assert!(pair.run_until(Duration::from_secs(2), |p| {
        let server = p.server_conn().unwrap();
        while server.accept(Dir::Bi).is_some() {}
        for (i, id) in ids.iter().enumerate() {
            if !answered[i] && drain(server, *id, &mut requests[i]) == Some(ReadOutcome::Finished) {
                server.write(*id, &[7; 64]).unwrap();
                server.finish(*id).unwrap();
                answered[i] = true;
            }
        }
        let client = p.client_conn().unwrap();
        ids.iter()
            .zip(&mut responses)
            .all(|(id, response)| response.len() == 64 || drain(client, *id, response).is_some())
    }));
    let answers = eliciting_received(&mut pair) - before;
    assert_eq!(
        answers, 2,
        "eight requests were answered in {answers} packets"
    );
}
