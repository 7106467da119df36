//! Transport parameters (RFC 9000 §7.4 and §18), with version_information (RFC 9368 §3),
//! max_datagram_frame_size (RFC 9221 §3), grease_quic_bit (RFC 9287 §3) and min_ack_delay
//! (draft-ietf-quic-ack-frequency §3).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use bytes::BufMut;

use super::StatelessResetToken;
use super::frame::MAX_STREAM_COUNT;
use super::reader::{Reader, Truncated};
use super::{ConnectionId, VarInt, Version};
use crate::{DecodeError, Side, TransportErrorCode};

/// The parameters one endpoint declares to its peer during the handshake. Fields absent from the
/// wire take the RFC's defaults ([`Default`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportParameters {
    /// 0x00, server only: the Destination Connection ID of the client's first Initial.
    pub original_destination_connection_id: Option<ConnectionId>,
    /// 0x01: idle timeout in milliseconds; 0 disables it.
    pub max_idle_timeout: VarInt,
    /// 0x02, server only: the stateless reset token for the handshake connection ID.
    pub stateless_reset_token: Option<StatelessResetToken>,
    /// 0x03: the largest UDP payload the endpoint is willing to receive; at least 1200.
    pub max_udp_payload_size: VarInt,
    /// 0x04: initial connection-level flow control limit.
    pub initial_max_data: VarInt,
    /// 0x05: initial limit for bidirectional streams the sender of these parameters opens.
    pub initial_max_stream_data_bidi_local: VarInt,
    /// 0x06: initial limit for bidirectional streams the peer opens.
    pub initial_max_stream_data_bidi_remote: VarInt,
    /// 0x07: initial limit for unidirectional streams the peer opens.
    pub initial_max_stream_data_uni: VarInt,
    /// 0x08: how many bidirectional streams the peer may open; at most 2^60.
    pub initial_max_streams_bidi: VarInt,
    /// 0x09: how many unidirectional streams the peer may open; at most 2^60.
    pub initial_max_streams_uni: VarInt,
    /// 0x0a: the exponent scaling ACK Delay fields; at most 20.
    pub ack_delay_exponent: u8,
    /// 0x0b: the most the sender delays acknowledgments, in milliseconds; below 2^14.
    pub max_ack_delay: VarInt,
    /// 0x0c: the sender does not support connection migration.
    pub disable_active_migration: bool,
    /// 0x0d, server only: an address to migrate to after the handshake.
    pub preferred_address: Option<PreferredAddress>,
    /// 0x0e: how many connection IDs the sender will store; at least 2.
    pub active_connection_id_limit: VarInt,
    /// 0x0f: the Source Connection ID of the sender's first Initial.
    pub initial_source_connection_id: Option<ConnectionId>,
    /// 0x10, server only: the Source Connection ID of the server's Retry.
    pub retry_source_connection_id: Option<ConnectionId>,
    /// 0x11: the versions the sender chose and supports (RFC 9368 §3).
    pub version_information: Option<VersionInformation>,
    /// 0x20: the largest DATAGRAM frame the sender accepts; absent means none (RFC 9221 §3).
    pub max_datagram_frame_size: Option<VarInt>,
    /// 0x2ab2: the sender accepts packets with the QUIC bit cleared (RFC 9287 §3).
    pub grease_quic_bit: bool,
    /// 0xff04de1b: the least time, in microseconds, the sender is willing to delay an
    /// acknowledgment; present, the sender accepts ACK_FREQUENCY and IMMEDIATE_ACK frames
    /// (draft-ietf-quic-ack-frequency §3). At most max_ack_delay.
    pub min_ack_delay: Option<VarInt>,
}

impl Default for TransportParameters {
    /// The values an endpoint assumes for parameters its peer did not send (RFC 9000 §18.2).
    fn default() -> Self {
        Self {
            original_destination_connection_id: None,
            max_idle_timeout: VarInt::ZERO,
            stateless_reset_token: None,
            max_udp_payload_size: VarInt::from_u32(65527),
            initial_max_data: VarInt::ZERO,
            initial_max_stream_data_bidi_local: VarInt::ZERO,
            initial_max_stream_data_bidi_remote: VarInt::ZERO,
            initial_max_stream_data_uni: VarInt::ZERO,
            initial_max_streams_bidi: VarInt::ZERO,
            initial_max_streams_uni: VarInt::ZERO,
            ack_delay_exponent: 3,
            max_ack_delay: VarInt::from_u32(25),
            disable_active_migration: false,
            preferred_address: None,
            active_connection_id_limit: VarInt::from_u32(2),
            initial_source_connection_id: None,
            retry_source_connection_id: None,
            version_information: None,
            max_datagram_frame_size: None,
            grease_quic_bit: false,
            min_ack_delay: None,
        }
    }
}

/// The server's preferred_address (RFC 9000 §18.2, Figure 22).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreferredAddress {
    /// IPv4 address and port; `None` when the server sent all zeros.
    pub ipv4: Option<SocketAddrV4>,
    /// IPv6 address and port; `None` when the server sent all zeros.
    pub ipv6: Option<SocketAddrV6>,
    /// The connection ID to use at that address: 1 to 20 bytes (RFC9000-337).
    pub connection_id: ConnectionId,
    /// Its stateless reset token.
    pub stateless_reset_token: StatelessResetToken,
}

/// The version_information parameter (RFC 9368 §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionInformation {
    /// The version in use for the connection.
    pub chosen: Version,
    /// The versions the sender supports, most preferred first; includes `chosen` (RFC9368-016).
    pub available: Vec<Version>,
}

/// Transport parameter IDs (RFC 9000 §18.2, Table 6).
mod id {
    pub(super) const ORIGINAL_DCID: u64 = 0x00;
    pub(super) const MAX_IDLE_TIMEOUT: u64 = 0x01;
    pub(super) const STATELESS_RESET_TOKEN: u64 = 0x02;
    pub(super) const MAX_UDP_PAYLOAD_SIZE: u64 = 0x03;
    pub(super) const INITIAL_MAX_DATA: u64 = 0x04;
    pub(super) const INITIAL_MAX_STREAM_DATA_BIDI_LOCAL: u64 = 0x05;
    pub(super) const INITIAL_MAX_STREAM_DATA_BIDI_REMOTE: u64 = 0x06;
    pub(super) const INITIAL_MAX_STREAM_DATA_UNI: u64 = 0x07;
    pub(super) const INITIAL_MAX_STREAMS_BIDI: u64 = 0x08;
    pub(super) const INITIAL_MAX_STREAMS_UNI: u64 = 0x09;
    pub(super) const ACK_DELAY_EXPONENT: u64 = 0x0a;
    pub(super) const MAX_ACK_DELAY: u64 = 0x0b;
    pub(super) const DISABLE_ACTIVE_MIGRATION: u64 = 0x0c;
    pub(super) const PREFERRED_ADDRESS: u64 = 0x0d;
    pub(super) const ACTIVE_CONNECTION_ID_LIMIT: u64 = 0x0e;
    pub(super) const INITIAL_SCID: u64 = 0x0f;
    pub(super) const RETRY_SCID: u64 = 0x10;
    pub(super) const VERSION_INFORMATION: u64 = 0x11;
    pub(super) const MAX_DATAGRAM_FRAME_SIZE: u64 = 0x20;
    pub(super) const GREASE_QUIC_BIT: u64 = 0x2ab2;
    /// draft-ietf-quic-ack-frequency §3 (the provisional codepoint peers use).
    pub(super) const MIN_ACK_DELAY: u64 = 0xff04_de1b;
}

/// The preferred_address parameter (RFC 9000 §18.2): both addresses (unspecified when absent),
/// the connection ID and its reset token.
fn encode_preferred_address<B: BufMut>(address: &PreferredAddress, buf: &mut B) {
    put_param_header(
        buf,
        id::PREFERRED_ADDRESS,
        4 + 2 + 16 + 2 + 1 + address.connection_id.len() + 16,
    );
    let ipv4 = address
        .ipv4
        .unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    buf.put_slice(&ipv4.ip().octets());
    buf.put_u16(ipv4.port());
    let ipv6 = address
        .ipv6
        .unwrap_or(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0));
    buf.put_slice(&ipv6.ip().octets());
    buf.put_u16(ipv6.port());
    buf.put_u8(address.connection_id.len() as u8);
    buf.put_slice(&address.connection_id);
    buf.put_slice(address.stateless_reset_token.as_ref());
}

fn error(reason: &'static str) -> DecodeError {
    DecodeError::new(TransportErrorCode::TRANSPORT_PARAMETER_ERROR, reason)
}

impl TransportParameters {
    /// The integer parameters: id, value and the value that goes unsent (RFC 9000 §18.2).
    fn integer_params(&self) -> [(u64, VarInt, VarInt); 11] {
        let defaults = Self::default();
        [
            (
                id::MAX_IDLE_TIMEOUT,
                self.max_idle_timeout,
                defaults.max_idle_timeout,
            ),
            (
                id::MAX_UDP_PAYLOAD_SIZE,
                self.max_udp_payload_size,
                defaults.max_udp_payload_size,
            ),
            (id::INITIAL_MAX_DATA, self.initial_max_data, VarInt::ZERO),
            (
                id::INITIAL_MAX_STREAM_DATA_BIDI_LOCAL,
                self.initial_max_stream_data_bidi_local,
                VarInt::ZERO,
            ),
            (
                id::INITIAL_MAX_STREAM_DATA_BIDI_REMOTE,
                self.initial_max_stream_data_bidi_remote,
                VarInt::ZERO,
            ),
            (
                id::INITIAL_MAX_STREAM_DATA_UNI,
                self.initial_max_stream_data_uni,
                VarInt::ZERO,
            ),
            (
                id::INITIAL_MAX_STREAMS_BIDI,
                self.initial_max_streams_bidi,
                VarInt::ZERO,
            ),
            (
                id::INITIAL_MAX_STREAMS_UNI,
                self.initial_max_streams_uni,
                VarInt::ZERO,
            ),
            (
                id::ACK_DELAY_EXPONENT,
                VarInt::from(self.ack_delay_exponent),
                VarInt::from(defaults.ack_delay_exponent),
            ),
            (
                id::MAX_ACK_DELAY,
                self.max_ack_delay,
                defaults.max_ack_delay,
            ),
            (
                id::ACTIVE_CONNECTION_ID_LIMIT,
                self.active_connection_id_limit,
                defaults.active_connection_id_limit,
            ),
        ]
    }

    /// Writes every parameter that differs from its default, in the encoding of RFC 9000 §18.
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        for (param, value, default) in self.integer_params() {
            if value != default {
                put_param_header(buf, param, value.size());
                value.encode(buf);
            }
        }
        for (param, value) in [
            (id::MAX_DATAGRAM_FRAME_SIZE, self.max_datagram_frame_size),
            (id::MIN_ACK_DELAY, self.min_ack_delay),
        ] {
            if let Some(value) = value {
                put_param_header(buf, param, value.size());
                value.encode(buf);
            }
        }
        for (param, cid) in [
            (id::ORIGINAL_DCID, &self.original_destination_connection_id),
            (id::INITIAL_SCID, &self.initial_source_connection_id),
            (id::RETRY_SCID, &self.retry_source_connection_id),
        ] {
            if let Some(cid) = cid {
                put_param_header(buf, param, cid.len());
                buf.put_slice(cid);
            }
        }
        if let Some(token) = &self.stateless_reset_token {
            put_param_header(buf, id::STATELESS_RESET_TOKEN, 16);
            buf.put_slice(token.as_ref());
        }
        for (param, flag) in [
            (id::DISABLE_ACTIVE_MIGRATION, self.disable_active_migration),
            (id::GREASE_QUIC_BIT, self.grease_quic_bit),
        ] {
            if flag {
                put_param_header(buf, param, 0);
            }
        }
        if let Some(address) = &self.preferred_address {
            encode_preferred_address(address, buf);
        }
        if let Some(info) = &self.version_information {
            put_param_header(buf, id::VERSION_INFORMATION, 4 * (1 + info.available.len()));
            buf.put_u32(info.chosen.0);
            for version in &info.available {
                buf.put_u32(version.0);
            }
        }
    }

    /// Decodes the parameters `sender` sent, validating every value (RFC9000-077), rejecting
    /// duplicates (RFC9000-079) and server-only parameters from a client (RFC9000-342), and
    /// ignoring parameters it does not know (RFC9000-089). Every error is a
    /// TRANSPORT_PARAMETER_ERROR. Allocation is bounded by the input's length.
    pub fn decode(bytes: &[u8], sender: Side) -> Result<Self, DecodeError> {
        let mut params = Self::default();
        let mut seen = 0u32;
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            let id = r
                .varint()
                .map_err(|Truncated| error("parameter ID truncated"))?;
            let value = r
                .length_prefixed()
                .map_err(|Truncated| error("parameter value truncated"))?;
            let Some(bit) = seen_bit(id) else {
                continue;
            };
            if seen & bit != 0 {
                return Err(error("duplicate transport parameter"));
            }
            seen |= bit;
            params.decode_one(id, value, sender)?;
        }
        // draft-ietf-quic-ack-frequency §3: min_ack_delay above max_ack_delay (in
        // milliseconds) is a TRANSPORT_PARAMETER_ERROR.
        if params
            .min_ack_delay
            .is_some_and(|min| min.into_inner() > params.max_ack_delay.into_inner() * 1000)
        {
            return Err(error("min_ack_delay above max_ack_delay"));
        }
        Ok(params)
    }

    fn decode_one(&mut self, param: u64, value: &[u8], sender: Side) -> Result<(), DecodeError> {
        let server_only = matches!(
            param,
            id::ORIGINAL_DCID | id::STATELESS_RESET_TOKEN | id::PREFERRED_ADDRESS | id::RETRY_SCID
        );
        // RFC 9000 §18.2, RFC9000-341/342.
        if server_only && sender == Side::Client {
            return Err(error("server-only transport parameter sent by a client"));
        }
        let mut r = Reader::new(value);
        match param {
            id::ORIGINAL_DCID => self.original_destination_connection_id = Some(cid(value)?),
            id::INITIAL_SCID => self.initial_source_connection_id = Some(cid(value)?),
            id::RETRY_SCID => self.retry_source_connection_id = Some(cid(value)?),
            id::STATELESS_RESET_TOKEN => {
                self.stateless_reset_token = Some(StatelessResetToken::from(
                    <[u8; 16]>::try_from(value).map_err(|_| error("reset token not 16 bytes"))?,
                ));
            }
            id::DISABLE_ACTIVE_MIGRATION | id::GREASE_QUIC_BIT => {
                // RFC 9287 §3, RFC9287-002: a non-empty grease_quic_bit is an error; likewise
                // disable_active_migration is a zero-length parameter (§18.2).
                if !value.is_empty() {
                    return Err(error("flag parameter with a value"));
                }
                if param == id::GREASE_QUIC_BIT {
                    self.grease_quic_bit = true;
                } else {
                    self.disable_active_migration = true;
                }
            }
            id::PREFERRED_ADDRESS => self.preferred_address = Some(preferred_address(value)?),
            id::VERSION_INFORMATION => {
                self.version_information = Some(version_information(value, sender)?);
            }
            _ => self.decode_integer(param, &mut r)?,
        }
        Ok(())
    }

    /// An integer parameter's value (RFC 9000 §18.2), checked against its allowed range.
    fn decode_integer(&mut self, param: u64, r: &mut Reader<'_>) -> Result<(), DecodeError> {
        let int = single_varint(r)?;
        let n = int.into_inner();
        match param {
            id::MAX_IDLE_TIMEOUT => self.max_idle_timeout = int,
            id::MAX_UDP_PAYLOAD_SIZE if n < 1200 => {
                return Err(error("max_udp_payload_size below 1200"));
            }
            id::MAX_UDP_PAYLOAD_SIZE => self.max_udp_payload_size = int,
            id::INITIAL_MAX_DATA => self.initial_max_data = int,
            id::INITIAL_MAX_STREAM_DATA_BIDI_LOCAL => self.initial_max_stream_data_bidi_local = int,
            id::INITIAL_MAX_STREAM_DATA_BIDI_REMOTE => {
                self.initial_max_stream_data_bidi_remote = int
            }
            id::INITIAL_MAX_STREAM_DATA_UNI => self.initial_max_stream_data_uni = int,
            // RFC 9000 §4.6, RFC9000-027: stream limits above 2^60.
            id::INITIAL_MAX_STREAMS_BIDI | id::INITIAL_MAX_STREAMS_UNI if n > MAX_STREAM_COUNT => {
                return Err(error("stream limit above 2^60"));
            }
            id::INITIAL_MAX_STREAMS_BIDI => self.initial_max_streams_bidi = int,
            id::INITIAL_MAX_STREAMS_UNI => self.initial_max_streams_uni = int,
            id::ACK_DELAY_EXPONENT if n > 20 => {
                return Err(error("ack_delay_exponent above 20"));
            }
            id::ACK_DELAY_EXPONENT => self.ack_delay_exponent = n as u8,
            id::MAX_ACK_DELAY if n >= 1 << 14 => {
                return Err(error("max_ack_delay of 2^14 ms or more"));
            }
            id::MAX_ACK_DELAY => self.max_ack_delay = int,
            // RFC9000-339/340: active_connection_id_limit below 2.
            id::ACTIVE_CONNECTION_ID_LIMIT if n < 2 => {
                return Err(error("active_connection_id_limit below 2"));
            }
            id::ACTIVE_CONNECTION_ID_LIMIT => self.active_connection_id_limit = int,
            id::MAX_DATAGRAM_FRAME_SIZE => self.max_datagram_frame_size = Some(int),
            id::MIN_ACK_DELAY => self.min_ack_delay = Some(int),
            // RFC9000-089: parameters this implementation does not know are ignored.
            _ => {}
        }
        Ok(())
    }
}

/// A bit per known parameter, for duplicate detection; `None` for unknown (ignored) IDs.
fn seen_bit(param: u64) -> Option<u32> {
    match param {
        0x00..=0x11 => Some(1 << param),
        id::MAX_DATAGRAM_FRAME_SIZE => Some(1 << 20),
        id::GREASE_QUIC_BIT => Some(1 << 21),
        id::MIN_ACK_DELAY => Some(1 << 22),
        _ => None,
    }
}

fn put_param_header<B: BufMut>(buf: &mut B, id: u64, len: usize) {
    VarInt::from_u64(id)
        .expect("parameter IDs are small")
        .encode(buf);
    VarInt::try_from(len)
        .expect("parameters are small")
        .encode(buf);
}

fn cid(value: &[u8]) -> Result<ConnectionId, DecodeError> {
    ConnectionId::from_slice(value).ok_or(error("connection ID above 20 bytes"))
}

/// A parameter whose value is exactly one varint.
fn single_varint(r: &mut Reader<'_>) -> Result<VarInt, DecodeError> {
    let value = r
        .varint()
        .map_err(|Truncated| error("integer parameter truncated"))?;
    if !r.is_empty() {
        return Err(error("integer parameter has trailing bytes"));
    }
    Ok(VarInt::from_u64(value).expect("decoded varints are at most 2^62-1"))
}

fn preferred_address(value: &[u8]) -> Result<PreferredAddress, DecodeError> {
    let mut r = Reader::new(value);
    let mut read = || -> Result<PreferredAddress, Truncated> {
        let ipv4 = SocketAddrV4::new(Ipv4Addr::from(r.array::<4>()?), r.u16()?);
        let ipv6 = SocketAddrV6::new(Ipv6Addr::from(r.array::<16>()?), r.u16()?, 0, 0);
        let cid_len = usize::from(r.u8()?);
        let cid = r.bytes(cid_len)?;
        let token = r.array::<16>()?;
        Ok(PreferredAddress {
            ipv4: (!ipv4.ip().is_unspecified() || ipv4.port() != 0).then_some(ipv4),
            ipv6: (!ipv6.ip().is_unspecified() || ipv6.port() != 0).then_some(ipv6),
            // Checked below: 1..=20 bytes.
            connection_id: ConnectionId::from_slice(cid).unwrap_or_default(),
            stateless_reset_token: StatelessResetToken::from(token),
        })
    };
    let address = read().map_err(|Truncated| error("preferred_address truncated"))?;
    if !r.is_empty() {
        return Err(error("preferred_address has trailing bytes"));
    }
    // RFC 9000 §18.2, RFC9000-337/338: a zero-length (or over-long) connection ID.
    let cid_len = value[4 + 2 + 16 + 2];
    if !(1..=ConnectionId::MAX_LEN as u8).contains(&cid_len) {
        return Err(error("preferred_address connection ID not 1 to 20 bytes"));
    }
    Ok(address)
}

/// RFC 9368 §4, RFC9368-020/021/022: the length is a non-zero multiple of four, no version is zero,
/// and a client's chosen version is among its available versions.
fn version_information(value: &[u8], sender: Side) -> Result<VersionInformation, DecodeError> {
    if value.is_empty() || value.len() % 4 != 0 {
        return Err(error(
            "version_information not a non-zero multiple of 4 bytes",
        ));
    }
    let mut versions = value
        .chunks_exact(4)
        .map(|v| Version(u32::from_be_bytes([v[0], v[1], v[2], v[3]])));
    let chosen = versions.next().expect("at least four bytes");
    let available: Vec<Version> = versions.collect();
    if chosen.0 == 0 || available.iter().any(|v| v.0 == 0) {
        return Err(error("version_information lists version 0"));
    }
    if sender == Side::Client && !available.contains(&chosen) {
        return Err(error(
            "client's chosen version not among its available versions",
        ));
    }
    Ok(VersionInformation { chosen, available })
}
