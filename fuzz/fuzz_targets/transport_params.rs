//! Decodes arbitrary bytes as transport parameters from either side. Whatever decodes must
//! re-encode to parameters that decode to the same values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qstream_proto::Side;
use qstream_proto::wire::TransportParameters;

fuzz_target!(|input: &[u8]| {
    for side in [Side::Client, Side::Server] {
        if let Ok(params) = TransportParameters::decode(input, side) {
            let mut encoded = Vec::new();
            params.encode(&mut encoded);
            assert_eq!(TransportParameters::decode(&encoded, side), Ok(params));
        }
    }
});
