//! Packet headers (RFC 9000 §17, RFC 8999 §5, RFC 9369 §3.2) and coalesced packets (§12.2).
//!
//! Receiving is two steps. [`parse_packet`] reads what is not header-protected: the form, version,
//! connection IDs, token and length, which is enough to route the packet and find where the next
//! coalesced packet starts. After [`crate::crypto::unprotect_header`] has removed header protection,
//! [`ProtectedPacket::header`] gives the complete [`Header`].

use std::fmt;
use std::ops::Range;

use bytes::BufMut;

use super::reader::{Reader, Truncated};
use super::{ConnectionId, TruncatedPacketNumber, VarInt};
use crate::{DecodeError, TransportErrorCode};

/// A QUIC version number (RFC 8999 §5.4).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version(pub u32);

impl Version {
    /// QUIC version 1 (RFC 9000).
    pub const V1: Self = Self(0x0000_0001);
    /// QUIC version 2 (RFC 9369 §3.1).
    pub const V2: Self = Self(0x6b33_43cf);
    /// The versions this implementation speaks, most preferred first.
    pub const SUPPORTED: [Self; 2] = [Self::V1, Self::V2];

    /// Whether this implementation speaks this version.
    pub fn is_supported(self) -> bool {
        Self::SUPPORTED.contains(&self)
    }

    /// Whether this is one of the versions reserved to exercise version negotiation,
    /// 0x?a?a?a?a (RFC 9000 §15).
    pub fn is_reserved(self) -> bool {
        self.0 & 0x0f0f_0f0f == 0x0a0a_0a0a
    }

    /// The two type bits of a long header for `ty` (RFC 9000 Table 5; RFC 9369 §3.2).
    fn long_type_bits(self, ty: LongType) -> u8 {
        let v1 = match ty {
            LongType::Initial => 0,
            LongType::ZeroRtt => 1,
            LongType::Handshake => 2,
            LongType::Retry => 3,
        };
        if self == Self::V2 { (v1 + 1) & 3 } else { v1 }
    }

    fn long_type(self, bits: u8) -> LongType {
        let v1_bits = if self == Self::V2 {
            (bits + 3) & 3
        } else {
            bits
        };
        match v1_bits {
            0 => LongType::Initial,
            1 => LongType::ZeroRtt,
            2 => LongType::Handshake,
            _ => LongType::Retry,
        }
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::V1 => f.write_str("v1"),
            Self::V2 => f.write_str("v2"),
            Self(other) => write!(f, "{other:#010x}"),
        }
    }
}

/// The four long header packet types (RFC 9000 §17.2, Table 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LongType {
    /// Initial (§17.2.2).
    Initial,
    /// 0-RTT (§17.2.3).
    ZeroRtt,
    /// Handshake (§17.2.4).
    Handshake,
    /// Retry (§17.2.5).
    Retry,
}

/// The packet types that carry frames (RFC 9000 §12.4, Table 3's "Pkts" column).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// Initial: long header, Initial keys.
    Initial,
    /// 0-RTT: long header, early data keys.
    ZeroRtt,
    /// Handshake: long header, handshake keys.
    Handshake,
    /// 1-RTT: short header, application keys.
    OneRtt,
}

const LONG_FORM: u8 = 0x80;
/// The QUIC bit (RFC 9000 §17.2; RFC 9287 lets a peer grease it).
const FIXED_BIT: u8 = 0x40;
const SPIN_BIT: u8 = 0x20;
const KEY_PHASE_BIT: u8 = 0x04;
/// Reserved bits, which must be 0 once protection is removed (RFC9000-299, RFC9000-328).
const LONG_RESERVED_BITS: u8 = 0x0c;
const SHORT_RESERVED_BITS: u8 = 0x18;
/// Bytes of the Length field as this implementation writes it: enough for any packet below 16 KiB.
const LENGTH_FIELD_LEN: usize = 2;

/// A complete header of a packet that carries frames, as sent, and as received once header
/// protection is removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Header<'a> {
    /// Initial (RFC 9000 §17.2.2).
    Initial {
        /// QUIC version.
        version: Version,
        /// Destination connection ID.
        dcid: ConnectionId,
        /// Source connection ID.
        scid: ConnectionId,
        /// Address validation token from a Retry or NEW_TOKEN; empty when there is none.
        token: &'a [u8],
    },
    /// 0-RTT (§17.2.3).
    ZeroRtt {
        /// QUIC version.
        version: Version,
        /// Destination connection ID.
        dcid: ConnectionId,
        /// Source connection ID.
        scid: ConnectionId,
    },
    /// Handshake (§17.2.4).
    Handshake {
        /// QUIC version.
        version: Version,
        /// Destination connection ID.
        dcid: ConnectionId,
        /// Source connection ID.
        scid: ConnectionId,
    },
    /// 1-RTT, short header (§17.3.1).
    Short {
        /// Destination connection ID.
        dcid: ConnectionId,
        /// The latency spin bit (§17.4).
        spin: bool,
        /// Which generation of 1-RTT keys protects the packet (RFC 9001 §6).
        key_phase: bool,
    },
}

impl Header<'_> {
    /// The bytes [`Header::encode`] writes with packet number `pn`, the packet number
    /// included.
    pub fn len(&self, pn: TruncatedPacketNumber) -> usize {
        let fields = match self {
            Self::Short { dcid, .. } => 1 + dcid.len(),
            Self::Initial {
                dcid, scid, token, ..
            } => {
                let token_len = VarInt::try_from(token.len()).map_or(8, VarInt::size);
                5 + 2 + dcid.len() + scid.len() + LENGTH_FIELD_LEN + token_len + token.len()
            }
            Self::ZeroRtt { dcid, scid, .. } | Self::Handshake { dcid, scid, .. } => {
                5 + 2 + dcid.len() + scid.len() + LENGTH_FIELD_LEN
            }
        };
        fields + pn.size()
    }

    /// The packet type this header introduces.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Self::Initial { .. } => PacketType::Initial,
            Self::ZeroRtt { .. } => PacketType::ZeroRtt,
            Self::Handshake { .. } => PacketType::Handshake,
            Self::Short { .. } => PacketType::OneRtt,
        }
    }

    /// Writes the header through the packet number, unprotected, and returns the packet number's
    /// offset from the start of the header.
    ///
    /// `payload_len` is what follows the packet number: frames plus the AEAD tag. For long headers
    /// it sets the Length field, always written in two bytes, so `pn.size() + payload_len` must be
    /// below 16384.
    pub fn encode<B: BufMut>(
        &self,
        pn: TruncatedPacketNumber,
        payload_len: usize,
        buf: &mut B,
    ) -> usize {
        let pn_bits = (pn.size() - 1) as u8;
        let (version, dcid, scid, token, ty) = match self {
            Self::Short {
                dcid,
                spin,
                key_phase,
            } => {
                let mut first = FIXED_BIT | pn_bits;
                if *spin {
                    first |= SPIN_BIT;
                }
                if *key_phase {
                    first |= KEY_PHASE_BIT;
                }
                buf.put_u8(first);
                buf.put_slice(dcid);
                put_pn(pn, buf);
                return self.len(pn) - pn.size();
            }
            Self::Initial {
                version,
                dcid,
                scid,
                token,
            } => (version, dcid, scid, Some(*token), LongType::Initial),
            Self::ZeroRtt {
                version,
                dcid,
                scid,
            } => (version, dcid, scid, None, LongType::ZeroRtt),
            Self::Handshake {
                version,
                dcid,
                scid,
            } => (version, dcid, scid, None, LongType::Handshake),
        };
        let length = pn.size() + payload_len;
        assert!(
            length < 1 << 14,
            "packet too long for a two-byte Length field"
        );
        buf.put_u8(LONG_FORM | FIXED_BIT | version.long_type_bits(ty) << 4 | pn_bits);
        buf.put_u32(version.0);
        buf.put_u8(dcid.len() as u8);
        buf.put_slice(dcid);
        buf.put_u8(scid.len() as u8);
        buf.put_slice(scid);
        if let Some(token) = token {
            let len = VarInt::try_from(token.len()).expect("tokens fit in a datagram");
            len.encode(buf);
            buf.put_slice(token);
        }
        buf.put_u16(0x4000 | length as u16);
        put_pn(pn, buf);
        // Where the packet number starts: the layout [`Header::len`] counts.
        self.len(pn) - pn.size()
    }
}

/// Rewrites the Length field of a long header packet that [`Header::encode`] wrote: `length`
/// covers the packet number, frames and tag, and must be below 16384. `pn_offset` is the
/// packet number's offset in `packet`.
pub fn set_long_header_length(packet: &mut [u8], pn_offset: usize, length: usize) {
    assert!(
        length < 1 << 14,
        "packet too long for a two-byte Length field"
    );
    packet[pn_offset - LENGTH_FIELD_LEN..pn_offset]
        .copy_from_slice(&(0x4000 | length as u16).to_be_bytes());
}

fn put_pn<B: BufMut>(pn: TruncatedPacketNumber, buf: &mut B) {
    buf.put_slice(&pn.value().to_be_bytes()[4 - pn.size()..]);
}

/// Whether the reserved bits of a first byte, with header protection removed, are zero, as they
/// must be (RFC 9000 §17.2 RFC9000-299, §17.3.1 RFC9000-328). Check only after the packet
/// decrypted; a non-zero value then is a PROTOCOL_VIOLATION.
pub fn reserved_bits_valid(first_byte: u8) -> bool {
    let reserved = if first_byte & LONG_FORM != 0 {
        LONG_RESERVED_BITS
    } else {
        SHORT_RESERVED_BITS
    };
    first_byte & reserved == 0
}

/// One packet read from a datagram up to its protected part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// A packet with header and packet protection: Initial, 0-RTT, Handshake or 1-RTT.
    Protected(ProtectedPacket),
    /// A Retry packet (RFC 9000 §17.2.5).
    Retry(RetryPacket<'a>),
    /// A Version Negotiation packet (RFC 9000 §17.2.1).
    VersionNegotiation(VersionNegotiation<'a>),
    /// A long header packet of a version this implementation does not speak. Its connection IDs
    /// may be up to 255 bytes (RFC 8999 §5.1), as a Version Negotiation reply must echo them
    /// (RFC9000-294).
    UnsupportedVersion {
        /// The version the sender used.
        version: Version,
        /// Destination connection ID.
        dcid: &'a [u8],
        /// Source connection ID.
        scid: &'a [u8],
    },
}

impl Packet<'_> {
    /// How many bytes of the datagram this packet takes. A packet without a Length field takes all
    /// the rest.
    pub fn wire_len(&self) -> usize {
        match self {
            Self::Protected(packet) => packet.len,
            Self::Retry(retry) => retry.len,
            Self::VersionNegotiation(vn) => vn.len,
            Self::UnsupportedVersion { .. } => usize::MAX,
        }
    }
}

/// A protected packet located in a datagram. Holds offsets, not borrows, so the caller can remove
/// protection in place afterwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtectedPacket {
    /// The packet's type.
    pub ty: PacketType,
    /// The version, for long headers.
    pub version: Option<Version>,
    /// Destination connection ID.
    pub dcid: ConnectionId,
    /// Source connection ID; empty for short headers.
    pub scid: ConnectionId,
    /// Where an Initial's token is, relative to the packet's start; empty otherwise.
    pub token: Range<usize>,
    /// Offset of the packet number field from the packet's start.
    pub pn_offset: usize,
    /// The packet's length in the datagram.
    pub len: usize,
    /// The QUIC bit as received. Zero is valid only from a peer that may grease it (RFC 9287 §3);
    /// otherwise the packet MUST be discarded (RFC9000-291, RFC9000-326).
    pub fixed_bit: bool,
}

impl ProtectedPacket {
    /// The complete header, given the packet's bytes and its first byte with header protection
    /// removed.
    pub fn header<'p>(&self, packet: &'p [u8], first_byte: u8) -> Header<'p> {
        let (dcid, scid) = (self.dcid, self.scid);
        match (self.ty, self.version) {
            (PacketType::OneRtt, _) | (_, None) => Header::Short {
                dcid,
                spin: first_byte & SPIN_BIT != 0,
                key_phase: first_byte & KEY_PHASE_BIT != 0,
            },
            (PacketType::Initial, Some(version)) => Header::Initial {
                version,
                dcid,
                scid,
                token: packet.get(self.token.clone()).unwrap_or_default(),
            },
            (PacketType::ZeroRtt, Some(version)) => Header::ZeroRtt {
                version,
                dcid,
                scid,
            },
            (PacketType::Handshake, Some(version)) => Header::Handshake {
                version,
                dcid,
                scid,
            },
        }
    }
}

/// A Retry packet (RFC 9000 §17.2.5). Verify its tag with [`crate::crypto::retry_tag_valid`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPacket<'a> {
    /// The version.
    pub version: Version,
    /// Destination connection ID: the client's source connection ID.
    pub dcid: ConnectionId,
    /// The connection ID the server chose; the client's next Initials go to it.
    pub scid: ConnectionId,
    /// The token to echo in the next Initial.
    pub token: &'a [u8],
    /// The Retry Integrity Tag (RFC 9001 §5.8).
    pub integrity_tag: [u8; 16],
    len: usize,
}

/// A Version Negotiation packet (RFC 9000 §17.2.1). Its connection IDs may be up to 255 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionNegotiation<'a> {
    /// Destination connection ID: the client's source connection ID.
    pub dcid: &'a [u8],
    /// Source connection ID: the client's destination connection ID.
    pub scid: &'a [u8],
    supported: &'a [u8],
    len: usize,
}

impl VersionNegotiation<'_> {
    /// The versions the server supports.
    pub fn versions(&self) -> impl Iterator<Item = Version> + '_ {
        self.supported
            .chunks_exact(4)
            .map(|v| Version(u32::from_be_bytes([v[0], v[1], v[2], v[3]])))
    }

    /// Writes a Version Negotiation packet listing `versions`, in reply to a packet whose
    /// connection IDs were `their_dcid` and `their_scid` (which it swaps, RFC9000-303,
    /// RFC9000-304). `unused` supplies the seven arbitrary bits of the first byte; the 0x40 bit is
    /// set as RFC9000-301 advises.
    pub fn encode<B: BufMut>(
        their_dcid: &[u8],
        their_scid: &[u8],
        versions: &[Version],
        unused: u8,
        buf: &mut B,
    ) {
        buf.put_u8(LONG_FORM | FIXED_BIT | unused);
        // RFC9000-302: the Version field of Version Negotiation is 0.
        buf.put_u32(0);
        buf.put_u8(their_scid.len() as u8);
        buf.put_slice(their_scid);
        buf.put_u8(their_dcid.len() as u8);
        buf.put_slice(their_dcid);
        for version in versions {
            buf.put_u32(version.0);
        }
    }
}

impl RetryPacket<'_> {
    /// Writes a Retry packet without its integrity tag; the caller appends the tag from
    /// [`crate::crypto::retry_tag`] computed over what this wrote. `unused` supplies the four
    /// arbitrary low bits of the first byte (RFC9000-314).
    pub fn encode_without_tag<B: BufMut>(
        version: Version,
        dcid: &ConnectionId,
        scid: &ConnectionId,
        token: &[u8],
        unused: u8,
        buf: &mut B,
    ) {
        buf.put_u8(
            LONG_FORM | FIXED_BIT | version.long_type_bits(LongType::Retry) << 4 | (unused & 0x0f),
        );
        buf.put_u32(version.0);
        buf.put_u8(dcid.len() as u8);
        buf.put_slice(dcid);
        buf.put_u8(scid.len() as u8);
        buf.put_slice(scid);
        buf.put_slice(token);
    }
}

fn discard(reason: &'static str) -> DecodeError {
    DecodeError::new(TransportErrorCode::PROTOCOL_VIOLATION, reason)
}

fn truncated(Truncated: Truncated) -> DecodeError {
    discard("packet header truncated")
}

/// Whether `datagram` starts with a long-header packet (RFC 8999 §5.1: the first bit is the
/// header form; long headers carry the handshake). Readable whatever the version.
pub fn is_long_header(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| b & LONG_FORM != 0)
}

/// Reads the packet at the start of `datagram` up to its protected part.
///
/// `local_cid_len` is the length of the connection IDs this endpoint issues, which short headers do
/// not state. Errors carry PROTOCOL_VIOLATION: such a packet is discarded, not answered.
pub fn parse_packet(datagram: &[u8], local_cid_len: usize) -> Result<Packet<'_>, DecodeError> {
    let mut r = Reader::new(datagram);
    let first = r.u8().map_err(truncated)?;
    let fixed_bit = first & FIXED_BIT != 0;
    if first & LONG_FORM == 0 {
        return parse_short(datagram, &mut r, local_cid_len, fixed_bit);
    }
    let version = Version(r.u32().map_err(truncated)?);
    let dcid = r.length_u8_prefixed().map_err(truncated)?;
    let scid = r.length_u8_prefixed().map_err(truncated)?;
    if version.0 == 0 {
        let supported = r.take_rest();
        if supported.is_empty() || supported.len() % 4 != 0 {
            return Err(discard("version list not a non-empty multiple of 4 bytes"));
        }
        return Ok(Packet::VersionNegotiation(VersionNegotiation {
            dcid,
            scid,
            supported,
            len: datagram.len(),
        }));
    }
    if !version.is_supported() {
        return Ok(Packet::UnsupportedVersion {
            version,
            dcid,
            scid,
        });
    }
    // RFC 9000 §17.2, RFC9000-293: a v1 long header with a CID longer than 20 bytes is dropped.
    let cid =
        |bytes| ConnectionId::from_slice(bytes).ok_or(discard("connection ID above 20 bytes"));
    let (dcid, scid) = (cid(dcid)?, cid(scid)?);
    let ty = match version.long_type((first >> 4) & 3) {
        LongType::Retry => return parse_retry(datagram, &mut r, version, dcid, scid),
        LongType::Initial => PacketType::Initial,
        LongType::ZeroRtt => PacketType::ZeroRtt,
        LongType::Handshake => PacketType::Handshake,
    };
    let token = if ty == PacketType::Initial {
        let token = r.length_prefixed().map_err(truncated)?;
        let start = datagram.len() - r.remaining() - token.len();
        start..start + token.len()
    } else {
        0..0
    };
    let length = r.varint().map_err(truncated)?;
    let pn_offset = datagram.len() - r.remaining();
    let len = usize::try_from(length)
        .ok()
        .and_then(|length| pn_offset.checked_add(length))
        .filter(|&len| len <= datagram.len())
        .ok_or(discard("Length field beyond the datagram"))?;
    Ok(Packet::Protected(ProtectedPacket {
        ty,
        version: Some(version),
        dcid,
        scid,
        token,
        pn_offset,
        len,
        fixed_bit,
    }))
}

/// A short header packet (RFC 9000 §17.3), its first byte read.
fn parse_short<'a>(
    datagram: &'a [u8],
    r: &mut Reader<'a>,
    local_cid_len: usize,
    fixed_bit: bool,
) -> Result<Packet<'a>, DecodeError> {
    let dcid = r.bytes(local_cid_len).map_err(truncated)?;
    Ok(Packet::Protected(ProtectedPacket {
        ty: PacketType::OneRtt,
        version: None,
        dcid: ConnectionId::from_slice(dcid).ok_or(discard("local CID length above 20"))?,
        scid: ConnectionId::EMPTY,
        token: 0..0,
        pn_offset: 1 + local_cid_len,
        len: datagram.len(),
        fixed_bit,
    }))
}

/// A Retry packet (RFC 9000 §17.2.5) after its connection IDs: the token, then the tag.
fn parse_retry<'a>(
    datagram: &'a [u8],
    r: &mut Reader<'a>,
    version: Version,
    dcid: ConnectionId,
    scid: ConnectionId,
) -> Result<Packet<'a>, DecodeError> {
    let rest = r.take_rest();
    let Some(token_len) = rest.len().checked_sub(16) else {
        return Err(discard("Retry shorter than its integrity tag"));
    };
    let (token, tag) = rest.split_at(token_len);
    Ok(Packet::Retry(RetryPacket {
        version,
        dcid,
        scid,
        token,
        integrity_tag: tag.try_into().expect("split at len - 16"),
        len: datagram.len(),
    }))
}

impl<'a> Reader<'a> {
    fn length_u8_prefixed(&mut self) -> Result<&'a [u8], Truncated> {
        let len = self.u8()?;
        self.bytes(usize::from(len))
    }
}

/// The packets coalesced in one datagram (RFC 9000 §12.2, RFC9000-214), each with its offset.
/// Stops after the first packet that cannot be parsed, yielding that error.
#[derive(Clone, Debug)]
pub struct CoalescedPackets<'a> {
    datagram: &'a [u8],
    offset: usize,
    local_cid_len: usize,
}

impl<'a> CoalescedPackets<'a> {
    /// The packets of `datagram`; see [`parse_packet`] for `local_cid_len`.
    pub fn new(datagram: &'a [u8], local_cid_len: usize) -> Self {
        Self {
            datagram,
            offset: 0,
            local_cid_len,
        }
    }
}

impl<'a> Iterator for CoalescedPackets<'a> {
    type Item = Result<(usize, Packet<'a>), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.datagram.get(self.offset..).filter(|r| !r.is_empty())?;
        let start = self.offset;
        match parse_packet(rest, self.local_cid_len) {
            Ok(packet) => {
                self.offset = start
                    .saturating_add(packet.wire_len())
                    .min(self.datagram.len());
                Some(Ok((start, packet)))
            }
            Err(err) => {
                self.offset = self.datagram.len();
                Some(Err(err))
            }
        }
    }
}
