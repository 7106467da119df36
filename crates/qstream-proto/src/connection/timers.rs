//! The connection's timers: when it must be woken, and what each expiry does (idle timeout,
//! loss detection, probes, closing, keep-alive).

use std::time::{Duration, Instant};

use super::{Connection, ConnectionError, Event, State};
use crate::wire::SpaceId;

/// A connection's timers; each is set or not, and [`Connection::poll_timeout`] is the earliest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// The idle timeout (RFC 9000 §10.1).
    Idle,
    /// The pacer releases the next packet (RFC 9002 §7.7).
    Pacing,
    /// The previous 1-RTT receive keys are discarded (RFC 9001 §6.5).
    KeyDiscard,
    /// A PING keeps the connection alive.
    KeepAlive,
    /// Loss detection or the probe timeout (RFC 9002 §6.1.2, §6.2).
    LossDetection,
    /// Validation of the peer's new address sends another challenge or is given up
    /// (RFC 9000 §8.2.4).
    PathValidation,
    /// A delayed acknowledgment is due in this space (RFC 9000 §13.2.1).
    Ack(SpaceId),
}

impl Timer {
    /// Every timer, in the order expired ones are handled: the idle timeout first, since it
    /// ends the connection.
    const ALL: [Timer; 9] = [
        Timer::Idle,
        Timer::Pacing,
        Timer::KeyDiscard,
        Timer::KeepAlive,
        Timer::LossDetection,
        Timer::PathValidation,
        Timer::Ack(SpaceId::Initial),
        Timer::Ack(SpaceId::Handshake),
        Timer::Ack(SpaceId::Data),
    ];
}

impl Connection {
    /// The earliest time [`Self::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Closing { deadline } | State::Draining { deadline } => return Some(deadline),
            State::Drained => return None,
            _ => {}
        }
        Timer::ALL
            .into_iter()
            .filter_map(|timer| self.deadline(timer))
            .min()
    }

    /// Handles every timer that expired by `now`: the idle timeout first (it ends the
    /// connection), then pacing, old keys, keep-alive and loss detection.
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
        for timer in Timer::ALL {
            if matches!(self.state, State::Drained) {
                return;
            }
            if self.deadline(timer).is_some_and(|t| now >= t) {
                self.on_expired(now, timer);
            }
        }
    }

    /// When `timer` expires, if it is set.
    fn deadline(&self, timer: Timer) -> Option<Instant> {
        match timer {
            Timer::Idle => self.idle.deadline(),
            Timer::Pacing => self.path.pacing_until,
            Timer::KeyDiscard => self.one_rtt.as_ref().and_then(|k| k.prev_discard_at),
            Timer::KeepAlive => self.keep_alive_deadline(),
            Timer::LossDetection => self.loss_detection_timer(),
            Timer::PathValidation => [
                self.migration.deadline(),
                self.preferred.deadline(),
                self.local_probe.as_ref().and_then(|p| p.deadline()),
            ]
            .into_iter()
            .flatten()
            .min(),
            Timer::Ack(id) => {
                let space = &self.spaces[id as usize];
                let deadline = space.ack_deadline.filter(|_| space.unacked_eliciting > 0);
                // A closing connection sends nothing but its close: no repeat then.
                let open = matches!(self.state, State::Handshaking | State::Established);
                let repeat = space.ack_repeat_at.filter(|_| open);
                [deadline, repeat].into_iter().flatten().min()
            }
        }
    }

    /// What `timer` expiring does.
    fn on_expired(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Idle => {
                // RFC 9000 §10.1: the connection is silently closed and its state discarded.
                self.error = Some(ConnectionError::TimedOut);
                self.events
                    .push_back(Event::Closed(ConnectionError::TimedOut));
                self.state = State::Drained;
            }
            Timer::Pacing => self.path.pacing_until = None,
            Timer::KeyDiscard => {
                if let Some(keys) = &mut self.one_rtt {
                    keys.discard_previous();
                }
            }
            Timer::KeepAlive => self.ping_pending = true,
            Timer::LossDetection => self.on_loss_detection_timeout(now),
            Timer::PathValidation => {
                self.on_migration_timeout(now);
                self.on_preferred_address_timeout(now);
                self.on_local_probe_timeout(now);
            }
            // The acknowledgment is due now: the next poll_transmit sends it.
            Timer::Ack(_) => {}
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

    /// The peer's max_idle_timeout in milliseconds, once known.
    pub(super) fn peer_idle_timeout(&self) -> Option<u64> {
        self.peer_params
            .as_ref()
            .map(|p| p.max_idle_timeout.into_inner())
    }

    /// Restarts the idle timer (RFC 9000 §10.1).
    pub(super) fn reset_idle_timer(&mut self, now: Instant) {
        let (peer, pto) = (self.peer_idle_timeout(), self.pto_duration());
        self.idle.restart(now, peer, pto);
    }
}
