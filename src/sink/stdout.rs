//! The `stdout` sink: one readable line per document, for trying the daemon without AWS.
//!
//! Line shape: `TRACE_ID ID segment|subsegment "NAME" DURATION FLAGS`, for example
//! `1-6566a1b2-0123456789abcdef01234567 53995c3f42cd8ad8 segment "checkout" 12.3 ms fault`.
//! Fields the document lacks print as `-`; `in_progress` documents print `in progress` instead
//! of a duration. Only these few fields are read; the document itself is not printed.
//!
//! Spans print as spans, one line each ([`crate::otlp::render::stdout_line`]): those received
//! over OTLP, and those inside the AWS distros' sampled UDP documents (`T1S`, `T1`; decoded
//! here, on a blocking thread, never on the receive thread). Other distro documents (`T1U`,
//! `M1`) print as `- - T1U "-" -`: they are for X-Ray only.

use std::io::Write;

use serde_json::Value;

use super::{Delivery, Sink, SinkError, SinkFuture};
use crate::document::DocumentKind;
use crate::item::Item;
use crate::otlp::{distro, render};

/// Writes a summary line per document to standard output.
#[derive(Debug, Default)]
pub struct StdoutSink {
    /// With the trace viewer on, each line ends with its trace's page: this, then the trace id.
    link: Option<String>,
}

impl StdoutSink {
    /// A sink whose lines end with `link` and the trace id, when given (the viewer's page).
    pub fn with_link(link: Option<String>) -> Self {
        StdoutSink { link }
    }
}

/// Appends ` LINKTRACE` to a line, when there is a link and a trace id.
fn push_link(text: &mut String, link: Option<&str>, trace_id: Option<&str>) {
    if let (Some(link), Some(trace_id)) = (link, trace_id) {
        text.push(' ');
        text.push_str(link);
        text.push_str(trace_id);
    }
}

/// The lines of a batch, each ending with a newline (and the trace's `link`, if given).
fn lines(batch: &[Item], link: Option<&str>) -> String {
    let mut text = String::new();
    let span_line = |text: &mut String, span: &crate::otlp::span::SpanRecord| {
        text.push_str(&render::stdout_line(span));
        let trace = crate::otlp::to_xray::xray_trace_id(&span.span.trace_id);
        push_link(text, link, Some(&trace));
        text.push('\n');
    };
    for item in batch {
        match item {
            Item::XrayDocument(doc) => match distro::spans_of(doc) {
                None => {
                    match doc.kind() {
                        DocumentKind::Json => {
                            text.push_str(&summary_line(&doc.body));
                            if link.is_some() {
                                push_link(&mut text, link, doc.ids().trace_id.as_deref());
                            }
                        }
                        other => text.push_str(&format!("- - {} \"-\" -", other.as_str())),
                    }
                    text.push('\n');
                }
                Some(Ok(spans)) => {
                    for span in &spans {
                        span_line(&mut text, span);
                    }
                }
                Some(Err(e)) => {
                    text.push_str(&format!(
                        "- - {} (its spans cannot be read: {e})\n",
                        doc.kind().as_str()
                    ));
                }
            },
            Item::Span(span) => span_line(&mut text, &span.record),
        }
    }
    text
}

/// Formats the summary line of one document (without the newline).
pub fn summary_line(doc: &[u8]) -> String {
    // Documents were checked to be JSON objects on the way in; a field of an unexpected type
    // prints as missing. Only the top level's fields are read: the rest (metadata, however
    // deeply nested) is skipped, not built.
    let f: Fields = serde_json::from_slice(doc).unwrap_or_default();
    fn text(v: &Option<Value>) -> Option<&str> {
        v.as_ref().and_then(Value::as_str)
    }
    let flag = |v: &Option<Value>| v.as_ref().and_then(Value::as_bool).unwrap_or(false);
    let time = |v: &Option<Value>| v.as_ref().and_then(Value::as_f64);
    let duration = match (time(&f.start_time), time(&f.end_time)) {
        _ if flag(&f.in_progress) => "in progress".to_owned(),
        (Some(a), Some(b)) => format!("{:.1} ms", (b - a) * 1000.0),
        _ => "-".to_owned(),
    };
    let mut line = format!(
        "{} {} {} {:?} {duration}",
        text(&f.trace_id).unwrap_or("-"),
        text(&f.id).unwrap_or("-"),
        text(&f.kind).unwrap_or("segment"),
        text(&f.name).unwrap_or("-"),
    );
    for (word, set) in [
        ("error", &f.error),
        ("fault", &f.fault),
        ("throttle", &f.throttle),
    ] {
        if flag(set) {
            line.push(' ');
            line.push_str(word);
        }
    }
    line
}

/// The fields of a document a summary line shows.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct Fields {
    trace_id: Option<Value>,
    id: Option<Value>,
    #[serde(rename = "type")]
    kind: Option<Value>,
    name: Option<Value>,
    start_time: Option<Value>,
    end_time: Option<Value>,
    in_progress: Option<Value>,
    error: Option<Value>,
    fault: Option<Value>,
    throttle: Option<Value>,
}

impl Sink for StdoutSink {
    fn name(&self) -> &'static str {
        "stdout"
    }

    fn send<'a>(&'a self, batch: &'a [Item]) -> SinkFuture<'a> {
        Box::pin(async move {
            let batch = batch.to_vec();
            let link = self.link.clone();
            // The lines are made (distro documents decoded) and written in one locked write for
            // the whole batch (log lines never land inside it), on a blocking thread so neither
            // decoding nor a slow pipe holds the runtime thread.
            let written = tokio::task::spawn_blocking(move || {
                let text = lines(&batch, link.as_deref());
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes()).and_then(|()| out.flush())
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            written.map_err(|source| SinkError::Io {
                sink: "stdout",
                source,
            })?;
            Ok(Delivery::default())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarises_a_segment() {
        let line = summary_line(br#"{"trace_id":"1-a-b","id":"c","name":"web","start_time":1.0,"end_time":1.0125,"fault":true}"#);
        assert_eq!(line, "1-a-b c segment \"web\" 12.5 ms fault");
        let line =
            summary_line(br#"{"type":"subsegment","in_progress":true,"error":true,"name":5}"#);
        assert_eq!(line, "- - subsegment \"-\" in progress error");
        // Metadata nested past the JSON reader's 128 levels is skipped, not read.
        let deep = "[".repeat(5000) + &"]".repeat(5000);
        let doc = format!(
            r#"{{"trace_id":"1-a-b","id":"c","name":"deep","metadata":{deep},"start_time":1,"end_time":2}}"#
        );
        let line = summary_line(doc.as_bytes());
        assert_eq!(line, "1-a-b c segment \"deep\" 1000.0 ms");
    }
}
