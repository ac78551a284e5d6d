//! Random-looking tokens: keys and tokens that no pattern knows. Candidate tokens are
//! runs of the base64 (standard and URL-safe) alphabet; a token made only of hex digits
//! is judged against the hex threshold, any other against the base64 one, as secret
//! scanners such as detect-secrets do.

use godel_crds::{Action, AllowShape, EntropyConfig, Severity};

use super::{Finding, Prompt, Trap};

pub struct EntropyTrap {
    min_length: usize,
    base64_threshold: f64,
    hex_threshold: f64,
    action: Action,
    severity: Severity,
    allow_uuid: bool,
    allow_git_sha: bool,
}

const B64: u8 = 1;
const HEX: u8 = 2;

/// Byte classes: base64 body characters, and which of them are hex digits.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'-' || c == b'_' {
            t[b] = B64;
        }
        if c.is_ascii_hexdigit() {
            t[b] |= HEX;
        }
        b += 1;
    }
    t
};

/// Words that, just before a 40- or 64-hex-digit token, make it a git object id.
const GIT_CONTEXT: [&str; 6] = ["commit", "revert", "cherry", "merge", "sha", "fixup"];

impl EntropyTrap {
    pub fn new(config: &EntropyConfig) -> Self {
        Self {
            min_length: config.min_length.max(1),
            base64_threshold: config.base64_threshold,
            hex_threshold: config.hex_threshold,
            action: config.action,
            severity: config.severity,
            allow_uuid: config.allow.contains(&AllowShape::Uuid),
            allow_git_sha: config.allow.contains(&AllowShape::GitSha),
        }
    }

    fn judge(&self, text: &[u8], start: usize, end: usize, all_hex: bool) -> Option<&'static str> {
        let token = &text[start..end];
        if all_hex {
            if self.allow_git_sha && (token.len() == 40 || token.len() == 64) && after_git_word(text, start) {
                return None;
            }
            (shannon(token) > self.hex_threshold).then_some("high-entropy-hex")
        } else {
            if self.allow_uuid && is_uuid(token) {
                return None;
            }
            (shannon(token) > self.base64_threshold).then_some("high-entropy-base64")
        }
    }
}

impl Trap for EntropyTrap {
    fn inspect(&self, prompt: &Prompt<'_>, findings: &mut Vec<Finding>) {
        let text = prompt.normalized().as_bytes();
        let in_run = |b: u8| CLASS[b as usize] & B64 != 0;
        let min = self.min_length;
        let mut i = 0;
        // Any run of at least `min` bytes starting at or after `i` covers byte
        // `i + min - 1`, so when that byte is outside the alphabet the whole window is
        // skipped: prose is scanned a word per probe rather than a byte per step.
        while i + min <= text.len() {
            let probe = i + min - 1;
            if !in_run(text[probe]) {
                i = probe + 1;
                continue;
            }
            let mut start = probe;
            while start > i && in_run(text[start - 1]) {
                start -= 1;
            }
            let mut end = probe + 1;
            while end < text.len() && in_run(text[end]) {
                end += 1;
            }
            let mut padded = end;
            while padded < text.len() && text[padded] == b'=' {
                padded += 1;
            }
            i = padded;
            if end - start < min {
                continue;
            }
            let all_hex = text[start..end].iter().all(|&b| CLASS[b as usize] & HEX != 0);
            if let Some(rule) = self.judge(text, start, end, all_hex) {
                let span = prompt.to_raw(start..padded);
                findings.push(Finding {
                    trap: "entropy",
                    rule: rule.into(),
                    severity: self.severity,
                    action: self.action,
                    start: span.start,
                    end: span.end,
                });
            }
        }
    }
}

/// Shannon entropy in bits per symbol.
fn shannon(token: &[u8]) -> f64 {
    let mut counts = [0u32; 128];
    for &b in token {
        counts[(b & 0x7f) as usize] += 1;
    }
    let n = token.len() as f64;
    let sum: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let c = f64::from(c);
            c * c.log2()
        })
        .sum();
    n.log2() - sum / n
}

fn is_uuid(token: &[u8]) -> bool {
    token.len() == 36
        && token.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

fn after_git_word(text: &[u8], start: usize) -> bool {
    let before = &text[start.saturating_sub(24)..start];
    let line = match before.iter().rposition(|&b| b == b'\n') {
        Some(nl) => &before[nl + 1..],
        None => before,
    };
    let lower = line.to_ascii_lowercase();
    GIT_CONTEXT.iter().any(|w| lower.windows(w.len()).any(|win| win == w.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(config: &EntropyConfig, text: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        EntropyTrap::new(config).inspect(&Prompt::new(text), &mut out);
        out.into_iter().map(|f| (f.rule.to_string(), text[f.start..f.end].to_string())).collect()
    }

    fn default_rules(text: &str) -> Vec<(String, String)> {
        rules(&EntropyConfig::default(), text)
    }

    #[test]
    fn shannon_matches_known_values() {
        assert_eq!(shannon(b"aaaa"), 0.0);
        assert!((shannon(b"abcd") - 2.0).abs() < 1e-9);
        assert!((shannon(b"0123456789abcdef") - 4.0).abs() < 1e-9);
    }

    #[test]
    fn random_base64_secret_is_found_with_exact_span() {
        let text = "token: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY9q== thanks";
        assert_eq!(
            default_rules(text),
            vec![("high-entropy-base64".into(), "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY9q==".into())]
        );
    }

    #[test]
    fn random_hex_secret_is_found() {
        let found = default_rules("secret=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b");
        assert_eq!(found[0].0, "high-entropy-hex");
    }

    #[test]
    fn prose_and_code_are_clean() {
        let prose = "The quick brown fox jumps over the lazy dog. Internationalization and \
                     counterrevolutionaries are long words, as is pneumonoultramicroscopicsilicovolcanoconiosis.";
        let code = "fn calculate_monthly_payment_with_interest(principal: f64) -> f64 {\n    \
                    let accumulated_interest_rate_per_period = principal * 0.05;\n}\n\
                    import { useCallback, useEffectOnce } from 'react-hooks/dist/esm/index';";
        assert!(default_rules(prose).is_empty());
        assert!(default_rules(code).is_empty(), "{:?}", default_rules(code));
    }

    #[test]
    fn uuids_are_allowed_by_default_and_found_when_not() {
        let text = "request 3f2b8c1e-9d4a-4f6b-8e2a-7c5d1b9e0f3a failed";
        assert!(default_rules(text).is_empty());
        let strict = EntropyConfig { allow: vec![], base64_threshold: 3.0, ..EntropyConfig::default() };
        assert_eq!(rules(&strict, text).len(), 1);
    }

    #[test]
    fn git_sha_after_commit_word_is_allowed_only_when_the_policy_says_so() {
        let text = "This reverts commit 2f8a3c9e1b7d4f6a0c5e8b2d9f1a3c7e5b0d4f8a.";
        assert_eq!(default_rules(text).len(), 1, "hex tokens are suspect by default");
        let allowing = EntropyConfig { allow: vec![AllowShape::Uuid, AllowShape::GitSha], ..EntropyConfig::default() };
        assert!(rules(&allowing, text).is_empty());
        let bare = "my key is 2f8a3c9e1b7d4f6a0c5e8b2d9f1a3c7e5b0d4f8a";
        assert_eq!(rules(&allowing, bare).len(), 1, "a bare 40-hex token is still a secret");
    }

    /// The skip-ahead scan must find exactly the runs a byte-by-byte scan finds.
    #[test]
    fn skipping_scan_finds_every_run_a_plain_scan_finds() {
        let everything = EntropyConfig {
            base64_threshold: -1.0,
            hex_threshold: -1.0,
            allow: vec![],
            min_length: 7,
            ..EntropyConfig::default()
        };
        let alphabet = b"aZ09+/_-= .,\n";
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..200 {
            let text: String = (0..300)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Mostly alphabet bytes, so runs of every length occur.
                    alphabet[(x % 100) as usize % if x.is_multiple_of(7) { alphabet.len() } else { 8 }] as char
                })
                .collect();
            let bytes = text.as_bytes();
            let mut expected = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                if CLASS[bytes[i] as usize] & B64 == 0 {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < bytes.len() && CLASS[bytes[i] as usize] & B64 != 0 {
                    i += 1;
                }
                let body = i;
                while i < bytes.len() && bytes[i] == b'=' {
                    i += 1;
                }
                if body - start >= 7 {
                    expected.push((start, i));
                }
            }
            let mut found = Vec::new();
            EntropyTrap::new(&everything).inspect(&Prompt::new(&text), &mut found);
            let found: Vec<_> = found.iter().map(|f| (f.start, f.end)).collect();
            assert_eq!(found, expected, "{text:?}");
        }
    }

    #[test]
    fn short_tokens_are_ignored() {
        assert!(default_rules("x9Qz7Lp2Wv").is_empty());
    }
}
