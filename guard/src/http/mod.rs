//! The guard's HTTP surface, in the style of axum's examples: one shared state, thin
//! handlers, errors as JSON.

mod error;
mod health;
mod inspect;
mod metrics;
mod proxy;
mod timing;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::engine::Guard;
use crate::metrics::Metrics;

pub use error::ApiError;
pub use proxy::Upstream;

/// Shared by every handler.
pub struct AppState {
    pub guard: Guard,
    pub metrics: Arc<Metrics>,
    /// The proxy's upstream, when `proxy` is configured.
    pub upstream: Option<Upstream>,
    draining: AtomicBool,
}

impl AppState {
    pub fn new(guard: Guard, metrics: Arc<Metrics>, upstream: Option<Upstream>) -> Self {
        Self { guard, metrics, upstream, draining: AtomicBool::new(false) }
    }

    /// Turns readiness off at once: the first step of a graceful shutdown.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// `Err(reason)` when the guard should not receive traffic.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::SeqCst) {
            return Err("draining");
        }
        self.guard.limiter_readiness()
    }
}

/// Body cap for a policy's prompt cap: JSON escaping can grow a prompt up to six
/// times (`\uXXXX`), plus room for the other fields. Over it: 413 before parsing.
pub fn body_limit(max_prompt_bytes: usize) -> usize {
    max_prompt_bytes.saturating_mul(6).saturating_add(16 * 1024)
}

pub fn router(state: Arc<AppState>, body_limit: usize) -> Router {
    Router::new()
        .route("/v1/inspect", post(inspect::inspect))
        .route("/v1/chat/completions", post(proxy::chat_completions))
        .route("/health", get(health::health))
        .route("/livez", get(health::livez))
        .route("/metrics", get(metrics::metrics))
        .fallback(error::not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), timing::record))
        .with_state(state)
}
