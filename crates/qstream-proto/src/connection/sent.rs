//! The packets of one packet number space that are sent and not yet acknowledged or declared
//! lost, by packet number. Packet numbers only grow, so they live in a ring of slots from the
//! oldest outstanding one: adding at the end and removing anywhere cost O(1), nothing moves
//! (a B-tree shifted whole packet records on every insert and removal).

use std::collections::VecDeque;
use std::ops::{Bound, RangeBounds};

use super::space::SentPacket;

/// Outstanding packets by packet number.
#[derive(Debug, Default)]
pub(crate) struct SentPackets {
    /// Packet number of `slots[0]`.
    first: u64,
    /// One slot per packet number from `first`; `None` once acknowledged, lost, or never
    /// sent. The front slot is always occupied.
    slots: VecDeque<Option<SentPacket>>,
    len: usize,
}

impl SentPackets {
    /// Records packet `pn`, which is larger than every number recorded before.
    pub(crate) fn insert(&mut self, pn: u64, packet: SentPacket) {
        if self.slots.is_empty() {
            self.first = pn;
        }
        let index = (pn - self.first) as usize;
        debug_assert!(index >= self.slots.len(), "packet numbers only grow");
        while self.slots.len() < index {
            self.slots.push_back(None);
        }
        self.slots.push_back(Some(packet));
        self.len += 1;
    }

    /// Takes packet `pn` out, if it is outstanding.
    pub(crate) fn remove(&mut self, pn: u64) -> Option<SentPacket> {
        let index = usize::try_from(pn.checked_sub(self.first)?).ok()?;
        let packet = self.slots.get_mut(index)?.take()?;
        self.len -= 1;
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.first += 1;
        }
        Some(packet)
    }

    /// The outstanding packets with numbers in `range`, in order.
    pub(crate) fn range(
        &self,
        range: impl RangeBounds<u64>,
    ) -> impl Iterator<Item = (u64, &SentPacket)> + '_ {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => u64::MAX,
        };
        let last = self.first + self.slots.len() as u64;
        let (from, to) = (start.clamp(self.first, last), end.clamp(self.first, last));
        let (from, to) = ((from - self.first) as usize, (to - self.first) as usize);
        let first = self.first;
        self.slots
            .range(from..to.max(from))
            .enumerate()
            .filter_map(move |(i, slot)| slot.as_ref().map(|p| (first + (from + i) as u64, p)))
    }

    /// Every outstanding packet, in order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &SentPacket> + '_ {
        self.slots.iter().flatten()
    }

    /// Every outstanding packet, to change.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut SentPacket> + '_ {
        self.slots.iter_mut().flatten()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn clear(&mut self) {
        self.slots.clear();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::connection::space::Retransmit;

    fn packet(size: u16) -> SentPacket {
        SentPacket {
            time: Instant::now(),
            size,
            ack_eliciting: true,
            in_flight: true,
            ecn_marked: false,
            largest_ack: None,
            retransmit: Retransmit::default(),
            mtu_probe: false,
            path_validation: false,
        }
    }

    #[test]
    fn a_sent_packet_record_stays_small() {
        // Moved on every send and acknowledgment: what is rare (CRYPTO ranges, connection
        // IDs, a token) lives out of line.
        let size = std::mem::size_of::<SentPacket>();
        assert!(size <= 80, "SentPacket is {size} bytes");
    }

    #[test]
    fn sent_packets_behave_as_an_ordered_map() {
        let mut sent = SentPackets::default();
        for pn in [3, 4, 5, 7, 8] {
            sent.insert(pn, packet(pn as u16));
        }
        let numbers = |s: &SentPackets, r: std::ops::RangeInclusive<u64>| {
            s.range(r).map(|(pn, p)| (pn, p.size)).collect::<Vec<_>>()
        };
        assert_eq!(numbers(&sent, 0..=100).len(), 5);
        assert_eq!(numbers(&sent, 5..=7), vec![(5, 5), (7, 7)]);
        assert_eq!(sent.remove(6).map(|p| p.size), None);
        assert_eq!(sent.remove(4).map(|p| p.size), Some(4));
        assert_eq!(sent.remove(4).map(|p| p.size), None);
        assert_eq!(sent.remove(3).map(|p| p.size), Some(3));
        // The ring now starts at 5.
        assert_eq!(numbers(&sent, 0..=5), vec![(5, 5)]);
        assert_eq!(sent.range(..=7).count(), 2);
        assert_eq!(sent.remove(2).map(|p| p.size), None);
        for pn in [5, 7, 8] {
            assert!(sent.remove(pn).is_some());
        }
        assert!(sent.is_empty());
        sent.insert(20, packet(20));
        assert_eq!(numbers(&sent, 0..=u64::MAX - 1), vec![(20, 20)]);
        assert_eq!(sent.values().count(), 1);
        sent.clear();
        assert!(sent.is_empty() && sent.range(..).next().is_none());
    }
}
