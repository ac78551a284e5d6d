//! Godel Guardrail's guard: the data plane in front of LLM applications. Every prompt
//! is rate-limited per user and tier, inspected by traps, scored into security debt and
//! recorded in an audit trail that names users only by keyed hash and ciphertext.

mod audit;
pub mod audit_tool;
pub mod cli;
pub mod config;
mod edge;
mod engine;
pub mod http;
mod keys;
pub mod limiter;
mod limits;
pub mod metrics;
mod pricing;
mod pseudonym;
pub mod server;
mod tokens;
