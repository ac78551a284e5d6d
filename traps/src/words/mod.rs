//! Does a token read as words? Code is full of long identifiers that mix cases and digits
//! (`Tls13CipherSuite`, `aws_lc_0_47_0_X509_trust_clear`, `FormatDescriptionV3`) and of
//! paths and sequences (`org/licenses/LICENSE-2`, the base64 alphabet): random by the
//! character count, written by people by their letters. A key's letters follow each
//! other at random; an identifier's follow the way words are spelled.
//!
//! The test splits a token into words at case changes, digits and punctuation
//! (`HTTPServer2Config` → `http`, `server`, `config`) and scores how likely each letter
//! follows the one before in the words programmers write (the table in `bigrams.rs`,
//! written by `eval/letter_bigrams.py`). A token reads as words when most of its letters
//! sit in words of three letters or more and those words score above a bar that random
//! tokens of every alphabet and length reach less than about one time in a hundred
//! (mixed case, lower case and digits, upper case and digits; 12 to 48 characters).

mod bigrams;

use bigrams::{BIGRAMS, SCALE};

/// Mean natural-log probability per letter transition that words reach and keys do not.
const WORDLIKE: f64 = -3.0;
/// The bar for one piece of a path: compound words (`hashbrown`) score lower.
const COMPOUND: f64 = -3.6;
/// A piece of a path this long could be a key by itself, and is judged alone too.
const PIECE: usize = 12;
/// Share of the letters that must sit in words of at least three letters.
const COVERAGE: f64 = 0.75;
const EDGE: usize = 26;

/// Whether `token` is words, a path of words or a run of consecutive characters rather
/// than a key. Pieces between `/` and `.` that are only hex digits (commit ids, versions)
/// are left out; the words of the rest, together, must read as spelled, and each piece
/// long enough to be a key on its own must at least read as a compound word does.
pub fn reads_as_words(token: &[u8]) -> bool {
    let pieces = || token.split(|&b| b == b'/' || b == b'.').filter(|p| !p.iter().all(u8::is_ascii_hexdigit));
    is_sequence(token)
        || (spelled(pieces().flat_map(split_words), WORDLIKE)
            && pieces().filter(|p| p.len() >= PIECE).all(|p| spelled(split_words(p), COMPOUND)))
}

/// Most pairs of neighbours consecutive or equal: `ABCDEF…`, `0123456789`, `xxxxxxxx`.
fn is_sequence(token: &[u8]) -> bool {
    let steps = token.windows(2).filter(|w| w[0].abs_diff(w[1]) <= 1).count();
    token.len() >= 2 && steps * 2 >= token.len() - 1
}

/// The words cover most of their letters and score above `bar` per letter transition.
fn spelled<'a>(words: impl Iterator<Item = &'a [u8]>, bar: f64) -> bool {
    let (mut letters, mut covered, mut transitions, mut score) = (0usize, 0usize, 0usize, 0i64);
    for word in words {
        letters += word.len();
        if word.len() < 3 {
            continue;
        }
        covered += word.len();
        let mut before = EDGE;
        for &b in word {
            let letter = usize::from(b.to_ascii_lowercase() - b'a');
            score += i64::from(BIGRAMS[before][letter]);
            before = letter;
        }
        score += i64::from(BIGRAMS[before][EDGE]);
        transitions += word.len() + 1;
    }
    transitions > 0 && covered as f64 >= COVERAGE * letters as f64 && score as f64 / SCALE / transitions as f64 > bar
}

/// The words of an ASCII piece: runs of lower case letters, each with the capital before
/// it; a run of capitals is an acronym, except its last when lower case follows
/// (`HTTPServer` → `HTTP`, `Server`). Digits and punctuation separate words.
fn split_words(piece: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = 0;
    std::iter::from_fn(move || {
        while at < piece.len() && !piece[at].is_ascii_alphabetic() {
            at += 1;
        }
        if at == piece.len() {
            return None;
        }
        let start = at;
        let capitals = piece[at..].iter().take_while(|b| b.is_ascii_uppercase()).count();
        at += capitals;
        let lower = piece[at..].iter().take_while(|b| b.is_ascii_lowercase()).count();
        if capitals > 1 && lower > 0 {
            // The last capital starts the next word.
            at -= 1;
            return Some(&piece[start..at]);
        }
        at += lower;
        Some(&piece[start..at])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_split_at_case_changes_digits_and_punctuation() {
        let words: Vec<&[u8]> = split_words(b"HTTPServer2Config_utf8X").collect();
        assert_eq!(words, [&b"HTTP"[..], b"Server", b"Config", b"utf", b"X"]);
        assert_eq!(split_words(b"2_-").count(), 0);
    }

    #[test]
    fn identifiers_paths_and_sequences_read_as_words() {
        for token in [
            "Tls13CipherSuite",
            "Utf16AstralHandle",
            "FormatDescriptionV3",
            "Chacha20Poly1305Aead",
            "aws_lc_0_47_0_X509_trust_clear",
            "AuthorizationCodeGrantDispatcher",
            "derive_poly1305_key",
            "org/licenses/LICENSE-2",
            "com/rust-lang/hashbrown/commit/64bd7db1d1b148594edfde112cdb6d6260e2cfc3",
            "self.get_key1_index",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
            "0xFEDCBA9876543210u64",
        ] {
            assert!(reads_as_words(token.as_bytes()), "{token}");
        }
    }

    #[test]
    fn keys_do_not_read_as_words() {
        for token in [
            "yoo3d5pu3t4zxd6x1vhk7ykmjqarbsv1",
            "q7bK3xV9mN2pR8sW4yQ7bK3xV9mN2pR8sW4yZ8Ab",
            "OTM0Bp42sFTRB",
            "Y6YWq0NfYgyJCL0",
            "wjXKCFzOWEPRqhTmmbWtVQ",
            "mlhekyjhs96mx0r2cxbzky4jzr83fw1q",
            "9daffb10cf8852c2d80dfda215ee5b32",
            "K7MDENG/bPxRfiCYzQ1/aB9xLm",
            "services/TAGGINGEXAMPLE/BASE/91nziTEEzAAcaNZiz1mPPoXyS",
        ] {
            assert!(!reads_as_words(token.as_bytes()), "{token}");
        }
    }

    /// Random tokens of the alphabets keys are made of, from a fixed-seed generator:
    /// at most about one in a hundred reads as words.
    #[test]
    fn random_tokens_rarely_read_as_words() {
        let alphabets: [&[u8]; 3] = [
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            b"abcdefghijklmnopqrstuvwxyz0123456789",
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
        ];
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for alphabet in alphabets {
            for len in [12, 16, 24, 40] {
                let trials = 5_000;
                let worded = (0..trials)
                    .filter(|_| {
                        let token: Vec<u8> =
                            (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
                        reads_as_words(&token)
                    })
                    .count();
                assert!(worded * 100 <= trials * 3 / 2, "{len} of {:?}: {worded} of {trials}", alphabet[0] as char);
            }
        }
    }
}
