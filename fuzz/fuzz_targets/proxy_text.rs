//! The proxy's request text walk and redaction splice (`godel_guard::http::fuzzing::text_walk`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| godel_guard::http::fuzzing::text_walk(body));
