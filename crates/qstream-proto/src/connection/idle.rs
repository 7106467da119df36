//! The idle timeout (RFC 9000 §10.1).

use std::time::{Duration, Instant};

/// When the connection is closed for silence: the smaller of both sides' timeouts (zero
/// meaning none), never less than three PTOs, restarted by every packet received and by the
/// first ack-eliciting packet sent after one.
#[derive(Debug)]
pub(super) struct IdleTimer {
    /// Our max_idle_timeout.
    local: Option<Duration>,
    deadline: Option<Instant>,
    /// Whether an ack-eliciting packet was sent since the last packet was received: only the
    /// first one restarts the timer.
    sent_eliciting_since_receive: bool,
}

impl IdleTimer {
    pub(super) fn new(local: Option<Duration>) -> Self {
        Self {
            local,
            deadline: None,
            sent_eliciting_since_receive: false,
        }
    }

    /// When the connection times out, if it can.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Restarts the timer at `now`; `peer_ms` is the peer's max_idle_timeout once known.
    pub(super) fn restart(&mut self, now: Instant, peer_ms: Option<u64>, pto: Duration) {
        let peer = peer_ms.filter(|&ms| ms > 0).map(Duration::from_millis);
        let timeout = match (self.local, peer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.deadline = timeout.map(|t| now + t.max(3 * pto));
    }

    /// A packet was processed at `now`.
    pub(super) fn on_received(&mut self, now: Instant, peer_ms: Option<u64>, pto: Duration) {
        self.restart(now, peer_ms, pto);
        self.sent_eliciting_since_receive = false;
    }

    /// An ack-eliciting packet was sent at `now`: the first since a packet was received
    /// restarts the timer.
    pub(super) fn on_eliciting_sent(&mut self, now: Instant, peer_ms: Option<u64>, pto: Duration) {
        if !self.sent_eliciting_since_receive {
            self.sent_eliciting_since_receive = true;
            self.restart(now, peer_ms, pto);
        }
    }
}
