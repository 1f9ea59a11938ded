//! The `viewer` sink: every item into the trace viewer's store ([`crate::viewer::Store`]), when
//! `--viewer` is on.
//!
//! In: batches from its lane, which takes everything, with no linger (a trace shows as soon as
//! it is received). Out: documents in the store, each with its raw text and its X-Ray segment:
//! - an X-Ray document: its text as received is both;
//! - an OpenTelemetry span (received over OTLP, or inside a distro's `T1S`/`T1` datagram): its
//!   OTLP JSON is the raw text, its conversion to an X-Ray document the segment;
//! - `T1U` and `M1` (for X-Ray alone) and documents without ids: not kept.
//!
//! It never fails: the store forgets its oldest traces to stay within its own budget.

use std::sync::Arc;

use super::{Delivery, Sink, SinkFuture};
use crate::document::DocumentKind;
use crate::item::Item;
use crate::otlp::span::SpanRecord;
use crate::otlp::to_xray::{ConversionSettings, to_documents};
use crate::otlp::{distro, render};
use crate::viewer::{Format, Store};

/// The sink's name (and its lane's in stats).
pub const NAME: &str = "viewer";

/// Feeds the viewer's store.
#[derive(Debug)]
pub struct ViewerSink {
    store: Arc<Store>,
}

impl ViewerSink {
    /// A sink filling `store`.
    pub fn new(store: Arc<Store>) -> Self {
        ViewerSink { store }
    }
}

/// Keeps one span: its OTLP JSON as the raw text, its X-Ray document (given, or converted here)
/// as the segment.
fn add_span(store: &Store, record: &SpanRecord, segment: Option<&[u8]>) {
    let raw: Arc<str> = Arc::from(render::otlp_json_line(record));
    let converted;
    let segment = match segment {
        Some(s) => s,
        None => match to_documents(record, &ConversionSettings::default()) {
            Ok(c) => {
                converted = c.document.body;
                &converted[..]
            }
            Err(_) => return,
        },
    };
    let segment: Arc<str> = Arc::from(String::from_utf8_lossy(segment));
    store.add(Format::Otlp, raw, segment);
}

/// Keeps a batch's items (see the module docs).
fn keep(store: &Store, batch: &[Item]) {
    for item in batch {
        match item {
            Item::XrayDocument(doc) => match distro::spans_of(doc) {
                Some(Ok(spans)) => spans.iter().for_each(|s| add_span(store, s, None)),
                Some(Err(_)) => {}
                None if doc.kind() == DocumentKind::Json => {
                    let text: Arc<str> = Arc::from(String::from_utf8_lossy(&doc.body));
                    store.add(Format::Xray, Arc::clone(&text), text);
                }
                None => {}
            },
            Item::Span(span) => add_span(store, &span.record, Some(&span.document.body)),
        }
    }
}

impl Sink for ViewerSink {
    fn name(&self) -> &'static str {
        NAME
    }

    fn send<'a>(&'a self, batch: &'a [Item]) -> SinkFuture<'a> {
        // Reading the documents (and decoding distro spans) is CPU work: on the blocking pool,
        // never on the runtime's thread. Items are shared, not copied.
        let (store, batch) = (Arc::clone(&self.store), batch.to_vec());
        Box::pin(async move {
            let _ = tokio::task::spawn_blocking(move || keep(&store, &batch)).await;
            Ok(Delivery::default())
        })
    }
}
