//! The guard's HTTP surface, in the style of axum's examples: one shared state, thin
//! handlers, errors as JSON.

pub(crate) mod body;
mod error;
mod finding;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod health;
mod inspect;
mod metrics;
mod proxy;
mod timing;
mod trace;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

use crate::engine::Guard;
use crate::metrics::Metrics;

pub use body::BodyLimits;
pub use error::ApiError;
pub use proxy::{Upstream, UpstreamError};

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

    /// The value of the tier's `limitsHeader` in `headers`, if it reads one and the
    /// request has it; a value that is not text is an error, not a header ignored (the
    /// tenant's lower numbers would be lost).
    pub(crate) fn tenant_limits<'h>(
        &self,
        tier: Option<&str>,
        headers: &'h axum::http::HeaderMap,
    ) -> Result<Option<&'h str>, crate::limits::InvalidLimits> {
        let Some(name) = self.guard.limits_header(tier) else { return Ok(None) };
        headers.get(name).map(|v| v.to_str().map_err(|_| crate::limits::InvalidLimits::of(name))).transpose()
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

pub const INSPECT: &str = "/v1/inspect";
pub const HEALTH: &str = "/health";
pub const LIVEZ: &str = "/livez";
pub const METRICS: &str = "/metrics";
/// Every route, once: the router serves these, and the latency metric labels requests
/// by them (anything else is `other`, so scanners cannot mint series).
pub const ROUTES: [&str; 12] = [
    INSPECT,
    proxy::CHAT_COMPLETIONS.path,
    proxy::RESPONSES.path,
    proxy::COMPLETIONS.path,
    proxy::EMBEDDINGS.path,
    proxy::MESSAGES.path,
    proxy::COUNT_TOKENS,
    proxy::MODELS,
    proxy::MODEL,
    HEALTH,
    LIVEZ,
    METRICS,
];

pub fn router(state: Arc<AppState>, body: BodyLimits) -> Router {
    let router = proxy::ROUTES.into_iter().fold(Router::new(), |router, r| router.route(r.path, proxy::guarded(r)));
    let router = router
        .route(INSPECT, post(inspect::inspect))
        .route(proxy::MODELS, get(proxy::models))
        .route(proxy::MODEL, get(proxy::model))
        .route(proxy::COUNT_TOKENS, post(proxy::count_tokens))
        .route(HEALTH, get(health::health))
        .route(LIVEZ, get(health::livez))
        .route(METRICS, get(metrics::metrics))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        // `body::read` enforces the size cap before any handler; the extractors' own
        // default cap would only be a second, different one.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(Arc::new(body), body::read))
        .layer(middleware::from_fn_with_state(state.clone(), close_when_draining))
        .layer(middleware::from_fn_with_state(state.clone(), timing::record));
    let router =
        if godel_telemetry::exporting() { router.layer(middleware::from_fn(trace::server_span)) } else { router };
    router.with_state(state)
}

/// While draining, every response says `Connection: close`, so keep-alive clients open
/// their next request on a pod that is staying.
async fn close_when_draining(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if state.draining.load(Ordering::SeqCst) {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
