//! A bounds-checked cursor over untrusted bytes.

use super::varint::VarInt;

/// The input ended before the field being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Truncated;

/// Reads fields from the front of a byte slice. Every read checks bounds; none panics.
#[derive(Clone, Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes not yet read.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Truncated> {
        let (&first, rest) = self.buf.split_first().ok_or(Truncated)?;
        self.buf = rest;
        Ok(first)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Truncated> {
        self.array().map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Truncated> {
        self.array().map(u32::from_be_bytes)
    }

    pub(crate) fn bytes(&mut self, len: usize) -> Result<&'a [u8], Truncated> {
        if len > self.buf.len() {
            return Err(Truncated);
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Truncated> {
        let bytes = self.bytes(N)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// Reads a variable-length integer (RFC 9000 §16).
    pub(crate) fn varint(&mut self) -> Result<u64, Truncated> {
        let (value, len) = VarInt::decode_prefix(self.buf).ok_or(Truncated)?;
        self.buf = &self.buf[len..];
        Ok(value.into_inner())
    }

    /// Reads a varint length and then that many bytes.
    pub(crate) fn length_prefixed(&mut self) -> Result<&'a [u8], Truncated> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| Truncated)?;
        self.bytes(len)
    }

    /// Returns all unread bytes and leaves the reader empty.
    pub(crate) fn take_rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}
