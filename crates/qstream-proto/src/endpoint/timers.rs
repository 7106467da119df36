//! When each connection next needs its timers handled, earliest first, without visiting the
//! connections that did not change.

use std::collections::BTreeSet;
use std::time::Instant;

use rustc_hash::FxHashMap;

use super::ConnectionHandle;

/// Where a connection stands in the index.
#[derive(Clone, Copy, Debug)]
enum Entry {
    /// Its deadline as last read; it has not changed since.
    Queued(Instant),
    /// Changed since its deadline was read (or it had none): read it again before use.
    Stale,
}

/// The connections' deadlines. A connection that may have changed is marked stale, and its
/// deadline is read again only when the index is next refreshed, so marking costs a hash
/// lookup however often a busy connection changes, and finding the earliest deadline costs
/// nothing for connections that sit idle.
#[derive(Debug, Default)]
pub(super) struct TimerIndex {
    /// Connections with a deadline, by deadline.
    queue: BTreeSet<(Instant, ConnectionHandle)>,
    entries: FxHashMap<ConnectionHandle, Entry>,
    /// The connections marked stale, each once.
    stale: Vec<ConnectionHandle>,
    /// The last connection marked stale, while it still is: a busy connection is marked for
    /// everything it does, and marking it again is then one comparison.
    marked_last: Option<ConnectionHandle>,
}

impl TimerIndex {
    /// `handle` may have changed: its deadline is read again at the next refresh.
    pub(super) fn mark_stale(&mut self, handle: ConnectionHandle) {
        if self.marked_last == Some(handle) {
            return;
        }
        self.marked_last = Some(handle);
        match self.entries.insert(handle, Entry::Stale) {
            Some(Entry::Stale) => return,
            Some(Entry::Queued(deadline)) => {
                self.queue.remove(&(deadline, handle));
            }
            None => {}
        }
        self.stale.push(handle);
    }

    /// Reads the deadline of every stale connection with `deadline_of` (`None`: no timer
    /// armed, or the connection is gone).
    pub(super) fn refresh(&mut self, deadline_of: impl Fn(ConnectionHandle) -> Option<Instant>) {
        self.marked_last = None;
        for handle in self.stale.drain(..) {
            match deadline_of(handle) {
                Some(deadline) => {
                    self.entries.insert(handle, Entry::Queued(deadline));
                    self.queue.insert((deadline, handle));
                }
                None => {
                    self.entries.remove(&handle);
                }
            }
        }
    }

    /// The earliest deadline as of the last refresh.
    pub(super) fn earliest(&self) -> Option<Instant> {
        debug_assert!(self.stale.is_empty(), "refreshed first");
        self.queue.first().map(|(deadline, _)| *deadline)
    }

    /// The connections whose deadline is at or before `now`, as of the last refresh; each is
    /// marked stale, as handling its timers changes it.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<ConnectionHandle> {
        debug_assert!(self.stale.is_empty(), "refreshed first");
        let mut due = Vec::new();
        while let Some(&(deadline, handle)) = self.queue.first() {
            if deadline > now {
                break;
            }
            self.queue.pop_first();
            self.entries.insert(handle, Entry::Stale);
            self.stale.push(handle);
            due.push(handle);
        }
        due
    }

    /// Forgets `handle`.
    pub(super) fn remove(&mut self, handle: ConnectionHandle) {
        self.marked_last = None;
        match self.entries.remove(&handle) {
            Some(Entry::Queued(deadline)) => {
                self.queue.remove(&(deadline, handle));
            }
            Some(Entry::Stale) => self.stale.retain(|h| *h != handle),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timers_earliest_deadline_follows_changes_read_at_refresh() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut deadlines: FxHashMap<ConnectionHandle, Instant> = [(0, 30), (1, 10), (2, 20)]
            .into_iter()
            .map(|(h, ms)| (ConnectionHandle(h), at(ms)))
            .collect();
        let mut index = TimerIndex::default();
        for h in 0..3 {
            index.mark_stale(ConnectionHandle(h));
        }
        index.refresh(|h| deadlines.get(&h).copied());
        assert_eq!(index.earliest(), Some(at(10)));
        // Connection 1 moves its timer later; until it is marked, the index keeps the old one.
        deadlines.insert(ConnectionHandle(1), at(40));
        assert_eq!(index.earliest(), Some(at(10)));
        index.mark_stale(ConnectionHandle(1));
        index.mark_stale(ConnectionHandle(1));
        index.refresh(|h| deadlines.get(&h).copied());
        assert_eq!(index.earliest(), Some(at(20)));
        // Due at 25 ms: connection 2 only, and it is read again at the next refresh.
        assert_eq!(index.take_due(at(25)), vec![ConnectionHandle(2)]);
        deadlines.remove(&ConnectionHandle(2));
        index.refresh(|h| deadlines.get(&h).copied());
        assert_eq!(index.earliest(), Some(at(30)));
        index.remove(ConnectionHandle(0));
        assert_eq!(index.earliest(), Some(at(40)));
        index.mark_stale(ConnectionHandle(1));
        index.remove(ConnectionHandle(1));
        index.refresh(|_| panic!("nothing stale is left"));
        assert_eq!(index.earliest(), None);
    }
}
