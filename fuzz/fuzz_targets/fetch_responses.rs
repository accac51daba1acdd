//! Whatever bytes a broker sends as a Fetch response, the in-place scanner the sidecar runs on
//! every one of them returns errors and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_wire::kafka_protocol::messages::ApiKey;

fuzz_target!(|data: &[u8]| {
    let [version, rest @ ..] = data else { return };
    let range = ApiKey::Fetch.valid_versions();
    weir_wire::fuzzing::exercise_fetch_response(range.min + (*version as i16 % (range.max - range.min + 1)), rest);
});
