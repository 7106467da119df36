//! Receive-window auto-tuning, the same for a stream's window and the connection's.
//!
//! A window limits the sender when it is smaller than what the path delivers while the reader
//! catches up: the bandwidth-delay product, plus whatever the reader's scheduling holds up.
//! The window doubles, up to its maximum, when a limit update follows the last one within two
//! round trips (the reader consumes a window per round trip, so the window is the limit), or
//! when the sender said it waited for credit (STREAM_DATA_BLOCKED or DATA_BLOCKED, RFC 9000
//! §4.1). On paths of tens of microseconds a reader's scheduling, not the RTT, sets how often
//! updates go out, so round trips count as at least [`MIN_ROUND_TRIP`].

use std::time::{Duration, Instant};

/// The least round trip auto-tuning assumes: of the order of a reader's scheduling delay.
const MIN_ROUND_TRIP: Duration = Duration::from_millis(1);

/// When the last limit update went out, what was read by then, and whether the sender said
/// it was blocked since.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WindowTuner {
    last_update: Option<Instant>,
    read_at_update: u64,
    peer_blocked: bool,
}

impl WindowTuner {
    /// The sender said it is blocked by our limit.
    pub(crate) fn on_peer_blocked(&mut self) {
        self.peer_blocked = true;
    }

    /// A limit update goes out at `now`, `read` bytes having been read: the window to keep
    /// ahead of what was read from now on, `window` doubled (at most to `max`) when it was the
    /// limit. A reader that read nothing since the last update is the limit itself, and gets
    /// no more window.
    pub(crate) fn on_update(
        &mut self,
        now: Instant,
        rtt: Duration,
        read: u64,
        window: u64,
        max: u64,
    ) -> u64 {
        let round_trip = rtt.max(MIN_ROUND_TRIP);
        let reading = read > self.read_at_update;
        let limited = reading
            && (self.peer_blocked
                || self
                    .last_update
                    .is_some_and(|last| now.saturating_duration_since(last) < 2 * round_trip));
        self.last_update = Some(now);
        self.read_at_update = read;
        self.peer_blocked = false;
        if limited {
            window.saturating_mul(2).min(max.max(window))
        } else {
            window
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_when_updates_come_fast_or_the_sender_waited() {
        let start = Instant::now();
        let rtt = Duration::from_micros(50);
        let mut tuner = WindowTuner::default();
        assert_eq!(tuner.on_update(start, rtt, 50, 100, 1000), 100);
        // 1.5 ms later: within two of the least round trip, though 30 RTTs of this path.
        let soon = start + Duration::from_micros(1500);
        assert_eq!(tuner.on_update(soon, rtt, 100, 100, 1000), 200);
        let later = start + Duration::from_secs(1);
        assert_eq!(tuner.on_update(later, rtt, 200, 200, 1000), 200);
        tuner.on_peer_blocked();
        let second = later + Duration::from_secs(1);
        assert_eq!(tuner.on_update(second, rtt, 300, 200, 1000), 400);
        // A reader that read nothing gets nothing, blocked sender or not.
        tuner.on_peer_blocked();
        assert_eq!(tuner.on_update(second, rtt, 300, 400, 1000), 400);
        // Never beyond the maximum.
        tuner.on_peer_blocked();
        let third = later + Duration::from_secs(2);
        assert_eq!(tuner.on_update(third, rtt, 400, 800, 1000), 1000);
    }
}
