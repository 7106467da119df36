//! What happens when the path under a connection changes (RFC 9000 §9, §14.3), in the
//! simulator.

mod common;

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use qstream_proto::sim::LinkConfig;
use qstream_proto::wire::Dir;

/// The server sends `len` bytes of the pattern to the client over one unidirectional stream;
/// `during` runs all along (to rebind the client, say), given the bytes the client read.
/// Returns whether the client read everything, every byte checked.
fn download(pair: &mut Pair, len: usize, mut during: impl FnMut(&mut Pair, usize)) -> bool {
    let now = pair.sim.now();
    let id = pair.server_conn().unwrap().open(now, Dir::Uni).unwrap();
    let block = pattern(9, 1 << 16);
    let mut upload = Upload::repeating(id, block.clone(), len);
    let mut download = Download::checking(Dir::Uni, block);
    let done = pair.run_until(Duration::from_secs(60), |p| {
        upload.push(p.server_conn().unwrap());
        let ended = download.pull(p.client_conn().unwrap());
        during(p, download.received);
        ended
    });
    done && download.finished() && download.received == len
}

/// RFC 8899 §4.4: a path that stops carrying the size path MTU discovery found (a route
/// change, a tunnel) would drop every full datagram for good. The sender notices that large
/// datagrams are lost while smaller ones arrive, falls back to 1200 bytes, and searches
/// again below the size that stopped passing; the transfer completes, every byte checked.
#[test]
fn migration_black_hole_mtu_falls_back_to_the_base_size() {
    for delay in [Duration::from_micros(25), Duration::from_millis(10)] {
        let mut pair = Pair::new(PairOptions {
            link: LinkConfig {
                delay,
                mtu: 1500,
                ..LinkConfig::default()
            },
            ..PairOptions::default()
        });
        assert!(pair.drive_handshake(Duration::from_secs(5)));
        assert!(bulk_transfer(&mut pair, 1 << 20, Duration::from_secs(10)).is_some());
        assert_eq!(pair.client_conn().unwrap().path_mtu(), 1452);
        // The path now drops every datagram above 1300 bytes.
        pair.sim.set_link(LinkConfig {
            delay,
            mtu: 1300,
            ..LinkConfig::default()
        });
        let took = bulk_transfer(&mut pair, 4 << 20, Duration::from_secs(30));
        let client = pair.client_conn().unwrap();
        let stats = client.stats();
        assert!(
            took.is_some(),
            "{delay:?}: stalled in the black hole: {stats:?}"
        );
        assert_eq!(stats.mtu_black_holes, 1, "{delay:?}");
        let mtu = client.path_mtu();
        assert!((1200..=1300).contains(&mtu), "{delay:?}: {mtu}");
        // The search found the new size again.
        assert!(
            pair.run_until(Duration::from_secs(5), |p| p
                .client_conn()
                .unwrap()
                .path_mtu()
                > 1280),
            "{delay:?}: the search did not resume"
        );
    }
}

/// Random loss takes large datagrams too, but large ones keep arriving in between: no black
/// hole is seen, and the size path MTU discovery found stays.
#[test]
fn migration_random_loss_is_not_taken_for_a_black_hole() {
    for seed in seeds(3) {
        let link = LinkConfig {
            delay: Duration::from_micros(150),
            loss: 0.2,
            ..LinkConfig::default()
        };
        let mut pair = Pair::new(PairOptions {
            seed,
            link,
            ..PairOptions::default()
        });
        assert!(pair.drive_handshake(Duration::from_secs(10)), "seed {seed}");
        assert!(
            bulk_transfer(&mut pair, 4 << 20, Duration::from_secs(60)).is_some(),
            "seed {seed}"
        );
        let client = pair.client_conn().unwrap();
        assert_eq!(client.stats().mtu_black_holes, 0, "seed {seed}");
        assert_eq!(client.path_mtu(), 1452, "seed {seed}");
    }
}

/// RFC 9000 §9.3, RFC9000-142: the client's NAT rebinds mid-download, to a new port or a new
/// address; the server follows it to where the highest-numbered non-probing packet came
/// from, validates that address, and the download completes there, every byte checked, with
/// and without loss.
#[test]
fn migration_nat_rebinding_keeps_a_download() {
    let port_only: SocketAddr = "10.0.0.1:6000".parse().unwrap();
    let new_address: SocketAddr = "10.0.0.9:5000".parse().unwrap();
    for (to, loss) in [
        (new_address, 0.0),
        (port_only, 0.0),
        (port_only, 0.02),
        (new_address, 0.02),
    ] {
        let mut pair = Pair::new(PairOptions {
            link: LinkConfig {
                loss,
                ..LinkConfig::default()
            },
            ..PairOptions::default()
        });
        assert!(pair.drive_handshake(Duration::from_secs(10)));
        let mut rebound = false;
        let done = download(&mut pair, 4 << 20, |p, read| {
            if read > 1 << 20 && !rebound {
                p.sim.rebind(CLIENT, to);
                rebound = true;
            }
        });
        let server = pair.server_conn().unwrap();
        let stats = server.stats();
        assert!(done, "to {to}, loss {loss}: {stats:?}");
        assert_eq!(server.remote_address(), to, "to {to}, loss {loss}");
        assert!(stats.peer_migrations >= 1, "to {to}, loss {loss}");
        // RFC 9000 §9: any change of the peer's address is validated, a port's too.
        use qstream_proto::wire::FrameType;
        assert!(
            stats.frames_sent.get(FrameType::PATH_CHALLENGE) >= 1,
            "to {to}"
        );
        assert!(
            stats.frames_received.get(FrameType::PATH_RESPONSE) >= 1,
            "to {to}"
        );
        // RFC9000-144: a token for the new address, beside the one after the handshake.
        assert!(stats.frames_sent.get(FrameType::NEW_TOKEN) >= 2, "to {to}");
    }
}

/// RFC 9000 §9.3, §8.1, RFC9000-143: until the client's new address is validated the server
/// sends it at most three times what came from it. Here nothing reaches the client at its
/// new address for a while, so validation cannot succeed: the limit holds all along, and
/// once the path works again the download completes.
#[test]
fn migration_unvalidated_address_gets_at_most_three_times_what_it_sent() {
    let moved: SocketAddr = "10.0.0.9:5000".parse().unwrap();
    let mut pair = Pair::new(PairOptions::default());
    assert!(pair.drive_handshake(Duration::from_secs(10)));
    let (to_moved, from_moved, cut) = (
        Rc::new(Cell::new(0usize)),
        Rc::new(Cell::new(0usize)),
        Rc::new(Cell::new(true)),
    );
    let (sent, received, cutting) = (to_moved.clone(), from_moved.clone(), cut.clone());
    pair.sim.set_filter(Some(Box::new(move |from, to, data| {
        if to == moved {
            sent.set(sent.get() + data.len());
            return !cutting.get();
        }
        if from == moved {
            received.set(received.get() + data.len());
        }
        true
    })));
    let (mut rebound_at, mut most_ratio) = (None, 0.0f64);
    let done = download(&mut pair, 2 << 20, |p, read| {
        let now = p.sim.now();
        if read > 1 << 20 && rebound_at.is_none() {
            p.sim.rebind(CLIENT, moved);
            rebound_at = Some(now);
        }
        if rebound_at.is_some_and(|at| now - at > Duration::from_secs(2)) {
            cut.set(false);
        }
        if cut.get() && from_moved.get() > 0 {
            most_ratio = most_ratio.max(to_moved.get() as f64 / from_moved.get() as f64);
        }
    });
    assert!(rebound_at.is_some());
    assert!(to_moved.get() > 0, "the server never tried the new address");
    assert!(most_ratio <= 3.0, "sent {most_ratio:.2}× what it received");
    assert!(done, "the download did not recover");
    assert_eq!(pair.server_conn().unwrap().remote_address(), moved);
}

/// RFC 9000 §9.5: a client that moves on purpose (`on_local_address_changed`) sends from its
/// new address to another of the server's connection IDs, and the server answers it there at
/// a new one of the client's: no ID is used on both addresses, either way. The download
/// completes, every byte checked.
#[test]
fn migration_intentional_move_uses_new_connection_ids_both_ways() {
    use std::collections::HashSet;
    let moved: SocketAddr = "10.0.0.9:7000".parse().unwrap();
    let mut pair = Pair::new(PairOptions::default());
    assert!(pair.drive_handshake(Duration::from_secs(10)));
    // Short-header DCIDs (8 bytes on both sides) from the old and the new client address,
    // and to each.
    type Seen = Rc<std::cell::RefCell<[HashSet<Vec<u8>>; 4]>>;
    let seen: Seen = Default::default();
    let record = seen.clone();
    pair.sim.set_filter(Some(Box::new(move |from, to, data| {
        if data[0] & 0x80 == 0 && data.len() > 9 {
            let index = match (from, to) {
                (f, _) if f == client_addr() => 0,
                (f, _) if f == moved => 1,
                (_, t) if t == client_addr() => 2,
                _ => 3,
            };
            record.borrow_mut()[index].insert(data[1..9].to_vec());
        }
        true
    })));
    let mut rebound = false;
    let done = download(&mut pair, 4 << 20, |p, read| {
        if read > 1 << 20 && !rebound {
            rebound = true;
            p.sim.rebind(CLIENT, moved);
            let now = p.sim.now();
            p.client_conn().unwrap().on_local_address_changed(now, true);
        }
    });
    assert!(done, "{:?}", pair.server_conn().unwrap().stats());
    assert_eq!(pair.server_conn().unwrap().remote_address(), moved);
    let seen = seen.borrow();
    let [from_old, from_moved, to_old, to_moved] = &*seen;
    assert!(!from_moved.is_empty() && !to_moved.is_empty());
    assert!(
        from_old.is_disjoint(from_moved),
        "the client reused a server ID"
    );
    assert!(
        to_old.is_disjoint(to_moved),
        "the server reused a client ID"
    );
}

/// RFC 9000 §9, §18.2: a server configured without active migration advertises
/// disable_active_migration and drops what comes from any other address, without a
/// stateless reset; it never sends there. (A client that moves anyway loses the connection.)
#[test]
fn migration_disabled_by_the_server_is_not_followed() {
    let moved: SocketAddr = "10.0.0.9:5000".parse().unwrap();
    let mut pair = Pair::new(PairOptions {
        server_transport: qstream_proto::TransportConfig {
            active_migration: false,
            ..Default::default()
        },
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(10)));
    let to_moved = Rc::new(Cell::new(0usize));
    let counted = to_moved.clone();
    pair.sim.set_filter(Some(Box::new(move |_, to, _| {
        if to == moved {
            counted.set(counted.get() + 1);
        }
        true
    })));
    let mut rebound_at = None;
    let now = pair.sim.now();
    let id = pair.server_conn().unwrap().open(now, Dir::Uni).unwrap();
    let mut upload = Upload::repeating(id, pattern(1, 1 << 16), 8 << 20);
    let mut download = Download::counting(Dir::Uni);
    pair.run_until(Duration::from_secs(5), |p| {
        upload.push(p.server_conn().unwrap());
        download.pull(p.client_conn().unwrap());
        if download.received > 1 << 20 && rebound_at.is_none() {
            p.sim.rebind(CLIENT, moved);
            let now = p.sim.now();
            p.client_conn().unwrap().on_local_address_changed(now, true);
            rebound_at = Some(now);
        }
        false
    });
    assert!(rebound_at.is_some());
    let server = pair.server_conn().unwrap();
    assert_eq!(server.remote_address(), client_addr());
    assert_eq!(server.stats().peer_migrations, 0);
    assert_eq!(
        to_moved.get(),
        0,
        "the server sent to the address it does not take"
    );
    assert!(download.received < 8 << 20, "the download cannot go on");
}

/// RFC 9000 §9.3.3, RFC9000-147: an attacker's copy of the client's packet, sent from
/// another address and arriving first, makes the server move there; the server then
/// challenges the previously active path, the real client answers with a non-probing packet,
/// and the server is back on the real address within a round trip, long before the client's
/// own probe timeout would have brought it back.
#[test]
fn migration_spoofed_move_is_undone_by_challenging_the_old_path() {
    use bytes::BytesMut;
    let fake: SocketAddr = "10.6.6.6:6666".parse().unwrap();
    let mut pair = Pair::new(PairOptions::default());
    assert!(pair.drive_handshake(Duration::from_secs(10)));
    pair.run_until(Duration::from_millis(500), |_| false);
    // The attacker intercepts what the client sends for 10 ms (far less than its probe
    // timeout).
    let captured = Rc::new(std::cell::RefCell::new(None::<Vec<u8>>));
    let intercepting = Rc::new(Cell::new(true));
    let (capture, on) = (captured.clone(), intercepting.clone());
    pair.sim.set_filter(Some(Box::new(move |from, _, data| {
        if from == client_addr() && data[0] & 0x80 == 0 && on.get() {
            *capture.borrow_mut() = Some(data.to_vec());
            return false;
        }
        true
    })));
    let now = pair.sim.now();
    let client = pair.client_conn().unwrap();
    let id = client.open(now, Dir::Uni).unwrap();
    client.write(id, b"hello").unwrap();
    pair.run_until(Duration::from_millis(10), |_| false);
    intercepting.set(false);
    // Its copy of the client's latest packet, from its own address, reaches the server.
    let copy = captured.borrow().clone().expect("the client sent");
    let injected = pair.sim.now();
    pair.sim
        .endpoint(SERVER)
        .handle_datagram(injected, fake, None, BytesMut::from(&copy[..]));
    assert_eq!(pair.server_conn().unwrap().remote_address(), fake);
    assert!(pair.run_until(
        Duration::from_secs(3),
        |p| p.server_conn().unwrap().remote_address() == client_addr()
    ));
    let back_after = pair.sim.now() - injected;
    // A round trip is 20 ms here; the client's probe timeout is over 45 ms.
    assert!(
        back_after < Duration::from_millis(30),
        "back after {back_after:?}"
    );
    assert_eq!(pair.server_conn().unwrap().stats().peer_migrations, 2);
}

fn preferred_address() -> SocketAddr {
    "10.0.0.3:443".parse().unwrap()
}

/// RFC 9000 §9.6: the server offers a preferred address; once the handshake is confirmed the
/// client validates it and moves there, to the connection ID that came with it, and the
/// server answers from it. A download that runs meanwhile completes, every byte checked,
/// with and without loss, on a fast and a slow path.
#[test]
fn migration_preferred_address_the_client_moves_to_it() {
    for (delay, loss) in [
        (Duration::from_micros(50), 0.0),
        (Duration::from_millis(10), 0.0),
        (Duration::from_millis(10), 0.02),
    ] {
        let mut pair = Pair::new(PairOptions {
            link: LinkConfig {
                delay,
                loss,
                ..LinkConfig::default()
            },
            server_preferred_address: Some(preferred_address()),
            ..PairOptions::default()
        });
        assert!(pair.drive_handshake(Duration::from_secs(5)));
        assert!(download(&mut pair, 4 << 20, |_, _| {}), "{delay:?} {loss}");
        let server_stats = pair.server_conn().unwrap().stats();
        let client = pair.client_conn().unwrap();
        let stats = client.stats();
        assert!(
            stats.moved_to_preferred_address,
            "{delay:?} {loss}: {stats:?}\nserver: {server_stats:?}"
        );
        assert_eq!(client.remote_address(), preferred_address());
        let from_preferred = pair.sim.bytes_sent_by(preferred_address());
        assert!(
            from_preferred > 3 << 20,
            "{delay:?} {loss}: the server sent {from_preferred} bytes from its preferred address"
        );
    }
}

/// RFC 9000 §9.6.1 and §8.2.4: a preferred address that never answers (here every datagram
/// to or from it is lost) is given up after three probe timeouts; the connection stays on
/// the address it started with and the download completes, every byte checked. The probes
/// cost nothing else: no probe counts as lost data.
#[test]
fn migration_unreachable_preferred_address_is_given_up() {
    let mut pair = Pair::new(PairOptions {
        server_preferred_address: Some(preferred_address()),
        ..PairOptions::default()
    });
    pair.sim.set_filter(Some(Box::new(|from, to, _| {
        from != preferred_address() && to != preferred_address()
    })));
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    assert!(download(&mut pair, 4 << 20, |_, _| {}));
    // Probing goes on for three probe timeouts of the initial RTT's (about 3 s): the
    // download, which took less, did not wait for it.
    pair.run_until(Duration::from_secs(5), |p| {
        p.client_conn().unwrap().stats().preferred_address_abandoned
    });
    let client = pair.client_conn().unwrap();
    let stats = client.stats();
    assert!(!stats.moved_to_preferred_address, "{stats:?}");
    assert!(stats.preferred_address_abandoned, "{stats:?}");
    assert_eq!(client.remote_address(), server_addr());
    assert_eq!(stats.packets_lost, 0, "{stats:?}");
}

/// RFC 9000 §9.3 and §13.4: a new path may differ in ECN capability, so it is validated
/// again. The old path bleaches ECN codepoints, so the server stops marking (§13.4.2); after
/// the client moves to a new IP address on a path that keeps them, the server marks again
/// and the marks validate (CE marks there are taken as congestion, not as a failure).
#[test]
fn migration_a_new_path_validates_ecn_again() {
    let mut pair = Pair::new(PairOptions {
        link: LinkConfig {
            ecn_bleach: true,
            ..LinkConfig::default()
        },
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    let mut moved = false;
    let mut before_move = None;
    let new_address: SocketAddr = "10.0.0.9:5000".parse().unwrap();
    assert!(download(&mut pair, 4 << 20, |p, read| {
        if read > 1 << 20 && !moved {
            before_move = Some(p.server_conn().unwrap().ecn_sending());
            p.sim.set_link(LinkConfig::default());
            p.sim.rebind(CLIENT, new_address);
            moved = true;
        }
    }));
    assert_eq!(before_move, Some(false), "bleached ECN fails validation");
    let server = pair.server_conn().unwrap();
    assert_eq!(server.remote_address(), new_address);
    assert!(server.ecn_sending(), "ECN validated again on the new path");
}

fn second_client_address() -> SocketAddr {
    "10.0.0.7:5000".parse().unwrap()
}

/// RFC 9000 §9.1: a client with a second address (another interface) probes the path from
/// there while a download runs on the first; probing moves nothing. Once the probe is
/// validated the client moves (`on_local_address_changed`, to the connection ID it probed
/// with, §9.5), the server follows, and the download completes, every byte checked.
#[test]
fn migration_a_probed_path_is_validated_before_the_client_moves() {
    use qstream_proto::PathProbe;
    let mut pair = Pair::new(PairOptions::default());
    pair.sim.add_address(CLIENT, second_client_address());
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    let (mut probed, mut moved) = (false, false);
    let (mut remote_while_probing, mut probe_bytes) = (None, 0);
    assert!(download(&mut pair, 4 << 20, |p, read| {
        let now = p.sim.now();
        if read > 1 << 20 && !probed {
            let client = p.client_conn().unwrap();
            client.probe_path(now, second_client_address()).unwrap();
            probed = true;
        }
        let probe = p.client_conn().unwrap().path_probe();
        if probe == Some(PathProbe::Validated) && !moved {
            remote_while_probing = Some(p.server_conn().unwrap().remote_address());
            probe_bytes = p.sim.bytes_sent_by(second_client_address());
            p.sim.rebind(CLIENT, second_client_address());
            p.sim.endpoint(CLIENT).on_local_address_changed(now, true);
            moved = true;
        }
    }));
    assert!(moved, "the probe was never validated");
    assert_eq!(
        remote_while_probing,
        Some(client_addr()),
        "probing moved nothing"
    );
    // The challenges left from the second address, in datagrams of 1200 bytes (RFC9000-132).
    assert!((1200..=4 * 1200).contains(&probe_bytes), "{probe_bytes}");
    let server = pair.server_conn().unwrap();
    assert_eq!(server.remote_address(), second_client_address());
}

/// RFC 9000 §9.1, §8.2.4: a probe of a path that reaches nothing fails after three probe
/// timeouts; the connection stays where it is and its download completes.
#[test]
fn migration_an_unreachable_path_fails_its_probe_and_the_connection_stays() {
    use qstream_proto::PathProbe;
    let mut pair = Pair::new(PairOptions::default());
    pair.sim.add_address(CLIENT, second_client_address());
    pair.sim.set_filter(Some(Box::new(|from, to, _| {
        from != second_client_address() && to != second_client_address()
    })));
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    let now = pair.sim.now();
    let client = pair.client_conn().unwrap();
    client.probe_path(now, second_client_address()).unwrap();
    assert!(download(&mut pair, 4 << 20, |_, _| {}));
    pair.run_until(Duration::from_secs(5), |p| {
        p.client_conn().unwrap().path_probe() == Some(PathProbe::Failed)
    });
    let client = pair.client_conn().unwrap();
    assert_eq!(client.path_probe(), Some(PathProbe::Failed));
    assert_eq!(client.stats().packets_lost, 0);
    assert_eq!(pair.server_conn().unwrap().remote_address(), client_addr());
}
