//! qstream: an async QUIC transport on tokio whose streams cannot leak or hang.
//!
//! The protocol lives in [`qstream_proto`], a sans-IO state machine; this crate owns the UDP
//! socket (through quinn-udp), the timers and the wakers. One driver task per [`Endpoint`] does
//! all I/O; [`Connection`], [`SendStream`] and [`RecvStream`] are handles.
//!
//! Closing, with quic-go's names: [`SendStream::finish`] is Close, [`SendStream::reset`] is
//! CancelWrite, [`RecvStream::stop`] is CancelRead. Dropping a handle never leaks a half-open
//! stream: an unfinished send half is reset, an unread receive half stopped.

mod connection;
mod endpoint;
mod qlog;
mod socket;
pub mod tls;

pub use connection::{
    Connection, ReadError, RecvStream, ResetByPeer, SendDatagramError, SendStream, TryOpenError,
};
pub use endpoint::{Connecting, Endpoint, ZeroRttAccepted};
pub use qstream_proto as proto;
pub use qstream_proto::{ClientConfig, ConnectionError, ServerConfig, TransportConfig};
pub use socket::IoStats;

/// A rustls key log that appends TLS secrets to the file named by the `SSLKEYLOGFILE`
/// environment variable, and does nothing when it is unset: set it as `key_log` on a rustls
/// client or server configuration to let Wireshark decrypt captures.
pub fn key_log() -> std::sync::Arc<dyn rustls::KeyLog> {
    std::sync::Arc::new(rustls::KeyLogFile::new())
}
