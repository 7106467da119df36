//! The connection's timers: when it must be woken, and what each expiry does (idle timeout,
//! loss detection, probes, closing, keep-alive).

use std::time::{Duration, Instant};

use super::{Connection, ConnectionError, Event, State};

impl Connection {
    /// The earliest time [`Self::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Closing { deadline } | State::Draining { deadline } => return Some(deadline),
            State::Drained => return None,
            _ => {}
        }
        let ack = self.spaces.iter().filter_map(|s| {
            if s.unacked_eliciting > 0 {
                s.ack_deadline
            } else {
                None
            }
        });
        let key_discard = self.one_rtt.as_ref().and_then(|k| k.prev_discard_at);
        let keep_alive = self.keep_alive_deadline();
        [
            self.loss_detection_timer(),
            self.idle_deadline,
            key_discard,
            keep_alive,
            // RFC 9002 §7.7: the pacer's next release.
            self.path.pacing_until,
        ]
        .into_iter()
        .flatten()
        .chain(ack)
        .min()
    }

    /// Handles every timer that expired at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Closing { deadline } | State::Draining { deadline } => {
                if now >= deadline {
                    self.state = State::Drained;
                }
                return;
            }
            State::Drained => return,
            _ => {}
        }
        if self.idle_deadline.is_some_and(|d| now >= d) {
            // RFC 9000 §10.1: the connection is silently closed and its state discarded.
            self.error = Some(ConnectionError::TimedOut);
            self.events
                .push_back(Event::Closed(ConnectionError::TimedOut));
            self.state = State::Drained;
            return;
        }
        if self.path.pacing_until.is_some_and(|t| now >= t) {
            self.path.pacing_until = None;
        }
        if let Some(keys) = &mut self.one_rtt {
            if keys.prev_discard_at.is_some_and(|d| now >= d) {
                keys.discard_previous();
            }
        }
        if self.keep_alive_deadline().is_some_and(|d| now >= d) {
            self.ping_pending = true;
        }
        if self.loss_detection_timer().is_some_and(|t| now >= t) {
            self.on_loss_detection_timeout(now);
        }
    }

    pub(super) fn keep_alive_deadline(&self) -> Option<Instant> {
        let interval = self.config.keep_alive_interval?;
        if !self.is_established() || self.ping_pending {
            return None;
        }
        Some(self.last_sent_eliciting? + interval)
    }

    /// How long an acknowledgment of a lone 1-RTT packet is held back: a quarter of the RTT,
    /// at least the timer granularity and at most our max_ack_delay (or what the peer asked
    /// for instead with ACK_FREQUENCY). RFC 9000 §13.2.1 bounds
    /// the delay by max_ack_delay and lets a receiver acknowledge sooner. On a path of a few
    /// hundred microseconds, holding a lone packet's ACK for the whole 25 ms stalls a sender
    /// whose window has one packet left for a hundred round trips.
    pub(super) fn ack_delay(&self) -> Duration {
        (self.path.rtt.smoothed() / 4)
            .max(crate::recovery::GRANULARITY)
            .min(self.ack_frequency.policy().max_ack_delay)
    }

    pub(super) fn pto_duration(&self) -> Duration {
        self.path.rtt.pto_base()
    }

    /// Restarts the idle timer (RFC 9000 §10.1): the effective timeout is the smaller of both
    /// sides' (zero meaning none), and never less than three PTOs.
    pub(super) fn reset_idle_timer(&mut self, now: Instant) {
        let peer = self
            .peer_params
            .as_ref()
            .map(|p| p.max_idle_timeout.into_inner())
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis);
        let timeout = match (self.idle_timeout, peer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.idle_deadline = timeout.map(|t| now + t.max(3 * self.pto_duration()));
    }
}
