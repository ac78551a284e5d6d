//! Server-sent-event framing of answer streams, whole and cut into chunks
//! (`godel_guard::http::fuzzing::sse_framing`): the first byte says where the cuts are.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&n, rest)) = input.split_first() else { return };
    let (cuts, stream) = rest.split_at(usize::from(n % 16).min(rest.len()));
    godel_guard::http::fuzzing::sse_framing(stream, cuts);
});
