//! The daemon's own HTTP surface: the TCP listeners it serves and what each one answers.
//!
//! In: HTTP/1.1 connections on an already bound listener (the `-t` address, and the
//! `--stats-address` one if asked). Out: answers. Each listener has one [`RouteTable`]: an
//! ordered list of [`Entry`]s (a path, the methods it takes, the [`Route`] it leads to), then a
//! [`Fallback`] for every path no entry names. One pure function, [`route`], decides each
//! request from its method, target and headers (no I/O: unit-tested below and fuzzed by
//! `fuzz/fuzz_targets/admin_route.rs`); the listener then runs the route it chose:
//! - [`Route::Health`], `GET /daemon/health`: `200 ok` while the UDP receive loop runs, `503`
//!   with the reason once it has stopped (what `xray health` asks);
//! - [`Route::Stats`], `GET /daemon/stats`: the counters as JSON ([`crate::stats::Snapshot`]);
//! - [`Route::Metrics`], `GET /daemon/metrics`: the counters in the Prometheus text format;
//! - [`Route::Forward`]: the SDKs' sampling proxy, signed and sent to X-Ray by
//!   [`crate::proxy::Forwarder`].
//!
//! The tables:
//! - `-t` ([`RouteTable::daemon`]): the admin routes, then every other path forwarded
//!   ([`Fallback::Forward`]); with `--proxy-sampling-only` only `POST /GetSamplingRules` and
//!   `POST /SamplingTargets` are, other paths get `404`. A declared `Content-Length` over the
//!   proxy's cap gets `413` before the body is read.
//! - `--stats-address` ([`RouteTable::stats_address`]): the admin routes only; every other path
//!   gets `404` saying that the sampling proxy is on the `-t` address. There is no upstream
//!   behind this listener at all.
//!
//! On every listener, before any entry: `CONNECT` (`405`) and absolute-form targets (`400`) are
//! refused, as this is not a forward proxy. The admin routes take `GET` and `HEAD` only (else
//! `405`).
//!
//! A coming route (the trace viewer under `/daemon/viewer/`, OTLP's `POST /v1/traces`) is one
//! more [`Route`] variant, one more [`Entry`] in the tables of the listeners that serve it
//! ([`PathMatch::Prefix`] and [`Methods::Post`] are there for them), and one more arm where the
//! listener runs the route.
//!
//! Bounds: at most [`MAX_CONNECTIONS`] connections per listener are served at once (more wait
//! in the kernel's backlog); a client has the listener's header timeout to send a request's
//! headers (the proxy's `--proxy-client-timeout` on `-t`, [`DEFAULT_HEADER_TIMEOUT`] on the
//! stats address); the forwarded route has its own body and upstream bounds (see
//! [`crate::proxy`]). Shutdown: once the token is cancelled, no connection is accepted and the
//! ones open are closed.
//!
//! Imports: [`crate::stats`] (a leaf) and [`crate::proxy`], which is no longer a stage of its
//! own: it holds no socket and is the handler of the forward route, as the viewer's store and
//! the OTLP decoder will be of theirs.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, HeaderMap};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::proxy::{self, Forwarder, ProxySettings, SAMPLING_PATHS, reply};
use crate::stats::{MetricsFormat, Stats};

/// Path of the liveness check.
pub const HEALTH_PATH: &str = "/daemon/health";
/// Path of the JSON counters.
pub const STATS_PATH: &str = "/daemon/stats";
/// Path of the Prometheus counters.
pub const METRICS_PATH: &str = "/daemon/metrics";

/// Connections served at once, per listener.
pub const MAX_CONNECTIONS: usize = 1024;
/// How long a client of the stats address may take to send a request's headers (10 s, the
/// proxy's default client timeout).
pub const DEFAULT_HEADER_TIMEOUT: Duration = proxy::DEFAULT_CLIENT_TIMEOUT;

/// Why the stats address answers `404` to paths it does not serve.
pub const STATS_ADDRESS_REASON: &str = "this is the daemon's stats address (--stats-address), \
     which serves only /daemon/stats, /daemon/metrics and /daemon/health; the sampling proxy is \
     on the -t address";

/// What a listener does with a request, decided by [`route`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /daemon/health`.
    Health,
    /// `GET /daemon/stats`.
    Stats,
    /// `GET /daemon/metrics`.
    Metrics,
    /// Sign and forward to the X-Ray endpoint (the sampling proxy).
    Forward,
}

/// Which request paths an [`Entry`] names. The query string is never part of the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathMatch {
    /// Exactly this path.
    Exact(&'static str),
    /// Every path that starts with this (e.g. `/daemon/viewer/`).
    Prefix(&'static str),
}

impl PathMatch {
    /// Whether `path` is one of these.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == *p,
            PathMatch::Prefix(p) => path.starts_with(p),
        }
    }
}

/// The methods an [`Entry`] takes; any other gets `405`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Methods {
    /// `GET` and `HEAD`.
    Read,
    /// `POST`.
    Post,
}

impl Methods {
    /// Whether `method` is one of these.
    pub fn allows(&self, method: &Method) -> bool {
        match self {
            Methods::Read => method == Method::GET || method == Method::HEAD,
            Methods::Post => method == Method::POST,
        }
    }

    /// The `405` message.
    fn hint(&self) -> &'static str {
        match self {
            Methods::Read => "use GET\n",
            Methods::Post => "use POST\n",
        }
    }
}

/// One line of a [`RouteTable`]: requests for these paths with these methods go to this route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The paths.
    pub path: PathMatch,
    /// The methods; the path with another method gets `405`.
    pub methods: Methods,
    /// Where the request goes.
    pub route: Route,
}

/// The daemon's own routes, served on every listener: health, stats, metrics (`GET`/`HEAD`).
pub const ADMIN_ENTRIES: [Entry; 3] = [
    Entry {
        path: PathMatch::Exact(HEALTH_PATH),
        methods: Methods::Read,
        route: Route::Health,
    },
    Entry {
        path: PathMatch::Exact(STATS_PATH),
        methods: Methods::Read,
        route: Route::Stats,
    },
    Entry {
        path: PathMatch::Exact(METRICS_PATH),
        methods: Methods::Read,
        route: Route::Metrics,
    },
];

/// What the forward route lets through, checked by [`route`] before anything is read or sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardRule {
    /// Forward only `POST /GetSamplingRules` and `POST /SamplingTargets`; other paths get
    /// `404` (`--proxy-sampling-only`). Default false.
    pub sampling_only: bool,
    /// Largest declared `Content-Length` accepted, in bytes; more gets `413`. Default
    /// [`proxy::DEFAULT_MAX_BODY`].
    pub max_body: usize,
}

impl From<&ProxySettings> for ForwardRule {
    fn from(settings: &ProxySettings) -> Self {
        ForwardRule {
            sampling_only: settings.sampling_only,
            max_body: settings.max_body,
        }
    }
}

/// What a listener does with a path that no entry of its table names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// Forward it to X-Ray, within the rule ([`Route::Forward`]).
    Forward(ForwardRule),
    /// Answer `404`, with this reason.
    NotFound(&'static str),
}

/// The routes one listener serves: its entries, tried in order, then its fallback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    entries: Vec<Entry>,
    fallback: Fallback,
}

impl RouteTable {
    /// A table of these entries (the first whose path matches decides) and this fallback.
    pub fn new(entries: Vec<Entry>, fallback: Fallback) -> Self {
        RouteTable { entries, fallback }
    }

    /// The `-t` address: the admin routes, then everything else forwarded within `forward`.
    pub fn daemon(forward: ForwardRule) -> Self {
        RouteTable::new(ADMIN_ENTRIES.to_vec(), Fallback::Forward(forward))
    }

    /// The `--stats-address` listener: the admin routes only, `404` for the rest.
    pub fn stats_address() -> Self {
        RouteTable::new(
            ADMIN_ENTRIES.to_vec(),
            Fallback::NotFound(STATS_ADDRESS_REASON),
        )
    }

    /// The entries, in the order they are tried.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// What happens to paths no entry names.
    pub fn fallback(&self) -> &Fallback {
        &self.fallback
    }

    /// Whether some request can reach `route` through this table.
    pub fn serves(&self, route: Route) -> bool {
        self.entries.iter().any(|e| e.route == route)
            || (route == Route::Forward && matches!(self.fallback, Fallback::Forward(_)))
    }
}

/// A request refused by [`route`]: the status and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: StatusCode,
    /// Says what is wrong and what to do; ends with a newline.
    pub message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
        }
    }
}

/// Decides what a listener with `table` does with a request, from its method, target and
/// headers alone. Pure: no I/O.
pub fn route(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    table: &RouteTable,
) -> Result<Route, Refusal> {
    if method == Method::CONNECT {
        return Err(Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not supported: this is the X-Ray daemon's sampling proxy, not a forward proxy\n",
        ));
    }
    if uri.scheme().is_some() || uri.authority().is_some() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "absolute URLs are not accepted: this is the X-Ray daemon's sampling proxy, not a \
             forward proxy; send the path only (e.g. POST /GetSamplingRules)\n",
        ));
    }
    let path = uri.path();
    if let Some(entry) = table.entries.iter().find(|e| e.path.matches(path)) {
        return if entry.methods.allows(method) {
            Ok(entry.route)
        } else {
            Err(Refusal::new(
                StatusCode::METHOD_NOT_ALLOWED,
                entry.methods.hint(),
            ))
        };
    }
    match &table.fallback {
        Fallback::NotFound(reason) => Err(Refusal::new(
            StatusCode::NOT_FOUND,
            format!("{method} {path} is not served here: {reason}\n"),
        )),
        Fallback::Forward(rule) => check_forward(method, path, headers, rule),
    }
}

/// The forward route's checks: an origin-form path, the sampling-only rule, the declared body
/// length.
fn check_forward(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    rule: &ForwardRule,
) -> Result<Route, Refusal> {
    if !path.starts_with('/') {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "the request target must be a path\n",
        ));
    }
    if rule.sampling_only && !(method == Method::POST && SAMPLING_PATHS.contains(&path)) {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            format!(
                "{method} {path} is not forwarded: this daemon forwards only POST {} and POST {} \
                 (--proxy-sampling-only)\n",
                SAMPLING_PATHS[0], SAMPLING_PATHS[1]
            ),
        ));
    }
    // Every value: hyper refuses conflicting lengths, but this function does not rely on it.
    for length in headers.get_all(CONTENT_LENGTH) {
        let length = length
            .to_str()
            .ok()
            .and_then(|l| l.trim().parse::<u64>().ok())
            .ok_or_else(|| Refusal::new(StatusCode::BAD_REQUEST, "invalid Content-Length\n"))?;
        if length > rule.max_body as u64 {
            return Err(Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                proxy::over_limit_message(rule.max_body),
            ));
        }
    }
    Ok(Route::Forward)
}

/// One listener's routes and what running them needs.
#[derive(Debug)]
pub struct Surface {
    table: RouteTable,
    stats: Arc<Stats>,
    /// Present exactly when the table serves [`Route::Forward`].
    forwarder: Option<Forwarder>,
    header_timeout: Duration,
}

impl Surface {
    /// The `-t` address: the admin routes and the sampling proxy, whose settings give the
    /// forward rule and the header timeout.
    pub fn daemon(stats: Arc<Stats>, forwarder: Forwarder) -> Self {
        let settings = forwarder.settings();
        Surface {
            table: RouteTable::daemon(ForwardRule::from(settings)),
            header_timeout: settings.client_timeout,
            stats,
            forwarder: Some(forwarder),
        }
    }

    /// The `--stats-address` listener: the admin routes only, nothing forwarded.
    pub fn stats_address(stats: Arc<Stats>) -> Self {
        Surface {
            table: RouteTable::stats_address(),
            stats,
            forwarder: None,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
        }
    }

    /// The route table.
    pub fn table(&self) -> &RouteTable {
        &self.table
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let chosen = match route(req.method(), req.uri(), req.headers(), &self.table) {
            Ok(r) => r,
            Err(refusal) => {
                tracing::debug!(
                    "Refused {} {}: {}",
                    req.method(),
                    req.uri(),
                    refusal.message.trim_end()
                );
                return reply(refusal.status, "text/plain", refusal.message);
            }
        };
        match chosen {
            Route::Health if self.stats.receiving() => {
                reply(StatusCode::OK, "text/plain", "ok\n".into())
            }
            Route::Health => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "the UDP receive loop has stopped, so no segments are received; see the daemon's log and restart it\n".into(),
            ),
            Route::Stats => {
                let body = serde_json::to_string(&self.stats.snapshot()).unwrap_or_default();
                reply(StatusCode::OK, "application/json", body)
            }
            Route::Metrics => {
                // The classic text format unless the scraper asks for OpenMetrics.
                let accept = req.headers().get(hyper::header::ACCEPT);
                let format = MetricsFormat::from_accept(accept.and_then(|v| v.to_str().ok()));
                reply(
                    StatusCode::OK,
                    format.content_type(),
                    self.stats.metrics_text(format),
                )
            }
            Route::Forward => match &self.forwarder {
                Some(forwarder) => forwarder.forward(req).await,
                // Not reached: the constructors give a forwarder to every table that forwards.
                None => reply(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    "nothing is forwarded on this address\n".into(),
                ),
            },
        }
    }
}

/// Serves connections on `listener` with `surface`'s routes until `shutdown` is cancelled.
pub async fn run(listener: TcpListener, surface: Surface, shutdown: CancellationToken) {
    let surface = Arc::new(surface);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            p = Arc::clone(&slots).acquire_owned() => p,
        };
        let Ok(permit) = permit else { break };
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
        let surface = Arc::clone(&surface);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let header_timeout = surface.header_timeout;
            let service = hyper::service::service_fn(move |req| {
                let surface = Arc::clone(&surface);
                async move { Ok::<_, Infallible>(surface.answer(req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn daemon(sampling_only: bool) -> RouteTable {
        RouteTable::daemon(ForwardRule {
            sampling_only,
            max_body: 100,
        })
    }

    fn check(
        table: &RouteTable,
        method: Method,
        target: &str,
        headers: &[(&str, &str)],
    ) -> Result<Route, Refusal> {
        let uri: Uri = target.parse().unwrap_or_else(|e| panic!("{target:?}: {e}"));
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.insert(
                hyper::header::HeaderName::from_bytes(n.as_bytes())
                    .unwrap_or_else(|e| panic!("{n:?}: {e}")),
                HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{v:?}: {e}")),
            );
        }
        route(&method, &uri, &map, table)
    }

    fn status(table: &RouteTable, method: Method, target: &str) -> Result<Route, StatusCode> {
        check(table, method, target, &[]).map_err(|r| r.status)
    }

    #[test]
    fn admin_routes_are_local_and_get_only_on_every_table() {
        for table in [daemon(false), daemon(true), RouteTable::stats_address()] {
            assert_eq!(
                status(&table, Method::GET, "/daemon/health"),
                Ok(Route::Health)
            );
            assert_eq!(
                status(&table, Method::HEAD, "/daemon/stats"),
                Ok(Route::Stats)
            );
            assert_eq!(
                status(&table, Method::GET, "/daemon/metrics?x=1"),
                Ok(Route::Metrics)
            );
            let refused = check(&table, Method::POST, "/daemon/health", &[]);
            assert_eq!(
                refused,
                Err(Refusal::new(StatusCode::METHOD_NOT_ALLOWED, "use GET\n"))
            );
        }
    }

    #[test]
    fn the_stats_address_has_no_forward_route_and_404s_the_rest() {
        let table = RouteTable::stats_address();
        assert!(!table.serves(Route::Forward));
        assert!(table.serves(Route::Metrics));
        for (method, target) in [
            (Method::POST, "/GetSamplingRules"),
            (Method::GET, "/anything?x=1"),
            (Method::GET, "/daemon/other"),
            (Method::OPTIONS, "*"),
        ] {
            let refusal = check(&table, method, target, &[("content-length", "999999")])
                .err()
                .unwrap_or_else(|| panic!("{target} routed"));
            assert_eq!(refusal.status, StatusCode::NOT_FOUND, "{target}");
            assert!(refusal.message.contains("--stats-address"), "{refusal:?}");
            assert!(refusal.message.contains("-t address"), "{refusal:?}");
        }
    }

    #[test]
    fn only_origin_form_is_forwarded() {
        let table = daemon(false);
        assert!(table.serves(Route::Forward));
        assert_eq!(
            status(&table, Method::POST, "/GetSamplingRules"),
            Ok(Route::Forward)
        );
        assert_eq!(
            status(&table, Method::GET, "/anything?x=1"),
            Ok(Route::Forward)
        );
        assert_eq!(
            status(&table, Method::OPTIONS, "*"),
            Err(StatusCode::BAD_REQUEST)
        );
        for table in [daemon(false), RouteTable::stats_address()] {
            let absolute = check(
                &table,
                Method::GET,
                "http://169.254.169.254/latest/meta-data",
                &[],
            );
            assert!(
                matches!(&absolute, Err(r) if r.status == StatusCode::BAD_REQUEST
                    && r.message.contains("not a forward proxy")),
                "{absolute:?}"
            );
            assert_eq!(
                status(&table, Method::GET, "http://127.0.0.1:2000/daemon/stats"),
                Err(StatusCode::BAD_REQUEST)
            );
            assert_eq!(
                status(&table, Method::CONNECT, "example.com:443"),
                Err(StatusCode::METHOD_NOT_ALLOWED)
            );
        }
    }

    #[test]
    fn sampling_only_forwards_the_two_sampling_calls() {
        let table = daemon(true);
        assert_eq!(
            status(&table, Method::POST, "/SamplingTargets"),
            Ok(Route::Forward)
        );
        assert_eq!(
            status(&table, Method::POST, "/GetSamplingRules"),
            Ok(Route::Forward)
        );
        let refusal = check(&table, Method::POST, "/TraceSegments", &[]);
        assert!(
            matches!(&refusal, Err(r) if r.status == StatusCode::NOT_FOUND
                && r.message.contains("--proxy-sampling-only")),
            "{refusal:?}"
        );
        assert_eq!(
            status(&table, Method::GET, "/GetSamplingRules"),
            Err(StatusCode::NOT_FOUND)
        );
    }

    #[test]
    fn declared_oversized_bodies_are_refused_before_reading() {
        let table = daemon(false);
        let refusal = check(
            &table,
            Method::POST,
            "/SamplingTargets",
            &[("content-length", "101")],
        );
        assert_eq!(
            refusal,
            Err(Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                proxy::over_limit_message(100)
            ))
        );
        assert_eq!(
            check(
                &table,
                Method::POST,
                "/SamplingTargets",
                &[("content-length", "100")]
            ),
            Ok(Route::Forward)
        );
        assert_eq!(
            check(
                &table,
                Method::POST,
                "/SamplingTargets",
                &[("content-length", "x")]
            )
            .map_err(|r| r.status),
            Err(StatusCode::BAD_REQUEST)
        );
        let mut twice = HeaderMap::new();
        twice.append(CONTENT_LENGTH, HeaderValue::from_static("10"));
        twice.append(CONTENT_LENGTH, HeaderValue::from_static("101"));
        let uri = Uri::from_static("/SamplingTargets");
        assert_eq!(
            route(&Method::POST, &uri, &twice, &table).map_err(|r| r.status),
            Err(StatusCode::PAYLOAD_TOO_LARGE)
        );
    }

    #[test]
    fn a_new_entry_is_one_more_line_and_matched_before_the_fallback() {
        // Stand-ins for the coming routes (the viewer, OTLP's POST /v1/traces): existing
        // variants behind new entries.
        let mut entries = ADMIN_ENTRIES.to_vec();
        entries.push(Entry {
            path: PathMatch::Prefix("/daemon/viewer/"),
            methods: Methods::Read,
            route: Route::Stats,
        });
        entries.push(Entry {
            path: PathMatch::Exact("/v1/traces"),
            methods: Methods::Post,
            route: Route::Metrics,
        });
        for table in [
            RouteTable::new(entries.clone(), Fallback::NotFound("test")),
            RouteTable::new(
                entries,
                Fallback::Forward(ForwardRule {
                    sampling_only: true,
                    max_body: 1,
                }),
            ),
        ] {
            assert_eq!(
                status(&table, Method::GET, "/daemon/viewer/trace/1-abc?x=1"),
                Ok(Route::Stats)
            );
            assert_eq!(
                status(&table, Method::POST, "/v1/traces"),
                Ok(Route::Metrics)
            );
            assert_eq!(
                check(&table, Method::GET, "/v1/traces", &[]),
                Err(Refusal::new(StatusCode::METHOD_NOT_ALLOWED, "use POST\n"))
            );
            assert_eq!(
                status(&table, Method::GET, "/daemon/viewer"),
                Err(StatusCode::NOT_FOUND)
            );
        }
    }
}
