//! The TCP edge: the SDKs' sampling proxy, and the daemon's own reserved paths.
//!
//! In: HTTP/1.1 connections on the TCP address (`-t`). Out: answers. The reserved paths,
//! which no X-Ray API uses, are answered here and never forwarded:
//! - `GET /daemon/health`: `200 ok` while the UDP receive loop runs, `503` with the reason once
//!   it has stopped (what `xray health` asks);
//! - `GET /daemon/stats`: the counters as JSON ([`crate::stats::Snapshot`]);
//! - `GET /daemon/metrics`: the counters in the Prometheus text format.
//!
//! Forwarding the SDKs' sampling calls to X-Ray (SigV4-signed) is not built yet: other paths
//! get `501` with a message saying so.
//!
//! Each connection has a header read timeout, so a stalled client cannot hold a task forever.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::stats::Stats;

/// Path of the liveness check.
pub const HEALTH_PATH: &str = "/daemon/health";
/// Path of the JSON counters.
pub const STATS_PATH: &str = "/daemon/stats";
/// Path of the Prometheus counters.
pub const METRICS_PATH: &str = "/daemon/metrics";

/// How long a client may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves connections until `shutdown` is cancelled.
pub async fn run(listener: TcpListener, stats: Arc<Stats>, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, _peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!("Accepting a TCP connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let stats = Arc::clone(&stats);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let stats = Arc::clone(&stats);
                async move { Ok::<_, Infallible>(answer(&req, &stats)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
}

fn answer(req: &Request<Incoming>, stats: &Stats) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    match path {
        HEALTH_PATH if get && stats.receiving() => {
            reply(StatusCode::OK, "text/plain", "ok\n".into())
        }
        HEALTH_PATH if get => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "the UDP receive loop has stopped, so no segments are received; see the daemon's log and restart it\n".into(),
        ),
        STATS_PATH if get => {
            let body = serde_json::to_string(&stats.snapshot()).unwrap_or_default();
            reply(StatusCode::OK, "application/json", body)
        }
        METRICS_PATH if get => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            stats.prometheus_text(),
        ),
        HEALTH_PATH | STATS_PATH | METRICS_PATH => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "use GET\n".into(),
        ),
        _ => reply(
            StatusCode::NOT_IMPLEMENTED,
            "text/plain",
            format!("{path}: the sampling proxy is not available in this version of the daemon\n"),
        ),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    resp
}
