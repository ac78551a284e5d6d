//! Prompt normalisation: NFKC with invisible characters dropped, and the map from the
//! normalised text back to the bytes received. Every range of the normalised text maps
//! to a range of the raw text, in order and on character boundaries.
#![no_main]

use godel_traps::Prompt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let prompt = Prompt::new(text);
    let normalized = prompt.normalized();
    let len = normalized.len();
    let boundaries: Vec<usize> = (0..=len).filter(|&i| normalized.is_char_boundary(i)).collect();
    let picks = [0, boundaries.len() / 3, boundaries.len() / 2, boundaries.len().saturating_sub(1)];
    for &a in &picks {
        for &b in &picks {
            let (start, end) = (boundaries[a.min(b)], boundaries[a.max(b)]);
            let raw = prompt.to_raw(start..end);
            assert!(raw.start <= raw.end && raw.end <= text.len(), "{start}..{end} -> {raw:?}");
            assert!(text.is_char_boundary(raw.start) && text.is_char_boundary(raw.end), "{raw:?}");
        }
    }
});
