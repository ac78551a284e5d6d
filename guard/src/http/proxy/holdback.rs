//! The hold-back scanner of a streamed answer: each channel's text (a choice's content,
//! a tool call's arguments) is scanned as it grows, and only the text a finding could
//! still be part of is held back: the trailing run of non-space characters, and at least
//! [`HOLD_MIN`] bytes (card and phone numbers contain spaces). A secret split across
//! chunks is so masked whole while the client still sees the stream move. A finding
//! longer than [`HOLD_MAX`] can be cut only from that point on.

use std::ops::Range;

use godel_config::OutputAction;
use godel_traps::Finding;

use crate::engine::mask;

/// Text held back at the end of a streamed channel, at least.
const HOLD_MIN: usize = 64;
/// Text held back at most, however long the trailing token.
const HOLD_MAX: usize = 4096;
/// Released text rescanned with new text, so a key word just before a secret counts.
const CONTEXT: usize = 256;

/// The text of one channel, kept from a little before what has been released.
#[derive(Default)]
pub(super) struct Channel {
    text: String,
    /// Offset of `text[0]` in the channel's whole text.
    base: usize,
    released: usize,
    scanned: usize,
    hits: Vec<(Range<usize>, Finding)>,
}

impl Channel {
    pub(super) fn end(&self) -> usize {
        self.base + self.text.len()
    }

    /// Appends a piece of the channel's text; its span in the whole text.
    pub(super) fn push(&mut self, piece: &str) -> Range<usize> {
        let start = self.end();
        self.text.push_str(piece);
        start..self.end()
    }

    /// How far text may go out now: all but what a finding could still be part of.
    pub(super) fn safe_end(&self, action: OutputAction) -> usize {
        if action == OutputAction::Flag {
            return usize::MAX;
        }
        let trailing = self.text.bytes().rev().take_while(|b| !b.is_ascii_whitespace()).count();
        self.end().saturating_sub(trailing.clamp(HOLD_MIN, HOLD_MAX))
    }

    /// Scans the text from a little before the released point to the end with the
    /// answer traps (`inspect`), once per growth; new findings are kept with offsets in
    /// the whole text.
    pub(super) fn scan(&mut self, inspect: impl Fn(&str) -> Vec<Finding>, all: &mut Vec<Finding>) {
        if self.scanned == self.end() {
            return;
        }
        let mut from = self.released.saturating_sub(CONTEXT).max(self.base) - self.base;
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        let offset = self.base + from;
        for f in inspect(&self.text[from..]) {
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
    pub(super) fn masked(&self, span: &Range<usize>) -> Option<String> {
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
    pub(super) fn release(&mut self, to: usize) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use godel_config::Action;

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
            trap: godel_traps::TrapKind::Regex,
            rule: "aws-access-key-id".into(),
            severity: godel_config::Severity::Critical,
            action: Action::Block,
            start,
            end,
        }
    }
}
