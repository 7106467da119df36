//! Frames (RFC 9000 §12.4 and §19, DATAGRAM from RFC 9221 §4, ACK_FREQUENCY and IMMEDIATE_ACK
//! from draft-ietf-quic-ack-frequency §4 and §5).
//!
//! [`Frames`] decodes a decrypted packet payload from untrusted bytes without allocating; data
//! carried by STREAM, CRYPTO, DATAGRAM and others is borrowed from the payload. [`Frame::encode`]
//! writes into a caller's buffer.

use std::fmt;

use bytes::BufMut;

use super::StatelessResetToken;
use super::ack::Ack;
use super::reader::{Reader, Truncated};
use super::varint::size_of_u62;
use super::{ConnectionId, Dir, PacketType, StreamId, VarInt};
use crate::{DecodeError, TransportErrorCode};

/// A frame type (RFC 9000 §12.4, Table 3; RFC 9221 §4).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrameType(pub u64);

impl FrameType {
    /// PADDING (§19.1).
    pub const PADDING: Self = Self(0x00);
    /// PING (§19.2).
    pub const PING: Self = Self(0x01);
    /// ACK without ECN counts (§19.3).
    pub const ACK: Self = Self(0x02);
    /// ACK with ECN counts (§19.3).
    pub const ACK_ECN: Self = Self(0x03);
    /// RESET_STREAM (§19.4).
    pub const RESET_STREAM: Self = Self(0x04);
    /// STOP_SENDING (§19.5).
    pub const STOP_SENDING: Self = Self(0x05);
    /// CRYPTO (§19.6).
    pub const CRYPTO: Self = Self(0x06);
    /// NEW_TOKEN (§19.7).
    pub const NEW_TOKEN: Self = Self(0x07);
    /// The first STREAM type (§19.8); 0x08..=0x0f carry the OFF, LEN and FIN bits.
    pub const STREAM: Self = Self(0x08);
    /// MAX_DATA (§19.9).
    pub const MAX_DATA: Self = Self(0x10);
    /// MAX_STREAM_DATA (§19.10).
    pub const MAX_STREAM_DATA: Self = Self(0x11);
    /// MAX_STREAMS for bidirectional streams (§19.11).
    pub const MAX_STREAMS_BIDI: Self = Self(0x12);
    /// MAX_STREAMS for unidirectional streams (§19.11).
    pub const MAX_STREAMS_UNI: Self = Self(0x13);
    /// DATA_BLOCKED (§19.12).
    pub const DATA_BLOCKED: Self = Self(0x14);
    /// STREAM_DATA_BLOCKED (§19.13).
    pub const STREAM_DATA_BLOCKED: Self = Self(0x15);
    /// STREAMS_BLOCKED for bidirectional streams (§19.14).
    pub const STREAMS_BLOCKED_BIDI: Self = Self(0x16);
    /// STREAMS_BLOCKED for unidirectional streams (§19.14).
    pub const STREAMS_BLOCKED_UNI: Self = Self(0x17);
    /// NEW_CONNECTION_ID (§19.15).
    pub const NEW_CONNECTION_ID: Self = Self(0x18);
    /// RETIRE_CONNECTION_ID (§19.16).
    pub const RETIRE_CONNECTION_ID: Self = Self(0x19);
    /// PATH_CHALLENGE (§19.17).
    pub const PATH_CHALLENGE: Self = Self(0x1a);
    /// PATH_RESPONSE (§19.18).
    pub const PATH_RESPONSE: Self = Self(0x1b);
    /// CONNECTION_CLOSE signalling a transport error (§19.19).
    pub const CONNECTION_CLOSE: Self = Self(0x1c);
    /// CONNECTION_CLOSE signalling an application error (§19.19).
    pub const APPLICATION_CLOSE: Self = Self(0x1d);
    /// HANDSHAKE_DONE (§19.20).
    pub const HANDSHAKE_DONE: Self = Self(0x1e);
    /// IMMEDIATE_ACK (draft-ietf-quic-ack-frequency §5).
    pub const IMMEDIATE_ACK: Self = Self(0x1f);
    /// DATAGRAM without a length: the data runs to the end of the packet (RFC 9221 §4).
    pub const DATAGRAM: Self = Self(0x30);
    /// DATAGRAM with a length field (RFC 9221 §4).
    pub const DATAGRAM_LEN: Self = Self(0x31);
    /// ACK_FREQUENCY (draft-ietf-quic-ack-frequency §4).
    pub const ACK_FREQUENCY: Self = Self(0xaf);

    fn is_stream(self) -> bool {
        (0x08..=0x0f).contains(&self.0)
    }

    /// Whether a frame of this type may appear in a packet of type `packet` (RFC 9000 §12.4,
    /// Table 3; RFC 9221 §4 for DATAGRAM). Receiving one where it is not permitted is a
    /// PROTOCOL_VIOLATION (RFC9000-227). Unknown types are permitted nowhere.
    pub fn permitted_in(self, packet: PacketType) -> bool {
        use PacketType::{Handshake, Initial, OneRtt, ZeroRtt};
        let (initial_handshake, zero_rtt) = match self {
            // Table 3 "IH01".
            Self::PADDING | Self::PING | Self::CONNECTION_CLOSE => (true, true),
            // "IH_1".
            Self::ACK | Self::ACK_ECN | Self::CRYPTO => (true, false),
            // "___1".
            Self::NEW_TOKEN | Self::PATH_RESPONSE | Self::HANDSHAKE_DONE => (false, false),
            // "__01": everything else defined, including DATAGRAM (RFC 9221 §4, RFC9221-011)
            // and the application CONNECTION_CLOSE ("ih01": only 0x1c in Initial/Handshake).
            // ACK_FREQUENCY and IMMEDIATE_ACK: 0-RTT and 1-RTT packets only
            // (draft-ietf-quic-ack-frequency §4, §5).
            ty if ty.is_stream()
                || (0x04..=0x1d).contains(&ty.0)
                || ty.is_datagram()
                || matches!(ty, Self::ACK_FREQUENCY | Self::IMMEDIATE_ACK) =>
            {
                (false, true)
            }
            _ => return false,
        };
        match packet {
            Initial | Handshake => initial_handshake,
            ZeroRtt => zero_rtt,
            OneRtt => true,
        }
    }

    /// Whether receiving this frame obliges the receiver to send an acknowledgment: every frame
    /// but ACK, PADDING and CONNECTION_CLOSE (RFC 9000 §13.2, Table 3 "N").
    pub fn is_ack_eliciting(self) -> bool {
        !matches!(
            self,
            Self::PADDING
                | Self::ACK
                | Self::ACK_ECN
                | Self::CONNECTION_CLOSE
                | Self::APPLICATION_CLOSE
        )
    }

    /// Whether this frame may be sent to probe a new path (RFC 9000 §9.1, Table 3 "P").
    pub fn is_probing(self) -> bool {
        matches!(
            self,
            Self::PADDING | Self::NEW_CONNECTION_ID | Self::PATH_CHALLENGE | Self::PATH_RESPONSE
        )
    }

    fn is_datagram(self) -> bool {
        matches!(self, Self::DATAGRAM | Self::DATAGRAM_LEN)
    }

    /// The RFC's name for this type, when it is a known one.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x00 => "PADDING",
            0x01 => "PING",
            0x02 | 0x03 => "ACK",
            0x04 => "RESET_STREAM",
            0x05 => "STOP_SENDING",
            0x06 => "CRYPTO",
            0x07 => "NEW_TOKEN",
            0x08..=0x0f => "STREAM",
            0x10 => "MAX_DATA",
            0x11 => "MAX_STREAM_DATA",
            0x12 | 0x13 => "MAX_STREAMS",
            0x14 => "DATA_BLOCKED",
            0x15 => "STREAM_DATA_BLOCKED",
            0x16 | 0x17 => "STREAMS_BLOCKED",
            0x18 => "NEW_CONNECTION_ID",
            0x19 => "RETIRE_CONNECTION_ID",
            0x1a => "PATH_CHALLENGE",
            0x1b => "PATH_RESPONSE",
            0x1c | 0x1d => "CONNECTION_CLOSE",
            0x1e => "HANDSHAKE_DONE",
            0x1f => "IMMEDIATE_ACK",
            0x30 | 0x31 => "DATAGRAM",
            0xaf => "ACK_FREQUENCY",
            _ => return None,
        })
    }
}

impl fmt::Debug for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}({:#x})", self.0),
            None => write!(f, "unknown({:#x})", self.0),
        }
    }
}

/// The largest stream count a MAX_STREAMS or STREAMS_BLOCKED frame may carry: 2^60
/// (RFC 9000 §19.11, §19.14), so that every stream ID stays encodable.
pub const MAX_STREAM_COUNT: u64 = 1 << 60;

/// The offset bit of a STREAM frame type (RFC 9000 §19.8).
const STREAM_OFF: u64 = 0x04;
/// The length bit of a STREAM frame type.
const STREAM_LEN: u64 = 0x02;
/// The FIN bit of a STREAM frame type.
const STREAM_FIN: u64 = 0x01;

/// One decoded frame. Byte fields borrow from the packet payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A run of this many PADDING bytes (§19.1).
    Padding(usize),
    /// PING (§19.2).
    Ping,
    /// ACK (§19.3).
    Ack(Ack<'a>),
    /// RESET_STREAM (§19.4): the sender abandons the stream at `final_size`.
    ResetStream {
        /// The stream.
        id: StreamId,
        /// The application's reason.
        error_code: VarInt,
        /// The stream's final size in bytes.
        final_size: VarInt,
    },
    /// STOP_SENDING (§19.5): the receiver discards incoming data on the stream.
    StopSending {
        /// The stream.
        id: StreamId,
        /// The application's reason.
        error_code: VarInt,
    },
    /// CRYPTO (§19.6): handshake bytes.
    Crypto {
        /// Offset in the crypto stream of this encryption level.
        offset: VarInt,
        /// The bytes.
        data: &'a [u8],
    },
    /// NEW_TOKEN (§19.7): a token for a future connection's Initial; never empty.
    NewToken(&'a [u8]),
    /// STREAM (§19.8).
    Stream(Stream<'a>),
    /// MAX_DATA (§19.9): the connection-level flow control limit.
    MaxData(VarInt),
    /// MAX_STREAM_DATA (§19.10).
    MaxStreamData {
        /// The stream.
        id: StreamId,
        /// The stream-level flow control limit.
        max: VarInt,
    },
    /// MAX_STREAMS (§19.11): the peer may open this many streams of `dir` in total.
    MaxStreams {
        /// Which kind of stream.
        dir: Dir,
        /// Cumulative count, at most [`MAX_STREAM_COUNT`].
        count: VarInt,
    },
    /// DATA_BLOCKED (§19.12): the sender is blocked at this connection limit.
    DataBlocked(VarInt),
    /// STREAM_DATA_BLOCKED (§19.13).
    StreamDataBlocked {
        /// The stream.
        id: StreamId,
        /// The stream limit the sender is blocked at.
        limit: VarInt,
    },
    /// STREAMS_BLOCKED (§19.14): the sender wants to open a stream beyond this limit.
    StreamsBlocked {
        /// Which kind of stream.
        dir: Dir,
        /// The stream limit at the time, at most [`MAX_STREAM_COUNT`].
        limit: VarInt,
    },
    /// NEW_CONNECTION_ID (§19.15).
    NewConnectionId(NewConnectionId),
    /// RETIRE_CONNECTION_ID (§19.16).
    RetireConnectionId {
        /// Sequence number of the retired connection ID.
        sequence: VarInt,
    },
    /// PATH_CHALLENGE (§19.17).
    PathChallenge([u8; 8]),
    /// PATH_RESPONSE (§19.18).
    PathResponse([u8; 8]),
    /// CONNECTION_CLOSE (§19.19).
    ConnectionClose(ConnectionClose<'a>),
    /// HANDSHAKE_DONE (§19.20).
    HandshakeDone,
    /// DATAGRAM (RFC 9221 §4): unreliable application data.
    Datagram(&'a [u8]),
    /// ACK_FREQUENCY (draft-ietf-quic-ack-frequency §4): how the sender asks to be
    /// acknowledged.
    AckFrequency(AckFrequency),
    /// IMMEDIATE_ACK (draft-ietf-quic-ack-frequency §5): acknowledge without delay.
    ImmediateAck,
}

/// An ACK_FREQUENCY frame (draft-ietf-quic-ack-frequency §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AckFrequency {
    /// Orders the requests: one with a sequence number no larger than an earlier one's is
    /// stale.
    pub sequence: VarInt,
    /// How many ack-eliciting packets may arrive before an acknowledgment is sent at once.
    pub ack_eliciting_threshold: VarInt,
    /// The longest an acknowledgment may be delayed, in microseconds; at least the
    /// recipient's min_ack_delay.
    pub request_max_ack_delay: VarInt,
    /// How far out of order a packet may arrive before an acknowledgment is sent at once; 0
    /// means never for reordering alone.
    pub reordering_threshold: VarInt,
}

/// A STREAM frame (RFC 9000 §19.8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream<'a> {
    /// The stream.
    pub id: StreamId,
    /// Offset of `data` in the stream.
    pub offset: VarInt,
    /// Whether this frame ends the stream: `offset + data.len()` is the final size.
    pub fin: bool,
    /// The bytes.
    pub data: &'a [u8],
}

/// A NEW_CONNECTION_ID frame (RFC 9000 §19.15).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewConnectionId {
    /// Sequence number assigned by the sender.
    pub sequence: VarInt,
    /// The peer should retire connection IDs with lower sequence numbers.
    pub retire_prior_to: VarInt,
    /// The new connection ID: 1 to 20 bytes.
    pub id: ConnectionId,
    /// The token that a stateless reset for this connection ID carries.
    pub reset_token: StatelessResetToken,
}

/// A CONNECTION_CLOSE frame (RFC 9000 §19.19).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionClose<'a> {
    /// A transport error code (type 0x1c) or an application's code (type 0x1d).
    pub error_code: VarInt,
    /// `Some` for a transport close (0x1c): the type of the frame that triggered the error, or 0
    /// when unknown. `None` for an application close (0x1d).
    pub frame_type: Option<VarInt>,
    /// Human-readable reason, meant to be UTF-8 (RFC9000-382) but not trusted to be.
    pub reason: &'a [u8],
}

impl Stream<'_> {
    /// This frame's type, as [`Frame::encode`] writes it.
    pub fn ty(&self) -> FrameType {
        let off = if self.offset == VarInt::ZERO {
            0
        } else {
            STREAM_OFF
        };
        FrameType(0x08 | off | STREAM_LEN | if self.fin { STREAM_FIN } else { 0 })
    }
}

impl Frame<'_> {
    /// This frame's type, as [`Frame::encode`] writes it.
    pub fn ty(&self) -> FrameType {
        FrameType(match self {
            Frame::Padding(_) => 0x00,
            Frame::Ping => 0x01,
            Frame::Ack(ack) => {
                if ack.ecn.is_some() {
                    0x03
                } else {
                    0x02
                }
            }
            Frame::ResetStream { .. } => 0x04,
            Frame::StopSending { .. } => 0x05,
            Frame::Crypto { .. } => 0x06,
            Frame::NewToken(_) => 0x07,
            Frame::Stream(s) => return s.ty(),
            Frame::MaxData(_) => 0x10,
            Frame::MaxStreamData { .. } => 0x11,
            Frame::MaxStreams { dir: Dir::Bi, .. } => 0x12,
            Frame::MaxStreams { dir: Dir::Uni, .. } => 0x13,
            Frame::DataBlocked(_) => 0x14,
            Frame::StreamDataBlocked { .. } => 0x15,
            Frame::StreamsBlocked { dir: Dir::Bi, .. } => 0x16,
            Frame::StreamsBlocked { dir: Dir::Uni, .. } => 0x17,
            Frame::NewConnectionId(_) => 0x18,
            Frame::RetireConnectionId { .. } => 0x19,
            Frame::PathChallenge(_) => 0x1a,
            Frame::PathResponse(_) => 0x1b,
            Frame::ConnectionClose(close) => {
                if close.frame_type.is_some() {
                    0x1c
                } else {
                    0x1d
                }
            }
            Frame::HandshakeDone => 0x1e,
            Frame::Datagram(_) => 0x31,
            Frame::AckFrequency(_) => 0xaf,
            Frame::ImmediateAck => 0x1f,
        })
    }

    /// Writes the frame with its type in the shortest encoding (RFC9000-229). STREAM and DATAGRAM
    /// frames are written with an explicit length, so any frame may follow them.
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        let ty = self.ty();
        if let Frame::Padding(len) = self {
            buf.put_bytes(0, *len);
            return;
        }
        put_varint(buf, ty.0);
        match self {
            Frame::Padding(_) | Frame::Ping | Frame::HandshakeDone | Frame::ImmediateAck => {}
            Frame::Ack(ack) => ack.encode_fields(buf),
            Frame::ResetStream {
                id,
                error_code,
                final_size,
            } => {
                VarInt::from(*id).encode(buf);
                error_code.encode(buf);
                final_size.encode(buf);
            }
            Frame::StopSending { id, error_code } => {
                VarInt::from(*id).encode(buf);
                error_code.encode(buf);
            }
            Frame::Crypto { offset, data } => {
                offset.encode(buf);
                put_length_prefixed(buf, data);
            }
            Frame::NewToken(token) => put_length_prefixed(buf, token),
            Frame::Stream(stream) => {
                VarInt::from(stream.id).encode(buf);
                if stream.offset != VarInt::ZERO {
                    stream.offset.encode(buf);
                }
                put_length_prefixed(buf, stream.data);
            }
            Frame::MaxData(max) | Frame::DataBlocked(max) => max.encode(buf),
            Frame::MaxStreamData { id, max: value }
            | Frame::StreamDataBlocked { id, limit: value } => {
                VarInt::from(*id).encode(buf);
                value.encode(buf);
            }
            Frame::MaxStreams { count: value, .. } | Frame::StreamsBlocked { limit: value, .. } => {
                value.encode(buf)
            }
            Frame::NewConnectionId(frame) => {
                frame.sequence.encode(buf);
                frame.retire_prior_to.encode(buf);
                buf.put_u8(frame.id.len() as u8);
                buf.put_slice(&frame.id);
                buf.put_slice(frame.reset_token.as_ref());
            }
            Frame::RetireConnectionId { sequence } => sequence.encode(buf),
            Frame::PathChallenge(data) | Frame::PathResponse(data) => buf.put_slice(data),
            Frame::ConnectionClose(close) => {
                close.error_code.encode(buf);
                if let Some(frame_type) = close.frame_type {
                    frame_type.encode(buf);
                }
                put_length_prefixed(buf, close.reason);
            }
            Frame::Datagram(data) => put_length_prefixed(buf, data),
            Frame::AckFrequency(frame) => {
                frame.sequence.encode(buf);
                frame.ack_eliciting_threshold.encode(buf);
                frame.request_max_ack_delay.encode(buf);
                frame.reordering_threshold.encode(buf);
            }
        }
    }
}

/// Writes a value known to be at most 2^62-1 as a varint.
fn put_varint<B: BufMut>(buf: &mut B, value: u64) {
    VarInt::from_u64(value)
        .expect("frame field values are at most 2^62-1 by construction")
        .encode(buf);
}

fn put_length_prefixed<B: BufMut>(buf: &mut B, bytes: &[u8]) {
    put_varint(buf, bytes.len() as u64);
    buf.put_slice(bytes);
}

/// Decodes the frames of a decrypted packet payload, in order.
///
/// Yields each frame or the first error, after which it yields nothing more. Nothing is allocated;
/// every length is checked against the bytes actually present.
#[derive(Clone, Debug)]
pub struct Frames<'a> {
    reader: Reader<'a>,
    failed: bool,
}

impl<'a> Frames<'a> {
    /// Frames in `payload`.
    pub fn new(payload: &'a [u8]) -> Self {
        Self {
            reader: Reader::new(payload),
            failed: false,
        }
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.reader.is_empty() {
            return None;
        }
        let result = decode_frame(&mut self.reader);
        self.failed = result.is_err();
        Some(result)
    }
}

impl std::iter::FusedIterator for Frames<'_> {}

fn decode_frame<'a>(r: &mut Reader<'a>) -> Result<Frame<'a>, DecodeError> {
    let before = r.remaining();
    let ty = r
        .varint()
        .map_err(|Truncated| DecodeError::frame(0, "frame type truncated"))?;
    // RFC 9000 §12.4, RFC9000-229: a frame type MUST use the shortest possible encoding.
    if before - r.remaining() != size_of_u62(ty) {
        return Err(DecodeError::in_frame(
            TransportErrorCode::PROTOCOL_VIOLATION,
            ty,
            "frame type not minimally encoded",
        ));
    }
    decode_body(FrameType(ty), r).map_err(|err| match err {
        BodyErrorKind::Truncated => DecodeError::frame(ty, "frame truncated"),
        BodyErrorKind::Invalid(reason) => DecodeError::frame(ty, reason),
    })
}

/// Why a frame body failed to decode; the caller adds the frame type.
pub(super) enum BodyErrorKind {
    Truncated,
    /// A FRAME_ENCODING_ERROR with this reason.
    Invalid(&'static str),
}

impl From<Truncated> for BodyErrorKind {
    fn from(Truncated: Truncated) -> Self {
        Self::Truncated
    }
}

fn invalid(reason: &'static str) -> BodyErrorKind {
    BodyErrorKind::Invalid(reason)
}

fn varint(r: &mut Reader<'_>) -> Result<VarInt, Truncated> {
    r.varint()
        .map(|v| VarInt::from_u64(v).expect("decoded varints are at most 2^62-1"))
}

fn stream_id(r: &mut Reader<'_>) -> Result<StreamId, Truncated> {
    varint(r).map(StreamId::from)
}

/// A count of streams, at most 2^60 (RFC 9000 §19.11 RFC9000-361, §19.14 RFC9000-369).
fn stream_count(r: &mut Reader<'_>) -> Result<VarInt, BodyErrorKind> {
    let count = varint(r)?;
    if count.into_inner() > MAX_STREAM_COUNT {
        return Err(invalid("stream count exceeds 2^60"));
    }
    Ok(count)
}

/// Checks that `offset + len` stays within 2^62-1 (RFC 9000 §19.6 RFC9000-348, §19.8
/// RFC9000-354).
fn check_end(offset: VarInt, len: usize) -> Result<(), BodyErrorKind> {
    match offset.into_inner().checked_add(len as u64) {
        Some(end) if end <= VarInt::MAX.into_inner() => Ok(()),
        _ => Err(invalid("data extends beyond offset 2^62-1")),
    }
}

fn decode_body<'a>(ty: FrameType, r: &mut Reader<'a>) -> Result<Frame<'a>, BodyErrorKind> {
    Ok(match ty {
        FrameType::PADDING => {
            // The whole run at once: a padded Initial carries hundreds of PADDING frames.
            let run = r.rest().iter().take_while(|&&b| b == 0).count();
            r.bytes(run)?;
            Frame::Padding(1 + run)
        }
        FrameType::PING => Frame::Ping,
        FrameType::ACK | FrameType::ACK_ECN => {
            Frame::Ack(Ack::decode_fields(r, ty == FrameType::ACK_ECN)?)
        }
        FrameType::RESET_STREAM => Frame::ResetStream {
            id: stream_id(r)?,
            error_code: varint(r)?,
            final_size: varint(r)?,
        },
        FrameType::STOP_SENDING => Frame::StopSending {
            id: stream_id(r)?,
            error_code: varint(r)?,
        },
        FrameType::CRYPTO => {
            let offset = varint(r)?;
            let data = r.length_prefixed()?;
            check_end(offset, data.len())?;
            Frame::Crypto { offset, data }
        }
        FrameType::NEW_TOKEN => decode_new_token(r)?,
        ty if ty.is_stream() => decode_stream(ty, r)?,
        FrameType::MAX_DATA => Frame::MaxData(varint(r)?),
        FrameType::MAX_STREAM_DATA => Frame::MaxStreamData {
            id: stream_id(r)?,
            max: varint(r)?,
        },
        FrameType::MAX_STREAMS_BIDI | FrameType::MAX_STREAMS_UNI => Frame::MaxStreams {
            dir: if ty == FrameType::MAX_STREAMS_BIDI {
                Dir::Bi
            } else {
                Dir::Uni
            },
            count: stream_count(r)?,
        },
        FrameType::DATA_BLOCKED => Frame::DataBlocked(varint(r)?),
        FrameType::STREAM_DATA_BLOCKED => Frame::StreamDataBlocked {
            id: stream_id(r)?,
            limit: varint(r)?,
        },
        FrameType::STREAMS_BLOCKED_BIDI | FrameType::STREAMS_BLOCKED_UNI => Frame::StreamsBlocked {
            dir: if ty == FrameType::STREAMS_BLOCKED_BIDI {
                Dir::Bi
            } else {
                Dir::Uni
            },
            limit: stream_count(r)?,
        },
        FrameType::NEW_CONNECTION_ID => decode_new_connection_id(r)?,
        FrameType::RETIRE_CONNECTION_ID => Frame::RetireConnectionId {
            sequence: varint(r)?,
        },
        FrameType::PATH_CHALLENGE => Frame::PathChallenge(r.array()?),
        FrameType::PATH_RESPONSE => Frame::PathResponse(r.array()?),
        FrameType::CONNECTION_CLOSE | FrameType::APPLICATION_CLOSE => decode_close(ty, r)?,
        FrameType::HANDSHAKE_DONE => Frame::HandshakeDone,
        FrameType::DATAGRAM => Frame::Datagram(r.take_rest()),
        FrameType::DATAGRAM_LEN => Frame::Datagram(r.length_prefixed()?),
        FrameType::ACK_FREQUENCY => Frame::AckFrequency(AckFrequency {
            sequence: varint(r)?,
            ack_eliciting_threshold: varint(r)?,
            request_max_ack_delay: varint(r)?,
            reordering_threshold: varint(r)?,
        }),
        FrameType::IMMEDIATE_ACK => Frame::ImmediateAck,
        // RFC 9000 §12.4, RFC9000-228: an unknown frame type is a FRAME_ENCODING_ERROR.
        _ => return Err(invalid("unknown frame type")),
    })
}

/// A STREAM frame's fields after its type (RFC 9000 §19.8).
fn decode_stream<'a>(ty: FrameType, r: &mut Reader<'a>) -> Result<Frame<'a>, BodyErrorKind> {
    let id = stream_id(r)?;
    let offset = if ty.0 & STREAM_OFF != 0 {
        varint(r)?
    } else {
        VarInt::ZERO
    };
    let data = if ty.0 & STREAM_LEN != 0 {
        r.length_prefixed()?
    } else {
        r.take_rest()
    };
    check_end(offset, data.len())?;
    Ok(Frame::Stream(Stream {
        id,
        offset,
        fin: ty.0 & STREAM_FIN != 0,
        data,
    }))
}

/// A NEW_CONNECTION_ID frame's fields (RFC 9000 §19.15).
fn decode_new_connection_id<'a>(r: &mut Reader<'a>) -> Result<Frame<'a>, BodyErrorKind> {
    let sequence = varint(r)?;
    let retire_prior_to = varint(r)?;
    let len = usize::from(r.u8()?);
    // RFC 9000 §19.15, RFC9000-370: lengths outside 1..=20 are a FRAME_ENCODING_ERROR.
    if !(1..=ConnectionId::MAX_LEN).contains(&len) {
        return Err(invalid("connection ID length outside 1..=20"));
    }
    let id = ConnectionId::from_slice(r.bytes(len)?).expect("length checked above");
    let reset_token = StatelessResetToken::from(r.array::<16>()?);
    // RFC9000-375: Retire Prior To greater than Sequence Number.
    if retire_prior_to > sequence {
        return Err(invalid("retire_prior_to exceeds sequence number"));
    }
    Ok(Frame::NewConnectionId(NewConnectionId {
        sequence,
        retire_prior_to,
        id,
        reset_token,
    }))
}

/// A CONNECTION_CLOSE frame's fields, of either type (RFC 9000 §19.19).
fn decode_close<'a>(ty: FrameType, r: &mut Reader<'a>) -> Result<Frame<'a>, BodyErrorKind> {
    let error_code = varint(r)?;
    let frame_type = if ty == FrameType::CONNECTION_CLOSE {
        Some(varint(r)?)
    } else {
        None
    };
    Ok(Frame::ConnectionClose(ConnectionClose {
        error_code,
        frame_type,
        reason: r.length_prefixed()?,
    }))
}

/// A NEW_TOKEN frame's token (RFC 9000 §19.7).
fn decode_new_token<'a>(r: &mut Reader<'a>) -> Result<Frame<'a>, BodyErrorKind> {
    let token = r.length_prefixed()?;
    // RFC 9000 §19.7, RFC9000-350: an empty token is a FRAME_ENCODING_ERROR.
    if token.is_empty() {
        return Err(invalid("empty NEW_TOKEN token"));
    }
    Ok(Frame::NewToken(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use PacketType::{Handshake, Initial, OneRtt, ZeroRtt};

    /// RFC 9000 §12.4, Table 3 "Pkts" column (and RFC 9221 §4 for DATAGRAM).
    #[test]
    fn table_3_permitted_packet_types() {
        let table: [(u64, &str); 22] = [
            (0x00, "IH01"),
            (0x01, "IH01"),
            (0x02, "IH_1"),
            (0x03, "IH_1"),
            (0x04, "__01"),
            (0x05, "__01"),
            (0x06, "IH_1"),
            (0x07, "___1"),
            (0x0b, "__01"),
            (0x10, "__01"),
            (0x11, "__01"),
            (0x13, "__01"),
            (0x14, "__01"),
            (0x15, "__01"),
            (0x16, "__01"),
            (0x18, "__01"),
            (0x19, "__01"),
            (0x1a, "__01"),
            (0x1b, "___1"),
            (0x1c, "IH01"),
            (0x1d, "__01"),
            (0x1e, "___1"),
        ];
        for (ty, pkts) in table {
            let ty = FrameType(ty);
            let expect: Vec<bool> = pkts.chars().map(|c| c != '_').collect();
            let got = [Initial, Handshake, ZeroRtt, OneRtt].map(|p| ty.permitted_in(p));
            assert_eq!(got.to_vec(), expect, "{ty:?}");
        }
        // DATAGRAM (RFC 9221 §4), IMMEDIATE_ACK and ACK_FREQUENCY
        // (draft-ietf-quic-ack-frequency §4, §5).
        for ty in [0x30, 0x31, 0x1f, 0xaf] {
            let got = [Initial, Handshake, ZeroRtt, OneRtt].map(|p| FrameType(ty).permitted_in(p));
            assert_eq!(got, [false, false, true, true]);
        }
        assert!(!FrameType(0x20).permitted_in(OneRtt));
    }

    #[test]
    fn stream_frame_without_length_runs_to_end() {
        // Type 0x0d: OFF and FIN, no LEN.
        let bytes = [0x0d, 0x04, 0x40, 0x80, b'a', b'b', b'c'];
        let frames: Vec<_> = Frames::new(&bytes).collect();
        assert_eq!(
            frames,
            vec![Ok(Frame::Stream(Stream {
                id: StreamId::from(VarInt::from_u32(4)),
                offset: VarInt::from_u32(0x80),
                fin: true,
                data: b"abc",
            }))]
        );
    }

    #[test]
    fn padding_runs_collapse() {
        let bytes = [0, 0, 0, 1, 0];
        let frames: Vec<_> = Frames::new(&bytes).map(Result::unwrap).collect();
        assert_eq!(
            frames,
            vec![Frame::Padding(3), Frame::Ping, Frame::Padding(1)]
        );
    }
}
