//! Which pattern rules match anywhere in a text, found by walking the rules' combined lazy
//! DFA (regex-automata's `hybrid`) in four interleaved streams.
//!
//! A DFA walk is bound by latency: each byte's transition is a table load whose address
//! is the previous load's result, so one stream runs at a few cycles per byte whatever the
//! rules are, and a rule without a literal to skip to makes the whole text pay that. Four
//! streams over four quarters of the text keep four independent loads in flight; on these
//! machines that is about three times the `RegexSet`'s single walk (BENCHMARKS.md).
//!
//! The answer is exactly the `RegexSet`'s. Stream `k` starts at the start of its quarter
//! in the DFA's unanchored start state for that position (the byte before it decides
//! look-behind), so, walked to the end, it sees every match that starts in its quarter or
//! later. It walks past its quarter until its state equals the state stream `k + 1` had
//! at the same position: from there both are the same walk, which stream `k + 1` makes.
//! The first [`HEAD`] states of each stream are kept for that comparison; a stream that
//! has not joined the next one within them (a long token keeping a rule's counter alive
//! across the boundary) walks on to the end, which is slower, never wrong.
//!
//! The lazy DFA clears its cache when the cache is full, which invalidates the states the
//! other streams hold; a walk that meets a clear gives up, and so does one that meets a
//! byte the DFA cannot decide (a Unicode word boundary in a policy's own rule, next to a
//! non-ASCII character). Then [`SetScan::matches`] says so and the caller asks the
//! `RegexSet`, which handles both.
//!
//! regex-automata promises validity only for the state ID its last call returned; four
//! streams hold four. A lazy DFA only appends states to its cache until it clears it, so
//! an ID stays valid until a clear, and the walk checks the clear count after every
//! transition it computes. The differential tests below pin that behaviour, so a
//! regex-automata release that changed it would fail them rather than answer wrongly.

use std::panic::{RefUnwindSafe, UnwindSafe};

use regex_automata::hybrid::LazyStateID;
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::nfa::thompson;
use regex_automata::util::pool::{Pool, PoolGuard};
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind, PatternSet};

/// How many of each stream's first states are kept to find where the previous stream
/// joins it: enough for a base64 blob across a boundary, where the rules' counters agree
/// again a few hundred bytes into it.
const HEAD: usize = 512;

/// Streams walked at once over a long text.
const STREAMS: usize = 4;

/// Texts shorter than this are walked in one stream: four would cost more to start
/// (four start states, the kept states) than they save.
const MIN_STREAMED: usize = 2 * 1024;

struct Scratch {
    cache: Cache,
    found: PatternSet,
    /// Each stream's first states; only what a walk wrote is read back.
    head: Box<[[LazyStateID; HEAD]; STREAMS]>,
}

type NewScratch = Box<dyn Fn() -> Scratch + Send + Sync + UnwindSafe + RefUnwindSafe>;

pub(crate) struct SetScan {
    dfa: DFA,
    scratch: Pool<Scratch, NewScratch>,
}

/// The walk could not finish: ask the `RegexSet`.
pub(crate) struct GaveUp;

/// The rules that matched, borrowed from the scan's scratch space.
pub(crate) struct Matched<'a>(PoolGuard<'a, Scratch, NewScratch>);

impl Matched<'_> {
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.found.iter().map(|id| id.as_usize())
    }
}

impl SetScan {
    /// `None` when the rules do not build as one lazy DFA within `nfa_limit` bytes of
    /// automaton; the `RegexSet` alone then answers.
    pub(crate) fn new(patterns: &[&str], nfa_limit: usize, cache_bytes: usize) -> Option<Self> {
        let dfa = DFA::builder()
            .configure(DFA::config().match_kind(MatchKind::All).cache_capacity(cache_bytes).unicode_word_boundary(true))
            .thompson(
                thompson::Config::new().nfa_size_limit(Some(nfa_limit)).which_captures(thompson::WhichCaptures::None),
            )
            .build_many(patterns)
            .ok()?;
        let for_pool = dfa.clone();
        let new: NewScratch = Box::new(move || Scratch {
            cache: for_pool.create_cache(),
            found: PatternSet::new(for_pool.pattern_len()),
            head: Box::new([[LazyStateID::default(); HEAD]; STREAMS]),
        });
        Some(Self { dfa, scratch: Pool::new(new) })
    }

    /// The indices of the patterns that match somewhere in `text`.
    pub(crate) fn matches(&self, text: &str) -> Result<Matched<'_>, GaveUp> {
        let mut scratch = self.scratch.get();
        let Scratch { cache, found, head } = &mut *scratch;
        found.clear();
        let walk = Walk { dfa: &self.dfa, text: text.as_bytes(), clears: cache.clear_count() };
        if text.len() < MIN_STREAMED {
            walk.streams::<1>(cache, found, head)?
        } else {
            walk.streams::<STREAMS>(cache, found, head)?
        }
        Ok(Matched(scratch))
    }
}

struct Walk<'a> {
    dfa: &'a DFA,
    text: &'a [u8],
    /// The cache's clear count when the walk began: a walk's states are valid only while
    /// it has not changed.
    clears: usize,
}

impl Walk<'_> {
    fn start(&self, cache: &mut Cache, at: usize) -> Result<LazyStateID, GaveUp> {
        let config = start::Config::new().anchored(Anchored::No).look_behind(at.checked_sub(1).map(|i| self.text[i]));
        self.dfa.start_state(cache, &config).map_err(|_| GaveUp)
    }

    fn record(&self, cache: &Cache, sid: LazyStateID, found: &mut PatternSet) {
        for i in 0..self.dfa.match_len(cache, sid) {
            found.insert(self.dfa.match_pattern(cache, sid, i));
        }
    }

    /// One transition on the slow path: computes unknown transitions, records matches.
    fn step(
        &self,
        cache: &mut Cache,
        sid: LazyStateID,
        byte: u8,
        found: &mut PatternSet,
    ) -> Result<LazyStateID, GaveUp> {
        let mut next =
            if sid.is_tagged() { self.next(cache, sid, byte)? } else { self.dfa.next_state_untagged(cache, sid, byte) };
        if next.is_unknown() {
            next = self.next(cache, sid, byte)?;
        }
        if next.is_quit() {
            return Err(GaveUp);
        }
        if next.is_match() {
            self.record(cache, next, found);
        }
        Ok(next)
    }

    fn next(&self, cache: &mut Cache, sid: LazyStateID, byte: u8) -> Result<LazyStateID, GaveUp> {
        let next = self.dfa.next_state(cache, sid, byte).map_err(|_| GaveUp)?;
        if cache.clear_count() == self.clears { Ok(next) } else { Err(GaveUp) }
    }

    /// Walks `S` streams: in lockstep over the length all quarters share, then each on its
    /// own until it joins the next (or reaches the end).
    fn streams<const S: usize>(
        &self,
        cache: &mut Cache,
        found: &mut PatternSet,
        head: &mut [[LazyStateID; HEAD]; STREAMS],
    ) -> Result<(), GaveUp> {
        let n = self.text.len();
        let quarter = n.div_ceil(S).max(1);
        let begin: [usize; S] = std::array::from_fn(|s| (s * quarter).min(n));
        let end: [usize; S] = std::array::from_fn(|s| ((s + 1) * quarter).min(n));
        let common = (0..S).map(|s| end[s] - begin[s]).min().unwrap_or(0);
        let mut sid = [LazyStateID::default(); S];
        for s in 0..S {
            sid[s] = self.start(cache, begin[s])?;
        }
        let mut t = 0;
        while t < common {
            if sid.iter().all(|s| !s.is_tagged()) {
                t = self.lockstep(cache, &begin, &mut sid, head, t, common);
                if t == common {
                    break;
                }
            }
            for s in 0..S {
                sid[s] = self.step(cache, sid[s], self.text[begin[s] + t], found)?;
                if t < HEAD {
                    head[s][t] = sid[s];
                }
            }
            t += 1;
        }
        let mut kept = [common.min(HEAD); S];
        // The last stream first, so that each stream's kept states are complete before the
        // stream before it compares with them.
        for s in (0..S).rev() {
            let mut at = begin[s] + common;
            while at < n {
                sid[s] = self.step(cache, sid[s], self.text[at], found)?;
                if at < end[s] && at - begin[s] < HEAD {
                    head[s][at - begin[s]] = sid[s];
                    kept[s] = at - begin[s] + 1;
                }
                if s + 1 < S && at >= end[s] {
                    let offset = at - end[s];
                    if offset < kept[s + 1] && head[s + 1][offset] == sid[s] {
                        break;
                    }
                }
                at += 1;
            }
            if at >= n {
                let eoi = self.dfa.next_eoi_state(cache, sid[s]).map_err(|_| GaveUp)?;
                if cache.clear_count() != self.clears {
                    return Err(GaveUp);
                }
                if eoi.is_match() {
                    self.record(cache, eoi, found);
                }
            }
        }
        Ok(())
    }

    /// The fast path: every stream takes known, untagged transitions, no match, no new
    /// state, so four loads are in flight at once; the first [`HEAD`] states are kept.
    /// Returns where it stopped: at `common`, or before the first position where some
    /// stream needs [`Walk::step`].
    fn lockstep<const S: usize>(
        &self,
        cache: &Cache,
        begin: &[usize; S],
        sid: &mut [LazyStateID; S],
        head: &mut [[LazyStateID; HEAD]; STREAMS],
        t: usize,
        common: usize,
    ) -> usize {
        let len = common - t;
        let quarters: [&[u8]; S] = std::array::from_fn(|s| &self.text[begin[s] + t..][..len]);
        let mut i = 0;
        while i < len {
            let mut next = [LazyStateID::default(); S];
            let mut tagged = false;
            for s in 0..S {
                next[s] = self.dfa.next_state_untagged(cache, sid[s], quarters[s][i]);
                tagged |= next[s].is_tagged();
            }
            if tagged {
                break;
            }
            *sid = next;
            if t + i < HEAD {
                for s in 0..S {
                    head[s][t + i] = next[s];
                }
            }
            i += 1;
        }
        t + i
    }
}

#[cfg(test)]
mod tests {
    use regex::RegexSet;

    use super::*;
    use crate::PACK_RULES;

    fn pack_patterns() -> Vec<String> {
        PACK_RULES.iter().map(|r| crate::regex::ascii_classes(r.pattern)).collect()
    }

    fn scan(patterns: &[String]) -> SetScan {
        let patterns: Vec<&str> = patterns.iter().map(String::as_str).collect();
        SetScan::new(&patterns, 16 << 20, 32 << 20).expect("the packs build as one lazy DFA")
    }

    /// Prose and code lines, deterministic, cut to `len` bytes.
    fn filler(len: usize, seed: u64) -> String {
        let lines = [
            "the quarterly report shows that revenue grew across all regions while costs held",
            "fn total(items: &[Item]) -> u64 { items.iter().map(|i| i.price).sum() }",
            "user: could you make the cover letter shorter and more formal, please?",
            "SELECT id, name FROM customers WHERE region = 'EU' ORDER BY created_at DESC;",
            "    let token_count = tokenizer.encode(&prompt).len(); // about 4,096 tokens",
        ];
        let mut x = seed | 1;
        let mut out = String::new();
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.push_str(lines[(x % lines.len() as u64) as usize]);
            out.push('\n');
        }
        out.truncate(len);
        out
    }

    /// Whether the walk answered as the set does: `true`, or `false` when it gave up
    /// because the cache filled and was cleared, the one reason the pack rules allow.
    fn agree(scan: &SetScan, set: &RegexSet, text: &str) -> bool {
        let want: Vec<usize> = set.matches(text).iter().collect();
        let clears = scan.scratch.get().cache.clear_count();
        match scan.matches(text) {
            Ok(matched) => {
                assert_eq!(matched.iter().collect::<Vec<_>>(), want, "on {} bytes", text.len());
                true
            }
            Err(GaveUp) => {
                assert!(scan.scratch.get().cache.clear_count() > clears, "gave up without a cache clear");
                false
            }
        }
    }

    /// Every pack example, planted just before, on and after each quarter boundary of
    /// texts short and long, is found exactly as the `RegexSet` finds it.
    #[test]
    fn streams_find_what_the_regex_set_finds() {
        let patterns = pack_patterns();
        let set = RegexSet::new(&patterns).expect("packs compile");
        let scan = scan(&patterns);
        assert!(agree(&scan, &set, ""));
        for len in [300, MIN_STREAMED + 1, 9_000] {
            let text = filler(len, len as u64);
            assert!(agree(&scan, &set, &text));
            for (i, rule) in PACK_RULES.iter().enumerate() {
                let quarter = len.div_ceil(4).max(1);
                let boundary = quarter * (1 + i % 3);
                let before = rule.example.len() / 2;
                for (at, planted) in [
                    (boundary.saturating_sub(before), rule.example),
                    (boundary, rule.example),
                    (boundary + 3, rule.near_miss),
                ] {
                    let at = at.min(text.len());
                    assert!(agree(&scan, &set, &format!("{}{planted}{}", &text[..at], &text[at..])));
                }
            }
        }
    }

    /// Texts stitched at random from pieces of rules (prefixes, key words, separators,
    /// digits, non-ASCII letters), so that partial matches meet every quarter boundary.
    #[test]
    fn streams_agree_on_random_stitched_texts() {
        let patterns = pack_patterns();
        let set = RegexSet::new(&patterns).expect("packs compile");
        let scan = scan(&patterns);
        let pieces = [
            "key",
            "token",
            " = ",
            ": ",
            "\n",
            " ",
            "\n",
            "sk-",
            "ghp_",
            "AKIA",
            "xoxb-",
            "@",
            ".",
            "://",
            "1234",
            "5678",
            "-",
            "_",
            "ignore",
            " previous ",
            "instructions",
            "system prompt",
            "Q~",
            "-----BEGIN ",
            "PRIVATE KEY-----",
            "é",
            "ｉ",
            "\"",
            "'",
            "q7bK3xV9mN2pR8sW",
            "==",
            "+1 ",
            "(555) ",
            "DAN",
            "[INST]",
            "password",
            " is ",
        ];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |bound: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % bound as u64) as usize
        };
        let mut answered = 0;
        for _ in 0..150 {
            let len = next(7_000);
            let mut text = String::new();
            while text.len() < len {
                text.push_str(pieces[next(pieces.len())]);
            }
            answered += usize::from(agree(&scan, &set, &text));
        }
        // Such texts reach states no prompt would; the cache fills a few times.
        assert!(answered >= 140, "{answered} of 150 answered");
    }

    /// A token longer than the kept states straddles a boundary: the stream before it
    /// cannot join the next within them, walks to the end, and still answers exactly.
    #[test]
    fn a_long_token_across_a_boundary_is_walked_to_the_end() {
        let patterns = pack_patterns();
        let set = RegexSet::new(&patterns).expect("packs compile");
        let scan = scan(&patterns);
        let token: String = (0..3 * HEAD).map(|i| char::from(b"q7bK3xV9mN2pR8sW"[i % 16])).collect();
        let text = format!("{}api_key = {token}\n{}", filler(4000, 1), filler(4000, 2));
        assert!(agree(&scan, &set, &text));
        let at = text.len() / 2 - HEAD;
        assert!(agree(&scan, &set, &format!("{}ghp_{token}{}", &text[..at], &text[at..])));
    }

    /// A policy rule with a Unicode word boundary next to non-ASCII text is one the lazy
    /// DFA cannot decide: the walk says so instead of guessing.
    #[test]
    fn a_unicode_word_boundary_on_non_ascii_text_gives_up() {
        let patterns = vec![r"\bcafé\b".to_owned()];
        let scan = scan(&patterns);
        assert!(scan.matches("un café noir").is_err());
        assert_eq!(scan.matches("plain ascii text").ok().map(|m| m.iter().count()), Some(0));
    }

    /// A text that visits more states than the cache holds (the classic blow-up: an `a`
    /// sixteen letters from the end) clears the cache mid-walk, which would leave the
    /// other streams with stale states: the walk gives up.
    #[test]
    fn a_cache_cleared_mid_walk_gives_up() {
        let patterns = [r"[ab]*a[ab]{16}x"];
        let small =
            (10..26).find_map(|bits| SetScan::new(&patterns, 1 << 20, 1 << bits)).expect("a small cache builds");
        let mut x: u32 = 0x9e37_79b9;
        let text: String = (0..50_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                if x & 1 == 0 { 'a' } else { 'b' }
            })
            .collect();
        assert!(small.matches(&text).is_err());
    }
}
