//! The peer's stateless reset tokens, indexed (RFC 9000 §10.3.1): a datagram that routes to no
//! connection is checked against them with one lookup, whatever the number of connections.

use std::collections::HashMap;

use rustc_hash::FxHashMap;

use super::ConnectionHandle;
use crate::stateless_reset::{MIN_STATELESS_RESET_LEN, StatelessResetToken};

/// The reset token of the connection ID each connection sends to (RFC9000-198: only tokens of
/// IDs in use count).
///
/// Tokens are keyed with the standard library's keyed SipHash: the peer chooses them, and an
/// unkeyed hash would let it force collisions. A lookup only finds a candidate; the token is
/// then compared in constant time (RFC9000-199).
#[derive(Debug, Default)]
pub(super) struct ResetTokens {
    by_token: HashMap<StatelessResetToken, ConnectionHandle>,
    by_connection: FxHashMap<ConnectionHandle, StatelessResetToken>,
}

impl ResetTokens {
    /// Records `handle`'s token now, replacing the one it had; `None` when it has none.
    pub(super) fn set(&mut self, handle: ConnectionHandle, token: Option<StatelessResetToken>) {
        if self.by_connection.get(&handle).copied() == token {
            return;
        }
        self.remove(handle);
        if let Some(token) = token {
            self.by_token.insert(token, handle);
            self.by_connection.insert(handle, token);
        }
    }

    /// Forgets `handle`'s token.
    pub(super) fn remove(&mut self, handle: ConnectionHandle) {
        if let Some(token) = self.by_connection.remove(&handle) {
            if self.by_token.get(&token) == Some(&handle) {
                self.by_token.remove(&token);
            }
        }
    }

    /// The connection whose token `datagram` ends in, if any: a stateless reset for it.
    pub(super) fn find(&self, datagram: &[u8]) -> Option<ConnectionHandle> {
        if datagram.len() < MIN_STATELESS_RESET_LEN {
            return None;
        }
        let tail: [u8; 16] = datagram[datagram.len() - 16..].try_into().ok()?;
        let handle = *self.by_token.get(&StatelessResetToken::from(tail))?;
        let token = self.by_connection.get(&handle)?;
        token.matches_datagram(datagram).then_some(handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_ending_in_a_connections_token_finds_it_and_no_other() {
        let mut tokens = ResetTokens::default();
        let (a, b) = (ConnectionHandle(1), ConnectionHandle(2));
        tokens.set(a, Some(StatelessResetToken::from([1; 16])));
        tokens.set(b, Some(StatelessResetToken::from([2; 16])));
        let mut datagram = vec![0x40; 30];
        datagram.extend_from_slice(&[2; 16]);
        assert_eq!(tokens.find(&datagram), Some(b));
        assert_eq!(
            tokens.find(&datagram[26..]),
            None,
            "too short to be a reset"
        );
        // The connection moved to another ID: its old token no longer counts.
        tokens.set(b, Some(StatelessResetToken::from([3; 16])));
        assert_eq!(tokens.find(&datagram), None);
        tokens.remove(a);
        datagram.truncate(30);
        datagram.extend_from_slice(&[1; 16]);
        assert_eq!(tokens.find(&datagram), None);
    }
}
