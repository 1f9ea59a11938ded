//! The one place that wires the stages together: binds, makes the buffer and channels, spawns
//! the stages, and drains them at shutdown.
//!
//! ```text
//! UDP socket ─▶ receiver ─▶ buffer (byte budget) ─▶ batcher ─▶ channel ─▶ upload ─▶ sinks
//! TCP socket ─▶ admin (stats, health; sampling calls ─▶ X-Ray)        │
//! --otlp-http ─▶ admin ─▶ otlp_http ─┐ (one OtlpReceiver) ─▶ buffer    │
//! --otlp-grpc ─▶ otlp_grpc ──────────┘                                │
//!                         stats ◀───────────── every stage counts ────┘
//! ```
//!
//! Order at startup: bind both sockets (a port in use fails here, before anything else), start
//! receiving, then look up what may take time (region, credentials), then start uploading;
//! documents arriving meanwhile wait in the buffer.
//!
//! Shutdown: the token stops the receiver and the proxy; the buffer is closed, and the batcher
//! and uploads drain it (retries included) until it is empty or the deadline passes
//! (`--shutdown-timeout`, default 25 s). At the deadline the buffer is abandoned and the calls
//! under way are cut off; what they held is counted as dropped (`shutdown`) and reported. Then
//! telemetry sends its final record (which includes the drain) and the summary is logged. A
//! second signal during the drain (the `exit_now` token, see [`crate::shutdown`]) gives it up:
//! what is still held is logged as lost, then the summary, and [`run`] returns
//! [`StartupError::Interrupted`] (exit code 1).
//!
//! Also started here: the telemetry task ([`telemetry`]) when a sink sends to X-Ray and
//! telemetry is on, the summary line every [`SUMMARY_INTERVAL`] while something changed, and
//! the report of what rate-limited warnings suppressed ([`Stats::report_suppressed`]), once
//! their interval is over and at shutdown, before the totals.

use std::sync::Arc;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::aws::{self, AwsSettings};
use crate::batcher::BatchSettings;
use crate::buffer::{Buffer, FullPolicy, LaneSettings, Takes};
use crate::config::{Config, ToXray};
use crate::net::{self, BindError, BoundUdp};
use crate::otlp::to_xray::ConversionSettings;
use crate::otlp_http::{OtlpReceiver, OtlpSettings};
use crate::shutdown::Signals;
use crate::sink::file::FileSink;
use crate::sink::memory::MemoryStore;
use crate::sink::otlp::{self as otlp_sink, OtlpSink};
use crate::sink::stdout::StdoutSink;
use crate::sink::xray::XraySink;
use crate::sink::xray_otlp::{self, XrayOtlpSink};
use crate::sink::{Destination, Pacing, Sink, SinkSpec};
use crate::stats::{SUMMARY_INTERVAL, Snapshot, Stats};
use crate::{admin, batcher, otlp_grpc, proxy, receiver, sink, telemetry, upload, viewer};

/// The daemon's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Both sockets, bound.
#[derive(Debug)]
pub struct Bound {
    /// The UDP socket and what the kernel granted.
    pub udp: BoundUdp,
    /// The TCP listener.
    pub tcp: TcpListener,
    /// The TCP listener's address (with the real port when 0 was asked).
    pub tcp_local: SocketAddr,
    /// The stats-only listener (`--stats-address`), if asked.
    pub stats: Option<TcpListener>,
    /// The OTLP/HTTP receiver's listener (`--otlp-http`), if asked.
    pub otlp_http: Option<TcpListener>,
    /// The OTLP/gRPC receiver's listener (`--otlp-grpc`), if asked.
    pub otlp_grpc: Option<TcpListener>,
}

/// What stops the daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A socket could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// A listen address's host name does not resolve.
    #[error(transparent)]
    Address(#[from] crate::config::ConfigError),
    /// AWS cannot be used.
    #[error(transparent)]
    Aws(#[from] aws::AwsError),
    /// A stage ended before shutdown; the daemon drained and stopped.
    #[error("{0} stopped unexpectedly, so the daemon stopped; see the errors logged before this")]
    StageEnded(&'static str),
    /// A second signal gave up the drain; `lost` segments were still held (already logged).
    #[error("a second signal gave up the drain: {lost} segment(s) were not sent")]
    Interrupted {
        /// Segments still buffered or in flight.
        lost: u64,
    },
    /// The daemon's task ended abnormally (in-process use).
    #[error("the daemon stopped abnormally: {0}")]
    Stopped(String),
    /// An OTLP sink could not be made.
    #[error(transparent)]
    OtlpSink(crate::sink::otlp::OtlpSinkError),
    /// A file sink could not be opened.
    #[error("cannot open {path} for --sink file:{path}: {source}")]
    FileSink {
        /// The path.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Binds the UDP and TCP sockets, first looking up the addresses given as host names (logged;
/// see [`crate::config::ListenAddr::look_up`]). Must run inside the runtime (the TCP listeners
/// are the runtime's).
pub fn bind(config: &Config) -> Result<Bound, StartupError> {
    let udp = net::bind_udp(config.udp_addr.look_up()?)?;
    let tcp_addr = config.tcp_addr.look_up()?;
    let tcp = net::bind_tcp(tcp_addr, "-t/--bind-tcp")?;
    let tcp_local = tcp.local_addr().unwrap_or(tcp_addr);
    let stats = match &config.stats_addr {
        Some(addr) => Some(net::bind_tcp(addr.look_up()?, "--stats-address")?),
        None => None,
    };
    let otlp_http = match &config.otlp.http_addr {
        Some(addr) => Some(net::bind_tcp(addr.look_up()?, "--otlp-http")?),
        None => None,
    };
    let otlp_grpc = match &config.otlp.grpc_addr {
        Some(addr) => Some(net::bind_tcp(addr.look_up()?, "--otlp-grpc")?),
        None => None,
    };
    Ok(Bound {
        udp,
        tcp,
        tcp_local,
        stats,
        otlp_http,
        otlp_grpc,
    })
}

/// Runs the daemon until `signals.shutdown` is cancelled and the drain is over; returns the
/// final counters. If `signals.exit_now` is cancelled during the drain, the drain is given up:
/// what is still held is logged as lost, with the summary line, and the result is
/// [`StartupError::Interrupted`].
pub async fn run(config: Config, bound: Bound, signals: Signals) -> Result<Snapshot, StartupError> {
    serve(
        config,
        bound,
        Arc::new(Stats::new()),
        None,
        signals.shutdown,
        signals.exit_now,
    )
    .await
}

/// How a configured sink's lane is paced: X-Ray's batches of 50 with the original's 1 s idle
/// flush for every upload; a local store takes items as they come.
fn pacing(spec: &SinkSpec) -> Pacing {
    match spec {
        SinkSpec::Xray | SinkSpec::Stdout | SinkSpec::File(_) => Pacing {
            batch_size: batcher::MAX_BATCH_DOCUMENTS,
            linger: batcher::LINGER,
            concurrency: None,
        },
        // The OpenTelemetry SDKs' batch size; the same idle flush.
        SinkSpec::Otlp(_) => Pacing {
            batch_size: otlp_sink::BATCH_ITEMS,
            linger: batcher::LINGER,
            concurrency: None,
        },
    }
}

/// Pacing of the `xray-otlp` lane (`--otlp-to-xray otlp`): up to [`xray_otlp::BATCH_SPANS`]
/// spans a batch, the same 1 s idle flush.
const XRAY_OTLP_PACING: Pacing = Pacing {
    batch_size: xray_otlp::BATCH_SPANS,
    linger: batcher::LINGER,
    concurrency: None,
};

/// The buffer's lanes, one per configured sink in order, with what each takes: with
/// `--otlp-to-xray otlp`, X-Ray is two lanes, `xray` for the X-Ray documents and `xray-otlp`
/// right after it for the spans ([`build_sinks`] makes the destinations in the same order).
fn lanes_of(config: &Config) -> Vec<(String, Pacing, Takes)> {
    let mut lanes = Vec::new();
    for spec in &config.sinks {
        if *spec == SinkSpec::Xray && config.otlp.to_xray == ToXray::Otlp {
            lanes.push((spec.to_string(), pacing(spec), Takes::XrayDocuments));
            lanes.push((xray_otlp::NAME.to_owned(), XRAY_OTLP_PACING, Takes::Spans));
        } else {
            lanes.push((spec.to_string(), pacing(spec), Takes::Everything));
        }
    }
    lanes
}

/// Pacing of an in-memory store: no linger, one call at a time (each is instant).
const STORE_PACING: Pacing = Pacing {
    batch_size: 256,
    linger: Duration::ZERO,
    concurrency: Some(1),
};

/// The daemon, with its counters in `stats` and, if given, an in-memory store as one more sink.
async fn serve(
    config: Config,
    bound: Bound,
    stats: Arc<Stats>,
    memory: Option<Arc<MemoryStore>>,
    shutdown: CancellationToken,
    exit_now: CancellationToken,
) -> Result<Snapshot, StartupError> {
    // The lanes are known from the config, so the buffer exists before anything is received;
    // the sinks themselves may need AWS, which is looked up after binding.
    let mut lanes = lanes_of(&config);
    // The trace viewer's store, fed by a lane of its own (after the configured sinks').
    let viewer_store = config.viewer.enabled.then(|| {
        Arc::new(viewer::Store::new(
            config.viewer.memory_bytes,
            Arc::clone(&stats),
        ))
    });
    if viewer_store.is_some() {
        lanes.push((
            sink::viewer::NAME.to_owned(),
            STORE_PACING,
            Takes::Everything,
        ));
    }
    if memory.is_some() {
        lanes.push(("memory".to_owned(), STORE_PACING, Takes::Everything));
    }
    let buffer = Buffer::new(
        config.buffer_bytes,
        lanes
            .iter()
            .map(|(name, pacing, takes)| LaneSettings {
                name: name.clone(),
                batch_size: pacing.batch_size,
                takes: *takes,
            })
            .collect(),
        FullPolicy::DropOldest,
        Arc::clone(&stats),
    );
    let udp_local = bound.udp.local;
    let tcp_local = bound.tcp_local;
    let receiving = receiver::run(
        bound.udp.socket,
        Arc::clone(&buffer),
        Arc::clone(&stats),
        receiver::ReceiverSettings {
            max_document: config.max_document,
            receive_buffer: bound.udp.receive_buffer,
            refusals: viewer_store.clone(),
        },
        shutdown.clone(),
    );
    let receiver = tokio::spawn({
        // The health check reports the daemon unhealthy once the receive loop ends.
        let stats = Arc::clone(&stats);
        async move {
            receiving.await;
            stats.receiver_stopped();
        }
    });
    // The proxy starts before the AWS context exists: its requests wait for it (briefly).
    let (upstream_tx, upstream_rx) = watch::channel(proxy::UpstreamState::Starting);
    let proxy_settings = proxy::ProxySettings {
        sampling_only: config.proxy_sampling_only,
        client_timeout: config.proxy_client_timeout,
        upstream_timeout: config.proxy_upstream_timeout,
        ..proxy::ProxySettings::default()
    };
    // OpenTelemetry in: one receiver behind both transports, OTLP/HTTP on its own address
    // (and POST /v1/traces on -t while it is on) and OTLP/gRPC on its own.
    let otlp_local = bound.otlp_http.as_ref().and_then(|l| l.local_addr().ok());
    let grpc_local = bound.otlp_grpc.as_ref().and_then(|l| l.local_addr().ok());
    let otlp = (bound.otlp_http.is_some() || bound.otlp_grpc.is_some()).then(|| {
        Arc::new(OtlpReceiver::new(
            Arc::clone(&buffer),
            Arc::clone(&stats),
            OtlpSettings {
                max_request_bytes: config.otlp.max_request_bytes,
                bodies_in_flight: config.otlp.max_request_bytes.saturating_mul(2),
                client_timeout: config.proxy_client_timeout,
                conversion: ConversionSettings {
                    indexed_attributes: config.otlp.indexed_attributes.clone(),
                    index_all: config.otlp.index_all_attributes,
                },
                max_document: config.max_document,
            },
        ))
    });
    let http_on = bound.otlp_http.is_some();
    let otlp_edge = bound
        .otlp_http
        .zip(otlp.clone())
        .map(|(listener, receiver)| {
            tokio::spawn(admin::run(
                listener,
                admin::Surface::otlp_http(Arc::clone(&stats), receiver),
                shutdown.clone(),
            ))
        });
    let grpc_edge = bound
        .otlp_grpc
        .zip(otlp.clone())
        .map(|(listener, receiver)| {
            tokio::spawn(otlp_grpc::run(listener, receiver, shutdown.clone()))
        });
    let viewer = viewer_store.as_ref().map(|store| {
        let access = viewer::Access {
            token: config.viewer.allow_remote.then(viewer::Access::new_token),
        };
        Arc::new(viewer::Viewer::new(Arc::clone(store), access))
    });
    let viewer_host = viewer_host(tcp_local);
    let proxy = tokio::spawn(admin::run(
        bound.tcp,
        admin::Surface::daemon(
            Arc::clone(&stats),
            proxy::Forwarder::new(proxy_settings.clone(), upstream_rx),
            otlp.filter(|_| http_on),
            viewer.clone(),
        ),
        shutdown.clone(),
    ));
    if !config.proxy_sampling_only && !tcp_local.ip().is_loopback() {
        tracing::warn!(
            "The sampling proxy on TCP {tcp_local} can be reached from other hosts and forwards \
             any X-Ray API call signed with this daemon's credentials, as the original daemon \
             does; to forward only the SDKs' sampling calls, add --proxy-sampling-only"
        );
    }
    // The stats-only address: the admin routes, and no upstream at all.
    let stats_local = bound.stats.as_ref().and_then(|l| l.local_addr().ok());
    let stats_edge = bound.stats.map(|listener| {
        tokio::spawn(admin::run(
            listener,
            admin::Surface::stats_address(Arc::clone(&stats)),
            shutdown.clone(),
        ))
    });

    // Lookups that may take time come after listening has started.
    let aws = if config.needs_aws() {
        match aws::load(&aws_settings(&config)).await {
            Ok(ctx) => Some(ctx),
            Err(e) => {
                shutdown.cancel();
                return Err(e.into());
            }
        }
    } else {
        None
    };
    upstream_tx.send_replace(match &aws {
        Some(ctx) => match proxy::Upstream::new(ctx, &proxy_settings) {
            Ok(u) => proxy::UpstreamState::Ready(Arc::new(u)),
            Err(e) => {
                tracing::error!("{e}");
                proxy::UpstreamState::Unavailable(e.to_string())
            }
        },
        None => proxy::UpstreamState::Unavailable(
            "no sink sends to AWS (--sink xray), so the daemon has no AWS region or credentials \
             to forward with"
                .into(),
        ),
    });
    let link = viewer
        .as_ref()
        .map(|_| format!("http://{viewer_host}{}#/trace/", viewer::BASE));
    let (mut destinations, region_line) =
        match build_sinks(&config, aws.as_ref(), &shutdown, link).await {
            Ok(s) => s,
            Err(e) => {
                shutdown.cancel();
                return Err(e);
            }
        };
    if let Some(store) = &viewer_store {
        destinations.push(Destination {
            name: sink::viewer::NAME.into(),
            sink: Arc::new(sink::viewer::ViewerSink::new(Arc::clone(store))),
            pacing: STORE_PACING,
        });
    }
    if let Some(store) = memory {
        destinations.push(Destination {
            name: "memory".into(),
            sink: store,
            pacing: STORE_PACING,
        });
    }
    let sink_names: Vec<String> = config.sinks.iter().map(ToString::to_string).collect();
    tracing::info!(
        "AWS X-Ray daemon (xray-daemon-rs) {VERSION}: receiving segments on UDP {udp_local}, \
         sampling proxy and stats on TCP {}{}{}{}, buffer {} ({}), kernel receive buffer {} KiB, \
         sinks: {}, {region_line}",
        tcp_local,
        stats_local.map_or_else(String::new, |a| format!(", stats also on TCP {a}")),
        otlp_local.map_or_else(String::new, |a| format!(
            ", OpenTelemetry spans (OTLP/HTTP) on TCP {a} (POST /v1/traces)"
        )),
        grpc_local.map_or_else(String::new, |a| format!(
            ", OpenTelemetry spans (OTLP/gRPC) on TCP {a} (TraceService/Export)"
        )),
        human_bytes(config.buffer_bytes),
        config.buffer_source,
        bound.udp.receive_buffer / 1024,
        sink_names.join(", "),
    );
    // Restart without a database: the viewer starts with what `--sink file` wrote before.
    if let Some(store) = &viewer_store {
        for spec in &config.sinks {
            if let SinkSpec::File(path) = spec {
                let (store, path, budget) =
                    (Arc::clone(store), path.clone(), config.viewer.memory_bytes);
                tokio::task::spawn_blocking(move || {
                    match sink::viewer::load_file(&store, &path, budget) {
                        Ok(loaded) => tracing::info!(
                            "Trace viewer: {} document(s) loaded from {} (--sink file), {} line(s) \
                             skipped",
                            loaded.kept,
                            path.display(),
                            loaded.skipped
                        ),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => tracing::warn!(
                            "Trace viewer: could not read {} (--sink file) to show earlier \
                             traces: {e}",
                            path.display()
                        ),
                    }
                });
            }
        }
    }
    if let Some(viewer) = &viewer {
        tracing::info!(
            "Trace viewer: open {} in a browser (store of {}{})",
            viewer.url(&viewer_host),
            human_bytes(config.viewer.memory_bytes),
            if config.viewer.allow_remote {
                "; other hosts may open it with this URL's token: keep it secret"
            } else {
                "; only this host may open it"
            }
        );
    }

    // Each sink's lane: its own batcher and upload workers, so none waits for another.
    let abandon = CancellationToken::new();
    let mut lanes = JoinSet::new();
    for (lane, dest) in destinations.into_iter().enumerate() {
        let concurrency = dest.pacing.concurrency.unwrap_or(config.concurrency);
        let (calls_tx, calls_rx) = mpsc::channel(batcher::reports_capacity(concurrency));
        let (batch_tx, batch_rx) = mpsc::channel(1);
        let cut = batcher::run(
            Arc::clone(&buffer),
            lane,
            BatchSettings {
                batch_size: dest.pacing.batch_size,
                linger: dest.pacing.linger,
                max_age: config.retry.max_age,
            },
            calls_rx,
            Arc::new(tokio::sync::Semaphore::new(concurrency.max(1))),
            batch_tx,
        );
        let send = upload::run(
            batch_rx,
            dest.sink,
            calls_tx,
            upload::UploadSettings {
                retry: config.retry,
            },
            Arc::clone(&stats),
            abandon.clone(),
        );
        lanes.spawn(async move {
            tokio::join!(cut, send);
            "a sink's batcher and upload workers"
        });
    }
    let telemetry = match (&aws, config.telemetry_interval) {
        (Some(ctx), Some(interval)) => Some(telemetry::spawn(
            aws_sdk_xray::Client::new(&ctx.sdk),
            Arc::clone(&stats),
            telemetry::TelemetrySettings {
                identity: telemetry::Identity::new(
                    ctx.hostname.as_deref(),
                    ctx.instance_id.as_deref(),
                    config.resource_arn.as_deref(),
                ),
                interval,
            },
            shutdown.clone(),
        )),
        _ => None,
    };
    let summary = tokio::spawn(log_summaries(Arc::clone(&stats)));
    let suppressed = tokio::spawn(report_suppressed(Arc::clone(&stats)));

    // The edges run until shutdown; one that ends before it (a failed socket, a panic) stops
    // the daemon, which then exits 1 after draining what it holds.
    let mut edges = JoinSet::new();
    edges.spawn(stage("the UDP receiver", receiver));
    edges.spawn(stage(
        "the TCP listener (sampling proxy and /daemon/ paths)",
        proxy,
    ));
    if let Some(edge) = stats_edge {
        edges.spawn(stage("the --stats-address listener", edge));
    }
    if let Some(edge) = otlp_edge {
        edges.spawn(stage("the --otlp-http listener", edge));
    }
    if let Some(edge) = grpc_edge {
        edges.spawn(stage("the --otlp-grpc listener", edge));
    }
    let ended_early = first_to_end(&shutdown, &mut edges, &mut lanes).await;
    if let Some(name) = ended_early {
        tracing::error!(
            "{name} stopped unexpectedly, so the daemon stops (see the errors above); restart it"
        );
        shutdown.cancel();
    }
    // The drain, until it is over or a second signal gives it up.
    let drain = async {
        while edges.join_next().await.is_some() {}
        summary.abort();
        buffer.close();
        let deadline = tokio::time::Instant::now() + config.shutdown_timeout;
        let at_close = stats.snapshot();
        tracing::info!(
            "Draining {} buffered and {} in-flight segment(s), for at most {:.1} s",
            at_close.buffered,
            at_close.in_flight,
            config.shutdown_timeout.as_secs_f64()
        );
        let drained = tokio::time::timeout_at(deadline, async {
            while lanes.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            let before = stats.snapshot();
            let waiting = buffer.abandon();
            abandon.cancel();
            // Both end promptly now: the buffer hands out nothing, calls under way are cut off,
            // and every batch they held counts itself as dropped.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
                while lanes.join_next().await.is_some() {}
            })
            .await;
            let after = stats.snapshot();
            let shutdown = crate::outcome::DropReason::Shutdown;
            let lost = after.dropped(shutdown) - before.dropped(shutdown);
            tracing::error!(
                "Shutdown deadline of {:.1} s passed: {lost} segment(s) were not sent ({waiting} waiting, {} in flight); they are counted as dropped (shutdown)",
                config.shutdown_timeout.as_secs_f64(),
                lost.saturating_sub(waiting),
            );
        }
        if let Some((handle, finish)) = telemetry {
            finish.now(deadline);
            let bound = deadline.max(tokio::time::Instant::now()) + telemetry::FINAL_SEND_MIN;
            let _ = tokio::time::timeout_at(bound, handle).await;
        }
    };
    let given_up = tokio::select! {
        () = drain => false,
        () = exit_now.cancelled() => true,
    };
    // What the rate-limited warnings suppressed and no later one reported, before the totals.
    suppressed.abort();
    stats.report_suppressed(true);
    if given_up {
        let end = stats.snapshot();
        let lost = end.buffered + end.in_flight;
        tracing::error!(
            "A second signal gave up the drain: {lost} segment(s) still held were not sent \
             ({} waiting, {} in flight)",
            end.buffered,
            end.in_flight
        );
        tracing::info!("Stopped. {}", end.summary_line());
        return Err(StartupError::Interrupted { lost });
    }
    let end = stats.snapshot();
    tracing::info!("Stopped. {}", end.summary_line());
    match ended_early {
        Some(name) => Err(StartupError::StageEnded(name)),
        None => Ok(end),
    }
}

/// A stage's task, named: it ends with the name when the task ends, however it ended.
async fn stage(name: &'static str, task: tokio::task::JoinHandle<()>) -> &'static str {
    if let Err(e) = task.await {
        tracing::error!("{name} failed: {e}");
    }
    name
}

/// Waits for `shutdown`. Returns the name of the stage that ended first if one ended before
/// it: edges and lanes only end on shutdown, so that is a fault.
async fn first_to_end(
    shutdown: &CancellationToken,
    edges: &mut JoinSet<&'static str>,
    lanes: &mut JoinSet<&'static str>,
) -> Option<&'static str> {
    tokio::select! {
        biased;
        () = shutdown.cancelled() => None,
        Some(ended) = edges.join_next() => Some(ended.unwrap_or("a stage")),
        Some(ended) = lanes.join_next() => Some(ended.unwrap_or("a sink's lane")),
    }
}

fn aws_settings(config: &Config) -> AwsSettings {
    AwsSettings {
        region: config.region.clone(),
        endpoint: config.endpoint.clone(),
        local_mode: config.local_mode,
        role_arn: config.role_arn.clone(),
        proxy_address: config.proxy_address.clone(),
        no_verify_ssl: config.no_verify_ssl,
        upload_timeout: config.upload_timeout,
        env: aws::Env::from_process(),
    }
}

/// Logs the summary line every [`SUMMARY_INTERVAL`] while something changed.
async fn log_summaries(stats: Arc<Stats>) {
    let mut last = stats.snapshot();
    loop {
        tokio::time::sleep(SUMMARY_INTERVAL).await;
        let now = stats.snapshot();
        if !now.same_events(&last) {
            tracing::info!("{}", now.summary_line());
        }
        last = now;
    }
}

/// Logs what rate-limited warnings suppressed, once their interval is over
/// ([`Stats::report_suppressed`]). Wakes only after a warning was suppressed, so an idle daemon
/// stays asleep.
async fn report_suppressed(stats: Arc<Stats>) {
    loop {
        stats.warning_suppressed().await;
        tokio::time::sleep(crate::ratelimit::WARN_INTERVAL).await;
        stats.report_suppressed(false);
    }
}

/// Builds the sinks, in the order of the config's (the buffer's lanes); for `xray`, uses the
/// AWS context and checks credentials (in the background). An OTLP sink holds documents back
/// until `shutdown`; with the viewer on, `stdout` lines end with a trace's `link` (this, then
/// the trace id). Returns them and the banner's region words.
async fn build_sinks(
    config: &Config,
    aws: Option<&aws::AwsContext>,
    shutdown: &CancellationToken,
    link: Option<String>,
) -> Result<(Vec<Destination>, String), StartupError> {
    let mut sinks: Vec<Destination> = Vec::new();
    let mut region_line = "no AWS region needed".to_owned();
    for spec in &config.sinks {
        match spec {
            SinkSpec::Xray => {
                let Some(ctx) = aws else { continue };
                region_line = format!(
                    "region {} (from {}), X-Ray endpoint {}, calls to AWS {}, EC2 instance id {}",
                    ctx.region,
                    ctx.region_source,
                    ctx.xray_endpoint,
                    ctx.outbound.description,
                    ctx.instance_id.as_deref().unwrap_or("none"),
                );
                let check = ctx.clone();
                tokio::spawn(async move { aws::check_credentials(&check).await });
                sinks.push(destination(spec, Arc::new(XraySink::new(ctx))));
                if config.otlp.to_xray == ToXray::Otlp {
                    let otlp = XrayOtlpSink::new(ctx, config.upload_timeout)?;
                    region_line.push_str(&format!(
                        ", OpenTelemetry spans unchanged to {} (X-Ray's OTLP endpoint)",
                        otlp.url()
                    ));
                    sinks.push(Destination {
                        name: xray_otlp::NAME.to_owned(),
                        sink: Arc::new(otlp),
                        pacing: XRAY_OTLP_PACING,
                    });
                }
            }
            SinkSpec::Stdout => {
                let sink = StdoutSink::with_link(link.clone());
                sinks.push(destination(spec, Arc::new(sink)));
            }
            SinkSpec::Otlp(target) => {
                let Some(settings) = &target.settings else {
                    return Err(StartupError::OtlpSink(otlp_sink::OtlpSinkError::Url {
                        url: spec.to_string(),
                        why: "the configuration left it without settings".into(),
                    }));
                };
                // Calls to an OpenTelemetry backend follow the proxy variables, as the
                // OpenTelemetry exporters do (-p is for calls to AWS).
                let outbound = aws::Outbound::from_settings(None, false, &aws::Env::from_process())
                    .map_err(|e| {
                        StartupError::OtlpSink(otlp_sink::OtlpSinkError::Client(e.to_string()))
                    })?;
                let sink = OtlpSink::new(settings, &outbound)
                    .map_err(StartupError::OtlpSink)?
                    .draining_on(shutdown.clone());
                sinks.push(destination(spec, Arc::new(sink)));
            }
            SinkSpec::File(path) => {
                let sink = FileSink::open(path)
                    .await
                    .map_err(|source| StartupError::FileSink {
                        path: path.display().to_string(),
                        source,
                    })?;
                sinks.push(destination(spec, Arc::new(sink)));
            }
        }
    }
    Ok((sinks, region_line))
}

/// How the viewer's URLs name the `-t` address: a wildcard or loopback address as the local
/// host (which the viewer lets in), another address as itself.
fn viewer_host(tcp: SocketAddr) -> String {
    match tcp.ip() {
        IpAddr::V6(ip) if ip.is_loopback() => format!("[::1]:{}", tcp.port()),
        ip if ip.is_unspecified() || ip.is_loopback() => format!("127.0.0.1:{}", tcp.port()),
        _ => tcp.to_string(),
    }
}

fn destination(spec: &SinkSpec, sink: Arc<dyn Sink>) -> Destination {
    Destination {
        name: spec.to_string(),
        sink,
        pacing: pacing(spec),
    }
}

fn human_bytes(n: usize) -> String {
    if n.is_multiple_of(1024 * 1024) {
        format!("{} MB", n / (1024 * 1024))
    } else {
        format!("{:.1} MB", n as f64 / (1024.0 * 1024.0))
    }
}

/// A daemon running inside this process: the same stages as the `xray` binary, on the caller's
/// runtime, with its counters readable directly. For tests and embedding: give it addresses
/// like `127.0.0.1:0` and read the ports the kernel chose from [`Daemon::udp`] and
/// [`Daemon::tcp`].
#[derive(Debug)]
pub struct Daemon {
    /// The UDP address it receives on.
    pub udp: SocketAddr,
    /// The TCP address of the sampling proxy and the `/daemon/` paths.
    pub tcp: SocketAddr,
    /// The stats-only address (`--stats-address`), if asked.
    pub stats_addr: Option<SocketAddr>,
    stats: Arc<Stats>,
    memory: Option<Arc<MemoryStore>>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<Snapshot, StartupError>>,
}

impl Daemon {
    /// Binds the config's addresses and starts the daemon on the current runtime. With
    /// `memory_store`, an in-memory store of at most that many bytes is one more sink
    /// ([`Daemon::memory`]).
    pub fn start(config: Config, memory_store: Option<usize>) -> Result<Daemon, StartupError> {
        let bound = bind(&config)?;
        let udp = bound.udp.local;
        let tcp = bound.tcp_local;
        let stats_addr = bound.stats.as_ref().and_then(|l| l.local_addr().ok());
        let stats = Arc::new(Stats::new());
        let memory = memory_store.map(|cap| Arc::new(MemoryStore::new(cap)));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(
            config,
            bound,
            Arc::clone(&stats),
            memory.clone(),
            shutdown.clone(),
            CancellationToken::new(),
        ));
        Ok(Daemon {
            udp,
            tcp,
            stats_addr,
            stats,
            memory,
            shutdown,
            task,
        })
    }

    /// The counters now (never torn: every identity holds).
    pub fn snapshot(&self) -> Snapshot {
        self.stats.snapshot()
    }

    /// The in-memory store, when one was asked for.
    pub fn memory(&self) -> Option<&MemoryStore> {
        self.memory.as_deref()
    }

    /// True once the daemon has stopped by itself (a startup error, say).
    pub fn has_stopped(&self) -> bool {
        self.task.is_finished()
    }

    /// Shuts the daemon down as SIGTERM does (drain included) and returns its final counters.
    pub async fn stop(self) -> Result<Snapshot, StartupError> {
        self.shutdown.cancel();
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(StartupError::Stopped(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stage_that_ends_before_shutdown_stops_the_daemon_by_name() {
        let shutdown = CancellationToken::new();
        let mut edges = JoinSet::new();
        let mut lanes = JoinSet::new();
        edges.spawn(stage(
            "the TCP listener",
            tokio::spawn(std::future::pending()),
        ));
        edges.spawn(stage("the UDP receiver", tokio::spawn(async {})));
        lanes.spawn(async {
            std::future::pending::<()>().await;
            "a lane"
        });
        let ended = first_to_end(&shutdown, &mut edges, &mut lanes).await;
        assert_eq!(ended, Some("the UDP receiver"));
        let failed = tokio::spawn(async { panic!("a bug") });
        edges.spawn(stage("the stats listener", failed));
        let ended = first_to_end(&shutdown, &mut edges, &mut lanes).await;
        assert_eq!(ended, Some("the stats listener"), "a panic counts too");
    }

    #[test]
    fn otlp_to_xray_splits_x_ray_into_a_document_lane_and_a_span_lane() {
        use clap::Parser as _;
        let lanes = |words: &[&str]| {
            let cli =
                crate::config::cli::Cli::try_parse_from(words).unwrap_or_else(|e| panic!("{e}"));
            let config = crate::config::resolve(&cli, None, crate::config::Machine::default())
                .unwrap_or_else(|e| panic!("{e}"));
            lanes_of(&config)
                .into_iter()
                .map(|(name, pacing, takes)| (name, pacing.batch_size, takes))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            lanes(&["xray"]),
            [("xray".to_owned(), 50, Takes::Everything)]
        );
        assert_eq!(
            lanes(&[
                "xray",
                "--otlp-to-xray",
                "otlp",
                "--sink",
                "stdout",
                "--sink",
                "xray"
            ]),
            [
                ("stdout".to_owned(), 50, Takes::Everything),
                ("xray".to_owned(), 50, Takes::XrayDocuments),
                ("xray-otlp".to_owned(), 1000, Takes::Spans),
            ]
        );
        assert_eq!(
            lanes(&["xray", "--otlp-to-xray", "otlp", "--sink", "stdout"]),
            [("stdout".to_owned(), 50, Takes::Everything)]
        );
    }

    #[tokio::test]
    async fn shutdown_first_is_a_clean_stop() {
        let shutdown = CancellationToken::new();
        let mut edges = JoinSet::new();
        let mut lanes = JoinSet::new();
        edges.spawn(stage(
            "the UDP receiver",
            tokio::spawn(std::future::pending()),
        ));
        shutdown.cancel();
        assert_eq!(first_to_end(&shutdown, &mut edges, &mut lanes).await, None);
        let error = StartupError::StageEnded("the UDP receiver").to_string();
        assert!(
            error.starts_with("the UDP receiver stopped unexpectedly"),
            "{error}"
        );
    }
}
