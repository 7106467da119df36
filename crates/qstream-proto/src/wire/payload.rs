//! The payload of a packet being written: frames go in only while they fit.

use super::frame::Frame;

/// A packet's frames being written into a buffer that must not grow past `end` (where the
/// packet's authentication tag begins). A frame is written whole or not at all, so no caller
/// counts frame sizes by hand.
#[derive(Debug)]
pub(crate) struct Payload<'a> {
    buf: &'a mut Vec<u8>,
    end: usize,
}

impl<'a> Payload<'a> {
    /// Frames appended to `buf` up to `end`.
    pub(crate) fn new(buf: &'a mut Vec<u8>, end: usize) -> Self {
        Self { buf, end }
    }

    /// Bytes still free.
    pub(crate) fn room(&self) -> usize {
        self.end.saturating_sub(self.buf.len())
    }

    /// The buffer's length: where the next frame starts.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Writes `frame` if it fits; false (and nothing written) if not.
    pub(crate) fn put(&mut self, frame: &Frame<'_>) -> bool {
        let start = self.buf.len();
        frame.encode(self.buf);
        if self.buf.len() > self.end {
            self.buf.truncate(start);
            return false;
        }
        true
    }

    /// Writes `frame`, which the caller sized to fit [`Self::room`].
    pub(crate) fn put_sized(&mut self, frame: &Frame<'_>) {
        frame.encode(self.buf);
        debug_assert!(
            self.buf.len() <= self.end,
            "a sized frame overran the packet"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::VarInt;

    #[test]
    fn a_frame_that_does_not_fit_leaves_the_payload_as_it_was() {
        let mut buf = vec![0xaa];
        let mut payload = Payload::new(&mut buf, 10);
        assert!(payload.put(&Frame::MaxData(VarInt::from_u32(1 << 20))));
        assert_eq!(payload.room(), 4);
        assert!(!payload.put(&Frame::MaxData(VarInt::from_u64(1 << 40).unwrap())));
        assert_eq!(payload.room(), 4);
        assert_eq!(buf.len(), 6);
    }
}
