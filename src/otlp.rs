//! OpenTelemetry in: OTLP trace requests decoded, taken apart into spans, and converted to what
//! the daemon's sinks send. Pure and unit-tested: no sockets, no tasks, no clocks.
//!
//! ```text
//! POST /v1/traces body ─▶ decode ─▶ ExportTraceServiceRequest ─▶ span::split ─▶ SpanRecord…  (the buffer holds these)
//!   (Content-Type,          (415/413/400 + google.rpc.Status)      (refusals → partial_success)
//!    Content-Encoding)                                              │
//!                                  to_xray::convert ◀───────────────┤  X-Ray sink: segment documents
//!                                  render::stdout_line ◀────────────┤  stdout sink: one line per span
//!                                  render::otlp_json_line ◀─────────┤  file sink: one-span OTLP JSON
//!                                  export::plan, request_of ◀───────┘  X-Ray's OTLP endpoint (--otlp-to-xray otlp)
//! ```
//!
//! - [`proto`]: the OTLP trace messages as hand-written prost structs (why: see its docs);
//! - [`json`]: OTLP JSON's rules (hex ids, integer enums, 64-bit integers as strings, …);
//! - [`decode`]: body + headers → request, or the error with its HTTP status and reply body;
//!   the success reply with `partial_success`;
//! - [`span`]: [`span::SpanRecord`] (one span with its shared resource and scope), [`span::split`]
//!   and the id checks;
//! - [`to_xray`]: one span → one X-Ray segment document, after the collector's exporter;
//! - [`from_xray`]: the other way, one X-Ray segment document (with its subsegments) → spans,
//!   after the collector's receiver, keeping what it loses (for an OTLP destination);
//! - [`render`]: the local sinks' renderings of a span;
//! - [`export`]: spans out as OTLP requests within X-Ray's OTLP endpoint limits (sizes, counts,
//!   the 24-hour spread, the 14-days-back and 2-hours-ahead window);
//! - [`distro`]: the AWS distros' UDP form (`T1S`, `T1`) read as spans for the local sinks.
//!
//! A leaf: it imports only [`crate::document`] (to hand out [`crate::document::Document`]s).
//! Decoding and conversion are CPU work for the blocking pool, never for the runtime's thread.

pub mod decode;
pub mod distro;
pub mod export;
pub mod from_xray;
pub mod json;
pub mod proto;
pub mod render;
pub mod span;
pub mod to_xray;
