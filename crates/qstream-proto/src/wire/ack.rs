//! ACK frames (RFC 9000 §19.3).

use std::ops::RangeInclusive;

use bytes::BufMut;

use super::VarInt;
use super::frame::{BodyErrorKind, FrameType};
use super::reader::{Reader, Truncated};

/// ECN counts carried by an ACK frame of type 0x03 (RFC 9000 §19.3.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EcnCounts {
    /// Packets received with the ECT(0) codepoint.
    pub ect0: VarInt,
    /// Packets received with the ECT(1) codepoint.
    pub ect1: VarInt,
    /// Packets received with the ECN-CE codepoint.
    pub ce: VarInt,
}

/// A decoded ACK frame. Its ranges were validated when it was decoded and are read lazily from
/// the packet, so decoding allocates nothing whatever the range count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack<'a> {
    /// The largest packet number acknowledged.
    pub largest: VarInt,
    /// The encoded ACK Delay field, in units of 2^ack_delay_exponent microseconds.
    pub delay: VarInt,
    /// ECN counts, present in type 0x03.
    pub ecn: Option<EcnCounts>,
    first_range: VarInt,
    range_count: VarInt,
    /// The Gap and ACK Range Length pairs after the first range, as on the wire.
    additional: &'a [u8],
}

impl<'a> Ack<'a> {
    /// The acknowledged packet numbers, as inclusive ranges from the largest down.
    pub fn ranges(&self) -> AckRanges<'a> {
        let largest = self.largest.into_inner();
        AckRanges {
            next: Some(largest - self.first_range.into_inner()..=largest),
            reader: Reader::new(self.additional),
        }
    }

    /// Writes an ACK frame for `ranges`, given from the largest down, non-empty, each range
    /// separated from the next by at least one missing packet number (RFC 9000 §19.3.1). `delay`
    /// is already scaled by the ack_delay_exponent.
    pub fn encode<B: BufMut>(
        ranges: impl ExactSizeIterator<Item = RangeInclusive<u64>>,
        delay: VarInt,
        ecn: Option<EcnCounts>,
        buf: &mut B,
    ) {
        let mut ranges = ranges.peekable();
        let count = ranges.len();
        let Some(first) = ranges.next() else {
            return;
        };
        let ty = if ecn.is_some() {
            FrameType::ACK_ECN
        } else {
            FrameType::ACK
        };
        buf.put_u8(ty.0 as u8);
        put(buf, *first.end());
        delay.encode(buf);
        put(buf, count as u64 - 1);
        put(buf, first.end() - first.start());
        let mut smallest = *first.start();
        for range in ranges {
            debug_assert!(
                *range.end() + 1 < smallest,
                "ACK ranges must be descending, gapped"
            );
            put(buf, smallest - range.end() - 2);
            put(buf, range.end() - range.start());
            smallest = *range.start();
        }
        if let Some(ecn) = ecn {
            encode_ecn(&ecn, buf);
        }
    }

    /// Writes the fields after the frame type, re-emitting the ranges as decoded.
    pub(super) fn encode_fields<B: BufMut>(&self, buf: &mut B) {
        self.largest.encode(buf);
        self.delay.encode(buf);
        self.range_count.encode(buf);
        self.first_range.encode(buf);
        buf.put_slice(self.additional);
        if let Some(ecn) = &self.ecn {
            encode_ecn(ecn, buf);
        }
    }

    /// Decodes the fields after the frame type, checking that no range reaches below packet
    /// number 0 (RFC 9000 §19.3.1, RFC9000-344). Each range pair takes at least two bytes, so the
    /// work is bounded by the input's length whatever the range count claims.
    pub(super) fn decode_fields(r: &mut Reader<'a>, with_ecn: bool) -> Result<Self, BodyErrorKind> {
        let largest = varint(r)?;
        let delay = varint(r)?;
        let range_count = varint(r)?;
        let first_range = varint(r)?;
        let mut smallest = largest
            .into_inner()
            .checked_sub(first_range.into_inner())
            .ok_or(BodyErrorKind::Invalid("first ACK range below packet 0"))?;
        let start = r.rest();
        for _ in 0..range_count.into_inner() {
            let gap = r.varint()?;
            let len = r.varint()?;
            smallest = smallest
                .checked_sub(gap)
                .and_then(|s| s.checked_sub(2))
                .and_then(|end| end.checked_sub(len))
                .ok_or(BodyErrorKind::Invalid("ACK range below packet 0"))?;
        }
        let additional = &start[..start.len() - r.remaining()];
        let ecn = if with_ecn {
            Some(EcnCounts {
                ect0: varint(r)?,
                ect1: varint(r)?,
                ce: varint(r)?,
            })
        } else {
            None
        };
        Ok(Self {
            largest,
            delay,
            ecn,
            first_range,
            range_count,
            additional,
        })
    }
}

fn varint(r: &mut Reader<'_>) -> Result<VarInt, Truncated> {
    r.varint()
        .map(|v| VarInt::from_u64(v).expect("decoded varints are at most 2^62-1"))
}

fn put<B: BufMut>(buf: &mut B, value: u64) {
    VarInt::from_u64(value)
        .expect("packet numbers are below 2^62")
        .encode(buf);
}

fn encode_ecn<B: BufMut>(ecn: &EcnCounts, buf: &mut B) {
    ecn.ect0.encode(buf);
    ecn.ect1.encode(buf);
    ecn.ce.encode(buf);
}

/// The ranges of an [`Ack`], largest first.
#[derive(Clone, Debug)]
pub struct AckRanges<'a> {
    next: Option<RangeInclusive<u64>>,
    reader: Reader<'a>,
}

impl Iterator for AckRanges<'_> {
    type Item = RangeInclusive<u64>;

    fn next(&mut self) -> Option<Self::Item> {
        let current = self.next.take()?;
        if !self.reader.is_empty() {
            // Validated at decode: these reads and subtractions cannot fail.
            let gap = self.reader.varint().ok()?;
            let len = self.reader.varint().ok()?;
            let end = current.start() - gap - 2;
            self.next = Some(end - len..=end);
        }
        Some(current)
    }
}
