//! [`FaultInjector`]: an HTTP/1.1 server that stands between the daemon and moto.
//!
//! It forwards every request to its upstream (moto) and records it (method, path, headers,
//! body, what the upstream answered). Where no real peer can do it (5xx/429 answers, slow or
//! vanished upstreams, APIs moto lacks such as sampling), a test gives it a script of
//! [`Step`]s: each request takes the first step whose path matches and suffers its [`Fault`];
//! requests that match no step pass through untouched. With an empty script it is a recording
//! pass-through. It complements moto; it does not replace it.
//!
//! Besides the one-shot script: standing rules ([`FaultInjector::always`]) apply to every
//! request on a path that no script step matched (e.g. [`FaultInjector::answer_telemetry`]:
//! answer `PutTelemetryRecords` here, since moto accepts them but cannot give them back);
//! [`Fault::Answer`] answers with any status, headers and bytes; [`Fault::Hang`] never answers;
//! [`Fault::Held`] waits until the test calls [`FaultInjector::release`];
//! [`FaultInjector::go_down`] / [`FaultInjector::come_back`] stop and restart listening on the
//! same port, so the endpoint refuses connections meanwhile.
//!
//! Accepted connections get `TCP_NODELAY` and responses are written whole, so the injector
//! never adds delayed-ACK stalls to a keep-alive client.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::http::BoxError;

/// What the injector does to one request instead of (or before) forwarding it.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer with this status and body (`Content-Type: application/json`); do not forward.
    Respond {
        /// HTTP status code.
        status: u16,
        /// Response body.
        body: String,
    },
    /// Wait this long, then forward.
    Delay(Duration),
    /// Close the connection without answering; do not forward.
    Close,
    /// Never answer (the connection stays open until the client gives up).
    Hang,
    /// Wait until the test calls [`FaultInjector::release`] (at once if it did), then forward:
    /// a slow upstream for exactly as long as the test needs it slow.
    Held,
    /// Forward, then answer with the upstream's status and headers but only the first half of
    /// its body (the `Content-Length` still promises the whole), and close the connection.
    CutBody,
    /// Answer with this status, these headers and this body (any bytes); do not forward. For
    /// APIs moto lacks whose answers are not JSON (X-Ray's OTLP endpoint), or answers that need
    /// a header (`Retry-After`).
    Answer {
        /// HTTP status code.
        status: u16,
        /// Response headers, in order.
        headers: Vec<(String, String)>,
        /// Response body.
        body: Bytes,
    },
}

/// One scripted fault, optionally only for requests to one path.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Exact request path (no query) this step applies to, e.g. `/TraceSegments`; `None`
    /// matches every request.
    pub path: Option<String>,
    /// What happens to the request.
    pub fault: Fault,
}

impl Step {
    /// A step for requests to `path` only.
    pub fn on(path: &str, fault: Fault) -> Self {
        Self {
            path: Some(path.to_owned()),
            fault,
        }
    }

    /// A step for the next request, whatever its path.
    pub fn any(fault: Fault) -> Self {
        Self { path: None, fault }
    }
}

/// One request the injector received, in arrival order.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Request method, e.g. `POST`.
    pub method: String,
    /// Path and query, e.g. `/TraceSegments`.
    pub path: String,
    /// Headers in order, names lower-case, values lossy UTF-8.
    pub headers: Vec<(String, String)>,
    /// The whole request body.
    pub body: Bytes,
    /// The fault applied, if a step matched.
    pub fault: Option<Fault>,
    /// The upstream's status, when the request was forwarded and answered; `None` while in
    /// flight, when a fault answered instead, or when the upstream failed (then the client got
    /// 502).
    pub upstream_status: Option<u16>,
    /// When its headers and body had arrived.
    pub received_at: std::time::Instant,
}

impl Recorded {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

#[derive(Debug, Default)]
struct State {
    script: VecDeque<Step>,
    /// Standing rules: (path, fault), applied when no script step matches.
    always: Vec<(String, Fault)>,
    requests: Vec<Recorded>,
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    state: Mutex<State>,
    /// True once [`FaultInjector::release`] was called.
    released: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The injector; it listens on 127.0.0.1 until dropped.
#[derive(Debug)]
pub struct FaultInjector {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// The accept loop; `None` while down.
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl FaultInjector {
    /// Starts a recording pass-through to `upstream` (`http://HOST:PORT`, e.g.
    /// [`crate::support::Moto::endpoint`]) on `127.0.0.1:0`.
    pub async fn start(upstream: &str) -> Self {
        Self::with_script(upstream, Vec::new()).await
    }

    /// Starts with a script of faults (see the module docs).
    pub async fn with_script(upstream: &str, script: Vec<Step>) -> Self {
        let upstream: SocketAddr = upstream
            .strip_prefix("http://")
            .unwrap_or(upstream)
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|e| {
                panic!("fault injector upstream {upstream:?} is not http://IP:PORT: {e}")
            });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault injector");
        let addr = listener.local_addr().expect("fault injector address");
        let shared = Arc::new(Shared {
            upstream,
            state: Mutex::new(State {
                script: script.into(),
                always: Vec::new(),
                requests: Vec::new(),
            }),
            released: tokio::sync::watch::Sender::new(false),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Self {
            addr,
            shared,
            accept: Mutex::new(Some(accept)),
        }
    }

    /// From now on, every request to `path` that no script step matches suffers `fault`.
    pub fn always(&self, path: &str, fault: Fault) {
        self.shared.state().always.push((path.to_owned(), fault));
    }

    /// Lets every request waiting in [`Fault::Held`] go on, and those to come pass at once.
    pub fn release(&self) {
        self.shared.released.send_replace(true);
    }

    /// Lifts every standing rule set with [`Self::always`] for `path`.
    pub fn lift(&self, path: &str) {
        self.shared.state().always.retain(|(p, _)| p != path);
    }

    /// Every `POST /TraceSegments` received so far, in arrival order.
    pub fn put_trace_segments(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == "/TraceSegments")
            .collect()
    }

    /// Answers `POST /TelemetryRecords` itself with `200 {}` (still recording each request).
    pub fn answer_telemetry(&self) {
        self.always(
            "/TelemetryRecords",
            Fault::Respond {
                status: 200,
                body: "{}".to_owned(),
            },
        );
    }

    /// The bodies of every `POST /TelemetryRecords` received so far, parsed, in arrival order
    /// (faulted ones included).
    pub fn telemetry_calls(&self) -> Vec<serde_json::Value> {
        self.requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path == "/TelemetryRecords")
            .map(|r| {
                r.json().unwrap_or_else(|e| {
                    panic!(
                        "POST /TelemetryRecords with a body that is not JSON ({e}): {}",
                        String::from_utf8_lossy(&r.body)
                    )
                })
            })
            .collect()
    }

    /// Stops listening and cuts every open connection: connecting is refused until
    /// [`Self::come_back`].
    pub fn go_down(&self) {
        if let Some(accept) = self.accept.lock().unwrap_or_else(|e| e.into_inner()).take() {
            accept.abort();
        }
    }

    /// Listens again on the same address after [`Self::go_down`].
    pub async fn come_back(&self) {
        // The aborted accept task releases the old listener when it is dropped; retry briefly.
        let deadline = super::wait::Deadline::after(Duration::from_secs(5));
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if deadline.passed() => {
                    panic!("fault injector: cannot listen on {} again: {e}", self.addr)
                }
                Err(_) => deadline.tick(Duration::from_millis(20)).await,
            }
        };
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&self.shared)));
        *self.accept.lock().unwrap_or_else(|e| e.into_inner()) = Some(accept);
    }

    /// `http://127.0.0.1:PORT`, for the daemon's `--endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Appends steps to the script.
    pub fn push(&self, steps: impl IntoIterator<Item = Step>) {
        self.shared.state().script.extend(steps);
    }

    /// Steps not used yet.
    pub fn remaining_script(&self) -> Vec<Step> {
        self.shared.state().script.iter().cloned().collect()
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.state().requests.clone()
    }

    /// The number of `TraceSegmentDocuments` in each `POST /TraceSegments` received so far
    /// (PutTraceSegments batches, in arrival order; faulted ones included).
    pub fn put_trace_segments_batches(&self) -> Vec<usize> {
        self.put_trace_segments()
            .iter()
            .map(|r| {
                r.json()
                    .ok()
                    .and_then(|v| v.get("TraceSegmentDocuments")?.as_array().map(Vec::len))
                    .unwrap_or_else(|| {
                        panic!(
                            "POST /TraceSegments without a TraceSegmentDocuments array: {}",
                            String::from_utf8_lossy(&r.body)
                        )
                    })
            })
            .collect()
    }
}

impl Drop for FaultInjector {
    fn drop(&mut self) {
        self.go_down();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        connections.spawn(async move {
            let service = service_fn(move |request| handle(Arc::clone(&shared), request));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        // Reap finished connections; the set aborts the rest when the accept task is aborted.
        while connections.try_join_next().is_some() {}
    }
}

/// Hop-by-hop headers that are not forwarded either way.
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-connection"
    )
}

async fn handle(
    shared: Arc<Shared>,
    request: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, BoxError> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();

    let (index, fault) = {
        let mut state = shared.state();
        let position = state
            .script
            .iter()
            .position(|step| step.path.as_deref().is_none_or(|p| p == parts.uri.path()));
        let fault = position
            .and_then(|i| state.script.remove(i))
            .map(|step| step.fault)
            .or_else(|| {
                state
                    .always
                    .iter()
                    .find(|(p, _)| p == parts.uri.path())
                    .map(|(_, f)| f.clone())
            });
        state.requests.push(Recorded {
            method: parts.method.as_str().to_owned(),
            path: path.clone(),
            headers,
            body: body.clone(),
            fault: fault.clone(),
            upstream_status: None,
            received_at: std::time::Instant::now(),
        });
        (state.requests.len() - 1, fault)
    };

    match fault {
        Some(Fault::Respond { status, body }) => {
            return Ok(hyper::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))?);
        }
        Some(Fault::Answer {
            status,
            headers,
            body,
        }) => {
            let mut answer = hyper::Response::builder().status(status);
            for (name, value) in headers {
                answer = answer.header(name, value);
            }
            return Ok(answer.body(Full::new(body))?);
        }
        Some(Fault::Close) => return Err("fault injector: closing the connection".into()),
        Some(Fault::Hang) => std::future::pending::<()>().await,
        Some(Fault::Held) => {
            let _ = shared
                .released
                .subscribe()
                .wait_for(|released| *released)
                .await;
        }
        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(Fault::CutBody) | None => {}
    }
    let cut = fault == Some(Fault::CutBody);

    let mut forward = hyper::Request::builder()
        .method(parts.method.clone())
        .uri(path.as_str());
    for (name, value) in parts.headers.iter() {
        if !hop_by_hop(name.as_str()) {
            forward = forward.header(name, value);
        }
    }
    let forward = forward.body(Full::new(body))?;
    match send_upstream(shared.upstream, forward).await {
        Ok(response) => {
            shared.state().requests[index].upstream_status = Some(response.status().as_u16());
            if !cut {
                return Ok(response);
            }
            // Promise the whole body, send half: hyper ends the connection when the body falls
            // short of its Content-Length.
            let (mut parts, body) = response.into_parts();
            let whole = body.collect().await?.to_bytes();
            parts
                .headers
                .insert("content-length", whole.len().max(2).into());
            Ok(hyper::Response::from_parts(
                parts,
                Full::new(whole.slice(..whole.len() / 2)),
            ))
        }
        Err(e) => Ok(hyper::Response::builder()
            .status(502)
            .body(Full::new(Bytes::from(format!(
                "fault injector: upstream failed: {e}"
            ))))?),
    }
}

/// Sends `request` to `upstream` on a new connection and reads the whole answer.
async fn send_upstream(
    upstream: SocketAddr,
    request: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<Full<Bytes>>, BoxError> {
    let stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);
    let response = sender.send_request(request).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    drop(sender);
    conn.abort();
    let mut answer = hyper::Response::builder().status(parts.status);
    for (name, value) in parts.headers.iter() {
        if !hop_by_hop(name.as_str()) && name.as_str() != "content-length" {
            answer = answer.header(name, value);
        }
    }
    Ok(answer.body(Full::new(body))?)
}
