//! The `xray` sink: `PutTraceSegments` with `aws-sdk-xray`.
//!
//! In: a batch of at most 50 documents. Out: one API call whose `TraceSegmentDocuments` are the
//! documents as received. The request body is written here, in one pass, into one buffer sized
//! up front ([`request_body`]): each document is escaped straight from the received bytes into
//! its JSON string by `serde_json`. The SDK is still what signs (SigV4), sends and reads the
//! answer: the operation is built with an empty document list and its serialized body replaced
//! before signing. Its own JSON writer escapes byte by byte after a copy of each document into a
//! `String`, which was half of the daemon's CPU at 60k segments/s when measured (bench/README.md). Entries of
//! `UnprocessedTraceSegments` are matched back to the batch by segment id and returned as
//! refused.
//!
//! A failed call is classified into an [`ErrorKind`](crate::outcome::ErrorKind)
//! ([`error_kind`], shared with every call to AWS): throttling (HTTP 429 or
//! a `Throttling…` error code), other 4xx, 5xx, timeout, connection refused, unknown host,
//! other connection failures, or other; the upload stage's retry rules decide from that. The
//! SDK's own retries are off (see [`crate::aws`]): each call is one attempt. A call that failed
//! for want of credentials is classed by what failed underneath (STS throttled or down is
//! retried) and its message names that, STS and the role with `-r` ([`credentials_failure`]).
//!
//! An answer that arrived whole with a 2xx status but a body that cannot be read
//! ([`unreadable_success`]) is a call that succeeded: X-Ray stored the documents, so they are
//! returned as taken (nothing refused), with a warning at most once per
//! [`WARN_INTERVAL`](crate::ratelimit::WARN_INTERVAL). An answer cut off before its body was
//! complete is a connection failure and is tried again (at least once).

use std::sync::Arc;

use aws_sdk_xray::Client;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::error::display::DisplayErrorContext;
use bytes::Bytes;

use super::{Delivery, Refused, RetryHint, Sink, SinkError, SinkFuture};
use crate::aws::{AwsContext, credentials_failure, describe_error, error_kind, unreadable_success};
use crate::item::Item;
use crate::ratelimit::{RateLimit, Suppressed};

/// Sends batches to X-Ray.
#[derive(Debug, Clone)]
pub struct XraySink {
    client: Client,
    /// The role assumed for the calls (`-r`), named when its credentials cannot be had.
    role_arn: Option<String>,
    /// Paces the warning about 2xx answers with an unreadable body.
    unreadable_log: Arc<RateLimit>,
}

impl XraySink {
    /// A sink using the shared AWS configuration.
    pub fn new(aws: &AwsContext) -> Self {
        XraySink {
            client: Client::new(&aws.sdk),
            role_arn: aws.role_arn.clone(),
            unreadable_log: Arc::default(),
        }
    }
}

/// Matches each refused id to the first not yet matched document of the batch with that id.
fn match_refused(batch: &[Item], refused: &mut [Refused]) {
    if refused.is_empty() {
        return;
    }
    let ids: Vec<Option<Box<str>>> = batch
        .iter()
        .map(|item| item.as_document().and_then(|d| d.ids().id))
        .collect();
    let mut taken = vec![false; batch.len()];
    for r in refused.iter_mut() {
        let Some(id) = r.id.as_deref() else { continue };
        r.index = ids
            .iter()
            .enumerate()
            .position(|(i, d)| !taken[i] && d.as_deref() == Some(id));
        if let Some(i) = r.index {
            taken[i] = true;
        }
    }
}

/// The X-Ray document an item is sent as. Every item kind must say here how X-Ray receives it.
fn document(item: &Item) -> &[u8] {
    match item {
        Item::XrayDocument(doc) => &doc.body,
        // The document made from the span (see crate::otlp::to_xray), never the span itself.
        Item::Span(span) => &span.document.body,
    }
}

/// The `PutTraceSegments` request body for `batch`: `{"TraceSegmentDocuments":["…","…"]}`, each
/// document escaped into a JSON string. One allocation, sized for the usual escaping (a segment's
/// quotes); a document with more to escape grows it.
pub fn request_body(batch: &[Item]) -> Bytes {
    const HEAD: &[u8] = b"{\"TraceSegmentDocuments\":[";
    const TAIL: &[u8] = b"]}";
    let documents: usize = batch.iter().map(|item| document(item).len()).sum();
    let mut out =
        Vec::with_capacity(HEAD.len() + TAIL.len() + documents + documents / 8 + 3 * batch.len());
    out.extend_from_slice(HEAD);
    for (i, item) in batch.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let body = document(item);
        // Documents were checked to be UTF-8 on the way in; the lossy form is only the
        // never-taken fallback. Writing a `&str` into a `Vec` cannot fail.
        let text = match std::str::from_utf8(body) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(body),
        };
        if serde_json::to_writer(&mut out, text.as_ref()).is_err() {
            out.extend_from_slice(b"\"\"");
        }
    }
    out.extend_from_slice(TAIL);
    Bytes::from(out)
}

impl Sink for XraySink {
    fn name(&self) -> &'static str {
        "xray"
    }

    fn send<'a>(&'a self, batch: &'a [Item]) -> SinkFuture<'a> {
        Box::pin(async move {
            let body = request_body(batch);
            let length = body.len().to_string();
            let sent = self
                .client
                .put_trace_segments()
                .set_trace_segment_documents(Some(Vec::new()))
                .customize()
                .mutate_request(move |request| {
                    *request.body_mut() = SdkBody::from(body.clone());
                    request
                        .headers_mut()
                        .insert("content-length", length.clone());
                })
                .send()
                .await;
            let out = match sent {
                Ok(out) => out,
                Err(e) => match unreadable_success(&e) {
                    Some(status) => {
                        if let Some(suppressed) = self.unreadable_log.once() {
                            tracing::warn!(
                                "X-Ray answered PutTraceSegments with HTTP {status} and a body that \
                                 could not be read ({}); the {} segment(s) are counted as sent{}",
                                describe_error(&e),
                                batch.len(),
                                Suppressed(suppressed, "such answers")
                            );
                        }
                        return Ok(Delivery::default());
                    }
                    None => {
                        // No credentials: the message names where they were to come from (STS
                        // and the role with -r), as X-Ray was never called.
                        let message = credentials_failure(&e, self.role_arn.as_deref())
                            .unwrap_or_else(|| DisplayErrorContext(&e).to_string());
                        return Err(SinkError::Call {
                            sink: "xray",
                            kind: error_kind(&e),
                            message,
                            hint: RetryHint::ByKind,
                        });
                    }
                },
            };
            let mut refused: Vec<Refused> = out
                .unprocessed_trace_segments()
                .iter()
                .map(|u| Refused {
                    index: None,
                    id: u.id().map(str::to_owned),
                    code: u.error_code().unwrap_or("(no code)").to_owned(),
                    message: u.message().unwrap_or("(no message)").to_owned(),
                })
                .collect();
            match_refused(batch, &mut refused);
            Ok(Delivery {
                refused,
                ..Delivery::default()
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Document;

    #[test]
    fn request_body_is_the_documents_as_json_strings() {
        let seg = |body: &str| Item::XrayDocument(Document::unchecked(body.to_owned()));
        let docs = [
            r#"{"name":"a\"b","x":"\u0001é","n":1}"#,
            "{\"ctl\":\"tab\there\"}",
            "{}",
        ];
        let batch: Vec<Item> = docs.iter().map(|d| seg(d)).collect();
        let body = request_body(&batch);
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        assert_eq!(
            parsed,
            Some(serde_json::json!({ "TraceSegmentDocuments": docs }))
        );
        assert_eq!(
            request_body(&[]).as_ref(),
            br#"{"TraceSegmentDocuments":[]}"#
        );
    }

    #[test]
    fn refused_ids_match_distinct_documents() {
        let seg = |id: &str| Item::XrayDocument(Document::unchecked(format!(r#"{{"id":"{id}"}}"#)));
        let batch = [seg("a"), seg("b"), seg("a")];
        let r = |id: &str| Refused {
            index: None,
            id: Some(id.into()),
            code: String::new(),
            message: String::new(),
        };
        let mut refused = [r("a"), r("a"), r("c")];
        match_refused(&batch, &mut refused);
        let idx: Vec<_> = refused.iter().map(|r| r.index).collect();
        assert_eq!(idx, [Some(0), Some(2), None]);
    }
}
