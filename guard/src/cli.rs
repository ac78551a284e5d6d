//! Command-line interface. `godel-guard` alone serves with the embedded defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::http::body::{DEFAULT_BODY_TIMEOUT_MS, DEFAULT_MIN_BODY_RATE};

#[derive(Debug, Parser)]
#[command(
    name = "godel-guard",
    version,
    about = "Godel Guardrail guard: rate limits, traps and a pseudonymous audit trail for LLM prompts"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the guard's HTTP API (the default).
    Serve(ServeArgs),
    /// Tools for whoever holds the audit key.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Check a config file the way the guard would at start-up, then exit.
    CheckConfig {
        /// YAML or JSON config file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Read audit lines on stdin; write them to stdout with `user_id` decrypted.
    Decrypt {
        /// Key or keyring file (64 hex digits or base64 per line); repeatable.
        #[arg(long = "key-file")]
        key_files: Vec<PathBuf>,
        /// File of KMS ciphertext blobs (as the guard's `kms` source reads); repeatable.
        #[arg(long = "kms-ciphertext-file")]
        kms_ciphertext_files: Vec<PathBuf>,
        #[command(flatten)]
        kms: KmsArgs,
    },
    /// Ask AWS KMS for a new AES-256 data key (GenerateDataKey) and write its ciphertext
    /// blob, base64, to stdout: put it first in the `kms.ciphertextFile` Secret to rotate.
    NewDataKey {
        /// The KMS key (id, ARN or alias) that protects the data key.
        #[arg(long)]
        kms_key_id: String,
        #[command(flatten)]
        kms: KmsArgs,
    },
}

#[derive(Debug, Args)]
pub struct KmsArgs {
    /// AWS region (else the default chain: AWS_REGION, profile, instance metadata).
    #[arg(long = "kms-region")]
    pub region: Option<String>,
    /// KMS endpoint override (else AWS_ENDPOINT_URL_KMS or the regional endpoint).
    #[arg(long = "kms-endpoint")]
    pub endpoint: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// JSON in production mode, human-readable text otherwise.
    #[default]
    Auto,
    Json,
    Text,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "GODEL_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Guard config file (YAML or JSON); the embedded defaults without one.
    #[arg(long, env = "GODEL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Refuse development shortcuts: ephemeral or environment-variable keys.
    #[arg(long, env = "GODEL_PRODUCTION")]
    pub production: bool,
    /// After SIGTERM, keep serving this long with readiness off [default: 5000 in
    /// production mode, 0 otherwise].
    #[arg(long, env = "GODEL_DRAIN_DELAY_MS")]
    pub drain_delay_ms: Option<u64>,
    /// Longest wait for in-flight requests after the drain delay.
    #[arg(long, env = "GODEL_SHUTDOWN_TIMEOUT_MS", default_value_t = 20_000)]
    pub shutdown_timeout_ms: u64,
    /// Time a client has to send a request head: from the connection's accept for its
    /// first request, from the first byte of each later one.
    #[arg(long, env = "GODEL_HEADER_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_ms: u64,
    /// How long a keep-alive connection may stay idle between requests (at least the
    /// header timeout). Keep it above the idle timeout of the load balancer in front
    /// (AWS ALB and NGINX: 60 s), or it may send a request on a connection the guard is
    /// closing, which its client sees as a 502.
    #[arg(long, env = "GODEL_IDLE_TIMEOUT_MS", default_value_t = 75_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_ms: u64,
    /// Longest time a request body may take to arrive (408 after it).
    #[arg(long, env = "GODEL_BODY_TIMEOUT_MS", default_value_t = DEFAULT_BODY_TIMEOUT_MS, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_ms: u64,
    /// Bytes per second a request body must average after its first five seconds
    /// (408 below it), so a client cannot trickle a body to hold a connection.
    #[arg(long, env = "GODEL_MIN_BODY_RATE", default_value_t = DEFAULT_MIN_BODY_RATE, value_parser = clap::value_parser!(u64).range(1..))]
    pub min_body_rate: u64,
    /// Connections served at once; over it a new connection gets a 503 and is closed.
    /// Lowered at start-up to leave 1024 file descriptors free.
    #[arg(long, env = "GODEL_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
    #[arg(long, env = "GODEL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
    /// Guards sharing the limits (the operator sets it: the largest size the fleet can
    /// reach). With Redis unreachable and `failureMode: local`, each divides every tier's
    /// limits by it, so the fleet still enforces about the global limit.
    #[arg(long, env = "GODEL_FLEET_SIZE", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub fleet_size: u32,
}
