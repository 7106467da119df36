//! Packet protection (RFC 9001 §5) through rustls's QUIC API, with aws-lc-rs as the crypto
//! provider.
//!
//! rustls derives every key: Initial keys from the client's Destination Connection ID
//! ([`initial_keys`]), handshake and 1-RTT keys from the TLS handshake, and key updates. This module
//! applies them to packets ([`protect`], [`unprotect_header`], [`decrypt_payload`]) and computes the
//! Retry Integrity Tag, which rustls does not provide ([`retry_tag`]).

pub(crate) mod derived;
mod protection;
mod retry;

pub use protection::{UnprotectedHeader, decrypt_payload, protect, unprotect_header};
pub use retry::{retry_tag, retry_tag_valid};

use rustls::quic::Keys;

use crate::Side;
use crate::wire::Version;

/// The length of the AEAD tag of every QUIC cipher suite (RFC 9001 §5.3).
pub const TAG_LEN: usize = 16;

/// The length of the header protection sample (RFC 9001 §5.4.2).
pub const SAMPLE_LEN: usize = 16;

/// The rustls version tag for a QUIC version this implementation speaks.
pub fn rustls_version(version: Version) -> Option<rustls::quic::Version> {
    match version {
        Version::V1 => Some(rustls::quic::Version::V1),
        Version::V2 => Some(rustls::quic::Version::V2),
        _ => None,
    }
}

/// Initial packet protection keys for `side`, derived from the Destination Connection ID of the
/// client's first Initial (RFC 9001 §5.2, RFC 9369 §3.3). `None` for an unsupported version.
///
/// Initial packets always use AES-128-GCM with SHA-256 (RFC 9001 §5.2).
pub fn initial_keys(version: Version, client_dcid: &[u8], side: Side) -> Option<Keys> {
    let suite = rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .expect("a TLS 1.3 suite");
    let quic = suite.quic_suite().expect("AES-128-GCM supports QUIC");
    let side = match side {
        Side::Client => rustls::Side::Client,
        Side::Server => rustls::Side::Server,
    };
    Some(quic.keys(client_dcid, side, rustls_version(version)?))
}
