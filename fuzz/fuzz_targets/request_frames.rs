//! Whatever bytes a client sends, framing, header peeking and body decoding return errors and
//! never panic (see weir_wire::fuzzing).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir_wire::fuzzing::exercise_client_bytes(data));
