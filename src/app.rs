//! The one place that wires the stages together: binds, makes the buffer and channels, spawns
//! the stages, and drains them at shutdown.
//!
//! ```text
//! UDP socket ─▶ receiver ─▶ buffer (byte budget) ─▶ batcher ─▶ channel ─▶ upload ─▶ sinks
//! TCP socket ─▶ proxy (stats, health)                                 │
//!                         stats ◀───────────── every stage counts ────┘
//! ```
//!
//! Order at startup: bind both sockets (a port in use fails here, before anything else), start
//! receiving, then look up what may take time (region, credentials), then start uploading;
//! documents arriving meanwhile wait in the buffer.
//!
//! Shutdown: the token stops the receiver and the proxy; the buffer is closed, and the batcher
//! and uploads drain it until it is empty or the deadline passes. What is still held at the
//! deadline is counted as dropped (`shutdown`) and reported.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::aws::{self, AwsSettings};
use crate::buffer::{Buffer, FullPolicy};
use crate::config::Config;
use crate::net::{self, BindError, BoundUdp};
use crate::sink::file::FileSink;
use crate::sink::stdout::StdoutSink;
use crate::sink::xray::XraySink;
use crate::sink::{Sink, SinkSpec};
use crate::stats::{DropReason, Snapshot, Stats};
use crate::{batcher, proxy, receiver, upload};

/// The daemon's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Both sockets, bound.
#[derive(Debug)]
pub struct Bound {
    /// The UDP socket and what the kernel granted.
    pub udp: BoundUdp,
    /// The TCP listener.
    pub tcp: TcpListener,
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

/// Binds the UDP and TCP sockets. Must run inside the runtime.
pub fn bind(config: &Config) -> Result<Bound, StartupError> {
    let udp = net::bind_udp(config.udp_addr)?;
    let tcp = net::bind_tcp(config.tcp_addr)?;
    Ok(Bound { udp, tcp })
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
    let proxy = tokio::spawn(proxy::run(bound.tcp, Arc::clone(&stats), shutdown.clone()));

    // Lookups that may take time come after listening has started.
    let (sinks, region_line) = match build_sinks(&config).await {
        Ok(s) => s,
        Err(e) => {
            shutdown.cancel();
            return Err(e);
        }
    };
    let sink_names: Vec<String> = config.sinks.iter().map(ToString::to_string).collect();
    tracing::info!(
        "AWS X-Ray daemon (xray-daemon-rs) {VERSION}: receiving segments on UDP {udp_local}, \
         sampling proxy and stats on TCP {}, buffer {} ({}), kernel receive buffer {} KiB, \
         sinks: {}, {region_line}",
        tcp_local.map_or_else(|| config.tcp_addr.to_string(), |a| a.to_string()),
        human_bytes(config.buffer_bytes),
        config.buffer_source,
        bound.udp.receive_buffer / 1024,
        sink_names.join(", "),
    );

    let (batch_tx, batch_rx) = mpsc::channel(1);
    let batcher = tokio::spawn(batcher::run(Arc::clone(&buffer), batcher::LINGER, batch_tx));
    let uploads = tokio::spawn(upload::run(
        batch_rx,
        sinks,
        config.concurrency,
        Arc::clone(&stats),
    ));

    shutdown.cancelled().await;
    let _ = receiver.await;
    let _ = proxy.await;
    buffer.close();
    let at_close = stats.snapshot();
    tracing::info!(
        "Draining {} buffered and {} in-flight segment(s), for at most {:.0} s",
        at_close.buffered,
        at_close.in_flight,
        config.shutdown_timeout.as_secs_f64()
    );
    let drained = tokio::time::timeout(config.shutdown_timeout, async {
        let _ = batcher.await;
        let _ = uploads.await;
    })
    .await;
    if drained.is_err() {
        let held = stats.snapshot();
        let waiting = buffer.discard_waiting(DropReason::Shutdown);
        // In-flight uploads are abandoned with the runtime; count them here.
        stats.documents_dropped(DropReason::Shutdown, held.in_flight);
        tracing::error!(
            "Shutdown deadline of {:.0} s passed: {} segment(s) were not sent ({waiting} waiting, {} in flight)",
            config.shutdown_timeout.as_secs_f64(),
            waiting + held.in_flight,
            held.in_flight
        );
    }
    let end = stats.snapshot();
    tracing::info!(
        "Stopped. Segments received: {}, sent: {}, rejected by X-Ray: {}, dropped: {} ({})",
        end.received,
        end.sent,
        end.rejected,
        end.dropped_total(),
        end.dropped
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(end)
}

/// Builds the sinks; for `xray`, resolves the region and checks credentials (in the
/// background). Returns the sinks and the banner's region words.
async fn build_sinks(config: &Config) -> Result<(upload::Sinks, String), StartupError> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    let mut region_line = "no AWS region needed".to_owned();
    for spec in &config.sinks {
        match spec {
            SinkSpec::Xray => {
                let ctx = aws::load(&AwsSettings {
                    region: config.region.clone(),
                    endpoint: config.endpoint.clone(),
                    local_mode: config.local_mode,
                    role_arn: config.role_arn.clone(),
                })
                .await?;
                region_line = format!(
                    "region {} (from {}), X-Ray endpoint {}",
                    ctx.region,
                    ctx.region_source,
                    config
                        .endpoint
                        .clone()
                        .unwrap_or_else(|| format!("https://xray.{}.amazonaws.com", ctx.region))
                );
                let check = ctx.clone();
                tokio::spawn(async move { aws::check_credentials(&check).await });
                sinks.push(Box::new(XraySink::new(&ctx)));
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
