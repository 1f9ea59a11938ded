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
//! Bounds: each listener holds at most [`MAX_CONNECTIONS`] connections, plus
//! [`ADMIN_RESERVE`] for its admin routes, and never waits to accept: a connection kept waiting
//! in the kernel's backlog is a health check that times out. At the cap, the new connection
//! takes the slot of the one idle the longest (no request in progress: since it was accepted,
//! or since its last answer), which is closed; so idle clients, however many, cannot starve the
//! others, and there is no quota per peer address (every SDK on a host connects from
//! 127.0.0.1). Only when every connection is in the middle of a request (slow proxy uploads,
//! say) does a new one get a reserve slot: it is answered once, then closed, and on the admin
//! routes only (the sampling proxy answers `503`), so health and stats are still answered.
//! With the reserve busy too, the new connection is closed at once. Running out of file
//! descriptors (`EMFILE`: the soft limit is often 1,024, under systemd or containerd) is met
//! the same way: the connection idle the longest is closed so the one waiting can be accepted.
//! A connection holding a live stream (the coming viewer) is neither idle nor shed. The policy
//! is in `admin/connections.rs`; shedding and refusing are logged as warnings, at most once per
//! [`crate::ratelimit::WARN_INTERVAL`] each.
//!
//! A client has the listener's header timeout to send a request's headers (the proxy's
//! `--proxy-client-timeout` on `-t`, [`DEFAULT_HEADER_TIMEOUT`] on the stats address); the
//! forwarded route has its own body and upstream bounds (see [`crate::proxy`]). Shutdown: once
//! the token is cancelled, no connection is accepted and the ones open are closed.
//!
//! Imports: [`crate::stats`] (a leaf) and [`crate::proxy`], which is no longer a stage of its
//! own: it holds no socket and is the handler of the forward route, as the viewer's store and
//! the OTLP decoder will be of theirs.

mod connections;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, HeaderMap};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::otlp_http::OtlpReceiver;
use crate::proxy::{self, Forwarder, ProxySettings, SAMPLING_PATHS, reply};
use crate::ratelimit::{RateLimit, Suppressed};
use crate::stats::{MetricsFormat, Stats};
use crate::viewer::{self, LiveStream, Viewer};
use connections::{Connections, Limits, Membership, Slot};

/// Path of the liveness check.
pub const HEALTH_PATH: &str = "/daemon/health";
/// Path of the JSON counters.
pub const STATS_PATH: &str = "/daemon/stats";
/// Path of the Prometheus counters.
pub const METRICS_PATH: &str = "/daemon/metrics";

/// Connections a listener holds at once (besides [`ADMIN_RESERVE`]); at the cap, a new one
/// takes the slot of the one idle the longest.
pub const MAX_CONNECTIONS: usize = 1024;
/// Connections a listener lets in beyond [`MAX_CONNECTIONS`] while all of those are in the
/// middle of a request: each is answered once, on the admin routes only (health, stats,
/// metrics), so they stay busy for no longer than it takes to answer those.
pub const ADMIN_RESERVE: usize = 16;
/// How long the accept loop waits after an accept failed: until the connection it closed to
/// free a file descriptor has ended (at most this long), else this long, so as not to spin.
const RETRY_AFTER_ERROR: Duration = Duration::from_millis(100);
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
    /// `POST /v1/traces`: OTLP/HTTP spans for the receiver ([`crate::otlp_http`]).
    OtlpTraces,
    /// `POST /v1/metrics` or `/v1/logs`: `404`, naming the exporter setting that stops them.
    OtlpOtherSignal,
    /// `GET /daemon/viewer/…` (and `GET /`, a redirect there; `POST` of the viewer's import and
    /// clear): the trace viewer
    /// ([`crate::viewer`]).
    Viewer,
}

impl Route {
    /// Whether this is one of the daemon's own routes, which a connection in the admin reserve
    /// may use ([`ADMIN_RESERVE`]): answered at once, from memory.
    pub fn is_admin(&self) -> bool {
        match self {
            Route::Health | Route::Stats | Route::Metrics => true,
            Route::Forward | Route::OtlpTraces | Route::OtlpOtherSignal | Route::Viewer => false,
        }
    }
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

/// The OTLP/HTTP paths of the `--otlp-http` listener.
pub const OTLP_ENTRIES: [Entry; 3] = [
    Entry {
        path: PathMatch::Exact(OTLP_TRACES_PATH),
        methods: Methods::Post,
        route: Route::OtlpTraces,
    },
    Entry {
        path: PathMatch::Exact("/v1/metrics"),
        methods: Methods::Post,
        route: Route::OtlpOtherSignal,
    },
    Entry {
        path: PathMatch::Exact("/v1/logs"),
        methods: Methods::Post,
        route: Route::OtlpOtherSignal,
    },
];

/// The trace viewer's paths on the `-t` address: its own, and `/` (a redirect to them). Two
/// take `POST` (from the page: loading a file, clearing the store).
pub const VIEWER_ENTRIES: [Entry; 5] = [
    Entry {
        path: PathMatch::Exact("/daemon/viewer/api/import"),
        methods: Methods::Post,
        route: Route::Viewer,
    },
    Entry {
        path: PathMatch::Exact("/daemon/viewer/api/clear"),
        methods: Methods::Post,
        route: Route::Viewer,
    },
    Entry {
        path: PathMatch::Prefix(crate::viewer::BASE),
        methods: Methods::Read,
        route: Route::Viewer,
    },
    Entry {
        path: PathMatch::Exact("/daemon/viewer"),
        methods: Methods::Read,
        route: Route::Viewer,
    },
    Entry {
        path: PathMatch::Exact("/"),
        methods: Methods::Read,
        route: Route::Viewer,
    },
];

/// Path of OTLP/HTTP traces.
pub const OTLP_TRACES_PATH: &str = "/v1/traces";

/// Why the OTLP/HTTP address answers `404` to paths it does not serve.
pub const OTLP_ADDRESS_REASON: &str = "this is the daemon's OTLP/HTTP address (--otlp-http),      which serves POST /v1/traces (and /daemon/stats, /daemon/metrics, /daemon/health); the      sampling proxy is on the -t address";

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
    /// With the OTLP receiver on, `POST /v1/traces` goes to it rather than to X-Ray; with the
    /// viewer on, its paths and `GET /` go to it.
    pub fn daemon(forward: ForwardRule, otlp: bool, viewer: bool) -> Self {
        let mut entries = ADMIN_ENTRIES.to_vec();
        if otlp {
            entries.push(OTLP_ENTRIES[0]);
        }
        if viewer {
            entries.extend(VIEWER_ENTRIES);
        }
        RouteTable::new(entries, Fallback::Forward(forward))
    }

    /// The `--otlp-http` listener: the admin routes and OTLP's paths, `404` for the rest.
    pub fn otlp_http() -> Self {
        let mut entries = ADMIN_ENTRIES.to_vec();
        entries.extend(OTLP_ENTRIES);
        RouteTable::new(entries, Fallback::NotFound(OTLP_ADDRESS_REASON))
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
    /// Present exactly when the table serves [`Route::OtlpTraces`].
    otlp: Option<Arc<OtlpReceiver>>,
    /// Present exactly when the table serves [`Route::Viewer`].
    viewer: Option<Arc<Viewer>>,
    header_timeout: Duration,
}

impl Surface {
    /// The `-t` address: the admin routes and the sampling proxy, whose settings give the
    /// forward rule and the header timeout.
    /// With `otlp`, `POST /v1/traces` goes to the OTLP receiver; with `viewer`, the viewer's
    /// paths to it.
    pub fn daemon(
        stats: Arc<Stats>,
        forwarder: Forwarder,
        otlp: Option<Arc<OtlpReceiver>>,
        viewer: Option<Arc<Viewer>>,
    ) -> Self {
        let settings = forwarder.settings();
        Surface {
            table: RouteTable::daemon(
                ForwardRule::from(settings),
                otlp.is_some(),
                viewer.is_some(),
            ),
            header_timeout: settings.client_timeout,
            stats,
            forwarder: Some(forwarder),
            otlp,
            viewer,
        }
    }

    /// The `--otlp-http` listener: OTLP's paths and the admin routes.
    pub fn otlp_http(stats: Arc<Stats>, receiver: Arc<OtlpReceiver>) -> Self {
        Surface {
            table: RouteTable::otlp_http(),
            stats,
            forwarder: None,
            otlp: Some(receiver),
            viewer: None,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
        }
    }

    /// The `--stats-address` listener: the admin routes only, nothing forwarded.
    pub fn stats_address(stats: Arc<Stats>) -> Self {
        Surface {
            table: RouteTable::stats_address(),
            stats,
            forwarder: None,
            otlp: None,
            viewer: None,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
        }
    }

    /// The route table.
    pub fn table(&self) -> &RouteTable {
        &self.table
    }

    async fn answer(&self, req: Request<Incoming>, slot: Slot) -> Response<viewer::Body> {
        // (A reserve connection is for the admin routes: `answer_whole` refuses the rest.)
        if slot == Slot::Regular
            && let (Ok(Route::Viewer), Some(viewer)) = (
                route(req.method(), req.uri(), req.headers(), &self.table),
                &self.viewer,
            )
        {
            return viewer.answer(req).await;
        }
        self.answer_whole(req, slot).await.map(BodyExt::boxed)
    }

    /// Every route but the viewer's: answers whole.
    async fn answer_whole(&self, req: Request<Incoming>, slot: Slot) -> Response<Full<Bytes>> {
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
        if slot == Slot::Reserve && !chosen.is_admin() {
            tracing::debug!(
                "Refused {} {} on a reserve connection: every connection is busy",
                req.method(),
                req.uri()
            );
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "every connection of this daemon is in the middle of a request; this one was \
                 let in for the daemon's own paths (health, stats, metrics) only: try again \
                 shortly\n"
                    .into(),
            );
        }
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
            Route::OtlpTraces => match &self.otlp {
                Some(receiver) => receiver.traces(req).await,
                None => reply(StatusCode::NOT_FOUND, "text/plain", "no OTLP receiver here\n".into()),
            },
            Route::OtlpOtherSignal => match &self.otlp {
                Some(receiver) => {
                    let content_type = req
                        .headers()
                        .get(hyper::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok());
                    receiver.other_signal(req.uri().path(), content_type)
                }
                None => reply(StatusCode::NOT_FOUND, "text/plain", "no OTLP receiver here\n".into()),
            },
            // Answered by `answer` when the viewer is on.
            Route::Viewer => reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                "the trace viewer is off: start the daemon with --viewer\n".into(),
            ),
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

/// Serves connections on `listener` with `surface`'s routes until `shutdown` is cancelled,
/// holding at most [`MAX_CONNECTIONS`] and [`ADMIN_RESERVE`] at once (see the module docs).
pub async fn run(listener: TcpListener, surface: Surface, shutdown: CancellationToken) {
    let limits = Limits {
        regular: MAX_CONNECTIONS,
        reserve: ADMIN_RESERVE,
    };
    serve(listener, surface, limits, shutdown).await;
}

/// What the accept loop has logged lately, so that a flood logs once per interval.
#[derive(Debug, Default)]
struct Warnings {
    shed: RateLimit,
    refused: RateLimit,
    accept_failed: RateLimit,
}

/// [`run`], with these limits.
async fn serve(
    listener: TcpListener,
    surface: Surface,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let surface = Arc::new(surface);
    let connections = Connections::new(limits);
    let local = listener.local_addr().ok();
    let warnings = Warnings::default();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Out of file descriptors: the connection stays in the backlog until one is
                // freed, so free one and retry as soon as it is.
                let shed = if out_of_descriptors(&e) {
                    connections.shed_and_wait(RETRY_AFTER_ERROR).await
                } else {
                    None
                };
                if let Some(suppressed) = warnings.accept_failed.once() {
                    let freed = match shed {
                        Some(idle) => format!(
                            "; closed the connection idle the longest ({idle:.1?}) to free a file \
                             descriptor (raise the open-files limit, e.g. LimitNOFILE=, to hold more)"
                        ),
                        None => String::new(),
                    };
                    tracing::warn!(
                        "Accepting a TCP connection on {} failed: {e}{freed}{}",
                        Addr(local),
                        Suppressed(suppressed, "failed accepts")
                    );
                }
                if shed.is_none() {
                    tokio::time::sleep(RETRY_AFTER_ERROR).await;
                }
                continue;
            }
        };
        let close = shutdown.child_token();
        let admitted = connections.lock().admit(Instant::now(), close.clone());
        let Some(admitted) = admitted else {
            drop(stream);
            if let Some(suppressed) = warnings.refused.once() {
                tracing::warn!(
                    "TCP {}: all {} connections and the {} kept for health and stats are in the \
                     middle of a request, so a new connection was closed at once{}",
                    Addr(local),
                    limits.regular,
                    limits.reserve,
                    Suppressed(suppressed, "connections closed this way")
                );
            }
            continue;
        };
        if let Some(idle) = admitted.shed
            && let Some(suppressed) = warnings.shed.once()
        {
            let full = match admitted.slot {
                Slot::Regular => format!("at the cap of {} connections", limits.regular),
                Slot::Reserve => format!(
                    "with all {} connections busy and the {} kept for health and stats taken",
                    limits.regular, limits.reserve
                ),
            };
            tracing::warn!(
                "TCP {}: {full}, closed the one idle the longest ({idle:.1?}) to take a new \
                 one{}",
                Addr(local),
                Suppressed(suppressed, "connections closed this way")
            );
        }
        let membership = Membership::new(Arc::clone(&connections), admitted.id);
        tokio::spawn(serve_connection(
            stream,
            Arc::clone(&surface),
            membership,
            admitted.slot,
            close,
        ));
    }
}

/// Serves one connection until it ends or `close` is cancelled (shed, or shutdown); its slot
/// is freed when `membership` drops, at the end.
async fn serve_connection(
    stream: TcpStream,
    surface: Arc<Surface>,
    membership: Membership,
    slot: Slot,
    close: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let membership = Arc::new(membership);
    let header_timeout = surface.header_timeout;
    let service = hyper::service::service_fn(move |req| {
        let surface = Arc::clone(&surface);
        let membership = Arc::clone(&membership);
        async move {
            let resp = {
                let _busy = membership.busy();
                surface.answer(req, slot).await
            };
            // A live stream's connection is neither idle nor shed while it lasts.
            if resp.extensions().get::<LiveStream>().is_some() {
                membership.streaming();
            }
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        // A reserve connection is answered once: its slot is for the next health check.
        .keep_alive(slot == Slot::Regular)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        () = close.cancelled() => {}
    }
}

/// Whether accepting failed for want of file descriptors (the process's or the system's).
fn out_of_descriptors(e: &std::io::Error) -> bool {
    #[cfg(target_os = "linux")]
    {
        use nix::errno::Errno;
        e.raw_os_error()
            .is_some_and(|n| n == Errno::EMFILE as i32 || n == Errno::ENFILE as i32)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = e;
        false
    }
}

/// A listener's address in a log line.
#[derive(Debug)]
struct Addr(Option<SocketAddr>);

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("(unknown address)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::UpstreamState;
    use hyper::header::HeaderValue;

    fn daemon(sampling_only: bool) -> RouteTable {
        RouteTable::daemon(
            ForwardRule {
                sampling_only,
                max_body: 100,
            },
            false,
            false,
        )
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
    fn the_viewers_paths_are_its_own_only_when_it_is_on() {
        let rule = ForwardRule {
            sampling_only: false,
            max_body: 100,
        };
        let on = RouteTable::daemon(rule, false, true);
        for target in [
            "/",
            "/daemon/viewer",
            "/daemon/viewer/",
            "/daemon/viewer/api/traces?x=1",
        ] {
            assert_eq!(
                status(&on, Method::GET, target),
                Ok(Route::Viewer),
                "{target}"
            );
        }
        // Sampling calls still go through; the viewer takes no POST.
        assert_eq!(
            status(&on, Method::POST, "/GetSamplingRules"),
            Ok(Route::Forward)
        );
        assert_eq!(
            status(&on, Method::POST, "/daemon/viewer/api/traces"),
            Err(StatusCode::METHOD_NOT_ALLOWED)
        );
        let off = daemon(false);
        assert!(!off.serves(Route::Viewer));
        assert_eq!(status(&off, Method::GET, "/"), Ok(Route::Forward));
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

    /// A listener of `surface` with `limits` on a free loopback port, and its shutdown token.
    async fn listen(surface: Surface, limits: Limits) -> (SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local address: {e}"));
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(listener, surface, limits, shutdown.clone()));
        (addr, shutdown)
    }

    async fn connect(addr: SocketAddr) -> TcpStream {
        TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
    }

    /// Sends `request` and reads until the daemon closes the connection (within 5 s).
    async fn exchange(stream: &mut TcpStream, request: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(request.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("write: {e}"));
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer));
        match read.await {
            Ok(Ok(_)) => String::from_utf8_lossy(&answer).into_owned(),
            Ok(Err(e)) => panic!("read: {e}"),
            Err(_) => panic!(
                "no end of the answer within 5 s: {:?}",
                String::from_utf8_lossy(&answer)
            ),
        }
    }

    /// Whether the daemon closes `stream` (end of file or reset) within `within`.
    async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
        use tokio::io::AsyncReadExt;
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(within, stream.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    const HEALTH: &str = "GET /daemon/health HTTP/1.1\r\nHost: x\r\n\r\n";

    #[tokio::test]
    async fn at_the_cap_a_new_connection_sheds_the_longest_idle_one() {
        let limits = Limits {
            regular: 2,
            reserve: 1,
        };
        let surface = Surface::stats_address(Arc::new(Stats::new()));
        let (addr, shutdown) = listen(surface, limits).await;
        let mut oldest = connect(addr).await;
        // The second answers a request first, so it is idle for less time than the first.
        let mut second = connect(addr).await;
        {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            second
                .write_all(HEALTH.as_bytes())
                .await
                .unwrap_or_else(|e| panic!("write: {e}"));
            let mut buf = [0u8; 512];
            let n = second
                .read(&mut buf)
                .await
                .unwrap_or_else(|e| panic!("read: {e}"));
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
        }
        let mut third = connect(addr).await;
        let answer = exchange(
            &mut third,
            "GET /daemon/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("ok\n"), "{answer}");
        assert!(closed_within(&mut oldest, Duration::from_secs(5)).await);
        assert!(!closed_within(&mut second, Duration::from_millis(100)).await);

        shutdown.cancel();
        assert!(closed_within(&mut second, Duration::from_secs(5)).await);
        // No new connection is served: refused, or closed once the listener is gone.
        if let Ok(mut late) = TcpStream::connect(addr).await {
            assert!(closed_within(&mut late, Duration::from_secs(5)).await);
        }
    }

    #[tokio::test]
    async fn with_every_connection_busy_the_reserve_answers_the_admin_routes_once_per_connection() {
        let limits = Limits {
            regular: 2,
            reserve: 1,
        };
        // The AWS context never comes, and clients get a minute for their body: a request
        // that never sends its body keeps its connection busy.
        let (_upstream_tx, upstream_rx) = tokio::sync::watch::channel(UpstreamState::Starting);
        let settings = ProxySettings {
            client_timeout: Duration::from_secs(60),
            ..ProxySettings::default()
        };
        let surface = Surface::daemon(
            Arc::new(Stats::new()),
            Forwarder::new(settings, upstream_rx),
            None,
            None,
        );
        let (addr, shutdown) = listen(surface, limits).await;
        let mut busy = Vec::new();
        for _ in 0..limits.regular {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = connect(addr).await;
            stream
                .write_all(
                    b"POST /GetSamplingRules HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\
                      Expect: 100-continue\r\n\r\n",
                )
                .await
                .unwrap_or_else(|e| panic!("write: {e}"));
            // `100 Continue` comes once the proxy reads the body: the request is under way.
            let mut buf = [0u8; 64];
            let n = stream
                .read(&mut buf)
                .await
                .unwrap_or_else(|e| panic!("read: {e}"));
            assert!(buf[..n].starts_with(b"HTTP/1.1 100"), "{:?}", &buf[..n]);
            busy.push(stream);
        }
        // Health is answered on a reserve connection, which is then closed (no keep-alive),
        // twice in a row; the proxy is not served there.
        for _ in 0..2 {
            let health = exchange(&mut connect(addr).await, HEALTH).await;
            assert!(health.starts_with("HTTP/1.1 200"), "{health}");
            assert!(health.contains("connection: close"), "{health}");
        }
        let proxied = exchange(
            &mut connect(addr).await,
            "POST /GetSamplingRules HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        )
        .await;
        assert!(proxied.starts_with("HTTP/1.1 503"), "{proxied}");
        assert!(proxied.contains("in the middle of a request"), "{proxied}");
        // The busy ones were not shed for any of these.
        for stream in &mut busy {
            assert!(!closed_within(stream, Duration::from_millis(50)).await);
        }
        shutdown.cancel();
        for stream in &mut busy {
            assert!(closed_within(stream, Duration::from_secs(5)).await);
        }
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
