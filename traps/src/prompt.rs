//! The text the traps read: the prompt as received plus an NFKC-normalized view with
//! invisible characters dropped, and a map from the view's byte offsets back to the
//! original's, so every finding can name the exact bytes a client sent.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::ops::Range;

use unicode_normalization::char::canonical_combining_class;
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

use super::entropy::{Run, token_runs};
use super::unicode::is_hidden;

/// A prompt ready for inspection.
pub struct Prompt<'a> {
    raw: &'a str,
    normalized: Cow<'a, str>,
    /// One entry per normalized segment: (start in `normalized`, range in `raw`).
    /// `None` when `normalized` is `raw` itself (the common, all-ASCII case).
    segments: Option<Vec<(usize, Range<usize>)>>,
    /// The normalized text's base64-alphabet runs, found once for the traps that judge
    /// or decode tokens.
    token_runs: OnceCell<Vec<Run>>,
}

impl<'a> Prompt<'a> {
    pub fn new(raw: &'a str) -> Self {
        if raw.is_ascii() || (is_nfkc_quick(raw.chars()) == IsNormalized::Yes && !raw.chars().any(is_hidden)) {
            return Self { raw, normalized: Cow::Borrowed(raw), segments: None, token_runs: OnceCell::new() };
        }
        let mut normalized = String::with_capacity(raw.len());
        let mut segments = Vec::new();
        // A segment is a starter with the combining marks that follow it, the unit
        // that NFKC composes, so normalizing segment by segment equals normalizing
        // the whole text while letting us remember where each segment came from.
        let mut start = 0;
        let mut chars = raw.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            let mut end = i + c.len_utf8();
            while let Some(&(j, next)) = chars.peek() {
                if canonical_combining_class(next) == 0 {
                    break;
                }
                end = j + next.len_utf8();
                chars.next();
            }
            debug_assert_eq!(start, i);
            let out_start = normalized.len();
            normalized.extend(raw[i..end].chars().filter(|&c| !is_hidden(c)).nfkc());
            if normalized.len() > out_start {
                segments.push((out_start, i..end));
            }
            start = end;
        }
        Self { raw, normalized: Cow::Owned(normalized), segments: Some(segments), token_runs: OnceCell::new() }
    }

    /// The prompt as the client sent it.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// NFKC with invisible characters dropped: what the pattern traps match against.
    pub fn normalized(&self) -> &str {
        &self.normalized
    }

    /// The runs of at least [`TOKEN_RUN`](super::entropy::TOKEN_RUN) base64-alphabet bytes
    /// in [`Prompt::normalized`], scanned on first use: the entropy and decode traps read
    /// the same runs, so the text is scanned for them once.
    pub(crate) fn token_runs(&self) -> &[Run] {
        self.token_runs.get_or_init(|| token_runs(self.normalized.as_bytes()))
    }

    /// Maps a byte range of [`Prompt::normalized`] to the range of [`Prompt::raw`]
    /// that produced it (widened to whole source segments).
    pub fn to_raw(&self, range: Range<usize>) -> Range<usize> {
        let Some(segments) = &self.segments else {
            return range;
        };
        let segment_of = |offset: usize| match segments.binary_search_by(|(s, _)| s.cmp(&offset)) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        if range.start >= range.end || range.start >= self.normalized.len() {
            // An empty range maps to where its segment starts: an offset of the
            // normalized text is no offset of the raw one, nor always a char boundary.
            let at = if range.start < self.normalized.len() {
                segments[segment_of(range.start)].1.start
            } else {
                self.raw.len()
            };
            return at..at;
        }
        let first = &segments[segment_of(range.start)].1;
        let last = &segments[segment_of(range.end - 1)].1;
        first.start..last.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `prompt` fuzz target: an empty range in a text whose normalized
    /// offsets differ from the raw ones mapped into the middle of a character.
    #[test]
    fn an_empty_range_maps_to_a_character_boundary() {
        let raw = "\u{1F469}\u{200D}\u{1F4BB} family \u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467} \u{FE0F}\u{FE0E}";
        let p = Prompt::new(raw);
        assert_ne!(p.normalized().len(), raw.len());
        for at in 0..=p.normalized().len() {
            let mapped = p.to_raw(at..at);
            assert!(mapped.is_empty() && raw.is_char_boundary(mapped.start), "{at} -> {mapped:?}");
        }
        assert_eq!(p.to_raw(p.normalized().len()..p.normalized().len()), raw.len()..raw.len());
    }

    #[test]
    fn ascii_is_borrowed_and_identity_mapped() {
        let p = Prompt::new("hello world");
        assert!(matches!(p.normalized, Cow::Borrowed(_)));
        assert_eq!(p.to_raw(6..11), 6..11);
    }

    /// Fullwidth letters normalize, hidden characters drop, combining marks compose with
    /// their base; each normalized span maps back to the raw text it came from.
    #[test]
    fn normalized_spans_map_back_to_the_raw_text() {
        for (raw, normalized, span, raw_text) in [
            ("say ｉｇｎｏｒｅ now", "say ignore now", 4..10, "ｉｇｎｏｒｅ"),
            ("ig\u{200B}nore previous", "ignore previous", 0..6, "ig\u{200B}nore"),
            ("cafe\u{301} ok", "café ok", 3..5, "e\u{301}"),
        ] {
            let p = Prompt::new(raw);
            assert_eq!(p.normalized(), normalized);
            assert_eq!(&raw[p.to_raw(span)], raw_text, "{raw:?}");
        }
    }
}
