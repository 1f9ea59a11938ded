//! The viewer's answers about traces (as JSON, and as a download) and the page's two `POST`s:
//! loading a JSON Lines file, clearing the store.
//!
//! In: requests [`super::Viewer::answer`] has let in (the `Host` check, the token) and routed
//! here, and the [`super::Store`]. Out: the list and trace answers the page reads, a trace as the
//! `file` sink's JSON Lines, and documents loaded into the store (through
//! [`crate::sink::viewer::load_lines`], on the blocking pool).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE, HOST, HeaderValue, ORIGIN};
use hyper::{HeaderMap, Request, Response, StatusCode};
use serde::Serialize;

use super::store::{self, Filter, Format, StoreStats};
use super::{Body, IMPORT_READ, JSON_LINES, Viewer, full, hints, json, text, text_owned};

impl Viewer {
    /// `GET api/traces`: the summaries a [`Filter`] in `query` lets through, the refusals, the
    /// store's counters.
    pub(super) fn list(&self, query: Option<&str>) -> Response<Body> {
        match Filter::parse(query) {
            Ok(filter) => json(&ListAnswer {
                traces: self.store.summaries_matching(&filter),
                filtered: !filter.is_empty(),
                refused: self.store.refusals(),
                store: self.store.stats(),
            }),
            Err(message) => text_owned(StatusCode::BAD_REQUEST, message + "\n"),
        }
    }

    /// `GET api/traces/ID` (the trace and its hints) or `api/traces/ID/download` (its JSON
    /// Lines); `rest` is what follows `api/traces/`.
    pub(super) fn trace(&self, rest: &str) -> Response<Body> {
        let (id, download) = match rest.strip_suffix("/download") {
            Some(id) => (id, true),
            None => (rest, false),
        };
        let id = percent_encoding::percent_decode_str(id).decode_utf8_lossy();
        match self.store.trace(&id) {
            Some(view) if download => json_lines(&id, &view),
            Some(view) => json(&TraceAnswer::of(view)),
            None => text(
                StatusCode::NOT_FOUND,
                "no such trace in the viewer's store (never received, or forgotten to stay \
                 within --viewer-memory)\n",
            ),
        }
    }

    /// A `POST` from the page: `api/import` or `api/clear` (`rest`), if it comes from the
    /// page's own origin.
    pub(super) async fn post<B>(&self, rest: &str, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if let Err(message) = same_origin(req.headers()) {
            return text(StatusCode::FORBIDDEN, message);
        }
        match rest {
            "api/import" => self.import(req).await,
            "api/clear" => json(&serde_json::json!({ "cleared": self.store.clear() })),
            _ => text(StatusCode::METHOD_NOT_ALLOWED, "use GET or HEAD\n"),
        }
    }

    /// `POST api/import`: a JSON Lines file (the `file` sink's format) into the store.
    async fn import<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let json_lines = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case(JSON_LINES));
        if !json_lines {
            return text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the file as Content-Type: application/x-ndjson (JSON Lines, as --sink \
                 file writes)\n",
            );
        }
        if self.importing.swap(true, Ordering::AcqRel) {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "another file is being loaded into the viewer: try again when it is done\n",
            );
        }
        let _done = Importing(&self.importing);
        let cap = self.store.budget();
        let body = match tokio::time::timeout(
            IMPORT_READ,
            http_body_util::Limited::new(req.into_body(), cap).collect(),
        )
        .await
        {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return text_owned(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the file is larger than the viewer's store ({} MB, --viewer-memory): \
                         load a smaller part of it, or start the daemon with a larger \
                         --viewer-memory\n",
                        cap >> 20
                    ),
                );
            }
            Ok(Err(e)) => {
                return text_owned(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the file: {e}\n"),
                );
            }
            Err(_) => {
                return text(
                    StatusCode::REQUEST_TIMEOUT,
                    "the file took over 60 s to arrive\n",
                );
            }
        };
        let store = Arc::clone(&self.store);
        let loaded =
            tokio::task::spawn_blocking(move || crate::sink::viewer::load_lines(&store, &body[..]))
                .await;
        match loaded {
            Ok(Ok(loaded)) => json(&serde_json::json!({
                "kept": loaded.kept,
                "skipped": loaded.skipped,
            })),
            Ok(Err(e)) => text_owned(
                StatusCode::BAD_REQUEST,
                format!("cannot read the file: {e}\n"),
            ),
            Err(_) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "loading the file failed\n",
            ),
        }
    }
}

/// Gives the import's place back when dropped.
#[derive(Debug)]
struct Importing<'a>(&'a AtomicBool);

impl Drop for Importing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Whether a `POST` comes from the viewer's own page: its `Origin` (which browsers send with
/// every `POST`) must be the request's own `Host` (over `http://`, or `https://` behind a
/// proxy that ends TLS), so another site open in the same browser cannot clear or fill the
/// store.
fn same_origin(headers: &HeaderMap) -> Result<(), &'static str> {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let (Some(origin), Some(host)) = (header(ORIGIN), header(HOST)) else {
        return Err("the viewer's POSTs come from its own page: this one has no Origin\n");
    };
    let site = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match site {
        Some(o) if o.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err("the viewer's POSTs come from its own page: this one came from another site\n"),
    }
}

/// A trace as JSON Lines, the `file` sink's format: a download of it.
fn json_lines(trace_id: &str, view: &store::TraceView) -> Response<Body> {
    let mut body = String::new();
    for doc in &view.documents {
        // A newline inside a document is written as a space, as the file sink does.
        body.extend(doc.raw.chars().map(|c| if c == '\n' { ' ' } else { c }));
        body.push('\n');
    }
    let name: String = trace_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let mut resp = Response::new(full(body));
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON_LINES));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"trace-{name}.jsonl\"")) {
        headers.insert(CONTENT_DISPOSITION, v);
    }
    resp
}

#[derive(Debug, Serialize)]
struct ListAnswer {
    traces: Vec<store::Summary>,
    /// Whether a filter chose these traces.
    filtered: bool,
    refused: Vec<store::Refusal>,
    store: StoreStats,
}

#[derive(Debug, Serialize)]
struct TraceAnswer {
    trace_id: String,
    summary: store::Summary,
    orphans: Vec<String>,
    documents: Vec<DocAnswer>,
    hints: Vec<hints::Hint>,
}

#[derive(Debug, Serialize)]
struct DocAnswer {
    seq: u64,
    format: Format,
    raw: String,
    segment: Box<serde_json::value::RawValue>,
    received_at: f64,
}

impl TraceAnswer {
    fn of(view: store::TraceView) -> Self {
        let texts: Vec<hints::DocText<'_>> = view
            .documents
            .iter()
            .map(|d| hints::DocText {
                raw: &d.raw,
                segment: &d.segment,
            })
            .collect();
        let hints = hints::of_trace(&texts, &view.orphans);
        TraceAnswer {
            hints,
            trace_id: view.summary.trace_id.clone(),
            summary: view.summary,
            orphans: view.orphans,
            documents: view
                .documents
                .into_iter()
                .filter_map(|d| {
                    // The store kept only documents that parse.
                    let segment =
                        serde_json::value::RawValue::from_string(d.segment.to_string()).ok()?;
                    Some(DocAnswer {
                        seq: d.seq,
                        format: d.format,
                        raw: d.raw.to_string(),
                        segment,
                        received_at: d.received_at,
                    })
                })
                .collect(),
        }
    }
}
