//! RTT estimation (RFC 9002 §5).

use std::time::Duration;

use super::GRANULARITY;

/// Smoothed RTT, RTT variation and minimum RTT from acknowledgments (RFC 9002 §5).
#[derive(Clone, Copy, Debug)]
pub struct RttEstimator {
    latest: Duration,
    smoothed: Duration,
    var: Duration,
    min: Duration,
    has_sample: bool,
}

impl RttEstimator {
    /// An estimator that assumes `initial_rtt` until the first sample (RFC 9002 §5.3, §6.2.2).
    pub fn new(initial_rtt: Duration) -> Self {
        Self {
            latest: initial_rtt,
            smoothed: initial_rtt,
            var: initial_rtt / 2,
            min: initial_rtt,
            has_sample: false,
        }
    }

    /// Takes a sample: `latest` is the time from sending the largest newly acknowledged packet to
    /// receiving its acknowledgment, `ack_delay` what the peer reported, already capped at its
    /// max_ack_delay once the handshake is confirmed (RFC 9002 §5.3).
    ///
    /// The first sample sets min_rtt as it is (RFC 9002 §5.2, RFC9002-004), but smoothed_rtt and
    /// rttvar from the sample less the reported delay: §5.3 bases them on adjusted samples, and
    /// during the handshake a peer whose earlier ACK was lost repeats it much later, reporting
    /// that delay. Taken raw, such a first sample can inflate the PTO past the idle timeout.
    pub fn update(&mut self, latest: Duration, ack_delay: Duration) {
        self.latest = latest;
        if !self.has_sample {
            self.has_sample = true;
            self.min = latest;
            let adjusted = latest
                .checked_sub(ack_delay)
                .unwrap_or(latest)
                .max(super::GRANULARITY);
            self.smoothed = adjusted;
            self.var = adjusted / 2;
            return;
        }
        self.min = self.min.min(latest);
        // Subtract the ack delay only when that does not go below the minimum RTT.
        let adjusted = if latest >= self.min + ack_delay {
            latest - ack_delay
        } else {
            latest
        };
        let deviation = self.smoothed.abs_diff(adjusted);
        self.var = (3 * self.var + deviation) / 4;
        self.smoothed = (7 * self.smoothed + adjusted) / 8;
    }

    /// Whether any sample was taken.
    pub fn has_sample(&self) -> bool {
        self.has_sample
    }

    /// The latest sample.
    pub fn latest(&self) -> Duration {
        self.latest
    }

    /// smoothed_rtt.
    pub fn smoothed(&self) -> Duration {
        self.smoothed
    }

    /// rttvar.
    pub fn var(&self) -> Duration {
        self.var
    }

    /// min_rtt.
    pub fn min(&self) -> Duration {
        self.min
    }

    /// smoothed_rtt + max(4 * rttvar, kGranularity): the probe timeout before max_ack_delay and
    /// backoff (RFC 9002 §6.2.1).
    pub fn pto_base(&self) -> Duration {
        self.smoothed + (4 * self.var).max(GRANULARITY)
    }

    /// The time threshold for loss: 9/8 of the larger of the latest and smoothed RTT, at least
    /// kGranularity (RFC 9002 §6.1.2).
    pub fn loss_delay(&self) -> Duration {
        (self.latest.max(self.smoothed) * 9 / 8).max(GRANULARITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sample_discounts_a_reported_delay_but_not_min_rtt() {
        let mut rtt = RttEstimator::new(Duration::from_millis(333));
        rtt.update(Duration::from_millis(3020), Duration::from_millis(3000));
        assert_eq!(rtt.min(), Duration::from_millis(3020));
        assert_eq!(rtt.smoothed(), Duration::from_millis(20));
        rtt.update(Duration::from_millis(21), Duration::ZERO);
        assert_eq!(rtt.min(), Duration::from_millis(21));
    }

    #[test]
    fn first_sample_then_smoothing() {
        let mut rtt = RttEstimator::new(Duration::from_millis(333));
        rtt.update(Duration::from_millis(100), Duration::ZERO);
        assert_eq!(
            (rtt.smoothed(), rtt.var()),
            (Duration::from_millis(100), Duration::from_millis(50))
        );
        // The ack delay is subtracted only while that stays above min_rtt.
        rtt.update(Duration::from_millis(120), Duration::from_millis(20));
        assert_eq!(rtt.smoothed(), Duration::from_millis(100));
        rtt.update(Duration::from_millis(105), Duration::from_millis(20));
        assert_eq!(rtt.min(), Duration::from_millis(100));
        assert!(rtt.smoothed() > Duration::from_millis(100));
    }
}
