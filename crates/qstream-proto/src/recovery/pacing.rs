//! Pacing (RFC 9002 §7.7): spreading a window's worth of packets over a round trip instead of
//! sending them in one burst.

use std::time::{Duration, Instant};

/// The pacing rate's worth of bytes one burst may carry: 2 ms. The I/O layer's timers have a
/// resolution of 1 ms and fire up to a tick late, so a bucket that holds less than two ticks
/// of the rate caps the rate itself: with 64 KiB bursts a 100 MB/s path was paced at 64 MB/s
/// at best, and a loopback sender slept after every 64 KiB.
const BURST_INTERVAL: Duration = Duration::from_millis(2);
/// The smallest burst, in datagrams, on a path slow enough that 2 ms of its rate is less: the
/// window is spread over the round trip instead of leaving at once, so a datagram lost at the
/// end of a burst is followed by others that reveal the loss (RFC 9002 §6.1) rather than by a
/// probe timeout. Bursts of ten (the initial window) at 20 ms RTT and 5 % loss took 55 probe
/// timeouts per 10 MiB on the benchmark's relay, bursts of two 3.5.
const MIN_BURST_DATAGRAMS: u64 = 2;
/// The first burst, in datagrams: the initial window (RFC9002-053).
const FIRST_BURST_DATAGRAMS: u64 = 10;
/// The largest burst, in datagrams: enough for 2 ms at about 1.5 Gbit/s; faster paths send
/// more than one burst per timer tick because acknowledgments wake the sender in between.
const MAX_BURST_DATAGRAMS: u64 = 256;
const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// The rate at which a window-based controller's packets are paced, in bytes per second: 5/4
/// of the congestion window per smoothed RTT (N = 1.25, RFC 9002 §7.7), and twice the window in
/// slow start, where the window doubles each round trip and a rate of 1.25 windows would hold
/// that growth back (Linux TCP paces slow start at 2× too).
pub(crate) fn window_rate(window: u64, rtt: Duration, slow_start: bool) -> u64 {
    let (numerator, denominator) = if slow_start { (2, 1) } else { (5, 4) };
    let per_second =
        u128::from(window) * numerator / denominator * NANOS_PER_SECOND / rtt.as_nanos().max(1);
    per_second.clamp(1, u128::from(u64::MAX)) as u64
}

/// A token bucket that fills at the pacing rate. The first burst is the initial window of ten
/// datagrams (RFC9002-053); later ones are 2 ms of the rate, at least two datagrams and at most
/// 256: more than ten on fast paths is a deviation from that SHOULD that its "path can absorb
/// larger bursts" clause allows, as Linux TCP and quinn do.
#[derive(Debug)]
pub(crate) struct Pacer {
    tokens: u64,
    min_capacity: u64,
    max_capacity: u64,
    last_refill: Option<Instant>,
}

impl Pacer {
    pub(crate) fn new(max_datagram_size: u64) -> Self {
        Self {
            tokens: FIRST_BURST_DATAGRAMS * max_datagram_size,
            min_capacity: MIN_BURST_DATAGRAMS * max_datagram_size,
            max_capacity: MAX_BURST_DATAGRAMS * max_datagram_size,
            last_refill: None,
        }
    }

    /// The largest datagram changed: bursts are counted in datagrams of the new size
    /// (RFC9002-053).
    pub(crate) fn on_max_datagram_size(&mut self, max_datagram_size: u64) {
        self.min_capacity = MIN_BURST_DATAGRAMS * max_datagram_size;
        self.max_capacity = MAX_BURST_DATAGRAMS * max_datagram_size;
    }

    /// When `bytes` more may be sent at `rate` bytes per second: `None` for now.
    pub(crate) fn delay(&mut self, now: Instant, bytes: u64, rate: u64) -> Option<Instant> {
        let rate = u128::from(rate.max(1));
        let burst = (rate * BURST_INTERVAL.as_nanos() / NANOS_PER_SECOND)
            .min(u128::from(self.max_capacity)) as u64;
        let capacity = burst.max(self.min_capacity);
        match self.last_refill {
            None => self.last_refill = Some(now),
            // Full, or above the burst size with the first flight: waiting adds nothing.
            Some(_) if self.tokens >= capacity => self.last_refill = Some(now),
            Some(last) => {
                let elapsed = now.saturating_duration_since(last).as_nanos();
                let refill = rate * elapsed / NANOS_PER_SECOND;
                if refill >= u128::from(capacity.saturating_sub(self.tokens)) {
                    self.tokens = capacity;
                    self.last_refill = Some(now);
                } else if refill > 0 {
                    // Advance the clock only by the time the whole bytes granted took, so
                    // frequent calls do not lose the fractions.
                    self.tokens += refill as u64;
                    let used = (refill * NANOS_PER_SECOND / rate) as u64;
                    self.last_refill = Some(last + Duration::from_nanos(used));
                }
            }
        }
        if self.tokens >= bytes {
            return None;
        }
        let missing = u128::from(bytes - self.tokens);
        let wait = (missing * NANOS_PER_SECOND).div_ceil(rate);
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
        let rate = window_rate(120_000, Duration::from_millis(100), false);
        for _ in 0..10 {
            assert_eq!(pacer.delay(start, 1200, rate), None);
            pacer.on_sent(1200);
        }
        // 150 000 bytes per 100 ms: 1200 bytes take 0.8 ms.
        let next = pacer.delay(start, 1200, rate).unwrap();
        assert_eq!(next - start, Duration::from_micros(800));
        assert_eq!(pacer.delay(next, 1200, rate), None);
    }

    #[test]
    fn slow_start_is_paced_at_twice_the_window_per_rtt() {
        let rtt = Duration::from_millis(20);
        assert_eq!(window_rate(100_000, rtt, true), 10_000_000);
        assert_eq!(window_rate(100_000, rtt, false), 6_250_000);
    }

    #[test]
    fn slow_paths_are_paced_in_bursts_of_two_datagrams() {
        let mut pacer = Pacer::new(1200);
        let start = Instant::now();
        // Ten datagrams per 20 ms: 2 ms of the rate is 1500 bytes, less than two datagrams.
        let rate = window_rate(12_000, Duration::from_millis(20), false);
        while pacer.delay(start, 1200, rate).is_none() {
            pacer.on_sent(1200);
        }
        // However long the sender waited, the bucket holds two datagrams, not ten.
        let later = start + Duration::from_secs(1);
        let mut burst = 0;
        while pacer.delay(later, 1200, rate).is_none() {
            pacer.on_sent(1200);
            burst += 1;
        }
        assert_eq!(burst, 2);
    }

    #[test]
    fn fast_paths_get_bursts_of_two_milliseconds_up_to_256_datagrams() {
        let mut pacer = Pacer::new(1200);
        let start = Instant::now();
        // 1 MB per 200 µs: 2 ms are 12.5 MB, so the burst is the cap of 256 datagrams.
        let rate = window_rate(1_000_000, Duration::from_micros(200), false);
        let later = start + Duration::from_millis(5);
        assert_eq!(pacer.delay(start, 1200, rate), None);
        assert_eq!(pacer.delay(later, 1200, rate), None);
        let mut sent = 0;
        while pacer.delay(later, 1200, rate).is_none() {
            pacer.on_sent(1200);
            sent += 1200;
        }
        assert_eq!(sent, 256 * 1200);
    }

    #[test]
    fn a_timer_a_tick_late_does_not_lower_the_rate() {
        // 100 MB/s, woken only by a 1 ms timer that fires 1–2 ms after it was asked for: every
        // wake-up must find a burst big enough to keep the rate.
        let mut pacer = Pacer::new(1452);
        let start = Instant::now();
        let rate = 100_000_000;
        let mut now = start;
        let mut sent = 0u64;
        while now - start < Duration::from_secs(1) {
            while pacer.delay(now, 1452, rate).is_none() {
                pacer.on_sent(1452);
                sent += 1452;
            }
            now += Duration::from_micros(1900);
        }
        assert!(sent >= 95_000_000, "sent {sent} bytes in a second");
    }

    #[test]
    fn frequent_calls_keep_the_rate() {
        // Polled every 10 µs, as when datagrams arrive back to back: the fractions of a byte
        // each interval earns must add up, or the pacer stalls until something else refills it.
        let mut pacer = Pacer::new(1200);
        let start = Instant::now();
        let rate = window_rate(120_000, Duration::from_millis(100), false);
        let mut now = start;
        let mut sent = 0u64;
        while now - start < Duration::from_secs(1) {
            if pacer.delay(now, 1200, rate).is_none() {
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
