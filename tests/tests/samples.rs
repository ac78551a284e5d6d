//! Every guard config sample in `config/guard` must load and pass the guard's start-up
//! checks, so the README never points users at a broken file.

use std::path::Path;

#[test]
fn sample_guard_configs_pass_the_guards_checks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/guard");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("config/guard exists") {
        let path = entry.unwrap().path();
        if !path.file_name().unwrap().to_string_lossy().starts_with("guard-config") {
            continue;
        }
        let config = godel_guard::config::load(Some(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        godel_guard::server::build_check(&config).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        checked += 1;
    }
    assert!(checked >= 1, "no guard-config samples found in {}", dir.display());
}
