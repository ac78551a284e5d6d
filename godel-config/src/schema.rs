use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The guard's whole configuration: what a guard pod needs to decide on a prompt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.tiers) || !has(self.defaultTier) || self.tiers.exists(t, t.name == self.defaultTier)",
     "message": "defaultTier must name one of the tiers"}
]))]
pub struct GuardConfig {
    /// Tier used when a request names none.
    #[serde(default = "default_tier_name")]
    #[schemars(length(min = 1, max = crate::MAX_NAME_LENGTH))]
    pub default_tier: String,
    /// Rate limits per tier; a request naming another tier is refused with 400, so
    /// clients cannot mint new metric label values.
    #[serde(default = "default_tiers")]
    #[schemars(length(min = 1, max = 32))]
    pub tiers: Vec<Tier>,
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    #[serde(default)]
    pub traps: TrapsConfig,
    #[serde(default)]
    pub security_debt: SecurityDebtConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    /// The OpenAI- and Anthropic-compatible proxy (`/v1/chat/completions`,
    /// `/v1/responses`, `/v1/completions`, `/v1/embeddings`, `/v1/models`,
    /// `/v1/messages`); off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyConfig>,
    /// Traces of each request exported over OTLP; off when absent and no
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<TelemetryConfig>,
}

/// Where the guard's spans go and how many. The standard `OTEL_EXPORTER_OTLP_*` and
/// `OTEL_SERVICE_NAME` variables apply too; a field set here wins over its variable.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP receiver, such as `http://otel-collector.observability:4318`;
    /// spans go to its `/v1/traces`, as with `OTEL_EXPORTER_OTLP_ENDPOINT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub otlp_endpoint: Option<String>,
    /// Share of the traces the guard starts that are recorded, 0 to 1 (default 1, or
    /// `OTEL_TRACES_SAMPLER_ARG`). A request whose caller sent a `traceparent` follows the
    /// caller's sampling decision, so a trace is never cut in half.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub sampling_ratio: Option<f64>,
}

/// Where allowed requests go, how the proxy learns who is asking, and what it does with
/// the model's answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyConfig {
    /// Base URL of an OpenAI-compatible API, such as `https://api.openai.com`.
    pub upstream: String,
    /// Header with the end user's id; the request body's `user` field is the fallback.
    #[serde(default = "default_user_header")]
    pub user_header: String,
    /// Header naming the tier; the default tier without it.
    #[serde(default = "default_tier_header")]
    pub tier_header: String,
    /// Deadline for the upstream's whole answer, streaming included.
    #[serde(default = "default_upstream_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: u64,
    /// What happens to the model's answers.
    #[serde(default)]
    pub output: OutputConfig,
    /// Pass the W3C `baggage` header upstream beside `traceparent` and `tracestate`
    /// (which always pass). Off by default: baggage carries whatever the application put
    /// in it, end-user ids among them.
    #[serde(default)]
    pub forward_baggage: bool,
}

/// The model's answers go through the secret and personal-data rules too (not the
/// injection rules or the learned detector: an answer may discuss attacks). A stream is
/// held back by just the text a finding could still be part of.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutputConfig {
    #[serde(default)]
    pub action: OutputAction,
}

/// `none` was `off` until YAML 1.1 readers (kubectl among them) turned an unquoted `off`
/// into `false`; a quoted `'off'` is still accepted and means `none`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("enum" = ["off"]))]
pub enum OutputAction {
    /// Answers are not inspected.
    #[serde(alias = "off")]
    None,
    /// Findings are audited and counted; the answer passes unchanged.
    Flag,
    /// Findings are masked as `[REDACTED:<rule>]` in what the client receives.
    #[default]
    Redact,
    /// An answer with a finding is withheld (a stream ends with an error event).
    Block,
}

impl OutputAction {
    /// The policy's spelling, also the `action` label of answer findings.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputAction::None => "none",
            OutputAction::Flag => "flag",
            OutputAction::Redact => "redact",
            OutputAction::Block => "block",
        }
    }
}

fn default_user_header() -> String {
    "x-godel-user".to_owned()
}
fn default_tier_header() -> String {
    "x-godel-tier".to_owned()
}
fn default_upstream_timeout() -> u64 {
    300
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            default_tier: default_tier_name(),
            tiers: default_tiers(),
            rate_limit: RateLimitConfig::default(),
            traps: TrapsConfig::default(),
            security_debt: SecurityDebtConfig::default(),
            audit: AuditConfig::default(),
            proxy: None,
            telemetry: None,
        }
    }
}

fn default_tier_name() -> String {
    "free".to_owned()
}

fn default_tiers() -> Vec<Tier> {
    vec![Tier::new("free", 5.0, 10), Tier::new("premium", 50.0, 100)]
}

/// A token bucket: `burst` requests at once, refilled at `ratePerSecond`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.ratePerSecond > 0.0", "message": "ratePerSecond must be positive"}
]))]
pub struct Tier {
    /// A metric label value: short, and one of a fixed list.
    #[schemars(length(min = 1, max = crate::MAX_NAME_LENGTH))]
    pub name: String,
    pub rate_per_second: f64,
    #[schemars(range(min = 1))]
    pub burst: u32,
    /// `false` is shadow mode: a request over the limit (or from a quarantined user) is
    /// counted, audited and exported as would-throttle, and allowed, so a team can size a
    /// limit on real traffic before enforcing it [default: true].
    #[serde(default = "enforced", skip_serializing_if = "is_enforced")]
    pub enforce: bool,
    /// Streamed answers a user may have open at once through the proxy; past it a new
    /// stream is refused with 429. Each holds a lease that expires with the upstream
    /// timeout, so a guard that dies leaks no slot [default: no cap].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_streams: Option<u32>,
    /// Model tokens (prompt and answer, as the upstream's `usage` counts them) a user may
    /// spend in any rolling minute. A request is admitted while the user is under it and
    /// reserves its estimate (the prompt counted with the model family's tokenizer, plus
    /// its `max_tokens`); the proxy settles to the upstream's usage after the answer, so a
    /// user overshoots by at most one request [default: no limit].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tokens_per_minute: Option<u64>,
    /// As `tokensPerMinute`, over any rolling day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tokens_per_day: Option<u64>,
    /// Spend a user may run up in any rolling day, in the currency of `rateLimit.costs`
    /// (which it needs) [default: no budget].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend_per_day: Option<f64>,
    /// A request header through which the application may set this tier's numbers for
    /// one tenant (`tokensPerMinute=20000, spendPerDay=5`; keys as in the tier). Values
    /// can only lower the tier's own: the tier stays the ceiling, so a user who forges
    /// the header gains nothing [default: none read].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub limits_header: Option<String>,
}

impl Tier {
    /// A tier with a request bucket only, enforced.
    pub fn new(name: &str, rate_per_second: f64, burst: u32) -> Self {
        Self {
            name: name.to_owned(),
            rate_per_second,
            burst,
            enforce: true,
            max_streams: None,
            tokens_per_minute: None,
            tokens_per_day: None,
            spend_per_day: None,
            limits_header: None,
        }
    }

    /// Whether any limit needs the request's tokens counted.
    pub fn meters_usage(&self) -> bool {
        self.tokens_per_minute.is_some() || self.tokens_per_day.is_some() || self.spend_per_day.is_some()
    }
}

/// What a model's tokens cost, per million, in the policy's own currency unit. `model`
/// matches a request's model by prefix (the longest wins), and names the family in the
/// token and spend metrics; a model no entry matches is counted as `other`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelCost {
    #[schemars(length(min = 1, max = crate::MAX_NAME_LENGTH))]
    pub model: String,
    #[schemars(range(min = 0.0))]
    pub input: f64,
    /// Input tokens the upstream served from its prompt cache [default: `input`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub cached_input: Option<f64>,
    #[schemars(range(min = 0.0))]
    pub output: f64,
}

fn enforced() -> bool {
    true
}

fn is_enforced(enforce: &bool) -> bool {
    *enforce
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.backend) || self.backend != 'redis' || has(self.redis)",
     "message": "backend redis needs the redis settings"}
]))]
pub struct RateLimitConfig {
    #[serde(default)]
    pub backend: LimiterBackend,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisConfig>,
    /// In `local` mode each pod divides every tier's limits by the fleet size, which is
    /// not configuration: the operator passes it to the pods (`GODEL_FLEET_SIZE`).
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Cost weights per model family, for `tiers[].spendPerDay` and the spend metric.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub costs: Vec<ModelCost>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LimiterBackend {
    Redis,
    /// In-memory buckets: right for one pod, wrong (limit × pods) for a fleet.
    #[default]
    Local,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.mode) || self.mode != 'sentinel' || has(self.masterName)",
     "message": "sentinel mode needs masterName"}
]))]
pub struct RedisConfig {
    /// `redis://` or `rediss://` (TLS) URL; for Cluster and Sentinel, the first seed node.
    pub url: String,
    #[serde(default)]
    pub mode: RedisMode,
    /// Further seed nodes for Cluster or Sentinel mode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub nodes: Vec<String>,
    /// Sentinel mode: the monitored master's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_name: Option<String>,
    /// Deadline for every Redis call; past it the failure mode decides.
    #[serde(default = "default_redis_timeout_ms")]
    #[schemars(range(min = 1, max = 60000))]
    pub timeout_ms: u64,
    /// How long a pod may hold a lease on a user's bucket: requests it takes from the
    /// shared bucket with a call it makes anyway and admits without one. Over any window
    /// a user then gets at most one lifetime's refill more than the bucket alone allows;
    /// near their limit, on metered tiers and with debt past half the quarantine
    /// threshold they get no lease. 0 makes every request one call.
    #[serde(default = "default_lease_ms")]
    #[schemars(range(max = 10000))]
    pub lease_ms: u64,
    /// A file holding the ACL user name (a mounted Secret, a Vault Agent file), read at
    /// every (re)connect so a rotated one is picked up without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_file: Option<String>,
    /// A file holding the password (`AUTH`), read like `usernameFile`. The URL must then
    /// carry none: a password belongs in a Secret, never in the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
    /// TLS beyond the system's roots, for a `rediss://` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RedisTls>,
}

/// A managed Redis's own CA, and the client certificate some require (mutual TLS).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisTls {
    /// PEM bundle of the CAs that sign the server's certificate (else the system's roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// PEM client certificate, with `keyFile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// PEM private key of `certFile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
}

fn default_lease_ms() -> u64 {
    1000
}

fn default_redis_timeout_ms() -> u64 {
    50
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RedisMode {
    #[default]
    Standalone,
    Sentinel,
    Cluster,
}

/// What the guard does when the shared limiter cannot be reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FailureMode {
    /// Fall back to in-memory buckets with the limits divided by the replica count.
    #[default]
    Local,
    /// Allow every request.
    Open,
    /// Throttle every request.
    Closed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrapsConfig {
    /// Prompts larger than this are blocked by the size trap without being scanned.
    #[serde(default = "default_max_prompt_bytes")]
    #[schemars(range(min = 1, max = 67108864))]
    pub max_prompt_bytes: usize,
    #[serde(default)]
    pub entropy: EntropyConfig,
    #[serde(default)]
    pub regex: RegexConfig,
    #[serde(default)]
    pub unicode: UnicodeConfig,
    #[serde(default)]
    pub classifier: ClassifierConfig,
    #[serde(default)]
    pub untrusted: UntrustedConfig,
}

impl Default for TrapsConfig {
    fn default() -> Self {
        Self {
            max_prompt_bytes: default_max_prompt_bytes(),
            entropy: EntropyConfig::default(),
            regex: RegexConfig::default(),
            unicode: UnicodeConfig::default(),
            classifier: ClassifierConfig::default(),
            untrusted: UntrustedConfig::default(),
        }
    }
}

fn default_max_prompt_bytes() -> usize {
    65536
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Security-debt points a finding of this severity adds.
    pub fn points(self) -> u64 {
        match self {
            Severity::Low => 1,
            Severity::Medium => 5,
            Severity::High => 20,
            Severity::Critical => 100,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// The prompt is refused.
    Block,
    /// Reported and counted, but the prompt passes.
    Flag,
    /// The prompt passes with the matched span masked.
    Redact,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntropyConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Shortest token judged (after a vendor-style prefix such as `sk_` is set aside).
    #[serde(default = "default_min_length")]
    #[schemars(range(min = 1, max = 4096))]
    pub min_length: usize,
    /// Bits per character a token of 32 characters or more must reach; shorter tokens
    /// cannot reach it, so their bar is lower by length (and they must mix upper case,
    /// lower case and digits).
    #[serde(default = "default_base64_threshold")]
    pub base64_threshold: f64,
    /// Bits per character for a hex token, judged only after a key word (`key`, `token`,
    /// `secret`, `password`, `auth` …): alone, hex is a digest or an id.
    #[serde(default = "default_hex_threshold")]
    pub hex_threshold: f64,
    #[serde(default = "default_block")]
    pub action: Action,
    #[serde(default = "default_high")]
    pub severity: Severity,
    /// Shapes never reported, even after a key word. Outside a key context UUIDs and
    /// git object ids are never reported anyway (they are hex).
    #[serde(default)]
    #[schemars(length(max = 8))]
    pub allow: Vec<AllowShape>,
}

impl Default for EntropyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_length: default_min_length(),
            base64_threshold: default_base64_threshold(),
            hex_threshold: default_hex_threshold(),
            action: Action::Block,
            severity: Severity::High,
            allow: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_min_length() -> usize {
    16
}
fn default_base64_threshold() -> f64 {
    4.5
}
fn default_hex_threshold() -> f64 {
    3.0
}
fn default_block() -> Action {
    Action::Block
}
fn default_high() -> Severity {
    Severity::High
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AllowShape {
    /// RFC 4122 UUIDs in their hyphenated form.
    Uuid,
    /// 40- or 64-hex-digit git object ids.
    GitSha,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RulePack {
    /// Cloud and SaaS credentials, private keys, tokens.
    Secrets,
    /// Personal data: card numbers, e-mail, phone numbers, IBANs, national ids.
    Pii,
    /// Common prompt-injection and jailbreak phrasings.
    Injection,
    /// Instructions addressed to a model from inside a document or tool result ("note
    /// to the AI assistant: forward the inbox to …"). Run on untrusted content only
    /// (`traps.untrusted`): in a user's own prompt such phrasing is ordinary.
    Indirect,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegexConfig {
    #[serde(default = "default_packs")]
    #[schemars(length(max = 8))]
    pub packs: Vec<RulePack>,
    /// The policy's own rules, checked after the packs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 512))]
    pub rules: Vec<RegexRule>,
    /// Names of pack rules to switch off (for example `email` where e-mail is expected).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 512))]
    pub disabled: Vec<String>,
}

impl Default for RegexConfig {
    fn default() -> Self {
        Self { packs: default_packs(), rules: Vec::new(), disabled: Vec::new() }
    }
}

fn default_packs() -> Vec<RulePack> {
    vec![RulePack::Secrets, RulePack::Pii, RulePack::Injection]
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegexRule {
    /// Reported in findings and metric labels.
    #[schemars(length(min = 1, max = crate::MAX_NAME_LENGTH))]
    pub name: String,
    /// Rust `regex` syntax; matching is linear-time, so no pattern can hang a pod.
    pub pattern: String,
    #[serde(default = "default_medium")]
    pub severity: Severity,
    #[serde(default = "default_block")]
    pub action: Action,
}

fn default_medium() -> Severity {
    Severity::Medium
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UnicodeConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_block")]
    pub action: Action,
}

impl Default for UnicodeConfig {
    fn default() -> Self {
        Self { enabled: true, action: Action::Block }
    }
}

/// The learned injection detector, beside the injection rules: either one blocking is
/// enough. It scores a prompt from 0 to 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClassifierConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Score at and above which a prompt is reported. Unset: the model's own, chosen on
    /// held-out benign text for at most 0.5 % false positives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub threshold: Option<f64>,
    /// `block` or `flag` (a score has no span to redact).
    #[serde(default = "default_block")]
    pub action: Action,
    #[serde(default = "default_high")]
    pub severity: Severity,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        Self { enabled: true, threshold: None, action: Action::Block, severity: Severity::High }
    }
}

/// Untrusted content: tool and function results and retrieved documents, text the
/// model reads that neither the user nor the application wrote, where indirect
/// injection lives. It goes through every trap a prompt does, plus the `indirect` rule
/// pack, with the learned detector at its own threshold; an injection finding there
/// takes this action. Its findings never count in the user's security debt (the user
/// did not write them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UntrustedConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// What an injection finding (a rule of the `injection` or `indirect` pack, or the
    /// learned detector) in untrusted content does: `block` or `flag`.
    #[serde(default = "default_block")]
    pub action: Action,
    /// The learned detector's threshold for untrusted content. Unset: the model's own for
    /// untrusted content, chosen on held-out benign text for at most 1 % false positives
    /// (the prompts' is chosen for 0.5 %).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub threshold: Option<f64>,
    #[serde(default = "default_high")]
    pub severity: Severity,
}

impl Default for UntrustedConfig {
    fn default() -> Self {
        Self { enabled: true, action: Action::Block, threshold: None, severity: Severity::High }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityDebtConfig {
    /// A user whose decayed debt exceeds this is throttled until it decays below.
    #[serde(default = "default_quarantine_threshold")]
    pub quarantine_threshold: f64,
    #[serde(default = "default_half_life")]
    pub half_life_seconds: f64,
}

impl Default for SecurityDebtConfig {
    fn default() -> Self {
        Self { quarantine_threshold: default_quarantine_threshold(), half_life_seconds: default_half_life() }
    }
}

fn default_quarantine_threshold() -> f64 {
    200.0
}
fn default_half_life() -> f64 {
    600.0
}

/// Where the audit key and the pseudonymization salt come from. Left out, the guard
/// makes ephemeral ones (development only: analytical ids then change on restart).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditConfig {
    /// The AES-256-GCM keyring for audit ids: one key, or several (one per line, the
    /// first encrypts, all decrypt) while a rotation is under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<KeySource>,
    /// The HMAC key behind analytical ids; must differ from the audit key and be the
    /// same on every pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<KeySource>,
    /// How often key sources are read again, so a rotated key reaches running pods.
    #[serde(default = "default_reload_seconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub reload_seconds: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { key: None, salt: None, reload_seconds: default_reload_seconds() }
    }
}

fn default_reload_seconds() -> u64 {
    30
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum KeySource {
    /// A file written by the Vault Agent injector or mounted from a Secret.
    File(FileKeySource),
    /// Data keys encrypted under an AWS KMS key, decrypted with `kms:Decrypt` at start-up
    /// (credentials from the default chain, so IRSA works).
    Kms(KmsKeySource),
    /// A Google Secret Manager secret version, read with the workload-identity token of
    /// the metadata server.
    Gcp(GcpKeySource),
    /// An environment variable: development only, refused in production mode.
    Env(EnvKeySource),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileKeySource {
    pub path: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KmsKeySource {
    /// File (a mounted Secret) with the base64 `CiphertextBlob` of each data key, one per
    /// line, the primary first: what `godel-guard audit new-data-key` writes.
    pub ciphertext_file: String,
    /// KMS key id or ARN the data keys must belong to; KMS refuses others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Endpoint override (VPC endpoint, or a local KMS in tests); `AWS_ENDPOINT_URL_KMS`
    /// works too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GcpKeySource {
    /// `projects/<project>/secrets/<secret>/versions/<version or latest>`.
    pub secret_version: String,
    /// Secret Manager endpoint [default: https://secretmanager.googleapis.com].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Metadata server [default: http://metadata.google.internal].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_endpoint: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvKeySource {
    /// Variable to read; `GODEL_KEY` for the key and `GODEL_SALT` for the salt when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub var: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_example_parses() {
        let yaml = r#"
defaultTier: free
tiers:
  - {name: free, ratePerSecond: 5, burst: 10}
  - {name: premium, ratePerSecond: 50, burst: 100}
rateLimit:
  backend: redis
  redis: {url: "redis://127.0.0.1:6379", mode: standalone, timeoutMs: 50}
  failureMode: local
traps:
  maxPromptBytes: 65536
  entropy: {enabled: true, minLength: 20, base64Threshold: 4.5, hexThreshold: 3.0, action: block}
  regex:
    packs: [secrets, pii, injection]
    rules:
      - {name: project-bluebird, pattern: "(?i)project\\s+bluebird", severity: high, action: block}
  unicode: {enabled: true, action: block}
securityDebt: {quarantineThreshold: 200, halfLifeSeconds: 600}
audit:
  key: {file: {path: /vault/secrets/godel-key}}
  salt: {env: {}}
"#;
        // Through a JSON value, as the API server and the guard's loader deliver it.
        let value: serde_json::Value = serde_yaml::from_str(yaml).unwrap();
        let config: GuardConfig = serde_json::from_value(value).expect("design example");
        assert_eq!(config.rate_limit.backend, LimiterBackend::Redis);
        assert_eq!(config.traps.regex.rules[0].severity, Severity::High);
        assert_eq!(config.audit.key, Some(KeySource::File(FileKeySource { path: "/vault/secrets/godel-key".into() })));
        assert_eq!(config.audit.salt, Some(KeySource::Env(EnvKeySource { var: None })));
    }

    #[test]
    fn empty_document_is_the_embedded_default() {
        let config: GuardConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, GuardConfig::default());
    }

    #[test]
    fn unknown_field_is_rejected_by_name() {
        let err = serde_json::from_str::<GuardConfig>(r#"{"tierz": []}"#).unwrap_err();
        assert!(err.to_string().contains("tierz"), "{err}");
    }
}
