//! Characters a reader cannot see but a model reads: zero-width and other invisible
//! formatting characters, bidirectional controls that reorder what a reviewer sees
//! ("Trojan Source"), and Unicode tag characters and variation selectors that can carry
//! a whole hidden ASCII message.

use godel_config::{Action, Severity};

use super::{Finding, Prompt, Trap, TrapKind};

/// The kinds of hidden character, each reported as its own rule.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hidden {
    ZeroWidth,
    Bidi,
    Tag,
    VariationSelector,
}

impl Hidden {
    fn of(c: char) -> Option<Self> {
        Some(match c {
            '\u{200B}'..='\u{200D}'
            | '\u{2060}'..='\u{2064}'
            | '\u{FEFF}'
            | '\u{00AD}'
            | '\u{034F}'
            | '\u{180E}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{3164}'
            | '\u{FFA0}' => Hidden::ZeroWidth,
            '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => Hidden::Bidi,
            '\u{E0000}'..='\u{E007F}' => Hidden::Tag,
            '\u{E0100}'..='\u{E01EF}' => Hidden::VariationSelector,
            _ => return None,
        })
    }

    fn rule(self) -> &'static str {
        match self {
            Hidden::ZeroWidth => "invisible-character",
            Hidden::Bidi => "bidi-control",
            Hidden::Tag => "tag-characters",
            Hidden::VariationSelector => "variation-selector-smuggling",
        }
    }

    fn severity(self) -> Severity {
        match self {
            Hidden::ZeroWidth => Severity::Medium,
            Hidden::Bidi => Severity::High,
            Hidden::Tag | Hidden::VariationSelector => Severity::Critical,
        }
    }
}

/// Whether normalization drops `c` before the pattern traps run, so that
/// `ig<ZWSP>nore previous instructions` still reads as the phrase it hides.
pub fn is_hidden(c: char) -> bool {
    Hidden::of(c).is_some()
}

pub struct UnicodeTrap {
    action: Action,
}

impl UnicodeTrap {
    pub fn new(action: Action) -> Self {
        Self { action }
    }
}

impl Trap for UnicodeTrap {
    fn inspect(&self, prompt: &Prompt<'_>, findings: &mut Vec<Finding>) {
        let raw = prompt.raw();
        if raw.is_ascii() {
            return;
        }
        // Consecutive hidden characters of one kind are one finding.
        let mut run: Option<(Hidden, usize, usize)> = None;
        for (i, c) in raw.char_indices() {
            let kind = Hidden::of(c);
            match (run, kind) {
                (Some((k, s, _)), Some(kind)) if k == kind => run = Some((k, s, i + c.len_utf8())),
                _ => {
                    if let Some((k, s, e)) = run.take() {
                        findings.push(self.finding(k, s, e));
                    }
                    run = kind.map(|k| (k, i, i + c.len_utf8()));
                }
            }
        }
        if let Some((k, s, e)) = run {
            findings.push(self.finding(k, s, e));
        }
    }
}

impl UnicodeTrap {
    fn finding(&self, kind: Hidden, start: usize, end: usize) -> Finding {
        Finding {
            trap: TrapKind::Unicode,
            rule: kind.rule().into(),
            severity: kind.severity(),
            action: self.action,
            start,
            end,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Vec<(String, usize, usize)> {
        let mut out = Vec::new();
        UnicodeTrap::new(Action::Block).inspect(&Prompt::new(text), &mut out);
        out.into_iter().map(|f| (f.rule.to_string(), f.start, f.end)).collect()
    }

    #[test]
    fn zero_width_space_is_found_with_its_span() {
        let text = "pass\u{200B}word";
        assert_eq!(rules(text), vec![("invisible-character".into(), 4, 7)]);
    }

    #[test]
    fn bidi_override_is_found() {
        assert_eq!(rules("a\u{202E}cba\u{202C}")[0].0, "bidi-control");
    }

    #[test]
    fn a_run_of_tag_characters_is_one_finding() {
        let hidden: String = "ignore".chars().map(|c| char::from_u32(0xE0000 + c as u32).unwrap()).collect();
        let text = format!("hi{hidden}!");
        assert_eq!(rules(&text), vec![("tag-characters".into(), 2, 2 + hidden.len())]);
    }

    #[test]
    fn variation_selector_supplement_is_found() {
        assert_eq!(rules("x\u{E0101}\u{E0102}")[0].0, "variation-selector-smuggling");
    }

    #[test]
    fn ordinary_non_ascii_text_and_emoji_are_clean() {
        for text in ["Grüße aus Köln", "日本語のテキスト", "emoji ❤️ with VS16", "naïve café — “quotes”", "עברית רגילה"]
        {
            assert!(rules(text).is_empty(), "{text}");
        }
    }
}
