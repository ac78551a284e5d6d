//! Entry points for the fuzz targets in `fuzz/`, compiled only with the `fuzzing`
//! feature: what must hold for every input, asserted, so a violation is a crash the
//! fuzzer keeps (and then a unit test).

use std::sync::LazyLock;

use godel_config::{RegexConfig, RulePack};

use super::RegexTrap;

/// The regex trap with every pack on, as a policy would compile it.
static RULES: LazyLock<RegexTrap> = LazyLock::new(|| {
    let packs = vec![RulePack::Secrets, RulePack::Pii, RulePack::Injection, RulePack::Indirect];
    RegexTrap::new(&RegexConfig { packs, ..RegexConfig::default() }).expect("the packs compile")
});

/// The streamed walk names exactly the rules the `RegexSet` finds, or gives up (a full
/// cache), never a different answer.
pub fn rule_set(text: &str) {
    let (walked, set) = RULES.walk_and_set(text);
    // A walk that gives up leaves the answer to the set; there is nothing to compare.
    if let Some(walked) = walked {
        assert_eq!(walked, set, "{} bytes", text.len());
    }
}
