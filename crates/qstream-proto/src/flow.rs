//! Flow control (RFC 9000 §4): one type for each side of a limit, used alike for connection
//! data (MAX_DATA), stream data (MAX_STREAM_DATA) and stream counts (MAX_STREAMS).
//!
//! A [`SendWindow`] is the sender's view of a limit the peer gives: what it allows, what is
//! used, and the *_BLOCKED frame (DATA_BLOCKED, STREAM_DATA_BLOCKED, STREAMS_BLOCKED) that says
//! we wait on it. That frame is due once per limit, is marked sent only when written, and is
//! due again when the packet carrying it is lost while the limit still blocks (RFC 9000 §4.1,
//! §4.6, §13.3).
//!
//! A [`RecvWindow`] is the receiver's view of a limit it gives: what the peer used, what the
//! application consumed, the limit to announce and when, and the auto-tuning of the window
//! ([`WindowTuner`]). A lost update is sent again only while it is the latest one (§13.3).

use std::time::{Duration, Instant};

/// The *_BLOCKED frame for the current limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Blocked {
    /// Not blocked at this limit, or not yet said.
    #[default]
    Unsaid,
    /// Due: the sender waits at this limit and has not said so.
    Due,
    /// Written into a packet in flight.
    Sent,
    /// A copy was acknowledged: the peer knows.
    Acked,
}

/// The sender's side of a limit the peer gives.
#[derive(Clone, Debug, Default)]
pub(crate) struct SendWindow {
    limit: u64,
    used: u64,
    blocked: Blocked,
}

impl SendWindow {
    /// A window the peer opened to `limit`.
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            limit,
            used: 0,
            blocked: Blocked::Unsaid,
        }
    }

    /// The peer's limit.
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// How much of it is used.
    pub(crate) fn used(&self) -> u64 {
        self.used
    }

    /// How much more may be used.
    pub(crate) fn available(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }

    /// The peer sent a new limit: true when it grew. A limit that does not grow is ignored
    /// (RFC 9000 §4.1, §19.9, §19.10, §19.11); one that does ends being blocked at the old one.
    pub(crate) fn raise(&mut self, limit: u64) -> bool {
        if limit <= self.limit {
            return false;
        }
        self.limit = limit;
        self.blocked = Blocked::Unsaid;
        true
    }

    /// Uses `n` more, which the caller keeps within [`Self::available`].
    pub(crate) fn consume(&mut self, n: u64) {
        debug_assert!(n <= self.available(), "flow control overrun");
        self.used += n;
    }

    /// The sender has more than the limit allows: a *_BLOCKED frame is due, unless one was
    /// already said for this limit. True when one became due. Ignored below the limit.
    pub(crate) fn on_blocked(&mut self) -> bool {
        if self.used < self.limit || self.blocked != Blocked::Unsaid {
            return false;
        }
        self.blocked = Blocked::Due;
        true
    }

    /// Whether the limit is reached and no *_BLOCKED was said for it: the caller checks
    /// whether it has more to send only then.
    pub(crate) fn blocked_unsaid(&self) -> bool {
        self.used >= self.limit && self.blocked == Blocked::Unsaid
    }

    /// The limit a *_BLOCKED frame is due for, if one is.
    pub(crate) fn blocked_due(&self) -> Option<u64> {
        (self.blocked == Blocked::Due).then_some(self.limit)
    }

    /// The due *_BLOCKED frame was written.
    pub(crate) fn on_blocked_sent(&mut self) {
        debug_assert_eq!(self.blocked, Blocked::Due);
        self.blocked = Blocked::Sent;
    }

    /// A *_BLOCKED frame for `limit` was acknowledged: it is never repeated for that limit.
    pub(crate) fn on_blocked_acked(&mut self, limit: u64) {
        if limit == self.limit {
            self.blocked = Blocked::Acked;
        }
    }

    /// A *_BLOCKED frame for `limit` was lost: due again if the sender still waits at that
    /// limit and no copy arrived (RFC 9000 §13.3). True when it became due.
    pub(crate) fn on_blocked_lost(&mut self, limit: u64) -> bool {
        if limit != self.limit || self.used < self.limit || self.blocked != Blocked::Sent {
            return false;
        }
        self.blocked = Blocked::Due;
        true
    }

    /// The sender has nothing more to send (a reset stream): no *_BLOCKED is due.
    pub(crate) fn stop_blocking(&mut self) {
        if self.blocked == Blocked::Due {
            self.blocked = Blocked::Unsaid;
        }
    }
}

/// When the receiver announces a new limit.
#[derive(Clone, Copy, Debug)]
enum UpdateRule {
    /// Once half the window is consumed, so that the peer never waits while we consume.
    HalfWindow,
    /// Once the limit can grow by this much (stream credit returned in batches).
    Batch(u64),
}

/// The receiver's side of a limit it gives the peer.
#[derive(Clone, Debug)]
pub(crate) struct RecvWindow {
    /// The limit in force: what the peer may use.
    limit: u64,
    /// The limit in the latest update written (or the transport parameter): what the peer
    /// knows.
    announced: u64,
    /// The highest limit in an update acknowledged.
    acked: u64,
    /// The most the peer used.
    received: u64,
    /// What the application consumed (read, discarded, released).
    consumed: u64,
    /// How far the limit is kept ahead of what is consumed.
    window: u64,
    max_window: u64,
    /// The largest limit the frame can carry.
    cap: u64,
    rule: UpdateRule,
    tuner: WindowTuner,
    update_due: bool,
    /// The peer can use no more (a final size is known): no updates.
    closed: bool,
}

impl RecvWindow {
    /// A data window of `window` bytes that auto-tuning grows up to `max_window`; updates go
    /// out once half of it is consumed.
    pub(crate) fn data(window: u64, max_window: u64) -> Self {
        Self::with_rule(window, max_window, UpdateRule::HalfWindow, (1 << 62) - 1)
    }

    /// A stream-count window of `concurrent` streams, never larger than `cap`; updates go out
    /// once the limit can grow by `batch` (at least 1).
    pub(crate) fn streams(concurrent: u64, batch: u64, cap: u64) -> Self {
        Self::with_rule(
            concurrent.min(cap),
            concurrent,
            UpdateRule::Batch(batch.max(1)),
            cap,
        )
    }

    fn with_rule(window: u64, max_window: u64, rule: UpdateRule, cap: u64) -> Self {
        Self {
            limit: window,
            announced: window,
            acked: window,
            received: 0,
            consumed: 0,
            window,
            max_window,
            cap,
            rule,
            tuner: WindowTuner::default(),
            update_due: false,
            closed: false,
        }
    }

    /// The limit in force.
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// The limit the peer was last told.
    #[cfg(test)]
    pub(crate) fn announced(&self) -> u64 {
        self.announced
    }

    /// The most the peer used.
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// What was consumed.
    pub(crate) fn consumed(&self) -> u64 {
        self.consumed
    }

    /// The window now, as auto-tuned.
    pub(crate) fn window(&self) -> u64 {
        self.window
    }

    /// The peer used up to `total`: how much that grew what it used, or `None` when it is
    /// beyond the limit (a FLOW_CONTROL_ERROR or STREAM_LIMIT_ERROR, RFC 9000 §4.1, §4.6).
    pub(crate) fn receive_up_to(&mut self, total: u64) -> Option<u64> {
        if total > self.limit {
            return None;
        }
        let grew = total.saturating_sub(self.received);
        self.received += grew;
        Some(grew)
    }

    /// The application consumed `n` more; the limit moves ahead when the rule says so.
    pub(crate) fn on_consumed(&mut self, n: u64) {
        // Saturating: after a peer overran the window (a connection error), the application
        // may still stop or release streams, consuming more than was allowed.
        self.consumed = self.consumed.saturating_add(n);
        if self.closed {
            return;
        }
        let target = self.limit_for(self.window);
        let due = match self.rule {
            UpdateRule::HalfWindow => self.limit.saturating_sub(self.consumed) <= self.window / 2,
            UpdateRule::Batch(batch) => target >= self.limit.saturating_add(batch),
        };
        if due && target > self.limit {
            self.limit = target;
            self.update_due = true;
        }
    }

    /// The peer says it waits on our limit at `limit` (a *_BLOCKED frame): the window was the
    /// limit. The peer hears the limit in force again when that is higher, unless it already
    /// acknowledged a limit above the one it names (the frame is stale); a limit it knows is
    /// not repeated, the next update comes when more is consumed (RFC 9000 §4.1, §19.12-§19.14:
    /// a *_BLOCKED frame is informational; answering it is the receiver's choice).
    pub(crate) fn on_peer_blocked(&mut self, limit: u64) {
        self.tuner.on_peer_blocked();
        self.update_due |= !self.closed && limit >= self.acked && self.limit > limit;
    }

    /// Whether an update waits to be written.
    pub(crate) fn update_due(&self) -> bool {
        self.update_due
    }

    /// Whether the peer used all it was told it may: it waits for the due update.
    pub(crate) fn peer_waits(&self) -> bool {
        self.update_due && self.received >= self.announced
    }

    /// The limit an update written at `now` carries, if one is due: the window auto-tuned
    /// (see [`WindowTuner`]) and kept ahead of what was consumed.
    pub(crate) fn due_update(&self, now: Instant, rtt: Duration) -> Option<u64> {
        self.update_due
            .then(|| self.limit.max(self.limit_for(self.tuned_window(now, rtt))))
    }

    /// The due update was written at `now`, carrying what [`Self::due_update`] gave.
    pub(crate) fn on_update_written(&mut self, now: Instant, rtt: Duration) {
        self.window = self.tuned_window(now, rtt);
        self.tuner.on_update(now, self.consumed);
        self.limit = self.limit.max(self.limit_for(self.window));
        self.announced = self.limit;
        self.update_due = false;
    }

    fn tuned_window(&self, now: Instant, rtt: Duration) -> u64 {
        self.tuner
            .window(now, rtt, self.consumed, self.window, self.max_window)
    }

    fn limit_for(&self, window: u64) -> u64 {
        self.consumed.saturating_add(window).min(self.cap)
    }

    /// An update carrying `limit` was acknowledged: a lost copy of it is not repeated.
    pub(crate) fn on_update_acked(&mut self, limit: u64) {
        self.acked = self.acked.max(limit);
    }

    /// An update carrying `limit` was lost: due again if it is still the latest and no copy
    /// of it arrived (RFC 9000 §13.3). True when it became due.
    pub(crate) fn on_update_lost(&mut self, limit: u64) -> bool {
        if self.closed || limit != self.announced || self.update_due || self.acked >= limit {
            return false;
        }
        self.update_due = true;
        true
    }

    /// The peer can use no more (the final size is known, RFC 9000 §3.2): no update is sent.
    pub(crate) fn close(&mut self) {
        self.closed = true;
        self.update_due = false;
    }
}

/// The least round trip auto-tuning assumes: of the order of a reader's scheduling delay.
const MIN_ROUND_TRIP: Duration = Duration::from_millis(1);

/// Receive-window auto-tuning, the same for every data window.
///
/// A window limits the sender when it is smaller than what the path delivers while the reader
/// catches up: the bandwidth-delay product, plus whatever the reader's scheduling holds up.
/// The window doubles, up to its maximum, when a limit update follows the last one within two
/// round trips (the reader consumes a window per round trip, so the window is the limit), or
/// when the sender said it waited for credit (STREAM_DATA_BLOCKED or DATA_BLOCKED, RFC 9000
/// §4.1). On paths of tens of microseconds a reader's scheduling, not the RTT, sets how often
/// updates go out, so round trips count as at least [`MIN_ROUND_TRIP`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WindowTuner {
    last_update: Option<Instant>,
    read_at_update: u64,
    peer_blocked: bool,
}

impl WindowTuner {
    /// The sender said it is blocked by our limit.
    fn on_peer_blocked(&mut self) {
        self.peer_blocked = true;
    }

    /// The window to keep ahead of what was read if a limit update goes out at `now`,
    /// `read` bytes having been read: `window` doubled (at most to `max`) when it was the
    /// limit. A reader that read nothing since the last update is the limit itself, and gets
    /// no more window.
    fn window(&self, now: Instant, rtt: Duration, read: u64, window: u64, max: u64) -> u64 {
        let round_trip = rtt.max(MIN_ROUND_TRIP);
        let reading = read > self.read_at_update;
        let limited = reading
            && (self.peer_blocked
                || self
                    .last_update
                    .is_some_and(|last| now.saturating_duration_since(last) < 2 * round_trip));
        if limited {
            window.saturating_mul(2).min(max.max(window))
        } else {
            window
        }
    }

    /// A limit update went out at `now`, `read` bytes having been read.
    fn on_update(&mut self, now: Instant, read: u64) {
        self.last_update = Some(now);
        self.read_at_update = read;
        self.peer_blocked = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes the due update, as a packet with room does.
    fn take_update(w: &mut RecvWindow, now: Instant, rtt: Duration) -> u64 {
        let limit = w.due_update(now, rtt).expect("an update is due");
        w.on_update_written(now, rtt);
        assert_eq!(w.announced(), limit);
        limit
    }

    /// The old tuner's step: the window for an update at `now`, recorded.
    fn tune(tuner: &mut WindowTuner, now: Instant, rtt: Duration, read: u64, window: u64) -> u64 {
        let window = tuner.window(now, rtt, read, window, 1000);
        tuner.on_update(now, read);
        window
    }

    #[test]
    fn flow_send_window_says_blocked_once_per_limit() {
        let mut w = SendWindow::new(100);
        assert!(!w.on_blocked(), "not blocked below the limit");
        w.consume(100);
        assert_eq!(w.available(), 0);
        assert!(w.on_blocked());
        assert!(!w.on_blocked(), "due already");
        assert_eq!(w.blocked_due(), Some(100));
        w.on_blocked_sent();
        assert_eq!(w.blocked_due(), None);
        assert!(!w.on_blocked(), "said already for this limit");
        assert!(!w.raise(100), "a limit that does not grow is ignored");
        assert!(w.raise(200));
        w.consume(100);
        assert!(w.on_blocked(), "a new limit is said anew");
        assert_eq!(w.blocked_due(), Some(200));
    }

    #[test]
    fn flow_send_window_repeats_a_lost_blocked_only_while_it_applies() {
        let mut w = SendWindow::new(10);
        w.consume(10);
        w.on_blocked();
        w.on_blocked_sent();
        assert!(w.on_blocked_lost(10), "still blocked at 10: said again");
        assert_eq!(w.blocked_due(), Some(10));
        w.on_blocked_sent();
        assert!(
            !w.on_blocked_lost(5),
            "a frame for an older limit is not repeated"
        );
        w.on_blocked_acked(10);
        assert!(!w.on_blocked_lost(10), "a copy arrived: not repeated");
        w.raise(20);
        assert!(!w.on_blocked_lost(10), "no longer blocked at 10");
        assert_eq!(w.blocked_due(), None);
        w.consume(10);
        w.on_blocked();
        w.stop_blocking();
        assert_eq!(
            w.blocked_due(),
            None,
            "nothing more to send, nothing to say"
        );
    }

    #[test]
    fn flow_recv_window_updates_at_half_and_repeats_only_the_latest() {
        let start = Instant::now();
        let rtt = Duration::from_secs(1);
        let mut w = RecvWindow::data(100, 100);
        assert_eq!(w.receive_up_to(100), Some(100));
        assert_eq!(w.receive_up_to(101), None, "beyond the limit");
        w.on_consumed(49);
        assert!(!w.update_due());
        w.on_consumed(1);
        assert!(w.update_due());
        assert!(w.peer_waits(), "the peer used all it was told");
        assert_eq!(take_update(&mut w, start, rtt), 150);
        assert_eq!(w.announced(), 150);
        assert!(!w.peer_waits());
        w.on_consumed(50);
        let later = start + Duration::from_secs(10);
        assert_eq!(take_update(&mut w, later, rtt), 200);
        assert!(!w.on_update_lost(150), "superseded by 200");
        assert!(w.on_update_lost(200), "the latest is repeated");
        assert!(!w.on_update_lost(200), "due already");
        assert_eq!(take_update(&mut w, later, rtt), 200);
        w.on_update_acked(200);
        assert!(!w.on_update_lost(200), "a copy arrived: not repeated");
        w.on_peer_blocked(150);
        assert!(
            !w.update_due(),
            "blocked below what the peer acknowledged: stale"
        );
        w.on_peer_blocked(200);
        assert!(
            !w.update_due(),
            "blocked at the limit in force: nothing new to say"
        );
        w.on_consumed(100);
        assert_eq!(take_update(&mut w, later, rtt), 300);
        w.on_peer_blocked(200);
        assert!(
            w.update_due(),
            "blocked below the limit in force: told again"
        );
        w.close();
        assert!(!w.update_due(), "no updates once the final size is known");
        w.on_peer_blocked(200);
        assert!(!w.update_due());
    }

    #[test]
    fn flow_stream_count_window_returns_credit_in_batches_up_to_the_cap() {
        let mut w = RecvWindow::streams(4, 2, 6);
        assert_eq!(w.receive_up_to(4), Some(4));
        assert_eq!(w.receive_up_to(5), None);
        w.on_consumed(1);
        assert!(
            !w.update_due(),
            "one released stream is less than the batch"
        );
        w.on_consumed(1);
        assert!(w.update_due());
        assert_eq!(take_update(&mut w, Instant::now(), Duration::ZERO), 6);
        w.on_consumed(2);
        assert!(!w.update_due(), "never beyond the cap");
        assert_eq!(w.limit(), 6);
    }

    #[test]
    fn flow_window_doubles_when_updates_come_fast_or_the_sender_waited() {
        let start = Instant::now();
        let rtt = Duration::from_micros(50);
        let mut tuner = WindowTuner::default();
        assert_eq!(tune(&mut tuner, start, rtt, 50, 100), 100);
        // 1.5 ms later: within two of the least round trip, though 30 RTTs of this path.
        let soon = start + Duration::from_micros(1500);
        assert_eq!(tune(&mut tuner, soon, rtt, 100, 100), 200);
        let later = start + Duration::from_secs(1);
        assert_eq!(tune(&mut tuner, later, rtt, 200, 200), 200);
        tuner.on_peer_blocked();
        let second = later + Duration::from_secs(1);
        assert_eq!(tune(&mut tuner, second, rtt, 300, 200), 400);
        // A reader that read nothing gets nothing, blocked sender or not.
        tuner.on_peer_blocked();
        assert_eq!(tune(&mut tuner, second, rtt, 300, 400), 400);
        // Never beyond the maximum.
        tuner.on_peer_blocked();
        let third = later + Duration::from_secs(2);
        assert_eq!(tune(&mut tuner, third, rtt, 400, 800), 1000);
    }
}
