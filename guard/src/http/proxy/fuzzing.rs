//! The proxy's parsers as fuzz entry points (see [`crate::http::fuzzing`]).

use std::collections::VecDeque;
use std::ops::Range;

use godel_config::OutputAction;
use godel_traps::Finding;

use super::holdback::Channel;
use super::{sse, text};

/// The request text walk and the redaction splice: every text found is where `joined`
/// says, and masking every one of them in place leaves a JSON object whose walk finds
/// the same strings, each now the mask.
pub fn text_walk(body: &[u8]) {
    let Ok(segments) = text::segments(body) else { return };
    let (joined, starts) = text::joined(&segments);
    for (segment, &start) in segments.iter().zip(&starts) {
        assert_eq!(joined.get(start..start + segment.text.len()), Some(segment.text.as_str()));
    }
    let masks: Vec<(Range<usize>, String)> = segments.iter().map(|s| (s.literal.clone(), "[MASKED]".into())).collect();
    let spliced = text::splice(body, masks);
    let again = text::segments(&spliced).expect("a masked body is still a JSON object");
    assert_eq!(again.len(), segments.len(), "{}", String::from_utf8_lossy(&spliced));
    assert!(again.iter().all(|s| s.text == "[MASKED]"), "{}", String::from_utf8_lossy(&spliced));
}

/// SSE framing: a stream cut into chunks at `cuts` (each byte a chunk length) frames
/// into the same events as the stream whole, and every payload range that maps back to
/// the raw event maps onto the same bytes.
pub fn sse_framing(stream: &[u8], cuts: &[u8]) {
    let mut whole = sse::Partial::default();
    let mut expected = whole.split(stream);
    expected.push(whole.take());
    let mut chunked = sse::Partial::default();
    let mut events = Vec::new();
    let mut rest = stream;
    for &cut in cuts {
        let (chunk, tail) = rest.split_at(usize::from(cut).min(rest.len()));
        events.extend(chunked.split(chunk));
        rest = tail;
    }
    events.extend(chunked.split(rest));
    events.push(chunked.take());
    assert_eq!(events, expected);
    for event in &expected {
        let Some(data) = sse::data_of(event) else { continue };
        let len = data.payload.len();
        for (start, end) in [(0, len), (0, len / 2), (len / 3, len), (len / 4, len / 2)] {
            if let Some(raw) = data.to_raw(&(start..end)) {
                assert_eq!(event.get(raw), data.payload.get(start..end), "payload {start}..{end}");
            }
        }
    }
}

/// The hold-back scanner of a streamed channel: `text` arrives in pieces cut at `cuts`
/// (each byte a piece length, moved on to a character boundary), each piece goes out
/// once the scanner's hold allows it, masked where `inspect` found something. Every
/// piece goes out by the end, each sliced on character boundaries, and what goes out is
/// the text itself when nothing was found.
pub fn holdback(text: &str, cuts: &[u8], inspect: impl Fn(&str) -> Vec<Finding>) {
    let mut channel = Channel::default();
    let mut findings = Vec::new();
    let mut held: VecDeque<(Range<usize>, &str)> = VecDeque::new();
    let mut out = String::new();
    let mut rest = text;
    let mut cuts = cuts.iter().map(|&c| usize::from(c));
    while !rest.is_empty() {
        let mut at = cuts.next().unwrap_or(usize::MAX).clamp(1, rest.len());
        while !rest.is_char_boundary(at) {
            at += 1;
        }
        let (piece, tail) = rest.split_at(at);
        rest = tail;
        held.push_back((channel.push(piece), piece));
        let last = rest.is_empty();
        while let Some((span, piece)) = held.front().cloned() {
            if !last && span.end > channel.safe_end(OutputAction::Redact) {
                break;
            }
            held.pop_front();
            channel.scan(&inspect, &mut findings);
            out.push_str(&channel.masked(&span).unwrap_or_else(|| piece.to_owned()));
            channel.release(span.end);
        }
    }
    assert!(held.is_empty(), "the end of the stream releases everything");
    if findings.is_empty() {
        assert_eq!(out, text);
    }
}
