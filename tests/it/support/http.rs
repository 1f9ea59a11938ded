//! A tiny HTTP/1.1 client over hyper: one connection per request, a 10 s cap per request.
//!
//! Enough for the daemon's stats/health endpoints, moto's admin API and for talking to a
//! daemon's TCP proxy; not a general client.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Error type of this module.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long one request may take, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A whole response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers in order, names lower-case, values lossy UTF-8.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Bytes,
}

impl Response {
    /// The body as (lossy) UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request to `addr` (path and query in `path`) and reads the whole response.
/// `Host` is set to `addr` unless given in `headers`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Response, BoxError> {
    request_within(addr, method, path, headers, body, REQUEST_TIMEOUT).await
}

/// [`request`], waiting up to `within` for the whole response.
pub async fn request_within(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
    within: Duration,
) -> Result<Response, BoxError> {
    let body = body.into();
    let fut = async {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let conn = tokio::spawn(conn);
        let mut builder = hyper::Request::builder()
            .method(method.as_bytes())
            .uri(path);
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            builder = builder.header("host", addr.to_string());
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let response = sender.send_request(builder.body(Full::new(body))?).await?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response.into_body().collect().await?.to_bytes();
        drop(sender);
        conn.abort();
        Ok::<_, BoxError>(Response {
            status,
            headers,
            body,
        })
    };
    tokio::time::timeout(within, fut)
        .await
        .map_err(|_| format!("{method} http://{addr}{path}: no response within {within:?}"))?
}

/// `GET path` on `addr`.
pub async fn get(addr: SocketAddr, path: &str) -> Result<Response, BoxError> {
    request(addr, "GET", path, &[], Bytes::new()).await
}

/// `POST path` on `addr` with `body`.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    body: impl Into<Bytes>,
) -> Result<Response, BoxError> {
    request(addr, "POST", path, &[], body).await
}
