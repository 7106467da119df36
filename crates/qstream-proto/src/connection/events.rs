//! What a connection reports: to the application (events, errors, datagrams to send) and to
//! its endpoint (requests for connection IDs and tokens).

use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;

use crate::error::TransportError;
use crate::streams::StreamEvent;
use crate::wire::{ConnectionId, VarInt};

/// Why a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionError {
    /// This endpoint found a protocol error (or TLS failed) and closed the connection with it.
    TransportError(TransportError),
    /// The peer closed the connection with a transport error (CONNECTION_CLOSE type 0x1c).
    ConnectionClosed(TransportError),
    /// The peer's application closed the connection (CONNECTION_CLOSE type 0x1d).
    ApplicationClosed {
        /// The application's code.
        code: VarInt,
        /// The application's reason.
        reason: String,
    },
    /// This endpoint's application closed the connection.
    LocallyClosed,
    /// Nothing was heard from the peer for the idle timeout (RFC 9000 §10.1).
    TimedOut,
    /// The peer reset the connection with a stateless reset (RFC 9000 §10.3).
    Reset,
    /// The server speaks none of the versions this client offered (RFC 9000 §6).
    VersionMismatch,
}

impl ConnectionError {
    /// The TLS alert behind the error, when TLS failed on either side.
    pub fn tls_alert(&self) -> Option<u8> {
        match self {
            Self::TransportError(e) | Self::ConnectionClosed(e) => e.code.tls_alert(),
            _ => None,
        }
    }
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TransportError(e) => write!(f, "closed by us: {e}"),
            Self::ConnectionClosed(e) => write!(f, "closed by peer: {e}"),
            Self::ApplicationClosed { code, reason } => {
                write!(f, "closed by peer application: code {code}, {reason:?}")
            }
            Self::LocallyClosed => f.write_str("closed by this application"),
            Self::TimedOut => f.write_str("timed out: nothing heard from the peer"),
            Self::Reset => f.write_str("reset by the peer (stateless reset)"),
            Self::VersionMismatch => f.write_str("the peer speaks none of our QUIC versions"),
        }
    }
}

impl std::error::Error for ConnectionError {}

/// Something that happened on a connection, for the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed: application data can flow both ways.
    Connected,
    /// The connection ended. After this, only [`super::Connection::is_drained`] matters.
    Closed(ConnectionError),
    /// A DATAGRAM frame arrived (RFC 9221); read it with [`super::Connection::recv_datagram`].
    DatagramReceived,
    /// Something happened on a stream.
    Stream(StreamEvent),
}

/// The ECN codepoint of a datagram's IP header (RFC 3168).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EcnCodepoint {
    /// ECT(0): ECN-capable transport.
    Ect0,
    /// ECT(1): ECN-capable transport.
    Ect1,
    /// CE: congestion experienced, set by a router instead of dropping.
    Ce,
}

/// A datagram to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// The local address to send it from, when not the endpoint's own: a server's preferred
    /// address (RFC 9000 §9.6), given in [`crate::Endpoint::handle_datagram_at`]. `None` for
    /// the endpoint's own address.
    pub source: Option<SocketAddr>,
    /// Its length in the caller's buffer.
    pub size: usize,
    /// The ECN codepoint to send it with, when ECN is in use.
    pub ecn: Option<EcnCodepoint>,
    /// A probe timeout's datagram (RFC 9002 §6.2.4): send it with a system call of its own,
    /// not batched with others (GSO), so that the loss of one batch cannot take every probe.
    pub probe: bool,
}

/// Why a DATAGRAM could not be queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendDatagramError {
    /// The peer did not advertise max_datagram_frame_size (RFC 9221 §3, RFC9221-002).
    UnsupportedByPeer,
    /// The datagram is larger than the peer accepts or than fits in a packet; `max` is the
    /// largest that would be sent.
    TooLarge {
        /// The largest datagram payload that can be sent.
        max: usize,
    },
    /// The connection is not established or has closed.
    NotConnected,
}

impl fmt::Display for SendDatagramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedByPeer => f.write_str("the peer does not accept DATAGRAM frames"),
            Self::TooLarge { max } => write!(f, "datagram too large: at most {max} bytes"),
            Self::NotConnected => f.write_str("the connection is not established"),
        }
    }
}

impl std::error::Error for SendDatagramError {}

/// A request from a connection to its endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum EndpointEvent {
    /// Allocate this many connection IDs, route them here, and hand them over with
    /// [`super::Connection::issue_cids`].
    NeedCids(usize),
    /// This connection ID stopped routing here.
    RetiredCid(ConnectionId),
    /// Server: make a token for NEW_TOKEN and hand it over with [`super::Connection::send_new_token`].
    NeedToken,
    /// Client: the server sent this token for later connections.
    NewToken(Bytes),
}
