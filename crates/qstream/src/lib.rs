//! qstream: an async QUIC transport on tokio whose streams cannot leak or hang.
//!
//! The protocol lives in [`qstream_proto`], a sans-IO state machine; this crate will own sockets,
//! timers and wakers. Until the async API lands it re-exports the protocol core, so applications
//! and the `qstream` tool depend on one crate.

pub use qstream_proto as proto;
