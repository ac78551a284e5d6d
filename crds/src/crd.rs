//! The CustomResourceDefinition as applied to clusters: generated from the types, with
//! every `default` removed from the schema (defaults are the operator's, and a
//! server-side default would show a GitOps tool a diff it never wrote).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::Value;

use crate::GuardrailPolicy;

pub fn crd() -> CustomResourceDefinition {
    let mut value = serde_json::to_value(GuardrailPolicy::crd()).expect("a CRD always serializes");
    if let Some(versions) = value.pointer_mut("/spec/versions").and_then(Value::as_array_mut) {
        for version in versions {
            if let Some(schema) = version.pointer_mut("/schema/openAPIV3Schema") {
                strip_defaults(schema);
            }
        }
    }
    serde_json::from_value(value).expect("stripping defaults keeps a valid CRD")
}

/// The CRD as YAML, the form committed as `crds/guardrailpolicy.yaml`.
pub fn crd_yaml() -> String {
    serde_yaml::to_string(&crd()).expect("a CRD always serializes")
}

/// Removes the `default` keyword from a schema and every schema nested in it, without
/// touching properties that happen to be named `default`.
fn strip_defaults(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else { return };
    object.remove("default");
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
    fn committed_yaml_is_up_to_date() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/guardrailpolicy.yaml");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        if committed != crd_yaml() {
            panic!(
                "crds/guardrailpolicy.yaml is out of date: run `cargo run -p godel-operator -- crd > crds/guardrailpolicy.yaml`"
            );
        }
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
        assert_eq!(crd.spec.names.short_names.as_deref(), Some(&["guardrails".to_owned()][..]));
        assert!(crd.spec.names.categories.is_none(), "a category named guardrails would shadow the short name");
        assert_eq!(crd.spec.scope, "Namespaced");
        let columns: Vec<String> =
            crd.spec.versions[0].additional_printer_columns.as_ref().unwrap().iter().map(|c| c.name.clone()).collect();
        assert_eq!(columns, ["Ready", "Replicas", "Mode", "Age"]);
        assert!(crd.spec.versions[0].subresources.as_ref().unwrap().status.is_some());
    }

    #[test]
    fn cel_rules_cover_what_the_schema_cannot_say() {
        let text = schema().to_string();
        for rule in [
            "self.minReplicas <= self.maxReplicas",
            "self.burst >= 1",
            "self.tiers.exists(t, t.name == self.defaultTier)",
            "has(self.masterName)",
        ] {
            assert!(text.contains(rule), "missing CEL rule {rule}");
        }
    }
}
