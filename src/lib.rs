//! xray-daemon-rs: a drop-in replacement for the AWS X-Ray daemon.
//!
//! Applications instrumented with an X-Ray SDK send each finished segment as one UDP datagram
//! (a JSON header line, a newline, the segment document). The daemon keeps each document byte
//! for byte in a memory-bounded buffer and relays them in batches to `PutTraceSegments`.
//!
//! ```text
//!            inputs                     the store                 one lane per sink
//! UDP ─▶ receiver ─▶ document::parse ─▶ buffer ─┬─▶ batcher ─▶ upload ─▶ sink::xray (PutTraceSegments)
//!                                               ├─▶ batcher ─▶ upload ─▶ sink::xray_otlp (spans as OTLP, --otlp-to-xray otlp)
//!                                               ├─▶ batcher ─▶ upload ─▶ sink::otlp (every trace to an OTLP backend, --sink otlp:URL)
//!        (Intake: received, refused,   (budget, ├─▶ batcher ─▶ upload ─▶ sink::file, sink::stdout
//!         accepted items)               memory  ├─▶ batcher ─▶ upload ─▶ sink::viewer ─▶ viewer::Store (--viewer)
//!                                       rule)   └─▶ batcher ─▶ upload ─▶ sink::memory (in-process)
//! TCP ─▶ admin (route table) ─▶ /daemon/{health,stats,metrics} │ proxy (signed, to X-Ray only)
//!                             └▶ /daemon/viewer/… ─▶ viewer (the page, the store as JSON, live events)
//!                 buffer and stages book into stats ─▶ telemetry, /daemon/stats, summary
//! ```
//!
//! Where to look:
//! - "what comes in": [`receiver`] (UDP datagrams → [`document::parse`] → [`item::Item`]s);
//!   OpenTelemetry spans through [`otlp_http`] (OTLP/HTTP, and the transport-agnostic core
//!   [`otlp_http::OtlpReceiver::take`]) and [`otlp_grpc`] (OTLP/gRPC, onto the same core);
//! - "what happens when memory is full": [`buffer`] (the store, its lanes and the memory rule);
//! - "where is a batch cut", "when does a failed sink get tried again": [`batcher`] (batch
//!   cutting, the linger timer, the retry gate and its probe);
//! - "where is a retry decided": [`upload::retry`] (pure), applied per call in [`upload`];
//! - "where do items go": [`sink`] (one file per destination);
//! - "what is counted": [`stats`] (the books and the typed snapshot), with the shared outcome
//!   names in [`outcome`];
//! - "what the daemon answers on TCP": [`admin`] (one route table per listener, behind one pure
//!   routing function); its forward route is [`proxy`] (the SDKs' sampling proxy, signed to
//!   X-Ray only); its viewer route is [`viewer`] (the trace viewer, `--viewer`);
//! - "who wires it": [`app`] (binds, makes the buffer and one lane per sink, drains at shutdown;
//!   also [`app::Daemon`], the daemon run in-process).
//!
//! Imports run one way: [`app`] imports the stages ([`receiver`], [`batcher`], [`upload`],
//! [`admin`], [`telemetry`]); stages import only leaves ([`item`], [`document`], [`buffer`],
//! [`sink`], [`stats`], [`outcome`], [`ratelimit`], [`aws`], [`config`], [`net`], [`logging`],
//! [`memory`], [`shutdown`], and [`proxy`] and [`viewer`], the handlers [`admin`] routes to); [`outcome`] imports nothing of ours; no stage imports another
//! (a lane's upload stage reports each call's end to its batcher over a channel [`app`] hands
//! to both: see [`batcher::CallOver`]). [`health`] is the `xray health` subcommand, a client of
//! the daemon's TCP edge for container health checks.
//!
//! CPU-heavy work stays off the runtime's only thread: the UDP receiver has a thread of its own,
//! and decoding, conversion and compression for the coming OpenTelemetry inputs and outputs run
//! on tokio's blocking pool (`spawn_blocking`), bounded by the number of requests admitted, so
//! health, stats and uploads keep answering during a flood.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod app;
pub mod aws;
pub mod batcher;
pub mod buffer;
pub mod config;
pub mod document;
pub mod health;
pub mod item;
pub mod logging;
pub mod memory;
pub mod net;
pub mod otlp;
pub mod otlp_grpc;
pub mod otlp_http;
pub mod outcome;
pub mod proxy;
pub mod ratelimit;
pub mod receiver;
pub mod shutdown;
pub mod sink;
pub mod stats;
pub mod telemetry;
pub mod upload;
pub mod viewer;
