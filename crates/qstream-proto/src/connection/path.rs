//! The network path a connection runs on: the peer's address, and what is measured and
//! controlled along it.

use std::net::SocketAddr;
use std::time::Instant;

use super::mtu::MtuDiscovery;
use crate::recovery::pacing::Pacer;
use crate::recovery::reordering::Reordering;
use crate::recovery::{Controller, RttEstimator};

/// One path: its address, RTT, congestion control and pacing, ECN, MTU and the
/// anti-amplification limit.
#[derive(Debug)]
pub(super) struct Path {
    /// The peer's address.
    pub(super) remote: SocketAddr,
    /// The local address we send from: `None` for the endpoint's own; a server's preferred
    /// address once the client moved there (RFC 9000 §9.6.3).
    pub(super) local: Option<SocketAddr>,
    pub(super) rtt: RttEstimator,
    pub(super) cc: Box<dyn Controller>,
    pub(super) pacer: Pacer,
    /// When the pacer lets the next packet go, while it holds one back.
    pub(super) pacing_until: Option<Instant>,
    pub(super) bytes_in_flight: u64,
    /// Whether packets are sent with ECT(0); cleared when ECN validation fails (RFC 9000
    /// §13.4.2).
    pub(super) ecn_sending: bool,
    /// Path MTU discovery (RFC 9000 §14.3).
    pub(super) mtu: MtuDiscovery,
    /// Loss detection's reordering thresholds, adapted to this path, and its loss episodes.
    pub(super) reordering: Reordering,
    /// Server: whether the client's address is validated; until then the anti-amplification
    /// limit applies (RFC 9000 §8.1).
    pub(super) address_validated: bool,
    /// Bytes received and sent while the limit applies.
    pub(super) amplification_received: u64,
    pub(super) amplification_sent: u64,
}

impl Path {
    /// The rate the pacer sends at: the controller's own (BBR), or one from the window and the
    /// smoothed RTT (RFC 9002 §7.7).
    pub(super) fn pacing_rate(&self) -> u64 {
        self.cc.pacing_rate().unwrap_or_else(|| {
            let window = self.cc.window();
            let slow_start = self.cc.ssthresh().is_none_or(|ssthresh| window < ssthresh);
            crate::recovery::pacing::window_rate(window, self.rtt.smoothed(), slow_start)
        })
    }

    /// What the anti-amplification limit still allows (RFC 9000 §8.1).
    pub(super) fn amplification_allowance(&self) -> u64 {
        (3 * self.amplification_received).saturating_sub(self.amplification_sent)
    }
}
