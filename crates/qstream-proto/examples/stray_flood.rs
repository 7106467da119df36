//! Measures what a flood of stray short-header datagrams (ones that route to no connection)
//! costs a server per datagram, with 1 and with many connections established:
//! `cargo run --release -p qstream-proto --example stray_flood [connections] [datagrams]`.
//! Each such datagram is checked as a possible stateless reset (RFC 9000 §10.3.1); that check
//! must not grow with the number of connections, since an attacker chooses how many arrive.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{ALPN, certificate, client_addr, client_tls, server_addr, server_tls};
use qstream_proto::sim::{LinkConfig, Simulator};
use qstream_proto::{ClientConfig, Endpoint, EndpointConfig, Event, ServerConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A server endpoint holding `connections` established connections, from one client endpoint.
fn server_with(connections: usize) -> (Simulator, usize) {
    let (cert, key) = certificate();
    let server_config = ServerConfig::new(Arc::new(server_tls(&cert, &key, ALPN)));
    let client_config = ClientConfig::new(Arc::new(client_tls(&cert, ALPN)));
    let mut sim = Simulator::new(1, LinkConfig::default());
    let client = sim.add_endpoint(
        client_addr(),
        Endpoint::new(EndpointConfig::from_seed([1; 32]), None),
    );
    let server = sim.add_endpoint(
        server_addr(),
        Endpoint::new(EndpointConfig::from_seed([2; 32]), Some(server_config)),
    );
    let now = sim.now();
    let handles: Vec<_> = (0..connections)
        .map(|_| {
            sim.endpoint(client)
                .connect(now, &client_config, server_addr(), "localhost")
                .unwrap()
        })
        .collect();
    let mut connected = 0;
    let done = sim.run_until(Duration::from_secs(60), |sim| {
        for handle in &handles {
            while let Some(event) = sim
                .endpoint(client)
                .connection_mut(*handle)
                .and_then(|c| c.poll_event())
            {
                connected += usize::from(event == Event::Connected);
            }
        }
        connected == connections
    });
    assert!(done, "{connected} of {connections} connected");
    while sim.endpoint(server).accept().is_some() {}
    (sim, server)
}

/// Seconds per datagram for `count` random short-header datagrams at the server.
fn flood(sim: &mut Simulator, server: usize, count: usize) -> f64 {
    let mut rng = StdRng::seed_from_u64(7);
    let datagrams: Vec<Vec<u8>> = (0..count)
        .map(|_| {
            let len = rng.random_range(30..1200);
            let mut datagram = vec![0u8; len];
            rng.fill(&mut datagram[..]);
            datagram[0] = 0x40 | (datagram[0] & 0x3f);
            datagram
        })
        .collect();
    let now = sim.now();
    let endpoint = sim.endpoint(server);
    let start = Instant::now();
    for datagram in datagrams {
        endpoint.handle_datagram(now, client_addr(), None, BytesMut::from(&datagram[..]));
    }
    start.elapsed().as_secs_f64() / count as f64
}

fn main() {
    let mut args = std::env::args().skip(1);
    let many: usize = args
        .next()
        .map_or(1000, |a| a.parse().expect("connections"));
    let count: usize = args
        .next()
        .map_or(100_000, |a| a.parse().expect("datagrams"));
    let mut per_datagram = Vec::new();
    for connections in [1, many] {
        let (mut sim, server) = server_with(connections);
        let seconds = flood(&mut sim, server, count);
        println!(
            "{count} stray datagrams at a server with {connections} connections: {:.0} ns each",
            seconds * 1e9
        );
        per_datagram.push(seconds);
    }
    println!(
        "cost with {many} connections / with 1: {:.2}",
        per_datagram[1] / per_datagram[0]
    );
}
