//! Godel Guardrail's guard: the data plane in front of LLM applications. Every prompt
//! is rate-limited per user and tier, inspected by traps, scored into security debt and
//! recorded in an audit trail that names users only by keyed hash and ciphertext.

pub mod audit;
pub mod audit_tool;
pub mod cli;
pub mod config;
pub mod edge;
pub mod engine;
pub mod http;
pub mod keys;
pub mod limiter;
pub mod metrics;
pub mod pseudonym;
pub mod server;
