//! The checks a guard config must pass beyond its types, in one place: the guard's
//! start-up, `godel-guard check-config` and the operator's reconcile all call
//! [`GuardConfig::validate`].

use crate::{GuardConfig, LimiterBackend};

/// Longest tier or rule name: they become metric label values.
pub const MAX_NAME_LENGTH: usize = 63;

/// A guard config that cannot run, with the field it is about.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidConfig(pub String);

/// Whether `text` is a URL the Redis client accepts, without pulling the client in.
fn is_redis_url(text: &str) -> bool {
    match url::Url::parse(text) {
        Ok(url) => match url.scheme() {
            "redis" | "rediss" | "valkey" | "valkeys" => url.host_str().is_some_and(|h| !h.is_empty()),
            "unix" | "redis+unix" | "valkey+unix" => !url.path().is_empty(),
            _ => false,
        },
        Err(_) => false,
    }
}

/// Whether `text` is an http(s) URL with a host: where an OTLP/HTTP receiver listens.
fn is_http_url(text: &str) -> bool {
    url::Url::parse(text)
        .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host_str().is_some_and(|h| !h.is_empty()))
}

/// A token as RFC 9110 defines header names, lower-cased as HTTP/2 sends them.
fn is_header_name(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether a URL names a user or a password (`redis://user:secret@host`).
pub fn has_credentials(text: &str) -> bool {
    url::Url::parse(text).is_ok_and(|url| !url.username().is_empty() || url.password().is_some())
}

impl GuardConfig {
    /// Checks what the types cannot: relations between fields and sane numbers. The
    /// guard runs it at start-up and in `check-config`, the operator before it applies a
    /// policy; the CRD's schema and CEL rules refuse a subset earlier, at admission.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let config = self;
        let invalid = |msg: String| Err(InvalidConfig(msg));
        if config.tiers.is_empty() {
            return invalid("tiers: at least one tier is required".into());
        }
        for (i, tier) in config.tiers.iter().enumerate() {
            if tier.name.is_empty() || tier.name.len() > MAX_NAME_LENGTH {
                return invalid(format!("tiers[{i}].name must be 1 to {MAX_NAME_LENGTH} characters"));
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
            if tier.max_streams == Some(0) {
                return invalid(format!("tiers[{i}].maxStreams must be at least 1 (leave it out for no cap)"));
            }
            for (field, value) in [("tokensPerMinute", tier.tokens_per_minute), ("tokensPerDay", tier.tokens_per_day)] {
                if value == Some(0) {
                    return invalid(format!("tiers[{i}].{field} must be at least 1 (leave it out for no limit)"));
                }
            }
            if let Some(spend) = tier.spend_per_day {
                if !(spend.is_finite() && spend > 0.0) {
                    return invalid(format!("tiers[{i}].spendPerDay must be a positive number"));
                }
                if config.rate_limit.costs.is_empty() {
                    return invalid(format!("tiers[{i}].spendPerDay needs rateLimit.costs to price tokens"));
                }
            }
            if let Some(header) = &tier.limits_header
                && !is_header_name(header)
            {
                return invalid(format!("tiers[{i}].limitsHeader is not an HTTP header name"));
            }
        }
        for (i, cost) in config.rate_limit.costs.iter().enumerate() {
            if cost.model.is_empty() || cost.model.len() > MAX_NAME_LENGTH {
                return invalid(format!("rateLimit.costs[{i}].model must be 1 to {MAX_NAME_LENGTH} characters"));
            }
            if config.rate_limit.costs[..i].iter().any(|c| c.model == cost.model) {
                return invalid(format!("rateLimit.costs[{i}].model `{}` is listed twice", cost.model));
            }
            if [Some(cost.input), cost.cached_input, Some(cost.output)]
                .into_iter()
                .flatten()
                .any(|w| !(w.is_finite() && w >= 0.0))
            {
                return invalid(format!("rateLimit.costs[{i}]: weights must be numbers of at least 0"));
            }
        }
        if !config.tiers.iter().any(|t| t.name == config.default_tier) {
            return invalid(format!("defaultTier `{}` is not one of the tiers", config.default_tier));
        }
        let classifier = &config.traps.classifier;
        if classifier.action == crate::Action::Redact {
            return invalid("traps.classifier.action must be block or flag: a score has no span to redact".into());
        }
        if classifier.threshold.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
            return invalid("traps.classifier.threshold must be between 0 and 1".into());
        }
        let untrusted = &config.traps.untrusted;
        if untrusted.action == crate::Action::Redact {
            return invalid("traps.untrusted.action must be block or flag: an injection has no part to mask".into());
        }
        if untrusted.threshold.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
            return invalid("traps.untrusted.threshold must be between 0 and 1".into());
        }
        if config.rate_limit.backend == LimiterBackend::Redis && config.rate_limit.redis.is_none() {
            return invalid("rateLimit.backend is redis but rateLimit.redis is missing".into());
        }
        if let Some(redis) = &config.rate_limit.redis {
            if redis.mode == crate::RedisMode::Sentinel && redis.master_name.is_none() {
                return invalid("rateLimit.redis.masterName is required in sentinel mode".into());
            }
            if redis.timeout_ms == 0 {
                return invalid("rateLimit.redis.timeoutMs must be at least 1".into());
            }
            // The URL is not echoed: it may hold a password.
            let urls = std::iter::once(("url".to_owned(), &redis.url))
                .chain(redis.nodes.iter().enumerate().map(|(i, node)| (format!("nodes[{i}]"), node)));
            for (field, url) in urls {
                if !is_redis_url(url) {
                    return invalid(format!("rateLimit.redis.{field} is not a redis:// or rediss:// URL"));
                }
                if (redis.password_file.is_some() || redis.username_file.is_some()) && has_credentials(url) {
                    return invalid(format!(
                        "rateLimit.redis.{field} carries credentials and usernameFile or passwordFile is set: keep them in the files only"
                    ));
                }
                if redis.tls.is_some() && !url.starts_with("rediss://") && !url.starts_with("valkeys://") {
                    return invalid(format!("rateLimit.redis.tls is set but rateLimit.redis.{field} is not rediss://"));
                }
            }
            if let Some(tls) = &redis.tls {
                if tls.cert_file.is_some() != tls.key_file.is_some() {
                    return invalid("rateLimit.redis.tls: certFile and keyFile go together".into());
                }
                if redis.mode == crate::RedisMode::Sentinel {
                    return invalid(
                        "rateLimit.redis.tls: a CA or client certificate is not supported in sentinel mode yet (rediss:// with the system's roots is)"
                            .into(),
                    );
                }
            }
        }
        // The URL is not echoed: it may carry credentials.
        if config.proxy.as_ref().is_some_and(|proxy| !is_http_url(&proxy.upstream)) {
            return invalid("proxy.upstream is not an http:// or https:// URL with a host".into());
        }
        if let Some(telemetry) = &config.telemetry {
            // The endpoint is not echoed: it may carry credentials.
            if telemetry.otlp_endpoint.as_deref().is_some_and(|e| !is_http_url(e)) {
                return invalid("telemetry.otlpEndpoint is not an http:// or https:// URL".into());
            }
            if telemetry.sampling_ratio.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
                return invalid("telemetry.samplingRatio must be between 0 and 1".into());
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
}

#[cfg(test)]
mod tests {
    use crate::GuardConfig;

    fn config(yaml: &str) -> Result<GuardConfig, serde_json::Error> {
        serde_json::from_value(serde_yaml::from_str(yaml).expect("YAML"))
    }

    #[test]
    fn token_limits_budgets_and_costs_are_checked() {
        let err = |yaml: &str| config(yaml).unwrap().validate().unwrap_err().to_string();
        assert!(
            err("tiers: [{name: free, ratePerSecond: 1, burst: 1, tokensPerMinute: 0}]").contains("tokensPerMinute")
        );
        assert!(err("tiers: [{name: free, ratePerSecond: 1, burst: 1, spendPerDay: 5}]").contains("rateLimit.costs"));
        assert!(
            err("tiers: [{name: free, ratePerSecond: 1, burst: 1, limitsHeader: 'X Limits'}]").contains("limitsHeader")
        );
        let twice =
            "rateLimit: {costs: [{model: gpt-4o, input: 2.5, output: 10}, {model: gpt-4o, input: 1, output: 1}]}";
        assert!(err(twice).contains("listed twice"));
        assert!(err("rateLimit: {costs: [{model: gpt-4o, input: -1, output: 10}]}").contains("at least 0"));
        let fine = config(concat!(
            "tiers: [{name: free, ratePerSecond: 1, burst: 1, tokensPerMinute: 1000, tokensPerDay: 100000, ",
            "spendPerDay: 2.5, limitsHeader: x-tenant-limits}]\n",
            "rateLimit: {costs: [{model: gpt-4o, input: 2.5, cachedInput: 1.25, output: 10}]}",
        ))
        .unwrap();
        assert_eq!(fine.validate(), Ok(()));
        assert!(fine.tiers[0].meters_usage() && !GuardConfig::default().tiers[0].meters_usage());
    }

    #[test]
    fn relations_are_checked_with_field_names() {
        let unknown_default = config("defaultTier: gold").unwrap();
        assert!(unknown_default.validate().unwrap_err().to_string().contains("defaultTier"));
        let zero_burst = config("tiers: [{name: free, ratePerSecond: 1, burst: 0}]").unwrap();
        assert!(zero_burst.validate().unwrap_err().to_string().contains("tiers[0].burst"));
        let dup = config("tiers: [{name: free, ratePerSecond: 1, burst: 1}, {name: free, ratePerSecond: 2, burst: 2}]")
            .unwrap();
        assert!(dup.validate().unwrap_err().to_string().contains("used twice"));
        let redis_without_url = config("rateLimit: {backend: redis}").unwrap();
        assert!(redis_without_url.validate().unwrap_err().to_string().contains("rateLimit.redis"));
        let bad_url = config("rateLimit: {backend: redis, redis: {url: 'not a url:hunter2'}}").unwrap();
        let err = bad_url.validate().unwrap_err().to_string();
        assert!(err.contains("rateLimit.redis.url") && !err.contains("hunter2"), "{err}");
        for upstream in ["'not a url:hunter2'", "'ftp://u:hunter2@files.example'", "'unix:/run/hunter2.sock'"] {
            let err = config(&format!("proxy: {{upstream: {upstream}}}")).unwrap().validate().unwrap_err().to_string();
            assert!(err.contains("proxy.upstream") && !err.contains("hunter2"), "{err}");
        }
        assert!(config("proxy: {upstream: 'https://gateway.example/openai/'}").unwrap().validate().is_ok());
        let bad_node = config("rateLimit: {backend: redis, redis: {url: 'redis://a:6379', nodes: ['b c']}}").unwrap();
        assert!(bad_node.validate().unwrap_err().to_string().contains("nodes[0]"));
        assert!(
            config("rateLimit: {backend: redis, redis: {url: 'rediss://u:p@a:6380/0'}}").unwrap().validate().is_ok()
        );
        let unnamed = config("traps: {regex: {rules: [{name: ' ', pattern: x}]}}").unwrap();
        assert!(unnamed.validate().unwrap_err().to_string().contains("rules[0].name"));
        let both = config(
            "rateLimit: {backend: redis, redis: {url: 'redis://u:hunter2@a:6379', passwordFile: /etc/godel/redis/password}}",
        )
        .unwrap();
        let err = both.validate().unwrap_err().to_string();
        assert!(err.contains("keep them in the files") && !err.contains("hunter2"), "{err}");
        let plain_tls =
            config("rateLimit: {backend: redis, redis: {url: 'redis://a:6379', tls: {caFile: /ca.pem}}}").unwrap();
        assert!(plain_tls.validate().unwrap_err().to_string().contains("not rediss://"));
        let half =
            config("rateLimit: {backend: redis, redis: {url: 'rediss://a:6380', tls: {certFile: /c.pem}}}").unwrap();
        assert!(half.validate().unwrap_err().to_string().contains("certFile and keyFile"));
        let files = config(
            "rateLimit: {backend: redis, redis: {url: 'rediss://a:6380', usernameFile: /u, passwordFile: /p, tls: {caFile: /ca.pem}}}",
        )
        .unwrap();
        assert!(files.validate().is_ok());
        let masked = config("traps: {untrusted: {action: redact}}").unwrap();
        assert!(masked.validate().unwrap_err().to_string().contains("traps.untrusted.action"));
        let over = config("traps: {untrusted: {threshold: 1.5}}").unwrap();
        assert!(over.validate().unwrap_err().to_string().contains("traps.untrusted.threshold"));
        assert!(config("traps: {untrusted: {action: flag, threshold: 0.7}}").unwrap().validate().is_ok());
    }

    #[test]
    fn telemetry_endpoint_and_sampling_are_checked_without_echoing_the_endpoint() {
        let err = |yaml: &str| config(yaml).unwrap().validate().unwrap_err().to_string();
        let bad = err("telemetry: {otlpEndpoint: 'collector:4318/tok3n'}");
        assert!(bad.contains("telemetry.otlpEndpoint") && !bad.contains("tok3n"), "{bad}");
        assert!(err("telemetry: {otlpEndpoint: 'grpc://collector:4317'}").contains("http:// or https://"));
        assert!(err("telemetry: {samplingRatio: 1.5}").contains("telemetry.samplingRatio"));
        assert!(err("telemetry: {samplingRatio: -0.1}").contains("telemetry.samplingRatio"));
        let good = config("telemetry: {otlpEndpoint: 'https://otel.example:4318', samplingRatio: 0.25}").unwrap();
        assert!(good.validate().is_ok());
        assert!(config("telemetry: {}").unwrap().validate().is_ok());
    }
}
