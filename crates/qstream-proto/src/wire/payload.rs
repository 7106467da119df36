//! The payload of a packet being written: frames go in only while they fit.

use super::VarInt;
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

    /// The most data bytes a frame can carry here when its fields before the data take
    /// `fields` bytes and a varint Length precedes the data: the room less both, the Length's
    /// size being the one the data length needs.
    pub(crate) fn data_room(&self, fields: usize) -> usize {
        let room = self.room().saturating_sub(fields);
        // A varint of n bytes holds values below 2^(8n - 2): the most data with each size of
        // Length, and the best of them.
        [1usize, 2, 4, 8]
            .into_iter()
            .map(|size| {
                let most = (1u64 << (8 * size - 2)) - 1;
                (room.saturating_sub(size) as u64).min(most) as usize
            })
            .max()
            .unwrap_or(0)
    }

    /// The most data a CRYPTO frame at `offset` can carry here (RFC 9000 §19.6: type, Offset,
    /// Length).
    pub(crate) fn crypto_data_room(&self, offset: u64) -> usize {
        self.data_room(1 + VarInt::from_u64(offset).map_or(8, VarInt::size))
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

    #[test]
    fn data_room_is_exact_for_every_length_size() {
        for end in [
            0usize, 1, 3, 4, 5, 66, 67, 68, 100, 16_387, 16_388, 16_389, 70_000,
        ] {
            for offset in [0u64, 5, 1 << 20] {
                let mut buf = Vec::new();
                let n = Payload::new(&mut buf, end).crypto_data_room(offset);
                let encoded_len = |len: usize| {
                    let mut encoded = Vec::new();
                    Frame::Crypto {
                        offset: VarInt::from_u64(offset).unwrap(),
                        data: &vec![0; len],
                    }
                    .encode(&mut encoded);
                    encoded.len()
                };
                if n > 0 {
                    assert!(encoded_len(n) <= end, "{n} bytes overran {end} at {offset}");
                    assert!(encoded_len(n + 1) > end, "{n} is not the most for {end}");
                }
            }
        }
    }
}
