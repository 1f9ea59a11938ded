//! [`OutboundProxy`]: a small HTTP forward proxy on loopback, for the daemon's `-p` /
//! `HTTP(S)_PROXY` tests; it records every request that goes through it.
//!
//! Absolute-form requests (`POST http://127.0.0.1:P/path`, what clients send a proxy for a
//! plain-HTTP target) are forwarded to that host and the answer relayed; `CONNECT host:port`
//! (for HTTPS targets) opens a tunnel. Either way the target is recorded.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::http::BoxError;

/// The proxy; it listens on 127.0.0.1 until dropped.
#[derive(Debug)]
pub struct OutboundProxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    accept: JoinHandle<()>,
}

impl OutboundProxy {
    /// Starts it on a free port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the outbound proxy");
        let addr = listener.local_addr().expect("outbound proxy address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&seen);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let recorded = Arc::clone(&recorded);
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(Arc::clone(&recorded), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self { addr, seen, accept }
    }

    /// `http://127.0.0.1:PORT`, for `-p` or `HTTP_PROXY`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request target seen, e.g. `POST http://127.0.0.1:P/TraceSegments` or
    /// `CONNECT host:443`.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for OutboundProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn handle(
    seen: Arc<Mutex<Vec<String>>>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, BoxError> {
    seen.lock()
        .unwrap()
        .push(format!("{} {}", req.method(), req.uri()));
    if req.method() == hyper::Method::CONNECT {
        let authority = req
            .uri()
            .authority()
            .map(|a| a.to_string())
            .ok_or("CONNECT without host")?;
        tokio::spawn(async move {
            if let Ok(upgraded) = hyper::upgrade::on(req).await
                && let Ok(mut upstream) = TcpStream::connect(authority).await
            {
                let mut client = TokioIo::new(upgraded);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
        return Ok(hyper::Response::new(Full::new(Bytes::new())));
    }
    let authority = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .ok_or("not an absolute-form request")?;
    let path = req
        .uri()
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let mut forward = hyper::Request::builder().method(parts.method).uri(path);
    for (name, value) in parts.headers.iter() {
        if !matches!(
            name.as_str(),
            "proxy-connection" | "proxy-authorization" | "connection"
        ) {
            forward = forward.header(name, value);
        }
    }
    let stream = TcpStream::connect(&authority).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);
    let response = sender.send_request(forward.body(Full::new(body))?).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    conn.abort();
    let mut answer = hyper::Response::builder().status(parts.status);
    for (name, value) in parts.headers.iter() {
        if !matches!(
            name.as_str(),
            "connection" | "transfer-encoding" | "content-length"
        ) {
            answer = answer.header(name, value);
        }
    }
    Ok(answer.body(Full::new(body))?)
}
