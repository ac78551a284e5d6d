//! Which windows of a text the detector scores: fixed segments for long attacks, and
//! word-aligned windows that fit an instruction planted in longer text, so that it
//! scores about as it does alone wherever it sits (`eval/detector_scoring.py` explains
//! the search; the two must pick the same windows, so the arithmetic here is integer
//! sums and `f32` ratios, as there).

use super::features::{NONE, Occurrences};

/// Characters in a fixed segment, and between the starts of two (the training script's
/// `SEGMENT` and `STRIDE`).
pub(super) const SEGMENT: usize = 512;
pub(super) const STRIDE: usize = 256;
/// The shortest and longest word-aligned window, in characters.
pub(super) const MIN_WINDOW: usize = 40;
pub(super) const MAX_WINDOW: usize = 512;
/// How many of the best word-aligned windows are scored exactly.
pub(super) const CANDIDATES: usize = 4;

/// The fixed segments of a text of `len` characters: one for a short text, else one
/// every [`STRIDE`] characters until one reaches the end.
pub(super) fn segments(len: usize) -> impl Iterator<Item = (usize, usize)> {
    let count = if len <= SEGMENT { 1 } else { (len - SEGMENT).div_ceil(STRIDE) + 1 };
    (0..count).map(move |k| (k * STRIDE, (k * STRIDE + SEGMENT).min(len)))
}

/// Buffers for the word-aligned search, reused from one text to the next.
#[derive(Default)]
pub(super) struct Search {
    /// Prefix sums over the words of their approximate contribution and occurrence
    /// count. They wrap (a long text's sum may not fit); a window's difference always
    /// fits, so it is exact, as the script's 64-bit sums are.
    total: Vec<i32>,
    count: Vec<i32>,
    /// For each word with a positive contribution: its index, where it ends, and the
    /// prefix sums after it (a window's end).
    positive: Vec<u32>,
    end: Vec<u32>,
    end_total: Vec<i32>,
    end_count: Vec<i32>,
    ratios: Vec<f32>,
    found: Vec<(f32, u32, u32)>,
}

impl Search {
    /// The [`CANDIDATES`] word-aligned windows with the best approximate ratio of summed
    /// weight to the square root of the occurrence count, as character ranges, added to
    /// `out` unless it holds them already.
    pub(super) fn candidates(&mut self, occ: &Occurrences, weights: &[i16], out: &mut Vec<(usize, usize)>) {
        let words = &occ.words;
        if words.is_empty() || occ.len() <= MIN_WINDOW {
            return;
        }
        self.units(occ, weights);
        self.found.clear();
        let (mut lo, mut hi) = (0, 0);
        for n in 0..self.positive.len() {
            let i = self.positive[n] as usize;
            let start = words[i].0;
            // Both bounds only move right as the start does.
            (lo, hi) = (lo.max(n), hi.max(n));
            while lo < self.end.len() && self.end[lo] - start < MIN_WINDOW as u32 {
                lo += 1;
            }
            while hi < self.end.len() && self.end[hi] - start <= MAX_WINDOW as u32 {
                hi += 1;
            }
            if lo >= hi {
                continue;
            }
            let (total, count) = (self.total[i], self.count[i]);
            self.ratios.clear();
            // A loop the compiler vectorizes: no branch, no early exit.
            self.ratios.extend(
                self.end_total[lo..hi]
                    .iter()
                    .zip(&self.end_count[lo..hi])
                    .map(|(&t, &c)| t.wrapping_sub(total) as f32 / (c.wrapping_sub(count) as f32).sqrt()),
            );
            let mut best = (0.0f32, 0);
            for (m, &ratio) in self.ratios.iter().enumerate() {
                if ratio > best.0 {
                    best = (ratio, m);
                }
            }
            if best.0 > 0.0 {
                self.found.push((best.0, i as u32, self.positive[lo + best.1]));
            }
        }
        self.found.sort_unstable_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        for &(_, i, j) in self.found.iter().take(CANDIDATES) {
            let window = (words[i as usize].0 as usize, words[j as usize].1 as usize);
            // A short text's one segment is often its best word-aligned window too: an
            // equal window scores the same, so it is scored once.
            if !out.contains(&window) {
                out.push(window);
            }
        }
    }

    /// Each word's unit: the n-grams starting from its start (the space before it) to
    /// the next word's, the word, and its pair with the next word; their summed weight
    /// and count, as prefix sums.
    fn units(&mut self, occ: &Occurrences, weights: &[i16]) {
        let words = &occ.words;
        let weight = |b: u32| i32::from(weights[b as usize]);
        for v in [&mut self.total, &mut self.count, &mut self.end_total, &mut self.end_count] {
            v.clear();
        }
        self.positive.clear();
        self.end.clear();
        self.total.push(0);
        self.count.push(0);
        let padded = occ.len() + 2;
        let (mut sum_total, mut sum_count) = (0i32, 0i32);
        for k in 0..words.len() {
            let from = if k == 0 { 0 } else { words[k].0 as usize };
            let to = words.get(k + 1).map_or(padded, |w| w.0 as usize);
            let (mut total, mut count) = (weight(occ.word_buckets[k]), 1);
            for &g in &occ.grams[3 * from..3 * to] {
                if g != NONE {
                    total += weight(g);
                    count += 1;
                }
            }
            if let Some(&p) = occ.pair_buckets.get(k) {
                total += weight(p);
                count += 1;
            }
            sum_total = sum_total.wrapping_add(total);
            sum_count = sum_count.wrapping_add(count);
            self.total.push(sum_total);
            self.count.push(sum_count);
            if total > 0 {
                self.positive.push(k as u32);
                self.end.push(words[k].1);
                self.end_total.push(sum_total);
                self.end_count.push(sum_count);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cover_the_text_every_stride() {
        assert_eq!(segments(0).collect::<Vec<_>>(), vec![(0, 0)]);
        assert_eq!(segments(SEGMENT).collect::<Vec<_>>(), vec![(0, SEGMENT)]);
        assert_eq!(segments(SEGMENT + 1).collect::<Vec<_>>(), vec![(0, SEGMENT), (STRIDE, SEGMENT + 1)]);
        let long: Vec<_> = segments(2000).collect();
        assert_eq!(long.first(), Some(&(0, SEGMENT)));
        assert_eq!(long.last().map(|s| s.1), Some(2000));
        assert!(long.windows(2).all(|w| w[1].0 == w[0].0 + STRIDE));
        assert!(long.iter().rev().nth(1).is_some_and(|s| s.1 < 2000), "the last one only reaches the end");
    }
}
