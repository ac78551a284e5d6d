//! Reading and checking the guard's config file: the guard-relevant part of a
//! `GuardrailPolicy` spec, as YAML or JSON. Every check that can fail at run time
//! happens here instead, with a message that names the field.

use std::path::Path;

use godel_crds::{GuardConfig, LimiterBackend};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("config file {path} is not valid: {reason}")]
    Parse { path: String, reason: String },
    #[error("config: {0}")]
    Invalid(String),
}

/// Loads `path`, or the embedded defaults when there is none.
pub fn load(path: Option<&Path>) -> Result<GuardConfig, ConfigError> {
    let Some(path) = path else {
        return Ok(GuardConfig::default());
    };
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Unreadable { path: shown.clone(), reason: e.to_string() })?;
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

/// Checks what the types cannot: relations between fields and sane numbers.
pub fn validate(config: &GuardConfig) -> Result<(), ConfigError> {
    let invalid = |msg: String| Err(ConfigError::Invalid(msg));
    if config.tiers.is_empty() {
        return invalid("tiers: at least one tier is required".into());
    }
    for (i, tier) in config.tiers.iter().enumerate() {
        if tier.name.is_empty() || tier.name.len() > 64 {
            return invalid(format!("tiers[{i}].name must be 1 to 64 characters"));
        }
        if config.tiers[..i].iter().any(|t| t.name == tier.name) {
            return invalid(format!("tiers[{i}].name `{}` is used twice", tier.name));
        }
        if !(tier.rate_per_second.is_finite() && tier.rate_per_second > 0.0) {
            return invalid(format!("tiers[{i}].ratePerSecond must be a positive number"));
        }
        if tier.burst < 1 {
            return invalid(format!("tiers[{i}].burst must be at least 1"));
        }
    }
    if !config.tiers.iter().any(|t| t.name == config.default_tier) {
        return invalid(format!("defaultTier `{}` is not one of the tiers", config.default_tier));
    }
    if config.rate_limit.replicas < 1 {
        return invalid("rateLimit.replicas must be at least 1".into());
    }
    if config.rate_limit.backend == LimiterBackend::Redis && config.rate_limit.redis.is_none() {
        return invalid("rateLimit.backend is redis but rateLimit.redis is missing".into());
    }
    if let Some(redis) = &config.rate_limit.redis {
        if redis.mode == godel_crds::RedisMode::Sentinel && redis.master_name.is_none() {
            return invalid("rateLimit.redis.masterName is required in sentinel mode".into());
        }
        if redis.timeout_ms == 0 {
            return invalid("rateLimit.redis.timeoutMs must be at least 1".into());
        }
        // Parsed as the client will parse it; the URL is not echoed (it may hold a password).
        let urls = std::iter::once(("url".to_owned(), &redis.url))
            .chain(redis.nodes.iter().enumerate().map(|(i, node)| (format!("nodes[{i}]"), node)));
        for (field, url) in urls {
            if redis::IntoConnectionInfo::into_connection_info(url.as_str()).is_err() {
                return invalid(format!("rateLimit.redis.{field} is not a redis:// or rediss:// URL"));
            }
        }
    }
    if let Some(i) = config.traps.regex.rules.iter().position(|r| r.name.trim().is_empty()) {
        return invalid(format!("traps.regex.rules[{i}].name must not be empty"));
    }
    if config.traps.max_prompt_bytes == 0 {
        return invalid("traps.maxPromptBytes must be at least 1".into());
    }
    let debt = &config.security_debt;
    if !(debt.half_life_seconds.is_finite() && debt.half_life_seconds > 0.0) {
        return invalid("securityDebt.halfLifeSeconds must be a positive number".into());
    }
    if !(debt.quarantine_threshold.is_finite() && debt.quarantine_threshold > 0.0) {
        return invalid("securityDebt.quarantineThreshold must be a positive number".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_yaml_both_parse() {
        let a = parse(r#"{"defaultTier": "premium"}"#).unwrap();
        let b = parse("defaultTier: premium\n").unwrap();
        assert_eq!(a, b);
        validate(&a).unwrap();
    }

    #[test]
    fn relations_are_checked_with_field_names() {
        let unknown_default = parse("defaultTier: gold").unwrap();
        assert!(validate(&unknown_default).unwrap_err().to_string().contains("defaultTier"));
        let zero_burst = parse("tiers: [{name: free, ratePerSecond: 1, burst: 0}]").unwrap();
        assert!(validate(&zero_burst).unwrap_err().to_string().contains("tiers[0].burst"));
        let dup = parse("tiers: [{name: free, ratePerSecond: 1, burst: 1}, {name: free, ratePerSecond: 2, burst: 2}]")
            .unwrap();
        assert!(validate(&dup).unwrap_err().to_string().contains("used twice"));
        let redis_without_url = parse("rateLimit: {backend: redis}").unwrap();
        assert!(validate(&redis_without_url).unwrap_err().to_string().contains("rateLimit.redis"));
        let bad_url = parse("rateLimit: {backend: redis, redis: {url: 'not a url:hunter2'}}").unwrap();
        let err = validate(&bad_url).unwrap_err().to_string();
        assert!(err.contains("rateLimit.redis.url") && !err.contains("hunter2"), "{err}");
        let bad_node = parse("rateLimit: {backend: redis, redis: {url: 'redis://a:6379', nodes: ['b c']}}").unwrap();
        assert!(validate(&bad_node).unwrap_err().to_string().contains("nodes[0]"));
        assert!(
            validate(&parse("rateLimit: {backend: redis, redis: {url: 'rediss://u:p@a:6380/0'}}").unwrap()).is_ok()
        );
        let unnamed = parse("traps: {regex: {rules: [{name: ' ', pattern: x}]}}").unwrap();
        assert!(validate(&unnamed).unwrap_err().to_string().contains("rules[0].name"));
    }

    #[test]
    fn key_sources_read_as_maps() {
        let config = parse("audit: {key: {file: {path: /vault/secrets/k}}, salt: {env: {}}}").unwrap();
        assert!(matches!(config.audit.key, Some(godel_crds::KeySource::File(_))));
    }

    #[test]
    fn parse_errors_name_the_problem() {
        let err = parse("traps: {maxPromptBytes: lots}").unwrap_err();
        assert!(err.contains("maxPromptBytes"), "{err}");
    }
}
