//! Test harness for the `xray` daemon: processes, peers and probes.
//!
//! - [`paths`]: the repository, `.venv/bin/NAME` ([`venv_bin`]), the `xray` binary, peer scripts.
//! - [`ports`]: [`free_port`], free for both UDP and TCP on 127.0.0.1.
//! - [`wait`]: [`Deadline`] and [`wait::until`], the only way tests wait.
//! - [`http`]: a tiny HTTP/1.1 client (hyper) for the stats endpoint and moto's admin API.
//! - [`moto`]: [`Moto`], a `moto_server` child playing the X-Ray API.
//! - [`daemon`]: [`Daemon`] and [`DaemonBuilder`], the `xray` binary under a pinned AWS
//!   environment, with its stdout/stderr captured; its `/daemon/stats` typed.
//! - [`stats`]: `/daemon/stats` parsed into the daemon's typed [`Snapshot`]
//!   ([`stats::parse`]), and [`assert_balanced`], the one check of its accounting identities.
//! - [`fault`]: [`FaultInjector`], an HTTP/1.1 server between the daemon and moto that records
//!   every request and can answer with scripted faults.
//! - [`flask`]: runs `tests/peers/flask_app.py` (Flask + the Python X-Ray SDK).
//! - [`segments`]: trace/segment ids, minimal segment documents, datagram framing.
//! - [`proc`]: [`peak_rss_kib`], [`status_kib`], output tails.
//! - [`udp_tap`]: [`UdpTap`], a recording UDP relay (what a client really sent).
//! - [`sampling`]: the sampling fault injector ([`sampling_injector`]: a [`FaultInjector`] that
//!   answers GetSamplingRules/SamplingTargets, which moto lacks), SigV4 re-verification of
//!   recorded requests, and `tests/peers/flask_sampling.py` (the Python SDK's centralized
//!   sampling).
//! - [`metadata`]: [`FakeMetadata`], IMDSv2 and the ECS task metadata endpoint on loopback
//!   (or a silent one that never answers).
//! - [`outbound_proxy`]: [`OutboundProxy`], an HTTP forward proxy (absolute-form and CONNECT)
//!   that records what goes through it.
//! - [`tls_front`]: HTTPS with a throwaway self-signed certificate in front of an injector.
//! - [`mlflow`]: the MLflow tracking server (a real OTLP/HTTP backend), once per test run.
//! - [`otlp`]: a daemon whose buffer is held past the OTLP receivers' high-water mark.
//!
//! Children (moto, the daemon) are killed when their handle drops; when that happens during a
//! panic, the tail of their output is printed so a failed test explains itself.

// Each test module uses only part of the harness.
#![allow(dead_code, unused_imports, reason = "shared by many test modules")]

pub mod daemon;
pub mod fault;
pub mod flask;
pub mod http;
pub mod mlflow;
pub mod moto;
pub mod otlp;
pub mod paths;
pub mod ports;
pub mod proc;
pub mod segments;
pub mod stats;
pub mod udp_tap;
pub mod wait;
// proxy and AWS environment tests
pub mod metadata;
pub mod outbound_proxy;
pub mod sampling;
pub mod tls_front;

pub use daemon::{Daemon, DaemonBuilder, Finished};
pub use fault::{Fault, FaultInjector, Recorded, Step};
pub use flask::{FlaskRequest, FlaskRun, run_flask_peer};
pub use metadata::FakeMetadata;
pub use moto::{Moto, TEST_REGION};
pub use outbound_proxy::OutboundProxy;
pub use paths::{peer_script, repo_root, venv_bin, xray_bin};
pub use ports::{free_addr, free_port};
pub use proc::{peak_rss_kib, status_kib};
pub use sampling::sampling_injector;
pub use segments::{XRAY_HEADER, datagram, new_segment_id, new_trace_id, segment_json};
pub use stats::{DropReason, ErrorKind, Snapshot, assert_balanced, backend_errors};
pub use udp_tap::UdpTap;
pub use wait::Deadline;
