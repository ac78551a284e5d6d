//! The operator's own endpoints: `/metrics`, `/healthz` (alive) and `/readyz`.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

async fn metrics(State(metrics): State<Metrics>) -> impl IntoResponse {
    match metrics.encode() {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            text,
        ),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/plain")], String::new()),
    }
}

async fn ready(State(metrics): State<Metrics>) -> impl IntoResponse {
    if metrics.ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "leading, watch caches not synced yet")
    }
}

pub fn router(metrics_state: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(metrics_state)
}

pub async fn serve(addr: SocketAddr, metrics_state: Metrics) -> std::io::Result<()> {
    let app = router(metrics_state);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "operator metrics and health listening");
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn readyz(metrics: &Metrics) -> StatusCode {
        let request = Request::get("/readyz").body(Body::empty()).expect("a request");
        router(metrics.clone()).oneshot(request).await.expect("the router answers").status()
    }

    #[tokio::test]
    async fn readyz_waits_for_the_leaders_caches() {
        let metrics = Metrics::default();
        assert_eq!(readyz(&metrics).await, StatusCode::OK, "a standby is ready");
        metrics.leader.set(1);
        assert_eq!(readyz(&metrics).await, StatusCode::SERVICE_UNAVAILABLE);
        metrics.synced.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(readyz(&metrics).await, StatusCode::OK);
    }
}
