//! Godel Guardrail's operator: turns a `GuardrailPolicy` into a monitored guard fleet.

pub mod context;
pub mod controller;
pub mod drift;
pub mod error;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod resources;
pub mod status;
pub mod validate;
