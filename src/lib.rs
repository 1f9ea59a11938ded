//! xray-daemon-rs: a drop-in replacement for the AWS X-Ray daemon.
//!
//! Applications instrumented with an X-Ray SDK send each finished segment as one UDP datagram
//! (a JSON header line, a newline, the segment document). The daemon keeps each document byte
//! for byte in a memory-bounded buffer and relays them in batches to `PutTraceSegments`.
//!
//! ```text
//! UDP ─▶ receiver ─▶ segment::parse ─▶ buffer ─▶ batcher ─▶ upload ─▶ sink (xray | stdout | file)
//! TCP ─▶ admin (/daemon/stats, /daemon/metrics, /daemon/health; everything else ─▶ proxy ─▶ X-Ray)
//!                 every stage reports to stats
//! ```
//!
//! Modules: [`app`] wires the stages; [`receiver`], [`batcher`], [`upload`] and [`admin`] are
//! stages; [`admin`] is the daemon's own HTTP surface (every TCP listener, one route table
//! each) and [`proxy`] the handler of its forward route (the SDKs' sampling proxy, signed to
//! X-Ray); [`segment`], [`buffer`], [`sink`], [`stats`], [`aws`], [`config`], [`net`],
//! [`logging`] and [`shutdown`] are the leaves they share; [`telemetry`] reports the counters
//! to X-Ray (`PutTelemetryRecords`).
//! [`memory`] gives free memory back to the OS after a backlog.
//! [`health`] is the `xray health` subcommand, a client of the daemon's TCP edge for container
//! health checks.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod app;
pub mod aws;
pub mod batcher;
pub mod buffer;
pub mod config;
pub mod health;
pub mod logging;
pub mod memory;
pub mod net;
pub mod outcome;
pub mod proxy;
pub mod ratelimit;
pub mod receiver;
pub mod segment;
pub mod shutdown;
pub mod sink;
pub mod stats;
pub mod telemetry;
pub mod upload;
