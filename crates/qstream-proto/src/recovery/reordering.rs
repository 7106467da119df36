//! Reordering tolerance of loss detection, adapted to what the path does (RFC 9002 §6.1), and
//! the undoing of congestion responses to losses that were not (RFC 9438 §4.9).
//!
//! RFC 9002 declares a packet lost three packets or 9/8 of an RTT (at least 1 ms) behind one
//! acknowledged later. A path that reorders by more makes every late packet a loss: it is sent
//! again for nothing and the window is cut for nothing. When an acknowledgment arrives for a
//! packet already declared lost, the loss was spurious, and as RACK does (RFC 8985 §6.2) the
//! thresholds grow to what was seen: the packet threshold past the reordering distance, the
//! time threshold by the delay the packet came late, at most one smoothed RTT (RACK's cap on
//! its reordering window). After sixteen loss episodes without a spurious loss they return to
//! RFC 9002's values. A loss episode whose every lost packet arrives after all was no
//! congestion: the controller restores the state it had before it (RFC 9438 §4.9).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::{GRANULARITY, PACKET_THRESHOLD, RttEstimator};

/// The largest packet threshold adaptation sets.
const MAX_PACKET_THRESHOLD: u64 = 1024;
/// Loss episodes without a spurious loss after which the thresholds return to RFC 9002's
/// (RFC 8985 §6.2 step 4: sixteen recoveries).
const EPISODES_TO_RESET: u32 = 16;
/// How many packets declared lost are remembered to recognise their late acknowledgment;
/// an episode with more lost packets than this is not undone.
const REMEMBERED_LOSSES: usize = 1024;

/// The reordering tolerance of one path's loss detection and its loss episodes.
#[derive(Debug)]
pub(crate) struct Reordering {
    packet_threshold: u64,
    /// Time allowed past RFC 9002's time threshold.
    extra_delay: Duration,
    /// Episodes since the last spurious loss.
    quiet_episodes: u32,
    /// Application data packets declared lost, by number, with when they were sent.
    lost: BTreeMap<u64, Instant>,
    /// The latest loss episode, while it could still prove spurious.
    episode: Option<LossEpisode>,
}

/// The packets declared lost since a congestion event, until a loss starts another.
#[derive(Debug)]
struct LossEpisode {
    /// When the event happened, which is when the controller's recovery period started.
    started: Instant,
    /// Its lost packets not acknowledged since.
    outstanding: BTreeSet<u64>,
    /// Whether a packet of it turned out not lost.
    spurious: bool,
}

/// What a late acknowledgment of packets declared lost showed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SpuriousLosses {
    /// How many of the acknowledged packets had been declared lost.
    pub(crate) packets: u64,
    /// Every packet of the latest loss episode arrived: the congestion event that started at
    /// this time was spurious and is to be undone.
    pub(crate) undo: Option<Instant>,
}

impl Default for Reordering {
    fn default() -> Self {
        Self {
            packet_threshold: PACKET_THRESHOLD,
            extra_delay: Duration::ZERO,
            quiet_episodes: 0,
            lost: BTreeMap::new(),
            episode: None,
        }
    }
}

impl Reordering {
    /// Packets this many below the largest acknowledged are lost (RFC 9002 §6.1.1; never
    /// below 3, RFC9002-012).
    pub(crate) fn packet_threshold(&self) -> u64 {
        self.packet_threshold
    }

    /// Packets sent this long before one acknowledged are lost: RFC 9002 §6.1.2's threshold
    /// (at least kGranularity, RFC9002-014) plus what reordering on this path asked for.
    pub(crate) fn loss_delay(&self, rtt: &RttEstimator) -> Duration {
        rtt.loss_delay() + self.extra_delay
    }

    /// Application data packets `lost` (number, sent) were declared lost at `now`. When they
    /// are a congestion signal (in flight, not MTU probes) `latest_sent` is when the latest of
    /// them was sent; `persistent` when they established persistent congestion (never undone).
    pub(crate) fn on_lost(
        &mut self,
        now: Instant,
        lost: &[(u64, Instant)],
        latest_sent: Option<Instant>,
        persistent: bool,
    ) {
        for &(number, sent) in lost {
            self.lost.insert(number, sent);
        }
        while self.lost.len() > REMEMBERED_LOSSES {
            self.lost.pop_first();
        }
        let Some(latest_sent) = latest_sent else {
            return;
        };
        // The controller's recovery period (RFC 9002 §7.3.2): a packet sent after the
        // episode started begins another.
        let current = self.episode.as_ref().filter(|e| latest_sent <= e.started);
        if current.is_none() {
            if self.episode.as_ref().is_some_and(|e| !e.spurious) {
                self.quiet_episodes += 1;
                if self.quiet_episodes >= EPISODES_TO_RESET {
                    self.packet_threshold = PACKET_THRESHOLD;
                    self.extra_delay = Duration::ZERO;
                    self.quiet_episodes = 0;
                }
            }
            self.episode = Some(LossEpisode {
                started: now,
                outstanding: BTreeSet::new(),
                spurious: false,
            });
        }
        let episode = self.episode.as_mut().expect("set above");
        episode
            .outstanding
            .extend(lost.iter().map(|&(number, _)| number));
        if persistent || episode.outstanding.len() > REMEMBERED_LOSSES {
            self.episode = None;
        }
    }

    /// An acknowledgment at `now` covered `ranges` while `largest_acked` was the largest
    /// acknowledged: packets among them that were declared lost were not, and the thresholds
    /// grow to let such reordering pass.
    pub(crate) fn on_acked(
        &mut self,
        now: Instant,
        ranges: impl Iterator<Item = std::ops::RangeInclusive<u64>>,
        largest_acked: u64,
        rtt: &RttEstimator,
    ) -> SpuriousLosses {
        let mut found = SpuriousLosses::default();
        if self.lost.is_empty() {
            return found;
        }
        for range in ranges {
            let late: Vec<(u64, Instant)> = self
                .lost
                .range(range)
                .map(|(&n, &sent)| (n, sent))
                .collect();
            for (number, sent) in late {
                self.lost.remove(&number);
                found.packets += 1;
                self.on_spurious(now, number, sent, largest_acked, rtt);
                if let Some(episode) = &mut self.episode {
                    if episode.outstanding.remove(&number) {
                        episode.spurious = true;
                        if episode.outstanding.is_empty() {
                            found.undo = Some(episode.started);
                            self.episode = None;
                        }
                    }
                }
            }
        }
        found
    }

    /// Packet `number`, sent at `sent` and declared lost, arrived: the packet threshold grows
    /// past its distance below `largest_acked`, the time threshold by how late it came, with
    /// an eighth more (RFC 9002's 9/8), at most max(smoothed RTT, kGranularity).
    fn on_spurious(
        &mut self,
        now: Instant,
        number: u64,
        sent: Instant,
        largest_acked: u64,
        rtt: &RttEstimator,
    ) {
        self.quiet_episodes = 0;
        let distance = largest_acked.saturating_sub(number);
        self.packet_threshold = self
            .packet_threshold
            .max(distance + 1)
            .min(MAX_PACKET_THRESHOLD);
        let took = now.saturating_duration_since(sent);
        let wanted = (took * 9 / 8).saturating_sub(rtt.loss_delay());
        let cap = rtt.smoothed().max(GRANULARITY);
        self.extra_delay = self.extra_delay.max(wanted).min(cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An estimator whose smoothed RTT settled at `micros`.
    fn rtt(micros: u64) -> RttEstimator {
        let mut rtt = RttEstimator::new(Duration::from_micros(micros));
        for _ in 0..100 {
            rtt.update(Duration::from_micros(micros), Duration::ZERO);
        }
        rtt
    }

    #[test]
    fn a_late_packet_raises_both_thresholds_up_to_a_smoothed_rtt() {
        let (t0, rtt) = (Instant::now(), rtt(200));
        let mut reordering = Reordering::default();
        assert_eq!(reordering.packet_threshold(), 3);
        assert_eq!(reordering.loss_delay(&rtt), GRANULARITY);
        reordering.on_lost(t0, &[(10, t0)], Some(t0), false);
        let late = t0 + Duration::from_micros(1200);
        let found = reordering.on_acked(late, [10..=10].into_iter(), 50, &rtt);
        assert_eq!(found.packets, 1);
        assert_eq!(reordering.packet_threshold(), 41);
        // 9/8 of 1.2 ms is 1.35 ms: 0.35 ms past the 1 ms threshold.
        assert_eq!(
            reordering.loss_delay(&rtt),
            GRANULARITY + Duration::from_micros(350)
        );
        // Much later: capped at the smoothed RTT's floor, kGranularity.
        reordering.on_lost(late, &[(60, late)], Some(late), false);
        let found = reordering.on_acked(
            late + Duration::from_millis(9),
            [60..=60].into_iter(),
            61,
            &rtt,
        );
        assert_eq!(found.packets, 1);
        assert_eq!(reordering.loss_delay(&rtt), GRANULARITY * 2);
    }

    #[test]
    fn an_episode_whose_every_loss_arrives_is_undone_once() {
        let (t0, rtt) = (Instant::now(), rtt(200));
        let mut reordering = Reordering::default();
        reordering.on_lost(t0, &[(5, t0), (6, t0)], Some(t0), false);
        let at = t0 + Duration::from_millis(2);
        let found = reordering.on_acked(at, [5..=5].into_iter(), 20, &rtt);
        assert_eq!(found.undo, None);
        let found = reordering.on_acked(at, [6..=6].into_iter(), 20, &rtt);
        assert_eq!(found.undo, Some(t0));
        let found = reordering.on_acked(at, [5..=6].into_iter(), 20, &rtt);
        assert_eq!(found, SpuriousLosses::default());
    }

    #[test]
    fn losses_within_the_recovery_period_join_the_episode_and_persistent_ones_are_kept() {
        let (t0, rtt) = (Instant::now(), rtt(200));
        let mut reordering = Reordering::default();
        let t1 = t0 + Duration::from_millis(1);
        reordering.on_lost(t1, &[(5, t0)], Some(t0), false);
        // Sent before the episode started: the same episode, so both must arrive.
        reordering.on_lost(t1 + Duration::from_micros(10), &[(7, t0)], Some(t0), false);
        let at = t1 + Duration::from_millis(1);
        assert_eq!(
            reordering.on_acked(at, [5..=5].into_iter(), 9, &rtt).undo,
            None
        );
        assert_eq!(
            reordering.on_acked(at, [7..=7].into_iter(), 9, &rtt).undo,
            Some(t1)
        );
        // Persistent congestion is never undone.
        reordering.on_lost(at, &[(8, at)], Some(at), true);
        let found =
            reordering.on_acked(at + Duration::from_millis(1), [8..=8].into_iter(), 9, &rtt);
        assert_eq!((found.packets, found.undo), (1, None));
    }

    #[test]
    fn sixteen_real_loss_episodes_bring_the_thresholds_back() {
        let (t0, rtt) = (Instant::now(), rtt(200));
        let mut reordering = Reordering::default();
        reordering.on_lost(t0, &[(1, t0)], Some(t0), false);
        reordering.on_acked(t0 + Duration::from_millis(2), [1..=1].into_iter(), 30, &rtt);
        assert!(reordering.packet_threshold() > 3);
        let mut number = 100;
        for i in 1..=EPISODES_TO_RESET {
            let at = t0 + Duration::from_millis(10 * u64::from(i));
            reordering.on_lost(at, &[(number, at)], Some(at), false);
            number += 10;
        }
        assert!(
            reordering.packet_threshold() > 3,
            "fifteen quiet episodes ended"
        );
        let at = t0 + Duration::from_secs(1);
        reordering.on_lost(at, &[(number, at)], Some(at), false);
        assert_eq!(reordering.packet_threshold(), 3);
        assert_eq!(reordering.loss_delay(&rtt), GRANULARITY);
    }
}
