//! Model answers through the answer traps (secrets, personal data, invisible
//! characters), as `proxy.output.action` says: `flag` records, `redact` masks, `block`
//! withholds.
//!
//! A whole JSON answer is read (bounded), scanned and relayed. A server-sent-event
//! stream is relayed event by event: each channel's text (a choice's content, a tool
//! call's arguments) is scanned as it grows, and only the text a finding could still be
//! part of is held back: the trailing run of non-space characters, and at least
//! [`HOLD_MIN`] bytes (card and phone numbers contain spaces). A secret split across
//! chunks is so masked whole while the client still sees the stream move. A finding
//! longer than [`HOLD_MAX`] can be cut only from that point on.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::ops::Range;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::Response;
use futures::StreamExt;
use futures::stream::BoxStream;
use godel_crds::{Action, OutputAction};
use serde_json::json;

use super::{ProxyError, openai_error, redactions, text, upstream};
use crate::engine::{Guard, Outcome, Pseudonyms, mask};
use crate::http::AppState;
use godel_traps::Finding;

/// Text held back at the end of a streamed channel, at least.
const HOLD_MIN: usize = 64;
/// Text held back at most, however long the trailing token.
const HOLD_MAX: usize = 4096;
/// Released text rescanned with new text, so a key word just before a secret counts.
const CONTEXT: usize = 256;
/// Largest whole answer scanned; a bigger one is relayed as it is, and logged.
const WHOLE_LIMIT: usize = 16 << 20;
/// Largest single stream event; an upstream that sends more without ending one has its
/// stream ended with an error event rather than buffered without bound.
const EVENT_LIMIT: usize = 1 << 20;

/// Relays an allowed request's successful answer through the answer traps.
pub async fn relay(state: Arc<AppState>, outcome: Outcome, answer: reqwest::Response) -> Result<Response, ProxyError> {
    let action = state.guard.output_action();
    let content_type = answer.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if action == OutputAction::None {
        Ok(upstream::relay_unchanged(answer))
    } else if content_type.starts_with("text/event-stream") {
        let builder = upstream::head(&answer);
        let relay = Relay::new(state, outcome, action, answer.bytes_stream().boxed());
        let events = futures::stream::unfold(relay, |mut relay| async move {
            relay.next_chunk().await.map(|chunk| (Ok::<_, Infallible>(chunk), relay))
        });
        builder.body(Body::from_stream(events)).map_err(|_| ProxyError::UpstreamBroken)
    } else if content_type.starts_with("application/json") {
        whole(&state.guard, outcome, action, answer).await
    } else {
        Ok(upstream::relay_unchanged(answer))
    }
}

fn decision(action: OutputAction) -> &'static str {
    match action {
        OutputAction::Block => "block",
        OutputAction::Redact => "redact",
        OutputAction::None | OutputAction::Flag => "allow",
    }
}

async fn whole(
    guard: &Guard,
    outcome: Outcome,
    action: OutputAction,
    answer: reqwest::Response,
) -> Result<Response, ProxyError> {
    let builder = upstream::head(&answer);
    let mut chunks = answer.bytes_stream();
    let mut body = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| {
            tracing::warn!(error = %e.without_url(), "upstream answer broke off");
            ProxyError::UpstreamBroken
        })?;
        body.extend_from_slice(&chunk);
        if body.len() > WHOLE_LIMIT {
            tracing::warn!(limit = WHOLE_LIMIT, "answer too large to inspect; relayed unscanned");
            let rest = futures::stream::once(async move { Ok(Bytes::from(body)) }).chain(chunks);
            return builder.body(Body::from_stream(rest)).map_err(|_| ProxyError::UpstreamBroken);
        }
    }
    let mut relayed = body;
    if let Ok(segments) = text::segments(&relayed) {
        let (text, starts) = text::joined(&segments);
        let findings = guard.inspect_answer(&text);
        if !findings.is_empty() {
            guard.audit_answer(&outcome.request_id, &outcome.who, decision(action), &findings);
            match action {
                OutputAction::Block => return Err(ProxyError::AnswerBlocked { findings }),
                OutputAction::Redact => {
                    let masked: Vec<Finding> =
                        findings.into_iter().map(|f| Finding { action: Action::Redact, ..f }).collect();
                    relayed = text::splice(&relayed, redactions(&segments, &starts, &masked));
                }
                OutputAction::None | OutputAction::Flag => {}
            }
        }
    }
    builder.body(Body::from(relayed)).map_err(|_| ProxyError::UpstreamBroken)
}

/// One server-sent event waiting to go out.
struct Event {
    raw: Vec<u8>,
    pieces: Vec<Piece>,
    /// Where each line of the payload sits in `raw`, for pieces' literals.
    data: Option<Data>,
}

/// An event's payload: its `data:` lines joined by newlines, as the SSE standard reads
/// them, and where each line starts in the payload and in the raw event.
#[derive(Debug, Default, PartialEq)]
struct Data {
    payload: Vec<u8>,
    /// `(start in payload, start in raw)` of each line, in order.
    lines: Vec<(usize, usize)>,
}

impl Data {
    /// The raw event's bytes of a payload range. A JSON string literal never spans a line
    /// (a raw newline cannot be in one), so every literal maps; `None` if one did not.
    fn to_raw(&self, range: &Range<usize>) -> Option<Range<usize>> {
        let index = self.lines.partition_point(|&(start, _)| start <= range.start).checked_sub(1)?;
        let (start, raw) = self.lines[index];
        let line_end = self.lines.get(index + 1).map_or(self.payload.len(), |&(next, _)| next - 1);
        (range.end <= line_end).then(|| raw + range.start - start..raw + range.end - start)
    }
}

/// A string of an event's payload, placed in its channel's text.
struct Piece {
    channel: String,
    /// Offsets in the channel's whole text.
    span: Range<usize>,
    /// The string literal in the payload.
    literal: Range<usize>,
}

/// The text of one channel, kept from a little before what has been released.
#[derive(Default)]
struct Channel {
    text: String,
    /// Offset of `text[0]` in the channel's whole text.
    base: usize,
    released: usize,
    scanned: usize,
    hits: Vec<(Range<usize>, Finding)>,
}

impl Channel {
    fn end(&self) -> usize {
        self.base + self.text.len()
    }

    /// How far text may go out now: all but what a finding could still be part of.
    fn safe_end(&self, action: OutputAction) -> usize {
        if action == OutputAction::Flag {
            return usize::MAX;
        }
        let trailing = self.text.bytes().rev().take_while(|b| !b.is_ascii_whitespace()).count();
        self.end().saturating_sub(trailing.clamp(HOLD_MIN, HOLD_MAX))
    }

    /// Scans the text from a little before the released point to the end, once per
    /// growth; new findings are kept with offsets in the whole text.
    fn scan(&mut self, guard: &Guard, all: &mut Vec<Finding>) {
        if self.scanned == self.end() {
            return;
        }
        let mut from = self.released.saturating_sub(CONTEXT).max(self.base) - self.base;
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        let offset = self.base + from;
        for f in guard.inspect_answer(&self.text[from..]) {
            let span = offset + f.start..offset + f.end;
            if !self.hits.iter().any(|(s, h)| *s == span && h.rule == f.rule) {
                all.push(f.clone());
                self.hits.push((span, f));
            }
        }
        self.scanned = self.end();
    }

    /// The piece's text with findings masked: the marker where a finding starts, and
    /// the rest of a finding that began in an earlier piece removed. `None` if clean.
    fn masked(&self, span: &Range<usize>) -> Option<String> {
        let text = &self.text[span.start - self.base..span.end - self.base];
        let cuts: Vec<(usize, usize, Option<&str>)> = self
            .hits
            .iter()
            .filter(|(s, _)| s.start < span.end && s.end > span.start)
            .map(|(s, f)| {
                let marker = (s.start >= span.start).then_some(&*f.rule);
                (s.start.max(span.start) - span.start, s.end.min(span.end) - span.start, marker)
            })
            .collect();
        (!cuts.is_empty()).then(|| mask(text, cuts))
    }

    /// Marks text up to `to` as sent and forgets what no scan needs any more.
    fn release(&mut self, to: usize) {
        self.released = self.released.max(to);
        let mut keep_from = self.released.saturating_sub(CONTEXT).max(self.base) - self.base;
        while !self.text.is_char_boundary(keep_from) {
            keep_from -= 1;
        }
        if keep_from > 0 {
            self.text.drain(..keep_from);
            self.base += keep_from;
        }
        let base = self.base;
        self.hits.retain(|(s, _)| s.end > base);
    }
}

/// An answer stream on its way to the client.
struct Relay {
    state: Arc<AppState>,
    request_id: String,
    who: Pseudonyms,
    action: OutputAction,
    upstream: BoxStream<'static, reqwest::Result<Bytes>>,
    partial: Partial,
    queue: VecDeque<Event>,
    channels: HashMap<String, Channel>,
    /// Every finding, for the audit line written when the stream ends or is dropped.
    findings: Vec<Finding>,
    ended: bool,
    stopped: bool,
}

impl Relay {
    fn new(
        state: Arc<AppState>,
        outcome: Outcome,
        action: OutputAction,
        upstream: BoxStream<'static, reqwest::Result<Bytes>>,
    ) -> Self {
        Self {
            state,
            request_id: outcome.request_id,
            who: outcome.who,
            action,
            upstream,
            partial: Partial::default(),
            queue: VecDeque::new(),
            channels: HashMap::new(),
            findings: Vec::new(),
            ended: false,
            stopped: false,
        }
    }

    /// The next bytes for the client: every event that may go out, once upstream has
    /// sent enough to decide; `None` when the stream is over.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if self.stopped {
                return None;
            }
            let out = self.release();
            if !out.is_empty() {
                return Some(out.into());
            }
            if self.ended {
                return None;
            }
            match self.upstream.next().await {
                Some(Ok(bytes)) => self.feed(&bytes),
                Some(Err(e)) => {
                    let timed_out = e.is_timeout();
                    tracing::warn!(error = %e.without_url(), "upstream stream broke off");
                    self.finish();
                    // After what arrived, an error event: SDKs raise it, where a stream
                    // that just stops would look complete.
                    let (code, message) = if timed_out {
                        ("upstream_timeout", "the upstream API did not finish its answer in time")
                    } else {
                        ("upstream_error", "the upstream API's answer broke off")
                    };
                    self.queue.push_back(Event {
                        raw: error_event(message, "upstream_error", code),
                        pieces: Vec::new(),
                        data: None,
                    });
                }
                None => self.finish(),
            }
        }
    }

    fn finish(&mut self) {
        self.ended = true;
        if !self.partial.0.is_empty() {
            let raw = std::mem::take(&mut self.partial.0);
            self.push(raw);
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        for raw in self.partial.split(bytes) {
            self.push(raw);
        }
        if self.partial.0.len() > EVENT_LIMIT {
            tracing::warn!(limit = EVENT_LIMIT, "upstream stream event too large; stream ended");
            self.partial.0.clear();
            self.ended = true;
            let event =
                error_event("the upstream API sent an event too large to relay", "upstream_error", "upstream_error");
            self.queue.push_back(Event { raw: event, pieces: Vec::new(), data: None });
        }
    }

    fn push(&mut self, raw: Vec<u8>) {
        let data = data_of(&raw);
        let mut pieces = Vec::new();
        if let Some(data) = &data {
            if data.payload == b"[DONE]" {
                self.ended = true;
            } else if let Ok(segments) = text::segments(&data.payload) {
                for segment in segments {
                    let channel = self.channels.entry(segment.channel.clone()).or_default();
                    let start = channel.end();
                    channel.text.push_str(&segment.text);
                    pieces.push(Piece {
                        channel: segment.channel,
                        span: start..channel.end(),
                        literal: segment.literal,
                    });
                }
            }
        }
        self.queue.push_back(Event { raw, pieces, data });
    }

    /// Sends every event at the head of the queue whose text is past what must be held.
    fn release(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(event) = self.queue.front() {
            let ready = self.ended
                || event
                    .pieces
                    .iter()
                    .all(|p| self.channels.get(&p.channel).is_none_or(|c| p.span.end <= c.safe_end(self.action)));
            if !ready {
                break;
            }
            let Some(event) = self.queue.pop_front() else { break };
            for piece in &event.pieces {
                if let Some(channel) = self.channels.get_mut(&piece.channel) {
                    channel.scan(&self.state.guard, &mut self.findings);
                }
            }
            if self.action == OutputAction::Block && !self.findings.is_empty() {
                out.extend_from_slice(&blocked_event(&self.findings));
                self.stopped = true;
                return out;
            }
            out.extend_from_slice(&self.render(event));
        }
        out
    }

    fn render(&mut self, event: Event) -> Vec<u8> {
        let mut replacements = Vec::new();
        if let (OutputAction::Redact, Some(data)) = (self.action, &event.data) {
            for piece in &event.pieces {
                let masked = self.channels.get(&piece.channel).and_then(|c| c.masked(&piece.span));
                if let (Some(masked), Some(literal)) = (masked, data.to_raw(&piece.literal)) {
                    replacements.push((literal, masked));
                }
            }
        }
        for piece in &event.pieces {
            if let Some(channel) = self.channels.get_mut(&piece.channel) {
                channel.release(piece.span.end);
            }
        }
        if replacements.is_empty() { event.raw } else { text::splice(&event.raw, replacements) }
    }
}

impl Drop for Relay {
    /// The answer's audit line, whether the stream ended or its client went away.
    fn drop(&mut self) {
        if !self.findings.is_empty() {
            self.state.guard.audit_answer(&self.request_id, &self.who, decision(self.action), &self.findings);
        }
    }
}

/// Stream bytes not yet making up a whole event.
#[derive(Default)]
struct Partial(Vec<u8>);

impl Partial {
    /// Adds `bytes`; the events they complete, in order. Only the new bytes (and the
    /// three before them, as a separator may straddle chunks) are searched, so an event
    /// arriving in many small chunks is not rescanned each time.
    fn split(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut from = self.0.len().saturating_sub(3);
        self.0.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = event_end(&self.0[from..]).map(|end| from + end) {
            events.push(self.0.drain(..end).collect());
            from = 0;
        }
        events
    }
}

/// The end of the first complete event in `buffer` (its blank line included).
fn event_end(buffer: &[u8]) -> Option<usize> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    let crlf = buffer.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The payload of an event's `data:` lines; `None` if it has none.
fn data_of(raw: &[u8]) -> Option<Data> {
    let mut data = Data::default();
    let mut line_start = 0;
    for line in raw.split(|&b| b == b'\n') {
        let content = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = content.strip_prefix(b"data:") {
            let skip = usize::from(rest.first() == Some(&b' '));
            if !data.lines.is_empty() {
                data.payload.push(b'\n');
            }
            data.lines.push((data.payload.len(), line_start + 5 + skip));
            data.payload.extend_from_slice(&rest[skip..]);
        }
        line_start += line.len() + 1;
    }
    (!data.lines.is_empty()).then_some(data)
}

/// The event that ends a blocked stream, which OpenAI's SDKs raise: the error a whole
/// withheld answer gets.
fn blocked_event(findings: &[Finding]) -> Vec<u8> {
    let (_, kind, code, message) = ProxyError::AnswerBlocked { findings: findings.to_vec() }.parts();
    error_event(&message, kind, code)
}

/// A server-sent event carrying an OpenAI-style `error` object.
fn error_event(message: &str, kind: &str, code: &str) -> Vec<u8> {
    let error = json!({"error": openai_error(message, kind, code)});
    format!("data: {error}\n\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_on_blank_lines_of_either_kind() {
        assert_eq!(event_end(b"data: a\n\ndata: b"), Some(9));
        assert_eq!(event_end(b"data: a\r\n\r\n"), Some(11));
        assert_eq!(event_end(b"data: a\n"), None);
    }

    #[test]
    fn events_split_anywhere_across_chunks_are_put_back_together() {
        let first = "data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": \"a\"}}]}\r\n\r\n";
        let events = format!("{first}data: [DONE]\n\n");
        for cut in 1..events.len() {
            let mut partial = Partial::default();
            let mut found = partial.split(&events.as_bytes()[..cut]);
            found.extend(partial.split(&events.as_bytes()[cut..]));
            assert_eq!(found, [first.as_bytes(), b"data: [DONE]\n\n"], "cut at {cut}");
            assert!(partial.0.is_empty());
        }
    }

    #[test]
    fn the_data_lines_are_the_payload_and_its_literals_map_back() {
        let raw = b"event: response.output_text.delta\ndata: {\"delta\": \"x\"}\n\n";
        let data = data_of(raw).unwrap();
        assert_eq!(data.payload, b"{\"delta\": \"x\"}");
        assert_eq!(data.to_raw(&(10..13)).map(|r| &raw[r]), Some(&b"\"x\""[..]));
        assert_eq!(data_of(b": comment\n\n"), None);

        let raw = b"data: {\"a\": \"x\",\r\ndata:\"b\": \"yz\"}\r\n\r\n";
        let data = data_of(raw).unwrap();
        assert_eq!(data.payload, b"{\"a\": \"x\",\n\"b\": \"yz\"}");
        let literal = 16..20;
        assert_eq!(&data.payload[literal.clone()], b"\"yz\"");
        assert_eq!(data.to_raw(&literal).map(|r| &raw[r]), Some(&b"\"yz\""[..]));
        assert_eq!(data.to_raw(&(6..20)), None, "a range across lines does not map");
    }

    #[test]
    fn a_channel_holds_back_the_trailing_token_and_masks_across_pieces() {
        let mut channel = Channel { text: "x".repeat(100) + " my key AKIAIOSF", ..Channel::default() };
        let safe = channel.safe_end(OutputAction::Redact);
        assert_eq!(safe, channel.end() - HOLD_MIN, "at least the minimum is held");
        channel.text.push_str("ODNN7EXAMPLE and more text ");
        let trailing_token = "y".repeat(200);
        channel.text.push_str(&trailing_token);
        assert_eq!(channel.safe_end(OutputAction::Redact), channel.end() - 200, "a long token is held whole");
        assert_eq!(channel.safe_end(OutputAction::Flag), usize::MAX);

        let start = 104;
        let key = channel.text.find("AKIA").unwrap();
        channel.hits.push((key..key + 20, finding(0, 20)));
        assert_eq!(channel.masked(&(start..key + 8)).unwrap(), "key [REDACTED:aws-access-key-id]");
        assert_eq!(channel.masked(&(key + 8..key + 24)).unwrap(), " and");
        assert_eq!(channel.masked(&(0..50)), None);
    }

    fn finding(start: usize, end: usize) -> Finding {
        Finding {
            trap: "regex",
            rule: "aws-access-key-id".into(),
            severity: godel_crds::Severity::Critical,
            action: Action::Block,
            start,
            end,
        }
    }
}
