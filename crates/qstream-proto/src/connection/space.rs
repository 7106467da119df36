//! Packet number spaces (RFC 9000 §12.3): what was sent and received at one encryption level.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::{Duration, Instant};

use super::EcnCodepoint;
use super::cids::IssuedCid;
use super::sent::SentPackets;
use crate::range_set::RangeSet;
use crate::streams::StreamFrameRecord;
use crate::wire::{EcnCounts, VarInt};
use crate::{DecodeError, TransportErrorCode};

/// Ack-eliciting packets an ACK frame must cover for it to be repeated after a quiet spell
/// ([`PacketSpace::arm_ack_repeat`]): a sender's burst, not a request or a response.
pub(crate) const ACK_REPEAT_BURST: u32 = 4;

/// The most ACK ranges remembered and reported; older ranges are forgotten (RFC 9000 §13.2.3
/// lets a receiver limit them).
const MAX_ACK_RANGES: usize = 32;

/// What a sent packet carried that must be sent again if it is lost.
#[derive(Debug, Default)]
pub(crate) struct Retransmit {
    /// Stream frames, handed to the stream map when acknowledged or lost rather than queued
    /// here.
    pub(crate) streams: Vec<StreamFrameRecord>,
    /// Every other frame to send again. Rare once the handshake is done, so kept out of line:
    /// a packet's record is moved on every send and acknowledgment, and stays small.
    pub(crate) control: Option<Box<ControlFrames>>,
}

impl Retransmit {
    /// The control frames, made on first use.
    pub(crate) fn control_mut(&mut self) -> &mut ControlFrames {
        self.control.get_or_insert_default()
    }

    /// The CRYPTO stream byte ranges carried.
    pub(crate) fn crypto(&self) -> &[Range<u64>] {
        self.control.as_ref().map_or(&[], |c| &c.crypto)
    }
}

/// Frames other than STREAM that are sent again when the packet carrying them is lost; also
/// what waits to be sent again in a packet number space.
#[derive(Clone, Debug, Default)]
pub(crate) struct ControlFrames {
    /// CRYPTO stream byte ranges.
    pub(crate) crypto: Vec<Range<u64>>,
    /// A HANDSHAKE_DONE frame.
    pub(crate) handshake_done: bool,
    /// NEW_CONNECTION_ID frames.
    pub(crate) new_cids: Vec<IssuedCid>,
    /// RETIRE_CONNECTION_ID frames, by sequence number.
    pub(crate) retire_cids: Vec<u64>,
    /// A NEW_TOKEN frame's token.
    pub(crate) new_token: Option<bytes::Bytes>,
    /// An ACK_FREQUENCY frame's sequence number: the request itself is kept by the
    /// connection, which sends it again only while it is the latest.
    pub(crate) ack_frequency: Option<u64>,
}

impl ControlFrames {
    pub(crate) fn is_empty(&self) -> bool {
        self.crypto.is_empty()
            && !self.handshake_done
            && self.new_cids.is_empty()
            && self.retire_cids.is_empty()
            && self.new_token.is_none()
            && self.ack_frequency.is_none()
    }

    /// Merges `other` into what is waiting to be sent again: each frame once, however many
    /// lost packets carried it.
    pub(crate) fn absorb(&mut self, other: ControlFrames) {
        self.crypto.extend(other.crypto);
        self.handshake_done |= other.handshake_done;
        for issued in other.new_cids {
            if !self.new_cids.iter().any(|c| c.sequence == issued.sequence) {
                self.new_cids.push(issued);
            }
        }
        for sequence in other.retire_cids {
            if !self.retire_cids.contains(&sequence) {
                self.retire_cids.push(sequence);
            }
        }
        if other.new_token.is_some() {
            self.new_token = other.new_token;
        }
    }
}

/// The one-off frames of a space the peer acknowledged: lost copies of them are not sent
/// again (RFC 9000 §13.3).
#[derive(Debug, Default)]
pub(crate) struct Acknowledged {
    pub(crate) handshake_done: bool,
    pub(crate) new_token: bool,
}

/// A packet that was sent and is not yet acknowledged or declared lost.
#[derive(Debug)]
pub(crate) struct SentPacket {
    pub(crate) time: Instant,
    /// Bytes on the wire, counted in bytes in flight when `in_flight`.
    pub(crate) size: u16,
    pub(crate) ack_eliciting: bool,
    pub(crate) in_flight: bool,
    /// Sent with ECT(0).
    pub(crate) ecn_marked: bool,
    /// The largest packet number acknowledged by the ACK frame this packet carried: once this
    /// packet is acknowledged, the peer knows we saw everything up to there.
    pub(crate) largest_ack: Option<u64>,
    pub(crate) retransmit: Retransmit,
    /// A path MTU probe (RFC 9000 §14.4): its loss is no sign of congestion.
    pub(crate) mtu_probe: bool,
    /// It carries PATH_CHALLENGE or PATH_RESPONSE: its datagram is expanded to 1200 bytes
    /// as far as the anti-amplification limit allows (RFC9000-125, RFC9000-132, RFC9000-133).
    pub(crate) path_validation: bool,
}

/// One packet number space's state.
pub(crate) struct PacketSpace {
    /// Packet protection keys for Initial and Handshake; 1-RTT keys live on the connection.
    pub(crate) keys: Option<rustls::quic::Keys>,
    pub(crate) next_pn: u64,
    /// The largest of our packet numbers the peer acknowledged.
    pub(crate) largest_acked: Option<u64>,
    pub(crate) sent: SentPackets,
    pub(crate) time_of_last_ack_eliciting: Option<Instant>,
    /// When the earliest unacknowledged packet below the largest acknowledged becomes lost by
    /// the time threshold (RFC 9002 §6.1.2).
    pub(crate) loss_time: Option<Instant>,
    /// Frames to send again.
    pub(crate) pending: ControlFrames,
    /// One-off frames the peer acknowledged.
    pub(crate) acknowledged: Acknowledged,
    /// PTO probes to send (RFC 9002 §6.2.4).
    pub(crate) probes: u8,

    /// Received packet numbers, for duplicate detection and ACK frames.
    pub(crate) received: RangeSet,
    pub(crate) largest_received_time: Option<Instant>,
    /// Ack-eliciting packets received since the last ACK frame was sent.
    pub(crate) unacked_eliciting: u32,
    /// Send an ACK frame in the next packet, without waiting.
    pub(crate) ack_immediately: bool,
    /// The due ACK reports a gap (RFC 9000 §13.2.1): the peer learns of a loss from it.
    pub(crate) ack_reports_gap: bool,
    /// When a delayed ACK must go out.
    pub(crate) ack_deadline: Option<Instant>,
    /// ECN codepoints of the packets received (RFC 9000 §13.4.1), reported in ACK frames.
    pub(crate) ecn_received: EcnCounts,
    /// The peer's ECN counts in the latest ACK, to see what increased (§13.4.2.1).
    pub(crate) peer_ecn: EcnCounts,
    /// The largest packet number the peer knows we acknowledged: it acknowledged a packet of
    /// ours carrying an ACK frame up to there (RFC 9000 §13.2.4).
    pub(crate) peer_saw_acks_up_to: Option<u64>,
    /// The largest ack-eliciting packet number received: only those need acknowledging.
    pub(crate) largest_eliciting_received: Option<u64>,
    /// When to send the last acknowledgment of a burst again if nothing arrived since (see
    /// [`PacketSpace::arm_ack_repeat`]).
    pub(crate) ack_repeat_at: Option<Instant>,

    pub(crate) crypto_send: CryptoSend,
    pub(crate) crypto_recv: CryptoRecv,
}

impl PacketSpace {
    pub(crate) fn new() -> Self {
        Self {
            keys: None,
            next_pn: 0,
            largest_acked: None,
            sent: SentPackets::default(),
            time_of_last_ack_eliciting: None,
            loss_time: None,
            pending: ControlFrames::default(),
            acknowledged: Acknowledged::default(),
            probes: 0,
            received: RangeSet::default(),
            largest_received_time: None,
            unacked_eliciting: 0,
            ack_immediately: false,
            ack_reports_gap: false,
            ack_deadline: None,
            ecn_received: EcnCounts::default(),
            peer_ecn: EcnCounts::default(),
            peer_saw_acks_up_to: None,
            largest_eliciting_received: None,
            ack_repeat_at: None,
            crypto_send: CryptoSend::default(),
            crypto_recv: CryptoRecv::default(),
        }
    }

    /// Counts a received packet's ECN codepoint (RFC 9000 §13.4.1); a CE mark is acknowledged
    /// at once, so the sender learns of congestion without delay (§13.2.1).
    pub(crate) fn count_ecn(&mut self, ecn: Option<EcnCodepoint>) {
        let increment = |v: &mut VarInt| *v = VarInt::from_u64(v.into_inner() + 1).unwrap_or(*v);
        match ecn {
            Some(EcnCodepoint::Ect0) => increment(&mut self.ecn_received.ect0),
            Some(EcnCodepoint::Ect1) => increment(&mut self.ecn_received.ect1),
            Some(EcnCodepoint::Ce) => {
                increment(&mut self.ecn_received.ce);
                self.ack_immediately = true;
            }
            None => {}
        }
    }

    /// Records a received packet; returns false for a duplicate.
    pub(crate) fn record_received(&mut self, pn: u64, now: Instant) -> bool {
        self.ack_repeat_at = None;
        let largest = self.received.max();
        if !self.received.insert(pn) {
            return false;
        }
        if largest.is_none_or(|l| pn > l) {
            self.largest_received_time = Some(now);
        }
        self.received.truncate_oldest(MAX_ACK_RANGES);
        true
    }

    /// Whether `pn` was already received (or is too old to tell).
    pub(crate) fn is_duplicate(&self, pn: u64) -> bool {
        self.received.contains(pn)
    }

    /// Whether an ACK frame is due now: a new one, or the last one again.
    pub(crate) fn ack_due(&self, now: Instant) -> bool {
        (self.unacked_eliciting > 0
            && (self.ack_immediately || self.ack_deadline.is_some_and(|d| d <= now)))
            || self.ack_repeat_due(now)
    }

    /// Whether the last acknowledgment of a burst is to go again now.
    pub(crate) fn ack_repeat_due(&self, now: Instant) -> bool {
        self.ack_repeat_at.is_some_and(|at| at <= now)
    }

    /// An ACK frame that acknowledged `covered` ack-eliciting packets was just written at `now`.
    /// A packet carrying only ACK frames is never acknowledged, so if it is lost the peer does
    /// not learn of the burst it answered; a sender whose whole window that burst was then
    /// waits for its probe timeout, which may be its peer's 25 ms max_ack_delay on a path of a
    /// fraction of a millisecond. So when the ACK covered a burst (`covered` at least
    /// [`ACK_REPEAT_BURST`]) and nothing arrives within `quiet`, the same ACK goes once more
    /// (RFC 9000 §13.2: an ACK frame may be sent again at any time; it is not congestion
    /// controlled). Small exchanges never repeat theirs.
    pub(crate) fn arm_ack_repeat(&mut self, now: Instant, covered: u32, quiet: Duration) {
        self.ack_repeat_at = (covered >= ACK_REPEAT_BURST).then(|| now + quiet);
    }

    /// Whether an ACK frame has anything new to say.
    pub(crate) fn ack_pending(&self) -> bool {
        self.unacked_eliciting > 0
    }

    /// Whether the peer may not know yet that we received its ack-eliciting packets: ACK
    /// frames that said so may have been lost, so ack-eliciting packets repeat one (RFC 9000
    /// §13.2.1 allows ACKs in any packet; ACK-only packets are never retransmitted). Packets
    /// that elicit no acknowledgment, such as the peer's ACK-only packets, do not count: else
    /// a bulk sender would repeat an ACK of the receiver's ACKs in every packet.
    pub(crate) fn ack_unconfirmed(&self) -> bool {
        match (self.largest_eliciting_received, self.peer_saw_acks_up_to) {
            (Some(largest), Some(seen)) => largest > seen,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// A packet of ours was acknowledged: its CRYPTO data is delivered, and the peer saw the
    /// ACK frame it carried.
    pub(crate) fn on_packet_acked(&mut self, packet: &SentPacket) {
        for range in packet.retransmit.crypto() {
            self.crypto_send.on_acked(range.clone());
        }
        if let Some(control) = &packet.retransmit.control {
            self.acknowledged.handshake_done |= control.handshake_done;
            self.acknowledged.new_token |= control.new_token.is_some();
        }
        if let Some(largest) = packet.largest_ack {
            self.peer_saw_acks_up_to =
                Some(self.peer_saw_acks_up_to.map_or(largest, |s| s.max(largest)));
        }
    }

    /// Queues what a lost (or probed) packet carried to be sent again, but for the one-off
    /// frames the peer already acknowledged.
    pub(crate) fn requeue(&mut self, mut frames: ControlFrames) {
        for range in frames.crypto.drain(..) {
            self.crypto_send.on_lost(range);
        }
        frames.handshake_done &= !self.acknowledged.handshake_done;
        if self.acknowledged.new_token {
            frames.new_token = None;
        }
        self.pending.absorb(frames);
    }

    /// Called when an ACK frame was written: nothing is owed any more.
    pub(crate) fn on_ack_sent(&mut self) {
        self.unacked_eliciting = 0;
        self.ack_immediately = false;
        self.ack_reports_gap = false;
        self.ack_deadline = None;
    }

    /// Forgets every packet in flight without declaring it lost (RFC 9002 §6.3 after a Retry,
    /// §6.4 when keys are discarded); returns the bytes they counted in flight.
    pub(crate) fn forget_sent(&mut self) -> u64 {
        let in_flight = self
            .sent
            .values()
            .filter(|p| p.in_flight)
            .map(|p| u64::from(p.size))
            .sum();
        self.sent.clear();
        self.loss_time = None;
        self.time_of_last_ack_eliciting = None;
        in_flight
    }

    /// The path the packets in flight were sent on was left for a new one: they no longer
    /// count in bytes in flight, nor feed congestion control or RTT when acknowledged or lost
    /// (RFC 9000 §9.4, RFC9000-149), though their frames are still acknowledged or resent.
    /// Returns the bytes they had in flight.
    pub(crate) fn leave_path(&mut self) -> u64 {
        let mut in_flight = 0;
        for packet in self.sent.values_mut().filter(|p| p.in_flight) {
            in_flight += u64::from(packet.size);
            packet.in_flight = false;
        }
        in_flight
    }

    /// Whether anything other than an ACK is waiting to be sent.
    pub(crate) fn has_retransmittable_data(&self) -> bool {
        !self.pending.is_empty() || self.crypto_send.has_unsent()
    }

    /// Ack-eliciting packets still in flight.
    pub(crate) fn ack_eliciting_in_flight(&self) -> bool {
        self.sent.values().any(|p| p.ack_eliciting && p.in_flight)
    }
}

/// Outgoing CRYPTO stream data of one encryption level. Handshake messages are small, so all of
/// it is kept until the level's keys are discarded. Bytes to send again and bytes acknowledged
/// are kept as merged ranges, so each byte is queued at most once however many probes carried it.
#[derive(Debug, Default)]
pub(crate) struct CryptoSend {
    data: Vec<u8>,
    /// How much has been sent at least once.
    sent: u64,
    /// Bytes to send again, never overlapping `acked`.
    pending: RangeSet,
    acked: RangeSet,
}

impl CryptoSend {
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
    }

    pub(crate) fn has_unsent(&self) -> bool {
        self.sent < self.data.len() as u64 || !self.pending.is_empty()
    }

    /// `range` was in a packet that was lost, or that a probe repeats.
    pub(crate) fn on_lost(&mut self, range: Range<u64>) {
        self.pending.insert_range(range.clone());
        for acked in self.acked.iter().collect::<Vec<_>>() {
            if acked.start < range.end && range.start < acked.end {
                self.pending.remove_range(acked);
            }
        }
    }

    /// `range` was acknowledged.
    pub(crate) fn on_acked(&mut self, range: Range<u64>) {
        self.pending.remove_range(range.clone());
        self.acked.insert_range(range);
    }

    /// Sends everything again: after a Retry, the first flight starts over (RFC 9000 §17.2.5.3).
    pub(crate) fn resend_all(&mut self) {
        if self.sent > 0 {
            self.on_lost(0..self.sent);
        }
    }

    /// The offset [`Self::next_chunk`] starts at.
    pub(crate) fn next_offset(&self) -> u64 {
        self.pending.iter().next().map_or(self.sent, |r| r.start)
    }

    /// The next bytes to send, at most `max`, with their offset: bytes to send again first,
    /// then new ones.
    pub(crate) fn next_chunk(&mut self, max: usize) -> Option<(u64, &[u8])> {
        if max == 0 {
            return None;
        }
        if let Some(range) = self.pending.pop_lowest() {
            let end = range.end.min(range.start + max as u64);
            if end < range.end {
                self.pending.insert_range(end..range.end);
            }
            return Some((range.start, &self.data[range.start as usize..end as usize]));
        }
        let start = self.sent as usize;
        if start >= self.data.len() {
            return None;
        }
        let end = self.data.len().min(start + max);
        self.sent = end as u64;
        Some((start as u64, &self.data[start..end]))
    }
}

/// Incoming CRYPTO stream data of one encryption level, reassembled in order.
#[derive(Debug, Default)]
pub(crate) struct CryptoRecv {
    /// Everything below this offset was handed to TLS.
    delivered: u64,
    /// Out-of-order fragments by offset.
    fragments: BTreeMap<u64, Vec<u8>>,
    buffered: usize,
}

impl CryptoRecv {
    /// Accepts a CRYPTO frame; returns false when all of it was handed to TLS already (the
    /// peer sent it again). Data more than `limit` bytes beyond what TLS has consumed is a
    /// CRYPTO_BUFFER_EXCEEDED error (RFC 9000 §7.5).
    pub(crate) fn insert(
        &mut self,
        offset: u64,
        data: &[u8],
        limit: usize,
    ) -> Result<bool, DecodeError> {
        let end = offset + data.len() as u64;
        if end <= self.delivered {
            return Ok(false);
        }
        if end - self.delivered > limit as u64 || self.buffered + data.len() > limit {
            return Err(DecodeError::new(
                TransportErrorCode::CRYPTO_BUFFER_EXCEEDED,
                "CRYPTO data beyond the buffer limit",
            ));
        }
        let skip = self.delivered.saturating_sub(offset) as usize;
        let offset = offset.max(self.delivered);
        let data = &data[skip..];
        let longer = self
            .fragments
            .get(&offset)
            .is_none_or(|f| f.len() < data.len());
        if longer {
            self.buffered += data.len();
            if let Some(old) = self.fragments.insert(offset, data.to_vec()) {
                self.buffered -= old.len();
            }
        }
        Ok(true)
    }

    /// Moves the contiguous bytes at the delivery point into `out`.
    pub(crate) fn read_contiguous(&mut self, out: &mut Vec<u8>) {
        while let Some(entry) = self.fragments.first_entry() {
            let offset = *entry.key();
            if offset > self.delivered {
                break;
            }
            let fragment = entry.remove();
            self.buffered -= fragment.len();
            let skip = (self.delivered - offset) as usize;
            if skip < fragment.len() {
                out.extend_from_slice(&fragment[skip..]);
                self.delivered = offset + fragment.len() as u64;
            }
        }
    }
}
