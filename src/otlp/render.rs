//! A span as the local sinks write it: one readable line for `--sink stdout`, one OTLP JSON
//! line for `--sink file:PATH`.
//!
//! Data comes from the buffer as a [`SpanRecord`]; the text goes to the stdout and file sinks
//! (each adds the newline).
//!
//! - [`stdout_line`]: `TRACE_ID SPAN_ID KIND "NAME" DURATION STATUS`, the shape of the segment
//!   lines the stdout sink prints (the trace id in X-Ray's form, so one trace greps alike in
//!   both), for example
//!   `1-5b8efff7-98038103d269b633813fc60c eee19b7ec3c1b174 server "GET /home" 12.3 ms ok`;
//!   an ERROR status prints its message after the word `error`;
//! - [`otlp_json_line`]: `{"resourceSpans":[…]}` holding the one span with its resource and
//!   scope: an OTLP JSON request any OTLP tool (and [`super::decode`]) reads back, and which
//!   cannot be mistaken for an X-Ray document (no top-level `trace_id`).

use serde::Serialize;

use super::proto::{InstrumentationScope, Resource, Span, StatusCode};
use super::span::SpanRecord;
use super::to_xray::xray_trace_id;

/// The stdout sink's line for a span (without the newline).
pub fn stdout_line(record: &SpanRecord) -> String {
    let status = match record.status_code() {
        StatusCode::Error => match record.span.status.as_ref().map(|s| s.message.as_str()) {
            Some(m) if !m.is_empty() => format!("error {m:?}"),
            _ => "error".to_owned(),
        },
        code => code.as_str().to_owned(),
    };
    format!(
        "{} {} {} {:?} {:.1} ms {status}",
        xray_trace_id(&record.span.trace_id),
        record.span_id_hex(),
        record.kind().as_str(),
        record.span.name,
        record.duration_nanos() as f64 / 1e6,
    )
}

/// The file sink's line for a span (without the newline): a one-span OTLP JSON request.
pub fn otlp_json_line(record: &SpanRecord) -> String {
    let line = Line {
        resource_spans: [LineResource {
            resource: &record.resource.resource,
            scope_spans: [LineScope {
                scope: record.scope.scope.as_ref(),
                spans: [&record.span],
                schema_url: &record.scope.schema_url,
            }],
            schema_url: &record.resource.schema_url,
        }],
    };
    // Only strings, integers and finite or named doubles: serializing cannot fail.
    serde_json::to_string(&line).unwrap_or_default()
}

/// `ExportTraceServiceRequest` borrowing one span, its scope and resource.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    resource_spans: [LineResource<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LineResource<'a> {
    resource: &'a Resource,
    scope_spans: [LineScope<'a>; 1],
    #[serde(skip_serializing_if = "str::is_empty")]
    schema_url: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LineScope<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a InstrumentationScope>,
    spans: [&'a Span; 1],
    #[serde(skip_serializing_if = "str::is_empty")]
    schema_url: &'a str,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::otlp::decode::{Format, parse};
    use crate::otlp::proto::{
        AnyValue, ArrayValue, KeyValue, SpanKind, Status, any_value::Value, span::Event,
    };
    use crate::otlp::span::{SpanResource, SpanScope, split};

    fn record() -> SpanRecord {
        let resource = Arc::new(SpanResource {
            resource: Resource {
                attributes: vec![KeyValue::string("service.name", "flask-app")],
                dropped_attributes_count: 0,
            },
            schema_url: "https://opentelemetry.io/schemas/1.11.0".into(),
        });
        let scope = Arc::new(SpanScope {
            scope: Some(InstrumentationScope {
                name: "opentelemetry.instrumentation.flask".into(),
                version: "0.48b0".into(),
                ..InstrumentationScope::default()
            }),
            schema_url: String::new(),
        });
        let span = Span {
            trace_id: hex::decode("5b8efff798038103d269b633813fc60c").unwrap_or_default(),
            span_id: hex::decode("eee19b7ec3c1b174").unwrap_or_default(),
            parent_span_id: hex::decode("eee19b7ec3c1b173").unwrap_or_default(),
            name: "GET /home".into(),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_012_345_678,
            attributes: vec![
                KeyValue::int("http.status_code", 500),
                KeyValue {
                    key: "list".into(),
                    value: Some(AnyValue {
                        value: Some(Value::ArrayValue(ArrayValue {
                            values: vec![AnyValue {
                                value: Some(Value::DoubleValue(f64::NAN)),
                            }],
                        })),
                    }),
                },
                KeyValue {
                    key: "raw".into(),
                    value: Some(AnyValue {
                        value: Some(Value::BytesValue(vec![0, 1, 255])),
                    }),
                },
            ],
            events: vec![Event {
                time_unix_nano: 1_700_000_000_001_000_000,
                name: "exception".into(),
                attributes: vec![KeyValue::string("exception.type", "ValueError")],
                dropped_attributes_count: 0,
            }],
            status: Some(Status {
                message: "boom\n".into(),
                code: StatusCode::Error as i32,
            }),
            ..Span::default()
        };
        SpanRecord::new(resource, scope, span)
    }

    #[test]
    fn stdout_line_names_trace_span_kind_name_duration_status() {
        assert_eq!(
            stdout_line(&record()),
            "1-5b8efff7-98038103d269b633813fc60c eee19b7ec3c1b174 server \"GET /home\" 12.3 ms error \"boom\\n\""
        );
        let mut ok = record();
        ok.span.status = None;
        ok.span.kind = SpanKind::Client as i32;
        ok.span.end_time_unix_nano = 0;
        assert!(
            stdout_line(&ok).ends_with(" client \"GET /home\" 0.0 ms unset"),
            "{}",
            stdout_line(&ok)
        );
    }

    #[test]
    fn otlp_json_line_reads_back_as_the_same_span() {
        let r = record();
        let line = otlp_json_line(&r);
        assert!(line.starts_with("{\"resourceSpans\":[{"), "{line}");
        assert!(!line.contains('\n'));
        assert!(
            line.contains("\"traceId\":\"5b8efff798038103d269b633813fc60c\""),
            "{line}"
        );
        assert!(
            line.contains("\"startTimeUnixNano\":\"1700000000000000000\""),
            "{line}"
        );
        assert!(line.contains("\"kind\":2"), "{line}");
        let request = match parse(line.as_bytes(), Format::Json) {
            Ok(r) => r,
            Err(e) => panic!("{e}: {line}"),
        };
        let (records, refusals) = split(request);
        assert!(refusals.is_empty());
        assert_eq!(records.len(), 1);
        let back = &records[0];
        assert_eq!(back.resource.as_ref(), r.resource.as_ref());
        assert_eq!(back.scope.as_ref(), r.scope.as_ref());
        // NaN is not equal to itself: compare the rest, then the NaN by its bits.
        let (mut a, mut b) = (back.span.clone(), r.span.clone());
        assert_eq!(
            serde_json::to_string(&a).unwrap_or_default(),
            serde_json::to_string(&b).unwrap_or_default()
        );
        a.attributes.remove(1);
        b.attributes.remove(1);
        assert_eq!(a, b);
    }
}
