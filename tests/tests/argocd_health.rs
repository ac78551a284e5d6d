//! The Argo CD health check for GuardrailPolicy, run by a real Lua 5.1 interpreter (the
//! dialect of Argo CD's gopher-lua) over objects shaped like the operator's status.

use godel_tests::repo;
use serde_json::{Value, json};

/// A JSON value as a Lua table constructor.
fn lua(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => format!("{{{}}}", items.iter().map(lua).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => {
            format!("{{{}}}", map.iter().map(|(k, v)| format!("[{k:?}] = {}", lua(v))).collect::<Vec<_>>().join(", "))
        }
    }
}

fn health(object: Value) -> (String, String) {
    let script = format!(
        "obj = {}\nlocal hs = dofile({:?})\nio.write(hs.status .. '|' .. (hs.message or ''))",
        lua(&object),
        repo().join("config/argocd/health.lua").display().to_string()
    );
    let out = godel_tests::run("lua5.1", &["-e", &script]);
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, message) = text.split_once('|').unwrap();
    (status.to_owned(), message.to_owned())
}

fn policy(generation: i64, observed: i64, conditions: Value) -> Value {
    json!({"metadata": {"name": "p", "generation": generation},
           "status": {"observedGeneration": observed, "conditions": conditions}})
}

#[test]
fn health_follows_the_operators_conditions() {
    assert_eq!(health(json!({"metadata": {"name": "p", "generation": 1}})).0, "Progressing");
    let ready = json!([{"type": "Ready", "status": "True", "message": "3/3 guards ready"},
                       {"type": "Degraded", "status": "False", "message": ""}]);
    assert_eq!(health(policy(2, 2, ready.clone())), ("Healthy".into(), "3/3 guards ready".into()));
    assert_eq!(health(policy(3, 2, ready)).0, "Progressing", "a new generation is not yet healthy");
    let rolling = json!([{"type": "Ready", "status": "False", "message": "1/3 guards ready"}]);
    assert_eq!(health(policy(2, 2, rolling)).0, "Progressing");
    let degraded = json!([{"type": "Ready", "status": "False", "message": "x"},
                          {"type": "Degraded", "status": "True", "message": "spec.guard: regex rule `bad` does not compile"}]);
    let (status, message) = health(policy(2, 2, degraded.clone()));
    assert_eq!(status, "Degraded");
    assert!(message.contains("regex rule"));
    // A fix the operator has not seen yet must not be reported as still broken.
    let (status, message) = health(policy(3, 2, degraded));
    assert_eq!(status, "Progressing");
    assert!(message.contains("generation 3"), "{message}");
    let unobserved = json!({"metadata": {"name": "p", "generation": 1},
                            "status": {"conditions": [{"type": "Degraded", "status": "True", "message": "x"}]}});
    assert_eq!(health(unobserved).0, "Progressing");
}
