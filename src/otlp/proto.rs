//! The OTLP trace messages, written by hand as prost structs: what an `ExportTraceServiceRequest`
//! decodes into, from protobuf ([`prost::Message::decode`]) or from OTLP JSON (serde, with the
//! field rules in [`super::json`]).
//!
//! Data comes from [`super::decode`] (request bodies); the span model ([`super::span`]) takes
//! the spans apart, the conversions read them, and [`super::render`] writes them back as OTLP
//! JSON. Field numbers and names follow `opentelemetry-proto` v1 (the collector service
//! `opentelemetry.proto.collector.trace.v1` and the messages under `trace.v1`, `common.v1` and
//! `resource.v1`).
//!
//! Why by hand rather than the `opentelemetry-proto` crate: that crate's JSON refuses some
//! valid OTLP JSON (an `arrayValue` or `kvlistValue` without its `values`, which Go's protojson
//! writes for an empty list; `null` for a repeated field), pulls in the OpenTelemetry API and SDK
//! crates, and leaves no room for our own rules (an id that is valid hex of the wrong length is
//! a refused span, not a refused request). These few structs are the whole of what we need.
//!
//! Left out on purpose (prost skips unknown fields, so requests carrying them still decode):
//! the fields of development status (`Resource.entity_refs`, `KeyValue.key_strindex`,
//! `AnyValue.string_value_strindex`), used by the profiling signal only.

use serde::{Deserialize, Serialize};

use super::json;

/// `opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest`: what an OTLP trace
/// exporter sends.
#[derive(Clone, PartialEq, prost::Message, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExportTraceServiceRequest {
    /// Spans, grouped by the resource that produced them.
    #[prost(message, repeated, tag = "1")]
    #[serde(with = "json::list", skip_serializing_if = "Vec::is_empty")]
    pub resource_spans: Vec<ResourceSpans>,
}

/// `ExportTraceServiceResponse`: the answer to an export.
#[derive(Clone, PartialEq, prost::Message, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExportTraceServiceResponse {
    /// Set when some spans were refused (or to carry a warning); absent on full success.
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial_success: Option<ExportTracePartialSuccess>,
}

/// `ExportTracePartialSuccess`: how many spans were refused and why.
#[derive(Clone, PartialEq, prost::Message, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExportTracePartialSuccess {
    /// Spans refused (0 with a message: a warning only).
    #[prost(int64, tag = "1")]
    #[serde(with = "json::int64")]
    pub rejected_spans: i64,
    /// Why, and what the sender can do about it.
    #[prost(string, tag = "2")]
    #[serde(with = "json::string", skip_serializing_if = "String::is_empty")]
    pub error_message: String,
}

/// `trace.v1.ResourceSpans`: the spans of one resource (one process or service instance).
#[derive(Clone, PartialEq, prost::Message, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ResourceSpans {
    /// The resource; absent means unknown.
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    /// Spans grouped by the instrumentation scope that made them.
    #[prost(message, repeated, tag = "2")]
    #[serde(with = "json::list", skip_serializing_if = "Vec::is_empty")]
    pub scope_spans: Vec<ScopeSpans>,
    /// The schema URL of the resource's attributes.
    #[prost(string, tag = "3")]
    #[serde(with = "json::string", skip_serializing_if = "String::is_empty")]
    pub schema_url: String,
}

/// `trace.v1.ScopeSpans`: the spans of one instrumentation scope.
#[derive(Clone, PartialEq, prost::Message, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ScopeSpans {
    /// The instrumentation scope (library name and version).
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<InstrumentationScope>,
    /// The spans.
    #[prost(message, repeated, tag = "2")]
    #[serde(with = "json::list", skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<Span>,
    /// The schema URL of the spans' attributes.
    #[prost(string, tag = "3")]
    #[serde(with = "json::string", skip_serializing_if = "String::is_empty")]
    pub schema_url: String,
}

/// `trace.v1.Span`: one operation.
#[derive(Clone, PartialEq, prost::Message, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Span {
    /// 16 bytes; all zero or another length is invalid (in JSON: 32 hex digits).
    #[prost(bytes = "vec", tag = "1")]
    #[serde(with = "json::id")]
    pub trace_id: Vec<u8>,
    /// 8 bytes; all zero or another length is invalid (in JSON: 16 hex digits).
    #[prost(bytes = "vec", tag = "2")]
    #[serde(with = "json::id")]
    pub span_id: Vec<u8>,
    /// W3C `tracestate`.
    #[prost(string, tag = "3")]
    #[serde(with = "json::string", skip_serializing_if = "String::is_empty")]
    pub trace_state: String,
    /// The parent's span id (8 bytes); empty for a root span.
    #[prost(bytes = "vec", tag = "4")]
    #[serde(with = "json::id", skip_serializing_if = "Vec::is_empty")]
    pub parent_span_id: Vec<u8>,
    /// W3C trace flags (bits 0-7) and the parent-is-remote bits (8, 9).
    #[prost(fixed32, tag = "16")]
    #[serde(with = "json::uint32", skip_serializing_if = "is_zero_u32")]
    pub flags: u32,
    /// The operation's name.
    #[prost(string, tag = "5")]
    #[serde(with = "json::string")]
    pub name: String,
    /// A [`SpanKind`] as its number.
    #[prost(enumeration = "SpanKind", tag = "6")]
    #[serde(with = "json::span_kind")]
    pub kind: i32,
    /// Start, in nanoseconds since the Unix epoch.
    #[prost(fixed64, tag = "7")]
    #[serde(with = "json::uint64")]
    pub start_time_unix_nano: u64,
    /// End, in nanoseconds since the Unix epoch.
    #[prost(fixed64, tag = "8")]
    #[serde(with = "json::uint64")]
    pub end_time_unix_nano: u64,
    /// The span's attributes.
    #[prost(message, repeated, tag = "9")]
    #[serde(with = "json::list", skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<KeyValue>,
    /// Attributes the SDK dropped.
    #[prost(uint32, tag = "10")]
    #[serde(with = "json::uint32", skip_serializing_if = "is_zero_u32")]
    pub dropped_attributes_count: u32,
    /// Timed events (exceptions among them).
    #[prost(message, repeated, tag = "11")]
    #[serde(with = "json::list", skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<span::Event>,
    /// Events the SDK dropped.
    #[prost(uint32, tag = "12")]
    #[serde(with = "json::uint32", skip_serializing_if = "is_zero_u32")]
    pub dropped_events_count: u32,
    /// Links to other spans.
    #[prost(message, repeated, tag = "13")]
    #[serde(with = "json::list", skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<span::Link>,
    /// Links the SDK dropped.
    #[prost(uint32, tag = "14")]
    #[serde(with = "json::uint32", skip_serializing_if = "is_zero_u32")]
    pub dropped_links_count: u32,
    /// The outcome; absent means unset.
    #[prost(message, optional, tag = "15")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

/// The messages nested in [`Span`].
pub mod span {
    use serde::{Deserialize, Serialize};

    use super::{KeyValue, is_zero_u32, json};

    /// `Span.Event`: something that happened at one moment of a span.
    #[derive(Clone, PartialEq, prost::Message, Deserialize, Serialize)]
    #[serde(rename_all = "camelCase", default)]
    pub struct Event {
        /// When, in nanoseconds since the Unix epoch.
        #[prost(fixed64, tag = "1")]
        #[serde(with = "json::uint64")]
        pub time_unix_nano: u64,
        /// The event's name (`exception` for an exception).
        #[prost(string, tag = "2")]
        #[serde(with = "json::string")]
        pub name: String,
        /// Its attributes.
        #[prost(message, repeated, tag = "3")]
        #[serde(with = "json::list", skip_serializing_if = "Vec::is_empty")]
        pub attributes: Vec<KeyValue>,
        /// Attributes the SDK dropped.
        #[prost(uint32, tag = "4")]
        #[serde(with = "json::uint32", skip_serializing_if = "is_zero_u32")]
        pub dropped_attributes_count: u32,
    }

    /// `Span.Link`: a reference to another span.
    #[derive(Clone, PartialEq, prost::Message, Deserialize, Serialize)]
    #[serde(rename_all = "camelCase", default)]
    pub struct Link {
        /// The linked span's trace id.
        #[prost(bytes = "vec", tag = "1")]
        #[serde(with = "json::id")]
        pub trace_id: Vec<u8>,
        /// The linked span's id.
        #[prost(bytes = "vec", tag = "2")]
        #[serde(with = "json::id")]
        pub span_id: Vec<u8>,
        /// W3C `tracestate` of the link.
        #[prost(string, tag = "3")]
        #[serde(with = "json::string", skip_serializing_if = "String::is_empty")]
        pub trace_state: String,
        /// The link's attributes.
        #[prost(message, repeated, tag = "4")]
        #[serde(with = "json::list", skip_serializing_if = "Vec::is_empty")]
        pub attributes: Vec<KeyValue>,
        /// Attributes the SDK dropped.
        #[prost(uint32, tag = "5")]
        #[serde(with = "json::uint32", skip_serializing_if = "is_zero_u32")]
        pub dropped_attributes_count: u32,
        /// W3C trace flags and the is-remote bits of the linked context.
        #[prost(fixed32, tag = "6")]
        #[serde(with = "json::uint32", skip_serializing_if = "is_zero_u32")]
        pub flags: u32,
    }
}

/// `Span.SpanKind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SpanKind {
    /// Not given (treated as internal).
    Unspecified = 0,
    /// An operation inside the application.
    Internal = 1,
    /// The server side of a synchronous call.
    Server = 2,
    /// The client side of a synchronous call.
    Client = 3,
    /// Sends a message (asynchronous).
    Producer = 4,
    /// Receives a message (asynchronous).
    Consumer = 5,
}

impl SpanKind {
    /// The names OTLP JSON may use for each kind (the protobuf enum names), by number.
    pub const NAMES: [&'static str; 6] = [
        "SPAN_KIND_UNSPECIFIED",
        "SPAN_KIND_INTERNAL",
        "SPAN_KIND_SERVER",
        "SPAN_KIND_CLIENT",
        "SPAN_KIND_PRODUCER",
        "SPAN_KIND_CONSUMER",
    ];

    /// A short lower-case word for logs (`server`, `client`, …; `unspecified`).
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "unspecified",
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }
}

/// `trace.v1.Status`: a span's outcome.
#[derive(Clone, PartialEq, prost::Message, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Status {
    /// A developer-facing message (usually set with an error).
    #[prost(string, tag = "2")]
    #[serde(with = "json::string", skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// A [`StatusCode`] as its number.
    #[prost(enumeration = "StatusCode", tag = "3")]
    #[serde(with = "json::status_code", skip_serializing_if = "is_zero_i32")]
    pub code: i32,
}

/// `Status.StatusCode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum StatusCode {
    /// The default: no outcome was set.
    Unset = 0,
    /// Set as successful by the application or operator.
    Ok = 1,
    /// The operation failed.
    Error = 2,
}

impl StatusCode {
    /// The names OTLP JSON may use for each code (the protobuf enum names), by number.
    pub const NAMES: [&'static str; 3] =
        ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];

    /// A short lower-case word for logs (`unset`, `ok`, `error`).
    pub fn as_str(self) -> &'static str {
        match self {
            StatusCode::Unset => "unset",
            StatusCode::Ok => "ok",
            StatusCode::Error => "error",
        }
    }
}

/// `resource.v1.Resource`: what produced the spans (`service.name`, host, cloud, SDK, …).
#[derive(Clone, PartialEq, prost::Message, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Resource {
    /// The resource's attributes.
    #[prost(message, repeated, tag = "1")]
    #[serde(with = "json::list", skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<KeyValue>,
    /// Attributes the SDK dropped.
    #[prost(uint32, tag = "2")]
    #[serde(with = "json::uint32", skip_serializing_if = "is_zero_u32")]
    pub dropped_attributes_count: u32,
}

/// `common.v1.InstrumentationScope`: the library that made the spans.
#[derive(Clone, PartialEq, prost::Message, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InstrumentationScope {
    /// The library's name (`opentelemetry.instrumentation.flask`, …).
    #[prost(string, tag = "1")]
    #[serde(with = "json::string", skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The library's version.
    #[prost(string, tag = "2")]
    #[serde(with = "json::string", skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// The scope's attributes.
    #[prost(message, repeated, tag = "3")]
    #[serde(with = "json::list", skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<KeyValue>,
    /// Attributes the SDK dropped.
    #[prost(uint32, tag = "4")]
    #[serde(with = "json::uint32", skip_serializing_if = "is_zero_u32")]
    pub dropped_attributes_count: u32,
}

/// `common.v1.KeyValue`: one attribute.
#[derive(Clone, PartialEq, prost::Message, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KeyValue {
    /// The attribute's name.
    #[prost(string, tag = "1")]
    #[serde(with = "json::string")]
    pub key: String,
    /// Its value; absent means empty.
    #[prost(message, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<AnyValue>,
}

/// `common.v1.AnyValue`: an attribute's value. Its JSON form (one key naming the type, as
/// `{"intValue":"42"}`) is read and written in [`super::json`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    /// The value; `None` is the empty value.
    #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4, 5, 6, 7")]
    pub value: Option<any_value::Value>,
}

/// The one-of inside [`AnyValue`].
pub mod any_value {
    /// Which kind of value, and the value.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        /// A string.
        #[prost(string, tag = "1")]
        StringValue(String),
        /// A boolean.
        #[prost(bool, tag = "2")]
        BoolValue(bool),
        /// A 64-bit integer.
        #[prost(int64, tag = "3")]
        IntValue(i64),
        /// A double.
        #[prost(double, tag = "4")]
        DoubleValue(f64),
        /// A list of values.
        #[prost(message, tag = "5")]
        ArrayValue(super::ArrayValue),
        /// A list of key-value pairs (a map).
        #[prost(message, tag = "6")]
        KvlistValue(super::KeyValueList),
        /// Raw bytes (base64 in JSON).
        #[prost(bytes = "vec", tag = "7")]
        BytesValue(Vec<u8>),
    }
}

/// `common.v1.ArrayValue`: a list of values.
#[derive(Clone, PartialEq, prost::Message, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ArrayValue {
    /// The values.
    #[prost(message, repeated, tag = "1")]
    #[serde(with = "json::list")]
    pub values: Vec<AnyValue>,
}

/// `common.v1.KeyValueList`: a list of key-value pairs.
#[derive(Clone, PartialEq, prost::Message, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KeyValueList {
    /// The pairs.
    #[prost(message, repeated, tag = "1")]
    #[serde(with = "json::list")]
    pub values: Vec<KeyValue>,
}

impl AnyValue {
    /// A string value.
    pub fn string(s: impl Into<String>) -> Self {
        AnyValue {
            value: Some(any_value::Value::StringValue(s.into())),
        }
    }

    /// An integer value.
    pub fn int(i: i64) -> Self {
        AnyValue {
            value: Some(any_value::Value::IntValue(i)),
        }
    }

    /// The string, when the value is one.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Some(any_value::Value::StringValue(s)) => Some(s),
            _ => None,
        }
    }

    /// The integer, when the value is one, or a string or a whole double holding one
    /// (instrumentations disagree on the type of `http.status_code` and ports).
    pub fn as_i64(&self) -> Option<i64> {
        match &self.value {
            Some(any_value::Value::IntValue(i)) => Some(*i),
            Some(any_value::Value::StringValue(s)) => s.trim().parse().ok(),
            Some(any_value::Value::DoubleValue(d))
                if d.fract() == 0.0 && d.abs() < 9_007_199_254_740_992.0 =>
            {
                Some(*d as i64)
            }
            _ => None,
        }
    }
}

impl KeyValue {
    /// A key with a string value.
    pub fn string(key: impl Into<String>, value: impl Into<String>) -> Self {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue::string(value)),
        }
    }

    /// A key with an integer value.
    pub fn int(key: impl Into<String>, value: i64) -> Self {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue::int(value)),
        }
    }
}

/// The value of attribute `key` in `attributes`, if present (the first, if repeated).
pub fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

fn is_zero_i32(n: &i32) -> bool {
    *n == 0
}
