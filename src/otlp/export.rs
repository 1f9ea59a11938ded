//! Spans out as OTLP, for X-Ray's OTLP endpoint (`--otlp-to-xray otlp`): which spans it would
//! refuse, how a batch is cut into requests within its limits, and the request each one carries.
//!
//! In: span records (as the buffer holds them, [`SpanRecord`]), the time now, and the
//! endpoint's [`Limits`]. Out: a [`Plan`] (the spans not to send, with why, and the spans of
//! each request) and, per request, the [`ExportTraceServiceRequest`] holding those spans
//! unchanged ([`request_of`]) with their resource and scope. Pure: no clock, no I/O; the
//! X-Ray OTLP sink (`crate::sink::xray_otlp`) encodes, compresses, signs and sends.
//!
//! The limits are X-Ray's (the CloudWatch "OTLP Endpoints" page, [`Limits::XRAY`]): at most
//! 10,000 spans and 5 MB uncompressed a request, at most 24 hours between the spans of one
//! request, at most 200 KB a span, and no span created more than 14 days ago or more than two
//! hours ahead (one such span makes the endpoint refuse the whole request, so it is taken out
//! here and counted on its own).
//!
//! - Time: a span's "created" time is its `start_time_unix_nano`. The window is checked
//!   against the time the batch is planned; the 24-hour rule against the other spans' start
//!   times.
//! - Sizes: a span's size is its protobuf encoding (what the request carries for it). A
//!   request's size is bounded from above while it is planned: every span, resource and scope
//!   with its field key and the longest length prefix it could need, so the encoded request
//!   never exceeds the planned size (checked by the tests).
//! - Cutting: the spans to send are ordered by start time (stable, so spans that started
//!   together stay in arrival order) and taken greedily; a request ends when the next span would
//!   break a limit. Ordering first makes the 24-hour rule cut as few requests as can be.
//! - Grouping: in a request, spans that share a resource (the same [`SpanRecord::resource`])
//!   go under one `ResourceSpans`, and under it, those that share a scope under one
//!   `ScopeSpans`; first seen, first written. Spans are never changed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;

use super::proto::{ExportTraceServiceRequest, ResourceSpans, ScopeSpans};
use super::span::{SpanRecord, SpanResource, SpanScope};

/// The most a field key plus a length prefix take in protobuf (a key of one byte, a length of
/// up to five).
const FRAME: usize = 6;

/// What one request to the endpoint may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most spans in one request.
    pub max_spans: usize,
    /// Most bytes of one request's protobuf, before compression.
    pub max_request_bytes: usize,
    /// Most bytes of one span's protobuf.
    pub max_span_bytes: usize,
    /// Most time between the earliest and the latest start of the spans of one request.
    pub max_spread: Duration,
    /// How long ago a span may have started at most.
    pub max_age: Duration,
    /// How far ahead of now a span may start at most.
    pub max_ahead: Duration,
}

impl Limits {
    /// X-Ray's OTLP endpoint: 10,000 spans and 5 MB a request (read as 5,000,000 bytes, the
    /// smaller reading), 24 hours between spans, 200 KB a span (200,000 bytes), 14 days back,
    /// 2 hours ahead.
    pub const XRAY: Limits = Limits {
        max_spans: 10_000,
        max_request_bytes: 5_000_000,
        max_span_bytes: 200_000,
        max_spread: Duration::from_secs(86_400),
        max_age: Duration::from_secs(14 * 86_400),
        max_ahead: Duration::from_secs(2 * 3_600),
    };

    /// Any other OTLP backend (`--sink otlp`): 10,000 spans and 4 MB a request (under the
    /// 4 MiB message cap gRPC-based collectors keep), a span as large as a request, and no time
    /// window (a backend keeps what it is given).
    pub const BACKEND: Limits = Limits {
        max_spans: 10_000,
        max_request_bytes: 4_000_000,
        max_span_bytes: 4_000_000,
        max_spread: Duration::MAX,
        max_age: Duration::MAX,
        max_ahead: Duration::MAX,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::XRAY
    }
}

/// Why a span is not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsendable {
    /// Its protobuf is over [`Limits::max_span_bytes`] (or, with its resource and scope, over a
    /// whole request's).
    TooLarge,
    /// It started more than [`Limits::max_age`] ago.
    TooOld,
    /// It starts more than [`Limits::max_ahead`] from now.
    TooFarAhead,
}

/// How a batch of spans goes out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The spans not to send (indices into the batch), with why; in batch order.
    pub unsendable: Vec<(usize, Unsendable)>,
    /// The requests, each the indices of its spans (by start time); every other span is in
    /// exactly one of them.
    pub requests: Vec<Vec<usize>>,
    /// Each request's planned size in bytes, an upper bound of its encoding.
    pub planned_bytes: Vec<usize>,
}

/// Whether a span that started at `start` (ns since the epoch) may be sent at `now` (same unit).
pub fn time_window(start: u64, now: u64, limits: &Limits) -> Result<(), Unsendable> {
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    if start < now.saturating_sub(nanos(limits.max_age)) {
        Err(Unsendable::TooOld)
    } else if start > now.saturating_add(nanos(limits.max_ahead)) {
        Err(Unsendable::TooFarAhead)
    } else {
        Ok(())
    }
}

/// Plans a batch: which spans are not sent, and which go together in each request. `now` is
/// the time in nanoseconds since the Unix epoch.
pub fn plan(spans: &[&SpanRecord], now: u64, limits: &Limits) -> Plan {
    let mut plan = Plan::default();
    let mut sendable: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
    for (i, record) in spans.iter().enumerate() {
        let size = record.encoded_len();
        let alone = size + FRAME + shared_bytes(record, true);
        if size > limits.max_span_bytes || alone > limits.max_request_bytes {
            plan.unsendable.push((i, Unsendable::TooLarge));
        } else if let Err(why) = time_window(record.span.start_time_unix_nano, now, limits) {
            plan.unsendable.push((i, why));
        } else {
            sendable.push((i, size));
        }
    }
    sendable.sort_by_key(|&(i, _)| spans[i].span.start_time_unix_nano);
    let spread = u64::try_from(limits.max_spread.as_nanos()).unwrap_or(u64::MAX);
    let mut current = Request::default();
    for (i, size) in sendable {
        let record = spans[i];
        let start = record.span.start_time_unix_nano;
        let added = current.added_bytes(record, size);
        let fits = current.spans.len() < limits.max_spans.max(1)
            && current.bytes + added <= limits.max_request_bytes
            && current
                .first_start
                .is_none_or(|first| start - first <= spread);
        if !fits {
            let full = std::mem::take(&mut current);
            plan.planned_bytes.push(full.bytes);
            plan.requests.push(full.spans);
        }
        let added = current.added_bytes(record, size);
        current.add(i, record, added);
    }
    if !current.spans.is_empty() {
        plan.planned_bytes.push(current.bytes);
        plan.requests.push(current.spans);
    }
    plan
}

/// A request being planned.
#[derive(Debug, Default)]
struct Request {
    spans: Vec<usize>,
    bytes: usize,
    first_start: Option<u64>,
    /// Resources already in it, by address.
    resources: HashSet<*const SpanResource>,
    /// Scopes already in it, by the addresses of their resource and scope.
    scopes: HashSet<(*const SpanResource, *const SpanScope)>,
}

impl Request {
    /// Bytes `record` (whose span encodes to `size`) adds to the request, at most.
    fn added_bytes(&self, record: &SpanRecord, size: usize) -> usize {
        let resource = Arc::as_ptr(&record.resource);
        let scope = Arc::as_ptr(&record.scope);
        let mut added = size + FRAME;
        if !self.resources.contains(&resource) {
            added += shared_bytes(record, true);
        } else if !self.scopes.contains(&(resource, scope)) {
            added += shared_bytes(record, false);
        }
        added
    }

    fn add(&mut self, i: usize, record: &SpanRecord, added: usize) {
        let resource = Arc::as_ptr(&record.resource);
        self.resources.insert(resource);
        self.scopes.insert((resource, Arc::as_ptr(&record.scope)));
        self.spans.push(i);
        self.bytes += added;
        self.first_start
            .get_or_insert(record.span.start_time_unix_nano);
    }
}

/// The bytes a span's scope (and with `with_resource`, its resource) add to a request, at most:
/// the `ScopeSpans` with its scope and schema URL, and the `ResourceSpans` with its resource
/// and schema URL, each with its key and longest length prefix.
fn shared_bytes(record: &SpanRecord, with_resource: bool) -> usize {
    let scope = FRAME
        + record
            .scope
            .scope
            .as_ref()
            .map_or(0, |s| s.encoded_len() + FRAME)
        + record.scope.schema_url.len()
        + FRAME;
    let resource = if with_resource {
        FRAME
            + record.resource.resource.encoded_len()
            + FRAME
            + record.resource.schema_url.len()
            + FRAME
    } else {
        0
    };
    scope + resource
}

/// The request carrying `spans`, unchanged, under their resources and scopes (see the module
/// docs for the grouping).
pub fn request_of(spans: &[&SpanRecord]) -> ExportTraceServiceRequest {
    let mut resource_spans: Vec<ResourceSpans> = Vec::new();
    let mut resource_at: HashMap<*const SpanResource, usize> = HashMap::new();
    let mut scope_at: HashMap<(*const SpanResource, *const SpanScope), usize> = HashMap::new();
    for record in spans {
        let resource = Arc::as_ptr(&record.resource);
        let r = *resource_at.entry(resource).or_insert_with(|| {
            resource_spans.push(ResourceSpans {
                resource: Some(record.resource.resource.clone()),
                scope_spans: Vec::new(),
                schema_url: record.resource.schema_url.clone(),
            });
            resource_spans.len() - 1
        });
        let scopes = &mut resource_spans[r].scope_spans;
        let s = *scope_at
            .entry((resource, Arc::as_ptr(&record.scope)))
            .or_insert_with(|| {
                scopes.push(ScopeSpans {
                    scope: record.scope.scope.clone(),
                    spans: Vec::new(),
                    schema_url: record.scope.schema_url.clone(),
                });
                scopes.len() - 1
            });
        scopes[s].spans.push(record.span.clone());
    }
    ExportTraceServiceRequest { resource_spans }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::proto::{InstrumentationScope, KeyValue, Resource, Span};

    const NOW: u64 = 1_700_000_000 * 1_000_000_000;
    const DAY_NANOS: u64 = 86_400 * 1_000_000_000;
    const HOUR_NANOS: u64 = 3_600 * 1_000_000_000;

    fn resource(service: &str) -> Arc<SpanResource> {
        Arc::new(SpanResource {
            resource: Resource {
                attributes: vec![KeyValue::string("service.name", service)],
                dropped_attributes_count: 0,
            },
            schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
        })
    }

    fn scope(name: &str) -> Arc<SpanScope> {
        Arc::new(SpanScope {
            scope: Some(InstrumentationScope {
                name: name.into(),
                ..InstrumentationScope::default()
            }),
            schema_url: String::new(),
        })
    }

    /// A span `n` that started `start` ns after the epoch, with `pad` bytes of attribute.
    fn span(
        r: &Arc<SpanResource>,
        s: &Arc<SpanScope>,
        n: u32,
        start: u64,
        pad: usize,
    ) -> SpanRecord {
        let mut id = [0u8; 8];
        id[4..].copy_from_slice(&n.to_be_bytes());
        id[0] = 1;
        SpanRecord::new(
            Arc::clone(r),
            Arc::clone(s),
            Span {
                trace_id: vec![7; 16],
                span_id: id.to_vec(),
                name: format!("span {n}"),
                start_time_unix_nano: start,
                end_time_unix_nano: start + 1_000,
                attributes: if pad > 0 {
                    vec![KeyValue::string("pad", "x".repeat(pad))]
                } else {
                    Vec::new()
                },
                ..Span::default()
            },
        )
    }

    /// Every span once, each request within the limits, and its encoding within its plan.
    fn check(records: &[SpanRecord], plan: &Plan, limits: &Limits) {
        let refs: Vec<&SpanRecord> = records.iter().collect();
        let mut seen: Vec<usize> = plan.unsendable.iter().map(|(i, _)| *i).collect();
        for (request, planned) in plan.requests.iter().zip(&plan.planned_bytes) {
            assert!(!request.is_empty() && request.len() <= limits.max_spans);
            let spans: Vec<&SpanRecord> = request.iter().map(|&i| refs[i]).collect();
            let encoded = request_of(&spans).encoded_len();
            assert!(encoded <= *planned, "{encoded} > planned {planned}");
            assert!(*planned <= limits.max_request_bytes);
            let starts = spans.iter().map(|s| s.span.start_time_unix_nano);
            let spread = starts.clone().max().unwrap_or(0) - starts.min().unwrap_or(0);
            assert!(u128::from(spread) <= limits.max_spread.as_nanos());
            seen.extend(request);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..records.len()).collect::<Vec<_>>());
    }

    #[test]
    fn the_time_window_is_fourteen_days_back_and_two_hours_ahead() {
        let l = Limits::XRAY;
        let ok = |start| time_window(start, NOW, &l);
        assert_eq!(ok(NOW), Ok(()));
        assert_eq!(ok(NOW - 14 * DAY_NANOS), Ok(()), "the edge is in");
        assert_eq!(ok(NOW - 14 * DAY_NANOS - 1), Err(Unsendable::TooOld));
        assert_eq!(ok(0), Err(Unsendable::TooOld), "no start time");
        assert_eq!(ok(NOW + 2 * HOUR_NANOS), Ok(()));
        assert_eq!(ok(NOW + 2 * HOUR_NANOS + 1), Err(Unsendable::TooFarAhead));
        assert_eq!(ok(u64::MAX), Err(Unsendable::TooFarAhead));
        assert_eq!(
            time_window(5, 10, &l),
            Ok(()),
            "now before 14 days after the epoch"
        );
    }

    #[test]
    fn spans_outside_the_window_or_over_200_kb_are_not_sent() {
        let (r, s) = (resource("api"), scope("flask"));
        let records = [
            span(&r, &s, 1, NOW, 0),
            span(&r, &s, 2, NOW - 15 * DAY_NANOS, 0),
            span(&r, &s, 3, NOW + 3 * HOUR_NANOS, 0),
            span(&r, &s, 4, NOW, 200_000),
            span(&r, &s, 5, NOW, 199_000),
        ];
        let refs: Vec<&SpanRecord> = records.iter().collect();
        let plan = plan(&refs, NOW, &Limits::XRAY);
        assert_eq!(
            plan.unsendable,
            [
                (1, Unsendable::TooOld),
                (2, Unsendable::TooFarAhead),
                (3, Unsendable::TooLarge)
            ]
        );
        assert_eq!(plan.requests, [vec![0, 4]]);
        check(&records, &plan, &Limits::XRAY);
    }

    #[test]
    fn a_request_holds_at_most_10000_spans() {
        let (r, s) = (resource("api"), scope("flask"));
        let records: Vec<SpanRecord> = (0..25_001).map(|n| span(&r, &s, n, NOW, 0)).collect();
        let refs: Vec<&SpanRecord> = records.iter().collect();
        let plan = plan(&refs, NOW, &Limits::XRAY);
        let sizes: Vec<usize> = plan.requests.iter().map(Vec::len).collect();
        assert_eq!(sizes, [10_000, 10_000, 5_001]);
        check(&records, &plan, &Limits::XRAY);
    }

    #[test]
    fn a_request_holds_at_most_5_mb() {
        let (r, s) = (resource("api"), scope("flask"));
        // 60 spans of about 190 KB: 26 fit in 5,000,000 bytes.
        let records: Vec<SpanRecord> = (0..60).map(|n| span(&r, &s, n, NOW, 190_000)).collect();
        let refs: Vec<&SpanRecord> = records.iter().collect();
        let plan = plan(&refs, NOW, &Limits::XRAY);
        let sizes: Vec<usize> = plan.requests.iter().map(Vec::len).collect();
        assert_eq!(sizes, [26, 26, 8]);
        assert!(
            plan.planned_bytes[0] > 4_900_000,
            "{:?}",
            plan.planned_bytes
        );
        check(&records, &plan, &Limits::XRAY);
    }

    #[test]
    fn spans_more_than_24_hours_apart_go_in_different_requests() {
        let (r, s) = (resource("api"), scope("flask"));
        let hours = [0u64, 30, 1, 25, 2, 49, 24];
        let records: Vec<SpanRecord> = hours
            .iter()
            .zip(0..)
            .map(|(h, n)| span(&r, &s, n, NOW - 13 * DAY_NANOS + h * HOUR_NANOS, 0))
            .collect();
        let refs: Vec<&SpanRecord> = records.iter().collect();
        let plan = plan(&refs, NOW, &Limits::XRAY);
        // Sorted by start: 0 1 2 24 | 25 30 49 — the edge (24 h) is in.
        assert_eq!(plan.requests, [vec![0, 2, 4, 6], vec![3, 1, 5]]);
        check(&records, &plan, &Limits::XRAY);
    }

    #[test]
    fn small_limits_cut_by_every_rule_and_the_plan_bounds_the_encoding() {
        let limits = Limits {
            max_spans: 7,
            max_request_bytes: 4_000,
            max_span_bytes: 1_000,
            max_spread: Duration::from_secs(60),
            ..Limits::XRAY
        };
        let resources = [resource("a"), resource("b"), resource("c")];
        let scopes = [scope("x"), scope("y")];
        let records: Vec<SpanRecord> = (0..200u32)
            .map(|n| {
                let (r, s) = (&resources[n as usize % 3], &scopes[n as usize % 2]);
                let start = NOW - u64::from(n % 17) * 10_000_000_000;
                span(r, s, n, start, (n as usize * 37) % 1_100)
            })
            .collect();
        let refs: Vec<&SpanRecord> = records.iter().collect();
        let plan = plan(&refs, NOW, &limits);
        assert!(
            plan.unsendable
                .iter()
                .all(|(_, w)| *w == Unsendable::TooLarge)
        );
        assert!(!plan.unsendable.is_empty() && plan.requests.len() > 10);
        check(&records, &plan, &limits);
    }

    #[test]
    fn a_request_keeps_spans_unchanged_under_their_resource_and_scope() {
        let (api, db) = (resource("api"), resource("db"));
        let (flask, requests) = (scope("flask"), scope("requests"));
        let records = [
            span(&api, &flask, 1, NOW, 0),
            span(&db, &flask, 2, NOW, 0),
            span(&api, &requests, 3, NOW, 10),
            span(&api, &flask, 4, NOW, 0),
        ];
        let refs: Vec<&SpanRecord> = records.iter().collect();
        let request = request_of(&refs);
        let shape: Vec<(String, Vec<Vec<String>>)> = request
            .resource_spans
            .iter()
            .map(|rs| {
                let service = rs
                    .resource
                    .as_ref()
                    .and_then(|r| r.attributes[0].value.as_ref())
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned();
                let scopes = rs
                    .scope_spans
                    .iter()
                    .map(|ss| ss.spans.iter().map(|s| s.name.clone()).collect())
                    .collect();
                (service, scopes)
            })
            .collect();
        assert_eq!(
            shape,
            [
                (
                    "api".to_owned(),
                    vec![
                        vec!["span 1".to_owned(), "span 4".to_owned()],
                        vec!["span 3".to_owned()]
                    ]
                ),
                ("db".to_owned(), vec![vec!["span 2".to_owned()]]),
            ]
        );
        assert_eq!(request.resource_spans[0].schema_url, api.schema_url);
        // Decoded again, each span is the one it was made from.
        let decoded = ExportTraceServiceRequest::decode(request.encode_to_vec().as_slice())
            .unwrap_or_default();
        let (spans, _) = crate::otlp::span::split(decoded);
        assert_eq!(spans.len(), 4);
        for s in &spans {
            let original = records.iter().find(|r| r.span.span_id == s.span.span_id);
            assert_eq!(original.map(|r| &r.span), Some(&s.span));
            assert_eq!(original.map(|r| &r.scope.scope), Some(&s.scope.scope));
        }
    }
}
