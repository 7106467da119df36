//! The server's anti-amplification limit (RFC 9000 §8.1): before the client's address is
//! validated, the server sends at most three times what it received.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use common::*;

#[derive(Default)]
struct Ledger {
    received_by_server: u64,
    sent_by_server: u64,
    validated: bool,
    violations: Vec<(u64, u64)>,
}

/// Whether a client datagram carries a v1 Handshake packet, which validates its address.
fn has_handshake_packet(datagram: &[u8]) -> bool {
    qstream_proto::wire::CoalescedPackets::new(datagram, 8).any(|p| {
        matches!(p, Ok((_, qstream_proto::wire::Packet::Protected(p)))
            if p.ty == qstream_proto::wire::PacketType::Handshake)
    })
}

/// Runs a handshake with a large server certificate while `drop_client` decides which client
/// datagrams (by index) are lost, checking the limit on every server datagram.
fn check_limit(drop_client: fn(usize) -> bool) -> (bool, Ledger) {
    let mut pair = Pair::new(PairOptions {
        // About 6 KB of certificate: the server's first flight is larger than 3 × 1200 bytes.
        extra_names: 200,
        ..PairOptions::default()
    });
    let ledger = Rc::new(RefCell::new(Ledger::default()));
    let shared = ledger.clone();
    let mut client_count = 0;
    pair.sim.set_filter(Some(Box::new(move |from, _, data| {
        let mut ledger = shared.borrow_mut();
        if from == client_addr() {
            client_count += 1;
            if drop_client(client_count) {
                return false;
            }
            ledger.validated |= has_handshake_packet(data);
            ledger.received_by_server += data.len() as u64;
        } else {
            ledger.sent_by_server += data.len() as u64;
            if !ledger.validated && ledger.sent_by_server > 3 * ledger.received_by_server {
                let entry = (ledger.sent_by_server, ledger.received_by_server);
                ledger.violations.push(entry);
            }
        }
        true
    })));
    let done = pair.drive_handshake(Duration::from_secs(30));
    pair.sim.set_filter(None);
    drop(pair);
    let ledger = Rc::try_unwrap(ledger).ok().unwrap().into_inner();
    (done, ledger)
}

#[test]
fn amplification_limit_holds_during_handshake() {
    let (done, ledger) = check_limit(|_| false);
    assert!(done);
    assert!(
        ledger.violations.is_empty(),
        "sent/received: {:?}",
        ledger.violations
    );
}

#[test]
fn amplification_limit_holds_when_client_acks_are_lost() {
    // The client's first Initial arrives; its next datagrams (ACKs) are lost, so the server
    // stays unvalidated and blocked until the client's PTO probes get through.
    let (done, ledger) = check_limit(|i| (2..=4).contains(&i));
    assert!(done, "handshake did not complete");
    assert!(
        ledger.violations.is_empty(),
        "sent/received: {:?}",
        ledger.violations
    );
}

#[test]
fn amplification_limit_caps_a_blackholed_client() {
    // Only the client's first datagram ever arrives: the server may send at most 3 × 1200.
    let (done, ledger) = check_limit(|i| i > 1);
    assert!(!done);
    assert_eq!(ledger.received_by_server, 1200);
    assert!(
        ledger.sent_by_server <= 3600,
        "sent {}",
        ledger.sent_by_server
    );
    assert!(
        ledger.sent_by_server >= 2400,
        "the server used its allowance: {}",
        ledger.sent_by_server
    );
    assert!(ledger.violations.is_empty());
}
