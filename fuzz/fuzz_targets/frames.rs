//! Decodes arbitrary bytes as a packet payload. Every frame that decodes must re-encode to bytes
//! that decode to the same frame, and the permission table must answer for its type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qstream_proto::wire::{Frames, PacketType};

fuzz_target!(|payload: &[u8]| {
    for frame in Frames::new(payload) {
        let Ok(frame) = frame else { break };
        for packet in [
            PacketType::Initial,
            PacketType::Handshake,
            PacketType::ZeroRtt,
            PacketType::OneRtt,
        ] {
            let _ = frame.ty().permitted_in(packet);
        }
        let mut encoded = Vec::new();
        frame.encode(&mut encoded);
        let mut again = Frames::new(&encoded);
        assert_eq!(again.next(), Some(Ok(frame.clone())), "re-decoding {frame:?}");
        assert_eq!(again.next(), None);
    }
});
