//! The `file:PATH` sink: appends each document to a file, one per line (JSON Lines).
//!
//! Documents are written byte for byte. A JSON document can only hold a raw newline as
//! whitespace between tokens, so where one does (the SDKs never send any), each CR or LF is
//! written as a space to keep one document per line; the JSON means the same.

use std::path::Path;

use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::{Delivery, Sink, SinkError, SinkFuture};
use crate::item::Item;

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

impl Sink for FileSink {
    fn name(&self) -> &'static str {
        "file"
    }

    fn send<'a>(&'a self, batch: &'a [Item]) -> SinkFuture<'a> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(batch.iter().map(|i| i.cost()).sum());
            for item in batch {
                let start = out.len();
                match item {
                    Item::XrayDocument(doc) => out.extend_from_slice(&doc.body),
                    // A one-span OTLP JSON line (`{"resourceSpans":[…]}`), which no reader can
                    // take for an X-Ray document.
                    Item::Span(span) => out.extend_from_slice(
                        crate::otlp::render::otlp_json_line(&span.record).as_bytes(),
                    ),
                }
                if memchr::memchr2(b'\n', b'\r', &out[start..]).is_some() {
                    for b in &mut out[start..] {
                        if *b == b'\n' || *b == b'\r' {
                            *b = b' ';
                        }
                    }
                }
                out.push(b'\n');
            }
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
