//! A text as the detector sees it: normalized once, hashed once into feature
//! occurrences (character 3–5-grams of the text padded with a space at each end, words,
//! pairs of adjacent words), each n-gram's CRC-32 (as `zlib.crc32`) masked to
//! [`BUCKETS`], exactly as `eval/detector_scoring.py` does.
//!
//! The CRC is a table-driven byte loop rather than the `crc32fast` crate: each 4- and
//! 5-gram extends the state of the shorter one, a byte at a time, and the crate's
//! per-call dispatch cost more than the whole budget for a 4 KiB prompt.

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

pub(super) const BUCKETS: usize = 1 << 17;
/// A character n-gram that does not exist (it would run past the padded text's end).
pub(super) const NONE: u32 = u32::MAX;

/// CRC-32 (IEEE, reflected, as zlib's): the table, and the state after some bytes.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
};

pub(super) const fn crc_update(mut crc: u32, bytes: &[u8]) -> u32 {
    let mut i = 0;
    while i < bytes.len() {
        crc = CRC_TABLE[((crc ^ bytes[i] as u32) & 0xFF) as usize] ^ (crc >> 8);
        i += 1;
    }
    crc
}

/// The CRC state after each feature kind's tag byte.
const CHAR_TAG: u32 = crc_update(!0, b"c");
const WORD_TAG: u32 = crc_update(!0, b"w");
const PAIR_TAG: u32 = crc_update(!0, b"b");

fn bucket(crc: u32) -> u32 {
    !crc & (BUCKETS as u32 - 1)
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || !c.is_ascii()
}

/// A normalized text and its feature occurrences. Positions are characters of the
/// normalized text; the buffers are reused from one text to the next.
#[derive(Default)]
pub(super) struct Occurrences {
    /// The normalized text, padded with a space at each end.
    padded: String,
    /// Byte offset in `padded` of each of its characters, and its length; left empty
    /// when the text is ASCII (offsets are positions).
    bounds: Vec<u32>,
    ascii: bool,
    /// Byte offset in the raw text of the character each normalized character came
    /// from (for a collapsed whitespace run, its first character).
    origin: Vec<u32>,
    /// The raw text's byte offset after the last character that was not whitespace.
    end: usize,
    /// `grams[3 * i + k]`: the bucket of the (k + 3)-gram at padded position `i`.
    pub grams: Vec<u32>,
    /// Character ranges of the words.
    pub words: Vec<(u32, u32)>,
    pub word_buckets: Vec<u32>,
    /// `pair_buckets[k]` joins words `k` and `k + 1`.
    pub pair_buckets: Vec<u32>,
}

impl Occurrences {
    /// Normalizes `raw` as the training script does (each character NFKC on its own,
    /// ASCII letters lowercased, whitespace runs collapsed to one space, trimmed) and
    /// hashes its features.
    pub(super) fn fill(&mut self, raw: &str) {
        self.normalize(raw);
        self.hash();
    }

    /// Characters in the normalized text.
    pub(super) fn len(&self) -> usize {
        self.origin.len()
    }

    /// The raw text's byte range of the normalized characters `a..b`.
    pub(super) fn raw_range(&self, a: usize, b: usize) -> std::ops::Range<usize> {
        let start = self.origin.get(a).map_or(self.end, |&o| o as usize);
        let end = self.origin.get(b).map_or(self.end, |&o| o as usize);
        start..end.max(start)
    }

    /// Drops buffers a very long text grew, so that one huge prompt does not pin its
    /// scratch memory to the thread for good.
    pub(super) fn shrink(&mut self, chars: usize) {
        if self.grams.capacity() > 3 * chars {
            *self = Occurrences::default();
        }
    }

    fn normalize(&mut self, raw: &str) {
        self.padded.clear();
        self.origin.clear();
        self.end = 0;
        self.padded.push(' ');
        let mut space: Option<usize> = None;
        let mut push = |this: &mut Self, at: usize, end: usize, c: char| {
            if matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{0B}' | '\u{0C}') {
                space.get_or_insert(at);
                return;
            }
            if let Some(s) = space.take()
                && !this.origin.is_empty()
            {
                this.padded.push(' ');
                this.origin.push(s as u32);
            }
            this.padded.push(c.to_ascii_lowercase());
            this.origin.push(at as u32);
            this.end = end;
        };
        for (at, c) in raw.char_indices() {
            let end = at + c.len_utf8();
            // A character that NFKC leaves as it is (all ASCII among them) skips the work.
            if c.is_ascii() || is_nfkc_quick(std::iter::once(c)) == IsNormalized::Yes {
                push(self, at, end, c);
            } else {
                for d in std::iter::once(c).nfkc() {
                    push(self, at, end, d);
                }
            }
        }
        self.padded.push(' ');
        self.bounds.clear();
        self.ascii = self.padded.is_ascii();
        if !self.ascii {
            self.bounds.extend(self.padded.char_indices().map(|(i, _)| i as u32));
            self.bounds.push(self.padded.len() as u32);
        }
    }

    fn hash(&mut self) {
        let bytes = self.padded.as_bytes();
        let ascii = self.ascii;
        let chars = if ascii { bytes.len() } else { self.bounds.len() - 1 };
        let bounds = &self.bounds;
        let at = |i: usize| if ascii { i } else { bounds[i] as usize };
        self.grams.clear();
        self.grams.resize(3 * chars, NONE);
        for i in 0..chars.saturating_sub(2) {
            let mut crc = crc_update(CHAR_TAG, &bytes[at(i)..at(i + 3)]);
            self.grams[3 * i] = bucket(crc);
            for n in [4, 5] {
                if i + n > chars {
                    break;
                }
                crc = crc_update(crc, &bytes[at(i + n - 1)..at(i + n)]);
                self.grams[3 * i + n - 3] = bucket(crc);
            }
        }

        self.words.clear();
        let mut start = None;
        // Character i of the normalized text is character i + 1 of the padded one.
        for (i, c) in self.padded.chars().skip(1).take(chars - 2).enumerate() {
            match (is_word_char(c), start) {
                (true, None) => start = Some(i as u32),
                (false, Some(s)) => {
                    self.words.push((s, i as u32));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            self.words.push((s, (chars - 2) as u32));
        }
        let word = |(s, e): (u32, u32)| &bytes[at(s as usize + 1)..at(e as usize + 1)];
        self.word_buckets.clear();
        self.word_buckets.extend(self.words.iter().map(|&w| bucket(crc_update(WORD_TAG, word(w)))));
        self.pair_buckets.clear();
        self.pair_buckets.extend(self.words.windows(2).map(|pair| {
            let first = crc_update(crc_update(PAIR_TAG, word(pair[0])), b" ");
            bucket(crc_update(first, word(pair[1])))
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crc_is_zlibs() {
        // zlib.crc32(b"123456789") == 0xCBF43926, the standard check value.
        assert_eq!(!crc_update(!0, b"123456789"), 0xCBF4_3926);
        assert_eq!(!crc_update(crc_update(!0, b"1234"), b"56789"), 0xCBF4_3926, "incremental");
    }

    #[test]
    fn normalization_keeps_where_each_character_came_from() {
        let mut occ = Occurrences::default();
        let raw = "  Ｈi\n\n\tthere  ";
        occ.fill(raw);
        assert_eq!(occ.padded, " hi there ");
        assert_eq!(occ.words, vec![(0, 2), (3, 8)]);
        // "there" starts at raw byte 9 (after two spaces, the 3-byte fullwidth H, "i"
        // and three whitespace characters); the space before it maps to the first of
        // them, and a range to the end stops before the trailing spaces.
        assert_eq!(&raw[occ.raw_range(3, 8)], "there");
        assert_eq!(&raw[occ.raw_range(0, 2)], "Ｈi");
        assert_eq!(occ.raw_range(2, 3), 6..9, "the collapsed space is the whitespace run");
        assert_eq!(occ.grams.len(), 3 * occ.padded.len());
        assert_eq!(occ.grams[3 * (occ.padded.len() - 3) + 1], NONE, "no 4-gram past the end");
    }
}
