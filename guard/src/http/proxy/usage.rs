//! The upstream's own token count, which token limits settle to: read from a whole
//! answer's `usage`, from a Chat Completions stream's usage chunk (asked for with
//! `stream_options.include_usage` when the client did not, and then taken out again, so
//! the client sees the stream it asked for), from a Responses stream's
//! `response.completed` event, or from an Anthropic stream's `message_start` (input)
//! completed by its `message_delta` (output).

use std::ops::Range;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::request::present;
use crate::pricing::TokenCount;

/// The shapes of `usage`: Chat Completions' and Completions' (`prompt_tokens`), the
/// Responses API's (`input_tokens`) and Anthropic's (`input_tokens` beside its prompt
/// cache's reads and writes, which it does not include).
#[derive(Deserialize)]
struct Usage {
    #[serde(alias = "input_tokens")]
    prompt_tokens: Option<u64>,
    #[serde(alias = "output_tokens")]
    completion_tokens: Option<u64>,
    #[serde(alias = "input_tokens_details")]
    prompt_tokens_details: Option<Details>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct Details {
    cached_tokens: Option<u64>,
}

impl Usage {
    fn count(self) -> Option<TokenCount> {
        let (read, written) =
            (self.cache_read_input_tokens.unwrap_or(0), self.cache_creation_input_tokens.unwrap_or(0));
        let input = self.prompt_tokens? + read + written;
        let cached_input = self.prompt_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(read);
        Some(TokenCount { input, cached_input, output: self.completion_tokens.unwrap_or(0) })
    }

    /// This count with a later event's fields where it has them (Anthropic's
    /// `message_delta` counts cumulatively).
    fn completed_by(self, later: Usage) -> Usage {
        Usage {
            prompt_tokens: later.prompt_tokens.or(self.prompt_tokens),
            completion_tokens: later.completion_tokens.or(self.completion_tokens),
            prompt_tokens_details: later.prompt_tokens_details.or(self.prompt_tokens_details),
            cache_read_input_tokens: later.cache_read_input_tokens.or(self.cache_read_input_tokens),
            cache_creation_input_tokens: later.cache_creation_input_tokens.or(self.cache_creation_input_tokens),
        }
    }
}

/// The fields of an answer or stream event that can hold a usage.
#[derive(Deserialize)]
struct Carrier {
    #[serde(default)]
    usage: Option<Usage>,
    /// A Responses stream event's response (`response.completed`).
    #[serde(default)]
    response: Option<Box<Carrier>>,
    /// An Anthropic stream's opening message (`message_start`).
    #[serde(default)]
    message: Option<Box<Carrier>>,
}

impl Carrier {
    fn usage(self) -> Option<Usage> {
        self.usage.or_else(|| self.response.and_then(|r| r.usage))
    }
}

/// The token count in a whole answer, if it carries one.
pub(super) fn usage_of(payload: &[u8]) -> Option<TokenCount> {
    serde_json::from_slice::<Carrier>(payload).ok()?.usage()?.count()
}

/// A stream's usage, read event by event: whole in one event for OpenAI's APIs; for
/// Anthropic's, the opening `message_start` count completed by `message_delta`.
#[derive(Default)]
pub(super) struct StreamUsage {
    opening: Option<Usage>,
}

impl StreamUsage {
    /// The stream's usage once the event `payload` completes it.
    pub(super) fn read(&mut self, payload: &[u8]) -> Option<TokenCount> {
        let carrier: Carrier = serde_json::from_slice(payload).ok()?;
        if let Some(message) = carrier.message {
            self.opening = message.usage.or(self.opening.take());
            return None;
        }
        let usage = carrier.usage()?;
        match self.opening.take() {
            Some(opening) => opening.completed_by(usage).count(),
            None => usage.count(),
        }
    }
}

/// The edit to a streamed request's body that asks the upstream for its usage chunk,
/// or `None` when the client asked for it itself. `stream_options` is the body's own
/// (borrowed from `body`).
pub(super) fn ask_for_usage(body: &[u8], stream_options: Option<&RawValue>) -> Option<(Range<usize>, Vec<u8>)> {
    const ASKED: &str = r#"{"include_usage":true}"#;
    let Some(options) = stream_options else {
        // Just inside the body's opening brace (`segments` has checked it is an object).
        let brace = body.iter().position(|&b| b == b'{')? + 1;
        return Some((brace..brace, format!(r#""stream_options":{ASKED},"#).into_bytes()));
    };
    // The RawValue borrows from `body`, so its offset is a pointer difference.
    let start = options.get().as_ptr() as usize - body.as_ptr() as usize;
    let range = start..start + options.get().len();
    let mut fields: serde_json::Map<String, serde_json::Value> = match serde_json::from_str(options.get()) {
        Ok(fields) => fields,
        // `null` or something the upstream will refuse anyway: ask in its place.
        Err(_) => return Some((range, ASKED.as_bytes().to_vec())),
    };
    if fields.get("include_usage") == Some(&serde_json::Value::Bool(true)) {
        return None;
    }
    fields.insert("include_usage".into(), true.into());
    Some((range, serde_json::to_vec(&fields).unwrap_or_else(|_| ASKED.as_bytes().to_vec())))
}

/// What becomes of a Chat Completions stream event once the usage the client did not
/// ask for is taken out.
#[derive(Debug, PartialEq)]
pub(super) enum Unasked {
    /// The usage chunk itself (no choices): not sent.
    Drop,
    /// A chunk with the `"usage": null` member the upstream adds to every other chunk,
    /// without it.
    Strip(Vec<u8>),
    /// Nothing to take out.
    Keep,
}

/// Takes the usage the client did not ask for out of one stream payload.
pub(super) fn unasked(payload: &[u8]) -> Unasked {
    #[derive(Deserialize)]
    struct Chunk<'a> {
        #[serde(borrow, default, deserialize_with = "present")]
        usage: Option<&'a RawValue>,
        #[serde(borrow, default)]
        choices: Option<&'a RawValue>,
    }
    let Ok(chunk) = serde_json::from_slice::<Chunk<'_>>(payload) else { return Unasked::Keep };
    let Some(usage) = chunk.usage else { return Unasked::Keep };
    if usage.get() != "null" && chunk.choices.is_none_or(|c| c.get().trim() == "[]") {
        return Unasked::Drop;
    }
    let start = usage.get().as_ptr() as usize - payload.as_ptr() as usize;
    match member(payload, start..start + usage.get().len()) {
        Some(range) => Unasked::Strip([&payload[..range.start], &payload[range.end..]].concat()),
        None => Unasked::Keep,
    }
}

/// The bytes of the object member whose value is at `value`, with the comma that
/// separates it from a neighbour, so that removing them leaves valid JSON.
fn member(json: &[u8], value: Range<usize>) -> Option<Range<usize>> {
    let is_space = |b: &u8| b" \t\r\n".contains(b);
    let before = |mut i: usize| {
        while i > 0 && is_space(&json[i - 1]) {
            i -= 1;
        }
        i
    };
    let colon = before(value.start).checked_sub(1).filter(|&i| json[i] == b':')?;
    let key_end = before(colon);
    // The key is a plain `"usage"` here: no escaped quote to look past.
    let key_start = json[..key_end.checked_sub(1)?].iter().rposition(|&b| b == b'"')?;
    let preceding = before(key_start).checked_sub(1)?;
    if json[preceding] == b',' {
        return Some(preceding..value.end);
    }
    let mut end = value.end;
    while end < json.len() && is_space(&json[end]) {
        end += 1;
    }
    match json.get(end) {
        Some(b',') => {
            let mut after = end + 1;
            while after < json.len() && is_space(&json[after]) {
                after += 1;
            }
            Some(key_start..after)
        }
        _ => Some(key_start..value.end),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_read_from_all_three_shapes() {
        let chat = br#"{"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 4}}}"#;
        assert_eq!(usage_of(chat), Some(TokenCount { input: 12, cached_input: 4, output: 5 }));
        let responses = br#"{"output": [], "usage": {"input_tokens": 30, "output_tokens": 7}}"#;
        assert_eq!(usage_of(responses), Some(TokenCount { input: 30, cached_input: 0, output: 7 }));
        let completed =
            br#"{"type": "response.completed", "response": {"usage": {"input_tokens": 3, "output_tokens": 2}}}"#;
        assert_eq!(usage_of(completed), Some(TokenCount { input: 3, cached_input: 0, output: 2 }));
        assert_eq!(usage_of(br#"{"choices": [{"delta": {}}], "usage": null}"#), None);
        assert_eq!(usage_of(b"not json"), None);
        let anthropic = br#"{"type": "message", "content": [], "usage": {"input_tokens": 10, "output_tokens": 4,
            "cache_read_input_tokens": 30, "cache_creation_input_tokens": 2}}"#;
        assert_eq!(usage_of(anthropic), Some(TokenCount { input: 42, cached_input: 30, output: 4 }));
    }

    #[test]
    fn an_anthropic_streams_usage_is_its_opening_count_completed_by_the_last_delta() {
        let mut usage = StreamUsage::default();
        let start = br#"{"type": "message_start", "message": {"id": "msg_1", "content": [],
            "usage": {"input_tokens": 25, "cache_read_input_tokens": 5, "output_tokens": 1}}}"#;
        assert_eq!(usage.read(start), None, "the output is not counted yet");
        assert_eq!(usage.read(br#"{"type": "content_block_delta", "index": 0, "delta": {"text": "hi"}}"#), None);
        let delta =
            br#"{"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 15}}"#;
        assert_eq!(usage.read(delta), Some(TokenCount { input: 30, cached_input: 5, output: 15 }));
        let chat = br#"{"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 5}}"#;
        assert_eq!(StreamUsage::default().read(chat), Some(TokenCount { input: 12, cached_input: 0, output: 5 }));
    }

    fn asked(body: &str) -> Option<String> {
        #[derive(Deserialize)]
        struct Envelope<'a> {
            #[serde(borrow, default, deserialize_with = "present")]
            stream_options: Option<&'a RawValue>,
        }
        let envelope: Envelope<'_> = serde_json::from_str(body).unwrap();
        let edit = ask_for_usage(body.as_bytes(), envelope.stream_options)?;
        let out = String::from_utf8(crate::http::proxy::text::splice_raw(body.as_bytes(), vec![edit])).unwrap();
        let value: serde_json::Value = serde_json::from_str(&out).expect("still JSON");
        assert_eq!(value["stream_options"]["include_usage"], true, "{out}");
        Some(out)
    }

    #[test]
    fn usage_is_asked_for_only_when_the_client_did_not() {
        assert_eq!(
            asked(r#"{"stream": true, "seed": 12345678901234567890123}"#).unwrap(),
            r#"{"stream_options":{"include_usage":true},"stream": true, "seed": 12345678901234567890123}"#
        );
        let other = asked(r#"{"stream_options": {"include_obfuscation": false}, "stream": true}"#).unwrap();
        assert!(other.contains(r#""include_obfuscation":false"#), "{other}");
        asked(r#"{"stream_options": {"include_usage": false}}"#).unwrap();
        asked(r#"{"stream_options": null}"#).unwrap();
        assert_eq!(asked(r#"{"stream_options": {"include_usage": true}}"#), None);
    }

    #[test]
    fn the_unasked_usage_leaves_every_chunk_as_the_client_would_have_had_it() {
        let strip = |chunk: &str| match unasked(chunk.as_bytes()) {
            Unasked::Strip(out) => String::from_utf8(out).unwrap(),
            other => panic!("{other:?} for {chunk}"),
        };
        assert_eq!(
            strip(r#"{"id":"c","choices":[{"delta":{"content":"hi"}}],"usage":null}"#),
            r#"{"id":"c","choices":[{"delta":{"content":"hi"}}]}"#
        );
        assert_eq!(strip(r#"{"usage": null, "id": "c", "choices": []}"#), r#"{"id": "c", "choices": []}"#);
        assert_eq!(strip(r#"{"usage" : null }"#), r#"{ }"#);
        assert_eq!(
            unasked(br#"{"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#),
            Unasked::Drop
        );
        assert_eq!(unasked(br#"{"id":"c","choices":[{"delta":{}}]}"#), Unasked::Keep);
        assert_eq!(unasked(b"[DONE]"), Unasked::Keep);
    }
}
