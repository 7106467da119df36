//! The Retry Integrity Tag (RFC 9001 §5.8, RFC 9369 §3.3.3).

use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::constant_time::verify_slices_are_equal;

use crate::wire::{ConnectionId, Version};

/// The fixed AEAD key and nonce of the Retry integrity tag for `version`.
fn retry_key_nonce(version: Version) -> Option<([u8; 16], [u8; 12])> {
    match version {
        // RFC 9001 §5.8.
        Version::V1 => Some((
            [
                0xbe, 0x0c, 0x69, 0x0b, 0x9f, 0x66, 0x57, 0x5a, 0x1d, 0x76, 0x6b, 0x54, 0xe3, 0x68,
                0xc8, 0x4e,
            ],
            [
                0x46, 0x15, 0x99, 0xd3, 0x5d, 0x63, 0x2b, 0xf2, 0x23, 0x98, 0x25, 0xbb,
            ],
        )),
        // RFC 9369 §3.3.3.
        Version::V2 => Some((
            [
                0x8f, 0xb4, 0xb0, 0x1b, 0x56, 0xac, 0x48, 0xe2, 0x60, 0xfb, 0xcb, 0xce, 0xad, 0x7c,
                0xcc, 0x92,
            ],
            [
                0xd8, 0x69, 0x69, 0xbc, 0x2d, 0x7c, 0x6d, 0x99, 0x90, 0xef, 0xb0, 0x4a,
            ],
        )),
        _ => None,
    }
}

/// The Retry Integrity Tag over `retry_without_tag` (the Retry packet up to its tag), for a
/// client whose first Initial went to `original_dcid` (RFC 9001 §5.8): AES-128-GCM with a fixed
/// key, sealing nothing, with the Retry Pseudo-Packet as associated data. `None` for an
/// unsupported version.
pub fn retry_tag(
    version: Version,
    original_dcid: &ConnectionId,
    retry_without_tag: &[u8],
) -> Option<[u8; 16]> {
    let (key, nonce) = retry_key_nonce(version)?;
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &key).expect("16-byte key"));
    let mut pseudo_packet = Vec::with_capacity(1 + original_dcid.len() + retry_without_tag.len());
    pseudo_packet.push(original_dcid.len() as u8);
    pseudo_packet.extend_from_slice(original_dcid);
    pseudo_packet.extend_from_slice(retry_without_tag);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&pseudo_packet),
            &mut [],
        )
        .expect("sealing an empty plaintext cannot fail");
    Some(tag.as_ref().try_into().expect("AES-GCM tags are 16 bytes"))
}

/// Whether a received Retry packet's tag is valid for the connection attempt to `original_dcid`
/// (RFC 9000 §17.2.5.2, RFC9000-321: a Retry whose tag fails is discarded). Compared in constant
/// time.
pub fn retry_tag_valid(version: Version, original_dcid: &ConnectionId, retry: &[u8]) -> bool {
    let Some(split) = retry.len().checked_sub(16) else {
        return false;
    };
    let (without_tag, tag) = retry.split_at(split);
    retry_tag(version, original_dcid, without_tag)
        .is_some_and(|expected| verify_slices_are_equal(&expected, tag).is_ok())
}
