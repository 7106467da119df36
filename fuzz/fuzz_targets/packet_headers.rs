//! Splits an arbitrary datagram into coalesced packets and removes protection from each one with
//! Initial keys for its connection ID, as a server does with the first datagram of a connection.
//! The first input byte picks the length of our connection IDs for short headers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qstream_proto::Side;
use qstream_proto::crypto::{decrypt_payload, initial_keys, retry_tag_valid, unprotect_header};
use qstream_proto::wire::{CoalescedPackets, Frames, Packet, Version, reserved_bits_valid};

fuzz_target!(|input: &[u8]| {
    let Some((&cid_len, datagram)) = input.split_first() else {
        return;
    };
    let cid_len = usize::from(cid_len % 21);
    let mut datagram = datagram.to_vec();
    let located: Vec<_> = CoalescedPackets::new(&datagram, cid_len)
        .filter_map(Result::ok)
        .map(|(offset, packet)| match packet {
            Packet::Protected(protected) => Some((offset, protected)),
            Packet::Retry(retry) => {
                let _ = retry_tag_valid(retry.version, &retry.dcid, &datagram[offset..]);
                None
            }
            Packet::VersionNegotiation(vn) => {
                assert!(vn.versions().count() > 0);
                None
            }
            Packet::UnsupportedVersion { .. } => None,
        })
        .collect();
    for (offset, packet) in located.into_iter().flatten() {
        let version = packet.version.unwrap_or(Version::V1);
        let keys = initial_keys(version, &packet.dcid, Side::Server).expect("supported version");
        let bytes = &mut datagram[offset..offset + packet.len];
        let Ok(unprotected) = unprotect_header(bytes, packet.pn_offset, &*keys.remote.header) else {
            continue;
        };
        let _ = reserved_bits_valid(unprotected.first_byte);
        let _ = packet.header(bytes, unprotected.first_byte);
        let pn = unprotected.pn.decode(None);
        if let Ok(payload) =
            decrypt_payload(bytes, unprotected.header_len, pn, &*keys.remote.packet)
        {
            Frames::new(payload).for_each(drop);
        }
    }
});
