//! The hold-back scanner of streamed answers with the default answer traps
//! (`godel_guard::http::fuzzing::holdback`): the first byte says how many of the next
//! are piece lengths, the rest is the channel's text.
#![no_main]

use std::sync::LazyLock;

use godel_config::TrapsConfig;
use godel_traps::TrapEngine;
use libfuzzer_sys::fuzz_target;

static ANSWER_TRAPS: LazyLock<TrapEngine> =
    LazyLock::new(|| TrapEngine::for_answers(&TrapsConfig::default()).expect("the answer traps compile"));

fuzz_target!(|input: &[u8]| {
    let Some((&n, rest)) = input.split_first() else { return };
    let (cuts, text) = rest.split_at(usize::from(n % 32).min(rest.len()));
    let Ok(text) = std::str::from_utf8(text) else { return };
    godel_guard::http::fuzzing::holdback(text, cuts, |t| ANSWER_TRAPS.inspect(t));
});
