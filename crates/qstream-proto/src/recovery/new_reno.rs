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
    /// The window and threshold before the latest reduction, to restore if it was spurious.
    before_reduction: Option<(u64, u64)>,
}

impl NewReno {
    pub(super) fn new(max_datagram_size: u64) -> Self {
        Self {
            max_datagram_size,
            window: initial_window(max_datagram_size),
            ssthresh: u64::MAX,
            recovery: RecoveryPeriod::default(),
            acked_in_avoidance: 0,
            before_reduction: None,
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
        // One reduction per round trip: losses of packets sent before recovery started are part
        // of the same event (RFC 9002 §7.3.2).
        if self.recovery.on_loss(now, latest_sent) {
            self.before_reduction = Some((self.window, self.ssthresh));
            self.ssthresh = (self.window / 2).max(minimum_window(self.max_datagram_size));
            self.window = self.ssthresh;
            self.acked_in_avoidance = 0;
        }
        if persistent {
            // RFC 9002 §7.6.2, RFC9002-050, Appendix B.8: then the minimum window, which slow
            // start regrows to the threshold just set.
            self.window = minimum_window(self.max_datagram_size);
            self.recovery.reset();
            self.acked_in_avoidance = 0;
            self.before_reduction = None;
        }
    }

    fn on_spurious_congestion(&mut self, started: Instant) {
        if self.recovery.started() != Some(started) {
            return;
        }
        if let Some((window, ssthresh)) = self.before_reduction.take() {
            self.window = self.window.max(window);
            self.ssthresh = ssthresh;
            self.recovery.reset();
        }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// RFC 9438 §4.9 as NewReno applies it: a congestion event that proved spurious is undone.
    #[test]
    fn a_spurious_congestion_event_restores_the_window_and_threshold() {
        let start = Instant::now();
        let mut reno = NewReno::new(1200);
        reno.window = 100 * 1200;
        let event = start + Duration::from_millis(1);
        reno.on_congestion_event(event, start, false);
        assert_eq!(reno.window(), 50 * 1200);
        reno.on_spurious_congestion(start);
        assert_eq!(reno.window(), 50 * 1200);
        reno.on_spurious_congestion(event);
        assert_eq!((reno.window(), reno.ssthresh()), (100 * 1200, None));
    }

    /// RFC 9002 §7.6.2 and Appendix B.8: persistent congestion halves the threshold as any
    /// congestion event does, then drops the window to the minimum for slow start to regrow.
    #[test]
    fn persistent_congestion_slow_starts_back_to_half_the_window() {
        let start = Instant::now();
        let mut reno = NewReno::new(1200);
        reno.window = 100 * 1200;
        reno.ssthresh = reno.window;
        reno.on_congestion_event(start, start, true);
        assert_eq!(reno.window(), minimum_window(1200));
        assert_eq!(reno.ssthresh(), Some(50 * 1200));
        let later = start + Duration::from_millis(1);
        let packet = PacketInfo {
            number: None,
            sent: later,
            bytes: 1200,
        };
        let rtt = RttEstimator::new(Duration::from_millis(20));
        for _ in 0..10 {
            reno.on_ack(later, &packet, false, &rtt);
        }
        assert_eq!(reno.window(), minimum_window(1200) + 10 * 1200);
    }
}
