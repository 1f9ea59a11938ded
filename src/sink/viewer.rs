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
//!
//! **Restart without a database**: with `--sink file:PATH` on too, [`load_file`] fills the store
//! at start from the end of that file (the `file` sink's JSON Lines: X-Ray documents as received,
//! spans as one-span OTLP JSON lines), reading at most twice the store's budget from its end.

use std::io::{BufRead, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use super::{Delivery, Sink, SinkFuture};
use crate::document::DocumentKind;
use crate::item::Item;
use crate::otlp::decode;
use crate::otlp::span::{self, SpanRecord};
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

/// What [`load_file`] read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Lines kept in the store (a span line's spans count once each).
    pub kept: usize,
    /// Lines that were neither an X-Ray document nor OTLP JSON spans (a distro's `T1U`, say).
    pub skipped: usize,
}

/// Fills `store` from the end of the `file` sink's `path` (at most `2 × budget` bytes of it,
/// from the first whole line), oldest line first. Blocking: run it on the blocking pool.
pub fn load_file(store: &Store, path: &Path, budget: usize) -> std::io::Result<Loaded> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let window = (budget as u64).saturating_mul(2);
    let start = len.saturating_sub(window);
    file.seek(SeekFrom::Start(start))?;
    let mut reader = std::io::BufReader::new(file.take(window));
    if start > 0 {
        // Inside a line: skip to the next whole one.
        reader.read_until(b'\n', &mut Vec::new())?;
    }
    load_lines(store, reader)
}

/// Keeps each line of `reader` (the `file` sink's JSON Lines: X-Ray documents as received,
/// spans as one-span OTLP JSON lines) in `store`, oldest first. Blocking.
pub fn load_lines(store: &Store, mut reader: impl BufRead) -> std::io::Result<Loaded> {
    let mut loaded = Loaded::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        if text.starts_with(b"{\"resourceSpans\"") {
            match decode::parse(text, decode::Format::Json) {
                Ok(request) => {
                    let (records, _) = span::split(request);
                    records.iter().for_each(|r| add_span(store, r, None));
                    loaded.kept += records.len();
                }
                Err(_) => loaded.skipped += 1,
            }
            continue;
        }
        let text: Arc<str> = Arc::from(String::from_utf8_lossy(text));
        match store.add(Format::Xray, Arc::clone(&text), text) {
            Some(_) => loaded.kept += 1,
            None => loaded.skipped += 1,
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Stats;

    #[test]
    fn the_store_is_filled_from_the_end_of_the_file_sinks_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("segments.jsonl");
        let doc = |n: u32| {
            format!(
                r#"{{"trace_id":"1-5f84c7a1-0123456789abcdef0123{n:04x}","id":"00000000000000a1","name":"app","start_time":1,"end_time":2}}"#
            )
        };
        let span = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"otel-svc"}}]},"scopeSpans":[{"spans":[{"traceId":"6566a1b20123456789abcdef0123abcd","spanId":"53995c3f42cd8ad9","name":"GET /","kind":2,"startTimeUnixNano":"1700000000100000000","endTimeUnixNano":"1700000000200000000"}]}]}]}"#;
        let mut text: String = (0..1000).map(|n| doc(n) + "\n").collect();
        text.push_str(span);
        text.push('\n');
        text.push_str("T1U c29tZXRoaW5n\n");
        std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{e}"));

        // A store large enough for all of it reads all of it.
        let store = Store::new(1 << 20, Arc::new(Stats::new()));
        let loaded = load_file(&store, &path, 1 << 20);
        assert_eq!(
            loaded.ok(),
            Some(Loaded {
                kept: 1001,
                skipped: 1
            })
        );
        let ids: Vec<String> = store.summaries().into_iter().map(|s| s.trace_id).collect();
        assert_eq!(ids.len(), 1001);
        assert_eq!(
            ids[0], "1-6566a1b2-0123456789abcdef0123abcd",
            "the span, newest"
        );
        assert_eq!(ids[1], "1-5f84c7a1-0123456789abcdef012303e7");

        // A small budget reads only the file's end: the newest lines.
        let small = 20 * 1024;
        let store = Store::new(small, Arc::new(Stats::new()));
        let loaded = load_file(&store, &path, small).unwrap_or_default();
        assert!(loaded.kept > 10 && loaded.kept < 1001, "{loaded:?}");
        let stats = store.stats();
        assert!(stats.bytes <= small, "{stats:?}");
        let newest = store.summaries().into_iter().nth(1).map(|s| s.trace_id);
        assert_eq!(
            newest.as_deref(),
            Some("1-5f84c7a1-0123456789abcdef012303e7")
        );
    }
}
