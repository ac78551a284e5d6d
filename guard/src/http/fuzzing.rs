//! Entry points for the fuzz targets in `fuzz/`, compiled only with the `fuzzing`
//! feature: the parsers that take hostile input by design, driven with arbitrary bytes,
//! each asserting what must hold for every input, so a violation is a crash the fuzzer
//! keeps (and then a unit test).

use super::error::parse_json;
use super::inspect::InspectRequest;

pub use super::proxy::fuzzing::{holdback, sse_framing, text_walk};

/// The `/v1/inspect` body: whatever the bytes, parsing gives a request or an error
/// whose message is made of the schema's words only (field names, kinds of error,
/// JSON's types, a line and a column, the number of fields), never a value from the body.
pub fn inspect_body(body: &[u8]) {
    let Err(error) = parse_json::<InspectRequest>(body) else { return };
    let message = error.message();
    let words: Vec<&str> =
        message.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).collect();
    for (i, word) in words.iter().enumerate() {
        let number_after = i > 0 && matches!(words[i - 1], "line" | "column" | "with");
        assert!(
            SCHEMA_WORDS.contains(word) || (number_after && word.bytes().all(|b| b.is_ascii_digit())),
            "{word:?} in {message:?}"
        );
    }
}

/// What an error about an inspect body may say.
#[rustfmt::skip]
const SCHEMA_WORDS: &[&str] = &[
    // The request's fields.
    "user_id", "tier", "prompt", "instructions", "untrusted", "model", "tokens",
    // serde's kinds of data error and its names for what was expected.
    "invalid", "type", "value", "length", "unknown", "field", "variant", "duplicate", "missing",
    "expected", "a", "an", "one", "of", "or", "string", "u64", "sequence", "struct",
    "InspectRequest", "option", "map", "integer", "fields", "there", "are", "no", "with", "elements",
    "element",
    // Syntax errors.
    "body", "is", "not", "valid", "JSON", "at", "line", "column",
];
