//! The bytes a stream has written and the peer has not acknowledged yet.

/// Written, unacknowledged stream data in a ring: acknowledged bytes leave the front, written
/// bytes join the back, and neither moves what stays. The ring grows (and then copies once)
/// only when more is buffered than ever before.
#[derive(Debug, Default)]
pub(crate) struct SendBuffer {
    ring: Vec<u8>,
    /// Index in `ring` of the first buffered byte.
    head: usize,
    /// Bytes buffered.
    len: usize,
}

impl SendBuffer {
    /// Bytes buffered.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends `data`.
    pub(crate) fn push(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let needed = self.len + data.len();
        if needed > self.ring.len() {
            self.grow(needed);
        }
        let tail = (self.head + self.len) % self.ring.len();
        let first = data.len().min(self.ring.len() - tail);
        self.ring[tail..tail + first].copy_from_slice(&data[..first]);
        self.ring[..data.len() - first].copy_from_slice(&data[first..]);
        self.len = needed;
    }

    /// The buffered bytes from `start` towards `end` (both counted from the front) that are
    /// contiguous in memory: all of them, or fewer where the ring wraps.
    pub(crate) fn contiguous(&self, start: usize, end: usize) -> &[u8] {
        debug_assert!(start <= end && end <= self.len);
        if start == end {
            return &[];
        }
        let from = (self.head + start) % self.ring.len();
        let to = from + (end - start).min(self.ring.len() - from);
        &self.ring[from..to]
    }

    /// Drops `n` bytes from the front.
    pub(crate) fn advance(&mut self, n: usize) {
        debug_assert!(n <= self.len);
        self.len -= n;
        self.head = if self.len == 0 {
            0
        } else {
            (self.head + n) % self.ring.len()
        };
    }

    /// Drops everything and the memory that held it.
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }

    /// Makes room for `needed` bytes: at least double, in order from index 0.
    fn grow(&mut self, needed: usize) {
        let capacity = needed.max(2 * self.ring.len());
        let mut ring = vec![0; capacity];
        let first = self.contiguous(0, self.len);
        let first_len = first.len();
        ring[..first_len].copy_from_slice(first);
        ring[first_len..self.len].copy_from_slice(self.contiguous(first_len, self.len));
        self.ring = ring;
        self.head = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything buffered, joined across the wrap.
    fn contents(buffer: &SendBuffer) -> Vec<u8> {
        let mut out = Vec::new();
        while out.len() < buffer.len() {
            out.extend_from_slice(buffer.contiguous(out.len(), buffer.len()));
        }
        out
    }

    #[test]
    fn streams_send_buffer_wraps_grows_and_keeps_order() {
        let mut buffer = SendBuffer::default();
        let mut model = std::collections::VecDeque::new();
        let mut next = 0u8;
        // Writes and acknowledgments of varied sizes, so the ring wraps and grows at every
        // position.
        for round in 0..200usize {
            let write: Vec<u8> = (0..(round * 37) % 3000)
                .map(|_| {
                    next = next.wrapping_add(1);
                    next
                })
                .collect();
            buffer.push(&write);
            model.extend(write);
            let drop = ((round * 53) % 2500).min(model.len());
            buffer.advance(drop);
            model.drain(..drop);
            assert_eq!(buffer.len(), model.len());
            assert_eq!(contents(&buffer), model.iter().copied().collect::<Vec<_>>());
        }
        // A slice in the middle stops at the wrap, never beyond `end`.
        let len = buffer.len();
        let piece = buffer.contiguous(len / 3, len / 2);
        assert!(piece.len() <= len / 2 - len / 3);
        let expected: Vec<u8> = model
            .range(len / 3..len / 3 + piece.len())
            .copied()
            .collect();
        assert_eq!(piece, &expected[..]);
        buffer.clear();
        assert_eq!(buffer.len(), 0);
        assert!(buffer.contiguous(0, 0).is_empty());
    }
}
