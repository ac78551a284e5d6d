//! Entry points for the fuzz targets in `fuzz/`, compiled only with the `fuzzing`
//! feature: what must hold for every input, asserted, so a violation is a crash the
//! fuzzer keeps (and then a unit test).

use std::sync::LazyLock;

use godel_config::RulePack;
use regex::RegexSet;

use super::PACK_RULES;
use super::set_scan::SetScan;

/// Every pack rule, as the regex trap compiles them, once as a `RegexSet` and once for
/// the streamed walk.
static RULES: LazyLock<(RegexSet, SetScan)> = LazyLock::new(|| {
    let packs = [RulePack::Secrets, RulePack::Pii, RulePack::Injection, RulePack::Indirect];
    let patterns: Vec<String> =
        PACK_RULES.iter().filter(|r| packs.contains(&r.pack)).map(|r| super::regex::ascii_classes(r.pattern)).collect();
    let set = RegexSet::new(&patterns).expect("the packs compile");
    let patterns: Vec<&str> = patterns.iter().map(String::as_str).collect();
    let scan = SetScan::new(&patterns, 16 << 20, 32 << 20).expect("the packs build as one lazy DFA");
    (set, scan)
});

/// The streamed walk names exactly the rules the `RegexSet` finds, or gives up (a full
/// cache), never a different answer.
pub fn rule_set(text: &str) {
    let (set, scan) = &*RULES;
    let want: Vec<usize> = set.matches(text).iter().collect();
    // A walk that gives up leaves the answer to the set; there is nothing to compare.
    if let Ok(matched) = scan.matches(text) {
        assert_eq!(matched.iter().collect::<Vec<_>>(), want, "{} bytes", text.len());
    }
}
