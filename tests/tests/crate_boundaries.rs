//! The crate boundaries of ARCHITECTURE.md, checked on the resolved dependency graph: the
//! operator links the detection engine but none of the guard's serving stack (reqwest
//! only as the OTLP span exporter's client), the engine
//! links no I/O runtime, and neither the engine nor the guard compiles a Kubernetes type
//! (they read their configuration from `godel-config`).

use std::collections::BTreeSet;
use std::process::Command;

/// The normal (non-dev, non-build) dependencies of a workspace package, by crate name.
fn normal_dependencies(package: &str) -> BTreeSet<String> {
    tree(package, &[])
}

/// `cargo tree` for one package's normal dependencies, with `extra` arguments.
fn tree(package: &str, extra: &[&str]) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = format!("{}/../Cargo.toml", std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo test"));
    let output = Command::new(cargo)
        .args(["tree", "--offline", "--locked", "--manifest-path", &manifest])
        .args(["-p", package, "-e", "normal", "--prefix", "none", "--format", "{p}"])
        .args(extra)
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
    let forbidden = ["godel-guard", "axum", "redis", "aws-config", "aws-sdk-kms", "aws-smithy-runtime"];
    assert_eq!(linked(&deps, &forbidden), Vec::<&str>::new());
    // reqwest (on the same hyper and rustls as kube) only as the OTLP span exporter's client.
    let through = tree("godel-operator", &["--invert", "reqwest"]);
    let allowed: BTreeSet<String> =
        ["reqwest", "opentelemetry-http", "opentelemetry-otlp", "godel-telemetry", "godel-operator"]
            .map(str::to_owned)
            .into();
    assert!(through.is_subset(&allowed), "reqwest reaches the operator through {through:?}");
}

/// What no crate below the operator may link: the Kubernetes API types and client
/// (k8s-openapi alone is ~137k lines) and the resource crate that carries them.
const KUBERNETES: [&str; 6] = ["k8s-openapi", "kube", "kube-core", "kube-client", "kube-runtime", "godel-crds"];

#[test]
fn the_engine_is_pure() {
    let deps = normal_dependencies("godel-traps");
    assert!(deps.contains("regex") && deps.contains("godel-config"), "the graph was read: {deps:?}");
    let forbidden = ["tokio", "hyper", "axum", "redis", "reqwest", "godel-guard"];
    assert_eq!(linked(&deps, &forbidden), Vec::<&str>::new());
    assert_eq!(linked(&deps, &KUBERNETES), Vec::<&str>::new());
}

#[test]
fn the_guard_and_its_config_compile_no_kubernetes_types() {
    for package in ["godel-guard", "godel-config"] {
        let deps = normal_dependencies(package);
        assert!(deps.contains("serde"), "the graph of {package} was read: {deps:?}");
        assert_eq!(linked(&deps, &KUBERNETES), Vec::<&str>::new(), "{package}");
    }
    let direct = tree("godel-config", &["--depth", "1"]);
    let expected: BTreeSet<String> =
        ["godel-config", "schemars", "serde", "thiserror", "url"].map(str::to_owned).into();
    assert_eq!(direct, expected, "godel-config keeps to schema, serde, errors and URLs");
}
