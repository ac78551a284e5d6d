//! Where a model reads text in an OpenAI-style JSON body, located by byte offsets into
//! the body as received. The walk is generic (every string value except identifiers,
//! enums and binary payloads), so new API shapes (the Responses API's `input` items,
//! tool descriptions, content parts of any type) are read without a schema; and since
//! redactions are spliced into the original bytes, everything else passes through
//! byte for byte (a 23-digit `seed` stays a 23-digit integer).

use std::fmt;
use std::ops::Range;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// Keys whose values are identifiers, enumerations, options or binary payloads rather
/// than text a model reads, in OpenAI's and Anthropic's APIs (or, for `user`, the end user's id, which is never scanned).
const NOT_TEXT: &[&str] = &[
    "background",
    "call_id",
    "created",
    "data",
    "detail",
    "encoding_format",
    "file_data",
    "file_id",
    "finish_reason",
    "format",
    "id",
    "include",
    "item_id",
    "logprobs",
    "media_type",
    "metadata",
    "modalities",
    "model",
    "object",
    "previous_response_id",
    "prompt_cache_key",
    "reasoning_effort",
    "role",
    "safety_identifier",
    "service_tier",
    "signature",
    "status",
    "stop_reason",
    "stop_sequence",
    "system_fingerprint",
    "tool_call_id",
    "tool_choice",
    "tool_use_id",
    "truncation",
    "type",
    "url",
    "user",
    "voice",
];

/// Deeper than any real request; deeper is refused rather than walked.
const MAX_DEPTH: usize = 32;

/// One string value: where its JSON literal sits in the body, its decoded text, and the
/// channel it belongs to (its path, with array positions replaced by an element's own
/// `index` field when it has one, so that a stream's pieces of one choice or tool call
/// share a channel).
#[derive(Debug, PartialEq)]
pub(super) struct Segment {
    pub literal: Range<usize>,
    pub text: String,
    pub channel: String,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum TextError {
    #[error("body is not valid JSON at line {line} column {column}")]
    Json { line: usize, column: usize },
    #[error("the body must be a JSON object")]
    NotAnObject,
    #[error("the body is nested more than {MAX_DEPTH} levels deep")]
    TooDeep,
}

impl From<serde_json::Error> for TextError {
    fn from(e: serde_json::Error) -> Self {
        TextError::Json { line: e.line(), column: e.column() }
    }
}

/// The text-bearing strings of a JSON object body, in document order.
pub(super) fn segments(body: &[u8]) -> Result<Vec<Segment>, TextError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        let before = &body[..e.valid_up_to()];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = before.len() - before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
        TextError::Json { line, column }
    })?;
    let root: &RawValue = serde_json::from_str(text)?;
    if !root.get().starts_with('{') {
        return Err(TextError::NotAnObject);
    }
    let mut out = Vec::new();
    walk(text, root, "", None, 0, &mut out)?;
    out.sort_by_key(|s| s.literal.start);
    Ok(out)
}

/// Walks one value. `channel` is its parent's path; `position` its place when it is an
/// array element, replaced by the element's own `index` field when it has one (read from
/// the fields the object branch parses anyway).
fn walk(
    body: &str,
    raw: &RawValue,
    channel: &str,
    position: Option<usize>,
    depth: usize,
    out: &mut Vec<Segment>,
) -> Result<(), TextError> {
    if depth > MAX_DEPTH {
        return Err(TextError::TooDeep);
    }
    let value = raw.get();
    match value.as_bytes().first() {
        Some(b'{') => {
            let Fields(fields) = serde_json::from_str(value)?;
            let own_index =
                fields.iter().find(|(key, _)| key == "index").and_then(|(_, index)| index.get().parse::<u64>().ok());
            let channel = match (position, own_index) {
                (None, _) => channel.to_owned(),
                (Some(_), Some(index)) => format!("{channel}.{index}"),
                (Some(position), None) => format!("{channel}.{position}"),
            };
            for (key, child) in fields {
                if !NOT_TEXT.contains(&key.as_str()) {
                    walk(body, child, &format!("{channel}.{key}"), None, depth + 1, out)?;
                }
            }
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(value)?;
            for (position, item) in items.into_iter().enumerate() {
                walk(body, item, channel, Some(position), depth + 1, out)?;
            }
        }
        Some(b'"') => {
            let text: String = serde_json::from_str(value)?;
            if !text.is_empty() {
                // The RawValue borrows from `body`, so its offset is a pointer difference.
                let start = value.as_ptr() as usize - body.as_ptr() as usize;
                let channel = position.map_or_else(|| channel.to_owned(), |p| format!("{channel}.{p}"));
                out.push(Segment { literal: start..start + value.len(), text, channel });
            }
        }
        _ => {}
    }
    Ok(())
}

/// An object's fields in document order, duplicates kept. A map would keep one value of a
/// repeated key while the body goes upstream whole, and a parser there may read the other
/// one: every value is inspected instead.
struct Fields<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Fields<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut fields = Vec::new();
                while let Some(field) = map.next_entry::<String, &'de RawValue>()? {
                    fields.push(field);
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// The segments' texts joined by newlines (what the traps read), and where each
/// segment starts in it.
pub(super) fn joined(segments: &[Segment]) -> (String, Vec<usize>) {
    let mut prompt = String::with_capacity(segments.iter().map(|s| s.text.len() + 1).sum());
    let mut starts = Vec::with_capacity(segments.len());
    for segment in segments {
        if !prompt.is_empty() {
            prompt.push('\n');
        }
        starts.push(prompt.len());
        prompt.push_str(&segment.text);
    }
    (prompt, starts)
}

/// `body` with each `(literal range, new text)` replacing that string literal; every
/// other byte unchanged.
pub(super) fn splice(body: &[u8], replacements: Vec<(Range<usize>, String)>) -> Vec<u8> {
    splice_raw(body, as_literals(replacements))
}

/// Replacement texts as the JSON string literals that go in their place.
pub(super) fn as_literals(replacements: Vec<(Range<usize>, String)>) -> Vec<(Range<usize>, Vec<u8>)> {
    // Serializing a string cannot fail.
    replacements.into_iter().map(|(range, text)| (range, serde_json::to_vec(&text).unwrap_or_default())).collect()
}

/// `body` with each `(range, bytes)` in place of that range (empty for an insertion);
/// ranges do not overlap.
pub(super) fn splice_raw(body: &[u8], mut replacements: Vec<(Range<usize>, Vec<u8>)>) -> Vec<u8> {
    replacements.sort_by_key(|(range, _)| range.start);
    let mut out = Vec::with_capacity(body.len());
    let mut cursor = 0;
    for (range, bytes) in replacements {
        out.extend_from_slice(&body[cursor..range.start]);
        out.extend_from_slice(&bytes);
        cursor = range.end;
    }
    out.extend_from_slice(&body[cursor..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_place_a_model_reads_is_found_and_nothing_else() {
        let body = br#"{"model": "gpt-4o", "user": "u-1", "seed": 12345678901234567890123,
            "messages": [
              {"role": "system", "content": "be brief"},
              {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
              {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\": \"x\"}"}}]},
              {"role": "tool", "tool_call_id": "call_1", "content": "result"}
            ],
            "tools": [{"type": "function", "function": {"name": "lookup", "description": "Looks things up", "parameters": {"type": "object"}}}]}"#;
        let found: Vec<(String, String)> = segments(body).unwrap().into_iter().map(|s| (s.channel, s.text)).collect();
        let expected = [
            (".messages.0.content", "be brief"),
            (".messages.1.content.0.text", "hi"),
            (".messages.2.tool_calls.0.function.name", "lookup"),
            (".messages.2.tool_calls.0.function.arguments", r#"{"q": "x"}"#),
            (".messages.3.content", "result"),
            (".tools.0.function.name", "lookup"),
            (".tools.0.function.description", "Looks things up"),
        ];
        let expected: Vec<(String, String)> = expected.iter().map(|(c, t)| (c.to_string(), t.to_string())).collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn every_value_of_a_repeated_key_is_found() {
        let body = br#"{"messages": [{"role": "user", "content": "first", "content": "second"}]}"#;
        let texts: Vec<String> = segments(body).unwrap().into_iter().map(|s| s.text).collect();
        assert_eq!(texts, ["first", "second"]);
    }

    #[test]
    fn splicing_changes_only_the_replaced_strings() {
        let body = br#"{"seed": 12345678901234567890123, "input": "my key \u0041KIA", "n": 1.50}"#;
        let found = segments(body).unwrap();
        assert_eq!(found[0].text, "my key AKIA");
        let out = splice(body, vec![(found[0].literal.clone(), "my key [REDACTED:x]".into())]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"seed": 12345678901234567890123, "input": "my key [REDACTED:x]", "n": 1.50}"#
        );
    }

    #[test]
    fn stream_pieces_of_one_choice_share_a_channel() {
        let a = segments(br#"{"choices": [{"index": 1, "delta": {"content": "a"}}]}"#).unwrap();
        let b = segments(br#"{"choices": [{"index": 1, "delta": {"content": "b"}}]}"#).unwrap();
        let c = segments(br#"{"choices": [{"index": 0, "delta": {"content": "c"}}]}"#).unwrap();
        assert_eq!(a[0].channel, b[0].channel);
        assert_ne!(a[0].channel, c[0].channel);
    }

    #[test]
    fn bad_bodies_are_refused_with_a_position() {
        assert!(matches!(segments(b"[1]"), Err(TextError::NotAnObject)));
        assert!(matches!(segments(b"{\"a\": \"\xff\"}"), Err(TextError::Json { line: 1, column: 8 })));
        assert!(matches!(segments(b"{\"a\": "), Err(TextError::Json { .. })));
        let deep = format!("{{\"a\": {}1{}}}", "[".repeat(40), "]".repeat(40));
        assert!(matches!(segments(deep.as_bytes()), Err(TextError::TooDeep)));
    }
}
