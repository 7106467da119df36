//! The transports compared, behind one interface: serve requests, connect, make a request.

mod qstream_quic;
mod quinn_quic;
mod tcp_tls;

use std::future::Future;
use std::io;
use std::net::SocketAddr;

pub(crate) use qstream_quic::{Bbr, NewReno, Qstream};
pub(crate) use quinn_quic::Quinn;
pub(crate) use tcp_tls::TcpTls;

use crate::tls::Tls;

/// Bytes of every response.
pub(crate) const RESPONSE_LEN: usize = 64;
/// The most streams (or, over TCP, requests) a server lets a client have open at once.
pub(crate) const STREAM_LIMIT: u32 = 100;

/// Counters of one connection's sending side, for the bulk transfer's efficiency figures.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SendCounters {
    /// Packets the client sent.
    pub(crate) packets_sent: u64,
    /// Packets the client declared lost.
    pub(crate) packets_lost: u64,
    /// Bytes the client sent in UDP payloads.
    pub(crate) bytes_sent: u64,
    /// Bytes of the packets it declared lost.
    pub(crate) bytes_lost: u64,
    /// Probe timeouts it took, where the stack counts them.
    pub(crate) probe_timeouts: Option<u64>,
    /// ACK frames the client received (one per packet from the server at most).
    pub(crate) acks_received: u64,
    /// Datagrams the client's socket sent.
    pub(crate) datagrams_sent: u64,
    /// Send system calls those took.
    pub(crate) send_calls: u64,
}

/// One transport under test. A request is a fresh bidirectional stream (over TCP, a turn on a
/// pooled connection) carrying the request bytes, finished; the server reads all of them and
/// answers with [`RESPONSE_LEN`] bytes, finished.
pub(crate) trait Stack: Send + Sync + 'static {
    /// The name in reports.
    const NAME: &'static str;
    /// Whether it runs over UDP, so that a datagram relay can carry it.
    const OVER_UDP: bool;
    /// What a client connects from.
    type Endpoint: Send + Sync + 'static;
    /// One connection (TCP: a pool that grows to the concurrency asked of it).
    type Client: Clone + Send + Sync + 'static;

    /// Serves requests on a loopback port, announced through `ready`, until dropped.
    fn serve(tls: Tls, ready: std::sync::mpsc::Sender<SocketAddr>) -> impl Future<Output = ()>;

    /// A client endpoint on loopback.
    fn endpoint(tls: &Tls) -> io::Result<Self::Endpoint>;

    /// A connection to `addr` with its handshake complete.
    fn connect(
        endpoint: &Self::Endpoint,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::Client>> + Send;

    /// One request of `size` bytes and its response.
    fn request(client: &Self::Client, size: u64) -> impl Future<Output = io::Result<()>> + Send;

    /// Closes the connection without waiting.
    fn close(client: Self::Client);

    /// The sending counters of `client`, where the transport exposes them.
    fn send_counters(endpoint: &Self::Endpoint, client: &Self::Client) -> Option<SendCounters>;
}

/// Zeros to write requests from.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// The next piece of a `remaining`-byte request body.
fn body_chunk(remaining: u64) -> &'static [u8] {
    &ZEROS[..remaining.min(ZEROS.len() as u64) as usize]
}

fn other(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(error.to_string())
}
