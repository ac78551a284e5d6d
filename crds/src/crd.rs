//! The CustomResourceDefinition as applied to clusters: generated from the types, with
//! every `default` removed from the schema (defaults are the operator's, and a
//! server-side default would show a GitOps tool a diff it never wrote).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::Value;

use crate::GuardrailPolicy;

/// Longest policy name: its objects append `-guard`, and a Service name is a DNS label.
pub(crate) const MAX_POLICY_NAME_LENGTH: usize = 63 - "-guard".len();

pub fn crd() -> CustomResourceDefinition {
    let mut value = serde_json::to_value(GuardrailPolicy::crd()).expect("a CRD always serializes");
    if let Some(versions) = value.pointer_mut("/spec/versions").and_then(Value::as_array_mut) {
        for version in versions {
            if let Some(schema) = version.pointer_mut("/schema/openAPIV3Schema") {
                strip_defaults(schema);
                schema["x-kubernetes-validations"] = serde_json::json!([{
                    "rule": format!("self.metadata.name.size() <= {MAX_POLICY_NAME_LENGTH}"),
                    "message": format!(
                        "metadata.name must be at most {MAX_POLICY_NAME_LENGTH} characters: the guard's Service is named <name>-guard, and Service names stop at 63"
                    ),
                }]);
            }
        }
    }
    serde_json::from_value(value).expect("stripping defaults keeps a valid CRD")
}

/// The CRD as YAML, the form committed as `config/crd/guardrailpolicy.yaml` (`just crd`).
/// serde_yaml writes YAML 1.2, where a bare `off` is a string; the YAML 1.1 readers of the
/// Kubernetes world (`kubectl apply -f`, Helm's `crds/`) read it as `false`, which turns
/// the `output.action` enum's `off` into a boolean. Such list items are quoted.
pub fn crd_yaml() -> String {
    let yaml = serde_yaml::to_string(&crd()).expect("a CRD always serializes");
    let mut out = String::with_capacity(yaml.len() + 16);
    for line in yaml.split_inclusive('\n') {
        let (indent, item) = line.split_at(line.len() - line.trim_start().len());
        match item.trim_end().strip_prefix("- ") {
            Some(word) if YAML_11_BOOLEANS.contains(&word) => out.push_str(&format!("{indent}- '{word}'\n")),
            _ => out.push_str(line),
        }
    }
    out
}

/// Plain scalars YAML 1.1 reads as booleans.
const YAML_11_BOOLEANS: [&str; 10] = ["off", "on", "yes", "no", "y", "n", "Off", "On", "Yes", "No"];

/// The API server knows only the `int32` and `int64` formats, and enforces neither's
/// range: a `burst: 5000000000` would be stored, then fail to deserialize into a `u32`
/// in every watcher, stalling the operator for the whole cluster. So each integer gets
/// the bounds of its Rust type as `minimum`/`maximum` (keeping tighter ones), and the
/// unsigned formats become `int64`.
fn bound_integers(object: &mut serde_json::Map<String, Value>) {
    let (min, max) = match object.get("format").and_then(Value::as_str) {
        Some("int32") => (i64::from(i32::MIN), i64::from(i32::MAX)),
        Some("uint32") => (0, i64::from(u32::MAX)),
        // The API server holds bounds as doubles and refuses one past int64; 2^53 - 1 is
        // the largest exact one. Fields with a meaningful limit set a tighter one.
        Some("uint64" | "uint") => (0, (1 << 53) - 1),
        _ => return,
    };
    if max > i64::from(i32::MAX) {
        object.insert("format".into(), Value::from("int64"));
    }
    // Keep a tighter bound the type's attributes already set.
    let bound = |value: Option<&Value>, pick: fn(i64, i64) -> i64, limit: i64| {
        value.and_then(Value::as_f64).map_or(limit, |v| pick(v as i64, limit))
    };
    let min = bound(object.get("minimum"), i64::max, min);
    let max = bound(object.get("maximum"), i64::min, max);
    object.insert("minimum".into(), Value::from(min));
    object.insert("maximum".into(), Value::from(max));
}

/// Removes the `default` keyword from a schema and every schema nested in it, without
/// touching properties that happen to be named `default`.
fn strip_defaults(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else { return };
    object.remove("default");
    bound_integers(object);
    // `deny_unknown_fields` becomes `additionalProperties: false`, which a structural
    // schema may not combine with `properties`; the API server prunes unknown fields.
    if object.get("additionalProperties") == Some(&Value::Bool(false)) {
        object.remove("additionalProperties");
    }
    if let Some(properties) = object.get_mut("properties").and_then(Value::as_object_mut) {
        properties.values_mut().for_each(strip_defaults);
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(nested) = object.get_mut(key) {
            strip_defaults(nested);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(list) = object.get_mut(key).and_then(Value::as_array_mut) {
            list.iter_mut().for_each(strip_defaults);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        serde_json::to_value(crd()).unwrap()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    }

    #[test]
    fn schema_has_no_defaults() {
        let text = schema().to_string();
        assert!(!text.contains("\"default\":"), "a default leaked into the schema");
    }

    #[test]
    fn names_short_name_and_printer_columns() {
        let crd = crd();
        assert_eq!(crd.spec.group, "guardrails.godel.dev");
        assert_eq!(crd.spec.names.short_names.as_deref(), Some(&["guardrails".to_owned(), "ggp".to_owned()][..]));
        // Our own category, not one another project's kinds could join, and not
        // `guardrails`, which would shadow the short name.
        assert_eq!(crd.spec.names.categories.as_deref(), Some(&["godel".to_owned()][..]));
        assert_eq!(crd.spec.scope, "Namespaced");
        let columns: Vec<String> =
            crd.spec.versions[0].additional_printer_columns.as_ref().unwrap().iter().map(|c| c.name.clone()).collect();
        assert_eq!(columns, ["Ready", "Replicas", "Mode", "Age"]);
        assert!(crd.spec.versions[0].subresources.as_ref().unwrap().status.is_some());
    }

    /// Walks a schema, calling `visit` with each property's path and schema.
    fn walk(path: &str, schema: &Value, visit: &mut dyn FnMut(&str, &Value)) {
        visit(path, schema);
        if let Some(properties) = schema["properties"].as_object() {
            for (name, nested) in properties {
                walk(&format!("{path}.{name}"), nested, visit);
            }
        }
        if schema["items"].is_object() {
            walk(&format!("{path}[]"), &schema["items"], visit);
        }
        if schema["additionalProperties"].is_object() {
            walk(&format!("{path}{{}}"), &schema["additionalProperties"], visit);
        }
    }

    #[test]
    fn yaml_11_readers_see_the_off_action_as_a_string() {
        let yaml = crd_yaml();
        assert!(yaml.contains("- 'off'\n") && !yaml.contains("- off\n"), "`off` is quoted for kubectl and Helm");
        let parsed: Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(serde_json::to_value(crd()).unwrap(), parsed, "quoting changes no value");
    }

    #[test]
    fn integers_are_bounded_in_formats_the_api_server_knows() {
        let mut integers = 0;
        walk("", &schema(), &mut |path, s| {
            if s["type"] == "integer" {
                integers += 1;
                let format = s["format"].as_str().unwrap_or_default();
                assert!(["int32", "int64"].contains(&format), "{path}: format {format}");
                // int64 is the API server's own integer; every narrower one is bounded.
                let (min, max) = (s["minimum"].as_f64(), s["maximum"].as_f64());
                assert!(format == "int64" || (min.is_some() && max.is_some()), "{path} has no bounds");
                assert!(max.is_none_or(|m| m < 9.2e18), "{path}: maximum past int64");
            }
        });
        assert!(integers > 10);
        let burst = &schema()["properties"]["spec"]["properties"]["guard"]["properties"]["tiers"]["items"]["properties"]
            ["burst"];
        assert_eq!((burst["minimum"].as_f64(), burst["maximum"].as_f64()), (Some(1.0), Some(f64::from(u32::MAX))));
        let reload = &schema()["properties"]["spec"]["properties"]["guard"]["properties"]["audit"]["properties"]["reloadSeconds"];
        assert_eq!((reload["format"].as_str(), reload["maximum"].as_f64()), (Some("int64"), Some(86400.0)));
    }

    #[test]
    fn lists_under_cel_rules_have_max_items() {
        let guard = &schema()["properties"]["spec"]["properties"]["guard"];
        assert_eq!(guard["properties"]["tiers"]["maxItems"], 32);
        assert_eq!(guard["properties"]["tiers"]["items"]["properties"]["name"]["maxLength"], 63);
        assert_eq!(guard["properties"]["defaultTier"]["maxLength"], 63);
    }

    #[test]
    fn cel_rules_cover_what_the_schema_cannot_say() {
        let text = schema().to_string();
        for rule in [
            "self.minReplicas <= self.maxReplicas",
            "self.tiers.exists(t, t.name == self.defaultTier)",
            "has(self.masterName)",
        ] {
            assert!(text.contains(rule), "missing CEL rule {rule}");
        }
    }
}
