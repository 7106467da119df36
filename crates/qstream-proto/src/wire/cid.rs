//! Connection IDs (RFC 9000 §5.1).

use std::fmt;
use std::ops::Deref;

/// A QUIC version 1 or 2 connection ID: 0 to 20 bytes (RFC 9000 §17.2), stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ConnectionId {
    len: u8,
    bytes: [u8; ConnectionId::MAX_LEN],
}

impl ConnectionId {
    /// The longest connection ID QUIC v1 and v2 allow (RFC 9000 §17.2, RFC9000-292).
    pub const MAX_LEN: usize = 20;

    /// Copies `bytes` into a connection ID; `None` when it is longer than [`Self::MAX_LEN`].
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > Self::MAX_LEN {
            return None;
        }
        let mut id = Self {
            len: bytes.len() as u8,
            bytes: [0; Self::MAX_LEN],
        };
        id.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(id)
    }

    /// The empty connection ID.
    pub const EMPTY: Self = Self {
        len: 0,
        bytes: [0; Self::MAX_LEN],
    };
}

impl Deref for ConnectionId {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl AsRef<[u8]> for ConnectionId {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.iter() {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}
