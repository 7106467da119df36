//! Packet number encoding and decoding (RFC 9000 §17.1, Appendix A.2 and A.3).

/// The low-order bytes of a packet number as they appear on the wire: 1 to 4 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TruncatedPacketNumber {
    value: u32,
    len: usize,
}

impl TruncatedPacketNumber {
    /// Truncates `full` to the fewest bytes that let the peer recover it: more than twice the
    /// range of packet numbers not yet acknowledged (RFC 9000 §17.1, RFC9000-289; Appendix A.2).
    /// Before any acknowledgment the range counts from 0 (RFC9000-288).
    pub fn encode(full: u64, largest_acked: Option<u64>) -> Self {
        let unacked = match largest_acked {
            Some(acked) => full.saturating_sub(acked),
            None => full.saturating_add(1),
        };
        // The number of bits must be at least one more than log2(unacked), and the on-wire field
        // holds at most 4 bytes; a sender never lets 2^31 packets go unacknowledged.
        let min_bits = 64 - unacked.leading_zeros() + 1;
        let len = min_bits.div_ceil(8).clamp(1, 4) as usize;
        let mask = if len == 4 {
            u32::MAX
        } else {
            (1u32 << (8 * len)) - 1
        };
        Self {
            value: full as u32 & mask,
            len,
        }
    }

    /// Builds a truncated packet number from its wire bytes (1 to 4 of them, big-endian).
    pub fn from_wire(bytes: &[u8]) -> Option<Self> {
        if !(1..=4).contains(&bytes.len()) {
            return None;
        }
        let value = bytes
            .iter()
            .fold(0u32, |acc, &byte| (acc << 8) | u32::from(byte));
        Some(Self {
            value,
            len: bytes.len(),
        })
    }

    /// The on-wire value.
    pub fn value(self) -> u32 {
        self.value
    }

    /// The field's length in bytes: 1 to 4.
    pub fn size(self) -> usize {
        self.len
    }

    /// Writes the field's bytes into `out`, which must be as long as the field.
    pub fn write(self, out: &mut [u8]) {
        out.copy_from_slice(&self.value.to_be_bytes()[4 - self.len..]);
    }

    /// Recovers the full packet number closest to `largest_received + 1` whose low bytes are this
    /// value (RFC 9000 Appendix A.3).
    pub fn decode(self, largest_received: Option<u64>) -> u64 {
        let expected = largest_received.map_or(0, |largest| largest + 1);
        let win = 1u64 << (8 * self.len);
        let hwin = win / 2;
        let mask = win - 1;
        let candidate = (expected & !mask) | u64::from(self.value);
        if expected >= hwin && candidate <= expected - hwin && candidate < (1 << 62) - win {
            candidate + win
        } else if candidate > expected + hwin && candidate >= win {
            candidate - win
        } else {
            candidate
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9000 Appendix A.2: the two worked examples.
    #[test]
    fn rfc9000_appendix_a2_examples() {
        assert_eq!(
            TruncatedPacketNumber::encode(0xac5c02, Some(0xabe8b3)).size(),
            2
        );
        assert_eq!(
            TruncatedPacketNumber::encode(0xace8fe, Some(0xabe8b3)).size(),
            3
        );
    }

    /// RFC 9000 Appendix A.3 (and §17.1): 0x9b32 after 0xa82f30ea decodes to 0xa82f9b32.
    #[test]
    fn rfc9000_appendix_a3_example() {
        let pn = TruncatedPacketNumber::from_wire(&[0x9b, 0x32]).unwrap();
        assert_eq!(pn.decode(Some(0xa82f30ea)), 0xa82f9b32);
    }

    #[test]
    fn first_packets_use_full_range() {
        let pn = TruncatedPacketNumber::encode(0, None);
        assert_eq!((pn.size(), pn.decode(None)), (1, 0));
        assert_eq!(TruncatedPacketNumber::encode(200, None).size(), 2);
    }

    #[test]
    fn decode_near_edges() {
        // Wrap upwards and downwards around a window boundary.
        let pn = TruncatedPacketNumber::from_wire(&[0x01]).unwrap();
        assert_eq!(pn.decode(Some(0xff)), 0x101);
        let pn = TruncatedPacketNumber::from_wire(&[0xff]).unwrap();
        assert_eq!(pn.decode(Some(0x100)), 0xff);
        // Near 2^62 the candidate is never pushed beyond the packet number space.
        let pn = TruncatedPacketNumber::from_wire(&[0x00]).unwrap();
        let near_max = (1u64 << 62) - 2;
        assert!(pn.decode(Some(near_max)) < 1 << 62);
    }
}
