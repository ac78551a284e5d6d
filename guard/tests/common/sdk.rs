//! Runs one of the SDK scripts in `tests/sdk` against a guard.

use std::process::Command;

/// Runs `tests/sdk/<script>` with the guard's base URL; panics, with the script's output,
/// unless `package` is installed and all `checks` of its checks passed.
pub(crate) async fn run(script: &str, package: &str, base: String, checks: usize) {
    let path = format!("{}/tests/sdk/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::task::spawn_blocking(move || Command::new("python3").arg(path).arg(base).output())
        .await
        .unwrap()
        .expect("python3 runs (scripts/setup.sh installs it and the SDKs)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(
        !stderr.contains(&format!("No module named '{package}'")),
        "the {package} package is missing: scripts/setup.sh installs it"
    );
    assert!(out.status.success(), "SDK checks failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("{checks} of {checks} checks passed")), "{stdout}");
}
