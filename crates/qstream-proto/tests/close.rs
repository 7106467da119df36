//! Ending connections: idle timeout, application close, draining, stateless reset.

mod common;

use std::time::Duration;

use common::*;
use qstream_proto::wire::VarInt;
use qstream_proto::{ConnectionError, TransportConfig};

fn idle(timeout_ms: u64) -> TransportConfig {
    TransportConfig {
        max_idle_timeout: Some(Duration::from_millis(timeout_ms)),
        ..TransportConfig::default()
    }
}

#[test]
fn close_idle_timeout_uses_the_smaller_of_both_sides() {
    let mut pair = Pair::new(PairOptions {
        client_transport: idle(2_000),
        server_transport: idle(1_000),
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    let quiet_since = pair.sim.now();
    assert!(pair.run_until(Duration::from_secs(10), |p| {
        Pair::closed_event(&p.client_events).is_some()
            && Pair::closed_event(&p.server_events).is_some()
    }));
    assert_eq!(
        Pair::closed_event(&pair.client_events),
        Some(&ConnectionError::TimedOut)
    );
    assert_eq!(
        Pair::closed_event(&pair.server_events),
        Some(&ConnectionError::TimedOut)
    );
    // RFC 9000 §10.1: min(1 s, 2 s) after the last packet received, which was the last ACK,
    // at most a delayed-ACK time and a one-way delay after the handshake; nobody waited 2 s.
    let waited = pair.sim.now() - quiet_since;
    assert!(
        waited >= Duration::from_millis(1_000),
        "closed after {waited:?}"
    );
    assert!(
        waited <= Duration::from_millis(1_060),
        "closed after {waited:?}"
    );
    // An idle timeout is silent: the connection is gone at once.
    assert!(pair.client_conn().unwrap().is_drained());
}

#[test]
fn close_keep_alive_prevents_idle_timeout() {
    let mut pair = Pair::new(PairOptions {
        client_transport: TransportConfig {
            keep_alive_interval: Some(Duration::from_millis(300)),
            ..idle(1_000)
        },
        server_transport: idle(1_000),
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    let closed = pair.run_until(Duration::from_secs(10), |p| {
        Pair::closed_event(&p.client_events).is_some()
    });
    assert!(!closed, "closed: {:?}", pair.client_events);
}

#[test]
fn close_application_code_and_reason_reach_the_peer() {
    let mut pair = Pair::new(PairOptions::default());
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    let now = pair.sim.now();
    pair.client_conn()
        .unwrap()
        .close(now, VarInt::from_u32(42), b"done here");
    assert!(pair.run_until(Duration::from_secs(5), |p| {
        Pair::closed_event(&p.server_events).is_some()
    }));
    assert_eq!(
        Pair::closed_event(&pair.server_events),
        Some(&ConnectionError::ApplicationClosed {
            code: VarInt::from_u32(42),
            reason: "done here".into(),
        })
    );
    assert_eq!(
        Pair::closed_event(&pair.client_events),
        Some(&ConnectionError::LocallyClosed)
    );
    // Both sides wait out three PTOs, then are drained (RFC 9000 §10.2).
    assert!(pair.run_until(Duration::from_secs(5), |p| {
        p.client_conn().unwrap().is_drained() && p.server_conn().unwrap().is_drained()
    }));
}

#[test]
fn close_draining_endpoint_sends_nothing() {
    let mut pair = Pair::new(PairOptions::default());
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    let now = pair.sim.now();
    pair.client_conn()
        .unwrap()
        .close(now, VarInt::from_u32(1), b"");
    assert!(pair.run_until(Duration::from_secs(5), |p| {
        Pair::closed_event(&p.server_events).is_some()
    }));
    // The server received CONNECTION_CLOSE and drains (RFC 9000 §10.2.2): not a single datagram
    // more, even when the client's packets keep arriving.
    let server_sent = pair.sim.bytes_sent_by(server_addr());
    pair.client_conn().unwrap().ping();
    pair.run_until(Duration::from_secs(2), |_| false);
    assert_eq!(pair.sim.bytes_sent_by(server_addr()), server_sent);
    assert!(pair.server_conn().unwrap().is_drained());
}

#[test]
fn close_closing_endpoint_answers_with_connection_close() {
    let mut pair = Pair::new(PairOptions::default());
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    // The client's CONNECTION_CLOSE is lost; the server's next packet gets it again
    // (RFC 9000 §10.2.1).
    pair.sim
        .set_filter(Some(Box::new(|from, _, _| from != client_addr())));
    let now = pair.sim.now();
    pair.client_conn()
        .unwrap()
        .close(now, VarInt::from_u32(7), b"again");
    pair.run_until(Duration::from_millis(5), |_| false);
    pair.sim.set_filter(None);
    pair.server_conn().unwrap().ping();
    assert!(pair.run_until(Duration::from_secs(1), |p| {
        Pair::closed_event(&p.server_events).is_some()
    }));
    assert!(matches!(
        Pair::closed_event(&pair.server_events),
        Some(ConnectionError::ApplicationClosed { .. })
    ));
}

#[test]
fn close_stateless_reset_is_recognised() {
    let mut pair = Pair::new(PairOptions::default());
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    // The server loses all state of the connection, as after a restart with the same key.
    let server = pair.server.take().unwrap();
    pair.sim.endpoint(SERVER).remove(server);
    pair.client_conn().unwrap().ping();
    assert!(pair.run_until(Duration::from_secs(5), |p| {
        Pair::closed_event(&p.client_events).is_some()
    }));
    assert_eq!(
        Pair::closed_event(&pair.client_events),
        Some(&ConnectionError::Reset)
    );
}

#[test]
fn close_endpoint_timer_is_the_earliest_of_its_connections() {
    // Eight connections with different idle timeouts live, send, close and time out; the
    // endpoint keeps an index of their timers rather than asking each one every time, and
    // after every step of the simulation it must give what asking each one gives.
    let mut pair = Pair::new(PairOptions {
        client_transport: idle(400),
        ..PairOptions::default()
    });
    let mut clients = vec![pair.client];
    for i in 1..8u64 {
        let mut config = pair.client_config.clone();
        config.transport = std::sync::Arc::new(idle(400 + 150 * i));
        let now = pair.sim.now();
        let handle = pair
            .sim
            .endpoint(CLIENT)
            .connect(now, &config, server_addr(), "localhost")
            .unwrap();
        clients.push(handle);
    }
    let check = |pair: &mut Pair, step: usize| {
        for side in [CLIENT, SERVER] {
            let endpoint = pair.sim.endpoint(side);
            let asked = endpoint
                .connection_handles()
                .into_iter()
                .filter_map(|h| endpoint.connection(h).and_then(|c| c.poll_timeout()))
                .min();
            assert_eq!(endpoint.poll_timeout(), asked, "side {side}, step {step}");
        }
    };
    let mut step = 0;
    while pair.sim.step() {
        step += 1;
        check(&mut pair, step);
        let now = pair.sim.now();
        // Now and then the application acts on a connection: a stream with data, or a close.
        let client = clients[step % clients.len()];
        if let Some(connection) = pair.sim.endpoint(CLIENT).connection_mut(client) {
            if step % 3 == 0 && connection.is_established() {
                if let Ok(id) = connection.open(now, qstream_proto::wire::Dir::Uni) {
                    connection.write(id, &[1; 3000]).unwrap();
                    connection.finish(id).unwrap();
                }
            }
            if step == 12 {
                connection.close(now, VarInt::from_u32(1), b"done");
            }
        }
        check(&mut pair, step);
        assert!(step < 100_000, "the simulation does not end");
    }
    assert!(step > 12, "{step} steps");
    for side in [CLIENT, SERVER] {
        assert_eq!(pair.sim.endpoint(side).poll_timeout(), None);
    }
}
