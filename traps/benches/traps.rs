//! Trap engine throughput. Run: `cargo bench -p godel-traps --bench traps`
//! (or `just bench`). Reports MB/s per trap and for the whole engine, over clean and
//! dirty (secret-planted) text, and for the engine by prompt length (4 KiB to 1 MiB);
//! see BENCHMARKS.md.

mod corpus;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use godel_config::{EntropyConfig, RegexConfig, TrapsConfig, UnicodeConfig};
use godel_traps::{EntropyTrap, Finding, Model, Prompt, RegexTrap, Trap, TrapEngine, UnicodeTrap};

const SIZE: usize = 64 * 1024;

fn run(trap: &dyn Trap, text: &str) -> usize {
    let mut findings: Vec<Finding> = Vec::new();
    trap.inspect(&Prompt::new(text), &mut findings);
    findings.len()
}

fn traps(c: &mut Criterion) {
    let clean = corpus::clean(SIZE);
    let dirty = corpus::dirty(SIZE, 4096);
    let config = TrapsConfig { max_prompt_bytes: usize::MAX, ..TrapsConfig::default() };
    let engine = TrapEngine::new(&config).expect("default policy compiles");
    // The same policy without the learned detector: what the pattern and entropy traps
    // cost together (the detector's own figure is `classifier/score-4k`).
    let mut rules_config = config.clone();
    rules_config.classifier.enabled = false;
    let rules_engine = TrapEngine::new(&rules_config).expect("default policy compiles");
    let regex = RegexTrap::new(&RegexConfig::default()).expect("packs compile");
    let entropy = EntropyTrap::new(&EntropyConfig::default());
    let unicode = UnicodeTrap::new(UnicodeConfig::default().action);
    assert!(engine.inspect(&clean).is_empty(), "the clean corpus must be clean");
    assert!(engine.inspect(&dirty).len() >= SIZE / 4096, "planted secrets must be found");

    for (name, text) in [("clean", &clean), ("dirty", &dirty)] {
        let mut group = c.benchmark_group(format!("traps/{name}"));
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function("baseline-memchr-scan", |b| {
            b.iter(|| std::hint::black_box(text.bytes().filter(|&b| b == b'\n').count()))
        });
        group.bench_function("normalize", |b| b.iter(|| std::hint::black_box(Prompt::new(text).normalized().len())));
        group.bench_function("unicode", |b| b.iter(|| run(&unicode, text)));
        group.bench_function("entropy", |b| b.iter(|| run(&entropy, text)));
        group.bench_function("regex", |b| b.iter(|| run(&regex, text)));
        group.bench_function("engine-rules", |b| b.iter(|| rules_engine.inspect(text).len()));
        group.bench_function("engine", |b| b.iter(|| engine.inspect(text).len()));
        group.finish();
    }

    // Prompt length: a chat turn, a page of context, a long RAG or tool-result prompt.
    let mut group = c.benchmark_group("traps/clean-by-size");
    for (label, size) in [("4k", 4 << 10), ("64k", 64 << 10), ("1m", 1 << 20)] {
        let text = corpus::clean(size);
        assert!(engine.inspect(&text).is_empty(), "the clean corpus must be clean at {label}");
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(format!("engine-rules-{label}"), |b| b.iter(|| rules_engine.inspect(&text).len()));
        group.bench_function(format!("engine-{label}"), |b| b.iter(|| engine.inspect(&text).len()));
    }
    group.finish();

    // Chat turns: the load bench's own prompts (bench/load/prompts.lua), the whole set
    // per iteration, so that the figure is what the traps cost the HTTP path per request.
    let turns = chat_turns();
    let mut group = c.benchmark_group("traps/chat-turns");
    group.throughput(Throughput::Elements(turns.len() as u64));
    group.bench_function("engine-rules", |b| {
        b.iter(|| turns.iter().map(|t| rules_engine.inspect(t).len()).sum::<usize>())
    });
    group.bench_function("engine", |b| b.iter(|| turns.iter().map(|t| engine.inspect(t).len()).sum::<usize>()));
    group.bench_function("classifier", |b| {
        b.iter(|| turns.iter().map(|t| Model::builtin().score(std::hint::black_box(t))).sum::<f64>())
    });
    group.finish();

    // The learned injection detector on a 4 KiB prompt (its aim: at most 100 µs).
    let end = (0..=4096).rev().find(|&i| clean.is_char_boundary(i)).unwrap_or(0);
    let prompt = &clean[..end];
    let model = Model::builtin();
    let mut group = c.benchmark_group("classifier");
    group.throughput(Throughput::Bytes(prompt.len() as u64));
    group.bench_function("score-4k", |b| b.iter(|| model.score(std::hint::black_box(prompt))));
    group.finish();
}

/// The prompts of `bench/load/prompts.lua`: each line's Lua string holds a JSON string's
/// body (the wrk scripts splice it into a request as it is).
fn chat_turns() -> Vec<String> {
    let lua = include_str!("../../bench/load/prompts.lua");
    let turns: Vec<String> = lua
        .lines()
        .filter_map(|line| line.trim().strip_prefix('"')?.strip_suffix("\",").map(str::to_owned))
        .map(|body| {
            let json = format!("\"{}\"", body.replace("\\\\", "\\").replace("\\\"", "\""));
            serde_json::from_str(&json).expect("prompts.lua holds JSON-escaped prompts")
        })
        .collect();
    assert!(turns.len() >= 10, "prompts.lua parsed: {turns:?}");
    turns
}

criterion_group!(benches, traps);
criterion_main!(benches);
