//! Pacing (RFC 9002 §7.7): spreading a window's worth of packets over a round trip instead of
//! sending them in one burst.

use std::time::{Duration, Instant};

/// A token bucket that fills at 5/4 of the congestion window per smoothed RTT (N = 1.25,
/// RFC 9002 §7.7), holding at most a burst of ten datagrams.
#[derive(Debug)]
pub(crate) struct Pacer {
    tokens: u64,
    capacity: u64,
    last_refill: Option<Instant>,
}

impl Pacer {
    pub(crate) fn new(max_datagram_size: u64) -> Self {
        let capacity = 10 * max_datagram_size;
        Self {
            tokens: capacity,
            capacity,
            last_refill: None,
        }
    }

    /// When `bytes` more may be sent: `None` for now.
    pub(crate) fn delay(
        &mut self,
        now: Instant,
        bytes: u64,
        window: u64,
        rtt: Duration,
    ) -> Option<Instant> {
        let rtt_nanos = rtt.as_nanos().max(1);
        // Bytes per RTT at the pacing rate.
        let rate = (window as u128 * 5 / 4).max(1);
        if let Some(last) = self.last_refill {
            let elapsed = now.saturating_duration_since(last).as_nanos();
            let refill = (rate * elapsed / rtt_nanos).min(u128::from(self.capacity)) as u64;
            self.tokens = (self.tokens + refill).min(self.capacity);
        }
        self.last_refill = Some(now);
        if self.tokens >= bytes {
            return None;
        }
        let missing = u128::from(bytes - self.tokens);
        let wait = (missing * rtt_nanos).div_ceil(rate);
        Some(now + Duration::from_nanos(wait.min(u128::from(u64::MAX)) as u64))
    }

    /// `bytes` were sent.
    pub(crate) fn on_sent(&mut self, bytes: u64) {
        self.tokens = self.tokens.saturating_sub(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_paces_at_five_quarters_of_the_window_per_rtt() {
        let mut pacer = Pacer::new(1200);
        let start = Instant::now();
        let rtt = Duration::from_millis(100);
        let window = 120_000;
        for _ in 0..10 {
            assert_eq!(pacer.delay(start, 1200, window, rtt), None);
            pacer.on_sent(1200);
        }
        // 150 000 bytes per 100 ms: 1200 bytes take 0.8 ms.
        let next = pacer.delay(start, 1200, window, rtt).unwrap();
        assert_eq!(next - start, Duration::from_micros(800));
        assert_eq!(pacer.delay(next, 1200, window, rtt), None);
    }
}
