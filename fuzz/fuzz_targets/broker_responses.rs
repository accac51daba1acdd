//! Whatever bytes a broker answers with, for each response the sidecar decodes, decoding
//! returns errors and never panics (see weir_wire::fuzzing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_wire::kafka_protocol::messages::ApiKey;

const DECODED: [ApiKey; 7] = [
    ApiKey::ApiVersions,
    ApiKey::Metadata,
    ApiKey::FindCoordinator,
    ApiKey::DescribeCluster,
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ShareFetch,
];

fuzz_target!(|data: &[u8]| {
    let [selector, version, rest @ ..] = data else { return };
    let key = DECODED[*selector as usize % DECODED.len()];
    let range = key.valid_versions();
    let version = range.min + (*version as i16 % (range.max - range.min + 1));
    weir_wire::fuzzing::exercise_broker_bytes(key, version, rest);
});
