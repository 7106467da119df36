//! Datagram packetization layer path MTU discovery (RFC 9000 §14.3, RFC 8899), reduced to
//! what a QUIC sender needs: start at 1200 bytes, probe larger sizes with PING and PADDING
//! once the handshake is confirmed, and adopt a size when a probe of it is acknowledged. A
//! path that stops carrying the adopted size (a black hole, RFC 8899 §4.4) is detected from
//! losses of larger datagrams while smaller ones arrive, and the size falls back to 1200.

use std::time::{Duration, Instant};

use super::MIN_INITIAL_SIZE;

/// Probes of one size lost in a row before that size counts as too large (RFC 8899 §5.1.2,
/// MAX_PROBES).
const MAX_PROBES: u8 = 3;
/// The search stops when the bounds are this close.
const PRECISION: u16 = 16;
/// The largest UDP payload there is, and the largest max_udp_payload_size (RFC 9000 §18.2).
const MAX_UDP_PAYLOAD: u16 = 65_527;
/// How long after a search ends before trying the sizes above again (RFC 8899 §5.1.1
/// suggests 600 s).
const RAISE_INTERVAL: Duration = Duration::from_secs(600);
/// The size every QUIC path carries (RFC 9000 §14).
const BASE: u16 = MIN_INITIAL_SIZE as u16;
/// Datagrams above [`BASE`] lost with none of them acknowledged since, before an
/// acknowledgment of only smaller ones says the path drops the larger (RFC 8899 §4.4).
const BLACK_HOLE_LOSSES: u32 = 6;
/// Probe timeouts in a row after which datagrams go at [`BASE`] size: if the path became a
/// black hole for larger ones, those get through and tell it apart from an outage.
const BLACK_HOLE_PTOS: u32 = 2;

/// The path MTU search of one path.
#[derive(Debug)]
pub(crate) struct MtuDiscovery {
    /// The largest UDP payload known to pass (RFC 9000 §14: never below 1200).
    current: u16,
    /// The largest size to try: our and the peer's max_udp_payload_size.
    ceiling: u16,
    /// The smallest size known not to pass, or `ceiling + 1`.
    too_large: u16,
    /// The size being tried, probe after probe, until acknowledged or lost too often.
    candidate: Option<u16>,
    /// The size of the probe in flight, if one is.
    in_flight: Option<u16>,
    /// Probes of the candidate lost in a row.
    losses: u8,
    /// When the search may start again after it ended.
    resume_at: Option<Instant>,
    /// Datagrams above [`BASE`] (not probes) lost since one of them was last acknowledged.
    large_lost: u32,
}

impl MtuDiscovery {
    /// A search that never goes above `ceiling` (our max_udp_payload_size).
    pub(crate) fn new(ceiling: u16) -> Self {
        let ceiling = ceiling.clamp(MIN_INITIAL_SIZE as u16, MAX_UDP_PAYLOAD);
        Self {
            current: MIN_INITIAL_SIZE as u16,
            ceiling,
            too_large: ceiling + 1,
            candidate: None,
            in_flight: None,
            losses: 0,
            resume_at: None,
            large_lost: 0,
        }
    }

    /// The largest datagram to send outside probes.
    pub(crate) fn current(&self) -> u16 {
        self.current
    }

    /// The largest datagram to send after `consecutive_ptos` probe timeouts in a row: the
    /// current size, or [`BASE`] once that many timeouts suggest the path may have become a
    /// black hole for larger datagrams.
    pub(crate) fn send_size(&self, consecutive_ptos: u32) -> u16 {
        if consecutive_ptos >= BLACK_HOLE_PTOS {
            BASE
        } else {
            self.current
        }
    }

    /// A datagram of `size` bytes that was not a probe was declared lost.
    pub(crate) fn on_lost(&mut self, size: u16) {
        if size > BASE {
            self.large_lost += 1;
        }
    }

    /// An acknowledgment was processed, losses it revealed included: it acknowledged
    /// datagrams above [`BASE`] (`acked_large`) or only ones at most that (`acked_small`, an
    /// ack-eliciting one among them). Returns whether the path is now taken for a black hole
    /// above [`BASE`]: the size falls back to it and the search starts again below the size
    /// that stopped passing.
    pub(crate) fn on_ack_processed(&mut self, acked_large: bool, acked_small: bool) -> bool {
        if acked_large {
            self.large_lost = 0;
            return false;
        }
        if !acked_small || self.large_lost < BLACK_HOLE_LOSSES || self.current <= BASE {
            return false;
        }
        self.too_large = self.current;
        self.current = BASE;
        self.candidate = None;
        self.losses = 0;
        self.resume_at = None;
        self.large_lost = 0;
        true
    }

    /// Lowers the ceiling to the peer's max_udp_payload_size (RFC 9000 §18.2).
    pub(crate) fn limit_to_peer(&mut self, peer_max: u64) {
        let peer_max = u16::try_from(peer_max).unwrap_or(u16::MAX);
        self.ceiling = self.ceiling.min(peer_max).max(MIN_INITIAL_SIZE as u16);
        self.too_large = self.too_large.min(self.ceiling + 1);
        if self.candidate.is_some_and(|c| c > self.ceiling) {
            self.candidate = None;
            self.losses = 0;
        }
    }

    /// The size of the next probe to send now, if one is due.
    pub(crate) fn probe_size(&mut self, now: Instant) -> Option<u16> {
        if self.in_flight.is_some() {
            return None;
        }
        if self.too_large - self.current <= PRECISION {
            // Converged: look above again later, in case the path changed.
            match self.resume_at {
                None => {
                    self.resume_at = Some(now + RAISE_INTERVAL);
                    return None;
                }
                Some(at) if now < at => return None,
                Some(_) => {
                    self.resume_at = None;
                    self.too_large = self.ceiling + 1;
                    if self.too_large - self.current <= PRECISION {
                        return None;
                    }
                }
            }
        }
        // Try the ceiling first (most paths take it), then halve the interval.
        let size = *self
            .candidate
            .get_or_insert(if self.too_large > self.ceiling {
                self.ceiling
            } else {
                self.current + (self.too_large - self.current) / 2
            });
        self.in_flight = Some(size);
        Some(size)
    }

    /// A probe of `size` was acknowledged: the path carries it.
    pub(crate) fn on_probe_acked(&mut self, size: u16) {
        if self.in_flight == Some(size) {
            self.in_flight = None;
        }
        self.candidate = None;
        self.losses = 0;
        self.current = self.current.max(size);
        if self.too_large <= self.current {
            self.too_large = self.ceiling + 1;
        }
    }

    /// A probe of `size` was declared lost. After [`MAX_PROBES`] losses in a row the size
    /// counts as too large; a lost probe says nothing about congestion (RFC 9000 §14.4).
    pub(crate) fn on_probe_lost(&mut self, size: u16) {
        if self.in_flight == Some(size) {
            self.in_flight = None;
        }
        if self.candidate != Some(size) {
            return;
        }
        self.losses += 1;
        if self.losses >= MAX_PROBES {
            self.losses = 0;
            self.candidate = None;
            self.too_large = self.too_large.min(size).max(self.current + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the search against a path that carries `path_mtu` bytes.
    fn search(ceiling: u16, path_mtu: u16) -> u16 {
        let mut mtu = MtuDiscovery::new(ceiling);
        let now = Instant::now();
        for _ in 0..100 {
            let Some(size) = mtu.probe_size(now) else {
                break;
            };
            if size <= path_mtu {
                mtu.on_probe_acked(size);
            } else {
                mtu.on_probe_lost(size);
            }
        }
        mtu.current()
    }

    #[test]
    fn mtu_search_takes_the_ceiling_when_the_path_carries_it() {
        assert_eq!(search(1452, 1500), 1452);
    }

    #[test]
    fn mtu_search_accepts_any_configured_ceiling() {
        // u16::MAX is above the largest UDP payload; the search stops at 65527 and the bounds
        // never overflow.
        assert_eq!(search(u16::MAX, u16::MAX), MAX_UDP_PAYLOAD);
        assert_eq!(search(0, 1500), MIN_INITIAL_SIZE as u16);
    }

    #[test]
    fn mtu_search_converges_below_a_smaller_path_mtu() {
        for path in [1200, 1250, 1300, 1400, 1451] {
            let found = search(1452, path);
            assert!(
                found <= path && path - found <= PRECISION,
                "{path}: found {found}"
            );
        }
    }

    #[test]
    fn mtu_search_respects_the_peer_limit_and_starts_again_later() {
        let mut mtu = MtuDiscovery::new(1452);
        mtu.limit_to_peer(1300);
        let now = Instant::now();
        assert_eq!(mtu.probe_size(now), Some(1300));
        mtu.on_probe_acked(1300);
        assert_eq!(mtu.current(), 1300);
        assert_eq!(mtu.probe_size(now), None);
        assert_eq!(
            mtu.probe_size(now + RAISE_INTERVAL),
            None,
            "nothing left above"
        );
        mtu.limit_to_peer(100);
        assert_eq!(mtu.current(), 1300, "never below what was validated");
    }

    #[test]
    fn a_black_hole_above_the_base_size_falls_back_and_searches_again_below() {
        let mut mtu = MtuDiscovery::new(1500);
        let now = Instant::now();
        let size = mtu.probe_size(now).unwrap();
        mtu.on_probe_acked(size);
        assert_eq!(mtu.current(), 1500);
        // Losses of large datagrams while large ones still arrive are congestion or noise.
        for _ in 0..BLACK_HOLE_LOSSES {
            mtu.on_lost(1500);
        }
        assert!(!mtu.on_ack_processed(true, true));
        // Large datagrams lost and none acknowledged, while small ones arrive: a black hole.
        for _ in 0..BLACK_HOLE_LOSSES - 1 {
            mtu.on_lost(1500);
            mtu.on_lost(900);
        }
        assert!(!mtu.on_ack_processed(false, true), "not yet: too few");
        mtu.on_lost(1500);
        assert!(
            !mtu.on_ack_processed(false, false),
            "nothing arrived: an outage"
        );
        assert_eq!(mtu.send_size(BLACK_HOLE_PTOS - 1), 1500);
        assert_eq!(
            mtu.send_size(BLACK_HOLE_PTOS),
            BASE,
            "small probes tell it apart"
        );
        assert!(mtu.on_ack_processed(false, true));
        assert_eq!(mtu.current(), BASE);
        // The search resumes at once, below the size that stopped passing.
        let next = mtu.probe_size(now).unwrap();
        assert!(next > BASE && next < 1500, "{next}");
    }
}
