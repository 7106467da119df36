//! Loss detection and probe timeouts over the packet spaces (RFC 9002 §6, Appendix A).

use std::time::{Duration, Instant};

use super::space::{ControlFrames, SentPacket};
use super::{Connection, MIN_INITIAL_SIZE, State, StreamFrameRecord, TransportError};
use crate::qlog::{LossTrigger, RecoveryMetrics};
use crate::recovery::{PERSISTENT_CONGESTION_THRESHOLD, PacketInfo};
use crate::wire::SpaceId;
use crate::wire::{Ack, VarInt};
use crate::{Side, TransportErrorCode};

impl Connection {
    /// When the loss detection timer fires: the earliest time-threshold loss, else the PTO
    /// (RFC 9002 Appendix A.8, SetLossDetectionTimer).
    pub(super) fn loss_detection_timer(&self) -> Option<Instant> {
        if !matches!(self.state, State::Handshaking | State::Established) {
            return None;
        }
        if let Some((time, _)) = self.earliest_loss_time() {
            return Some(time);
        }
        // RFC 9002 §6.2.2.1: a server blocked by the amplification limit arms no PTO.
        if !self.path.address_validated && self.path.amplification_allowance() == 0 {
            return None;
        }
        self.pto_time_and_space().map(|(time, _)| time)
    }

    fn earliest_loss_time(&self) -> Option<(Instant, SpaceId)> {
        SpaceId::ALL
            .into_iter()
            .filter_map(|id| self.spaces[id as usize].loss_time.map(|t| (t, id)))
            .min()
    }

    /// Whether the peer has validated our address as far as recovery is concerned
    /// (RFC 9002 Appendix A.6, PeerCompletedAddressValidation).
    fn peer_completed_address_validation(&self) -> bool {
        self.side == Side::Server
            || self.handshake.confirmed
            || self.spaces[SpaceId::Handshake as usize]
                .largest_acked
                .is_some()
    }

    /// The PTO deadline and the space whose probe it is (RFC 9002 Appendix A.8, GetPtoTimeAndSpace).
    fn pto_time_and_space(&self) -> Option<(Instant, SpaceId)> {
        let backoff = 2u32.saturating_pow(self.pto_count.min(16));
        let duration = self.pto_duration() * backoff;
        let any_in_flight = self.spaces.iter().any(|s| s.ack_eliciting_in_flight());
        if !any_in_flight {
            if self.peer_completed_address_validation() {
                return None;
            }
            // Client anti-deadlock: probe so the server can send more (RFC 9002 §6.2.2.1).
            let space = if self.spaces[SpaceId::Handshake as usize].keys.is_some() {
                SpaceId::Handshake
            } else {
                SpaceId::Initial
            };
            return Some((self.last_sent? + duration, space));
        }
        let mut best: Option<(Instant, SpaceId)> = None;
        for id in SpaceId::ALL {
            let space = &self.spaces[id as usize];
            if !space.ack_eliciting_in_flight() {
                continue;
            }
            let mut duration = duration;
            if id == SpaceId::Data {
                // RFC 9002 §6.2.1: no application-data PTO before the handshake is confirmed.
                if !self.handshake.confirmed {
                    break;
                }
                duration += self.ack_frequency.peer_max_ack_delay() * backoff;
            }
            if let Some(sent) = space.time_of_last_ack_eliciting {
                let time = sent + duration;
                if best.is_none_or(|(b, _)| time < b) {
                    best = Some((time, id));
                }
            }
        }
        best
    }

    /// RFC 9002 Appendix A.9, OnLossDetectionTimeout.
    pub(super) fn on_loss_detection_timeout(&mut self, now: Instant) {
        if let Some((time, id)) = self.earliest_loss_time() {
            if time <= now {
                self.detect_and_remove_lost(now, id);
                self.log_recovery_metrics(now);
                return;
            }
        }
        let Some((_, id)) = self.pto_time_and_space() else {
            return;
        };
        self.pto_count += 1;
        self.stats.pto_count += 1;
        // RFC 9002 §6.2.4: send one or two ack-eliciting probes, carrying data still
        // unacknowledged when there is some: the oldest outstanding packet's, one probe's
        // worth, not a whole window of spurious retransmissions (and not copies of every
        // packet's control frames, which piled up with each probe timeout). RFC9002-031: the
        // other spaces with data in flight probe too, coalesced into the same datagrams, since
        // the peer may have keys for only one of them.
        for other in SpaceId::ALL {
            let space = &mut self.spaces[other as usize];
            if other == id || space.ack_eliciting_in_flight() {
                space.probes = 2;
            }
        }
        let space = &mut self.spaces[id as usize];
        let oldest = space
            .sent
            .values()
            .find(|p| p.ack_eliciting && p.in_flight)
            .map(|p| {
                (
                    p.retransmit.streams.clone(),
                    p.retransmit.control.as_deref().cloned(),
                )
            });
        if let Some((streams, control)) = oldest {
            if let Some(frames) = control {
                self.requeue(id, frames);
            }
            self.streams.on_lost(&streams);
        }
        self.log_recovery_metrics(now);
    }

    /// RFC 9002 §6.2.3: once per connection, sends the unacknowledged CRYPTO data of every
    /// space with data in flight without waiting for the probe timeout, when what arrived
    /// says the peer did not receive it. Only once: answering every such packet could start
    /// an endless exchange.
    pub(super) fn speed_up_handshake(&mut self) {
        if self.handshake.sped_up || self.handshake.confirmed {
            return;
        }
        self.handshake.sped_up = true;
        for space in &mut self.spaces[..SpaceId::Data as usize] {
            if space.keys.is_some() && space.ack_eliciting_in_flight() {
                space.probes = space.probes.max(1);
            }
        }
    }

    /// Queues what a lost (or probed) packet carried to be sent again, as far as it still
    /// matters (RFC 9000 §13.3): not a NEW_CONNECTION_ID the peer acknowledged or retired, nor
    /// a RETIRE_CONNECTION_ID it acknowledged, nor one-off frames it acknowledged, nor an
    /// ACK_FREQUENCY a newer request replaced.
    fn requeue(&mut self, id: SpaceId, mut frames: ControlFrames) {
        frames
            .new_cids
            .retain(|issued| self.cids.new_cid_needed(issued.sequence));
        frames
            .retire_cids
            .retain(|&sequence| self.cids.retire_needed(sequence));
        if let Some(sequence) = frames.ack_frequency.take() {
            self.ack_frequency.on_lost(sequence);
        }
        self.spaces[id as usize].requeue(frames);
    }

    /// RFC 9002 Appendix A.7, OnAckReceived.
    pub(super) fn on_ack_received(
        &mut self,
        now: Instant,
        id: SpaceId,
        ack: &Ack<'_>,
    ) -> Result<(), TransportError> {
        let largest = ack.largest.into_inner();
        let space = &mut self.spaces[id as usize];
        // RFC 9000 §13.1: acknowledging a packet never sent is a PROTOCOL_VIOLATION.
        if largest >= space.next_pn {
            return Err(TransportError {
                code: TransportErrorCode::PROTOCOL_VIOLATION,
                frame_type: Some(0x02),
                reason: "ACK of a packet never sent".into(),
            });
        }
        let raised = space.largest_acked.is_none_or(|l| largest > l);
        let largest_acked = space.largest_acked.map_or(largest, |l| l.max(largest));
        space.largest_acked = Some(largest_acked);
        if id == SpaceId::Data {
            // Packets declared lost but acknowledged now were reordered, not lost (RFC 9002
            // §6.1): the thresholds adapt, and a congestion event made only of such is undone.
            let path = &mut self.path;
            let spurious = path
                .reordering
                .on_acked(now, ack.ranges(), largest_acked, &path.rtt);
            self.stats.spurious_losses += spurious.packets;
            if let Some(started) = spurious.undo {
                path.cc.on_spurious_congestion(started);
            }
        }
        let space = &mut self.spaces[id as usize];
        let mut newly_acked: Vec<(u64, SentPacket)> = Vec::new();
        for range in ack.ranges() {
            let pns: Vec<u64> = space.sent.range(range).map(|(pn, _)| pn).collect();
            for pn in pns {
                if let Some(packet) = space.sent.remove(pn) {
                    newly_acked.push((pn, packet));
                }
            }
        }
        let Some((largest_newly, largest_packet)) = newly_acked.iter().max_by_key(|(pn, _)| *pn)
        else {
            // Only ACK-only packets were acknowledged: they are not tracked, unlike in RFC 9002
            // Appendix A, so "nothing newly acknowledged" must not skip loss detection when the
            // largest acknowledged moved past packets still outstanding.
            if raised {
                self.detect_and_remove_lost(now, id);
                self.path
                    .cc
                    .on_ack_done(now, self.path.bytes_in_flight, None);
            }
            return Ok(());
        };
        let rtt_sample = (*largest_newly == largest
            && newly_acked.iter().any(|(_, p)| p.ack_eliciting))
        .then(|| self.sample_rtt(now, largest_packet.time, ack));
        if id == SpaceId::Data {
            if let Some(keys) = &mut self.one_rtt {
                if newly_acked.iter().any(|(pn, _)| *pn >= keys.phase_first_pn) {
                    keys.phase_acked = true;
                }
            }
        }
        let app_limited = self.path.bytes_in_flight < self.path.cc.window() / 2;
        // Black hole detection looks at 1-RTT packets only (path MTU discovery runs there).
        let acked_sizes =
            (id == SpaceId::Data).then(|| AckedSizes::of(newly_acked.iter().map(|(_, p)| p)));
        for (_, packet) in &newly_acked {
            self.on_packet_acked(id, packet);
        }
        self.on_in_flight_acked(now, id, &newly_acked, app_limited);
        self.process_ecn(now, id, ack, &newly_acked);
        for (_, packet) in newly_acked {
            self.recycle_stream_records(packet.retransmit.streams);
        }
        self.detect_and_remove_lost(now, id);
        if let Some(acked_sizes) = acked_sizes {
            self.check_black_hole(acked_sizes);
        }
        self.path
            .cc
            .on_ack_done(now, self.path.bytes_in_flight, rtt_sample);
        if self.peer_completed_address_validation() {
            self.pto_count = 0;
        }
        self.log_recovery_metrics(now);
        Ok(())
    }

    /// Logs the recovery metrics that changed, when recording qlog.
    pub(super) fn log_recovery_metrics(&mut self, now: Instant) {
        let Some(qlog) = &mut self.qlog else {
            return;
        };
        let window = self.path.cc.window();
        qlog.recovery_metrics(
            now,
            RecoveryMetrics {
                min_rtt: self.path.rtt.min(),
                smoothed_rtt: self.path.rtt.smoothed(),
                latest_rtt: self.path.rtt.latest(),
                rtt_variance: self.path.rtt.var(),
                pto_count: self.pto_count,
                congestion_window: window,
                bytes_in_flight: self.path.bytes_in_flight,
                ssthresh: self.path.cc.ssthresh(),
                pacing_rate: self.path.pacing_rate().saturating_mul(8),
            },
        );
    }

    /// Keeps an acknowledged packet's emptied stream-frame list for a later packet; enough are
    /// kept for the packets one ACK typically covers, the rest freed.
    /// An RTT sample from the acknowledgment of a packet sent at `sent` (RFC 9002 §5.3): the
    /// reported delay is used in every space (it "MAY" be ignored for Initial; a repeated ACK
    /// after a lost one reports a real delay), and capped at the peer's max_ack_delay only once
    /// the handshake is confirmed (RFC9002-008/009).
    fn sample_rtt(&mut self, now: Instant, sent: Instant, ack: &Ack<'_>) -> Duration {
        let latest_rtt = now.saturating_duration_since(sent);
        let micros = ack
            .delay
            .into_inner()
            .saturating_mul(1 << self.peer_ack_delay_exponent.min(20));
        let reported = Duration::from_micros(micros);
        let ack_delay = if self.handshake.confirmed {
            reported.min(self.ack_frequency.peer_max_ack_delay())
        } else {
            reported
        };
        self.path.rtt.update(latest_rtt, ack_delay);
        self.first_rtt_sample.get_or_insert(now);
        if self.handshake.confirmed {
            self.ack_frequency.on_rtt(self.path.rtt.smoothed());
        }
        latest_rtt
    }

    /// What a newly acknowledged packet carried is done with: control frames, an MTU probe,
    /// stream frames.
    fn on_packet_acked(&mut self, id: SpaceId, packet: &SentPacket) {
        self.spaces[id as usize].on_packet_acked(packet);
        if let Some(control) = &packet.retransmit.control {
            for issued in &control.new_cids {
                self.cids.on_new_cid_acked(issued.sequence);
            }
            for &sequence in &control.retire_cids {
                self.cids.on_retire_acked(sequence);
            }
            if let Some(sequence) = control.ack_frequency {
                self.ack_frequency.on_acked(sequence);
            }
        }
        if packet.mtu_probe {
            self.path.mtu.on_probe_acked(packet.size);
            let size = u64::from(self.path.mtu.current());
            self.path.cc.on_max_datagram_size(size);
            self.path.pacer.on_max_datagram_size(size);
        }
        self.streams.on_acked(&packet.retransmit.streams);
    }

    /// Newly acknowledged packets leave bytes in flight and feed congestion control (RFC 9002
    /// §7): those in flight on the current path, that is.
    fn on_in_flight_acked(
        &mut self,
        now: Instant,
        id: SpaceId,
        newly_acked: &[(u64, SentPacket)],
        app_limited: bool,
    ) {
        for (pn, packet) in newly_acked.iter().filter(|(_, p)| p.in_flight) {
            self.path.bytes_in_flight -= u64::from(packet.size);
            let info = PacketInfo {
                number: (id == SpaceId::Data && !packet.mtu_probe).then_some(*pn),
                sent: packet.time,
                bytes: u64::from(packet.size),
            };
            self.path.cc.on_ack(now, &info, app_limited, &self.path.rtt);
        }
    }

    /// After an acknowledgment of 1-RTT packets and the losses it revealed: whether the path
    /// stopped carrying datagrams of the size path MTU discovery adopted (RFC 8899 §4.4); if
    /// so, congestion control and pacing count the base size again.
    fn check_black_hole(&mut self, acked: AckedSizes) {
        if self.path.mtu.on_ack_processed(acked.large, acked.small) {
            let size = u64::from(self.path.mtu.current());
            self.path.cc.on_max_datagram_size(size);
            self.path.pacer.on_max_datagram_size(size);
            self.stats.mtu_black_holes += 1;
        }
    }

    fn recycle_stream_records(&mut self, mut records: Vec<StreamFrameRecord>) {
        const MAX_SPARE: usize = 128;
        if records.capacity() > 0 && self.spare_stream_records.len() < MAX_SPARE {
            records.clear();
            self.spare_stream_records.push(records);
        }
    }

    /// ECN validation and congestion response (RFC 9000 §13.4.2, RFC 9002 §7.1): the counts
    /// must account for every newly acknowledged ECT(0) packet, or marking stops; a rise in the
    /// CE count is a congestion event.
    fn process_ecn(
        &mut self,
        now: Instant,
        id: SpaceId,
        ack: &Ack<'_>,
        newly_acked: &[(u64, SentPacket)],
    ) {
        let marked = newly_acked.iter().filter(|(_, p)| p.ecn_marked).count() as u64;
        let space = &mut self.spaces[id as usize];
        let Some(counts) = ack.ecn else {
            // RFC 9000 §13.4.2.1: ECT packets acknowledged without ECN counts.
            if marked > 0 {
                self.path.ecn_sending = false;
            }
            return;
        };
        let previous = space.peer_ecn;
        let grew = |new: VarInt, old: VarInt| new.into_inner().saturating_sub(old.into_inner());
        let ect0_and_ce = grew(counts.ect0, previous.ect0) + grew(counts.ce, previous.ce);
        let ce_increase = grew(counts.ce, previous.ce);
        let decreased =
            counts.ect0 < previous.ect0 || counts.ect1 < previous.ect1 || counts.ce < previous.ce;
        space.peer_ecn = counts;
        if decreased || ect0_and_ce < marked {
            self.path.ecn_sending = false;
            return;
        }
        if ce_increase > 0 {
            if let Some(sent) = newly_acked.iter().map(|(_, p)| p.time).max() {
                self.stats.ecn_congestion_events += 1;
                self.path.cc.on_congestion_event(now, sent, false);
            }
        }
    }

    /// RFC 9002 Appendix A.10, DetectAndRemoveLostPackets, followed by OnPacketsLost.
    pub(super) fn detect_and_remove_lost(&mut self, now: Instant, id: SpaceId) {
        let loss_delay = self.path.reordering.loss_delay(&self.path.rtt);
        let packet_threshold = self.path.reordering.packet_threshold();
        let space = &mut self.spaces[id as usize];
        space.loss_time = None;
        let Some(largest_acked) = space.largest_acked else {
            return;
        };
        let lost_send_time = now.checked_sub(loss_delay);
        let mut lost = Vec::new();
        for (pn, packet) in space.sent.range(..=largest_acked) {
            let by_time = lost_send_time.is_some_and(|t| packet.time <= t);
            let by_count = largest_acked >= pn + packet_threshold;
            if by_count {
                lost.push((pn, LossTrigger::ReorderingThreshold));
            } else if by_time {
                lost.push((pn, LossTrigger::TimeThreshold));
            } else {
                let at = packet.time + loss_delay;
                space.loss_time = Some(space.loss_time.map_or(at, |t| t.min(at)));
            }
        }
        if lost.is_empty() {
            return;
        }
        let mut lost_packets = Vec::with_capacity(lost.len());
        let mut lost_streams = Vec::new();
        let mut lost_control = Vec::new();
        for (pn, trigger) in &lost {
            let mut packet = space.sent.remove(*pn).expect("listed above");
            let mut retransmit = std::mem::take(&mut packet.retransmit);
            lost_streams.append(&mut retransmit.streams);
            if let Some(frames) = retransmit.control {
                lost_control.push(*frames);
            }
            if let Some(qlog) = &mut self.qlog {
                qlog.packet_lost(now, id, *pn, *trigger);
            }
            lost_packets.push((*pn, packet));
        }
        for frames in lost_control {
            self.requeue(id, frames);
        }
        self.streams.on_lost(&lost_streams);
        self.stats.packets_lost += lost_packets.len() as u64;
        self.stats.bytes_lost += lost_packets
            .iter()
            .map(|(_, p)| u64::from(p.size))
            .sum::<u64>();
        let mut latest_sent = None;
        for (pn, packet) in &lost_packets {
            if packet.in_flight {
                self.path.bytes_in_flight -= u64::from(packet.size);
            }
            if packet.in_flight && !packet.mtu_probe {
                let info = PacketInfo {
                    number: (id == SpaceId::Data).then_some(*pn),
                    sent: packet.time,
                    bytes: u64::from(packet.size),
                };
                self.path.cc.on_lost(now, &info);
            }
            if packet.mtu_probe {
                // RFC 9000 §14.4, RFC9000-287: a lost probe is no congestion signal.
                self.path.mtu.on_probe_lost(packet.size);
            } else if packet.in_flight {
                if id == SpaceId::Data {
                    self.path.mtu.on_lost(packet.size);
                }
                latest_sent =
                    Some(latest_sent.map_or(packet.time, |t: Instant| t.max(packet.time)));
            }
        }
        lost_packets.retain(|(_, p)| !p.mtu_probe);
        let persistent = latest_sent.is_some() && self.in_persistent_congestion(&lost_packets);
        if id == SpaceId::Data {
            let lost: Vec<(u64, Instant)> = lost_packets
                .iter()
                .filter(|(_, p)| p.in_flight)
                .map(|(pn, p)| (*pn, p.time))
                .collect();
            self.path
                .reordering
                .on_lost(now, &lost, latest_sent, persistent);
        }
        if let Some(latest_sent) = latest_sent {
            self.path
                .cc
                .on_congestion_event(now, latest_sent, persistent);
        }
    }

    /// RFC 9002 §7.6: persistent congestion when every packet over a period longer than three
    /// PTOs (without backoff, with max_ack_delay) was lost, all sent after the first RTT sample.
    /// Packet numbers in a space are consecutive, so "every packet in between" is a contiguous
    /// run of lost numbers.
    fn in_persistent_congestion(&self, lost: &[(u64, SentPacket)]) -> bool {
        let Some(first_sample) = self.first_rtt_sample else {
            return false;
        };
        let period = (self.path.rtt.pto_base() + self.ack_frequency.peer_max_ack_delay())
            * PERSISTENT_CONGESTION_THRESHOLD;
        let eliciting: Vec<&(u64, SentPacket)> = lost
            .iter()
            .filter(|(_, p)| p.ack_eliciting && p.time > first_sample)
            .collect();
        let (Some(first), Some(last)) = (eliciting.first(), eliciting.last()) else {
            return false;
        };
        let contiguous = lost.windows(2).all(|w| w[1].0 == w[0].0 + 1);
        contiguous && last.1.time.saturating_duration_since(first.1.time) > period
    }
}

/// What sizes of datagram an acknowledgment covered, for black hole detection: probes aside,
/// any above the base size, and any ack-eliciting one at most that.
#[derive(Clone, Copy, Debug)]
struct AckedSizes {
    large: bool,
    small: bool,
}

impl AckedSizes {
    fn of<'a>(packets: impl Iterator<Item = &'a SentPacket>) -> Self {
        let mut sizes = Self {
            large: false,
            small: false,
        };
        for packet in packets.filter(|p| !p.mtu_probe && p.in_flight) {
            if usize::from(packet.size) > MIN_INITIAL_SIZE {
                sizes.large = true;
            } else if packet.ack_eliciting {
                sizes.small = true;
            }
        }
        sizes
    }
}
