//! The one place that wires the stages together: binds, makes the buffer and channels, spawns
//! the stages, and drains them at shutdown.
//!
//! ```text
//! UDP socket ─▶ receiver ─▶ buffer (byte budget) ─▶ batcher ─▶ channel ─▶ upload ─▶ sinks
//! TCP socket ─▶ proxy (stats, health; sampling calls ─▶ X-Ray)        │
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
//! telemetry sends its final record (which includes the drain) and the summary is logged.
//!
//! Also started here: the telemetry task ([`telemetry`]) when a sink sends to X-Ray and
//! telemetry is on, and the summary line every [`SUMMARY_INTERVAL`] while something changed.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::aws::{self, AwsSettings};
use crate::buffer::{Buffer, FullPolicy};
use crate::config::Config;
use crate::net::{self, BindError, BoundUdp};
use crate::sink::file::FileSink;
use crate::sink::stdout::StdoutSink;
use crate::sink::xray::XraySink;
use crate::sink::{Sink, SinkSpec};
use crate::stats::{SUMMARY_INTERVAL, Snapshot, Stats};
use crate::{batcher, proxy, receiver, telemetry, upload};

/// The daemon's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Both sockets, bound.
#[derive(Debug)]
pub struct Bound {
    /// The UDP socket and what the kernel granted.
    pub udp: BoundUdp,
    /// The TCP listener.
    pub tcp: TcpListener,
    /// The stats-only listener (`--stats-address`), if asked.
    pub stats: Option<TcpListener>,
}

/// What stops the daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A socket could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// AWS cannot be used.
    #[error(transparent)]
    Aws(#[from] aws::AwsError),
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

/// Binds the UDP and TCP sockets. Must run inside the runtime (the TCP listeners are the
/// runtime's).
pub fn bind(config: &Config) -> Result<Bound, StartupError> {
    let udp = net::bind_udp(config.udp_addr)?;
    let tcp = net::bind_tcp(config.tcp_addr, "-t/--bind-tcp")?;
    let stats = config
        .stats_addr
        .map(|addr| net::bind_tcp(addr, "--stats-address"))
        .transpose()?;
    Ok(Bound { udp, tcp, stats })
}

/// Runs the daemon until `shutdown` is cancelled and the drain is over; returns the final
/// counters.
pub async fn run(
    config: Config,
    bound: Bound,
    shutdown: CancellationToken,
) -> Result<Snapshot, StartupError> {
    let stats = Arc::new(Stats::new());
    let buffer = Buffer::new(
        config.buffer_bytes,
        batcher::MAX_BATCH_DOCUMENTS,
        FullPolicy::DropOldest,
        Arc::clone(&stats),
    );
    let udp_local = bound.udp.local;
    let tcp_local = bound.tcp.local_addr().ok();
    let receiving = receiver::run(
        bound.udp.socket,
        Arc::clone(&buffer),
        Arc::clone(&stats),
        receiver::ReceiverSettings {
            max_document: config.max_document,
            receive_buffer: bound.udp.receive_buffer,
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
    let proxy = tokio::spawn(proxy::run(
        bound.tcp,
        Arc::clone(&stats),
        proxy_settings.clone(),
        upstream_rx,
        shutdown.clone(),
    ));
    if !config.proxy_sampling_only && !config.tcp_addr.ip().is_loopback() {
        tracing::warn!(
            "The sampling proxy on TCP {} can be reached from other hosts and forwards any X-Ray \
             API call signed with this daemon's credentials, as the original daemon does; to \
             forward only the SDKs' sampling calls, add --proxy-sampling-only",
            config.tcp_addr
        );
    }
    // The stats-only address: the same edge with forwarding off for good.
    let stats_local = bound.stats.as_ref().and_then(|l| l.local_addr().ok());
    let (_stats_only_tx, stats_only_rx) = watch::channel(proxy::UpstreamState::Unavailable(
        "this is the daemon's stats address (--stats-address): it serves only /daemon/stats, \
         /daemon/metrics and /daemon/health; the sampling proxy is on the -t address"
            .into(),
    ));
    let stats_edge = bound.stats.map(|listener| {
        tokio::spawn(proxy::run(
            listener,
            Arc::clone(&stats),
            proxy::ProxySettings::default(),
            stats_only_rx,
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
    let (sinks, region_line) = match build_sinks(&config, aws.as_ref()).await {
        Ok(s) => s,
        Err(e) => {
            shutdown.cancel();
            return Err(e);
        }
    };
    let sink_names: Vec<String> = config.sinks.iter().map(ToString::to_string).collect();
    tracing::info!(
        "AWS X-Ray daemon (xray-daemon-rs) {VERSION}: receiving segments on UDP {udp_local}, \
         sampling proxy and stats on TCP {}{}, buffer {} ({}), kernel receive buffer {} KiB, \
         sinks: {}, {region_line}",
        tcp_local.map_or_else(|| config.tcp_addr.to_string(), |a| a.to_string()),
        stats_local.map_or_else(String::new, |a| format!(", stats also on TCP {a}")),
        human_bytes(config.buffer_bytes),
        config.buffer_source,
        bound.udp.receive_buffer / 1024,
        sink_names.join(", "),
    );

    let (batch_tx, batch_rx) = mpsc::channel(1);
    let abandon = CancellationToken::new();
    let mut batcher = tokio::spawn(batcher::run(Arc::clone(&buffer), batcher::LINGER, batch_tx));
    let mut uploads = tokio::spawn(upload::run(
        batch_rx,
        sinks,
        upload::UploadSettings {
            concurrency: config.concurrency,
            retry: config.retry,
        },
        Arc::clone(&stats),
        abandon.clone(),
    ));
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

    shutdown.cancelled().await;
    let _ = receiver.await;
    let _ = proxy.await;
    if let Some(edge) = stats_edge {
        let _ = edge.await;
    }
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
        let _ = (&mut batcher).await;
        let _ = (&mut uploads).await;
    })
    .await;
    if drained.is_err() {
        let before = stats.snapshot();
        let waiting = buffer.abandon();
        abandon.cancel();
        // Both end promptly now: the buffer hands out nothing, calls under way are cut off,
        // and every batch they held counts itself as dropped.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            let _ = (&mut batcher).await;
            let _ = (&mut uploads).await;
        })
        .await;
        let after = stats.snapshot();
        let lost = after.dropped.get("shutdown").copied().unwrap_or(0)
            - before.dropped.get("shutdown").copied().unwrap_or(0);
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
    let end = stats.snapshot();
    tracing::info!("Stopped. {}", end.summary_line());
    Ok(end)
}

fn aws_settings(config: &Config) -> AwsSettings {
    AwsSettings {
        region: config.region.clone(),
        endpoint: config.endpoint.clone(),
        local_mode: config.local_mode,
        role_arn: config.role_arn.clone(),
        proxy_address: config.proxy_address.clone(),
        no_verify_ssl: config.no_verify_ssl,
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

/// Builds the sinks; for `xray`, uses the AWS context and checks credentials (in the
/// background). Returns the sinks and the banner's region words.
async fn build_sinks(
    config: &Config,
    aws: Option<&aws::AwsContext>,
) -> Result<(upload::Sinks, String), StartupError> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
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
                sinks.push(Box::new(XraySink::new(ctx)));
            }
            SinkSpec::Stdout => sinks.push(Box::new(StdoutSink)),
            SinkSpec::File(path) => {
                let sink = FileSink::open(path)
                    .await
                    .map_err(|source| StartupError::FileSink {
                        path: path.display().to_string(),
                        source,
                    })?;
                sinks.push(Box::new(sink));
            }
        }
    }
    Ok((sinks.into(), region_line))
}

fn human_bytes(n: usize) -> String {
    if n.is_multiple_of(1024 * 1024) {
        format!("{} MB", n / (1024 * 1024))
    } else {
        format!("{:.1} MB", n as f64 / (1024.0 * 1024.0))
    }
}
