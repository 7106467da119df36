//! The send path: assembling frames into packets and packets into datagrams (RFC 9000 §12.2,
//! §13, §14).

use std::time::Instant;

use rustls::quic::{HeaderProtectionKey, PacketKey};

use super::space::{PacketSpace, Retransmit, SentPacket};
use super::{ACK_DELAY_EXPONENT, CloseFrame, Connection, MIN_INITIAL_SIZE, State, Transmit};
use crate::crypto::{TAG_LEN, protect};
use crate::wire::SpaceId;
use crate::wire::{
    Ack, ConnectionClose, Frame, Header, PacketType, Payload, TruncatedPacketNumber, VarInt,
    set_long_header_length,
};
use crate::{Side, TransportErrorCode};

/// The fewest frame bytes worth starting a packet for.
const MIN_FRAME_ROOM: usize = 8;

/// The shortest quiet spell after which the last ACK of a burst goes again: twice the smoothed
/// RTT, but not less than a timer's granularity.
const ACK_REPEAT_QUIET: std::time::Duration = std::time::Duration::from_millis(1);

/// A packet written into the datagram buffer, still unprotected.
pub(super) struct Built {
    space: SpaceId,
    start: usize,
    pn_offset: usize,
    pn: u64,
    /// Whether the header is long, so its Length field must cover padding.
    long: bool,
    record: SentPacket,
}

impl Built {
    /// The packet's type: a long-header packet of the Data space is 0-RTT.
    fn packet_type(&self) -> PacketType {
        match (self.space, self.long) {
            (SpaceId::Initial, _) => PacketType::Initial,
            (SpaceId::Handshake, _) => PacketType::Handshake,
            (SpaceId::Data, true) => PacketType::ZeroRtt,
            (SpaceId::Data, false) => PacketType::OneRtt,
        }
    }

    /// Makes room for the tag and sets a long header's Length. RFC 9001 §5.4.2: the sample
    /// starts 4 bytes after the packet number's start, so the packet number and frames
    /// together take at least 4 bytes.
    fn finish(&self, buf: &mut Vec<u8>) {
        let written = buf.len() - self.pn_offset;
        if written < 4 {
            Frame::Padding(4 - written).encode(buf);
        }
        buf.resize(buf.len() + TAG_LEN, 0);
        if self.long {
            let length = buf.len() - self.pn_offset;
            set_long_header_length(buf, self.pn_offset, length);
        }
    }
}

/// What the next datagram may be.
struct DatagramPlan {
    /// It carries CONNECTION_CLOSE.
    closing: bool,
    /// Its largest size.
    limit: usize,
    /// A probe timeout asked for probes.
    probing: bool,
    /// Congestion control or pacing holds back all but acknowledgments.
    congestion_blocked: bool,
    /// It is a path MTU probe of `limit` bytes.
    mtu_probe: bool,
}

/// What a packet carries after any acknowledgment.
#[derive(Clone, Copy, Debug)]
enum Content {
    /// CONNECTION_CLOSE, while closing.
    Close,
    /// A path MTU probe: PING and PADDING up to the probed size.
    MtuProbe,
    /// Whatever is pending; only what congestion control never holds back when blocked.
    Frames { congestion_blocked: bool },
    /// A PATH_CHALLENGE with this data alone, for a path other than the current one.
    PathChallenge([u8; 8]),
    /// A PATH_RESPONSE with this data alone, on the path its challenge came on.
    PathResponse([u8; 8]),
}

impl Connection {
    /// The next datagram to send, appended to `buf` (so datagrams can be gathered into one
    /// buffer for a batched send), or `None` when nothing may be sent now; `buf` is then
    /// unchanged. Coalesces Initial, Handshake and 1-RTT packets (RFC 9000 §12.2).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        if let Some(transmit) = self.off_path_datagram(now, buf) {
            return Some(transmit);
        }
        let base = buf.len();
        let plan = self.plan_datagram(now)?;
        buf.reserve(plan.limit);
        // The packets of this datagram, in a buffer kept across calls: no allocation per send.
        let mut built = std::mem::take(&mut self.built);
        built.clear();
        self.build_packets(now, &plan, buf, base, &mut built);
        if built.is_empty() {
            self.built = built;
            return None;
        }
        self.pad_datagram(buf, base, plan.limit, &mut built);
        self.seal(now, buf, &mut built);
        self.built = built;
        let size = buf.len() - base;
        self.stats.datagrams_sent += 1;
        self.stats.bytes_sent += size as u64;
        if !self.path.address_validated {
            self.path.amplification_sent += size as u64;
        }
        if plan.closing {
            self.close_pending = false;
        }
        Some(Transmit {
            destination: self.path.remote,
            source: self.path.local,
            size,
            ecn: self.path.ecn_sending.then_some(super::EcnCodepoint::Ect0),
            probe: plan.probing,
        })
    }

    /// A datagram for a path other than the one in use, of its own and 1200 bytes long
    /// (RFC9000-125/132): after an apparent migration, a PATH_CHALLENGE to the previously
    /// active path (RFC 9000 §9.3.3, RFC9000-147); a PATH_RESPONSE on the path its challenge
    /// came on (§8.2.2, RFC9000-131), such as a client probing our preferred address; the
    /// client's probe of the server's preferred address, to the connection ID that came with
    /// it (§9.6.1), or of a new local path (§9.1). None counts for congestion control or loss recovery: a probe is repeated
    /// on its own timer instead.
    fn off_path_datagram(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        if !matches!(self.state, State::Established) || self.one_rtt.is_none() {
            return None;
        }
        let current = (self.path.remote, self.path.local);
        let response_elsewhere = self
            .path_response
            .filter(|r| (r.remote, r.local) != current);
        let (destination, source, dcid, content) =
            if let Some((addr, data)) = self.migration.take_old_path_challenge() {
                (addr, self.path.local, None, Content::PathChallenge(data))
            } else if let Some(response) = response_elsewhere {
                self.path_response = None;
                let content = Content::PathResponse(response.data);
                (response.remote, response.local, None, content)
            } else if let Some((addr, cid, data)) = self.preferred_address_probe(now) {
                let content = Content::PathChallenge(data);
                (addr, self.path.local, Some(cid), content)
            } else if let Some((local, cid, data)) = self.local_probe_challenge(now) {
                let content = Content::PathChallenge(data);
                (self.path.remote, Some(local), Some(cid), content)
            } else {
                return None;
            };
        let base = buf.len();
        let mut built = std::mem::take(&mut self.built);
        built.clear();
        self.off_path_dcid = dcid;
        built.push(self.build_packet(now, SpaceId::Data, buf, base + MIN_INITIAL_SIZE, content));
        self.off_path_dcid = None;
        self.pad_datagram(buf, base, MIN_INITIAL_SIZE, &mut built);
        for packet in &mut built {
            packet.record.in_flight = false;
            packet.record.ack_eliciting = false;
        }
        self.seal(now, buf, &mut built);
        self.built = built;
        let size = buf.len() - base;
        self.stats.datagrams_sent += 1;
        self.stats.bytes_sent += size as u64;
        Some(Transmit {
            destination,
            source,
            size,
            ecn: None,
            probe: false,
        })
    }

    /// What the next datagram may be, or `None` when nothing may be sent: its size limit, and
    /// whether it closes, probes, is held back by congestion control or pacing, or probes the
    /// path MTU.
    fn plan_datagram(&mut self, now: Instant) -> Option<DatagramPlan> {
        let closing = match self.state {
            State::Draining { .. } | State::Drained => return None,
            State::Closing { .. } if !self.close_pending => return None,
            State::Closing { .. } => true,
            _ => false,
        };
        // RFC 9000 §14.2, RFC9000-277: packets fit the validated path MTU; 1200 bytes until
        // the handshake is confirmed and a probe validated more, and after probe timeouts in
        // a row that may mean the path became a black hole for larger datagrams.
        let mut limit = if self.handshake.confirmed {
            usize::from(self.path.mtu.send_size(self.pto_count))
        } else {
            MIN_INITIAL_SIZE
        };
        if !self.path.address_validated {
            // RFC 9000 §8.1, §9.3: at most three times the bytes received from the address
            // before it is validated. During the handshake our datagrams with an ack-eliciting
            // Initial are padded to 1200 bytes, so a smaller allowance sends nothing; on a
            // path the client migrated to, smaller datagrams go (the PATH_CHALLENGE among
            // them, expanded only as far as the limit allows, RFC9000-125).
            limit = limit.min(self.path.amplification_allowance() as usize);
            if limit < MIN_INITIAL_SIZE && !self.handshake.confirmed {
                return None;
            }
        }
        let probing = self.spaces.iter().any(|s| s.probes > 0);
        let mut congestion_blocked = !closing
            && !probing
            && self.path.bytes_in_flight + limit as u64 > self.path.cc.window();
        if !closing && !probing && !congestion_blocked {
            // RFC 9002 §7.7: ack-eliciting packets wait for the pacer; ACKs do not.
            let rate = self.path.pacing_rate();
            self.path.pacing_until = self.path.pacer.delay(now, limit as u64, rate);
            congestion_blocked = self.path.pacing_until.is_some();
        }
        // RFC 9000 §14.3, RFC9000-275: once the handshake is confirmed, probe larger sizes with
        // datagrams of their own, when no acknowledgment or HANDSHAKE_DONE waits to go first,
        // and on a validated path only (a probe would spend an unvalidated one's allowance).
        let data = &self.spaces[SpaceId::Data as usize];
        let mtu_probe = (!closing
            && !probing
            && !congestion_blocked
            && self.handshake.confirmed
            && self.path.address_validated
            && self.one_rtt.is_some()
            && !self.handshake.done_pending
            && !data.pending.handshake_done
            && !data.ack_due(now))
        .then(|| self.path.mtu.probe_size(now))
        .flatten();
        if let Some(size) = mtu_probe {
            limit = usize::from(size);
        }
        Some(DatagramPlan {
            closing,
            limit,
            probing,
            congestion_blocked,
            mtu_probe: mtu_probe.is_some(),
        })
    }

    /// Writes the datagram's packets, one per space with something to send, into `buf` from
    /// `base`.
    fn build_packets(
        &mut self,
        now: Instant,
        plan: &DatagramPlan,
        buf: &mut Vec<u8>,
        base: usize,
        built: &mut Vec<Built>,
    ) {
        for id in SpaceId::ALL {
            let probe_here = plan.mtu_probe && id == SpaceId::Data;
            if plan.mtu_probe && !probe_here {
                continue;
            }
            let wanted =
                probe_here || self.wants_to_send(id, now, plan.closing, plan.congestion_blocked);
            if !self.can_send_in(id, plan.closing) || !wanted {
                continue;
            }
            let (header, pn) = self.packet_header(id);
            let overhead = header.len(pn) + TAG_LEN + MIN_FRAME_ROOM;
            if plan.limit.saturating_sub(buf.len() - base) < overhead {
                break;
            }
            let content = if plan.closing {
                Content::Close
            } else if probe_here {
                Content::MtuProbe
            } else {
                Content::Frames {
                    congestion_blocked: plan.congestion_blocked,
                }
            };
            built.push(self.build_packet(now, id, buf, base + plan.limit, content));
        }
    }

    /// RFC 9000 §14.1: a client pads every datagram carrying an Initial, a server every one
    /// carrying an ack-eliciting Initial, to at least 1200 bytes; §8.2: a datagram with
    /// PATH_CHALLENGE or PATH_RESPONSE too, as far as its `limit` (the anti-amplification
    /// limit among it) allows. The padding goes into the last packet, before its tag.
    fn pad_datagram(&self, buf: &mut Vec<u8>, base: usize, limit: usize, built: &mut [Built]) {
        let pad = built.iter().any(|b| {
            b.record.path_validation
                || (b.space == SpaceId::Initial
                    && (self.side == Side::Client || b.record.ack_eliciting))
        });
        let target = MIN_INITIAL_SIZE.min(limit);
        if !pad || buf.len() - base >= target {
            return;
        }
        let Some(last) = built.last_mut() else {
            return;
        };
        let tag_start = buf.len() - TAG_LEN;
        let extra = target - (buf.len() - base);
        buf.splice(tag_start..tag_start, std::iter::repeat_n(0u8, extra));
        if last.long {
            let length = buf.len() - last.pn_offset;
            set_long_header_length(buf, last.pn_offset, length);
        }
        // RFC 9002 §2: a packet with PADDING counts toward bytes in flight.
        last.record.in_flight = true;
    }

    /// Protects the built packets in place and records them as sent.
    fn seal(&mut self, now: Instant, buf: &mut [u8], built: &mut Vec<Built>) {
        // Each packet ends where the next starts; the last at the end of the datagram.
        let end_of =
            |built: &[Built], i: usize, len: usize| built.get(i + 1).map_or(len, |b| b.start);
        for (i, packet) in built.iter().enumerate() {
            let end = end_of(built, i, buf.len());
            // Count what we send by reading our own plaintext: no per-frame bookkeeping at
            // every write site.
            let pn_len = usize::from(buf[packet.start] & 0x03) + 1;
            let payload = &buf[packet.pn_offset + pn_len..end - TAG_LEN];
            for frame in crate::wire::Frames::new(payload).map_while(Result::ok) {
                self.stats.frames_sent.count(frame.ty());
            }
            if let Some(qlog) = &mut self.qlog {
                let length = end - packet.start;
                let (ty, pn) = (packet.packet_type(), packet.pn);
                qlog.packet(now, true, ty, pn, length, payload, ACK_DELAY_EXPONENT);
            }
            let (header_key, packet_key) = self.local_keys(packet.space);
            protect(
                &mut buf[packet.start..end],
                packet.pn_offset - packet.start,
                packet.pn,
                header_key,
                packet_key,
            )
            .expect("packets are built with room for the sample and the tag");
        }
        // At most one packet per packet number space.
        let mut ends = [0; 3];
        for (i, end) in ends.iter_mut().enumerate().take(built.len()) {
            *end = end_of(built, i, buf.len());
        }
        for (mut packet, end) in built.drain(..).zip(ends) {
            packet.record.size = (end - packet.start) as u16;
            self.stats.zero_rtt_packets_sent +=
                u64::from(packet.packet_type() == PacketType::ZeroRtt);
            self.on_packet_sent(now, packet.space, packet.pn, packet.record);
        }
    }

    fn local_keys(&self, id: SpaceId) -> (&dyn HeaderProtectionKey, &dyn PacketKey) {
        match id {
            SpaceId::Data => match (&self.one_rtt, self.zero_rtt.keys()) {
                (Some(keys), _) => (&*keys.local_header, &*keys.local),
                (None, Some(keys)) => (&*keys.header, &*keys.packet),
                (None, None) => unreachable!("checked in can_send_in"),
            },
            _ => {
                let keys = &self.spaces[id as usize]
                    .keys
                    .as_ref()
                    .expect("checked in can_send_in")
                    .local;
                (&*keys.header, &*keys.packet)
            }
        }
    }

    fn can_send_in(&self, id: SpaceId, closing: bool) -> bool {
        match id {
            // RFC 9001 §4.6.1: a client resuming with early data sends 0-RTT packets until it has
            // 1-RTT keys; a close waits for those.
            SpaceId::Data => self.one_rtt.is_some() || (!closing && self.is_sending_zero_rtt()),
            // RFC 9000 §10.2.3: once the handshake is confirmed, CONNECTION_CLOSE goes only in
            // 1-RTT packets.
            _ if closing && self.handshake.confirmed => false,
            _ => self.spaces[id as usize].keys.is_some(),
        }
    }

    fn wants_to_send(&self, id: SpaceId, now: Instant, closing: bool, blocked: bool) -> bool {
        let space = &self.spaces[id as usize];
        if closing {
            return self.close.is_some();
        }
        if space.ack_due(now) {
            return true;
        }
        if blocked && space.probes == 0 {
            return false;
        }
        let data_space_work = id == SpaceId::Data
            && (self.handshake.done_pending
                || self.ping_pending
                || self.ack_frequency.has_pending()
                || self.path_response.is_some()
                || self.migration.challenge_due().is_some()
                || !self.datagrams.outgoing.is_empty()
                || self.streams.wants_to_send());
        space.probes > 0 || space.has_retransmittable_data() || data_space_work
    }

    /// The header of the next packet of space `id`, and its truncated packet number.
    fn packet_header(&self, id: SpaceId) -> (Header<'_>, TruncatedPacketNumber) {
        let dcid = self.off_path_dcid.unwrap_or_else(|| self.cids.remote());
        let (version, scid) = (self.version, self.local_cid);
        // RFC 9000 §17.2.2, RFC9000-307: a server's Initial has an empty token.
        let token: &[u8] = if self.side == Side::Client {
            &self.initial_token
        } else {
            &[]
        };
        let header = match id {
            SpaceId::Initial => Header::Initial {
                version,
                dcid,
                scid,
                token,
            },
            SpaceId::Handshake => Header::Handshake {
                version,
                dcid,
                scid,
            },
            SpaceId::Data if self.is_sending_zero_rtt() => Header::ZeroRtt {
                version,
                dcid,
                scid,
            },
            SpaceId::Data => Header::Short {
                dcid,
                spin: false,
                key_phase: self.one_rtt.as_ref().is_some_and(|k| k.key_phase),
            },
        };
        let space = &self.spaces[id as usize];
        (
            header,
            TruncatedPacketNumber::encode(space.next_pn, space.largest_acked),
        )
    }

    fn build_packet(
        &mut self,
        now: Instant,
        id: SpaceId,
        buf: &mut Vec<u8>,
        limit: usize,
        content: Content,
    ) -> Built {
        let start = buf.len();
        let zero_rtt = id == SpaceId::Data && self.is_sending_zero_rtt();
        let (header, truncated) = self.packet_header(id);
        let pn_offset = start + header.encode(truncated, 0, buf);
        let space = &mut self.spaces[id as usize];
        let pn = space.next_pn;
        space.next_pn += 1;
        let max_end = limit - TAG_LEN;
        let mut record = SentPacket {
            time: now,
            size: 0,
            ack_eliciting: false,
            in_flight: false,
            ecn_marked: self.path.ecn_sending,
            largest_ack: None,
            retransmit: Retransmit::default(),
            mtu_probe: matches!(content, Content::MtuProbe),
            path_validation: false,
        };

        // RFC 9000 §12.4: a 0-RTT packet carries no ACK; what the client acknowledges it
        // received in 1-RTT packets (§17.2.3), which end its 0-RTT (RFC9000-310).
        let off_path = matches!(
            content,
            Content::PathChallenge(_) | Content::PathResponse(_)
        );
        if !off_path && !zero_rtt {
            let closing = matches!(content, Content::Close);
            self.write_ack_if_due(now, id, closing, buf, &mut record);
        }
        match content {
            Content::Close => self.write_close(id, buf, max_end),
            Content::MtuProbe => {
                // A PING padded to the probed size: nothing in it needs retransmitting.
                Frame::Ping.encode(buf);
                Frame::Padding(max_end.saturating_sub(buf.len())).encode(buf);
                record.ack_eliciting = true;
            }
            Content::Frames { congestion_blocked } => {
                self.write_frames(now, id, buf, max_end, congestion_blocked, &mut record)
            }
            Content::PathChallenge(data) => {
                Frame::PathChallenge(data).encode(buf);
                record.path_validation = true;
            }
            Content::PathResponse(data) => {
                Frame::PathResponse(data).encode(buf);
                record.path_validation = true;
            }
        }

        record.in_flight = record.ack_eliciting;
        let built = Built {
            space: id,
            start,
            pn_offset,
            pn,
            long: id != SpaceId::Data || zero_rtt,
            record,
        };
        built.finish(buf);
        built
    }

    /// An ACK of space `id` when one is due, or when the packet will be ack-eliciting and the
    /// peer may not have our last one.
    fn write_ack_if_due(
        &mut self,
        now: Instant,
        id: SpaceId,
        closing: bool,
        buf: &mut Vec<u8>,
        record: &mut SentPacket,
    ) {
        let space = &self.spaces[id as usize];
        let eliciting_planned = !closing
            && (space.probes > 0
                || space.has_retransmittable_data()
                || (id == SpaceId::Data && (self.ping_pending || self.streams.wants_to_send())));
        let quiet = (2 * self.path.rtt.smoothed()).max(ACK_REPEAT_QUIET);
        let space = &mut self.spaces[id as usize];
        let repeat = space.ack_repeat_due(now);
        if space.ack_pending() || repeat || (eliciting_planned && space.ack_unconfirmed()) {
            record.largest_ack = space.received.max();
            let covered = space.unacked_eliciting;
            write_ack(space, now, buf);
            if id == SpaceId::Data {
                space.arm_ack_repeat(now, covered, quiet);
            }
        }
    }

    /// CONNECTION_CLOSE, in the form the packet type allows (RFC 9000 §10.2.3): an application
    /// close in an Initial or Handshake packet becomes a transport close with APPLICATION_ERROR,
    /// revealing nothing of the application.
    fn write_close(&self, id: SpaceId, buf: &mut Vec<u8>, max_end: usize) {
        let Some(close) = &self.close else {
            return;
        };
        let (error_code, frame_type, reason) = match close {
            CloseFrame::Transport(error) => (
                VarInt::from_u64(error.code.0).unwrap_or(VarInt::MAX),
                Some(
                    error
                        .frame_type
                        .and_then(|t| VarInt::from_u64(t).ok())
                        .unwrap_or(VarInt::ZERO),
                ),
                error.reason.as_bytes(),
            ),
            CloseFrame::Application { .. } if id != SpaceId::Data => (
                VarInt::from_u64(TransportErrorCode::APPLICATION_ERROR.0).expect("small"),
                Some(VarInt::ZERO),
                &[][..],
            ),
            CloseFrame::Application { code, reason } => (*code, None, &reason[..]),
        };
        // The reason is cut to what fits beside the frame's other fields (RFC 9000 §19.19).
        let mut payload = Payload::new(buf, max_end);
        let fields = 1 + error_code.size() + frame_type.map_or(0, VarInt::size);
        let reason = truncate_utf8(reason, payload.data_room(fields));
        payload.put_sized(&Frame::ConnectionClose(ConnectionClose {
            error_code,
            frame_type,
            reason,
        }));
    }

    /// Writes what is pending in space `id` into the packet, up to `max_end`: control frames,
    /// CRYPTO data, stream frames and datagrams (unless congestion control holds them back),
    /// and a PING when a probe or the application asks for an ack-eliciting packet.
    fn write_frames(
        &mut self,
        now: Instant,
        id: SpaceId,
        buf: &mut Vec<u8>,
        max_end: usize,
        congestion_blocked: bool,
        record: &mut SentPacket,
    ) {
        let mut payload = Payload::new(buf, max_end);
        // The connection's own control frames wait for 1-RTT: in 0-RTT none is due yet, and
        // some may not go there (RFC 9000 §12.4).
        if id == SpaceId::Data && self.one_rtt.is_some() {
            self.write_data_control(now, &mut payload, record);
        }
        let space = &mut self.spaces[id as usize];
        if !congestion_blocked || space.probes > 0 {
            write_crypto(space, &mut payload, record);
            if space.probes > 0 && !record.ack_eliciting {
                // RFC 9002 §6.2.4: every probe may carry data still unacknowledged, so each of
                // the two probes repeats it rather than one of them being a bare PING.
                let outstanding: Vec<_> = space
                    .sent
                    .values()
                    .flat_map(|p| p.retransmit.crypto().iter().cloned())
                    .collect();
                for range in outstanding {
                    space.crypto_send.on_lost(range);
                }
                write_crypto(space, &mut payload, record);
            }
            if id == SpaceId::Data {
                self.write_stream_frames(now, &mut payload, record);
                while let Some(datagram) = self.datagrams.outgoing.front() {
                    // The frame is longer than its data: one that cannot fit is not copied in.
                    if datagram.len() >= payload.room() || !payload.put(&Frame::Datagram(datagram))
                    {
                        break;
                    }
                    self.datagrams.outgoing.pop_front();
                    record.ack_eliciting = true;
                }
            }
        }
        let space = &mut self.spaces[id as usize];
        let ping_wanted = space.probes > 0 || (id == SpaceId::Data && self.ping_pending);
        if ping_wanted && !record.ack_eliciting {
            payload.put(&Frame::Ping);
            record.ack_eliciting = true;
        }
        if record.ack_eliciting {
            space.probes = space.probes.saturating_sub(1);
            if id == SpaceId::Data {
                self.ping_pending = false;
            }
        }
    }

    /// The 1-RTT space's control frames: IMMEDIATE_ACK for a probe, PATH_RESPONSE, connection
    /// IDs, NEW_TOKEN, ACK_FREQUENCY and HANDSHAKE_DONE, each as far as it fits.
    fn write_data_control(
        &mut self,
        now: Instant,
        payload: &mut Payload<'_>,
        record: &mut SentPacket,
    ) {
        let mut put = |frame: &Frame<'_>, record: &mut SentPacket| {
            let fits = payload.put(frame);
            record.ack_eliciting |= fits;
            fits
        };
        if self.spaces[SpaceId::Data as usize].probes > 0 && self.ack_frequency.peer_accepts() {
            // RFC 9002 §6.2.4 lets a probe elicit a faster acknowledgment;
            // draft-ietf-quic-ack-frequency §5 gives the frame for it.
            put(&Frame::ImmediateAck, record);
        }
        // RFC 9000 §8.2.2, RFC9000-129: a PATH_RESPONSE goes out without delay; here when
        // its challenge came on the path in use (else off_path_datagram sends it).
        if let Some(response) = self.path_response {
            if put(&Frame::PathResponse(response.data), record) {
                self.path_response = None;
                record.path_validation = true;
            }
        }
        // RFC 9000 §8.2.1: validating the peer's new address.
        if let Some(data) = self.migration.challenge_due() {
            if put(&Frame::PathChallenge(data), record) {
                let pto = self.pto_duration();
                self.migration.on_challenge_written(now, pto);
                record.path_validation = true;
            }
        }
        let space = &mut self.spaces[SpaceId::Data as usize];
        // Connection ID frames, sent again when lost (RFC 9000 §13.3); a NEW_CONNECTION_ID for
        // an ID the peer already retired or acknowledged is dropped, as is a
        // RETIRE_CONNECTION_ID it acknowledged.
        while let Some(issued) = space.pending.new_cids.pop() {
            if !self.cids.new_cid_needed(issued.sequence) {
                continue;
            }
            if !put(&Frame::NewConnectionId(issued.frame()), record) {
                space.pending.new_cids.push(issued);
                break;
            }
            record.retransmit.control_mut().new_cids.push(issued);
        }
        while let Some(sequence) = space.pending.retire_cids.pop() {
            if !self.cids.retire_needed(sequence) {
                continue;
            }
            let sequence_varint = VarInt::from_u64(sequence).expect("small");
            let frame = Frame::RetireConnectionId {
                sequence: sequence_varint,
            };
            if !put(&frame, record) {
                space.pending.retire_cids.push(sequence);
                break;
            }
            record.retransmit.control_mut().retire_cids.push(sequence);
        }
        if let Some(token) = space.pending.new_token.take() {
            if put(&Frame::NewToken(&token), record) {
                record.retransmit.control_mut().new_token = Some(token);
            } else {
                space.pending.new_token = Some(token);
            }
        }
        if let Some(frame) = self.ack_frequency.pending() {
            if put(&Frame::AckFrequency(frame), record) {
                self.ack_frequency.on_sent();
                record.retransmit.control_mut().ack_frequency = Some(frame.sequence.into_inner());
            }
        }
        let handshake_done = self.handshake.done_pending || space.pending.handshake_done;
        if self.side == Side::Server && handshake_done && put(&Frame::HandshakeDone, record) {
            record.retransmit.control_mut().handshake_done = true;
            self.handshake.done_pending = false;
            space.pending.handshake_done = false;
        }
    }

    /// Stream frames, their records kept with the packet for acknowledgment and loss.
    fn write_stream_frames(
        &mut self,
        now: Instant,
        payload: &mut Payload<'_>,
        record: &mut SentPacket,
    ) {
        let mut streams = self.spare_stream_records.pop().unwrap_or_default();
        let rtt = self.path.rtt.smoothed();
        record.ack_eliciting |= self.streams.write_frames(payload, &mut streams, now, rtt);
        if streams.is_empty() {
            self.spare_stream_records.push(streams);
        } else {
            record.retransmit.streams = streams;
        }
    }

    fn on_packet_sent(&mut self, now: Instant, id: SpaceId, pn: u64, record: SentPacket) {
        self.stats.packets_sent += 1;
        self.last_sent = Some(now);
        if record.ack_eliciting {
            self.last_sent_eliciting = Some(now);
            self.spaces[id as usize].time_of_last_ack_eliciting = Some(now);
            // RFC 9000 §10.1: sending the first ack-eliciting packet after receiving restarts
            // the idle timer.
            let (peer, pto) = (self.peer_idle_timeout(), self.pto_duration());
            self.idle.on_eliciting_sent(now, peer, pto);
        }
        if record.in_flight {
            self.path.bytes_in_flight += u64::from(record.size);
            self.path.pacer.on_sent(u64::from(record.size));
            if id == SpaceId::Data && !record.mtu_probe {
                // Nothing else to send and room in the window: the application limits the
                // rate now (for delivery-rate samples).
                let app_limited = self.path.bytes_in_flight < self.path.cc.window()
                    && self.datagrams.outgoing.is_empty()
                    && !self.streams.has_data_to_send();
                self.path.cc.on_sent(
                    now,
                    pn,
                    u64::from(record.size),
                    self.path.bytes_in_flight,
                    app_limited,
                );
            }
            self.spaces[id as usize].sent.insert(pn, record);
        }
        if id == SpaceId::Data {
            self.after_one_rtt_sent();
        }
        // RFC 9001 §4.9.1: a client discards Initial keys when it first sends a Handshake
        // packet.
        if id == SpaceId::Handshake
            && self.side == Side::Client
            && !self.handshake.sent_handshake_packet
        {
            self.handshake.sent_handshake_packet = true;
            self.discard_space(SpaceId::Initial);
        }
    }

    /// Counts a 1-RTT packet against the key update interval and starts an update when due
    /// (RFC 9001 §6.1).
    fn after_one_rtt_sent(&mut self) {
        let interval = self.config.key_update_interval;
        let next_pn = self.spaces[SpaceId::Data as usize].next_pn;
        let confirmed = self.handshake.confirmed;
        if let Some(keys) = &mut self.one_rtt {
            keys.packets_in_phase += 1;
            if interval.is_some_and(|n| keys.packets_in_phase >= n) && confirmed && keys.phase_acked
            {
                keys.update(next_pn, u64::MAX);
                self.stats.key_updates_initiated += 1;
            }
        }
    }
}

/// An ACK frame of everything `space` received (RFC 9000 §19.3), with the delay since the
/// largest arrived.
fn write_ack(space: &mut PacketSpace, now: Instant, buf: &mut Vec<u8>) {
    let delay = space
        .largest_received_time
        .map_or(0, |t| now.saturating_duration_since(t).as_micros() as u64)
        >> ACK_DELAY_EXPONENT;
    let ranges = space
        .received
        .iter_descending()
        .map(|r| r.start..=r.end - 1);
    // RFC 9000 §13.4.1: ECN counts are reported once any ECN mark was received.
    let ecn = (space.ecn_received != Default::default()).then_some(space.ecn_received);
    let delay = VarInt::from_u64(delay).unwrap_or(VarInt::MAX);
    Ack::encode(ranges, delay, ecn, buf);
    space.on_ack_sent();
}

/// CRYPTO data lost earlier first, then new data (RFC 9000 §13.3).
fn write_crypto(space: &mut PacketSpace, payload: &mut Payload<'_>, record: &mut SentPacket) {
    loop {
        let room = payload.crypto_data_room(space.crypto_send.next_offset());
        let Some((offset, data)) = space.crypto_send.next_chunk(room) else {
            break;
        };
        let sent = offset..offset + data.len() as u64;
        payload.put_sized(&Frame::Crypto {
            offset: VarInt::from_u64(offset).expect("crypto offsets are small"),
            data,
        });
        record.retransmit.control_mut().crypto.push(sent);
        record.ack_eliciting = true;
    }
}

/// At most `max` bytes of `reason`, cut at a character boundary when it is UTF-8.
fn truncate_utf8(reason: &[u8], max: usize) -> &[u8] {
    if reason.len() <= max {
        return reason;
    }
    let mut end = max;
    while end > 0 && (reason[end] & 0xc0) == 0x80 {
        end -= 1;
    }
    &reason[..end]
}
