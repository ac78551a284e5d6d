//! The crate boundaries of ARCHITECTURE.md, checked on the resolved dependency graph: the
//! operator links the detection engine but none of the guard's serving stack, and the
//! engine links no I/O runtime (it reads its configuration types from `godel-crds`, whose
//! kube dependency is the client-less core).

use std::collections::BTreeSet;
use std::process::Command;

/// The normal (non-dev, non-build) dependencies of a workspace package, by crate name.
fn normal_dependencies(package: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = format!("{}/../Cargo.toml", std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo test"));
    let output = Command::new(cargo)
        .args(["tree", "--offline", "--locked", "--manifest-path", &manifest])
        .args(["-p", package, "-e", "normal", "--prefix", "none", "--format", "{p}"])
        .output()
        .expect("cargo tree runs");
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout)
        .expect("cargo tree prints UTF-8")
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn linked<'a>(deps: &BTreeSet<String>, forbidden: &[&'a str]) -> Vec<&'a str> {
    forbidden.iter().copied().filter(|name| deps.contains(*name)).collect()
}

#[test]
fn the_operator_links_no_serving_stack() {
    let deps = normal_dependencies("godel-operator");
    assert!(deps.contains("godel-traps"), "the operator validates regexes with the engine");
    assert!(deps.contains("kube-client"), "the graph was read: {deps:?}");
    let forbidden = ["godel-guard", "axum", "redis", "aws-config", "aws-sdk-kms", "aws-smithy-runtime", "reqwest"];
    assert_eq!(linked(&deps, &forbidden), Vec::<&str>::new());
}

#[test]
fn the_engine_is_pure() {
    let deps = normal_dependencies("godel-traps");
    assert!(deps.contains("regex"), "the graph was read: {deps:?}");
    let forbidden = ["tokio", "hyper", "kube-client", "axum", "redis", "reqwest", "godel-guard"];
    assert_eq!(linked(&deps, &forbidden), Vec::<&str>::new());
}
