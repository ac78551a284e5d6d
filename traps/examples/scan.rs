//! Runs the engine with the default policy over JSON lines on stdin
//! (`{"id": ..., "text": ..., "untrusted": false}`; `untrusted: true` scans the text as a
//! tool result or retrieved document, with `traps.untrusted`) and prints one line per item with what it found:
//! `{"id": ..., "findings": [{"kind", "trap", "rule", "start", "end"}]}`. `kind` is what
//! the evaluation harness scores (`secret`, `pii`, `injection`, `unicode`, `size`).
//!
//! `cargo run --release -p godel-traps --example scan < items.jsonl` (the harness in
//! `eval/` runs it).

use std::io::{BufRead, BufWriter, Write};

use godel_config::{RulePack, TrapsConfig};
use godel_traps::{TrapEngine, TrapKind, pack_of};
use serde_json::{Value, json};

fn kind(trap: TrapKind, rule: &str) -> &'static str {
    match trap {
        TrapKind::Entropy => "secret",
        TrapKind::Regex | TrapKind::Decoded => match pack_of(rule) {
            Some(RulePack::Secrets) => "secret",
            Some(RulePack::Pii) => "pii",
            Some(RulePack::Injection | RulePack::Indirect) => "injection",
            None => "policy",
        },
        TrapKind::Classifier => "injection",
        TrapKind::Unicode => "unicode",
        TrapKind::Size => "size",
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = TrapsConfig { max_prompt_bytes: 1 << 24, ..TrapsConfig::default() };
    let engine = TrapEngine::new(&config)?;
    let untrusted = TrapEngine::for_untrusted(&config)?.ok_or("untrusted content is inspected by default")?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for line in std::io::stdin().lock().lines() {
        let item: Value = serde_json::from_str(&line?)?;
        let text = item["text"].as_str().ok_or("an item without `text`")?;
        let engine = if item["untrusted"].as_bool().unwrap_or(false) { &untrusted } else { &engine };
        let findings: Vec<Value> = engine
            .inspect(text)
            .iter()
            .map(|f| json!({"kind": kind(f.trap, &f.rule), "trap": f.trap, "rule": &*f.rule, "start": f.start, "end": f.end}))
            .collect();
        serde_json::to_writer(&mut out, &json!({"id": item["id"], "findings": findings}))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}
