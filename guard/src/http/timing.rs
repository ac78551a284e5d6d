use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::{AppState, ROUTES};
use crate::metrics::RouteLabels;

/// Records `godel_request_duration_seconds` by route template. Unknown paths share
/// one label so scanners cannot create series.
pub(super) async fn record(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let matched = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    let route = ROUTES.into_iter().find(|route| Some(*route) == matched).unwrap_or("other");
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.duration.get_or_create(&RouteLabels { route }).observe(started.elapsed().as_secs_f64());
    response
}
