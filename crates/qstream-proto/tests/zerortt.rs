//! 0-RTT (RFC 9001 §4.6, RFC 9000 §7.4.1) in the simulator: a client that resumes sends its
//! request in the first flight; a server takes it or refuses it, and refused early data goes
//! again in 1-RTT packets without the application doing anything.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::*;
use qstream_proto::wire::{Dir, StreamId, Version};
use qstream_proto::{EarlyData, TransportConfig, TransportErrorCode};

/// One-way delay of the link: a round trip is 20 ms.
const DELAY: Duration = Duration::from_millis(10);

/// A pair whose client connected once and holds the server's session tickets.
fn resumable_pair(options: PairOptions) -> Pair {
    let mut pair = Pair::new(PairOptions {
        early_data: true,
        ..options
    });
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    // The tickets come after the handshake, in the server's 1-RTT CRYPTO data.
    let until = pair.sim.now() + Duration::from_millis(100);
    pair.run_until(Duration::from_millis(100), |p| p.sim.now() >= until);
    pair
}

/// What a request on a new connection came to.
#[derive(Debug)]
struct Exchange {
    /// The request as the server read it, and when it had all of it.
    request: Vec<u8>,
    request_at: Option<Duration>,
    /// Whether the server saw the request's data arrive in 0-RTT packets.
    early_on_server: Option<bool>,
    /// When the client read the first byte of the answer.
    answer_at: Option<Duration>,
    client: EarlyData,
    server: EarlyData,
    zero_rtt_sent: u64,
    zero_rtt_received: u64,
}

/// Reconnects and sends `request` on a bidirectional stream as early as the client may open
/// one (at once when 0-RTT is possible); the server answers once it read all of it.
fn exchange(pair: &mut Pair, request: &[u8]) -> Exchange {
    pair.reconnect();
    let start = pair.sim.now();
    let mut stream: Option<StreamId> = None;
    let mut written = 0;
    let mut served: Option<StreamId> = None;
    let mut received = Vec::new();
    let (mut request_at, mut answer_at, mut early_on_server) = (None, None, None);
    let since = |now: Instant| now - start;
    pair.run_until(Duration::from_secs(10), |p| {
        let now = p.sim.now();
        let client = p.client_conn().unwrap();
        if stream.is_none() {
            stream = client.open(now, Dir::Bi).ok();
        }
        if let Some(id) = stream {
            if written < request.len() {
                written += client.write(id, &request[written..]).unwrap();
                if written == request.len() {
                    client.finish(id).unwrap();
                }
            }
            if answer_at.is_none() && client.has_data(id) {
                answer_at = Some(since(now));
            }
        }
        if let Some(server) = p.server_conn() {
            served = served.or_else(|| server.accept(Dir::Bi));
            if let (Some(id), None) = (served, request_at) {
                loop {
                    match server.read(id, 1 << 20) {
                        Ok(qstream_proto::streams::ReadOutcome::Data(bytes)) => {
                            received.extend_from_slice(&bytes)
                        }
                        Ok(qstream_proto::streams::ReadOutcome::Finished) => {
                            request_at = Some(since(now));
                            early_on_server = server.stream_is_early(id);
                            server.write(id, b"answer").unwrap();
                            server.finish(id).unwrap();
                            break;
                        }
                        _ => break,
                    }
                }
            }
        }
        answer_at.is_some() && p.client_connected()
    });
    let client = pair.client_conn().unwrap();
    let (client_status, zero_rtt_sent) =
        (client.early_data(), client.stats().zero_rtt_packets_sent);
    let (server_status, zero_rtt_received) = pair
        .server_conn()
        .map(|s| (s.early_data(), s.stats().zero_rtt_packets_received))
        .unwrap_or((EarlyData::NotAttempted, 0));
    Exchange {
        request: received,
        request_at,
        early_on_server,
        answer_at,
        client: client_status,
        server: server_status,
        zero_rtt_sent,
        zero_rtt_received,
    }
}

/// A request larger than one packet, so 0-RTT spans several.
fn request() -> Vec<u8> {
    pattern(7, 5000)
}

/// RFC 9001 §4.6.1: the resumed client's request goes in 0-RTT packets with its Initial; the
/// server has it after half a round trip and the answer is back after one, where a 1-RTT
/// request takes one and a half and two.
#[test]
fn zerortt_request_in_the_first_flight_is_accepted() {
    let mut pair = resumable_pair(PairOptions {
        link: sim_link(),
        qlog: true,
        ..PairOptions::default()
    });
    let (mut client_qlog, mut server_qlog) = (Vec::new(), Vec::new());
    pair.take_qlog(&mut client_qlog, &mut server_qlog);
    let request = request();
    let early = exchange(&mut pair, &request);
    let (mut client_qlog, mut server_qlog) = (Vec::new(), Vec::new());
    pair.take_qlog(&mut client_qlog, &mut server_qlog);
    let zero_rtt = |qlog: &[serde_json::Value], name: &str| {
        qlog.iter()
            .filter(|e| e["name"] == name && e["data"]["header"]["packet_type"] == "0RTT")
            .count() as u64
    };
    assert_eq!(
        zero_rtt(&client_qlog, "quic:packet_sent"),
        early.zero_rtt_sent
    );
    assert_eq!(
        zero_rtt(&server_qlog, "quic:packet_received"),
        early.zero_rtt_received
    );
    assert_eq!(early.request, request);
    assert_eq!(early.client, EarlyData::Accepted, "{early:?}");
    assert_eq!(early.server, EarlyData::Accepted, "{early:?}");
    assert_eq!(early.early_on_server, Some(true));
    assert!(early.zero_rtt_sent >= 4, "{early:?}");
    assert_eq!(early.zero_rtt_received, early.zero_rtt_sent, "{early:?}");
    let rtt = 2 * DELAY;
    assert!(early.request_at.unwrap() < rtt, "{early:?}");
    assert!(early.answer_at.unwrap() < rtt + rtt / 2, "{early:?}");

    // The same without early data: a full round trip later.
    let mut pair = Pair::new(PairOptions {
        link: sim_link(),
        ..PairOptions::default()
    });
    assert!(pair.drive_handshake(Duration::from_secs(5)));
    let late = exchange(&mut pair, &request);
    assert_eq!(late.request, request);
    assert_eq!(late.client, EarlyData::NotAttempted);
    assert_eq!(late.early_on_server, Some(false));
    assert!(late.answer_at.unwrap() >= 2 * rtt, "{late:?}");
}

/// RFC 9001 §4.6.2: a server that resumes the session but refuses early data processes none
/// of the 0-RTT packets (RFC9001-018); the client learns it from the handshake and sends the
/// request again in 1-RTT packets, from its first byte, without the application doing
/// anything.
#[test]
fn zerortt_rejected_early_data_is_sent_again_in_1rtt() {
    for loss in [0.0, 0.1] {
        let mut pair = resumable_pair(PairOptions {
            link: sim_link(),
            ..PairOptions::default()
        });
        // The same session store, early data now refused.
        let mut tls = (*pair.server_tls).clone();
        tls.max_early_data_size = 0;
        pair.restart_server(tls, TransportConfig::default());
        pair.sim
            .set_link(qstream_proto::sim::LinkConfig { loss, ..sim_link() });
        let request = request();
        let rejected = exchange(&mut pair, &request);
        assert_eq!(rejected.request, request, "loss {loss}");
        assert_eq!(rejected.client, EarlyData::Rejected, "{rejected:?}");
        assert_eq!(rejected.server, EarlyData::NotAttempted, "{rejected:?}");
        assert_eq!(rejected.early_on_server, Some(false));
        assert!(rejected.zero_rtt_sent >= 4, "{rejected:?}");
        assert_eq!(rejected.zero_rtt_received, 0, "{rejected:?}");
        assert_eq!(pair.client_conn().unwrap().handshake_resumed(), Some(true));
    }
}

/// A server session store that hands out a ticket without removing it, as a store shared
/// across servers without single-use semantics would: it lets a replay resume.
#[derive(Debug)]
struct ReusableTickets(Arc<dyn rustls::server::StoresServerSessions>);

impl rustls::server::StoresServerSessions for ReusableTickets {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.0.put(key, value)
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get(key)
    }
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get(key)
    }
    fn can_cache(&self) -> bool {
        true
    }
}

/// Captures a client's 0-RTT flight, lets the connection run and end, then replays the flight
/// to the server from the client's address: the connection the replay makes.
fn replay_first_flight(pair: &mut Pair) -> (EarlyData, u64, bool) {
    let captured: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
    let capture = captured.clone();
    pair.sim.set_filter(Some(Box::new(move |from, _, bytes| {
        if from == client_addr() && capture.borrow().len() < 4 {
            capture.borrow_mut().push(bytes.to_vec());
        }
        true
    })));
    let original = exchange(pair, &request());
    assert_eq!(original.server, EarlyData::Accepted, "{original:?}");
    pair.sim.set_filter(None);
    let now = pair.sim.now();
    for handle in pair.sim.endpoint(CLIENT).connection_handles() {
        let client = pair.sim.endpoint(CLIENT).connection_mut(handle).unwrap();
        client.close(now, qstream_proto::wire::VarInt::from_u32(0), b"done");
    }
    let server = |p: &mut Pair| p.sim.endpoint(SERVER).connection_handles();
    pair.run_until(Duration::from_secs(5), |p| {
        server(p)
            .into_iter()
            .all(|h| p.sim.endpoint(SERVER).connection(h).unwrap().is_drained())
    });
    for handle in server(pair) {
        assert!(
            pair.sim
                .endpoint(SERVER)
                .remove(handle)
                .unwrap()
                .is_drained()
        );
    }
    let now = pair.sim.now();
    for datagram in captured.borrow().iter() {
        pair.sim.endpoint(SERVER).handle_datagram(
            now,
            client_addr(),
            None,
            BytesMut::from(&datagram[..]),
        );
    }
    let replayed = server(pair);
    assert_eq!(replayed.len(), 1, "the replayed Initial makes a connection");
    let server = pair
        .sim
        .endpoint(SERVER)
        .connection_mut(replayed[0])
        .unwrap();
    let opened = server.accept(Dir::Bi).is_some();
    (
        server.early_data(),
        server.stats().zero_rtt_packets_received,
        opened,
    )
}

/// RFC 8446 §8, RFC 9001 §9.2: a captured 0-RTT flight replayed to the server finds its ticket
/// already used (rustls takes each from the server's session store once), so the replay gets a
/// full handshake and its early data is never processed. With a store that lets a ticket be
/// used twice, the same replay opens the stream again: the single-use store is what refuses
/// replays.
#[test]
fn zerortt_replayed_flight_is_not_processed_again() {
    let mut pair = resumable_pair(PairOptions {
        link: sim_link(),
        ..PairOptions::default()
    });
    let (status, received, opened) = replay_first_flight(&mut pair);
    assert_eq!(status, EarlyData::NotAttempted);
    assert_eq!(received, 0);
    assert!(!opened, "no stream of the replay was opened");

    let mut pair = resumable_pair(PairOptions {
        link: sim_link(),
        ..PairOptions::default()
    });
    let mut tls = (*pair.server_tls).clone();
    tls.session_storage = Arc::new(ReusableTickets(tls.session_storage.clone()));
    pair.restart_server(tls, TransportConfig::default());
    let (status, received, opened) = replay_first_flight(&mut pair);
    assert_eq!(status, EarlyData::Accepted);
    assert!(received > 0);
    assert!(opened, "the replay's request was taken again");
}

/// RFC 9000 §7.4.1, RFC9000-085: a server that accepts 0-RTT must not lower the limits the
/// client used; a client that sees it lowered ends the connection with PROTOCOL_VIOLATION.
#[test]
fn zerortt_remembered_limits_lowered_by_the_server_end_the_connection() {
    let mut pair = resumable_pair(PairOptions {
        link: sim_link(),
        ..PairOptions::default()
    });
    let tls = (*pair.server_tls).clone();
    let mut lowered = TransportConfig::default();
    lowered.streams.connection_window /= 2;
    pair.restart_server(tls, lowered);
    let request = request();
    let outcome = exchange(&mut pair, &request);
    assert_eq!(outcome.client, EarlyData::Accepted, "{outcome:?}");
    let reason = pair.client_conn().unwrap().close_reason().cloned();
    match reason {
        Some(qstream_proto::ConnectionError::TransportError(error)) => {
            assert_eq!(error.code, TransportErrorCode::PROTOCOL_VIOLATION);
            assert!(error.reason.contains("initial_max_data"), "{error:?}");
        }
        other => panic!("expected a PROTOCOL_VIOLATION close, got {other:?}"),
    }
}

/// RFC 9369 §5, RFC9369-015: a ticket from a version 1 connection does not carry 0-RTT in a
/// version 2 connection; the request waits for the handshake.
#[test]
fn zerortt_ticket_of_another_version_is_not_used() {
    let mut pair = resumable_pair(PairOptions {
        link: sim_link(),
        ..PairOptions::default()
    });
    pair.client_config.version = Version::V2;
    let request = request();
    let outcome = exchange(&mut pair, &request);
    assert_eq!(outcome.request, request);
    assert_eq!(outcome.client, EarlyData::NotAttempted, "{outcome:?}");
    assert_eq!(outcome.zero_rtt_sent, 0);
    assert_eq!(outcome.early_on_server, Some(false));
    assert_eq!(pair.client_conn().unwrap().version(), Version::V2);
}

fn sim_link() -> qstream_proto::sim::LinkConfig {
    qstream_proto::sim::LinkConfig {
        delay: DELAY,
        ..qstream_proto::sim::LinkConfig::default()
    }
}
