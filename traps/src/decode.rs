//! Decode and rescan: secrets and instructions hidden in base64, hex, percent-encoding,
//! `\x`/`\u` escapes, or split across string literals (`"sk-pro" + "j-…"`). Each encoded
//! region is decoded, and the pattern rules run over the result; a finding covers the
//! whole encoded region of the prompt as received.
//!
//! Bounded so a prompt cannot make it expensive: regions of at most `MAX_REGION` bytes,
//! at most `MAX_REGIONS` of them, decoded text that is mostly printable UTF-8 only, and
//! one level of nesting (a base64 text holding percent-encoding is decoded twice).

use std::ops::Range;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

use super::entropy::{Run, token_runs};
use super::{Finding, Prompt, RegexTrap, Trap, TrapKind};

const MAX_REGION: usize = 64 * 1024;
const MAX_REGIONS: usize = 64;
const MAX_DEPTH: usize = 2;
/// Shortest base64 or hex run worth decoding: shorter ones decode to a few bytes, too
/// few to hold a credential.
const MIN_RUN: usize = 20;
// The prompt's listed runs hold every run of `MIN_RUN` bytes only if they start shorter.
const _: () = assert!(MIN_RUN >= super::entropy::TOKEN_RUN);
/// Shortest percent-encoded token looked at: shorter ones hold no credential.
const MIN_TOKEN: usize = 16;

pub struct DecodeTrap {
    rules: Arc<RegexTrap>,
}

impl DecodeTrap {
    pub fn new(rules: Arc<RegexTrap>) -> Self {
        Self { rules }
    }

    /// `runs`: the base64-alphabet runs of `text` (`Prompt::token_runs`).
    fn rescan(&self, text: &str, runs: &[Run], depth: usize, found: &mut Vec<Finding>) {
        for (range, decoded) in regions(text, runs) {
            let inner = Prompt::new(&decoded);
            let mut hits = Vec::new();
            self.rules.inspect(&inner, &mut hits);
            if depth + 1 < MAX_DEPTH {
                self.rescan(&decoded, &token_runs(decoded.as_bytes()), depth + 1, &mut hits);
            }
            found.extend(hits.into_iter().map(|f| Finding {
                trap: TrapKind::Decoded,
                start: range.start,
                end: range.end,
                ..f
            }));
        }
    }
}

impl Trap for DecodeTrap {
    fn inspect(&self, prompt: &Prompt<'_>, findings: &mut Vec<Finding>) {
        let mut found = Vec::new();
        self.rescan(prompt.normalized(), prompt.token_runs(), 0, &mut found);
        for f in &mut found {
            let span = prompt.to_raw(f.start..f.end);
            (f.start, f.end) = (span.start, span.end);
        }
        found.dedup_by(|a, b| a.rule == b.rule && a.start == b.start);
        findings.extend(found);
    }
}

/// Every encoded region of `text` with its decoded form, in order. Candidates are found
/// without visiting every byte: base64 and hex among `runs` (the text's base64-alphabet
/// runs, from the entropy trap's windowed probe), percent-encoding by its `%`, escapes by
/// their backslash, split literals by the newline between two of them (the last three
/// with memchr).
fn regions(text: &str, runs: &[Run]) -> Vec<(Range<usize>, String)> {
    let bytes = text.as_bytes();
    let mut candidates: Vec<(Range<usize>, String)> = Vec::new();
    for run in runs.iter().filter(|r| r.end - r.start >= MIN_RUN) {
        if let Some(decoded) = token(&bytes[run.start..run.padded]) {
            candidates.push((run.start..run.padded, decoded));
        }
    }
    // Percent-encoding: a `%` splits base64 runs, so each one is found by itself.
    let mut at = 0;
    while let Some(offset) = memchr::memchr(b'%', &bytes[at..]) {
        let percent_at = at + offset;
        let start = percent_at - bytes[..percent_at].iter().rev().take_while(|&&b| TOKEN[b as usize]).count();
        let end = percent_at + bytes[percent_at..].iter().take_while(|&&b| TOKEN[b as usize]).count();
        if end - start >= MIN_TOKEN
            && let Some(decoded) = token(&bytes[start..end])
        {
            candidates.push((start..end, decoded));
        }
        at = end.max(percent_at + 1);
    }
    let mut at = 0;
    while let Some(offset) = memchr::memchr(b'\\', &bytes[at..]) {
        let start = at + offset;
        at = match escapes(bytes, start) {
            Some((end, decoded)) => {
                candidates.push((start..end, decoded));
                end
            }
            None => start + 1,
        };
    }
    let mut at = 0;
    while let Some(offset) = memchr::memchr(b'\n', &bytes[at..]) {
        let newline = at + offset;
        at = match split_literal(text, newline) {
            Some((range, decoded)) => {
                let end = range.end;
                candidates.push((range, decoded));
                end
            }
            None => newline + 1,
        };
    }
    candidates.sort_by_key(|(range, _)| range.start);
    let mut out: Vec<(Range<usize>, String)> = Vec::new();
    for (range, decoded) in candidates {
        let overlaps = out.last().is_some_and(|(last, _)| last.end > range.start);
        if !overlaps && range.len() <= MAX_REGION && printable(&decoded) && out.len() < MAX_REGIONS {
            out.push((range, decoded));
        }
    }
    out
}

/// Bytes of a token that may be encoded: base64 (both alphabets), hex, percent-encoding.
static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'-' | b'_' | b'%' | b'=');
        b += 1;
    }
    t
};

/// Mostly printable: binary that happens to decode is not text to scan.
fn printable(text: &str) -> bool {
    let visible = text.chars().filter(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t')).count();
    !text.is_empty() && visible * 10 >= text.chars().count() * 9
}

/// A run of `\xNN` or `\uNNNN` escapes starting at `i`.
fn escapes(bytes: &[u8], i: usize) -> Option<(usize, String)> {
    if bytes.get(i) != Some(&b'\\') {
        return None;
    }
    let (width, marker) = match bytes.get(i + 1) {
        Some(b'x') => (2, b'x'),
        Some(b'u') => (4, b'u'),
        _ => return None,
    };
    let mut raw = Vec::new();
    let mut end = i;
    while bytes.get(end) == Some(&b'\\') && bytes.get(end + 1) == Some(&marker) {
        let digits = bytes.get(end + 2..end + 2 + width)?;
        let value = u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()?;
        if width == 2 {
            raw.push(value as u8);
        } else {
            let mut buf = [0u8; 4];
            raw.extend_from_slice(char::from_u32(value)?.encode_utf8(&mut buf).as_bytes());
        }
        end += 2 + width;
    }
    (raw.len() >= 8).then(|| String::from_utf8(raw).ok().map(|s| (end, s))).flatten()
}

/// A whole token decoded as percent-encoding, hex or base64, when it is one.
fn token(run: &[u8]) -> Option<String> {
    let decoded = if memchr::memchr(b'%', run).is_some() {
        percent(run)
    } else if run.len() < MIN_RUN || !run.iter().any(u8::is_ascii_digit) {
        // Encoded text always has digits; a long name (`calculate_monthly_payment`)
        // does not, and is not worth an attempt.
        None
    } else if run.len().is_multiple_of(2) && run.iter().all(u8::is_ascii_hexdigit) {
        hex::decode(run).ok()
    } else if !run.iter().any(u8::is_ascii_uppercase) || !run.iter().any(u8::is_ascii_lowercase) {
        None
    } else {
        let body = run.strip_suffix(b"==").or_else(|| run.strip_suffix(b"=")).unwrap_or(run);
        STANDARD_NO_PAD.decode(body).or_else(|_| URL_SAFE_NO_PAD.decode(body)).ok()
    };
    String::from_utf8(decoded?).ok()
}

fn percent(run: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(run.len());
    let mut i = 0;
    while i < run.len() {
        if run[i] == b'%' {
            let hex = std::str::from_utf8(run.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(run[i]);
            i += 1;
        }
    }
    Some(out)
}

/// String literals joined across lines (`"abc" +\n "def"`, `("abc"\n "def")`) around the
/// newline at `newline`: the region from the first literal's opening quote to the last
/// one's closing quote, and the joined text.
fn split_literal(text: &str, newline: usize) -> Option<(Range<usize>, String)> {
    let bytes = text.as_bytes();
    let separator = |b: &u8| matches!(b, b' ' | b'\t' | b'+' | b'\r');
    // The literal that ends the line.
    let close = newline - bytes[..newline].iter().rev().take_while(|b| separator(b)).count();
    let quote = *bytes.get(close.checked_sub(1)?)?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    let open = close - 1 - bytes[..close - 1].iter().rev().position(|&b| b == quote || b == b'\n')? - 1;
    if bytes[open] != quote {
        return None;
    }
    let mut joined = text[open + 1..close - 1].to_owned();
    let mut end = close;
    let mut line = newline;
    let mut parts = 1;
    loop {
        let next = line + 1 + bytes[line + 1..].iter().take_while(|b| separator(b)).count();
        if bytes.get(next) != Some(&quote) {
            break;
        }
        let body_end = next + 1 + bytes[next + 1..].iter().position(|&b| b == quote || b == b'\n')?;
        if bytes[body_end] != quote {
            break;
        }
        joined.push_str(&text[next + 1..body_end]);
        parts += 1;
        end = body_end + 1;
        let rest = end + bytes[end..].iter().take_while(|b| separator(b)).count();
        if bytes.get(rest) != Some(&b'\n') {
            return Some((open..end, joined));
        }
        line = rest;
        if parts > 64 {
            return Some((open..end, joined));
        }
    }
    (parts >= 2).then_some((open..end, joined))
}

#[cfg(test)]
mod tests {
    use super::*;
    use godel_config::RegexConfig;

    fn found(text: &str) -> Vec<(String, String)> {
        let trap = DecodeTrap::new(Arc::new(RegexTrap::new(&RegexConfig::default()).unwrap()));
        let mut out = Vec::new();
        trap.inspect(&Prompt::new(text), &mut out);
        out.into_iter().map(|f| (f.rule.to_string(), text[f.start..f.end].to_string())).collect()
    }

    const KEY: &str = "AKIAQ7BK3XV2MN2PR4SW";

    #[test]
    fn every_encoding_is_decoded_and_the_finding_covers_the_encoded_text() {
        use base64::engine::general_purpose::STANDARD;
        let line = format!("AWS_ACCESS_KEY_ID={KEY}");
        let b64 = STANDARD.encode(&line);
        let hex = hex::encode(&line);
        let pct: String = line.bytes().map(|b| format!("%{b:02X}")).collect();
        let x: String = line.bytes().map(|b| format!("\\x{b:02x}")).collect();
        let u: String = line.chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
        for encoded in [&b64, &hex, &pct, &x, &u] {
            let text = format!("decode this: {encoded} please");
            let hits = found(&text);
            assert!(hits.contains(&("aws-access-key-id".to_owned(), encoded.clone())), "{text}: {hits:?}");
            assert!(hits.iter().all(|(_, span)| span == encoded), "{text}: {hits:?}");
        }
        let nested = STANDARD.encode(format!("cfg={pct}"));
        assert!(found(&nested).iter().any(|(rule, _)| rule == "aws-access-key-id"), "base64 around percent-encoding");
    }

    #[test]
    fn split_literals_are_joined() {
        let text = format!("key = \"{}\" +\n      \"{}\"\nprint(key)", &KEY[..10], &KEY[10..]);
        let hits = found(&text);
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert!(hits[0].1.starts_with('"') && hits[0].1.ends_with('"'), "{hits:?}");
    }

    #[test]
    fn binary_and_ordinary_text_are_left_alone() {
        assert!(found("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==").is_empty());
        assert!(found("see https://example.com/search?q=a%20b%20c and \"one\"\n\"two\"").is_empty());
        assert!(found("The quick brown fox jumps over the lazy dog.").is_empty());
    }
}
