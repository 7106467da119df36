//! The send scheduler: streams with data to send, by priority, round-robin within a priority.

use std::cmp::Reverse;
use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use crate::wire::StreamId;

/// What a visited stream did with its turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Turn {
    /// It sent and has more: it goes to the back of its level.
    More,
    /// It has nothing more to send now: it leaves the schedule.
    Done,
    /// The packet is full: it keeps its place at the front, and the round ends.
    Full,
}

/// Streams waiting to send, highest priority first; each level is served round-robin.
#[derive(Debug, Default)]
pub(super) struct Schedule {
    levels: BTreeMap<Reverse<i32>, VecDeque<StreamId>>,
}

impl Schedule {
    /// Queues `id` at the back of its level. The caller queues a stream at most once.
    pub(super) fn push(&mut self, id: StreamId, priority: i32) {
        self.levels
            .entry(Reverse(priority))
            .or_default()
            .push_back(id);
    }

    /// Takes `id` out of its level.
    pub(super) fn remove(&mut self, id: StreamId, priority: i32) {
        if let Some(queue) = self.levels.get_mut(&Reverse(priority)) {
            queue.retain(|s| *s != id);
            if queue.is_empty() {
                self.levels.remove(&Reverse(priority));
            }
        }
    }

    /// Whether no stream waits.
    pub(super) fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// Every queued stream, in no particular order.
    pub(super) fn ids(&self) -> impl Iterator<Item = &StreamId> {
        self.levels.values().flatten()
    }

    /// Gives each queued stream one turn, level by level from the highest, until one says the
    /// packet is full.
    pub(super) fn round(&mut self, mut turn: impl FnMut(StreamId) -> Turn) {
        // Levels in order, without collecting them: this runs for every packet.
        let mut next_level = self.levels.keys().next().copied();
        'levels: while let Some(level) = next_level {
            next_level = self
                .levels
                .range((Bound::Excluded(level), Bound::Unbounded))
                .next()
                .map(|(level, _)| *level);
            let Some(queue) = self.levels.get_mut(&level) else {
                continue;
            };
            for _ in 0..queue.len() {
                let Some(id) = queue.pop_front() else {
                    break;
                };
                match turn(id) {
                    Turn::More => queue.push_back(id),
                    Turn::Done => {}
                    Turn::Full => {
                        queue.push_front(id);
                        break 'levels;
                    }
                }
            }
        }
        self.levels.retain(|_, queue| !queue.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Side;
    use crate::wire::Dir;

    fn id(index: u64) -> StreamId {
        StreamId::new(Side::Client, Dir::Bi, index).unwrap()
    }

    #[test]
    fn streams_higher_priority_first_and_round_robin_within_a_level() {
        let mut schedule = Schedule::default();
        schedule.push(id(0), 0);
        schedule.push(id(1), 0);
        schedule.push(id(2), 5);
        let mut order = Vec::new();
        schedule.round(|s| {
            order.push(s);
            Turn::More
        });
        assert_eq!(order, [id(2), id(0), id(1)]);
        // A full packet ends the round; that stream goes first next time.
        let mut order = Vec::new();
        schedule.round(|s| {
            order.push(s);
            if s == id(0) { Turn::Full } else { Turn::Done }
        });
        assert_eq!(order, [id(2), id(0)]);
        schedule.remove(id(1), 0);
        let mut order = Vec::new();
        schedule.round(|s| {
            order.push(s);
            Turn::Done
        });
        assert_eq!(order, [id(0)]);
        assert!(schedule.is_empty());
    }
}
