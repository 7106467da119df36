//! The send path: assembling frames into packets and packets into datagrams (RFC 9000 §12.2,
//! §13, §14).

use std::time::Instant;

use rustls::quic::{HeaderProtectionKey, PacketKey};

use super::space::{PacketSpace, Retransmit, SentPacket};
use super::{ACK_DELAY_EXPONENT, CloseFrame, Connection, MIN_INITIAL_SIZE, State, Transmit};
use crate::crypto::{TAG_LEN, protect};
use crate::wire::SpaceId;
use crate::wire::{
    Ack, ConnectionClose, Frame, Header, Payload, TruncatedPacketNumber, VarInt,
    set_long_header_length,
};
use crate::{Side, TransportErrorCode};

/// Room a packet needs beyond its frames: the largest long header (first byte, version, two
/// 20-byte connection IDs with lengths, a 2-byte Length, 4-byte packet number) and the tag.
/// Tokens are accounted separately.
const PACKET_OVERHEAD: usize = 1 + 4 + 1 + 20 + 1 + 20 + 2 + 4 + TAG_LEN;
/// The fewest frame bytes worth starting a packet for.
const MIN_FRAME_ROOM: usize = 8;
/// The largest ACK_FREQUENCY frame: a 2-byte type and four 8-byte integers.
const ACK_FREQUENCY_MAX: usize = 2 + 4 * 8;

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

/// What a packet carries after any acknowledgment.
#[derive(Clone, Copy, Debug)]
enum Content {
    /// CONNECTION_CLOSE, while closing.
    Close,
    /// A path MTU probe: PING and PADDING up to the probed size.
    MtuProbe,
    /// Whatever is pending; only what congestion control never holds back when blocked.
    Frames { congestion_blocked: bool },
}

impl Connection {
    /// The next datagram to send, appended to `buf` (so datagrams can be gathered into one
    /// buffer for a batched send), or `None` when nothing may be sent now; `buf` is then
    /// unchanged. Coalesces Initial, Handshake and 1-RTT packets (RFC 9000 §12.2).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        let base = buf.len();
        let closing = match self.state {
            State::Draining { .. } | State::Drained => return None,
            State::Closing { .. } if !self.close_pending => return None,
            State::Closing { .. } => true,
            _ => false,
        };
        // RFC 9000 §14.2, RFC9000-277: packets fit the validated path MTU; 1200 bytes until
        // the handshake is confirmed and a probe validated more.
        let mut limit = if self.handshake_confirmed {
            usize::from(self.mtu.current())
        } else {
            MIN_INITIAL_SIZE
        };
        if !self.address_validated {
            // RFC 9000 §8.1: at most three times the bytes received before the client's address
            // is validated. Our datagrams with an ack-eliciting Initial are padded to 1200
            // bytes, so a smaller allowance sends nothing.
            limit = limit.min(self.amplification_allowance() as usize);
            if limit < MIN_INITIAL_SIZE {
                return None;
            }
        }
        let probing = self.spaces.iter().any(|s| s.probes > 0);
        let mut congestion_blocked =
            !closing && !probing && self.bytes_in_flight + limit as u64 > self.cc.window();
        if !closing && !probing && !congestion_blocked {
            // RFC 9002 §7.7: ack-eliciting packets wait for the pacer; ACKs do not.
            let rate = self.cc.pacing_rate().unwrap_or_else(|| {
                crate::recovery::pacing::window_rate(self.cc.window(), self.rtt.smoothed())
            });
            self.pacing_until = self.pacer.delay(now, limit as u64, rate);
            congestion_blocked = self.pacing_until.is_some();
        }
        // RFC 9000 §14.3, RFC9000-275: once the handshake is confirmed, probe larger sizes with
        // datagrams of their own, when no acknowledgment or HANDSHAKE_DONE waits to go first.
        let data = &self.spaces[SpaceId::Data as usize];
        let mtu_probe = (!closing
            && !probing
            && !congestion_blocked
            && self.handshake_confirmed
            && self.one_rtt.is_some()
            && !self.handshake_done_pending
            && !data.pending.handshake_done
            && !data.ack_due(now))
        .then(|| self.mtu.probe_size(now))
        .flatten();
        if let Some(size) = mtu_probe {
            limit = usize::from(size);
        }
        buf.reserve(limit);
        // The packets of this datagram, in a buffer kept across calls: no allocation per send.
        let mut built = std::mem::take(&mut self.built);
        built.clear();
        for id in SpaceId::ALL {
            let probe_here = mtu_probe.is_some() && id == SpaceId::Data;
            if mtu_probe.is_some() && !probe_here {
                continue;
            }
            if !self.can_send_in(id, closing)
                || !(probe_here || self.wants_to_send(id, now, closing, congestion_blocked))
            {
                continue;
            }
            let overhead = PACKET_OVERHEAD + self.initial_token.len() + MIN_FRAME_ROOM;
            if limit.saturating_sub(buf.len() - base) < overhead {
                break;
            }
            let content = if closing {
                Content::Close
            } else if probe_here {
                Content::MtuProbe
            } else {
                Content::Frames { congestion_blocked }
            };
            built.push(self.build_packet(now, id, buf, base + limit, content));
        }
        if built.is_empty() {
            self.built = built;
            return None;
        }
        // RFC 9000 §14.1: a client pads every datagram carrying an Initial, a server every one
        // carrying an ack-eliciting Initial, to at least 1200 bytes. The padding goes into the
        // last packet, before its tag.
        let pad = built.iter().any(|b| {
            b.space == SpaceId::Initial && (self.side == Side::Client || b.record.ack_eliciting)
        });
        if pad && buf.len() - base < MIN_INITIAL_SIZE {
            let last = built.last_mut().expect("non-empty");
            let tag_start = buf.len() - TAG_LEN;
            let extra = MIN_INITIAL_SIZE - (buf.len() - base);
            buf.splice(tag_start..tag_start, std::iter::repeat_n(0u8, extra));
            if last.long {
                let length = buf.len() - last.pn_offset;
                set_long_header_length(buf, last.pn_offset, length);
            }
            // RFC 9002 §2: a packet with PADDING counts toward bytes in flight.
            last.record.in_flight = true;
        }
        // Each packet ends where the next starts; the last at the end of the datagram.
        let end_of =
            |built: &[Built], i: usize, len: usize| built.get(i + 1).map_or(len, |b| b.start);
        for (i, packet) in built.iter().enumerate() {
            let end = end_of(&built, i, buf.len());
            // Count what we send by reading our own plaintext: no per-frame bookkeeping at
            // every write site.
            let pn_len = usize::from(buf[packet.start] & 0x03) + 1;
            let payload = &buf[packet.pn_offset + pn_len..end - TAG_LEN];
            for frame in crate::wire::Frames::new(payload).map_while(Result::ok) {
                self.stats.frames_sent.count(frame.ty());
            }
            if let Some(qlog) = &mut self.qlog {
                qlog.packet(
                    now,
                    true,
                    packet.space,
                    packet.pn,
                    end - packet.start,
                    payload,
                    ACK_DELAY_EXPONENT,
                );
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
            *end = end_of(&built, i, buf.len());
        }
        for (mut packet, end) in built.drain(..).zip(ends) {
            packet.record.size = (end - packet.start) as u16;
            self.on_packet_sent(now, packet.space, packet.pn, packet.record);
        }
        self.built = built;
        let size = buf.len() - base;
        self.stats.datagrams_sent += 1;
        self.stats.bytes_sent += size as u64;
        if !self.address_validated {
            self.amplification_sent += size as u64;
        }
        if closing {
            self.close_pending = false;
        }
        Some(Transmit {
            destination: self.remote,
            size,
            ecn: self.ecn_sending.then_some(super::EcnCodepoint::Ect0),
            probe: probing,
        })
    }

    /// What the anti-amplification limit still allows (RFC 9000 §8.1).
    pub(super) fn amplification_allowance(&self) -> u64 {
        (3 * self.amplification_received).saturating_sub(self.amplification_sent)
    }

    fn local_keys(&self, id: SpaceId) -> (&dyn HeaderProtectionKey, &dyn PacketKey) {
        match id {
            SpaceId::Data => {
                let keys = self.one_rtt.as_ref().expect("checked in can_send_in");
                (&*keys.local_header, &*keys.local)
            }
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
            SpaceId::Data => self.one_rtt.is_some(),
            // RFC 9000 §10.2.3: once the handshake is confirmed, CONNECTION_CLOSE goes only in
            // 1-RTT packets.
            _ if closing && self.handshake_confirmed => false,
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
            && (self.handshake_done_pending
                || self.ping_pending
                || self.ack_frequency.has_pending()
                || self.path_response.is_some()
                || !self.datagrams_out.is_empty()
                || self.streams.wants_to_send());
        space.probes > 0 || space.has_retransmittable_data() || data_space_work
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
        let (version, dcid, scid) = (self.version, self.cids.remote(), self.local_cid);
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
            SpaceId::Data => Header::Short {
                dcid,
                spin: false,
                key_phase: self.one_rtt.as_ref().is_some_and(|k| k.key_phase),
            },
        };
        let space = &mut self.spaces[id as usize];
        let pn = space.next_pn;
        space.next_pn += 1;
        let truncated = TruncatedPacketNumber::encode(pn, space.largest_acked);
        let pn_offset = start + header.encode(truncated, 0, buf);
        let max_end = limit - TAG_LEN;
        let mut record = SentPacket {
            time: now,
            size: 0,
            ack_eliciting: false,
            in_flight: false,
            ecn_marked: self.ecn_sending,
            largest_ack: None,
            retransmit: Retransmit::default(),
            mtu_probe: matches!(content, Content::MtuProbe),
        };

        let closing = matches!(content, Content::Close);
        let eliciting_planned = !closing
            && (space.probes > 0
                || space.has_retransmittable_data()
                || (id == SpaceId::Data && (self.ping_pending || self.streams.wants_to_send())));
        if space.ack_pending() || (eliciting_planned && space.ack_unconfirmed()) {
            record.largest_ack = space.received.max();
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
        }

        // RFC 9001 §5.4.2: the sample starts 4 bytes after the packet number's start, so the
        // packet number and frames together take at least 4 bytes.
        let written = buf.len() - pn_offset;
        if written < 4 {
            Frame::Padding(4 - written).encode(buf);
        }
        buf.resize(buf.len() + TAG_LEN, 0);
        let long = id != SpaceId::Data;
        if long {
            let length = buf.len() - pn_offset;
            set_long_header_length(buf, pn_offset, length);
        }
        record.in_flight = record.ack_eliciting;
        Built {
            space: id,
            start,
            pn_offset,
            pn,
            long,
            record,
        }
    }

    /// CONNECTION_CLOSE, in the form the packet type allows (RFC 9000 §10.2.3): an application
    /// close in an Initial or Handshake packet becomes a transport close with APPLICATION_ERROR,
    /// revealing nothing of the application.
    fn write_close(&self, id: SpaceId, buf: &mut Vec<u8>, max_end: usize) {
        let Some(close) = &self.close else {
            return;
        };
        let room = max_end.saturating_sub(buf.len()).saturating_sub(24);
        let frame = match close {
            CloseFrame::Transport(error) => ConnectionClose {
                error_code: VarInt::from_u64(error.code.0).unwrap_or(VarInt::MAX),
                frame_type: Some(
                    error
                        .frame_type
                        .and_then(|t| VarInt::from_u64(t).ok())
                        .unwrap_or(VarInt::ZERO),
                ),
                reason: truncate_utf8(error.reason.as_bytes(), room),
            },
            CloseFrame::Application { .. } if id != SpaceId::Data => ConnectionClose {
                error_code: VarInt::from_u64(TransportErrorCode::APPLICATION_ERROR.0)
                    .expect("small"),
                frame_type: Some(VarInt::ZERO),
                reason: &[],
            },
            CloseFrame::Application { code, reason } => ConnectionClose {
                error_code: *code,
                frame_type: None,
                reason: truncate_utf8(reason, room),
            },
        };
        Frame::ConnectionClose(frame).encode(buf);
    }

    fn write_frames(
        &mut self,
        now: Instant,
        id: SpaceId,
        buf: &mut Vec<u8>,
        max_end: usize,
        congestion_blocked: bool,
        record: &mut SentPacket,
    ) {
        if id == SpaceId::Data {
            if self.spaces[id as usize].probes > 0 && self.ack_frequency.peer_accepts() {
                // RFC 9002 §6.2.4 lets a probe elicit a faster acknowledgment;
                // draft-ietf-quic-ack-frequency §5 gives the frame for it.
                Frame::ImmediateAck.encode(buf);
                record.ack_eliciting = true;
            }
            if let Some(data) = self.path_response.take() {
                Frame::PathResponse(data).encode(buf);
                record.ack_eliciting = true;
            }
            let space = &mut self.spaces[id as usize];
            // Connection ID frames, sent again when lost (RFC 9000 §13.3); a NEW_CONNECTION_ID
            // for an ID the peer already retired or acknowledged is dropped, as is a
            // RETIRE_CONNECTION_ID it acknowledged.
            while let Some(issued) = space.pending.new_cids.pop() {
                if !self.cids.new_cid_needed(issued.sequence) {
                    continue;
                }
                if buf.len() + 1 + 8 + 8 + 1 + 20 + 16 > max_end {
                    space.pending.new_cids.push(issued);
                    break;
                }
                Frame::NewConnectionId(issued.frame()).encode(buf);
                record.retransmit.control_mut().new_cids.push(issued);
                record.ack_eliciting = true;
            }
            while let Some(sequence) = space.pending.retire_cids.pop() {
                if !self.cids.retire_needed(sequence) {
                    continue;
                }
                if buf.len() + 1 + 8 > max_end {
                    space.pending.retire_cids.push(sequence);
                    break;
                }
                Frame::RetireConnectionId {
                    sequence: VarInt::from_u64(sequence).expect("small"),
                }
                .encode(buf);
                record.retransmit.control_mut().retire_cids.push(sequence);
                record.ack_eliciting = true;
            }
            if let Some(token) = space.pending.new_token.take() {
                if buf.len() + 1 + 2 + token.len() > max_end {
                    space.pending.new_token = Some(token);
                } else {
                    Frame::NewToken(&token).encode(buf);
                    record.retransmit.control_mut().new_token = Some(token);
                    record.ack_eliciting = true;
                }
            }
            if buf.len() + ACK_FREQUENCY_MAX <= max_end {
                if let Some(frame) = self.ack_frequency.take_pending() {
                    Frame::AckFrequency(frame).encode(buf);
                    record.retransmit.control_mut().ack_frequency =
                        Some(frame.sequence.into_inner());
                    record.ack_eliciting = true;
                }
            }
            if self.side == Side::Server
                && (self.handshake_done_pending || space.pending.handshake_done)
            {
                Frame::HandshakeDone.encode(buf);
                record.ack_eliciting = true;
                record.retransmit.control_mut().handshake_done = true;
                self.handshake_done_pending = false;
                space.pending.handshake_done = false;
            }
        }
        let space = &mut self.spaces[id as usize];
        if !congestion_blocked || space.probes > 0 {
            write_crypto(space, buf, max_end, record);
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
                write_crypto(space, buf, max_end, record);
            }
            if id == SpaceId::Data {
                let mut streams = self.spare_stream_records.pop().unwrap_or_default();
                let rtt = self.rtt.smoothed();
                let mut payload = Payload::new(buf, max_end);
                record.ack_eliciting |=
                    self.streams
                        .write_frames(&mut payload, &mut streams, now, rtt);
                if streams.is_empty() {
                    self.spare_stream_records.push(streams);
                } else {
                    record.retransmit.streams = streams;
                }
            }
            if id == SpaceId::Data {
                while let Some(datagram) = self.datagrams_out.front() {
                    if buf.len() + datagram.len() + 3 > max_end {
                        break;
                    }
                    Frame::Datagram(datagram).encode(buf);
                    self.datagrams_out.pop_front();
                    record.ack_eliciting = true;
                }
            }
        }
        let space = &mut self.spaces[id as usize];
        let ping_wanted = space.probes > 0 || (id == SpaceId::Data && self.ping_pending);
        if ping_wanted && !record.ack_eliciting {
            Frame::Ping.encode(buf);
            record.ack_eliciting = true;
        }
        if record.ack_eliciting {
            space.probes = space.probes.saturating_sub(1);
            if id == SpaceId::Data {
                self.ping_pending = false;
            }
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
            if !self.sent_eliciting_since_receive {
                self.sent_eliciting_since_receive = true;
                self.reset_idle_timer(now);
            }
        }
        if record.in_flight {
            self.bytes_in_flight += u64::from(record.size);
            self.pacer.on_sent(u64::from(record.size));
            if id == SpaceId::Data && !record.mtu_probe {
                // Nothing else to send and room in the window: the application limits the
                // rate now (for delivery-rate samples).
                let app_limited = self.bytes_in_flight < self.cc.window()
                    && self.datagrams_out.is_empty()
                    && !self.streams.has_data_to_send();
                self.cc.on_sent(
                    now,
                    pn,
                    u64::from(record.size),
                    self.bytes_in_flight,
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
        if id == SpaceId::Handshake && self.side == Side::Client && !self.sent_handshake {
            self.sent_handshake = true;
            self.discard_space(SpaceId::Initial);
        }
    }

    /// Counts a 1-RTT packet against the key update interval and starts an update when due
    /// (RFC 9001 §6.1).
    fn after_one_rtt_sent(&mut self) {
        let interval = self.config.key_update_interval;
        let next_pn = self.spaces[SpaceId::Data as usize].next_pn;
        let confirmed = self.handshake_confirmed;
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

/// CRYPTO data lost earlier first, then new data (RFC 9000 §13.3). A frame's header takes at
/// most 11 bytes: type, an 8-byte offset, a 2-byte length.
fn write_crypto(
    space: &mut PacketSpace,
    buf: &mut Vec<u8>,
    max_end: usize,
    record: &mut SentPacket,
) {
    while let Some((offset, data)) = space
        .crypto_send
        .next_chunk(max_end.saturating_sub(buf.len()).saturating_sub(11))
    {
        let sent = offset..offset + data.len() as u64;
        Frame::Crypto {
            offset: VarInt::from_u64(offset).expect("crypto offsets are small"),
            data,
        }
        .encode(buf);
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
