//! What must hold before the operator touches a running fleet: the guard config passes
//! the guard's own start-up checks (`godel_traps::check`, the same validation and rule
//! compiler, so a regex that would crash a pod never reaches one), the fleet fields pass
//! the CRD's CEL rules again (`GuardrailPolicySpec::check_relations`), the fleet could start
//! as it always does, with `--production` (keys from files, KMS or GCP, at paths the pod
//! has), and every referenced Secret exists.

use godel_crds::{GuardrailPolicy, InvalidPolicy, KeySource};

use crate::resources::CONFIG_DIR;
use crate::status::Reason;

/// The Vault Agent injector writes its files here when a pod annotation asks for it.
const VAULT_DIR: &str = "/vault/secrets";
const VAULT_INJECT: &str = "vault.hashicorp.com/agent-inject";

/// Why a spec cannot be applied, with the condition reason it maps to.
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid {
    pub reason: Reason,
    pub message: String,
}

/// Checks that need no API calls.
pub fn spec(policy: &GuardrailPolicy) -> Result<(), Invalid> {
    godel_traps::check(&policy.spec.guard)
        .map_err(|e| Invalid { reason: Reason::InvalidGuardConfig, message: format!("spec.guard: {e}") })?;
    policy.spec.check_relations().map_err(|e| {
        let reason = match e {
            InvalidPolicy::AlbWithoutWaf => Reason::InvalidIngress,
            InvalidPolicy::MinAboveMax => Reason::InvalidAutoscaling,
            InvalidPolicy::GraceTooShort => Reason::InvalidDeployment,
        };
        Invalid { reason, message: e.to_string() }
    })?;
    metadata_keys(policy).map_err(|message| Invalid { reason: Reason::InvalidMetadata, message })?;
    mounts(policy).map_err(|message| Invalid { reason: Reason::InvalidSecrets, message })?;
    keys(policy).map_err(|message| Invalid { reason: Reason::InvalidKeys, message })?;
    redis_access(policy).map_err(|message| Invalid { reason: Reason::InvalidRedis, message })?;
    Ok(())
}

/// Label and annotation keys the operator writes onto objects, and label values: what
/// the API server would refuse, named here by field rather than as an apply error.
fn metadata_keys(policy: &GuardrailPolicy) -> Result<(), String> {
    let spec = &policy.spec;
    for (field, map, values) in [
        ("spec.monitoring.labels", &spec.monitoring.labels, true),
        ("spec.deployment.podAnnotations", &spec.deployment.pod_annotations, false),
        ("spec.serviceAccount.annotations", &spec.service_account.annotations, false),
    ] {
        for (key, value) in map {
            if !qualified_name(key) {
                return Err(format!(
                    "{field}: {key:?} is not a valid key (an optional DNS subdomain prefix and `/`, then at most 63 letters, digits, `-`, `_` or `.`, starting and ending alphanumeric)"
                ));
            }
            if values && !(value.is_empty() || name_part(value)) {
                return Err(format!("{field}.{key}: {value:?} is not a valid label value"));
            }
        }
    }
    Ok(())
}

/// `[prefix/]name` as Kubernetes checks label and annotation keys.
fn qualified_name(key: &str) -> bool {
    match key.rsplit_once('/') {
        Some((prefix, name)) => dns_subdomain(prefix) && name_part(name),
        None => name_part(key),
    }
}

fn name_part(name: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    name.len() <= 63
        && edge(name.chars().next())
        && edge(name.chars().last())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn dns_subdomain(prefix: &str) -> bool {
    prefix.len() <= 253
        && prefix.split('.').all(|label| {
            let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            label.len() <= 63
                && edge(label.chars().next())
                && edge(label.chars().last())
                && label.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

/// Where each Secret is mounted: absolute, one Secret per path, and neither over the
/// config directory nor over a directory holding it. Under it is the design
/// (`/etc/godel/keys`): the ConfigMap holds one file, `config.yaml`.
fn mounts(policy: &GuardrailPolicy) -> Result<(), String> {
    let mut seen: Vec<&str> = Vec::new();
    for (n, mount) in policy.spec.secrets.iter().enumerate() {
        let path = mount.mount_path.trim_end_matches('/');
        let field = format!("spec.secrets[{n}].mountPath");
        if !path.starts_with('/') || path.split('/').any(|part| part == "..") {
            return Err(format!("{field}: {:?} must be an absolute path without `..`", mount.mount_path));
        }
        if path.is_empty() || CONFIG_DIR.starts_with(&format!("{path}/")) || path == CONFIG_DIR {
            return Err(format!(
                "{field}: {:?} would hide the guard's config directory {CONFIG_DIR}",
                mount.mount_path
            ));
        }
        if path == format!("{CONFIG_DIR}/config.yaml") {
            return Err(format!("{field}: {:?} is the guard's config file", mount.mount_path));
        }
        if seen.contains(&path) {
            return Err(format!("{field}: {:?} is already the mount path of another Secret", mount.mount_path));
        }
        seen.push(path);
    }
    Ok(())
}

/// The fleet runs `--production`, which refuses keys from the environment and a missing
/// key (an ephemeral one would differ per pod); a key file must be in a mounted Secret,
/// or where the Vault Agent injector writes when the pods ask for it.
fn keys(policy: &GuardrailPolicy) -> Result<(), String> {
    let audit = &policy.spec.guard.audit;
    for (field, source) in [("key", &audit.key), ("salt", &audit.salt)] {
        let field = format!("spec.guard.audit.{field}");
        let path = match source {
            None => {
                return Err(format!(
                    "{field}: the fleet runs in production mode, which needs it from a file, kms or gcp"
                ));
            }
            Some(KeySource::Env(_)) => {
                return Err(format!(
                    "{field}: env is refused in production mode, which the fleet runs: use file, kms or gcp"
                ));
            }
            Some(KeySource::Gcp(_)) => continue,
            Some(KeySource::File(file)) => &file.path,
            Some(KeySource::Kms(kms)) => &kms.ciphertext_file,
        };
        readable(policy, &field, path)?;
    }
    Ok(())
}

/// A file the pods must read: in a mounted Secret, or where the Vault Agent injector
/// writes when the pods ask for it.
fn readable(policy: &GuardrailPolicy, field: &str, path: &str) -> Result<(), String> {
    let vault = policy.spec.deployment.pod_annotations.get(VAULT_INJECT).is_some_and(|v| v == "true");
    let inside = |dir: &str| path.starts_with(&format!("{}/", dir.trim_end_matches('/')));
    if policy.spec.secrets.iter().any(|m| inside(&m.mount_path)) || vault && inside(VAULT_DIR) {
        return Ok(());
    }
    Err(format!(
        "{field}: {path} is in no mounted Secret (spec.secrets) and not in {VAULT_DIR} with the {VAULT_INJECT} pod annotation: the pods could not read it"
    ))
}

/// A policy lives in Git and its guard config in a ConfigMap, so Redis credentials may
/// not be in its URLs: they come from files, and those files must be readable by the pods.
fn redis_access(policy: &GuardrailPolicy) -> Result<(), String> {
    let Some(redis) = &policy.spec.guard.rate_limit.redis else { return Ok(()) };
    let field = "spec.guard.rateLimit.redis";
    let urls = std::iter::once(("url".to_owned(), &redis.url))
        .chain(redis.nodes.iter().enumerate().map(|(i, node)| (format!("nodes[{i}]"), node)));
    for (name, url) in urls {
        if godel_crds::has_credentials(url) {
            return Err(format!(
                "{field}.{name} carries credentials, which would sit in Git and in the guard's ConfigMap: put them in a Secret and name the files with usernameFile and passwordFile"
            ));
        }
    }
    let tls = redis.tls.clone().unwrap_or_default();
    let files = [
        ("usernameFile", &redis.username_file),
        ("passwordFile", &redis.password_file),
        ("tls.caFile", &tls.ca_file),
        ("tls.certFile", &tls.cert_file),
        ("tls.keyFile", &tls.key_file),
    ];
    for (name, path) in files {
        if let Some(path) = path {
            readable(policy, &format!("{field}.{name}"), path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures;

    #[test]
    fn broken_regex_is_caught_with_the_rule_name() {
        let p = fixtures::from_yaml("guard: {traps: {regex: {rules: [{name: bad-rule, pattern: '(unclosed'}]}}}");
        let err = spec(&p).unwrap_err();
        assert_eq!(err.reason, Reason::InvalidGuardConfig);
        assert!(err.message.contains("bad-rule"), "{}", err.message);
        assert!(spec(&fixtures::keyed("")).is_ok());
    }

    #[test]
    fn label_and_annotation_keys_the_api_server_would_refuse_are_named() {
        for (rest, needle) in [
            ("monitoring: {labels: {'bad key': x}}", "spec.monitoring.labels"),
            ("monitoring: {labels: {release: 'not ok'}}", "not a valid label value"),
            ("deployment: {podAnnotations: {'Vault.Example/x': y}}", "spec.deployment.podAnnotations"),
            ("serviceAccount: {annotations: {'-x': y}}", "spec.serviceAccount.annotations"),
        ] {
            let err = spec(&fixtures::keyed(rest)).unwrap_err();
            assert_eq!(err.reason, Reason::InvalidMetadata, "{rest}");
            assert!(err.message.contains(needle), "{rest}: {}", err.message);
        }
        let fine = "monitoring: {labels: {release: kube-prometheus-stack, app.kubernetes.io/part-of: ''}}\n\
                    deployment: {podAnnotations: {vault.hashicorp.com/role: godel, prometheus.io/scrape: 'true'}}";
        assert!(spec(&fixtures::keyed(fine)).is_ok());
    }

    #[test]
    fn secrets_mounted_where_the_pod_cannot_use_them_are_refused() {
        for (mounts, needle) in [
            ("[{name: a, mountPath: keys}]", "absolute"),
            ("[{name: a, mountPath: /etc/godel/../x}]", "absolute"),
            ("[{name: a, mountPath: /etc/godel}]", "config directory"),
            ("[{name: a, mountPath: /etc/}]", "config directory"),
            ("[{name: a, mountPath: /etc/godel/config.yaml}]", "config file"),
            ("[{name: a, mountPath: /keys}, {name: b, mountPath: /keys/}]", "another Secret"),
        ] {
            let err = spec(&fixtures::from_yaml(&format!("secrets: {mounts}"))).unwrap_err();
            assert_eq!(err.reason, Reason::InvalidSecrets, "{mounts}");
            assert!(err.message.contains(needle), "{mounts}: {}", err.message);
        }
    }

    #[test]
    fn redis_credentials_come_from_readable_files_never_from_the_url() {
        // A keyed policy (the fleet needs its keys) with `yaml` as its Redis.
        let redis = |yaml: &str| {
            let mut p = fixtures::keyed("");
            let rate_limit = fixtures::from_yaml(&format!("guard: {{rateLimit: {{backend: redis, redis: {yaml}}}}}"));
            p.spec.guard.rate_limit = rate_limit.spec.guard.rate_limit;
            p
        };
        let in_url = spec(&redis("{url: 'redis://guard:hunter2@redis:6379'}")).unwrap_err();
        assert_eq!(in_url.reason, Reason::InvalidRedis);
        assert!(in_url.message.contains("carries credentials") && !in_url.message.contains("hunter2"), "{in_url:?}");
        let elsewhere = spec(&redis("{url: 'redis://redis:6379', passwordFile: /run/redis/password}")).unwrap_err();
        assert!(elsewhere.message.contains("passwordFile") && elsewhere.message.contains("no mounted Secret"));
        let mounted = redis(
            "{url: 'rediss://redis:6380', usernameFile: /etc/godel/keys/redis-user, passwordFile: /etc/godel/keys/redis-password, tls: {caFile: /etc/godel/keys/redis-ca.crt}}",
        );
        assert_eq!(spec(&mounted), Ok(()));
    }

    #[test]
    fn keys_the_production_fleet_could_not_load_are_refused() {
        let with = |audit: &str, rest: &str| {
            fixtures::from_yaml(&format!(
                "guard: {{audit: {audit}}}\nsecrets: [{{name: k, mountPath: /etc/godel/keys}}]\n{rest}"
            ))
        };
        for (audit, needle) in [
            ("{key: {env: {}}, salt: {file: {path: /etc/godel/keys/salt}}}", "env is refused"),
            ("{salt: {file: {path: /etc/godel/keys/salt}}}", "production mode"),
            ("{key: {file: {path: /etc/godel/keys/key}}, salt: {file: {path: /elsewhere/salt}}}", "no mounted Secret"),
            (
                "{key: {file: {path: /etc/godel/keys/key}}, salt: {file: {path: /vault/secrets/salt}}}",
                "no mounted Secret",
            ),
        ] {
            let err = spec(&with(audit, "")).unwrap_err();
            assert_eq!(err.reason, Reason::InvalidKeys, "{audit}");
            assert!(err.message.contains(needle), "{audit}: {}", err.message);
        }
        let vault = with(
            "{key: {kms: {ciphertextFile: /etc/godel/keys/key, keyId: k}}, salt: {file: {path: /vault/secrets/salt}}}",
            "deployment: {podAnnotations: {vault.hashicorp.com/agent-inject: 'true'}}",
        );
        assert!(spec(&vault).is_ok());
    }
}
