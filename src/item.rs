//! What the buffer holds: an [`Item`], one unit of telemetry that came in through an [`Input`].
//!
//! Two kinds: an X-Ray segment document received over UDP, kept byte for byte ([`Document`]),
//! and an OpenTelemetry span ([`SpanItem`]) with the X-Ray document made from it. Each kind
//! says what it costs
//! against the memory budget ([`Item::cost`]) and which input it came from ([`Item::input`]),
//! so the buffer's memory rule and the per-input accounting need no change when a kind is
//! added. A sink matches on the kind it was given, so a new kind cannot be sent anywhere by
//! accident: the compiler lists every place that must decide what to do with it.
//!
//! A leaf: it knows the item types and nothing of the stages.

use std::sync::Arc;

use crate::document::Document;
use crate::otlp::span::SpanRecord;

/// Where an item came in. Stable names: they are `/daemon/stats` keys (`inputs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Input {
    /// X-Ray segment documents in UDP datagrams (`-b`, port 2000).
    Udp,
    /// OpenTelemetry spans over OTLP/HTTP (`--otlp-http`, `POST /v1/traces`).
    OtlpHttp,
    /// OpenTelemetry spans over OTLP/gRPC (`--otlp-grpc`, `TraceService/Export`).
    OtlpGrpc,
}

impl Input {
    /// Every input, in the order stats list them.
    pub const ALL: [Input; 3] = [Input::Udp, Input::OtlpHttp, Input::OtlpGrpc];

    /// The stable name used in stats output.
    pub fn as_str(self) -> &'static str {
        match self {
            Input::Udp => "udp",
            Input::OtlpHttp => "otlp_http",
            Input::OtlpGrpc => "otlp_grpc",
        }
    }

    /// Whether the input takes requests that get an answer (counted by outcome in stats).
    pub fn takes_requests(self) -> bool {
        match self {
            Input::Udp => false,
            Input::OtlpHttp | Input::OtlpGrpc => true,
        }
    }

    /// Position in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One unit the daemon relays.
#[derive(Clone, Debug)]
pub enum Item {
    /// An X-Ray segment or subsegment document, byte for byte as received.
    XrayDocument(Document),
    /// An OpenTelemetry span, with the X-Ray document made from it (shared, not copied, by
    /// every lane that holds it).
    Span(Arc<SpanItem>),
}

/// An OpenTelemetry span as the buffer holds it: the span for the sinks that want spans, the
/// X-Ray document for the X-Ray sink.
#[derive(Debug)]
pub struct SpanItem {
    /// The span with its resource and scope.
    pub record: SpanRecord,
    /// The X-Ray segment or subsegment document made from it.
    pub document: Document,
    /// The input it came in through.
    pub input: Input,
}

impl SpanItem {
    /// A span item.
    pub fn new(record: SpanRecord, document: Document, input: Input) -> Self {
        SpanItem {
            record,
            document,
            input,
        }
    }
}

impl Item {
    /// Bytes this item costs against the memory budget (its allocation and bookkeeping).
    pub fn cost(&self) -> usize {
        match self {
            Item::XrayDocument(doc) => doc.cost(),
            Item::Span(span) => {
                std::mem::size_of::<SpanItem>() + span.record.cost() + span.document.cost()
            }
        }
    }

    /// The input it came in through.
    pub fn input(&self) -> Input {
        match self {
            Item::XrayDocument(_) => Input::Udp,
            Item::Span(span) => span.input,
        }
    }

    /// The X-Ray document: the one received, or the one made from a span.
    pub fn as_document(&self) -> Option<&Document> {
        match self {
            Item::XrayDocument(doc) => Some(doc),
            Item::Span(span) => Some(&span.document),
        }
    }

    /// The span, when the item is one.
    pub fn as_span(&self) -> Option<&SpanRecord> {
        match self {
            Item::XrayDocument(_) => None,
            Item::Span(span) => Some(&span.record),
        }
    }
}

impl Item {
    /// `segment ID of trace TRACE_ID` for a log line (`(no id)` and `(no trace id)` where the
    /// document has none). Reads the document again: for logs, never on the hot path, never the
    /// body.
    pub fn log_name(&self) -> String {
        match self {
            Item::XrayDocument(doc) => {
                let ids = doc.ids();
                format!(
                    "segment {} of trace {}",
                    ids.id.as_deref().unwrap_or("(no id)"),
                    ids.trace_id.as_deref().unwrap_or("(no trace id)")
                )
            }
            Item::Span(span) => format!(
                "span {} of trace {}",
                hex_of(&span.record.span.span_id),
                hex_of(&span.record.span.trace_id)
            ),
        }
    }
}

impl From<Document> for Item {
    fn from(doc: Document) -> Self {
        Item::XrayDocument(doc)
    }
}

/// Lower-case hex of an id, for log lines.
fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
