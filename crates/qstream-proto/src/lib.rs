//! The sans-IO protocol core of qstream: a QUIC (RFC 9000, 9001, 9002) implementation with no
//! sockets, no clock, no threads and no async.
//!
//! Everything here is a pure function of its inputs: bytes in, bytes out, and time is always a
//! parameter. That is what makes every protocol behaviour testable deterministically.
//!
//! # Layout
//!
//! Lower modules never import higher ones; there is no import cycle.
//!
//! - [`wire`]: the wire format: variable-length integers, frames, packet headers, packet numbers
//!   and spaces, transport parameters, and the payload a packet's frames are written into.
//!   Every decoder takes untrusted bytes and returns a [`DecodeError`] carrying the RFC 9000 §20
//!   error code the input maps to; none panics.
//! - [`crypto`]: packet protection through rustls's QUIC API, Initial keys for QUIC v1 and v2, and
//!   the Retry integrity tag.
//! - [`stateless_reset`]: stateless reset tokens and packets (RFC 9000 §10.3).
//! - `error`: [`TransportErrorCode`], [`TransportError`] and [`DecodeError`].
//! - `flow`: flow control as one sender's and one receiver's window, for connection data,
//!   stream data and stream counts alike (RFC 9000 §4), with *_BLOCKED and MAX_* repetition.
//! - [`streams`]: the stream map and the release rule; stream credit and the accept queue; what
//!   each received stream frame does; the send scheduler; snapshots and the peer-blocked report.
//! - [`recovery`]: RTT estimation, congestion controllers (CUBIC, NewReno, BBRv3) and pacing
//!   (RFC 9002).
//! - [`config`]: endpoint, client, server and transport settings, and the values this
//!   implementation advertises.
//! - `qlog`: qlog traces (quic-events) of a connection.
//! - [`connection`]: one connection's state machine: the receive path (`recv`), the send path
//!   (`send`), loss recovery (`recovery`), the path (address, RTT, congestion control, pacing,
//!   ECN, MTU, amplification), the handshake, version negotiation, timers and the idle
//!   timeout, the DATAGRAM queues, and the application's stream and datagram calls.
//! - `endpoint` ([`Endpoint`]): connections of one socket: routing by connection ID, the reset
//!   token index, Retry and address tokens, timers across connections.
//! - [`transmit`]: the send policy a driver applies: when to send before the rest of a
//!   receive batch is handled (each datagram's receipt, and the batch's answer-first rule),
//!   and how the datagrams it is given are grouped into GSO sends.
//! - [`sim`]: a deterministic in-memory network for tests and benchmarks; it applies the same
//!   send policy as a driver, so packet economy is tested there.
#![forbid(unsafe_code)]

pub mod config;
pub mod connection;
pub mod crypto;
mod endpoint;
mod error;
mod flow;
mod qlog;
mod range_set;
pub mod recovery;
pub mod sim;
pub mod stateless_reset;
pub mod streams;
mod token;
pub mod transmit;
pub mod wire;

pub use config::{ClientConfig, EndpointConfig, ServerConfig, TransportConfig};
pub use connection::{
    Connection, ConnectionError, EarlyData, EcnCodepoint, Event, PathProbe, ProbeError, Transmit,
};
pub use endpoint::{ConnectError, ConnectionHandle, Endpoint};
pub use error::{DecodeError, TransportError, TransportErrorCode};

/// Which end of a connection an endpoint is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The endpoint that initiated the connection.
    Client,
    /// The endpoint that accepted the connection.
    Server,
}

impl Side {
    /// The other side.
    pub fn peer(self) -> Self {
        match self {
            Self::Client => Self::Server,
            Self::Server => Self::Client,
        }
    }
}
