//! Reading and checking the guard's config file: the guard-relevant part of a
//! `GuardrailPolicy` spec, as YAML or JSON. Every check that can fail at run time
//! happens here instead, with a message that names the field.

use std::path::Path;

use godel_config::GuardConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Unreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {reason}")]
    Parse { path: String, reason: String },
}

/// Loads `path`, or the embedded defaults when there is none.
pub fn load(path: Option<&Path>) -> Result<GuardConfig, ConfigError> {
    let Some(path) = path else {
        return Ok(GuardConfig::default());
    };
    let shown = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable { path: shown.clone(), source })?;
    parse(&text).map_err(|reason| ConfigError::Parse { path: shown, reason })
}

/// YAML is a superset of JSON, so one parser reads both. The document goes through a
/// JSON value first: that is how Kubernetes hands the operator a spec, so enums such as
/// `key: {file: {path: ...}}` read the same in a ConfigMap and in a policy (serde_yaml
/// alone would want YAML tags), and errors carry the field path.
pub fn parse(text: &str) -> Result<GuardConfig, String> {
    if text.trim().is_empty() {
        return Ok(GuardConfig::default());
    }
    let value: serde_json::Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        format!("{path}: {}", e.into_inner())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_yaml_both_parse() {
        let a = parse(r#"{"defaultTier": "premium"}"#).unwrap();
        let b = parse("defaultTier: premium\n").unwrap();
        assert_eq!(a, b);
        a.validate().unwrap();
    }

    #[test]
    fn key_sources_read_as_maps() {
        let config = parse("audit: {key: {file: {path: /vault/secrets/k}}, salt: {env: {}}}").unwrap();
        assert!(matches!(config.audit.key, Some(godel_config::KeySource::File(_))));
    }

    #[test]
    fn parse_errors_name_the_problem() {
        let err = parse("traps: {maxPromptBytes: lots}").unwrap_err();
        assert!(err.contains("maxPromptBytes"), "{err}");
    }
}
