//! The QUIC wire format: everything that is encoded, decoded or protected on the wire.
//!
//! Decoders take untrusted bytes and return [`crate::DecodeError`]s carrying the RFC 9000 §20 code
//! the input maps to; they never panic, and never allocate more than their input's length.
//! Encoders write into a caller's [`bytes::BufMut`] and allocate nothing themselves.

mod ack;
mod cid;
mod frame;
mod header;
mod packet_number;
mod payload;
mod reader;
mod reset_token;
mod space;
mod stream_id;
mod transport_params;
mod varint;

pub use ack::{Ack, AckRanges, EcnCounts};
pub use cid::ConnectionId;
pub use frame::{
    AckFrequency, ConnectionClose, Frame, FrameType, Frames, MAX_STREAM_COUNT, NewConnectionId,
    Stream,
};
pub use header::{
    CoalescedPackets, Header, LongType, Packet, PacketType, ProtectedPacket, RetryPacket, Version,
    VersionNegotiation, is_long_header, parse_packet, reserved_bits_valid, set_long_header_length,
};
pub use packet_number::TruncatedPacketNumber;
pub(crate) use payload::Payload;
pub use reset_token::StatelessResetToken;
pub(crate) use space::SpaceId;
pub use stream_id::{Dir, StreamId};
pub use transport_params::{PreferredAddress, TransportParameters, VersionInformation};
pub use varint::{VarInt, VarIntBoundsExceeded};
