//! NewReno congestion control (RFC 9002 §7, Appendix B).

use std::time::Instant;

use super::{
    Controller, PacketInfo, RecoveryPeriod, RttEstimator, initial_window, minimum_window,
    resized_window,
};

/// NewReno: slow start, then one datagram per window per round trip; halve on loss.
#[derive(Debug)]
pub(super) struct NewReno {
    max_datagram_size: u64,
    window: u64,
    ssthresh: u64,
    recovery: RecoveryPeriod,
    /// Bytes acknowledged since the window last grew in congestion avoidance.
    acked_in_avoidance: u64,
}

impl NewReno {
    pub(super) fn new(max_datagram_size: u64) -> Self {
        Self {
            max_datagram_size,
            window: initial_window(max_datagram_size),
            ssthresh: u64::MAX,
            recovery: RecoveryPeriod::default(),
            acked_in_avoidance: 0,
        }
    }
}

impl Controller for NewReno {
    fn on_ack(&mut self, _: Instant, packet: &PacketInfo, app_limited: bool, _: &RttEstimator) {
        let (sent, bytes) = (packet.sent, packet.bytes);
        // RFC 9002 §7.3.2: packets sent before recovery started do not grow the window.
        if app_limited || self.recovery.covers(sent) {
            return;
        }
        if self.window < self.ssthresh {
            self.window += bytes;
            return;
        }
        self.acked_in_avoidance += bytes;
        if self.acked_in_avoidance >= self.window {
            self.acked_in_avoidance -= self.window;
            self.window += self.max_datagram_size;
        }
    }

    fn on_congestion_event(&mut self, now: Instant, latest_sent: Instant, persistent: bool) {
        if persistent {
            // RFC 9002 §7.6.2, RFC9002-050.
            self.window = minimum_window(self.max_datagram_size);
            self.recovery.reset();
            self.acked_in_avoidance = 0;
            return;
        }
        // One reduction per round trip: losses of packets sent before recovery started are part
        // of the same event (RFC 9002 §7.3.2).
        if !self.recovery.on_loss(now, latest_sent) {
            return;
        }
        self.ssthresh = (self.window / 2).max(minimum_window(self.max_datagram_size));
        self.window = self.ssthresh;
        self.acked_in_avoidance = 0;
    }

    fn on_max_datagram_size(&mut self, max_datagram_size: u64) {
        self.window = resized_window(self.window, self.max_datagram_size, max_datagram_size);
        self.max_datagram_size = max_datagram_size;
    }

    fn window(&self) -> u64 {
        self.window
    }

    fn ssthresh(&self) -> Option<u64> {
        (self.ssthresh != u64::MAX).then_some(self.ssthresh)
    }
}
