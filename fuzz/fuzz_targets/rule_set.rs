//! The pattern rules' streamed walk (four lazy-DFA streams over quarters of the text)
//! against the `RegexSet` it stands in for: the same rules, or a walk that gives up.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| godel_traps::fuzzing::rule_set(text));
