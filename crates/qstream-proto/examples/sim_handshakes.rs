//! Measures how many complete handshakes per second (real time) the deterministic simulator
//! runs over a lossy link: `cargo run --release -p qstream-proto --example sim_handshakes
//! [count] [loss]`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Pair, PairOptions};
use qstream_proto::sim::LinkConfig;

fn main() {
    let mut args = std::env::args().skip(1);
    let count: u64 = args.next().map_or(500, |a| a.parse().expect("count"));
    let loss: f64 = args.next().map_or(0.10, |a| a.parse().expect("loss"));
    let start = Instant::now();
    let mut virtual_time = Duration::ZERO;
    let mut completed = 0;
    for seed in 1..=count {
        let mut pair = Pair::new(PairOptions {
            seed,
            link: LinkConfig {
                loss,
                ..LinkConfig::default()
            },
            ..PairOptions::default()
        });
        let began = pair.sim.now();
        if pair.drive_handshake(Duration::from_secs(60)) {
            completed += 1;
        } else {
            let client = pair.client_conn().map(|c| c.stats());
            let server = pair.server_conn().map(|c| c.stats());
            eprintln!("seed {seed}: no handshake in 60 s; client {client:?}, server {server:?}");
        }
        virtual_time += pair.sim.now() - began;
    }
    let elapsed = start.elapsed();
    println!(
        "{completed}/{count} handshakes over {:.0} % loss in {:.2} s real time: {:.0} handshakes/s \
         (mean virtual handshake time {:.1} ms; certificate generation included)",
        loss * 100.0,
        elapsed.as_secs_f64(),
        completed as f64 / elapsed.as_secs_f64(),
        virtual_time.as_secs_f64() * 1000.0 / count as f64,
    );
}
