//! The send policy a driver asks the endpoint for ([`qstream_proto::transmit`]): when to send
//! before handling the rest of a receive batch. Datagrams are handed over by hand here, as a
//! driver with a batch of them would, instead of by the simulator's delivery.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::*;
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
