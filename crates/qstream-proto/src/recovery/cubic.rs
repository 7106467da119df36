//! CUBIC congestion control (RFC 9438).

use std::time::{Duration, Instant};

use super::{Controller, RttEstimator, initial_window, minimum_window};

/// RFC 9438 §5.1: C = 0.4 and beta_cubic = 0.7.
const C: f64 = 0.4;
const BETA: f64 = 0.7;

/// CUBIC: after a loss the window grows along a cubic curve centred on the window before the
/// loss, with a Reno-friendly floor (RFC 9438 §4).
#[derive(Debug)]
pub(super) struct Cubic {
    max_datagram_size: u64,
    window: u64,
    ssthresh: u64,
    recovery_start: Option<Instant>,
    /// Window before the last reduction, in bytes (W_max).
    w_max: f64,
    /// Time from the epoch start until the curve reaches W_max (K).
    k: Duration,
    /// Start of the current congestion avoidance epoch.
    epoch_start: Option<Instant>,
    /// The Reno-friendly estimate, in bytes (W_est, §4.3).
    w_est: f64,
}

impl Cubic {
    pub(super) fn new(max_datagram_size: u64) -> Self {
        Self {
            max_datagram_size,
            window: initial_window(max_datagram_size),
            ssthresh: u64::MAX,
            recovery_start: None,
            w_max: 0.0,
            k: Duration::ZERO,
            epoch_start: None,
            w_est: 0.0,
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
}

impl Controller for Cubic {
    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &RttEstimator,
    ) {
        if app_limited || self.recovery_start.is_some_and(|start| sent <= start) {
            return;
        }
        if self.window < self.ssthresh {
            self.window += bytes;
            return;
        }
        // An epoch that starts without a preceding loss (§4.8) centres the curve on now.
        let epoch_start = *self.epoch_start.get_or_insert(now);
        if self.w_max == 0.0 {
            self.w_max = self.window as f64;
            self.w_est = self.window as f64;
        }
        // §4.3: W_est grows by alpha_cubic segments per window acknowledged.
        let alpha = 3.0 * (1.0 - BETA) / (1.0 + BETA);
        self.w_est += alpha * self.max_datagram_size as f64 * bytes as f64 / self.window as f64;
        let t = now.saturating_duration_since(epoch_start);
        let target = self
            .w_cubic(t + rtt.smoothed())
            .clamp(self.window as f64, 1.5 * self.window as f64);
        let cwnd = self.window as f64;
        let next = if self.w_est > target {
            self.w_est
        } else {
            // §4.4: grow by (target - cwnd) / cwnd segments per acknowledged segment.
            cwnd + (target - cwnd) / cwnd * bytes as f64
        };
        self.window = (next as u64).max(self.window);
    }

    fn on_congestion_event(&mut self, now: Instant, latest_sent: Instant, persistent: bool) {
        if persistent {
            self.window = minimum_window(self.max_datagram_size);
            self.recovery_start = None;
            self.epoch_start = None;
            self.w_max = 0.0;
            return;
        }
        if self
            .recovery_start
            .is_some_and(|start| latest_sent <= start)
        {
            return;
        }
        self.recovery_start = Some(now);
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
        self.w_est = reduced as f64;
        self.epoch_start = Some(now);
        // K = cbrt(W_max * (1 - beta) / C), in segments (§4.2).
        let k = (self.segments(self.w_max) * (1.0 - BETA) / C).cbrt();
        self.k = Duration::from_secs_f64(k);
    }

    fn window(&self) -> u64 {
        self.window
    }

    fn in_slow_start(&self) -> bool {
        self.window < self.ssthresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduces_by_beta_and_regrows_toward_w_max() {
        let start = Instant::now();
        let rtt = RttEstimator::new(Duration::from_millis(50));
        let mut cubic = Cubic::new(1200);
        let before = cubic.window();
        cubic.on_congestion_event(start, start, false);
        assert_eq!(cubic.window(), (before as f64 * BETA) as u64);
        let mut now = start;
        for _ in 0..2000 {
            now += Duration::from_millis(5);
            cubic.on_ack(now, now, 1200, false, &rtt);
        }
        assert!(
            cubic.window() > before,
            "regrew beyond W_max: {}",
            cubic.window()
        );
    }
}
