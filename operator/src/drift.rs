//! Which fields the operator set on an object someone else has changed since. Pure: the
//! reconciler compares the object it would apply with the live copy and puts back what
//! differs (a guard Deployment whose image was swapped by hand is the case that matters).
//!
//! Only what the operator sets is compared: a field the API server or another
//! controller adds (defaults, `clusterIP`, a label of its own) is not drift. A list the
//! operator sets must match in length too, so an argument appended by hand is found.

use serde_json::Value;

/// Paths (`spec.template.spec.containers[0].image`) where `live` differs from what the
/// operator would apply, `desired`. At most [`MAX_FIELDS`] are named.
pub fn drifted(desired: &Value, live: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(desired, Some(live), &mut String::new(), &mut out);
    out
}

/// Enough to say what changed in an Event without writing the whole object into it.
pub const MAX_FIELDS: usize = 5;

fn walk(desired: &Value, live: Option<&Value>, path: &mut String, out: &mut Vec<String>) {
    if out.len() >= MAX_FIELDS {
        return;
    }
    match (desired, live) {
        (Value::Object(want), Some(Value::Object(have))) => {
            for (key, value) in want {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                walk(value, have.get(key), path, out);
                path.truncate(len);
            }
        }
        (Value::Array(want), Some(Value::Array(have))) if want.len() == have.len() => {
            for (n, (value, live)) in want.iter().zip(have).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{n}]"));
                walk(value, Some(live), path, out);
                path.truncate(len);
            }
        }
        // Absent and null are the same to the API server.
        (Value::Null, None | Some(Value::Null)) => {}
        (want, Some(have)) if want == have => {}
        _ => out.push(path.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(image: &str, replicas: i64, args: &[&str]) -> Value {
        json!({"metadata": {"name": "g", "labels": {"app": "g"}},
               "spec": {"replicas": replicas,
                        "template": {"spec": {"containers": [{"name": "guard", "image": image, "args": args}]}}}})
    }

    #[test]
    fn an_unchanged_object_with_server_defaults_is_not_drift() {
        let desired = deployment("guard:1", 3, &["serve"]);
        let mut live = desired.clone();
        live["metadata"]["resourceVersion"] = json!("42");
        live["metadata"]["labels"]["added-by-someone"] = json!("x");
        live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
        live["spec"]["strategy"] = json!({"type": "RollingUpdate"});
        assert!(drifted(&desired, &live).is_empty());
    }

    #[test]
    fn a_changed_image_replica_count_or_argument_list_is_named() {
        let desired = deployment("guard:1", 3, &["serve", "--production"]);
        let live = deployment("evil/image:latest", 1, &["serve", "--production", "--debug"]);
        assert_eq!(
            drifted(&desired, &live),
            vec!["spec.replicas", "spec.template.spec.containers[0].args", "spec.template.spec.containers[0].image"]
        );
        let mut removed = desired.clone();
        removed["metadata"]["labels"].as_object_mut().unwrap().remove("app");
        assert_eq!(drifted(&desired, &removed), vec!["metadata.labels.app"]);
    }

    #[test]
    fn at_most_a_few_fields_are_named() {
        let desired = json!({"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7});
        assert_eq!(drifted(&desired, &json!({})).len(), MAX_FIELDS);
    }
}
