//! The whole trap engine (rules, decoders and their rescans, entropy, unicode, the
//! learned detector) for prompts, answers and untrusted content: every finding names a
//! range of the text received, on character boundaries.
#![no_main]

use std::sync::LazyLock;

use godel_config::TrapsConfig;
use godel_traps::TrapEngine;
use libfuzzer_sys::fuzz_target;

static ENGINES: LazyLock<Vec<TrapEngine>> = LazyLock::new(|| {
    let config = TrapsConfig::default();
    let mut engines = vec![
        TrapEngine::new(&config).expect("the default policy compiles"),
        TrapEngine::for_answers(&config).expect("the answer traps compile"),
    ];
    engines.extend(TrapEngine::for_untrusted(&config).expect("the untrusted traps compile"));
    engines
});

fuzz_target!(|text: &str| {
    for engine in ENGINES.iter() {
        for finding in engine.inspect(text) {
            assert!(finding.start <= finding.end && finding.end <= text.len(), "{finding:?}");
            assert!(text.is_char_boundary(finding.start) && text.is_char_boundary(finding.end), "{finding:?}");
        }
    }
});
