//! The `/v1/inspect` body parser and its error messages
//! (`godel_guard::http::fuzzing::inspect_body`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| godel_guard::http::fuzzing::inspect_body(body));
