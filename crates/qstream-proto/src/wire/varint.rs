//! Variable-length integers (RFC 9000 §16).

use std::fmt;

use bytes::BufMut;

/// An integer in the range 0..=2^62-1, the values a QUIC variable-length integer can carry
/// (RFC 9000 §16). Holding one proves the value is encodable.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct VarInt(u64);

/// A value was too large for a variable-length integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VarIntBoundsExceeded;

impl fmt::Display for VarIntBoundsExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("value exceeds 2^62-1, the largest QUIC variable-length integer")
    }
}

impl std::error::Error for VarIntBoundsExceeded {}

impl VarInt {
    /// The largest value: 2^62-1.
    pub const MAX: Self = Self((1 << 62) - 1);
    /// Zero.
    pub const ZERO: Self = Self(0);

    /// Any `u32` fits.
    pub const fn from_u32(value: u32) -> Self {
        Self(value as u64)
    }

    /// Fails when `value` exceeds [`VarInt::MAX`].
    pub const fn from_u64(value: u64) -> Result<Self, VarIntBoundsExceeded> {
        if value <= Self::MAX.0 {
            Ok(Self(value))
        } else {
            Err(VarIntBoundsExceeded)
        }
    }

    /// The value.
    pub const fn into_inner(self) -> u64 {
        self.0
    }

    /// The number of bytes the shortest encoding takes: 1, 2, 4 or 8.
    pub const fn size(self) -> usize {
        size_of_u62(self.0)
    }

    /// Writes the shortest encoding.
    pub fn encode<B: BufMut>(self, buf: &mut B) {
        match self.size() {
            1 => buf.put_u8(self.0 as u8),
            2 => buf.put_u16(0x4000 | self.0 as u16),
            4 => buf.put_u32(0x8000_0000 | self.0 as u32),
            _ => buf.put_u64(0xc000_0000_0000_0000 | self.0),
        }
    }

    /// Decodes the varint at the start of `bytes`, returning it and the number of bytes it took, or
    /// `None` when `bytes` ends first. Any encoding length is accepted for any value (§16 allows
    /// non-minimal encodings except where a field says otherwise, as frame types do).
    pub fn decode_prefix(bytes: &[u8]) -> Option<(Self, usize)> {
        let first = *bytes.first()?;
        let len = 1usize << (first >> 6);
        let encoded = bytes.get(..len)?;
        let mut value = u64::from(first & 0x3f);
        for &byte in &encoded[1..] {
            value = (value << 8) | u64::from(byte);
        }
        Some((Self(value), len))
    }
}

/// The shortest encoding length of a value known to be at most 2^62-1.
pub(crate) const fn size_of_u62(value: u64) -> usize {
    if value < 1 << 6 {
        1
    } else if value < 1 << 14 {
        2
    } else if value < 1 << 30 {
        4
    } else {
        8
    }
}

impl From<u8> for VarInt {
    fn from(value: u8) -> Self {
        Self(value.into())
    }
}

impl From<u16> for VarInt {
    fn from(value: u16) -> Self {
        Self(value.into())
    }
}

impl From<u32> for VarInt {
    fn from(value: u32) -> Self {
        Self(value.into())
    }
}

impl TryFrom<u64> for VarInt {
    type Error = VarIntBoundsExceeded;
    fn try_from(value: u64) -> Result<Self, Self::Error> {
        Self::from_u64(value)
    }
}

impl TryFrom<usize> for VarInt {
    type Error = VarIntBoundsExceeded;
    fn try_from(value: usize) -> Result<Self, Self::Error> {
        Self::from_u64(value as u64)
    }
}

impl From<VarInt> for u64 {
    fn from(value: VarInt) -> Self {
        value.0
    }
}

impl fmt::Debug for VarInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for VarInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    /// RFC 9000 Appendix A.1 and §16 Table 4 examples.
    #[test]
    fn rfc9000_appendix_a1_examples() {
        let cases: [(&[u8], u64); 5] = [
            (&hex!("c2197c5eff14e88c"), 151_288_809_941_952_652),
            (&hex!("9d7f3e7d"), 494_878_333),
            (&hex!("7bbd"), 15_293),
            (&hex!("25"), 37),
            (&hex!("4025"), 37),
        ];
        for (bytes, value) in cases {
            assert_eq!(
                VarInt::decode_prefix(bytes),
                Some((VarInt(value), bytes.len()))
            );
        }
        for (bytes, value) in &cases[..4] {
            let mut out = Vec::new();
            VarInt(*value).encode(&mut out);
            assert_eq!(&out, bytes, "shortest encoding of {value}");
        }
    }

    #[test]
    fn bounds() {
        assert_eq!(VarInt::from_u64(1 << 62), Err(VarIntBoundsExceeded));
        assert_eq!(VarInt::from_u64((1 << 62) - 1), Ok(VarInt::MAX));
        let mut out = Vec::new();
        VarInt::MAX.encode(&mut out);
        assert_eq!(out, hex!("ffffffffffffffff"));
    }

    #[test]
    fn bad_input_varint_truncated() {
        for bytes in [
            &hex!("")[..],
            &hex!("40"),
            &hex!("80ffff"),
            &hex!("c0ffffffffffff"),
        ] {
            assert_eq!(VarInt::decode_prefix(bytes), None);
        }
    }
}
