//! The `file:PATH` sink: appends each document to a file, one per line (JSON Lines).
//!
//! Documents are written byte for byte. A JSON document can only hold a raw newline as
//! whitespace between tokens, so where one does (the SDKs never send any), each CR or LF is
//! written as a space to keep one document per line; the JSON means the same. Spans are written
//! as one-span OTLP JSON lines: those received over OTLP, and those inside the AWS distros'
//! sampled UDP documents (`T1S`, `T1`, decoded on a blocking thread); `T1U` and `M1` documents
//! are written as received.

use std::path::Path;

use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::{Delivery, Sink, SinkError, SinkFuture};
use crate::item::Item;
use crate::otlp::{distro, render};

/// Appends documents to a file.
#[derive(Debug)]
pub struct FileSink {
    file: Mutex<tokio::fs::File>,
}

impl FileSink {
    /// Opens (creating if needed) `path` for appending.
    pub async fn open(path: &Path) -> std::io::Result<Self> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await?;
        Ok(FileSink {
            file: Mutex::new(file),
        })
    }
}

/// The lines of a batch: each document byte for byte (CR and LF as spaces), each span as a
/// one-span OTLP JSON line (`{"resourceSpans":[…]}`), which no reader can take for an X-Ray
/// document; the spans of the distros' sampled UDP documents (`T1S`, `T1`) one line each.
fn lines(batch: &[Item]) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.iter().map(Item::cost).sum());
    let line = |out: &mut Vec<u8>, bytes: &[u8]| {
        let start = out.len();
        out.extend_from_slice(bytes);
        if memchr::memchr2(b'\n', b'\r', &out[start..]).is_some() {
            for b in &mut out[start..] {
                if *b == b'\n' || *b == b'\r' {
                    *b = b' ';
                }
            }
        }
        out.push(b'\n');
    };
    for item in batch {
        match item {
            Item::XrayDocument(doc) => match distro::spans_of(doc) {
                Some(Ok(spans)) => {
                    for span in &spans {
                        line(&mut out, render::otlp_json_line(span).as_bytes());
                    }
                }
                // Not spans (JSON, T1U, M1), or spans that cannot be read: as received.
                _ => line(&mut out, &doc.body),
            },
            Item::Span(span) => line(&mut out, render::otlp_json_line(&span.record).as_bytes()),
        }
    }
    out
}

impl Sink for FileSink {
    fn name(&self) -> &'static str {
        "file"
    }

    fn send<'a>(&'a self, batch: &'a [Item]) -> SinkFuture<'a> {
        Box::pin(async move {
            let batch = batch.to_vec();
            // Made on a blocking thread: distro documents are decoded here.
            let out = tokio::task::spawn_blocking(move || lines(&batch))
                .await
                .map_err(|e| SinkError::Io {
                    sink: "file",
                    source: std::io::Error::other(e),
                })?;
            let mut file = self.file.lock().await;
            let io = |source| SinkError::Io {
                sink: "file",
                source,
            };
            file.write_all(&out).await.map_err(io)?;
            file.flush().await.map_err(io)?;
            Ok(Delivery::default())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Document;

    /// JSON Lines needs one document a line: a CR or LF inside a document (whitespace between
    /// JSON tokens) is written as a space, as the README says; everything else byte for byte.
    #[tokio::test]
    async fn a_newline_inside_a_document_is_written_as_a_space()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("segments.jsonl");
        let sink = FileSink::open(&path).await?;
        let docs = ["{\"a\":1,\r\n \"b\":\"x\"}", "{\"c\":\"\\n\"}"];
        let batch: Vec<Item> = docs
            .iter()
            .map(|d| Item::XrayDocument(Document::unchecked(d.to_string())))
            .collect();
        sink.send(&batch).await?;
        let written = std::fs::read_to_string(&path)?;
        assert_eq!(written, "{\"a\":1,   \"b\":\"x\"}\n{\"c\":\"\\n\"}\n");
        for (line, doc) in written.lines().zip(docs) {
            let parsed: serde_json::Value = serde_json::from_str(line)?;
            assert_eq!(parsed, serde_json::from_str::<serde_json::Value>(doc)?);
        }
        Ok(())
    }
}
