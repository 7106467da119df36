//! The ACK frequency extension (draft-ietf-quic-ack-frequency): asking the peer to acknowledge
//! sooner than the max_ack_delay it advertised, and honouring the peer's requests of us.
//!
//! The max_ack_delay of RFC 9000 is fixed for a connection, and peers advertise 25 ms. Every
//! probe timeout waits for it (RFC 9002 §6.2.1), so on a path of a few hundred microseconds a
//! lost acknowledgment stalls the sender for a hundred round trips. Where the peer accepts
//! requests (it advertised min_ack_delay), we ask for a delay of a quarter of the RTT, and our
//! probe timeout shrinks with it.

use std::time::Duration;

use crate::error::{TransportError, TransportErrorCode};
use crate::recovery::GRANULARITY;
use crate::wire::{AckFrequency as AckFrequencyFrame, VarInt};

/// The ack-eliciting threshold we ask for: acknowledge at least every second ack-eliciting
/// packet, as RFC 9000 §13.2.2 recommends.
const REQUESTED_THRESHOLD: u64 = 1;
/// How far the wanted delay may drift from the one last asked for before a new request goes
/// out, as a fraction of it: requests follow the RTT without a frame per sample.
const DRIFT: f64 = 0.2;

/// A request we sent.
#[derive(Clone, Copy, Debug)]
struct Request {
    sequence: u64,
    max_ack_delay: Duration,
    acknowledged: bool,
}

/// How this endpoint acknowledges, as the peer asked (or as RFC 9000 has it when it did not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AckPolicy {
    /// Acknowledge at once when more ack-eliciting packets than this arrived since the last
    /// acknowledgment.
    pub(crate) ack_eliciting_threshold: u64,
    /// The longest an acknowledgment may wait.
    pub(crate) max_ack_delay: Duration,
    /// Acknowledge a packet that arrives out of order at once, unless this is zero.
    pub(crate) reordering_threshold: u64,
}

/// Both directions of the extension on one connection.
#[derive(Debug)]
pub(crate) struct AckFrequency {
    /// Whether we advertised min_ack_delay and send requests.
    enabled: bool,
    /// The peer's min_ack_delay, once its transport parameters arrived; present means it
    /// accepts requests.
    peer_min_ack_delay: Option<Duration>,
    /// The max_ack_delay the peer advertised.
    advertised: Duration,
    /// The max_ack_delay the peer applies for all we know: the advertised one, then the
    /// latest request it acknowledged.
    peer_max_ack_delay: Duration,
    /// The latest request, while it matters.
    request: Option<Request>,
    /// Whether the request is to be sent (again).
    request_pending: bool,
    next_sequence: u64,
    /// The largest sequence number of the peer's requests.
    received: Option<u64>,
    policy: AckPolicy,
}

impl AckFrequency {
    /// The state before the peer's transport parameters: RFC 9000's acknowledgment rules with
    /// our `max_ack_delay` and `ack_eliciting_threshold` (acknowledge at once at that many
    /// packets).
    pub(crate) fn new(
        enabled: bool,
        max_ack_delay: Duration,
        ack_eliciting_threshold: u32,
    ) -> Self {
        Self {
            enabled,
            peer_min_ack_delay: None,
            advertised: Duration::from_millis(25),
            peer_max_ack_delay: Duration::from_millis(25),
            request: None,
            request_pending: false,
            next_sequence: 0,
            received: None,
            policy: AckPolicy {
                ack_eliciting_threshold: u64::from(ack_eliciting_threshold.saturating_sub(1)),
                max_ack_delay,
                reordering_threshold: 1,
            },
        }
    }

    /// The min_ack_delay we advertise when enabled: the timer granularity.
    pub(crate) fn min_ack_delay(&self) -> Option<Duration> {
        self.enabled.then_some(GRANULARITY)
    }

    /// The peer's transport parameters: its max_ack_delay and, if it accepts requests, its
    /// min_ack_delay.
    pub(crate) fn on_peer_params(
        &mut self,
        max_ack_delay: Duration,
        min_ack_delay: Option<Duration>,
    ) {
        self.advertised = max_ack_delay;
        self.peer_max_ack_delay = max_ack_delay;
        self.peer_min_ack_delay = min_ack_delay.filter(|_| self.enabled);
    }

    /// Whether the peer accepts ACK_FREQUENCY and IMMEDIATE_ACK.
    pub(crate) fn peer_accepts(&self) -> bool {
        self.peer_min_ack_delay.is_some()
    }

    /// The peer's max_ack_delay to allow for in the probe timeout and to cap reported ACK
    /// delays with (RFC 9002 §5.3, §6.2.1): the larger of the one it applies and the one of a
    /// request it may already apply but has not acknowledged.
    pub(crate) fn peer_max_ack_delay(&self) -> Duration {
        match self.request {
            Some(request) if !request.acknowledged => {
                self.peer_max_ack_delay.max(request.max_ack_delay)
            }
            _ => self.peer_max_ack_delay,
        }
    }

    /// A new RTT estimate: asks the peer for a quarter of it as max_ack_delay, between its
    /// min_ack_delay and the max_ack_delay it advertised, when that moved far enough from what
    /// was last asked. One request is outstanding at a time.
    pub(crate) fn on_rtt(&mut self, smoothed_rtt: Duration) {
        let Some(min) = self.peer_min_ack_delay else {
            return;
        };
        let advertised = self.advertised;
        if self.request.is_some_and(|r| !r.acknowledged) {
            return;
        }
        let wanted = (smoothed_rtt / 4)
            .max(min)
            .max(GRANULARITY)
            .min(advertised.max(min));
        let current = self.request.map_or(advertised, |r| r.max_ack_delay);
        let drift = wanted.as_secs_f64() / current.as_secs_f64().max(1e-9) - 1.0;
        if self.request.is_some() && drift.abs() <= DRIFT {
            return;
        }
        if self.request.is_none() && wanted == advertised {
            return;
        }
        self.request = Some(Request {
            sequence: self.next_sequence,
            max_ack_delay: wanted,
            acknowledged: false,
        });
        self.next_sequence += 1;
        self.request_pending = true;
    }

    /// The pending request was written into a packet.
    pub(crate) fn on_sent(&mut self) {
        self.request_pending = false;
    }

    /// The request to send now, if any.
    pub(crate) fn pending(&self) -> Option<AckFrequencyFrame> {
        let request = self.request.filter(|_| self.request_pending)?;
        let micros = u64::try_from(request.max_ack_delay.as_micros()).unwrap_or(u64::MAX);
        Some(AckFrequencyFrame {
            sequence: VarInt::from_u64(request.sequence).expect("small"),
            ack_eliciting_threshold: VarInt::from_u64(REQUESTED_THRESHOLD).expect("small"),
            request_max_ack_delay: VarInt::from_u64(micros).unwrap_or(VarInt::MAX),
            reordering_threshold: VarInt::from_u32(1),
        })
    }

    /// Whether a request waits to be sent.
    pub(crate) fn has_pending(&self) -> bool {
        self.request_pending
    }

    /// The request of `sequence` was acknowledged: the peer applies it.
    pub(crate) fn on_acked(&mut self, sequence: u64) {
        if let Some(request) = &mut self.request {
            if request.sequence == sequence && !request.acknowledged {
                request.acknowledged = true;
                self.peer_max_ack_delay = request.max_ack_delay;
            }
        }
    }

    /// A packet carrying the request of `sequence` was lost: it is sent again if it is still
    /// the latest and unacknowledged.
    pub(crate) fn on_lost(&mut self, sequence: u64) {
        if self
            .request
            .is_some_and(|r| r.sequence == sequence && !r.acknowledged)
        {
            self.request_pending = true;
        }
    }

    /// The peer's ACK_FREQUENCY (draft-ietf-quic-ack-frequency §4): a request newer than any
    /// before replaces our acknowledgment policy. One asking for less than our min_ack_delay,
    /// or sent although we advertised none, is a PROTOCOL_VIOLATION.
    pub(crate) fn on_frame(&mut self, frame: &AckFrequencyFrame) -> Result<(), TransportError> {
        let violation = |reason: &str| TransportError {
            code: TransportErrorCode::PROTOCOL_VIOLATION,
            frame_type: Some(crate::wire::FrameType::ACK_FREQUENCY.0),
            reason: reason.into(),
        };
        let Some(min) = self.min_ack_delay() else {
            return Err(violation("ACK_FREQUENCY without min_ack_delay advertised"));
        };
        let delay = Duration::from_micros(frame.request_max_ack_delay.into_inner());
        if delay < min {
            return Err(violation("Request Max Ack Delay below min_ack_delay"));
        }
        let sequence = frame.sequence.into_inner();
        if self.received.is_some_and(|largest| sequence <= largest) {
            return Ok(());
        }
        self.received = Some(sequence);
        self.policy = AckPolicy {
            ack_eliciting_threshold: frame.ack_eliciting_threshold.into_inner(),
            max_ack_delay: delay,
            reordering_threshold: frame.reordering_threshold.into_inner(),
        };
        Ok(())
    }

    /// How we acknowledge now.
    pub(crate) fn policy(&self) -> AckPolicy {
        self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(sequence: u64, delay_us: u64) -> AckFrequencyFrame {
        AckFrequencyFrame {
            sequence: VarInt::from_u64(sequence).unwrap(),
            ack_eliciting_threshold: VarInt::from_u32(9),
            request_max_ack_delay: VarInt::from_u64(delay_us).unwrap(),
            reordering_threshold: VarInt::ZERO,
        }
    }

    /// The pending request, written.
    fn take(state: &mut AckFrequency) -> Option<AckFrequencyFrame> {
        let frame = state.pending();
        state.on_sent();
        frame
    }

    #[test]
    fn requests_follow_the_rtt_one_at_a_time() {
        let advertised = Duration::from_millis(25);
        let mut state = AckFrequency::new(true, advertised, 2);
        // Nothing is asked of a peer that accepts no requests.
        state.on_rtt(Duration::from_micros(300));
        assert!(!state.has_pending());
        state.on_peer_params(advertised, Some(Duration::from_millis(1)));
        state.on_rtt(Duration::from_micros(300));
        let sent = take(&mut state).expect("a request");
        assert_eq!(sent.request_max_ack_delay.into_inner(), 1000);
        assert_eq!(state.peer_max_ack_delay(), advertised);
        // Lost, it goes again; acknowledged, it is what the probe timeout allows for.
        state.on_lost(0);
        assert_eq!(take(&mut state), Some(sent));
        state.on_rtt(Duration::from_millis(40));
        assert!(!state.has_pending(), "one request at a time");
        state.on_acked(0);
        assert_eq!(state.peer_max_ack_delay(), Duration::from_millis(1));
        state.on_lost(0);
        assert!(!state.has_pending());
        // A small drift asks nothing new; a large one does, with the next sequence number.
        state.on_rtt(Duration::from_micros(4400));
        assert!(!state.has_pending());
        state.on_rtt(Duration::from_millis(40));
        let next = take(&mut state).expect("a new request");
        assert_eq!(next.sequence.into_inner(), 1);
        assert_eq!(next.request_max_ack_delay.into_inner(), 10_000);
        // Until acknowledged, the probe timeout allows for the larger of old and new.
        assert_eq!(state.peer_max_ack_delay(), Duration::from_millis(10));
    }

    #[test]
    fn the_peers_requests_apply_in_order_and_within_min_ack_delay() {
        let mut state = AckFrequency::new(true, Duration::from_millis(25), 2);
        assert_eq!(state.policy().ack_eliciting_threshold, 1);
        state.on_frame(&frame(3, 5000)).unwrap();
        let policy = state.policy();
        assert_eq!(policy.max_ack_delay, Duration::from_millis(5));
        assert_eq!(
            (policy.ack_eliciting_threshold, policy.reordering_threshold),
            (9, 0)
        );
        // Stale: ignored.
        state.on_frame(&frame(2, 8000)).unwrap();
        assert_eq!(state.policy(), policy);
        let error = state.on_frame(&frame(4, 999)).unwrap_err();
        assert_eq!(error.code, TransportErrorCode::PROTOCOL_VIOLATION);
        let mut disabled = AckFrequency::new(false, Duration::from_millis(25), 2);
        assert!(disabled.on_frame(&frame(0, 5000)).is_err());
    }
}
