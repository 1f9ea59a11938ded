//! The trace viewer (`--viewer`): every trace the daemon receives, live in a browser, with no
//! AWS account.
//!
//! In: requests for the viewer's paths on the `-t` address ([`crate::admin`] routes
//! `GET /daemon/viewer/…` here, and `GET /` to a redirect), and the [`Store`] the viewer's sink
//! ([`crate::sink::viewer`]) and the UDP receiver (refused datagrams) fill. Out: the page (HTML,
//! CSS and JS embedded in the binary, `src/viewer/assets/`), the store as JSON, and a live
//! stream of changes (server-sent events).
//!
//! Paths, under [`BASE`]: `` (the page), `app.js`, `app.css`, `favicon.svg`; `api/traces` (every
//! trace's summary, or those a [`Filter`] in the query lets through; the refusals; the store's
//! counters), `api/traces/ID` (one trace's documents, raw text and X-Ray segment, and its
//! instrumentation [`hints`]), `api/traces/ID/download` (the trace as the `file` sink's JSON
//! Lines), `api/events` (the live stream: `trace`, `refused` and `reload` events); and two
//! `POST`s from the page: `api/import` (a JSON Lines file into the store, at most the store's
//! budget, one at a time) and `api/clear` (forget everything).
//!
//! Who may look ([`Access`]): documents carry URLs, SQL and user ids, and anyone on the host can
//! send to the daemon, so
//! - by default only a request whose `Host` is `localhost`, `127.0.0.1` or `[::1]` (with a
//!   port or none) is answered: a page on another site that a browser was tricked into
//!   resolving to 127.0.0.1 (DNS rebinding) sends its own host name and is refused (`403`). The
//!   rule is for the viewer's paths only: sampling calls from other containers keep working;
//! - with `--viewer-allow-remote` any `Host` is let in, with a token (printed in the banner):
//!   given once in the URL (`?token=…`), then kept in an `HttpOnly`, `SameSite=Strict` cookie;
//! - a `POST` must carry the `Origin` of the page (`http://` and the request's `Host`), and an
//!   import the JSON Lines content type, which no cross-site form can send;
//! - every answer carries `Content-Security-Policy: default-src 'self'` (the page positions its
//!   bars through `element.style`, which that allows), `X-Content-Type-Options: nosniff` and
//!   no CORS header; the page renders every document's text as text.
//!
//! Live streams: at most [`MAX_LIVE_STREAMS`] at once (`503` past that); the connection holding
//! one is marked as streaming, so the accept loop never sheds it as idle. A stream that falls
//! more than the store's event backlog behind gets a `reload` event. Shutdown ends the streams
//! with their connections.

mod api;
pub mod hints;
pub mod store;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, HOST, HeaderValue, LOCATION,
    SET_COOKIE,
};
use hyper::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use serde::Serialize;
use tokio::sync::broadcast;

pub use store::{Filter, Format, Store, StoreStats};

/// Where the viewer's paths start.
pub const BASE: &str = "/daemon/viewer/";
/// Live streams at once.
pub const MAX_LIVE_STREAMS: usize = 16;
/// Default byte budget of the store (`--viewer-memory`, in MB): 16 MB.
pub const DEFAULT_MEMORY_MB: usize = 16;
/// How often a live stream says it is alive (a comment line), so proxies keep it open.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// The cookie that carries the token of `--viewer-allow-remote`.
const TOKEN_COOKIE: &str = "xray_viewer_token";
/// How long reading an imported file's body may take.
const IMPORT_READ: Duration = Duration::from_secs(60);
/// The content type an import must be sent with: not one a cross-site form can send.
const JSON_LINES: &str = "application/x-ndjson";
/// The policy every viewer answer carries.
const CSP: &str = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const INDEX_HTML: &str = include_str!("viewer/assets/index.html");
const APP_JS: &str = include_str!("viewer/assets/app.js");
const APP_CSS: &str = include_str!("viewer/assets/app.css");
const FAVICON: &str = include_str!("viewer/assets/favicon.svg");

/// An answer's body: whole, or a live stream.
pub type Body = BoxBody<Bytes, Infallible>;

/// Marks an answer whose body is a live stream (a response extension), so the listener marks
/// its connection as streaming once the headers are out.
#[derive(Clone, Copy, Debug)]
pub struct LiveStream;

/// Who may use the viewer (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// `--viewer-allow-remote`: the token any `Host` must show; `None`: local `Host` only.
    pub token: Option<String>,
}

impl Access {
    /// A fresh random token for `--viewer-allow-remote` (32 hex digits from the OS's random
    /// source).
    pub fn new_token() -> String {
        use std::io::Read;
        let mut bytes = [0u8; 16];
        let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
        if read.is_err() {
            // No /dev/urandom: std's randomly keyed hasher, twice.
            use std::hash::{BuildHasher, Hasher};
            for half in bytes.chunks_mut(8) {
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u128(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos()),
                );
                half.copy_from_slice(&h.finish().to_be_bytes());
            }
        }
        hex::encode(bytes)
    }

    /// Whether a request with these headers and this query may see the viewer; `Err` is the
    /// refusal's message.
    fn check(&self, headers: &HeaderMap, query: Option<&str>) -> Result<Grant, &'static str> {
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        match &self.token {
            None if Access::is_local(host) => Ok(Grant::Allowed),
            None => Err(
                "the trace viewer answers only requests for localhost, 127.0.0.1 or [::1] (its \
                 documents carry URLs, SQL and user ids); to open it from another host, start \
                 the daemon with --viewer-allow-remote and use the URL with the token it prints\n",
            ),
            Some(token) => {
                if query_token(query).is_some_and(|t| same_secret(t, token)) {
                    return Ok(Grant::SetCookie);
                }
                if cookie_token(headers).is_some_and(|t| same_secret(t, token)) {
                    return Ok(Grant::Allowed);
                }
                Err(
                    "the trace viewer needs its token (--viewer-allow-remote): open the URL with \
                     ?token=… that the daemon printed when it started\n",
                )
            }
        }
    }

    /// Whether `host` (a `Host` header) names this machine by its loopback name, with any port
    /// or none: a port mapped by Docker (`-p 8080:2000`) arrives as `localhost:8080`. What
    /// matters against DNS rebinding is the name: another site's page sends its own.
    fn is_local(host: &str) -> bool {
        let name = match host.rsplit_once(':') {
            // `localhost:8080`, `[::1]:2000`; `[::1]` alone has its colons inside brackets.
            Some((name, port))
                if !host.ends_with(']') && port.bytes().all(|b| b.is_ascii_digit()) =>
            {
                name
            }
            _ => host,
        };
        matches!(
            name.to_ascii_lowercase().as_str(),
            "localhost" | "127.0.0.1" | "[::1]"
        )
    }
}

/// What a request that passed [`Access::check`] gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Grant {
    Allowed,
    /// It showed the token in the URL: set the cookie and send it to the same URL without it.
    SetCookie,
}

/// Whether `given` is the token, in a time that does not depend on where they differ.
fn same_secret(given: &str, token: &str) -> bool {
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn query_token(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
}

fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(TOKEN_COOKIE)?.strip_prefix('='))
}

/// The viewer's routes (see the module docs).
#[derive(Debug)]
pub struct Viewer {
    store: Arc<Store>,
    access: Access,
    live: Arc<AtomicUsize>,
    /// An import is being read (one at a time).
    importing: AtomicBool,
}

impl Viewer {
    /// The viewer of `store`, open to whom `access` says.
    pub fn new(store: Arc<Store>, access: Access) -> Self {
        Viewer {
            store,
            access,
            live: Arc::default(),
            importing: AtomicBool::new(false),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The URL of the page (with the token, under `--viewer-allow-remote`), for the banner.
    pub fn url(&self, host: &str) -> String {
        match &self.access.token {
            Some(token) => format!("http://{host}{BASE}?token={token}"),
            None => format!("http://{host}{BASE}"),
        }
    }

    /// Answers a request for `GET /`, a viewer path, or one of the viewer's two `POST`s.
    pub async fn answer<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let uri = req.uri();
        let path = uri.path();
        if path == "/" || path == BASE.trim_end_matches('/') {
            return redirect(&format!("{BASE}{}", query_suffix(uri)));
        }
        let grant = match self.access.check(req.headers(), uri.query()) {
            Ok(grant) => grant,
            Err(message) => return text(StatusCode::FORBIDDEN, message),
        };
        if grant == Grant::SetCookie {
            let mut resp = redirect(path);
            if let Some(token) = &self.access.token
                && let Ok(v) = HeaderValue::from_str(&format!(
                    "{TOKEN_COOKIE}={token}; Path={BASE}; HttpOnly; SameSite=Strict"
                ))
            {
                resp.headers_mut().insert(SET_COOKIE, v);
            }
            return resp;
        }
        let rest = path.strip_prefix(BASE).unwrap_or("");
        if req.method() == Method::POST {
            let rest = rest.to_owned();
            return secure(self.post(&rest, req).await);
        }
        let head = req.method() == Method::HEAD;
        let resp = match rest {
            "" | "index.html" => asset("text/html; charset=utf-8", INDEX_HTML),
            "app.js" => asset("text/javascript; charset=utf-8", APP_JS),
            "app.css" => asset("text/css; charset=utf-8", APP_CSS),
            "favicon.svg" => asset("image/svg+xml", FAVICON),
            "api/traces" => self.list(uri.query()),
            "api/events" if !head => self.live_stream(),
            _ => match rest.strip_prefix("api/traces/") {
                Some(id) => self.trace(id),
                None => text(StatusCode::NOT_FOUND, "no such page in the trace viewer\n"),
            },
        };
        secure(resp)
    }

    /// The live stream of changes, if there is room for one more.
    fn live_stream(&self) -> Response<Body> {
        let Some(slot) = LiveSlot::take(&self.live) else {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the trace viewer serves at most 16 live streams at once: close a viewer tab\n",
            );
        };
        let events = self.store.subscribe();
        let state = (events, slot, true);
        let stream = futures_util::stream::unfold(state, |(mut events, slot, first)| async move {
            if first {
                // A comment at once, so the browser knows the stream is open.
                let frame = Frame::data(Bytes::from_static(b": live\n\n"));
                return Some((Ok::<_, Infallible>(frame), (events, slot, false)));
            }
            let chunk = match tokio::time::timeout(KEEPALIVE, events.recv()).await {
                Err(_) => Bytes::from_static(b": ping\n\n"),
                Ok(Ok(event)) => Bytes::from(sse(&event)),
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                    Bytes::from_static(b"event: reload\ndata: {}\n\n")
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => return None,
            };
            Some((Ok(Frame::data(chunk)), (events, slot, false)))
        });
        let mut resp = Response::new(StreamBody::new(stream).boxed());
        let headers = resp.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp.extensions_mut().insert(LiveStream);
        resp
    }
}

/// One live stream's place among the [`MAX_LIVE_STREAMS`]; given back when dropped.
#[derive(Debug)]
struct LiveSlot(Arc<AtomicUsize>);

impl LiveSlot {
    fn take(live: &Arc<AtomicUsize>) -> Option<LiveSlot> {
        live.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < MAX_LIVE_STREAMS).then_some(n + 1)
        })
        .ok()
        .map(|_| LiveSlot(Arc::clone(live)))
    }
}

impl Drop for LiveSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One event in the server-sent events format.
fn sse(event: &store::Event) -> String {
    let (name, data) = match event {
        store::Event::Trace(summary) => ("trace", serde_json::to_string(summary)),
        store::Event::Refused(refusal) => ("refused", serde_json::to_string(refusal)),
        store::Event::Cleared => ("reload", Ok("{}".to_owned())),
    };
    // JSON has no raw newline, so `data` is one line.
    format!("event: {name}\ndata: {}\n\n", data.unwrap_or_default())
}

fn query_suffix(uri: &Uri) -> String {
    uri.query().map(|q| format!("?{q}")).unwrap_or_default()
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

fn asset(content_type: &'static str, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(body));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

fn json(value: &impl Serialize) -> Response<Body> {
    let mut resp = Response::new(full(serde_json::to_vec(value).unwrap_or_default()));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn text(status: StatusCode, message: &'static str) -> Response<Body> {
    text_owned(status, message.to_owned())
}

fn text_owned(status: StatusCode, message: String) -> Response<Body> {
    let mut resp = Response::new(full(message));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    secure(resp)
}

fn redirect(to: &str) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(LOCATION, v);
    }
    secure(resp)
}

fn secure(mut resp: Response<Body>) -> Response<Body> {
    let headers = resp.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(
        hyper::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        hyper::header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.append(*k, v);
            }
        }
        h
    }

    #[test]
    fn only_local_hosts_by_default() {
        let access = Access { token: None };
        for host in [
            "localhost:2000",
            "localhost:8080",
            "127.0.0.1:2000",
            "[::1]:2000",
            "LOCALHOST",
            "127.0.0.1",
            "[::1]",
        ] {
            assert_eq!(
                access.check(&headers(&[("host", host)]), None),
                Ok(Grant::Allowed),
                "{host}"
            );
        }
        for host in [
            "evil.example:2000",
            "127.0.0.1:2000@evil.example",
            "127.0.0.1.evil.example:2000",
            "localhost:x",
            "localhost.evil.example",
            "",
            "xray:2000",
        ] {
            assert!(
                access.check(&headers(&[("host", host)]), None).is_err(),
                "{host}"
            );
        }
    }

    #[test]
    fn a_remote_viewer_needs_the_token_once_in_the_url_then_in_the_cookie() {
        let access = Access {
            token: Some("abc123".into()),
        };
        let host = ("host", "192.168.1.10:2000");
        assert!(access.check(&headers(&[host]), None).is_err());
        assert!(access.check(&headers(&[host]), Some("token=nope")).is_err());
        assert_eq!(
            access.check(&headers(&[host]), Some("x=1&token=abc123")),
            Ok(Grant::SetCookie)
        );
        assert_eq!(
            access.check(
                &headers(&[host, ("cookie", "a=b; xray_viewer_token=abc123")]),
                None
            ),
            Ok(Grant::Allowed)
        );
        // Local hosts too need it then: the token is the rule.
        assert!(
            access
                .check(&headers(&[("host", "localhost:2000")]), None)
                .is_err()
        );
    }

    #[test]
    fn at_most_max_live_streams_at_once_and_a_closed_one_gives_its_place_back() {
        let live = Arc::new(AtomicUsize::new(0));
        let slots: Vec<LiveSlot> = (0..MAX_LIVE_STREAMS)
            .filter_map(|_| LiveSlot::take(&live))
            .collect();
        assert_eq!(slots.len(), MAX_LIVE_STREAMS);
        assert!(LiveSlot::take(&live).is_none(), "one too many");
        drop(slots);
        assert!(LiveSlot::take(&live).is_some());
    }

    #[tokio::test]
    async fn a_seventeenth_live_stream_is_refused_with_the_reason() {
        let store = Arc::new(Store::new(1 << 20, Arc::new(crate::stats::Stats::new())));
        let viewer = Viewer::new(store, Access { token: None });
        let request = || {
            Request::builder()
                .uri("/daemon/viewer/api/events")
                .header("host", "127.0.0.1:2000")
                .body(Full::new(Bytes::new()))
                .unwrap_or_default()
        };
        let mut open = Vec::new();
        for _ in 0..MAX_LIVE_STREAMS {
            let resp = viewer.answer(request()).await;
            assert_eq!(resp.status(), StatusCode::OK);
            assert!(resp.extensions().get::<LiveStream>().is_some());
            open.push(resp);
        }
        let refused = viewer.answer(request()).await;
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        drop(open);
        let again = viewer.answer(request()).await;
        assert_eq!(again.status(), StatusCode::OK);
    }

    fn viewer_of(documents: &[String]) -> Viewer {
        let store = Arc::new(Store::new(1 << 20, Arc::new(crate::stats::Stats::new())));
        for d in documents {
            let text: Arc<str> = Arc::from(d.as_str());
            store.add(Format::Xray, Arc::clone(&text), text);
        }
        Viewer::new(store, Access { token: None })
    }

    async fn call(
        viewer: &Viewer,
        method: Method,
        path: &str,
        headers: &[(&'static str, &str)],
        body: &str,
    ) -> (StatusCode, HeaderMap, String) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1:2000");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap_or_default();
        let resp = viewer.answer(req).await;
        let (parts, body) = resp.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    fn doc(trace: &str, id: &str, extra: &str) -> String {
        format!(
            r#"{{"trace_id":"1-5f84c7a1-{trace}","id":"{id}","name":"app","start_time":1.0{extra}}}"#
        )
    }

    fn listed(body: &str) -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        v["traces"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["trace_id"].as_str().map(|s| s[11..].to_owned()))
            .collect()
    }

    #[tokio::test]
    async fn the_list_is_filtered_by_its_query() {
        let a = "a".repeat(24);
        let b = "b".repeat(24);
        let c = "c".repeat(24);
        let viewer = viewer_of(&[
            doc(
                &a,
                "00000000000000a1",
                r#","end_time":1.5,"annotations":{"user":"alice","n":7},"subsegments":[{"id":"00000000000000a2","name":"Checkout-DB","start_time":1.1,"end_time":1.2}]"#,
            ),
            doc(
                &b,
                "00000000000000b1",
                r#","end_time":1.01,"fault":true,"annotations":{"user":"bob"}"#,
            ),
            doc(&c, "00000000000000c1", r#","in_progress":true"#),
            // No mark, but a 503 at the root: the page marks it, so "errors only" lists it.
            doc(
                &"e".repeat(24),
                "00000000000000e1",
                r#","end_time":1.001,"http":{"response":{"status":503}}"#,
            ),
        ]);
        let list = |query: &'static str| {
            let viewer = &viewer;
            async move {
                let (status, _, body) = call(
                    viewer,
                    Method::GET,
                    &format!("/daemon/viewer/api/traces{query}"),
                    &[],
                    "",
                )
                .await;
                (status, body)
            }
        };
        let (status, body) = list("").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(listed(&body).len(), 4);
        assert!(body.contains(r#""filtered":false"#));
        // Text: a subsegment's name, any case, percent-encoded.
        let (_, body) = list("?q=checkout%2Ddb").await;
        assert_eq!(listed(&body), [a.as_str()]);
        assert!(body.contains(r#""filtered":true"#));
        // Text: part of a trace id.
        assert_eq!(listed(&list("?q=bbbbbb").await.1), [b.as_str()]);
        let e = "e".repeat(24);
        let mut failed = listed(&list("?errors=1").await.1);
        failed.sort();
        assert_eq!(failed, [b.as_str(), e.as_str()]);
        // At least 100 ms: the open trace has no duration and is not listed.
        assert_eq!(listed(&list("?min_ms=100").await.1), [a.as_str()]);
        assert_eq!(
            listed(&list("?annotation=user%3Dbob").await.1),
            [b.as_str()]
        );
        assert_eq!(listed(&list("?annotation=n=7").await.1), [a.as_str()]);
        let mut users = listed(&list("?annotation=user").await.1);
        users.sort();
        assert_eq!(users, [a.as_str(), b.as_str()]);
        assert!(listed(&list("?annotation=user=bob&errors=1&q=zzz").await.1).is_empty());
        // Empty parts are no filter; a bad number is a 400 naming it.
        assert_eq!(listed(&list("?q=&min_ms=").await.1).len(), 4);
        let (status, body) = list("?min_ms=soon").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("min_ms must be a number"), "{body}");
    }

    #[tokio::test]
    async fn a_trace_comes_with_its_hints_and_downloads_as_the_file_sinks_lines() {
        let t = "0123456789abcdef01234567";
        let first = doc(
            t,
            "00000000000000a1",
            ",\n\"end_time\":2.0,\"annotations\":{\"a-b\":1}",
        );
        let second = doc(t, "00000000000000a2", r#","parent_id":"00000000000000ff""#);
        let viewer = viewer_of(&[first.clone(), second.clone()]);
        let path = format!("/daemon/viewer/api/traces/1-5f84c7a1-{t}");
        let (status, _, body) = call(&viewer, Method::GET, &path, &[], "").await;
        assert_eq!(status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let mut rules: Vec<(String, String)> = v["hints"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| {
                (
                    h["id"].as_str().unwrap_or("").to_owned(),
                    h["rule"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        rules.sort();
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            rules,
            [
                pair("00000000000000a1", "annotation_key"),
                pair("00000000000000a2", "no_end_time"),
                pair("00000000000000a2", "parent_missing"),
            ]
        );
        // The trace id percent-encoded finds it too.
        let encoded = format!("/daemon/viewer/api/traces/1%2D5f84c7a1-{t}");
        assert_eq!(
            call(&viewer, Method::GET, &encoded, &[], "").await.0,
            StatusCode::OK
        );

        let (status, headers, body) =
            call(&viewer, Method::GET, &format!("{path}/download"), &[], "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[CONTENT_TYPE], "application/x-ndjson");
        assert_eq!(
            headers[hyper::header::CONTENT_DISPOSITION],
            format!("attachment; filename=\"trace-1-5f84c7a1-{t}.jsonl\"").as_str()
        );
        assert_eq!(body, format!("{}\n{second}\n", first.replace('\n', " ")));

        // What was downloaded loads into another viewer: the same trace, the same documents.
        let other = viewer_of(&[]);
        let post = [
            ("origin", "http://127.0.0.1:2000"),
            ("content-type", "application/x-ndjson"),
        ];
        let (status, _, answer) = call(
            &other,
            Method::POST,
            "/daemon/viewer/api/import",
            &post,
            &format!("{body}T1U c29tZQ==\n"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer, r#"{"kept":2,"skipped":1}"#);
        let (_, _, again) = call(&other, Method::GET, &format!("{path}/download"), &[], "").await;
        assert_eq!(again, body);
    }

    #[tokio::test]
    async fn posts_come_from_the_page_alone() {
        let t = "0123456789abcdef01234567";
        let viewer = viewer_of(&[doc(t, "00000000000000a1", r#","end_time":2.0"#)]);
        let lines = doc(&"d".repeat(24), "00000000000000d1", r#","end_time":2.0"#);
        let import = "/daemon/viewer/api/import";
        let own = ("origin", "http://127.0.0.1:2000");
        let ndjson = ("content-type", "application/x-ndjson");
        for (headers, status) in [
            (vec![ndjson], StatusCode::FORBIDDEN),
            (vec![("origin", "null"), ndjson], StatusCode::FORBIDDEN),
            (
                vec![("origin", "http://127.0.0.1:2000.evil.example"), ndjson],
                StatusCode::FORBIDDEN,
            ),
            (
                vec![("origin", "http://evil.example"), ndjson],
                StatusCode::FORBIDDEN,
            ),
            // A form can send text/plain across sites; the page sends JSON Lines.
            (
                vec![own, ("content-type", "text/plain")],
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
        ] {
            let (got, _, body) = call(&viewer, Method::POST, import, &headers, &lines).await;
            assert_eq!(got, status, "{headers:?}: {body}");
        }
        assert_eq!(viewer.store().stats().traces, 1, "nothing was loaded");
        // One import at a time.
        viewer.importing.store(true, Ordering::Release);
        let (got, _, _) = call(&viewer, Method::POST, import, &[own, ndjson], &lines).await;
        assert_eq!(got, StatusCode::SERVICE_UNAVAILABLE);
        viewer.importing.store(false, Ordering::Release);
        // Behind a proxy that ends TLS, the page's origin is https.
        let tls = ("origin", "https://127.0.0.1:2000");
        let (got, _, body) = call(&viewer, Method::POST, import, &[tls, ndjson], &lines).await;
        assert_eq!(
            (got, body.as_str()),
            (StatusCode::OK, r#"{"kept":1,"skipped":0}"#)
        );
        // Larger than the store: 413, naming --viewer-memory.
        let big = "x".repeat((1 << 20) + 1);
        let (got, _, body) = call(&viewer, Method::POST, import, &[own, ndjson], &big).await;
        assert_eq!(got, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body.contains("--viewer-memory"), "{body}");

        let clear = "/daemon/viewer/api/clear";
        let (got, _, _) = call(
            &viewer,
            Method::POST,
            clear,
            &[("origin", "http://evil.example")],
            "",
        )
        .await;
        assert_eq!(got, StatusCode::FORBIDDEN);
        assert_eq!(viewer.store().stats().traces, 2);
        let mut events = viewer.store().subscribe();
        let (got, _, body) = call(&viewer, Method::POST, clear, &[own], "").await;
        assert_eq!((got, body.as_str()), (StatusCode::OK, r#"{"cleared":2}"#));
        assert_eq!(
            viewer.store().stats(),
            StoreStats {
                budget_bytes: 1 << 20,
                ..Default::default()
            }
        );
        assert!(matches!(events.try_recv(), Ok(store::Event::Cleared)));
        assert_eq!(sse(&store::Event::Cleared), "event: reload\ndata: {}\n\n");
    }

    #[test]
    fn tokens_differ() {
        let (a, b) = (Access::new_token(), Access::new_token());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
