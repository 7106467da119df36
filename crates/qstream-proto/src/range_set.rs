//! A set of `u64`s stored as sorted, disjoint, non-adjacent ranges.

use std::ops::Range;

/// Sorted, disjoint, non-adjacent half-open ranges. Used for received packet numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RangeSet {
    ranges: Vec<Range<u64>>,
}

impl RangeSet {
    /// Adds `value`; returns whether it was new.
    pub(crate) fn insert(&mut self, value: u64) -> bool {
        self.insert_range(value..value + 1)
    }

    /// Adds every value of `range`; returns whether any was new.
    pub(crate) fn insert_range(&mut self, range: Range<u64>) -> bool {
        if range.is_empty() {
            return false;
        }
        // First range that ends at or after range.start (could merge or follow).
        let start_idx = self.ranges.partition_point(|r| r.end < range.start);
        // Ranges that start at or before range.end overlap or touch.
        let end_idx = self.ranges.partition_point(|r| r.start <= range.end);
        if start_idx == end_idx {
            self.ranges.insert(start_idx, range);
            return true;
        }
        let merged_start = self.ranges[start_idx].start.min(range.start);
        let merged_end = self.ranges[end_idx - 1].end.max(range.end);
        let covered = self.ranges[start_idx..end_idx]
            .iter()
            .map(|r| r.end - r.start)
            .sum::<u64>();
        let grew = merged_end - merged_start > covered;
        self.ranges.drain(start_idx + 1..end_idx);
        self.ranges[start_idx] = merged_start..merged_end;
        grew
    }

    /// Removes every value of `range`.
    pub(crate) fn remove_range(&mut self, range: Range<u64>) {
        if range.is_empty() {
            return;
        }
        let start_idx = self.ranges.partition_point(|r| r.end <= range.start);
        let end_idx = self.ranges.partition_point(|r| r.start < range.end);
        if start_idx >= end_idx {
            return;
        }
        let first = self.ranges[start_idx].clone();
        let last = self.ranges[end_idx - 1].clone();
        let mut keep = Vec::with_capacity(2);
        if first.start < range.start {
            keep.push(first.start..range.start);
        }
        if last.end > range.end {
            keep.push(range.end..last.end);
        }
        self.ranges.splice(start_idx..end_idx, keep);
    }

    /// Removes and returns the lowest range.
    pub(crate) fn pop_lowest(&mut self) -> Option<Range<u64>> {
        (!self.ranges.is_empty()).then(|| self.ranges.remove(0))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The ranges, lowest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        self.ranges.iter().cloned()
    }

    /// Drops the lowest ranges until at most `max` remain.
    pub(crate) fn truncate_oldest(&mut self, max: usize) {
        let excess = self.ranges.len().saturating_sub(max);
        self.ranges.drain(..excess);
    }

    pub(crate) fn contains(&self, value: u64) -> bool {
        let idx = self.ranges.partition_point(|r| r.end <= value);
        self.ranges.get(idx).is_some_and(|r| r.start <= value)
    }

    pub(crate) fn max(&self) -> Option<u64> {
        self.ranges.last().map(|r| r.end - 1)
    }

    /// The ranges, highest first.
    pub(crate) fn iter_descending(&self) -> impl ExactSizeIterator<Item = Range<u64>> + '_ {
        self.ranges.iter().rev().cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_and_reports_novelty() {
        let mut set = RangeSet::default();
        assert!(set.insert(5));
        assert!(!set.insert(5));
        assert!(set.insert(7));
        assert_eq!(set.iter_descending().count(), 2);
        assert!(set.insert(6));
        assert_eq!(set.iter_descending().collect::<Vec<_>>(), vec![5..8]);
        assert!(set.insert_range(0..3));
        assert!(!set.insert_range(6..8));
        assert!(set.insert_range(2..10));
        assert_eq!(set.iter_descending().collect::<Vec<_>>(), vec![0..10]);
        assert!(set.contains(0) && set.contains(9) && !set.contains(10));
        assert_eq!(set.max(), Some(9));
    }

    proptest::proptest! {
        #[test]
        fn insertions_match_a_set_of_values(
            inserts in proptest::collection::vec((0u64..200, 1u64..6), 0..60),
        ) {
            let mut set = RangeSet::default();
            let mut model = std::collections::BTreeSet::new();
            for (start, len) in inserts {
                let mut new = false;
                for v in start..start + len {
                    new |= model.insert(v);
                }
                proptest::prop_assert_eq!(set.insert_range(start..start + len), new);
            }
            let ranges: Vec<_> = set.iter().collect();
            // Sorted, disjoint, not touching.
            for pair in ranges.windows(2) {
                proptest::prop_assert!(pair[0].end < pair[1].start);
            }
            let values: Vec<u64> = ranges.iter().flat_map(|r| r.clone()).collect();
            proptest::prop_assert_eq!(values, model.iter().copied().collect::<Vec<_>>());
            for v in 0..210 {
                proptest::prop_assert_eq!(set.contains(v), model.contains(&v));
            }
        }
    }

    #[test]
    fn removes_ranges() {
        let mut set = RangeSet::default();
        set.insert_range(0..10);
        set.insert_range(20..30);
        set.remove_range(5..25);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![0..5, 25..30]);
        set.remove_range(0..100);
        assert!(set.is_empty());
        set.insert_range(3..8);
        assert_eq!(set.pop_lowest(), Some(3..8));
        assert_eq!(set.pop_lowest(), None);
    }

    #[test]
    fn truncates_oldest() {
        let mut set = RangeSet::default();
        for v in (0..20).step_by(2) {
            set.insert(v);
        }
        set.truncate_oldest(3);
        assert_eq!(
            set.iter_descending().collect::<Vec<_>>(),
            vec![18..19, 16..17, 14..15]
        );
    }
}
