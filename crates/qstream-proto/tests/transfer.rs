//! Bulk transfers through the simulator, every byte verified: one large stream, and many small
//! request/response streams, over a link with loss and reordering.

mod common;

use std::time::{Duration, Instant};

use common::*;
use qstream_proto::sim::LinkConfig;
use qstream_proto::streams::ReadOutcome;
use qstream_proto::wire::Dir;

fn lossy_link() -> LinkConfig {
    LinkConfig {
        loss: 0.01,
        reorder: 0.01,
        reorder_delay: Duration::from_millis(5),
        ..LinkConfig::default()
    }
}

/// Sends `len` bytes of the pattern over one unidirectional stream and checks every byte.
fn one_stream(len: usize, link: LinkConfig) {
    let mut pair = Pair::new(PairOptions {
        link,
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(10)));
    let started = Instant::now();
    let took = bulk_transfer(&mut pair, len, Duration::from_secs(24 * 3600));
    assert!(took.is_some(), "{len} bytes not moved");
    let stats = pair.client_conn().unwrap().stats();
    eprintln!(
        "{len} bytes in {:.2} s real, {:.2} s virtual; {} packets sent, {} lost",
        started.elapsed().as_secs_f64(),
        took.unwrap().as_secs_f64(),
        stats.packets_sent,
        stats.packets_lost
    );
}

#[test]
fn transfer_1gib_over_one_stream_with_loss_and_reordering() {
    one_stream(1 << 30, lossy_link());
}

#[test]
fn transfer_100000_request_response_streams_with_loss_and_reordering() {
    let mut server_transport = qstream_proto::TransportConfig::default();
    server_transport.streams.max_concurrent_bidi = 100;
    let mut pair = Pair::new(PairOptions {
        link: lossy_link(),
        server_transport,
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(10)));
    let started = Instant::now();
    const COUNT: u64 = 100_000;
    let request = |i: u64| pattern(i, 16 + (i % 64) as usize);
    let response = |i: u64| pattern(i ^ 0xdead, 32 + (i % 200) as usize);
    let mut opened = 0u64;
    let mut completed = 0u64;
    let mut open: Vec<(qstream_proto::wire::StreamId, Vec<u8>)> = Vec::new();
    let mut serving: Vec<(qstream_proto::wire::StreamId, Vec<u8>)> = Vec::new();
    let done = pair.run_until(Duration::from_secs(24 * 3600), |p| {
        let now = p.sim.now();
        let client = p.client_conn().unwrap();
        while opened < COUNT {
            let Ok(id) = client.open(now, Dir::Bi) else {
                break;
            };
            client.write(id, &request(id.index())).unwrap();
            client.finish(id).unwrap();
            open.push((id, Vec::new()));
            opened += 1;
        }
        open.retain_mut(|(id, body)| match drain(client, *id, body) {
            Some(end) => {
                assert_eq!(end, ReadOutcome::Finished);
                assert!(*body == response(id.index()), "response {id} corrupt");
                client.release(*id);
                completed += 1;
                false
            }
            None => true,
        });
        let server = p.server_conn().unwrap();
        while let Some(id) = server.accept(Dir::Bi) {
            serving.push((id, Vec::new()));
        }
        serving.retain_mut(|(id, body)| match drain(server, *id, body) {
            Some(end) => {
                assert_eq!(end, ReadOutcome::Finished);
                assert!(*body == request(id.index()), "request {id} corrupt");
                let reply = response(id.index());
                assert_eq!(server.write(*id, &reply).unwrap(), reply.len());
                server.finish(*id).unwrap();
                server.release(*id);
                false
            }
            None => true,
        });
        completed == COUNT
    });
    assert!(done, "{completed} of {COUNT} exchanges");
    let stats = pair.client_conn().unwrap().stats();
    eprintln!(
        "{COUNT} exchanges in {:.2} s real; {} packets sent, {} lost",
        started.elapsed().as_secs_f64(),
        stats.packets_sent,
        stats.packets_lost
    );
}
