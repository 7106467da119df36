//! Stateless reset (RFC 9000 §10.3): tokens derived from a static key, and recognising and
//! building stateless reset packets.

use std::fmt;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::hmac;

use crate::wire::ConnectionId;
pub use crate::wire::StatelessResetToken;

/// The smallest stateless reset this implementation sends or recognises: 5 bytes that look like a
/// short header and packet number, then the 16-byte token. That is also the smallest valid short
/// header packet (RFC 9000 §10.3, RFC 9001 Appendix A.5).
pub const MIN_STATELESS_RESET_LEN: usize = 21;

impl StatelessResetToken {
    /// Whether `datagram` ends in this token, compared without leaking where it differs
    /// (RFC 9000 §10.3.1, RFC9000-199). Datagrams too short to be a stateless reset never match.
    /// A match ends the connection whatever the header form (RFC9000-196, RFC9000-200).
    pub fn matches_datagram(&self, datagram: &[u8]) -> bool {
        datagram.len() >= MIN_STATELESS_RESET_LEN
            && verify_slices_are_equal(&datagram[datagram.len() - 16..], self.as_ref()).is_ok()
    }
}

/// Derives stateless reset tokens from a static key, so that an endpoint that lost a connection's
/// state can still reset it (RFC 9000 §10.3.2): the token is HMAC-SHA256(key, connection ID)
/// truncated to 16 bytes, hard to guess without the key (RFC9000-201), and distinct per connection
/// ID (RFC9000-205).
pub struct StatelessResetKey(hmac::Key);

impl StatelessResetKey {
    /// A key from secret bytes; use at least 32 random bytes.
    pub fn new(secret: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// The token for connection ID `cid`.
    pub fn token(&self, cid: &ConnectionId) -> StatelessResetToken {
        let tag = hmac::sign(&self.0, cid);
        let mut token = [0; 16];
        token.copy_from_slice(&tag.as_ref()[..16]);
        StatelessResetToken::from(token)
    }
}

impl fmt::Debug for StatelessResetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StatelessResetKey(..)")
    }
}

/// How long a stateless reset sent in reply to a `received_len`-byte packet may be, or `None` when
/// no reset may be sent because it could not be shorter than what triggered it (RFC9000-206,
/// which also rules out loops between two endpoints resetting each other).
///
/// Replies are one byte shorter than the packet when it is 43 bytes or shorter (RFC9000-192), and
/// 42 bytes otherwise: well under three times the trigger (RFC9000-193), and as long as a short
/// header packet with a 20-byte connection ID and a minimal payload, so it is not distinguishable
/// by size.
pub fn stateless_reset_len(received_len: usize) -> Option<usize> {
    let len = received_len.checked_sub(1)?.min(42);
    (len >= MIN_STATELESS_RESET_LEN).then_some(len)
}

/// Writes a stateless reset into `out`, whose length is the reset's length (see
/// [`stateless_reset_len`]): a short header first byte (RFC9000-195) with the fixed bit set, then
/// unpredictable bytes (RFC9000-190), then `token`. `out` must be filled with random bytes by the
/// caller beforehand; this keeps the core free of a random source.
pub fn encode_stateless_reset(token: &StatelessResetToken, out: &mut [u8]) {
    debug_assert!(out.len() >= MIN_STATELESS_RESET_LEN);
    out[0] = 0x40 | (out[0] & 0x3f);
    let token_start = out.len() - 16;
    out[token_start..].copy_from_slice(token.as_ref());
}
