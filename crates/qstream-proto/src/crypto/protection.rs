//! Applying and removing packet and header protection (RFC 9001 §5.3, §5.4).

use rustls::quic::{HeaderProtectionKey, PacketKey};

use super::{SAMPLE_LEN, TAG_LEN};
use crate::wire::TruncatedPacketNumber;
use crate::{DecodeError, TransportErrorCode};

/// The longest packet number field (RFC 9000 §17.1); the sample starts 4 bytes after the packet
/// number's offset whatever its actual length (RFC 9001 §5.4.2).
const PN_MAX_LEN: usize = 4;

fn discard(reason: &'static str) -> DecodeError {
    DecodeError::new(TransportErrorCode::PROTOCOL_VIOLATION, reason)
}

/// Protects a packet in place (RFC 9001 §5.3, §5.4.1).
///
/// `packet` holds the header as [`crate::wire::Header::encode`] wrote it (unprotected, packet number
/// at `pn_offset`), then the plaintext frames, then [`TAG_LEN`] bytes of room for the tag. `pn` is
/// the full packet number. The frames must be long enough for a header protection sample:
/// `packet.len() >= pn_offset + 4 + SAMPLE_LEN` (RFC 9001 §5.4.2); pad with PADDING otherwise.
/// The header and packet keys come separately because a key update changes only the packet key
/// (RFC 9001 §6).
pub fn protect(
    packet: &mut [u8],
    pn_offset: usize,
    pn: u64,
    header_key: &dyn HeaderProtectionKey,
    packet_key: &dyn PacketKey,
) -> Result<(), rustls::Error> {
    let pn_len = usize::from(packet.first().copied().unwrap_or_default() & 0x03) + 1;
    let header_len = pn_offset + pn_len;
    if packet.len() < (pn_offset + PN_MAX_LEN + SAMPLE_LEN).max(header_len + TAG_LEN) {
        return Err(rustls::Error::EncryptError);
    }
    let (header, rest) = packet.split_at_mut(header_len);
    let (payload, tag_room) = rest.split_at_mut(rest.len() - TAG_LEN);
    let tag = packet_key.encrypt_in_place(pn, header, payload)?;
    tag_room.copy_from_slice(tag.as_ref());

    let mut sample = [0; SAMPLE_LEN];
    sample.copy_from_slice(&packet[pn_offset + PN_MAX_LEN..][..SAMPLE_LEN]);
    let (first, rest) = packet.split_first_mut().expect("checked non-empty");
    header_key.encrypt_in_place(&sample, first, &mut rest[pn_offset - 1..][..pn_len])
}

/// A packet's first byte and packet number with header protection removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnprotectedHeader {
    /// The first byte, unmasked: reserved bits, key phase and packet number length are readable.
    pub first_byte: u8,
    /// The truncated packet number.
    pub pn: TruncatedPacketNumber,
    /// The header's length including the packet number: where the ciphertext starts.
    pub header_len: usize,
}

/// Removes header protection from one packet in place (RFC 9001 §5.4.1). `packet` is exactly the
/// packet, as located by [`crate::wire::parse_packet`].
///
/// A packet too short to hold a sample is discarded (RFC 9001 §5.4.2, RFC9001-037).
pub fn unprotect_header(
    packet: &mut [u8],
    pn_offset: usize,
    key: &dyn HeaderProtectionKey,
) -> Result<UnprotectedHeader, DecodeError> {
    let sample_start = pn_offset + PN_MAX_LEN;
    let Some(sample) = packet.get(sample_start..sample_start + SAMPLE_LEN) else {
        return Err(discard("packet too short for a header protection sample"));
    };
    let mut sample_copy = [0; SAMPLE_LEN];
    sample_copy.copy_from_slice(sample);
    let (first, rest) = packet.split_first_mut().expect("at least a sample long");
    let pn_bytes = &mut rest[pn_offset - 1..][..PN_MAX_LEN];
    key.decrypt_in_place(&sample_copy, first, pn_bytes)
        .map_err(|_| discard("header protection failed"))?;
    let pn_len = usize::from(*first & 0x03) + 1;
    let pn = TruncatedPacketNumber::from_wire(&pn_bytes[..pn_len]).expect("1 to 4 bytes");
    Ok(UnprotectedHeader {
        first_byte: *first,
        pn,
        header_len: pn_offset + pn_len,
    })
}

/// Decrypts a packet's payload in place (RFC 9001 §5.3) and returns the plaintext frames.
///
/// `packet` is the whole packet after [`unprotect_header`]; the header up to `header_len` is the
/// associated data. A packet that fails authentication is discarded (RFC 9001 §5.3): the error
/// says so, and the connection goes on.
pub fn decrypt_payload<'p>(
    packet: &'p mut [u8],
    header_len: usize,
    pn: u64,
    key: &dyn PacketKey,
) -> Result<&'p [u8], DecodeError> {
    if packet.len() < header_len + TAG_LEN {
        return Err(discard("packet shorter than its AEAD tag"));
    }
    let (header, payload) = packet.split_at_mut(header_len);
    key.decrypt_in_place(pn, header, payload)
        .map_err(|_| discard("packet failed authentication"))
}
