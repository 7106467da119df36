//! The receive path: datagrams to packets to frames (RFC 9000 §12, §13).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use rustls::quic::Keys;

use super::{Connection, ConnectionError, EcnCodepoint, Event, State, TransportError};
use crate::crypto::{decrypt_payload, initial_keys, retry_tag_valid, unprotect_header};
use crate::stateless_reset::MIN_STATELESS_RESET_LEN;
use crate::wire::{
    ConnectionClose, Frame, FrameType, Frames, Packet, PacketType, ProtectedPacket, RetryPacket,
    SpaceId, Version, VersionNegotiation, parse_packet, reserved_bits_valid,
};
use crate::{Side, TransportErrorCode};

/// What became of one packet.
enum Outcome {
    Processed,
    Dropped,
}

/// A packet this connection takes: its space, and the Initial keys it needs.
struct Accepted {
    id: SpaceId,
    /// A client's Initial in the original version, after the server switched.
    original_initial: bool,
    /// Client: the version the server switches to with this packet, and its Initial keys.
    switch: Option<(Version, Keys)>,
    /// Server: a 0-RTT packet, opened with the early data keys.
    zero_rtt: bool,
}

/// A packet that decrypted.
struct Decrypted {
    pn: u64,
    /// The key phase bit of its header.
    key_phase: bool,
    /// Whether it was the first of a key update the peer started.
    peer_updated_keys: bool,
    /// Its length on the wire.
    length: usize,
    /// Its frames, sharing the datagram's storage.
    payload: Bytes,
}

/// What a packet's frames were, as a whole.
struct FramesSeen {
    ack_eliciting: bool,
    /// Only probing frames (RFC 9000 §9.1).
    probing: bool,
}

impl Connection {
    /// Processes a datagram the endpoint routed to this connection: every coalesced packet in it
    /// (RFC 9000 §12.2, RFC9000-214), each decrypted and acknowledged separately (RFC9000-218).
    /// Packets that cannot be decrypted are dropped; a protocol error closes the connection.
    /// `ecn` is the datagram's ECN codepoint, when the socket reports it. Received stream data
    /// shares `datagram`'s storage rather than being copied.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        ecn: Option<EcnCodepoint>,
        mut datagram: BytesMut,
    ) {
        let datagram_len = datagram.len();
        if !self.takes_datagram(remote, datagram_len) {
            return;
        }
        // A stateless reset is recognised by the datagram's last bytes (RFC 9000 §10.3.1), kept
        // here as the packets are split off one by one.
        let mut tail = [0u8; MIN_STATELESS_RESET_LEN];
        let tail_len = datagram.len().min(MIN_STATELESS_RESET_LEN);
        tail[..tail_len].copy_from_slice(&datagram[datagram.len() - tail_len..]);
        let mut first_dcid = None;
        let mut any_processed = false;
        while !datagram.is_empty() {
            let packet = match parse_packet(&datagram, self.local_cid_len) {
                Ok(packet) => packet,
                Err(_) => {
                    self.stats.packets_dropped += 1;
                    break;
                }
            };
            let len = packet.wire_len().min(datagram.len());
            match packet {
                Packet::Protected(located) => {
                    let bytes = if len == datagram.len() {
                        std::mem::take(&mut datagram)
                    } else {
                        datagram.split_to(len)
                    };
                    // RFC 9000 §12.2, RFC9000-217: ignore coalesced packets for another
                    // connection ID.
                    if *first_dcid.get_or_insert(located.dcid) != located.dcid {
                        self.stats.packets_dropped += 1;
                    } else {
                        let from = (remote, datagram_len);
                        match self.handle_packet(now, located, ecn, bytes, from) {
                            Ok(Outcome::Processed) => any_processed = true,
                            Ok(Outcome::Dropped) => self.stats.packets_dropped += 1,
                            Err(error) => {
                                self.close_with_error(now, error);
                                return;
                            }
                        }
                    }
                }
                Packet::Retry(retry) => {
                    let retry = retry.clone();
                    self.handle_retry(&retry, &datagram[..len]);
                    datagram.advance(len);
                }
                Packet::VersionNegotiation(vn) => {
                    let vn = vn.clone();
                    self.handle_version_negotiation(&vn);
                    datagram.advance(len);
                }
                Packet::UnsupportedVersion { .. } => {
                    self.stats.packets_dropped += 1;
                    datagram.advance(len);
                }
            }
            if self.error.is_some() {
                return;
            }
        }
        // RFC 9000 §10.3.1, RFC9000-197: a datagram whose first packet does not decrypt may be a
        // stateless reset.
        if !any_processed {
            self.check_stateless_reset(now, &tail[..tail_len]);
        }
    }

    /// Counts a datagram of `len` bytes from `remote`; whether its packets are to be processed.
    fn takes_datagram(&mut self, remote: SocketAddr, len: usize) -> bool {
        self.stats.datagrams_received += 1;
        self.stats.bytes_received += len as u64;
        if !self.path.address_validated {
            self.path.amplification_received += len as u64;
        }
        match self.state {
            State::Draining { .. } | State::Drained => return false,
            State::Closing { .. } => {
                // RFC 9000 §10.2.1: answer packets in the closing period with CONNECTION_CLOSE.
                self.close_pending = true;
                return false;
            }
            _ => {}
        }
        // RFC 9000 §9: a client discards packets from an address the server did not use (its
        // preferred address is one while the client probes it, §9.6); a server that disabled
        // active migration drops those of a client that moved anyway, once the handshake is
        // confirmed (before, the client's address may not change).
        remote == self.path.remote
            || (self.side == Side::Client && self.preferred.is_probing(remote))
            || (self.side == Side::Server
                && (self.config.active_migration || !self.handshake.confirmed))
    }

    /// One packet of a datagram of `from.1` bytes from `from.0`.
    fn handle_packet(
        &mut self,
        now: Instant,
        located: ProtectedPacket,
        ecn: Option<EcnCodepoint>,
        bytes: BytesMut,
        from: (SocketAddr, usize),
    ) -> Result<Outcome, TransportError> {
        // We never advertise grease_quic_bit, so a cleared QUIC bit is invalid (RFC9000-291).
        if !located.fixed_bit {
            return Ok(Outcome::Dropped);
        }
        let Some(accepted) = self.accepted_space(&located) else {
            return Ok(Outcome::Dropped);
        };
        let id = accepted.id;
        let Some(packet) = self.decrypt(&accepted, &located, bytes)? else {
            return Ok(Outcome::Dropped);
        };
        self.on_decrypted(now, &located, &packet, accepted);
        if let Some(qlog) = &mut self.qlog {
            let exponent = self.peer_ack_delay_exponent;
            qlog.packet(
                now,
                false,
                located.ty,
                packet.pn,
                packet.length,
                &packet.payload,
                exponent,
            );
        }
        let newest = self.spaces[id as usize]
            .received
            .max()
            .is_none_or(|largest| packet.pn > largest);
        let frames = self.process_frames(now, id, &located, &packet.payload, from.0)?;
        if !frames.ack_eliciting {
            self.stats.non_eliciting_packets_received += 1;
        }
        // RFC 9000 §9.3: only the highest-numbered non-probing packet moves the peer.
        if located.ty == PacketType::OneRtt && newest && !frames.probing {
            self.on_newest_packet(now, from.0, from.1, located.dcid);
        }
        self.schedule_ack(now, id, packet.pn, ecn, frames.ack_eliciting);
        if matches!(self.state, State::Handshaking | State::Established) {
            let (peer, pto) = (self.peer_idle_timeout(), self.pto_duration());
            self.idle.on_received(now, peer, pto);
        }
        Ok(Outcome::Processed)
    }

    /// The space a packet belongs to and the keys it takes, if it is one this connection
    /// takes.
    fn accepted_space(&mut self, located: &ProtectedPacket) -> Option<Accepted> {
        // RFC 9369 §4.1, RFC9369-013: packets of another version are dropped, except the
        // client's Initials in the original version after the server switched (RFC9369-011).
        let original_initial = located.ty == PacketType::Initial
            && located.version == Some(self.versions.original_version)
            && self.versions.original_initial_keys.is_some();
        // Client: the server's first Initial in a version it offered is the server switching
        // to it (RFC 9369 §4.1); the switch holds once that packet decrypts.
        let switch = match located.version {
            Some(v) if located.ty == PacketType::Initial && self.may_switch_to(v) => {
                initial_keys(v, &self.versions.initial_keys_cid, self.side).map(|k| (v, k))
            }
            _ => None,
        };
        if located.version.is_some_and(|v| v != self.version)
            && !original_initial
            && switch.is_none()
        {
            return None;
        }
        let id = match located.ty {
            PacketType::Initial => SpaceId::Initial,
            PacketType::Handshake => SpaceId::Handshake,
            PacketType::OneRtt => SpaceId::Data,
            // RFC 9001 §4.6.2, RFC9001-018: 0-RTT packets are processed only when the early data
            // was accepted, while its keys last; RFC9001-044: a client discards them.
            PacketType::ZeroRtt if self.zero_rtt.keys().is_some() && self.side == Side::Server => {
                SpaceId::Data
            }
            PacketType::ZeroRtt => return None,
        };
        Some(Accepted {
            id,
            original_initial,
            switch,
            zero_rtt: located.ty == PacketType::ZeroRtt,
        })
    }

    /// Removes header protection and decrypts an accepted packet (RFC 9001 §5); `None` when
    /// it does not decrypt, is a duplicate, or its keys are not there yet.
    fn decrypt(
        &mut self,
        accepted: &Accepted,
        located: &ProtectedPacket,
        mut bytes: BytesMut,
    ) -> Result<Option<Decrypted>, TransportError> {
        let id = accepted.id;
        let long_keys = match (id, &accepted.switch) {
            (SpaceId::Initial, _) if accepted.original_initial => {
                self.versions.original_initial_keys.as_ref()
            }
            (SpaceId::Initial, Some((_, keys))) => Some(keys),
            _ => self.spaces[id as usize].keys.as_ref(),
        };
        let header_key = match id {
            SpaceId::Data if accepted.zero_rtt => self.zero_rtt.keys().map(|k| &*k.header),
            SpaceId::Data => self.one_rtt.as_ref().map(|k| &*k.remote_header),
            _ => long_keys.map(|k| &*k.remote.header),
        };
        let Some(header_key) = header_key else {
            if self.side == Side::Client && id != SpaceId::Initial {
                // RFC 9002 §6.2.3: Handshake or 1-RTT packets before Handshake keys mean the
                // server's Initial packets were likely lost.
                self.speed_up_handshake();
            }
            return Ok(None);
        };
        let Ok(header) = unprotect_header(&mut bytes, located.pn_offset, header_key) else {
            return Ok(None);
        };
        let space = &self.spaces[id as usize];
        let pn = header.pn.decode(space.received.max());
        if space.is_duplicate(pn) {
            return Ok(None);
        }
        let key_phase = header.first_byte & 0x04 != 0;
        let (packet_key, peer_updated_keys) = match (id, &self.one_rtt, long_keys) {
            (SpaceId::Data, _, _) if accepted.zero_rtt => match self.zero_rtt.keys() {
                Some(keys) => (&*keys.packet, false),
                None => return Ok(None),
            },
            (SpaceId::Data, Some(keys), _) => keys.remote_for(key_phase, pn),
            (_, _, Some(keys)) => (&*keys.remote.packet, false),
            _ => return Ok(None),
        };
        let length = bytes.len();
        let Ok(plaintext) = decrypt_payload(&mut bytes, header.header_len, pn, packet_key) else {
            return Ok(None);
        };
        // The payload shares the datagram's storage: received stream data is not copied again.
        let payload_len = plaintext.len();
        bytes.advance(header.header_len);
        bytes.truncate(payload_len);
        // RFC 9000 §17.2 RFC9000-299, §17.3.1 RFC9000-328: reserved bits after decryption.
        if !reserved_bits_valid(header.first_byte) {
            return Err(TransportError::new(
                TransportErrorCode::PROTOCOL_VIOLATION,
                "reserved header bits set",
            ));
        }
        Ok(Some(Decrypted {
            pn,
            key_phase,
            peer_updated_keys,
            length,
            payload: bytes.freeze(),
        }))
    }

    /// What a packet's decryption proves, before its frames: the version switched, keys
    /// updated, the server's connection ID, the client's address.
    fn on_decrypted(
        &mut self,
        now: Instant,
        located: &ProtectedPacket,
        packet: &Decrypted,
        accepted: Accepted,
    ) {
        let id = accepted.id;
        if id == SpaceId::Handshake {
            // RFC9369-011: the client sends Handshake packets only in the negotiated version,
            // so it has switched; its original-version Initials are over.
            self.versions.original_initial_keys = None;
        }
        if let Some((version, keys)) = accepted.switch {
            self.switch_version(now, version, keys);
        }
        if id == SpaceId::Data && !accepted.zero_rtt {
            self.follow_key_phase(now, packet);
        }
        self.stats.packets_received += 1;
        self.stats.zero_rtt_packets_received += u64::from(accepted.zero_rtt);
        if self.side == Side::Client && id == SpaceId::Initial && self.peer_initial_scid.is_none() {
            // RFC 9000 §7.2: the client switches to the server's chosen connection ID.
            self.cids.set_initial_remote(located.scid, None);
            self.peer_initial_scid = Some(located.scid);
        }
        self.handshake.heard_from_peer = true;
        if self.side == Side::Server && id == SpaceId::Handshake {
            // RFC 9000 §8.1: a Handshake packet proves the client received our Initial.
            // RFC 9001 §4.9.1: the server discards Initial keys at its first Handshake packet.
            self.path.address_validated = true;
            self.discard_space(SpaceId::Initial);
        }
    }

    /// A 1-RTT packet decrypted: follows a key update the peer started (RFC 9001 §6.2),
    /// keeping the old receive key for reordered packets for three PTOs (§6.5).
    fn follow_key_phase(&mut self, now: Instant, packet: &Decrypted) {
        let next_pn = self.spaces[SpaceId::Data as usize].next_pn;
        let pto = self.pto_duration();
        let Some(keys) = self.one_rtt.as_mut() else {
            return;
        };
        if packet.peer_updated_keys {
            keys.update(next_pn, packet.pn);
            keys.prev_discard_at = Some(now + 3 * pto);
        } else if packet.key_phase == keys.key_phase {
            keys.on_current_phase_packet(packet.pn, now, 3 * pto);
        }
    }

    /// Records packet `pn` of space `id` for acknowledgment, with its ECN codepoint, and
    /// decides when the acknowledgment goes out (RFC 9000 §13.2).
    fn schedule_ack(
        &mut self,
        now: Instant,
        id: SpaceId,
        pn: u64,
        ecn: Option<EcnCodepoint>,
        ack_eliciting: bool,
    ) {
        let completed_stream = self.streams.take_completed_in_packet();
        let ack_delay = self.ack_delay();
        let policy = self.ack_frequency.policy();
        // A packet that completes a stream is acknowledged at once while we wait, or are about
        // to wait, for stream credit: the peer releases the stream, and returns credit, only
        // when our acknowledgment arrives (docs/design.md rule 1; RFC 9000 §13.2.1 lets a
        // receiver acknowledge sooner than max_ack_delay). "About to": an application that has
        // used all its credit is still reading the answers that free it, and asks for a stream
        // only afterwards.
        let completes_stream_we_wait_on = completed_stream && self.streams.needs_credit();
        let space = &mut self.spaces[id as usize];
        let largest_before = space.received.max();
        space.record_received(pn, now);
        space.count_ecn(ecn);
        if !ack_eliciting {
            return;
        }
        space.unacked_eliciting += 1;
        space.largest_eliciting_received = space.largest_eliciting_received.max(Some(pn));
        // RFC 9000 §13.2.1: Initial and Handshake packets are acknowledged at once, as are
        // out-of-order packets (§13.2.1) and every second ack-eliciting packet (§13.2.2),
        // unless the peer asked for another threshold or to ignore reordering
        // (draft-ietf-quic-ack-frequency §6).
        let out_of_order =
            policy.reordering_threshold > 0 && largest_before.is_some_and(|l| pn != l + 1);
        if id != SpaceId::Data
            || completes_stream_we_wait_on
            || out_of_order
            || u64::from(space.unacked_eliciting) > policy.ack_eliciting_threshold
        {
            space.ack_immediately = true;
            space.ack_reports_gap |= out_of_order;
        } else if space.ack_deadline.is_none() {
            space.ack_deadline = Some(now + ack_delay);
        }
    }

    /// Handles the frames of one decrypted packet; returns whether any was ack-eliciting.
    fn process_frames(
        &mut self,
        now: Instant,
        id: SpaceId,
        packet: &ProtectedPacket,
        payload: &Bytes,
        remote: SocketAddr,
    ) -> Result<FramesSeen, TransportError> {
        let packet_type = packet.ty;
        let mut ack_eliciting = false;
        let mut probing = true;
        let mut any = false;
        for frame in Frames::new(payload) {
            let frame = frame?;
            any = true;
            let ty = frame.ty();
            permitted(ty, packet_type)?;
            ack_eliciting |= ty.is_ack_eliciting();
            probing &= ty.is_probing();
            self.stats.frames_received.count(ty);
            if let (Frame::Stream(stream), PacketType::ZeroRtt) = (&frame, packet_type) {
                self.streams.on_frame(now, &frame, payload)?;
                self.streams.mark_early(stream.id);
                continue;
            }
            match frame {
                Frame::Padding(_) | Frame::Ping => {}
                Frame::Ack(ack) => self.on_ack_received(now, id, &ack)?,
                Frame::Crypto { offset, data } => {
                    self.on_crypto(now, id, offset.into_inner(), data)?
                }
                Frame::ConnectionClose(close) => {
                    self.on_connection_close(now, &close);
                    return Ok(FramesSeen {
                        ack_eliciting: false,
                        probing: true,
                    });
                }
                Frame::HandshakeDone => self.on_handshake_done(ty)?,
                Frame::NewToken(token) => self.on_new_token(ty, token)?,
                Frame::Datagram(data) => self.on_datagram(ty, data)?,
                Frame::AckFrequency(frame) => self.ack_frequency.on_frame(&frame)?,
                // draft-ietf-quic-ack-frequency §5: acknowledge this packet without delay.
                Frame::ImmediateAck => self.spaces[id as usize].ack_immediately = true,
                Frame::PathChallenge(data) => self.on_path_challenge(data, remote),
                Frame::PathResponse(data) => self.on_path_response(now, data),
                Frame::NewConnectionId(frame) => self.on_new_connection_id(&frame)?,
                Frame::RetireConnectionId { sequence } => {
                    self.on_retire_connection_id(sequence.into_inner(), packet)?;
                }
                Frame::Stream(_)
                | Frame::ResetStream { .. }
                | Frame::StopSending { .. }
                | Frame::MaxStreamData { .. }
                | Frame::StreamDataBlocked { .. }
                | Frame::MaxData(_)
                | Frame::DataBlocked(_)
                | Frame::MaxStreams { .. }
                | Frame::StreamsBlocked { .. } => self.streams.on_frame(now, &frame, payload)?,
            }
        }
        // RFC 9000 §12.4, RFC9000-226: a packet with no frames.
        if !any {
            return Err(TransportError::new(
                TransportErrorCode::PROTOCOL_VIOLATION,
                "packet without frames",
            ));
        }
        Ok(FramesSeen {
            ack_eliciting,
            probing,
        })
    }

    /// NEW_CONNECTION_ID: the peer's new ID, and the retirements it asks for (RFC 9000 §19.15).
    fn on_new_connection_id(
        &mut self,
        frame: &crate::wire::NewConnectionId,
    ) -> Result<(), TransportError> {
        let retire = self.cids.on_new_connection_id(frame)?;
        self.spaces[SpaceId::Data as usize]
            .pending
            .retire_cids
            .extend(retire);
        Ok(())
    }

    /// A PATH_CHALLENGE from `remote`: answered on the path it came on (RFC 9000 §8.2.2).
    fn on_path_challenge(&mut self, data: [u8; 8], remote: SocketAddr) {
        self.path_response = Some(super::PathResponse {
            data,
            remote,
            local: self.arrived_on,
        });
    }

    /// CRYPTO data of space `id`, passed to TLS once contiguous (RFC 9001 §4.1.3).
    fn on_crypto(
        &mut self,
        now: Instant,
        id: SpaceId,
        offset: u64,
        data: &[u8],
    ) -> Result<(), TransportError> {
        let limit = self.config.crypto_buffer_size;
        let fresh = self.spaces[id as usize]
            .crypto_recv
            .insert(offset, data, limit)?;
        if !fresh && id == SpaceId::Initial && self.side == Side::Server {
            // RFC 9002 §6.2.3: the client sent its Initial data again, so it likely did not
            // receive ours.
            self.speed_up_handshake();
        }
        let mut contiguous = Vec::new();
        self.spaces[id as usize]
            .crypto_recv
            .read_contiguous(&mut contiguous);
        if id == SpaceId::Initial && !contiguous.is_empty() {
            // Server: the ClientHello waits until the version is chosen.
            if let Some(choice) = &mut self.versions.version_choice {
                let Some(hello) = choice.push(&contiguous) else {
                    return Ok(());
                };
                self.choose_version(now, &hello);
                contiguous = hello;
            }
        }
        if !contiguous.is_empty() {
            if let Err(error) = self.tls.read_hs(&contiguous) {
                return Err(self.tls_error(&error));
            }
            self.drive_tls(now);
        }
        Ok(())
    }

    /// HANDSHAKE_DONE: the client's handshake is confirmed (RFC 9001 §4.1.2).
    fn on_handshake_done(&mut self, ty: FrameType) -> Result<(), TransportError> {
        // RFC 9000 §19.20, RFC9000-384.
        if self.side == Side::Server {
            return Err(protocol_violation(ty, "HANDSHAKE_DONE from a client"));
        }
        if !self.handshake.confirmed {
            self.confirm_handshake();
        }
        Ok(())
    }

    /// NEW_TOKEN: the client keeps it for its next connection to this server (RFC 9000 §8.1.3).
    fn on_new_token(&mut self, ty: FrameType, token: &[u8]) -> Result<(), TransportError> {
        // RFC 9000 §19.7, RFC9000-352.
        if self.side == Side::Server {
            return Err(protocol_violation(ty, "NEW_TOKEN from a client"));
        }
        let token = Bytes::copy_from_slice(token);
        self.endpoint_events
            .push_back(super::EndpointEvent::NewToken(token));
        Ok(())
    }

    /// RETIRE_CONNECTION_ID: the peer stops using one of our IDs; a new one replaces it.
    fn on_retire_connection_id(
        &mut self,
        sequence: u64,
        packet: &ProtectedPacket,
    ) -> Result<(), TransportError> {
        let retired = self.cids.on_retire_connection_id(sequence, &packet.dcid)?;
        if let Some(cid) = retired {
            self.endpoint_events
                .push_back(super::EndpointEvent::RetiredCid(cid));
            self.request_cids();
        }
        Ok(())
    }

    /// CONNECTION_CLOSE from the peer: the connection drains (RFC 9000 §10.2.2).
    fn on_connection_close(&mut self, now: Instant, close: &ConnectionClose<'_>) {
        let reason = String::from_utf8_lossy(close.reason).into_owned();
        let error = match close.frame_type {
            Some(frame_type) => ConnectionError::ConnectionClosed(TransportError {
                code: TransportErrorCode(close.error_code.into_inner()),
                frame_type: Some(frame_type.into_inner()),
                reason,
            }),
            None => ConnectionError::ApplicationClosed {
                code: close.error_code,
                reason,
            },
        };
        self.enter_draining(now, error);
    }

    /// RFC 9221 §3, RFC9221-004/005: a DATAGRAM we did not allow, or larger than we allowed,
    /// is a PROTOCOL_VIOLATION.
    fn on_datagram(&mut self, ty: FrameType, data: &[u8]) -> Result<(), TransportError> {
        let Some(max) = self.config.max_datagram_frame_size else {
            return Err(protocol_violation(
                ty,
                "DATAGRAM without max_datagram_frame_size",
            ));
        };
        // The limit covers the whole frame: type, length and data.
        if data.len() + 1 + crate::wire::VarInt::try_from(data.len()).map_or(8, |v| v.size())
            > usize::from(max)
        {
            return Err(protocol_violation(
                ty,
                "DATAGRAM larger than max_datagram_frame_size",
            ));
        }
        self.datagrams.on_received(
            Bytes::copy_from_slice(data),
            self.config.datagram_receive_buffer,
        );
        self.events.push_back(Event::DatagramReceived);
        Ok(())
    }

    /// The transport error for a TLS failure: CRYPTO_ERROR carrying the alert TLS sends
    /// (RFC 9001 §4.8).
    fn tls_error(&self, error: &rustls::Error) -> TransportError {
        let code = match self.tls.alert() {
            Some(alert) => TransportErrorCode::crypto(u8::from(alert)),
            None => TransportErrorCode::PROTOCOL_VIOLATION,
        };
        TransportError::new(code, format!("TLS: {error}"))
    }

    /// A Retry from the server (RFC 9000 §17.2.5.2).
    fn handle_retry(&mut self, retry: &RetryPacket<'_>, bytes: &[u8]) {
        // RFC9000-319/320: at most one Retry, and none after hearing from the server.
        if self.side != Side::Client || self.handshake.heard_from_peer || self.retry_scid.is_some()
        {
            return;
        }
        // RFC9000-321, RFC9000-322, RFC9000-316.
        if !retry_tag_valid(self.version, &self.original_dcid, bytes)
            || retry.token.is_empty()
            || retry.scid == self.cids.remote()
        {
            return;
        }
        self.retry_scid = Some(retry.scid);
        self.cids.set_initial_remote(retry.scid, None);
        self.initial_token = Bytes::copy_from_slice(retry.token);
        // RFC 9001 §5.2: Initial keys now derive from the Retry's connection ID, those of a
        // version the server may still switch to as well (RFC 9368 §2.3). RFC 9002 §6.3:
        // Initial packets in flight are forgotten, not lost, and their CRYPTO data is sent
        // again (RFC9000-324: the same ClientHello).
        self.versions.initial_keys_cid = retry.scid;
        let space = &mut self.spaces[SpaceId::Initial as usize];
        space.keys = initial_keys(self.version, &retry.scid, Side::Client);
        self.path.bytes_in_flight -= space.forget_sent();
        space.crypto_send.resend_all();
        self.pto_count = 0;
    }

    /// A Version Negotiation packet (RFC 9000 §6.2, RFC 9368 §4).
    fn handle_version_negotiation(&mut self, vn: &VersionNegotiation<'_>) {
        // RFC 9000 §6.2: ignored once anything else was received from the server; RFC9368-017:
        // ignored when it lists the version we used.
        if self.side != Side::Client
            || self.handshake.heard_from_peer
            || self.retry_scid.is_some()
            || vn.versions().any(|v| v == self.version)
            || vn.dcid != &*self.local_cid
        {
            return;
        }
        self.error = Some(ConnectionError::VersionMismatch);
        self.events
            .push_back(Event::Closed(ConnectionError::VersionMismatch));
        self.state = State::Drained;
    }
}

/// RFC 9000 §12.4, RFC9000-227: a frame of a type the packet type does not allow.
fn permitted(ty: FrameType, packet_type: PacketType) -> Result<(), TransportError> {
    if ty.permitted_in(packet_type) {
        return Ok(());
    }
    Err(TransportError {
        code: TransportErrorCode::PROTOCOL_VIOLATION,
        frame_type: Some(ty.0),
        reason: format!("{ty:?} not permitted in {packet_type:?} packets"),
    })
}

fn protocol_violation(ty: FrameType, reason: &str) -> TransportError {
    TransportError {
        code: TransportErrorCode::PROTOCOL_VIOLATION,
        frame_type: Some(ty.0),
        reason: reason.into(),
    }
}
