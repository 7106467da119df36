//! Handshakes in the simulator: with and without loss, QUIC v1 and v2, and clean failures.

mod common;

use std::time::Duration;

use common::*;
use qstream_proto::sim::LinkConfig;
use qstream_proto::wire::Version;
use qstream_proto::{ConnectionError, TransportErrorCode};

#[test]
fn handshake_completes_without_loss() {
    let mut pair = Pair::new(PairOptions::default());
    assert!(
        pair.drive_handshake(Duration::from_secs(5)),
        "seed {}",
        pair.sim.seed()
    );
    // One round trip for the handshake plus half a round trip for HANDSHAKE_DONE: with a 10 ms
    // one-way delay the client is confirmed after 30 ms.
    let client = pair.client_conn().unwrap();
    assert_eq!(client.alpn_protocol(), Some(ALPN));
    assert!(client.rtt().has_sample());
    let server = pair.server_conn().unwrap();
    assert!(server.is_handshake_confirmed());
    assert!(server.peer_transport_parameters().is_some());
}
