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
        match self.last_refill {
            None => self.last_refill = Some(now),
            Some(last) => {
                let elapsed = now.saturating_duration_since(last).as_nanos();
                let refill = rate * elapsed / rtt_nanos;
                if refill >= u128::from(self.capacity - self.tokens) {
                    self.tokens = self.capacity;
                    self.last_refill = Some(now);
                } else if refill > 0 {
                    // Advance the clock only by the time the whole bytes granted took, so
                    // frequent calls do not lose the fractions.
                    self.tokens += refill as u64;
                    let used = (refill * rtt_nanos / rate) as u64;
                    self.last_refill = Some(last + Duration::from_nanos(used));
                }
            }
        }
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

    #[test]
    fn frequent_calls_keep_the_rate() {
        // Polled every 10 µs, as when datagrams arrive back to back: the fractions of a byte
        // each interval earns must add up, or the pacer stalls until something else refills it.
        let mut pacer = Pacer::new(1200);
        let start = Instant::now();
        let rtt = Duration::from_millis(100);
        let window = 120_000;
        let mut now = start;
        let mut sent = 0u64;
        while now - start < Duration::from_secs(1) {
            if pacer.delay(now, 1200, window, rtt).is_none() {
                pacer.on_sent(1200);
                sent += 1200;
            }
            now += Duration::from_micros(10);
        }
        // 150 000 bytes per 100 ms, plus the initial burst.
        assert!(
            (1_500_000..=1_500_000 + 12_000 + 1200).contains(&sent),
            "sent {sent}"
        );
    }
}
