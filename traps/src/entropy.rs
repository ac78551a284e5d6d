//! Random-looking tokens: keys and tokens that no pattern knows. Candidate tokens are
//! runs of the base64 alphabet (standard and URL-safe). Public shapes are not secrets,
//! however random they look: digests and integrity hashes (`sha256:…`, `sha512-…`,
//! `h1:…`), public keys and certificates, data URIs, publishable keys. Hex (UUIDs and
//! git object ids included) is judged only after a key word on the same line; a token
//! with a vendor-style prefix (`sk_live_`, `xoxb-`) is judged on what follows it; the
//! bar falls with length, since a short token cannot reach the entropy of a long one,
//! and a short token must mix upper case, lower case and digits. A token whose letters
//! read as words (`Tls13CipherSuite`, `org/licenses/LICENSE-2`) is code, not a key.

use std::ops::Range;
use std::sync::LazyLock;

use godel_config::{Action, AllowShape, EntropyConfig, Severity};
use memchr::memmem::Finder;

use super::{Finding, Prompt, Trap, TrapKind, validators, words};

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

/// Words that, earlier on the line, make the next token a credential.
const KEY_WORDS: [&str; 12] = [
    "key",
    "token",
    "secret",
    "passw",
    "pwd",
    "auth",
    "credential",
    "bearer",
    "private",
    "session",
    "cookie",
    "signature",
];

/// What a public token directly follows: a digest's algorithm, a data URI's header, a
/// public key's type.
const PUBLIC_BEFORE: [&str; 14] = [
    ".tgz#",
    "sha1:",
    "sha256:",
    "sha384:",
    "sha512:",
    "md5:",
    "h1:",
    "base64,",
    "ssh-rsa ",
    "ssh-ed25519 ",
    "ssh-dss ",
    "ecdsa-sha2-nistp256 ",
    "ecdsa-sha2-nistp384 ",
    "ecdsa-sha2-nistp521 ",
];

/// The fields of a JSON Web Key that hold public numbers (an RSA modulus, a curve
/// point, a certificate thumbprint), as they end the line before the value, spaces
/// removed; they count only in a text that has a `"kty"`.
const JWK_PUBLIC_FIELDS: [&[u8]; 6] =
    [b"\"n\":\"", b"\"e\":\"", b"\"x\":\"", b"\"y\":\"", b"\"x5t\":\"", b"\"x5t#S256\":\""];

/// Prefixes that make the token itself public: integrity hashes, publishable keys.
const PUBLIC_PREFIXES: [&str; 6] = ["sha1-", "sha256-", "sha384-", "sha512-", "pk_live_", "pk_test_"];

/// How far back on the line a key word or public marker is looked for.
const CONTEXT: usize = 48;

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

    /// The bar for a base64 token of `len` characters: the configured one from 32
    /// characters, one bit lower per halving of the length below that.
    fn base64_bar(&self, len: usize) -> f64 {
        self.base64_threshold - (5.0 - (len as f64).log2()).max(0.0)
    }

    /// `public_blocks`: the spans of PEM/PGP public material in `text` ([`public_blocks`]).
    fn judge(&self, text: &str, public_blocks: &[Range<usize>], start: usize, end: usize) -> Option<&'static str> {
        let bytes = text.as_bytes();
        let token = &bytes[start..end];
        if PUBLIC_PREFIXES.iter().any(|p| token.starts_with(p.as_bytes())) {
            return None;
        }
        let before = line_before(bytes, start);
        let keyed = KEY_WORDS.iter().any(|w| before.windows(w.len()).any(|win| win.eq_ignore_ascii_case(w.as_bytes())));
        let after_public_marker = PUBLIC_BEFORE.iter().any(|p| ends_with_ignore_case(before, p.as_bytes()));
        if is_uuid(token) || token.iter().all(|&b| CLASS[b as usize] & HEX != 0) {
            let allowed = (self.allow_uuid && is_uuid(token))
                || (self.allow_git_sha && (token.len() == 40 || token.len() == 64) && !is_uuid(token));
            if !keyed || allowed || after_public_marker {
                return None;
            }
            let hex: Vec<u8> = token.iter().copied().filter(|&b| b != b'-').collect();
            // `reads_as_words` of hex is whether it runs in sequence (`1234abcd-…`, a placeholder).
            return (hex.len() >= self.min_length
                && shannon(&hex) > self.hex_threshold
                && !words::reads_as_words(token))
            .then_some("high-entropy-hex");
        }
        let public = after_public_marker || public_blocks.iter().any(|block| block.contains(&start));
        if public && !keyed {
            return None;
        }
        let body = &token[vendor_prefix(token)..];
        if body.len() < self.min_length {
            return None;
        }
        let digits = body.iter().any(u8::is_ascii_digit);
        let upper = body.iter().any(u8::is_ascii_uppercase);
        let lower = body.iter().any(u8::is_ascii_lowercase);
        let classes_ok = digits && (upper || lower) && (body.len() >= 24 || (upper && lower));
        // A certificate or prose in base64, or a JSON Web Key's public number, is public
        // whatever key word precedes it (`certificate-authority-data` holds "auth");
        // checked last, on the few tokens that would otherwise be reported.
        (classes_ok
            && shannon(body) > self.base64_bar(body.len())
            && !words::reads_as_words(body)
            && !is_jwk_public(text, before)
            && !validators::encodes_public_or_prose(token))
        .then_some("high-entropy-base64")
    }
}

/// Whether the token is a public field of a JSON Web Key.
fn is_jwk_public(text: &str, before: &[u8]) -> bool {
    let tail = || before.iter().rev().filter(|b| !b.is_ascii_whitespace());
    let ends_with = |field: &[u8]| tail().take(field.len()).eq(field.iter().rev());
    JWK_PUBLIC_FIELDS.iter().any(|field| ends_with(field)) && text.contains("\"kty\"")
}

/// The text on the token's line just before it, at most `CONTEXT` bytes.
fn line_before(bytes: &[u8], start: usize) -> &[u8] {
    let window = &bytes[start.saturating_sub(CONTEXT)..start];
    match window.iter().rposition(|&b| b == b'\n') {
        Some(nl) => &window[nl + 1..],
        None => window,
    }
}

fn ends_with_ignore_case(text: &[u8], suffix: &[u8]) -> bool {
    text.len() >= suffix.len() && text[text.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

/// Length of a vendor-style prefix: up to two lowercase words ending in `_` or `-`
/// (`sk_live_`, `xoxb-`), so the random part is judged alone.
fn vendor_prefix(token: &[u8]) -> usize {
    let mut at = 0;
    for _ in 0..2 {
        let word = token[at..].iter().take_while(|b| b.is_ascii_lowercase()).count();
        if !(2..=10).contains(&word) || !matches!(token.get(at + word), Some(b'_' | b'-')) {
            break;
        }
        at += word + 1;
    }
    at
}

/// The spans of PEM and PGP blocks of public material (public keys, certificates), found
/// once per prompt: from the end of the `-----BEGIN …` line to the `-----END` that closes it.
fn public_blocks(text: &str) -> Vec<Range<usize>> {
    // Built once: a searcher's set-up cost more than the search on a chat turn.
    static BEGIN: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"-----BEGIN "));
    static END: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"-----END"));
    let bytes = text.as_bytes();
    let mut blocks = Vec::new();
    for begin in BEGIN.find_iter(bytes) {
        let header_end = memchr::memchr(b'\n', &bytes[begin..]).map_or(bytes.len(), |i| begin + i);
        let header = &text[begin..header_end];
        if header.contains("PUBLIC KEY") || header.contains("CERTIFICATE") {
            let end = END.find(&bytes[header_end..]).map_or(bytes.len(), |i| header_end + i);
            blocks.push(header_end..end);
        }
    }
    blocks
}

/// A run of base64-alphabet bytes: `start..end`, and `padded` past any `=` padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) padded: usize,
}

/// The shortest run `Prompt::token_runs` lists: the entropy trap's default shortest
/// token; the decode trap's runs are longer.
pub(crate) const TOKEN_RUN: usize = 16;

/// Every run of at least [`TOKEN_RUN`] bytes, in order.
pub(crate) fn token_runs(text: &[u8]) -> Vec<Run> {
    let mut out = Vec::new();
    runs(text, TOKEN_RUN, |start, end, padded| out.push(Run { start, end, padded }));
    out
}

/// Calls `found(start, end, padded)` for every run of at least `min` base64-alphabet
/// bytes (`padded` past any `=` padding). Any run of at least `min` bytes starting at or
/// after `i` covers byte `i + min - 1`, so when that byte is outside the alphabet the
/// whole window is skipped; when it is inside, the walk back from it to `i` either meets
/// a byte outside the alphabet, after which the next window starts, or shows a run. Prose
/// is scanned a probe and a few bytes per word rather than a byte per step.
pub(crate) fn runs(text: &[u8], min: usize, mut found: impl FnMut(usize, usize, usize)) {
    let in_run = |b: u8| CLASS[b as usize] & B64 != 0;
    // No run of `min` bytes starts before `i`, and none starts at `i` unless it is the
    // start of the text or follows a byte outside the alphabet.
    let mut i = 0;
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
        if start > i {
            // The run through the probe starts at `start`, fewer than `min` bytes ago.
            i = start;
            continue;
        }
        let mut end = probe + 1;
        while end < text.len() && in_run(text[end]) {
            end += 1;
        }
        let mut padded = end;
        while padded < text.len() && text[padded] == b'=' {
            padded += 1;
        }
        found(start, end, padded);
        i = padded;
    }
}

impl Trap for EntropyTrap {
    fn inspect(&self, prompt: &Prompt<'_>, findings: &mut Vec<Finding>) {
        let text = prompt.normalized();
        let public_blocks = public_blocks(text);
        let mut judge = |start, end, padded| {
            if let Some(rule) = self.judge(text, &public_blocks, start, end) {
                let span = prompt.to_raw(start..padded);
                findings.push(Finding {
                    trap: TrapKind::Entropy,
                    rule: rule.into(),
                    severity: self.severity,
                    action: self.action,
                    start: span.start,
                    end: span.end,
                });
            }
        };
        // The runs the prompt has already listed serve any shortest token at or above
        // theirs (a run is maximal, so the longer ones are among them).
        if self.min_length >= TOKEN_RUN {
            for run in prompt.token_runs().iter().filter(|r| r.end - r.start >= self.min_length) {
                judge(run.start, run.end, run.padded);
            }
        } else {
            runs(text.as_bytes(), self.min_length, judge);
        }
    }
}

/// Shannon entropy in bits per symbol.
pub(crate) fn shannon(token: &[u8]) -> f64 {
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
    fn public_parts_of_credential_files_are_not_secrets() {
        use base64::Engine;
        let cert = base64::engine::general_purpose::STANDARD
            .encode("-----BEGIN CERTIFICATE-----\nMIIDCzCCAfOgAwIBAgIUO7KZbKQ80hrZq9Lm2Xv8Nb4Kc7Hd3Jf6Pt1\n");
        assert!(default_rules(&format!("    certificate-authority-data: {cert}\n")).is_empty());
        let jwk = r#"{"keys": [{"kty": "RSA", "n": "6Mje-XaZ5S18t9ZURQecKppzAAJDUTgjtxHq9Lm2Xv8Nb4Kc7Hd3Jf6Pt1", "e": "AQAB"}]}"#;
        assert!(default_rules(jwk).is_empty());
        let yarn = "resolved \"https://registry.yarnpkg.com/js-tokens/-/js-tokens-5.6.3.tgz#4d4bd6bd9c736378ea6660f91bf94c1338a84360\"";
        assert!(default_rules(yarn).is_empty());
        let key = base64::engine::general_purpose::STANDARD
            .encode("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBq9Lm2Xv8Nb4Kc7Hd3Jf6Pt1\n");
        assert_eq!(default_rules(&format!("    client-key-data: {key}\n")).len(), 1, "the private part still is");
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
    fn hex_and_uuids_are_judged_only_after_a_key_word() {
        let uuid = "3f2b8c1e-9d4a-4f6b-8e2a-7c5d1b9e0f3a";
        assert!(default_rules(&format!("request {uuid} failed")).is_empty());
        assert_eq!(default_rules(&format!("HEROKU_API_KEY={uuid}")), vec![("high-entropy-hex".into(), uuid.into())]);
        let sha = "2f8a3c9e1b7d4f6a0c5e8b2d9f1a3c7e5b0d4f8a";
        assert!(default_rules(&format!("This reverts commit {sha}.")).is_empty());
        assert_eq!(default_rules(&format!("my key is {sha}")).len(), 1);
        let allowing = EntropyConfig { allow: vec![AllowShape::Uuid, AllowShape::GitSha], ..EntropyConfig::default() };
        assert!(rules(&allowing, &format!("HEROKU_API_KEY={uuid}")).is_empty(), "the policy may allow them");
        assert!(rules(&allowing, &format!("my key is {sha}")).is_empty());
    }

    #[test]
    fn identifiers_paths_and_placeholder_sequences_are_code_not_keys() {
        for text in [
            "impl Tls13CipherSuite for Chacha20Poly1305Aead {}",
            "pub fn X509_STORE_CTX_get1_chain(ctx: *mut X509_STORE_CTX);",
            "// see http://www.apache.org/licenses/LICENSE-2.0 for details",
            "const ALPHABET: &str = \"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/\";",
            "Key ID: 1234abcd-12ab-34cd-56ef-1234567890ab",
        ] {
            assert!(default_rules(text).is_empty(), "{text}: {:?}", default_rules(text));
        }
        let key = "Xq7bK3xV9mN2pR8sW4yZ8AbCdEf0Gh";
        assert_eq!(default_rules(&format!("client = Client({key})")).len(), 1, "a key in code is still a key");
    }

    #[test]
    fn public_shapes_are_not_secrets() {
        let b64 = "znMi+sSDP2VNMVjLTfCP7ElUAjmBKAhAahgg0LQ/KESDRkCg/1301gLR6U7D6eTmCZ9uH9yK";
        for text in [
            format!("\"integrity\": \"sha512-{b64}==\""),
            format!("github.com/x/y v1.2.0 h1:{b64}="),
            format!("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ{b64} me@laptop"),
            format!("<img src=\"data:image/png;base64,iVBORw0KGgo{b64}\">"),
            format!("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBF{b64}\n-----END PGP PUBLIC KEY BLOCK-----"),
            "Stripe('pk_live_f30BN6P3hiiB4cKtZjNndUFQ')".to_owned(),
        ] {
            assert!(default_rules(&text).is_empty(), "{text}: {:?}", default_rules(&text));
        }
        assert_eq!(default_rules(&format!("token: {b64}")).len(), 1, "random base64 is still a secret");
    }

    #[test]
    fn short_mixed_tokens_and_prefixed_tokens_are_judged_on_their_random_part() {
        assert_eq!(default_rules("the key is q7bK3xV9mN2pR8sW here").len(), 1, "16 mixed characters");
        assert!(default_rules("call getUserAccountByIdentifier now").is_empty(), "no digits: a name");
        assert!(default_rules("see release_notes_version_2024 for details").is_empty());
        assert_eq!(
            default_rules("xoxb-q7bK3xV9mN2pR8sW4yQ7bK"),
            vec![("high-entropy-base64".into(), "xoxb-q7bK3xV9mN2pR8sW4yQ7bK".into())]
        );
    }

    /// The skip-ahead scan must find exactly the runs a byte-by-byte scan finds.
    #[test]
    fn skipping_scan_finds_every_run_a_plain_scan_finds() {
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
            runs(bytes, 7, |start, _, padded| found.push((start, padded)));
            assert_eq!(found, expected, "{text:?}");
        }
    }

    #[test]
    fn short_tokens_are_ignored() {
        assert!(default_rules("x9Qz7Lp2Wv").is_empty());
    }
}
