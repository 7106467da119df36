//! The stateless reset token (RFC 9000 §10.3) as frames and transport parameters carry it.

use std::fmt;

/// A 16-byte stateless reset token (RFC 9000 §10.3).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatelessResetToken([u8; 16]);

impl From<[u8; 16]> for StatelessResetToken {
    fn from(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }
}

impl AsRef<[u8]> for StatelessResetToken {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for StatelessResetToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StatelessResetToken(")?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        f.write_str(")")
    }
}
