//! Helpers shared by the tests of every crate: where the repository is, temporary
//! directories, generated files that must match their generator, and the real checkers
//! (`kubectl`, `kubernetes-validate`, `promtool`, node) that `scripts/setup.sh` installs,
//! and the trace backend ([`jaeger`]).

pub mod jaeger;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    // At run time, from cargo: a test binary reused from a clone elsewhere (a shared
    // target directory) would otherwise look in that clone's compile-time path.
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), PathBuf::from);
    manifest.parent().expect("tests/ sits in the repository").to_owned()
}

/// Fails when `path` (relative to the repository) differs from `expected`; with
/// `GODEL_REGENERATE=1` it writes `expected` there instead.
pub fn check_generated(path: &str, expected: &str) {
    let full = repo().join(path);
    if std::env::var_os("GODEL_REGENERATE").is_some() {
        std::fs::write(&full, expected).expect("write generated file");
        return;
    }
    let committed = std::fs::read_to_string(&full).unwrap_or_default();
    assert!(
        committed == expected,
        "{path} is out of date with its generator: run `just crd` (GODEL_REGENERATE=1 cargo test -p godel-tests --test generated) and commit"
    );
}

/// Runs a checker; panics with its output when it is missing or fails.
pub fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| {
        panic!("{program} is needed for this test and is not runnable ({e}); scripts/test.sh installs it")
    });
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A fresh directory for one test's files, removed when the value is dropped; it reads
/// as the `Path` it is (`dir.join(..)`, `&dir` where a path is wanted).
pub struct TestDir(tempfile::TempDir);

impl std::ops::Deref for TestDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

/// A [`TestDir`] under the system temp directory, its name starting with `godel-<name>-`.
pub fn temp_dir(name: &str) -> TestDir {
    TestDir(tempfile::Builder::new().prefix(&format!("godel-{name}-")).tempdir().expect("a temp dir"))
}

/// Splits a YAML stream into JSON documents, skipping empty ones.
pub fn yaml_documents(text: &str) -> Vec<serde_json::Value> {
    text.split("\n---")
        .map(|doc| doc.trim_start_matches("---"))
        .filter(|doc| doc.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')))
        .map(|doc| serde_yaml::from_str(doc).expect("YAML document"))
        .collect()
}
