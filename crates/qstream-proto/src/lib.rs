//! The sans-IO protocol core of qstream: a QUIC (RFC 9000, 9001, 9002) implementation with no
//! sockets, no clock, no threads and no async.
//!
//! Everything here is a pure function of its inputs: bytes in, bytes out, and time is always a
//! parameter. That is what makes every protocol behaviour testable deterministically.
//!
//! - [`wire`]: the wire format: variable-length integers, frames, packet headers, packet numbers
//!   and transport parameters. Every decoder takes untrusted bytes and returns a [`DecodeError`]
//!   carrying the RFC 9000 §20 error code the input maps to; none panics.
//! - [`crypto`]: packet protection through rustls's QUIC API, Initial keys for QUIC v1 and v2, and
//!   the Retry integrity tag.
//! - [`stateless_reset`]: stateless reset tokens and packets (RFC 9000 §10.3).
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
pub mod wire;

pub use config::{ClientConfig, EndpointConfig, ServerConfig, TransportConfig};
pub use connection::{Connection, ConnectionError, EcnCodepoint, Event, Transmit};
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
