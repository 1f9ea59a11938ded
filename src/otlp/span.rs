//! The span model the daemon holds: a [`SpanRecord`] is one span with the resource and the
//! instrumentation scope it came with, ready for the buffer and for every sink.
//!
//! Data comes from a decoded request ([`super::decode`]) through [`split`], which takes the
//! request apart and refuses the spans whose ids are unusable ([`Refusals`], reported to the
//! sender as `partial_success`). What comes out goes to the buffer as items; the sinks read it
//! through [`super::to_xray`] (X-Ray documents) and [`super::render`] (a line on stdout, an
//! OTLP JSON line in a file, and later OTLP to another backend).
//!
//! Sharing: the spans of one `ResourceSpans` share one [`SpanResource`], and those of one
//! `ScopeSpans` one [`SpanScope`], through an [`Arc`]: a request of 500 spans from one process
//! holds its resource once. The span itself is owned, so a sink can drop it on its own.
//!
//! Validation (the OTLP rules for ids): a trace id must be 16 bytes and a span id 8, neither all
//! zero; a parent span id must be empty or 8 bytes. An 8-byte all-zero parent id is read as "no
//! parent" (some exporters write one for a root), not refused.

use std::sync::Arc;

use prost::Message as _;

use super::proto::{
    ExportTraceServiceRequest, InstrumentationScope, KeyValue, Resource, Span, SpanKind, StatusCode,
};

/// The resource a span came with (shared by the spans of one `ResourceSpans`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpanResource {
    /// The resource (`service.name`, host, cloud, SDK attributes).
    pub resource: Resource,
    /// The `ResourceSpans.schema_url`.
    pub schema_url: String,
}

/// The instrumentation scope a span came with (shared by the spans of one `ScopeSpans`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpanScope {
    /// The scope (instrumentation library name and version).
    pub scope: Option<InstrumentationScope>,
    /// The `ScopeSpans.schema_url`.
    pub schema_url: String,
}

/// One valid span with its resource and scope.
#[derive(Clone, Debug)]
pub struct SpanRecord {
    /// The resource, shared with the other spans of its `ResourceSpans`.
    pub resource: Arc<SpanResource>,
    /// The scope, shared with the other spans of its `ScopeSpans`.
    pub scope: Arc<SpanScope>,
    /// The span. Its ids were checked by [`split`]: 16 and 8 bytes, not all zero, and a parent
    /// id that is empty or 8 bytes, not all zero.
    pub span: Span,
    /// Bytes charged against the memory budget (see [`SpanRecord::cost`]).
    cost: usize,
}

/// Spans [`split`] refused, by reason. Their total goes back to the sender as
/// `partial_success.rejected_spans`, with [`Refusals::message`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refusals {
    /// Trace id not 16 bytes, or all zero.
    pub bad_trace_id: u64,
    /// Span id not 8 bytes, or all zero.
    pub bad_span_id: u64,
    /// Parent span id neither empty nor 8 bytes.
    pub bad_parent_id: u64,
}

impl Refusals {
    /// Spans refused in all.
    pub fn total(&self) -> u64 {
        self.bad_trace_id + self.bad_span_id + self.bad_parent_id
    }

    /// True when nothing was refused.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    /// The sender-facing message (empty when nothing was refused): what was wrong, how often,
    /// and the rule.
    pub fn message(&self) -> String {
        if self.is_empty() {
            return String::new();
        }
        let mut parts = Vec::new();
        for (n, what) in [
            (
                self.bad_trace_id,
                "a trace id that is not 16 bytes or is all zero",
            ),
            (
                self.bad_span_id,
                "a span id that is not 8 bytes or is all zero",
            ),
            (
                self.bad_parent_id,
                "a parent span id that is neither empty nor 8 bytes",
            ),
        ] {
            if n > 0 {
                parts.push(format!("{n} with {what}"));
            }
        }
        format!(
            "{} span{} refused: {}. OTLP ids are 16 bytes (trace) and 8 bytes (span), not all \
             zero; in OTLP JSON, 32 and 16 hex digits",
            self.total(),
            if self.total() == 1 { "" } else { "s" },
            parts.join(", ")
        )
    }
}

/// Takes a request apart into spans, each with its resource and scope, refusing the spans whose
/// ids are unusable. Spans keep the request's order.
pub fn split(request: ExportTraceServiceRequest) -> (Vec<SpanRecord>, Refusals) {
    let mut records = Vec::new();
    let mut refusals = Refusals::default();
    for resource_spans in request.resource_spans {
        let resource = Arc::new(SpanResource {
            resource: resource_spans.resource.unwrap_or_default(),
            schema_url: resource_spans.schema_url,
        });
        let first_of_resource = records.len();
        for scope_spans in resource_spans.scope_spans {
            let scope = Arc::new(SpanScope {
                scope: scope_spans.scope,
                schema_url: scope_spans.schema_url,
            });
            let first_of_scope = records.len();
            for mut span in scope_spans.spans {
                match check_ids(&span) {
                    Ok(()) => {}
                    Err(IdProblem::Trace) => {
                        refusals.bad_trace_id += 1;
                        continue;
                    }
                    Err(IdProblem::Span) => {
                        refusals.bad_span_id += 1;
                        continue;
                    }
                    Err(IdProblem::Parent) => {
                        refusals.bad_parent_id += 1;
                        continue;
                    }
                }
                if is_all_zero(&span.parent_span_id) {
                    span.parent_span_id.clear();
                }
                let cost = heap_size_of_span(&span) + PER_SPAN_OVERHEAD;
                records.push(SpanRecord {
                    resource: Arc::clone(&resource),
                    scope: Arc::clone(&scope),
                    span,
                    cost,
                });
            }
            share_cost(
                &mut records[first_of_scope..],
                heap_size_of_scope(&scope) + std::mem::size_of::<SpanScope>(),
            );
        }
        share_cost(
            &mut records[first_of_resource..],
            heap_size_of_kvs(&resource.resource.attributes)
                + resource.schema_url.capacity()
                + std::mem::size_of::<SpanResource>(),
        );
    }
    (records, refusals)
}

/// What is wrong with a span's ids.
enum IdProblem {
    Trace,
    Span,
    Parent,
}

fn check_ids(span: &Span) -> Result<(), IdProblem> {
    if span.trace_id.len() != 16 || is_all_zero(&span.trace_id) {
        return Err(IdProblem::Trace);
    }
    if span.span_id.len() != 8 || is_all_zero(&span.span_id) {
        return Err(IdProblem::Span);
    }
    if !span.parent_span_id.is_empty() && span.parent_span_id.len() != 8 {
        return Err(IdProblem::Parent);
    }
    Ok(())
}

fn is_all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| *b == 0)
}

/// Bytes charged per span on top of its heap: the record itself and its slot in the buffer.
pub const PER_SPAN_OVERHEAD: usize = std::mem::size_of::<SpanRecord>() + 144;

/// Spreads `shared` bytes (a resource's or scope's) over the records that share it, so the
/// budget counts it once in all; the first records take the remainder.
fn share_cost(records: &mut [SpanRecord], shared: usize) {
    let Some(n) = std::num::NonZeroUsize::new(records.len()) else {
        return;
    };
    let (each, rest) = (shared / n, shared % n);
    for (i, r) in records.iter_mut().enumerate() {
        r.cost += each + usize::from(i < rest);
    }
}

impl SpanRecord {
    /// A record of `span` with its resource and scope (for tests and the distros' UDP spans,
    /// which arrive one at a time). The ids are not checked: use [`split`] for input.
    pub fn new(resource: Arc<SpanResource>, scope: Arc<SpanScope>, span: Span) -> Self {
        let cost = heap_size_of_span(&span)
            + PER_SPAN_OVERHEAD
            + heap_size_of_kvs(&resource.resource.attributes)
            + heap_size_of_scope(&scope);
        SpanRecord {
            resource,
            scope,
            span,
            cost,
        }
    }

    /// Bytes this span costs against the memory budget: its heap (strings, lists, their
    /// capacity), a fixed overhead, and its share of its resource and scope (each shared cost is
    /// spread over the spans that share it). An estimate, within a few percent of the heap.
    pub fn cost(&self) -> usize {
        self.cost
    }

    /// The span's kind ([`SpanKind::Unspecified`] for a number out of range).
    pub fn kind(&self) -> SpanKind {
        SpanKind::try_from(self.span.kind).unwrap_or(SpanKind::Unspecified)
    }

    /// The span's status code ([`StatusCode::Unset`] when absent or out of range).
    pub fn status_code(&self) -> StatusCode {
        self.span
            .status
            .as_ref()
            .and_then(|s| StatusCode::try_from(s.code).ok())
            .unwrap_or(StatusCode::Unset)
    }

    /// The trace id as 32 hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex::encode(&self.span.trace_id)
    }

    /// The span id as 16 hex digits.
    pub fn span_id_hex(&self) -> String {
        hex::encode(&self.span.span_id)
    }

    /// The parent span id as 16 hex digits, when the span has a parent.
    pub fn parent_id_hex(&self) -> Option<String> {
        (!self.span.parent_span_id.is_empty()).then(|| hex::encode(&self.span.parent_span_id))
    }

    /// The span's duration in nanoseconds (0 when it ends before it starts).
    pub fn duration_nanos(&self) -> u64 {
        self.span
            .end_time_unix_nano
            .saturating_sub(self.span.start_time_unix_nano)
    }

    /// The resource's `service.name`, when it is a string.
    pub fn service_name(&self) -> Option<&str> {
        super::proto::attribute(&self.resource.resource.attributes, "service.name")
            .and_then(|v| v.as_str())
    }

    /// The span as protobuf bytes (its encoded length, for batching by size).
    pub fn encoded_len(&self) -> usize {
        self.span.encoded_len()
    }
}

fn heap_size_of_span(span: &Span) -> usize {
    use std::mem::size_of;
    let events: usize = span
        .events
        .iter()
        .map(|e| e.name.capacity() + heap_size_of_kvs(&e.attributes))
        .sum();
    let links: usize = span
        .links
        .iter()
        .map(|l| {
            l.trace_id.capacity()
                + l.span_id.capacity()
                + l.trace_state.capacity()
                + heap_size_of_kvs(&l.attributes)
        })
        .sum();
    span.trace_id.capacity()
        + span.span_id.capacity()
        + span.parent_span_id.capacity()
        + span.trace_state.capacity()
        + span.name.capacity()
        + heap_size_of_kvs(&span.attributes)
        + span.events.capacity() * size_of::<super::proto::span::Event>()
        + events
        + span.links.capacity() * size_of::<super::proto::span::Link>()
        + links
        + span.status.as_ref().map_or(0, |s| s.message.capacity())
}

fn heap_size_of_scope(scope: &SpanScope) -> usize {
    scope.schema_url.capacity()
        + scope.scope.as_ref().map_or(0, |s| {
            s.name.capacity() + s.version.capacity() + heap_size_of_kvs(&s.attributes)
        })
}

fn heap_size_of_kvs(kvs: &Vec<KeyValue>) -> usize {
    kvs.capacity() * std::mem::size_of::<KeyValue>()
        + kvs
            .iter()
            .map(|kv| kv.key.capacity() + kv.value.as_ref().map_or(0, heap_size_of_value))
            .sum::<usize>()
}

fn heap_size_of_value(v: &super::proto::AnyValue) -> usize {
    use super::proto::any_value::Value;
    match &v.value {
        Some(Value::StringValue(s)) => s.capacity(),
        Some(Value::BytesValue(b)) => b.capacity(),
        Some(Value::ArrayValue(a)) => {
            a.values.capacity() * std::mem::size_of::<super::proto::AnyValue>()
                + a.values.iter().map(heap_size_of_value).sum::<usize>()
        }
        Some(Value::KvlistValue(l)) => heap_size_of_kvs(&l.values),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::proto::{ResourceSpans, ScopeSpans};

    fn span(trace: Vec<u8>, id: Vec<u8>, parent: Vec<u8>) -> Span {
        Span {
            trace_id: trace,
            span_id: id,
            parent_span_id: parent,
            name: "s".into(),
            ..Span::default()
        }
    }

    fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![KeyValue::string("service.name", "api")],
                    ..Resource::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        }
    }

    #[test]
    fn ids_are_checked_span_by_span() {
        let t = vec![1u8; 16];
        let s = vec![2u8; 8];
        let cases: [(Span, Option<&str>); 10] = [
            (span(t.clone(), s.clone(), vec![]), None),
            (span(t.clone(), s.clone(), vec![3; 8]), None),
            (span(t.clone(), s.clone(), vec![0; 8]), None),
            (span(vec![1; 15], s.clone(), vec![]), Some("trace")),
            (span(vec![0; 16], s.clone(), vec![]), Some("trace")),
            (span(vec![], s.clone(), vec![]), Some("trace")),
            (span(t.clone(), vec![2; 16], vec![]), Some("span")),
            (span(t.clone(), vec![0; 8], vec![]), Some("span")),
            (span(t.clone(), s.clone(), vec![3; 4]), Some("parent")),
            (span(vec![1; 17], vec![], vec![9]), Some("trace")),
        ];
        for (i, (sp, want)) in cases.into_iter().enumerate() {
            let (records, refusals) = split(request(vec![sp]));
            let got = match refusals {
                r if r.is_empty() => None,
                Refusals {
                    bad_trace_id: 1, ..
                } => Some("trace"),
                Refusals { bad_span_id: 1, .. } => Some("span"),
                Refusals {
                    bad_parent_id: 1, ..
                } => Some("parent"),
                r => panic!("case {i}: {r:?}"),
            };
            assert_eq!(got, want, "case {i}");
            assert_eq!(records.len(), usize::from(want.is_none()), "case {i}");
        }
    }

    #[test]
    fn an_all_zero_parent_is_no_parent() {
        let (records, _) = split(request(vec![span(vec![1; 16], vec![2; 8], vec![0; 8])]));
        assert_eq!(records[0].parent_id_hex(), None);
    }

    #[test]
    fn refusals_are_counted_and_explained() {
        let good = span(vec![1; 16], vec![2; 8], vec![]);
        let (records, refusals) = split(request(vec![
            good.clone(),
            span(vec![1; 8], vec![2; 8], vec![]),
            span(vec![1; 16], vec![2; 4], vec![]),
            span(vec![1; 16], vec![0; 8], vec![]),
            good,
        ]));
        assert_eq!(records.len(), 2);
        assert_eq!(refusals.total(), 3);
        let m = refusals.message();
        assert!(m.starts_with("3 spans refused: 1 with a trace id"), "{m}");
        assert!(m.contains("2 with a span id"), "{m}");
        assert_eq!(Refusals::default().message(), "");
    }

    #[test]
    fn spans_share_their_resource_and_scope() {
        let spans = (1..=3u8)
            .map(|i| span(vec![1; 16], vec![i; 8], vec![]))
            .collect();
        let (records, _) = split(request(spans));
        assert_eq!(records.len(), 3);
        assert!(Arc::ptr_eq(&records[0].resource, &records[2].resource));
        assert!(Arc::ptr_eq(&records[0].scope, &records[1].scope));
        assert_eq!(records[1].service_name(), Some("api"));
        assert_eq!(Arc::strong_count(&records[0].resource), 3);
        // Each pays for itself and a third of what is shared.
        let alone = heap_size_of_span(&records[0].span) + PER_SPAN_OVERHEAD;
        assert!(records[0].cost() > alone);
        let shared: usize = records.iter().map(|r| r.cost() - alone).sum();
        let resource = heap_size_of_kvs(&records[0].resource.resource.attributes)
            + std::mem::size_of::<SpanResource>();
        assert!(shared >= resource, "{shared} < {resource}");
    }

    #[test]
    fn cost_follows_the_span_size() {
        let mut big = span(vec![1; 16], vec![2; 8], vec![]);
        big.attributes = vec![KeyValue::string("k", "v".repeat(10_000))];
        let (records, _) = split(request(vec![big, span(vec![1; 16], vec![3; 8], vec![])]));
        assert!(records[0].cost() > 10_000);
        assert!(records[1].cost() < 2_000, "{}", records[1].cost());
    }
}
