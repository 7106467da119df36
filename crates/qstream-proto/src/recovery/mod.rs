//! Loss recovery building blocks (RFC 9002): RTT estimation and congestion control. Loss
//! detection itself lives with the packet spaces in the connection.

mod bbr;
mod cubic;
mod new_reno;
pub(crate) mod pacing;
pub(crate) mod reordering;
mod rtt;

pub use rtt::RttEstimator;

use std::fmt;
use std::time::{Duration, Instant};

/// Timer granularity (RFC 9002 §6.1.2, kGranularity).
pub const GRANULARITY: Duration = Duration::from_millis(1);
/// Reordering threshold in packets (RFC 9002 §6.1.1, kPacketThreshold).
pub const PACKET_THRESHOLD: u64 = 3;
/// Persistent congestion threshold in PTOs (RFC 9002 §7.6.1, kPersistentCongestionThreshold).
pub const PERSISTENT_CONGESTION_THRESHOLD: u32 = 3;

/// Which congestion controller a connection uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CongestionControl {
    /// NewReno (RFC 9002 §7): halves the window on loss, grows it by one datagram per
    /// round trip.
    NewReno,
    /// CUBIC (RFC 9438), the default as in Linux, quinn, quic-go and msquic: after a loss the
    /// window regrows along a cubic curve in time, so it recovers within a few round trips on
    /// fast paths and stays fair to TCP.
    #[default]
    Cubic,
    /// BBR version 3 (draft-ietf-ccwg-bbr): paces at the bandwidth it measures and keeps about
    /// two bandwidth-delay products in flight; loss moves it only above 2 % of what was in
    /// flight while probing. For lossy paths (wireless, long distance), where loss is not
    /// congestion; it shares a bottleneck less evenly with loss-based flows.
    Bbr,
}

impl CongestionControl {
    /// A controller for a connection starting at `now`; `seed` drives BBR's randomised probe
    /// timing.
    pub(crate) fn build(
        self,
        max_datagram_size: u64,
        now: Instant,
        seed: u64,
    ) -> Box<dyn Controller> {
        match self {
            Self::NewReno => Box::new(new_reno::NewReno::new(max_datagram_size)),
            Self::Cubic => Box::new(cubic::Cubic::new(max_datagram_size)),
            Self::Bbr => Box::new(bbr::Bbr::new(max_datagram_size, now, seed)),
        }
    }
}

/// A packet as a controller sees it when it is acknowledged or declared lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketInfo {
    /// Its number in the application data space, which delivery-rate samples follow; `None`
    /// for Initial and Handshake packets.
    pub number: Option<u64>,
    /// When it was sent.
    pub sent: Instant,
    /// Its size, as counted in bytes in flight.
    pub bytes: u64,
}

/// A congestion controller: decides the congestion window, and possibly the pacing rate, from
/// acknowledgments and losses. Bytes in flight are tracked by the connection, not by the
/// controller.
pub trait Controller: Send + Sync + fmt::Debug {
    /// An application data packet `number` of `bytes`, counted in flight, was sent;
    /// `bytes_in_flight` includes it. `app_limited`: nothing else waited to be sent and the
    /// window was not full. For controllers that sample the delivery rate.
    fn on_sent(
        &mut self,
        _now: Instant,
        _number: u64,
        _bytes: u64,
        _bytes_in_flight: u64,
        _app_limited: bool,
    ) {
    }
    /// `packet` was acknowledged. `app_limited` is true when the window was not the limit when
    /// it was sent, so it must not grow (RFC 9002 §7.8).
    fn on_ack(&mut self, now: Instant, packet: &PacketInfo, app_limited: bool, rtt: &RttEstimator);
    /// `packet` was declared lost (RFC 9002 §6.1), before the congestion event it is part of.
    fn on_lost(&mut self, _now: Instant, _packet: &PacketInfo) {}
    /// One ACK frame was handled, its acknowledgments and the losses it revealed;
    /// `bytes_in_flight` is what remains, `rtt_sample` the RTT it measured, if any.
    fn on_ack_done(&mut self, _now: Instant, _bytes_in_flight: u64, _rtt_sample: Option<Duration>) {
    }
    /// Packets were declared lost, the latest sent at `latest_sent` (RFC 9002 §7.3.2). With
    /// `persistent`, the window collapses to the minimum (§7.6.2).
    fn on_congestion_event(&mut self, now: Instant, latest_sent: Instant, persistent: bool);
    /// The congestion event at `started` was spurious: every packet whose loss made it was
    /// acknowledged after all. A controller that reduced its window then and not since restores
    /// the state it had before (RFC 9438 §4.9).
    fn on_spurious_congestion(&mut self, _started: Instant) {}
    /// The largest datagram the path carries changed (path MTU discovery): the minimum
    /// window, the growth step and, while untouched, the initial window follow it
    /// (RFC 9002 §7.2, RFC9002-038).
    fn on_max_datagram_size(&mut self, max_datagram_size: u64);
    /// The congestion window in bytes.
    fn window(&self) -> u64;
    /// The pacing rate in bytes per second, for a controller that sets one; `None` paces at
    /// 5/4 of the window per smoothed RTT (RFC 9002 §7.7).
    fn pacing_rate(&self) -> Option<u64> {
        None
    }
    /// The slow start threshold, for logs; `None` for a controller without one.
    fn ssthresh(&self) -> Option<u64>;
}

/// The initial window (RFC 9002 §7.2): ten datagrams, at most max(14720, 2 datagrams).
pub(crate) fn initial_window(max_datagram_size: u64) -> u64 {
    (10 * max_datagram_size).min((2 * max_datagram_size).max(14_720))
}

/// The minimum window (RFC 9002 §7.2): two datagrams.
pub(crate) fn minimum_window(max_datagram_size: u64) -> u64 {
    2 * max_datagram_size
}

/// The recovery period of a loss-based controller (RFC 9002 §7.3.2): it starts at a congestion
/// event, and packets sent before it started neither grow the window nor cause another
/// reduction.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RecoveryPeriod(Option<Instant>);

impl RecoveryPeriod {
    /// Whether a packet sent at `sent` was sent before the period started.
    pub(crate) fn covers(&self, sent: Instant) -> bool {
        self.0.is_some_and(|start| sent <= start)
    }

    /// A loss of a packet sent at `latest_sent`: a new period starts at `now` unless the loss
    /// belongs to the current one. True when one started: the window is to be reduced.
    pub(crate) fn on_loss(&mut self, now: Instant, latest_sent: Instant) -> bool {
        if self.covers(latest_sent) {
            return false;
        }
        self.0 = Some(now);
        true
    }

    /// When the current period started, if one did.
    pub(crate) fn started(&self) -> Option<Instant> {
        self.0
    }

    /// Persistent congestion: the period ends, and the next loss starts a new one.
    pub(crate) fn reset(&mut self) {
        self.0 = None;
    }
}

/// A window after the max datagram size changed from `old` to `new` (RFC 9002 §7.2): one
/// still at the initial window becomes the initial window for the new size, and none is below
/// the new minimum.
pub(crate) fn resized_window(window: u64, old: u64, new: u64) -> u64 {
    let window = if window == initial_window(old) {
        initial_window(new)
    } else {
        window
    };
    window.max(minimum_window(new))
}
