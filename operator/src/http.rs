//! The operator's own endpoints: `/metrics`, `/healthz` (alive) and `/readyz`.
//!
//! Three fixed GET routes do not need a web framework: hyper (already linked by the
//! Kubernetes client) serves them, so the operator binary carries no axum.

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::metrics::Metrics;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The answer to one request: a pure function of the path and the metrics, so tests call
/// it without a socket.
pub fn answer(metrics: &Metrics, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET\n");
    }
    match path {
        "/metrics" => match metrics.encode() {
            Ok(body) => text(StatusCode::OK, OPENMETRICS, body),
            Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", "metrics could not be encoded\n"),
        },
        "/healthz" => text(StatusCode::OK, "text/plain", "ok"),
        "/readyz" if metrics.ready() => text(StatusCode::OK, "text/plain", "ok"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "leading, watch caches not synced yet"),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

/// Serves the endpoints until the process ends; a connection that fails only ends itself.
pub async fn serve(addr: SocketAddr, metrics: Metrics) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "operator metrics and health listening");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting a metrics connection failed");
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let response = answer(&metrics, request.method(), request.uri().path());
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "metrics connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    fn readyz(metrics: &Metrics) -> StatusCode {
        answer(metrics, &Method::GET, "/readyz").status()
    }

    #[test]
    fn readyz_waits_for_the_leaders_caches() {
        let metrics = Metrics::default();
        assert_eq!(readyz(&metrics), StatusCode::OK, "a standby is ready");
        metrics.leader.set(1);
        assert_eq!(readyz(&metrics), StatusCode::SERVICE_UNAVAILABLE);
        metrics.synced.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(readyz(&metrics), StatusCode::OK);
    }

    #[tokio::test]
    async fn serves_openmetrics_over_a_real_socket() {
        let metrics = Metrics::default();
        metrics.count("invalid", "InvalidRegex");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let addr = listener.local_addr().expect("a bound address");
        drop(listener);
        tokio::spawn(serve(addr, metrics));
        let mut reply = String::new();
        for _ in 0..50 {
            if let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                stream
                    .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                    .await
                    .expect("the request is written");
                stream.read_to_string(&mut reply).await.expect("the reply is read");
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.contains(OPENMETRICS), "{reply}");
        assert!(
            reply.contains(r#"godel_operator_reconciles_total{result="invalid",reason="InvalidRegex"} 1"#),
            "{reply}"
        );
        let missing = answer(&Metrics::default(), &Method::GET, "/nope");
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        let body = missing.into_body().collect().await.expect("a full body").to_bytes();
        assert_eq!(&body[..], b"not found\n");
    }
}
