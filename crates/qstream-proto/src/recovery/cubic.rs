//! CUBIC congestion control (RFC 9438).

use std::time::{Duration, Instant};

use super::{
    Controller, PacketInfo, RecoveryPeriod, RttEstimator, initial_window, minimum_window,
    resized_window,
};

/// RFC 9438 §5.1: C = 0.4 and beta_cubic = 0.7.
const C: f64 = 0.4;
const BETA: f64 = 0.7;
/// RFC 9438 §4.3: the Reno-friendly estimate grows by alpha_cubic segments per round trip.
const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);

/// CUBIC: after a loss the window grows along a cubic curve centred on the window before the
/// loss, with a Reno-friendly floor (RFC 9438 §4).
///
/// Both curves are functions of the time since the congestion event, as RFC 9438 §4.2 and
/// RFC 8312 §4.2 write them. The Reno-friendly floor is therefore computed from elapsed
/// round trips, not accumulated per acknowledgment: on a path of a few hundred microseconds a
/// probe timeout stalls the sender for tens of round trips, and an estimate that only grows
/// per ACK would stay where the loss left it, one or two datagrams, so that every later
/// round trip risks another stall. Growth is still clocked by acknowledgments: at most the
/// bytes each one acknowledges, as in slow start.
#[derive(Debug)]
pub(super) struct Cubic {
    max_datagram_size: u64,
    window: u64,
    ssthresh: u64,
    recovery: RecoveryPeriod,
    /// Window before the last reduction, in bytes (W_max).
    w_max: f64,
    /// Time from the epoch start until the curve reaches W_max (K).
    k: Duration,
    /// Start of the current congestion avoidance epoch.
    epoch_start: Option<Instant>,
    /// When the last acknowledgment was handled: time the application left the window unused
    /// does not count toward growth (RFC 9438 §5.8).
    last_ack: Option<Instant>,
    /// The state before the latest reduction, to restore if it was spurious (RFC 9438 §4.9).
    before_reduction: Option<CubicState>,
}

/// What a reduction changes in CUBIC (RFC 9438 §4.9: cwnd, ssthresh, W_max, K, epoch start).
#[derive(Clone, Copy, Debug)]
struct CubicState {
    window: u64,
    ssthresh: u64,
    w_max: f64,
    k: Duration,
    epoch_start: Option<Instant>,
}

impl Cubic {
    pub(super) fn new(max_datagram_size: u64) -> Self {
        Self {
            max_datagram_size,
            window: initial_window(max_datagram_size),
            ssthresh: u64::MAX,
            recovery: RecoveryPeriod::default(),
            w_max: 0.0,
            k: Duration::ZERO,
            epoch_start: None,
            last_ack: None,
            before_reduction: None,
        }
    }

    fn segments(&self, bytes: f64) -> f64 {
        bytes / self.max_datagram_size as f64
    }

    /// W_cubic(t) in bytes (RFC 9438 §4.2).
    fn w_cubic(&self, t: Duration) -> f64 {
        let dt = t.as_secs_f64() - self.k.as_secs_f64();
        (C * dt.powi(3) + self.segments(self.w_max)) * self.max_datagram_size as f64
    }

    /// W_est(t) in bytes: the window Reno would have `t` after the congestion event, starting
    /// from beta_cubic * W_max and growing alpha_cubic segments per round trip (RFC 9438 §4.3,
    /// in the closed form of RFC 8312 §4.2).
    fn w_est(&self, t: Duration, rtt: Duration) -> f64 {
        let round_trips = t.as_secs_f64() / rtt.as_secs_f64().max(1e-6);
        self.w_max * BETA + ALPHA * round_trips * self.max_datagram_size as f64
    }
}

impl Controller for Cubic {
    fn on_ack(&mut self, now: Instant, packet: &PacketInfo, app_limited: bool, rtt: &RttEstimator) {
        let (sent, bytes) = (packet.sent, packet.bytes);
        let since_last_ack = self
            .last_ack
            .map_or(Duration::ZERO, |last| now.saturating_duration_since(last));
        self.last_ack = Some(now);
        if app_limited {
            // RFC 9438 §5.8: no growth while the window is not the limit, and the epoch moves
            // on with the clock so that idle time does not become growth later.
            if let Some(start) = &mut self.epoch_start {
                *start += since_last_ack;
            }
            return;
        }
        if self.recovery.covers(sent) {
            return;
        }
        if self.window < self.ssthresh {
            self.window += bytes;
            return;
        }
        // An epoch that starts without a preceding loss (§4.8) centres the curve on now.
        let epoch_start = match self.epoch_start {
            Some(start) => start,
            None => {
                self.w_max = self.window as f64;
                self.k = Duration::ZERO;
                *self.epoch_start.insert(now)
            }
        };
        let t = now.saturating_duration_since(epoch_start);
        let rtt = rtt.smoothed();
        let cwnd = self.window as f64;
        let w_est = self.w_est(t, rtt);
        let target = if self.w_cubic(t + rtt) < w_est {
            // §4.3: the Reno-friendly region.
            w_est
        } else {
            // §4.4, §4.5: grow by (target - cwnd) / cwnd segments per acknowledged segment,
            // the target clamped to [cwnd, 1.5 cwnd].
            let target = self.w_cubic(t + rtt).clamp(cwnd, 1.5 * cwnd);
            cwnd + (target - cwnd) / cwnd * bytes as f64
        };
        let grown = (target as u64).min(self.window + bytes);
        self.window = grown.max(self.window);
    }

    fn on_congestion_event(&mut self, now: Instant, latest_sent: Instant, persistent: bool) {
        self.reduce(now, latest_sent);
        if persistent {
            // RFC 9002 §7.6.2, RFC9002-050, Appendix B.8: after the reduction the window falls
            // to the minimum, and slow start regrows it to the threshold the reduction set; the
            // next epoch starts where slow start ends (§4.8).
            self.window = minimum_window(self.max_datagram_size);
            self.recovery.reset();
            self.epoch_start = None;
            self.before_reduction = None;
        }
    }

    fn on_spurious_congestion(&mut self, started: Instant) {
        if self.recovery.started() != Some(started) {
            return;
        }
        if let Some(state) = self.before_reduction.take() {
            // A window that grew since the reduction is kept.
            self.window = self.window.max(state.window);
            self.ssthresh = state.ssthresh;
            self.w_max = state.w_max;
            self.k = state.k;
            self.epoch_start = state.epoch_start;
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

impl Cubic {
    /// A congestion event: once per recovery period, the window falls by beta_cubic and the
    /// curve is centred on the window before (RFC 9438 §4.6, §4.7).
    fn reduce(&mut self, now: Instant, latest_sent: Instant) {
        if !self.recovery.on_loss(now, latest_sent) {
            return;
        }
        self.before_reduction = Some(CubicState {
            window: self.window,
            ssthresh: self.ssthresh,
            w_max: self.w_max,
            k: self.k,
            epoch_start: self.epoch_start,
        });
        // §4.7 fast convergence: a loss below the previous W_max lowers the new one further.
        let cwnd = self.window as f64;
        self.w_max = if cwnd < self.w_max {
            cwnd * (1.0 + BETA) / 2.0
        } else {
            cwnd
        };
        let reduced = ((cwnd * BETA) as u64).max(minimum_window(self.max_datagram_size));
        self.ssthresh = reduced;
        self.window = reduced;
        self.epoch_start = Some(now);
        // K = cbrt(W_max * (1 - beta) / C), in segments (§4.2).
        let k = (self.segments(self.w_max) * (1.0 - BETA) / C).cbrt();
        self.k = Duration::from_secs_f64(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(sent: Instant) -> PacketInfo {
        PacketInfo {
            number: None,
            sent,
            bytes: 1200,
        }
    }

    /// An estimator that has seen `rtt` long enough to take it as smoothed RTT.
    fn rtt(rtt: Duration) -> RttEstimator {
        let mut estimator = RttEstimator::new(rtt);
        for _ in 0..100 {
            estimator.update(rtt, Duration::ZERO);
        }
        estimator
    }

    /// RFC 9438 §4.9: a congestion event that proved spurious is undone, once.
    #[test]
    fn a_spurious_congestion_event_restores_the_state_before_it() {
        let start = Instant::now();
        let mut cubic = Cubic::new(1200);
        cubic.window = 100 * 1200;
        cubic.ssthresh = 80 * 1200;
        let (w_max, k) = (cubic.w_max, cubic.k);
        let event = start + Duration::from_millis(1);
        cubic.on_congestion_event(event, start, false);
        assert_eq!(cubic.window(), 84_000);
        // Another event's undo changes nothing.
        cubic.on_spurious_congestion(start);
        assert_eq!(cubic.window(), 84_000);
        cubic.on_spurious_congestion(event);
        assert_eq!(cubic.window(), 100 * 1200);
        assert_eq!(cubic.ssthresh(), Some(80 * 1200));
        assert_eq!((cubic.w_max, cubic.k, cubic.epoch_start), (w_max, k, None));
        // Once only, and the next loss reduces again.
        cubic.on_spurious_congestion(event);
        assert_eq!(cubic.window(), 100 * 1200);
        cubic.on_congestion_event(event + Duration::from_millis(1), start, false);
        assert_eq!(cubic.window(), 84_000);
    }

    /// RFC 9002 §7.6.2 and Appendix B.8: persistent congestion drops the window to the
    /// minimum after the usual reduction, and slow start (growth by every byte acknowledged)
    /// brings it back to that reduction's threshold, not one datagram per round trip from two.
    #[test]
    fn persistent_congestion_slow_starts_back_to_the_reduced_threshold() {
        let start = Instant::now();
        let rtt = rtt(Duration::from_millis(20));
        let mut cubic = Cubic::new(1200);
        cubic.window = 100 * 1200;
        cubic.ssthresh = cubic.window;
        cubic.on_congestion_event(start, start, true);
        assert_eq!(cubic.window(), minimum_window(1200));
        assert_eq!(cubic.ssthresh(), Some((100.0 * 1200.0 * BETA) as u64));
        let later = start + Duration::from_millis(1);
        for _ in 0..10 {
            cubic.on_ack(later, &packet(later), false, &rtt);
        }
        assert_eq!(cubic.window(), minimum_window(1200) + 10 * 1200);
    }

    #[test]
    fn reduces_by_beta_and_regrows_toward_w_max() {
        let start = Instant::now();
        let rtt = rtt(Duration::from_millis(50));
        let mut cubic = Cubic::new(1200);
        let before = cubic.window();
        cubic.on_congestion_event(start, start, false);
        assert_eq!(cubic.window(), (before as f64 * BETA) as u64);
        let mut now = start;
        for _ in 0..2000 {
            now += Duration::from_millis(5);
            cubic.on_ack(now, &packet(now), false, &rtt);
        }
        assert!(
            cubic.window() > before,
            "regrew beyond W_max: {}",
            cubic.window()
        );
    }

    #[test]
    fn the_reno_friendly_floor_counts_round_trips_not_acknowledgments() {
        // A 300 µs path: a 25 ms stall after a loss is 83 round trips, in which Reno would
        // have grown by alpha_cubic segments each. The first acknowledgments after the stall
        // grow the window as fast as slow start until it reaches that estimate.
        let start = Instant::now();
        let rtt = rtt(Duration::from_micros(300));
        assert_eq!(rtt.smoothed(), Duration::from_micros(300));
        let mut cubic = Cubic::new(1200);
        cubic.on_congestion_event(start, start, false);
        let reduced = cubic.window();
        let later = start + Duration::from_millis(25);
        for _ in 0..4 {
            cubic.on_ack(later, &packet(later), false, &rtt);
        }
        assert_eq!(cubic.window(), reduced + 4 * 1200);
        let estimate = cubic.w_est(Duration::from_millis(25), Duration::from_micros(300));
        for _ in 0..100 {
            cubic.on_ack(later, &packet(later), false, &rtt);
        }
        assert_eq!(cubic.window(), estimate as u64);
    }

    #[test]
    fn idle_time_is_not_growth() {
        let start = Instant::now();
        let rtt = rtt(Duration::from_millis(10));
        let mut cubic = Cubic::new(1200);
        cubic.on_congestion_event(start, start, false);
        let reduced = cubic.window();
        // One second of acknowledgments of packets sent while the window was not the limit.
        let mut now = start;
        for _ in 0..100 {
            now += Duration::from_millis(10);
            cubic.on_ack(now, &packet(now), true, &rtt);
        }
        assert_eq!(cubic.window(), reduced);
        now += Duration::from_millis(10);
        cubic.on_ack(now, &packet(now), false, &rtt);
        assert!(cubic.window() <= reduced + 1200, "{}", cubic.window());
    }

    #[test]
    fn minimum_and_initial_window_follow_the_datagram_size() {
        let start = Instant::now();
        let mut cubic = Cubic::new(1200);
        cubic.on_max_datagram_size(1452);
        assert_eq!(cubic.window(), initial_window(1452));
        cubic.on_congestion_event(start, start, true);
        // RFC 9002 §7.2: two of the current datagrams, not of the first ones.
        assert_eq!(cubic.window(), 2 * 1452);
    }
}
