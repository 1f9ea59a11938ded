//! The `otlp` sink: every trace, to any OpenTelemetry backend over OTLP/HTTP (`--sink
//! otlp:URL`), beside X-Ray.
//!
//! In: a batch of items from its lane, which takes everything: X-Ray documents as the SDKs sent
//! them, the distros' `T1S`/`T1` datagrams, and OpenTelemetry spans received over OTLP. Out:
//! `POST` calls to the sink's URL, each one `ExportTraceServiceRequest` as protobuf, gzip'd
//! unless the sink says `none`, with the sink's own headers (an API key, say; their values are
//! never logged).
//!
//! What each item becomes:
//! - an OpenTelemetry span: itself, unchanged (its resource, scope, ids, attributes, events);
//! - an X-Ray document: its spans by [`crate::otlp::from_xray`] (the segment and each
//!   subsegment, exact times, the collector's attribute keys). A field it cannot use is left
//!   out (logged at debug level), never a reason to drop the document; a document with no usable
//!   trace id or id is dropped as `invalid_span`. A document still `in_progress` is held back
//!   (below): once its complete document has come it has nothing to send (it counts as sent, the
//!   complete one standing for it); one still open when its hold is over goes as zero-length
//!   spans marked `aws.xray.inprogress`;
//! - a distro datagram: `T1S` and `T1` are the spans inside; `T1U` and `M1` are for X-Ray
//!   alone and count as sent with nothing to send. A `T1S` that does not decode is dropped as
//!   `invalid_span`.
//!
//! **Service names**: a subsegment document (the Python SDK streams them before their segment)
//! does not carry its service's name. The sink remembers, for recent traces, which segment each
//! id belongs to ([`Names`], bounded): a subsegment whose parent is known takes its segment's
//! name, whether the segment came in this batch or an earlier one. Within a batch, segments are
//! read first.
//!
//! **Holding back**: a subsegment whose parent is not known yet, and an in-progress document,
//! are given back to the upload stage as held ([`Delivery::held`]): they stay in the sink's
//! lane, charged to the budget, unsent and not retried, and come again in the next batch (a
//! linger later). Each is held for at most [`HOLD`], at most [`MAX_HELD`] at once ([`Holds`]);
//! then the subsegment goes under `--otlp-service-name` (default `unknown_service:xray`). Once
//! the daemon drains, nothing is held. A call that fails leaves the held items held
//! ([`super::SinkError::Held`]), and a batch with nothing to send makes no call
//! ([`Delivery::no_call`]).
//!
//! Delivery follows OTLP's rules ([`super::otlp_call`]): `429`, `502`, `503`, `504` and no
//! answer are retried (after `Retry-After` when given), any other error status is final, a
//! `partial_success` refuses that many items for good. A batch is cut into requests of at most
//! [`Limits::BACKEND`]. Converting, encoding and compressing run on the blocking pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::http::SharedHttpConnector;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use prost::Message as _;
use tokio_util::sync::CancellationToken;

use super::otlp_call::{self, Accepted, Export, Failure, gzip};
use super::{Delivery, Sink, SinkFuture};
use crate::aws::outbound::Outbound;
use crate::document::Document;
use crate::item::Item;
use crate::otlp::distro;
use crate::otlp::export::{self, Limits};
use crate::otlp::from_xray::{self, NodeKind, Settings};
use crate::otlp::span::SpanRecord;
use crate::outcome::DropReason;

/// The sink's name in logs and errors (its lane is named `otlp:URL` in stats).
pub const NAME: &str = "otlp";
/// Items per batch cut from the lane (the OpenTelemetry SDKs' batch size).
pub const BATCH_ITEMS: usize = 512;
/// Segment ids remembered for naming subsegments, per generation (two generations are kept).
const NAMES_PER_GENERATION: usize = 50_000;
/// How long a document may be held back: a streamed subsegment waiting for its segment, an
/// in-progress document for its complete one.
pub const HOLD: Duration = Duration::from_secs(5);
/// Most documents held back at once (fewer than a batch, so a full batch always sends some).
pub const MAX_HELD: usize = BATCH_ITEMS / 2;

/// How a request body is compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// `Content-Encoding: gzip` (the default).
    #[default]
    Gzip,
    /// Sent as it is.
    None,
}

impl std::str::FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "gzip" => Ok(Compression::Gzip),
            "none" | "" => Ok(Compression::None),
            other => Err(format!("unknown compression {other:?}: use gzip or none")),
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compression::Gzip => "gzip",
            Compression::None => "none",
        })
    }
}

/// One OTLP sink as configured: where, with which headers, how.
#[derive(Clone, PartialEq, Eq)]
pub struct OtlpSettings {
    /// The full URL spans are posted to (`…/v1/traces` already applied).
    pub url: String,
    /// Headers sent with every call (their values are secrets: never printed).
    pub headers: Vec<(String, String)>,
    /// How bodies are compressed.
    pub compression: Compression,
    /// How long one call may take, answer included.
    pub timeout: Duration,
    /// `service.name` of a subsegment whose segment is not known.
    pub service_name: String,
}

impl std::fmt::Debug for OtlpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("OtlpSettings")
            .field("url", &self.url)
            .field("headers", &names)
            .field("compression", &self.compression)
            .field("timeout", &self.timeout)
            .field("service_name", &self.service_name)
            .finish()
    }
}

/// An OTLP sink as the command line gives it (`otlp` or `otlp:URL`), and its settings once the
/// configuration is resolved ([`crate::config::otlp_sink`]).
#[derive(Clone, PartialEq, Eq)]
pub struct OtlpTarget {
    /// The URL as given, if any (a bare `otlp` takes the OpenTelemetry variables').
    pub given: Option<String>,
    /// Headers given with it in the config file's `Sinks` (values are secrets).
    pub headers: Vec<(String, String)>,
    /// Compression given with it in the config file's `Sinks`.
    pub compression: Option<Compression>,
    /// Where it was given (`--sink`, or `Sinks` in the file at a line), for messages.
    pub source: crate::config::Source,
    /// The resolved settings; `None` until the configuration is resolved.
    pub settings: Option<OtlpSettings>,
}

impl std::fmt::Debug for OtlpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("OtlpTarget")
            .field("given", &self.given)
            .field("headers", &names)
            .field("compression", &self.compression)
            .field("source", &self.source)
            .field("settings", &self.settings)
            .finish()
    }
}

/// Why an OTLP sink cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum OtlpSinkError {
    /// The URL does not parse or has no host.
    #[error("--sink otlp: {url} is not a usable URL: {why}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// A header name or value cannot be sent (its value is not shown).
    #[error("--sink otlp: the header {name:?} cannot be sent: {why}")]
    Header {
        /// The header's name.
        name: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The outbound HTTP client could not be made.
    #[error("--sink otlp: {0}")]
    Client(String),
}

/// Sends every trace to one OTLP backend.
#[derive(Debug)]
pub struct OtlpSink {
    url: Uri,
    host: String,
    headers: HeaderMap,
    compression: Compression,
    connector: SharedHttpConnector,
    timeout: Duration,
    service_name: String,
    limits: Limits,
    state: Arc<Mutex<State>>,
    draining: CancellationToken,
}

impl OtlpSink {
    /// A sink for `settings`, its calls leaving through `outbound` (the proxy variables).
    pub fn new(settings: &OtlpSettings, outbound: &Outbound) -> Result<Self, OtlpSinkError> {
        let url_error = |why: String| OtlpSinkError::Url {
            url: settings.url.clone(),
            why,
        };
        let url: Uri = settings
            .url
            .parse()
            .map_err(|e: http::uri::InvalidUri| url_error(e.to_string()))?;
        let host = url
            .authority()
            .map(|a| a.as_str().to_owned())
            .ok_or_else(|| url_error("it has no host".into()))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &settings.headers {
            let header_error = |why| OtlpSinkError::Header {
                name: name.clone(),
                why,
            };
            let key = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| header_error("not a header name"))?;
            let mut value = HeaderValue::from_str(value.trim())
                .map_err(|_| header_error("its value has characters a header cannot carry"))?;
            value.set_sensitive(true);
            headers.append(key, value);
        }
        Ok(OtlpSink {
            url,
            host,
            headers,
            compression: settings.compression,
            connector: outbound.connector(crate::aws::CONNECT_TIMEOUT, settings.timeout),
            timeout: settings.timeout,
            service_name: settings.service_name.clone(),
            limits: Limits::BACKEND,
            state: Arc::default(),
            draining: CancellationToken::new(),
        })
    }

    /// Holds nothing back once `draining` is cancelled (the daemon's shutdown): what is left
    /// goes out as it is.
    #[must_use]
    pub fn draining_on(mut self, draining: CancellationToken) -> Self {
        self.draining = draining;
        self
    }

    /// The URL spans are posted to.
    pub fn url(&self) -> String {
        self.url.to_string()
    }

    /// Sends one request's spans; the count and message of a partial success.
    async fn send_request(&self, spans: &[&SpanRecord]) -> Result<Accepted, Failure> {
        let request = export::request_of(spans);
        let compression = self.compression;
        let body = tokio::task::spawn_blocking(move || {
            let bytes = request.encode_to_vec();
            match compression {
                Compression::Gzip => gzip(&bytes),
                Compression::None => Ok(Bytes::from(bytes)),
            }
        })
        .await
        .map_err(|e| Failure::local(format!("encoding the request failed: {e}")))?
        .map_err(|e| Failure::local(format!("compressing the request failed: {e}")))?;
        let mut builder = http::Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(HOST, &self.host)
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header(CONTENT_LENGTH, body.len())
            .header(
                USER_AGENT,
                concat!("xray-daemon-rs/", env!("CARGO_PKG_VERSION")),
            );
        if compression == Compression::Gzip {
            builder = builder.header(CONTENT_ENCODING, "gzip");
        }
        let mut request = builder
            .body(SdkBody::from(body))
            .map_err(|e| Failure::local(e.to_string()))?;
        for (name, value) in &self.headers {
            request.headers_mut().append(name, value.clone());
        }
        otlp_call::call(&self.connector, request, self.timeout).await
    }
}

impl Export for OtlpSink {
    fn sink_name(&self) -> &'static str {
        NAME
    }

    async fn export(&self, spans: &[&SpanRecord]) -> Result<Accepted, Failure> {
        self.send_request(spans).await
    }
}

impl Sink for OtlpSink {
    fn name(&self) -> &'static str {
        NAME
    }

    fn send<'a>(&'a self, batch: &'a [Item]) -> SinkFuture<'a> {
        Box::pin(async move {
            let mut delivery = Delivery::default();
            // The documents, converted on the blocking pool: (batch index, spans).
            let documents: Vec<(usize, Document)> = batch
                .iter()
                .enumerate()
                .filter_map(|(i, item)| match item {
                    Item::XrayDocument(doc) => Some((i, doc.clone())),
                    Item::Span(_) => None,
                })
                .collect();
            let state = Arc::clone(&self.state);
            let service_name = self.service_name.clone();
            let clock = Clock {
                now: Instant::now(),
                may_hold: !self.draining.is_cancelled(),
            };
            let converted = tokio::task::spawn_blocking(move || {
                convert_documents(&documents, &state, &service_name, clock)
            })
            .await
            .map_err(|e| super::SinkError::Call {
                sink: NAME,
                kind: crate::outcome::ErrorKind::Other,
                message: format!("converting documents to spans failed: {e}"),
                hint: super::RetryHint::Never,
            })?;
            let mut spans: Vec<&SpanRecord> = Vec::with_capacity(batch.len());
            let mut at: Vec<usize> = Vec::with_capacity(batch.len());
            for (i, item) in batch.iter().enumerate() {
                if let Item::Span(span) = item {
                    spans.push(&span.record);
                    at.push(i);
                }
            }
            delivery.held = converted.held;
            for (i, outcome) in &converted.out {
                match outcome {
                    Ok(records) => {
                        for record in records {
                            spans.push(record);
                            at.push(*i);
                        }
                    }
                    Err(reason) => delivery.dropped.push((*i, *reason)),
                }
            }
            // Nothing to send (every document held back, or none with spans): no call.
            delivery.no_call = spans.is_empty();
            let sent =
                otlp_call::send_planned(self, &spans, &at, &self.limits, &mut delivery).await;
            match sent {
                Ok(()) => Ok(delivery),
                // The held documents were not in the failed call: they stay held.
                Err(error) if !delivery.held.is_empty() => Err(super::SinkError::Held {
                    held: std::mem::take(&mut delivery.held),
                    error: Box::new(error),
                }),
                Err(error) => Err(error),
            }
        })
    }
}

/// What converting a batch's documents gave: the spans of each (by batch index) or why it has
/// none to send (a drop reason), and the documents held back for a later batch.
#[derive(Debug, Default)]
struct Conversion {
    out: Vec<(usize, Result<Vec<SpanRecord>, DropReason>)>,
    held: Vec<usize>,
}

/// When a batch is converted, and whether documents may still be held back (not once the
/// daemon is draining: what is left goes out as it is).
#[derive(Clone, Copy, Debug)]
struct Clock {
    now: Instant,
    may_hold: bool,
}

/// The spans of each document of a batch (see [`Conversion`]). Segments are converted first,
/// so that the subsegments of this batch find their segment's name; then the subsegment
/// documents, again while that names more of them. A subsegment whose segment is still unknown,
/// and a document still in progress whose complete one has not come, are held back (see
/// [`Holds`]); once their hold is over they go out as they are: the subsegment under the
/// default name, the open document marked `aws.xray.inprogress`.
fn convert_documents(
    documents: &[(usize, Document)],
    state: &Mutex<State>,
    service_name: &str,
    clock: Clock,
) -> Conversion {
    let mut done = Conversion {
        out: Vec::with_capacity(documents.len()),
        held: Vec::new(),
    };
    let mut subsegments: Vec<(usize, &Document, from_xray::Head)> = Vec::new();
    let mut open: Vec<(usize, &Document, from_xray::Head)> = Vec::new();
    let mut state = state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let State { names, holds } = &mut *state;
    for (i, doc) in documents {
        if let Some(spans) = distro::spans_of(doc) {
            done.out
                .push((*i, spans.map_err(|_| DropReason::InvalidSpan)));
            continue;
        }
        if doc.kind() != crate::document::DocumentKind::Json {
            // T1U and M1: for X-Ray alone.
            done.out.push((*i, Ok(Vec::new())));
            continue;
        }
        match from_xray::head(&doc.body) {
            Err(e) => {
                tracing::debug!("otlp sink: a document gives no spans: {e}");
                done.out.push((*i, Err(DropReason::InvalidSpan)));
            }
            Ok(head) if head.in_progress => {
                // An open segment already names its service for the subsegments under it.
                if head.kind == NodeKind::Segment {
                    names.learn_open(&head.trace_id, &head.id, &head.name);
                }
                open.push((*i, doc, head));
            }
            Ok(head) if head.kind == NodeKind::Subsegment => subsegments.push((*i, doc, head)),
            Ok(head) => {
                let spans = convert(doc, &settings_named(&head.name));
                if let Ok(spans) = &spans {
                    names.learn(&head.trace_id, spans, &head.name);
                }
                done.out.push((*i, spans));
            }
        }
    }
    // Subsegment documents: those whose parent is known, until no more are; then the rest are
    // held back, or go under the default name once their hold is over.
    loop {
        let before = subsegments.len();
        let mut waiting = Vec::with_capacity(before);
        for (i, doc, head) in subsegments {
            let known = head
                .parent_id
                .and_then(|p| names.get(&head.trace_id, &p))
                .map(|name| name.to_owned());
            match known {
                Some(name) => {
                    holds.release(&Held::of(&head));
                    let spans = convert(doc, &settings_named(&name));
                    if let Ok(spans) = &spans {
                        names.learn(&head.trace_id, spans, &name);
                    }
                    done.out.push((i, spans));
                }
                None => waiting.push((i, doc, head)),
            }
        }
        subsegments = waiting;
        if subsegments.is_empty() || subsegments.len() == before {
            break;
        }
    }
    for (i, doc, head) in subsegments {
        if clock.may_hold && done.held.len() < MAX_HELD && holds.keep(Held::of(&head), clock.now) {
            done.held.push(i);
            continue;
        }
        // (A hold that is over stays recorded, so the document is not held again if it comes
        // back, say after a failed call; [`Holds`] forgets it later.)
        done.out
            .push((i, convert(doc, &settings_named(service_name))));
    }
    // Documents in progress: nothing to send once their complete document has come (it stands
    // for them); else held back, then sent marked.
    for (i, doc, head) in open {
        let key = Held::of(&head);
        if names.completed(&head.trace_id, &head.id) {
            holds.release(&key);
            done.out.push((i, Ok(Vec::new())));
            continue;
        }
        if clock.may_hold && done.held.len() < MAX_HELD && holds.keep(key, clock.now) {
            done.held.push(i);
            continue;
        }
        let name = match head.kind {
            NodeKind::Segment => head.name.clone(),
            NodeKind::Subsegment => head
                .parent_id
                .and_then(|p| names.get(&head.trace_id, &p))
                .unwrap_or(service_name)
                .to_owned(),
        };
        let settings = Settings {
            service_name: name,
            in_progress: from_xray::InProgress::Mark,
        };
        done.out.push((i, convert(doc, &settings)));
    }
    share_resources(&mut done.out);
    done
}

/// Makes the spans of documents with equal resources (and scopes) share one, so a request
/// holds each once: the documents of one service carry the same `service.name`, cloud and SDK
/// attributes, and each conversion makes its own copy.
fn share_resources(out: &mut [(usize, Result<Vec<SpanRecord>, DropReason>)]) {
    let mut resources: HashMap<Vec<u8>, Arc<crate::otlp::span::SpanResource>> = HashMap::new();
    let mut scopes: HashMap<Vec<u8>, Arc<crate::otlp::span::SpanScope>> = HashMap::new();
    for record in out
        .iter_mut()
        .filter_map(|(_, r)| r.as_mut().ok())
        .flatten()
    {
        let mut key = record.resource.resource.encode_to_vec();
        key.extend_from_slice(record.resource.schema_url.as_bytes());
        record.resource = Arc::clone(
            resources
                .entry(key)
                .or_insert_with(|| Arc::clone(&record.resource)),
        );
        let mut key = record
            .scope
            .scope
            .as_ref()
            .map(prost::Message::encode_to_vec)
            .unwrap_or_default();
        key.extend_from_slice(record.scope.schema_url.as_bytes());
        record.scope = Arc::clone(
            scopes
                .entry(key)
                .or_insert_with(|| Arc::clone(&record.scope)),
        );
    }
}

fn settings_named(name: &str) -> Settings {
    Settings {
        service_name: name.to_owned(),
        ..Settings::default()
    }
}

/// One document's spans, or `invalid_span` when it has none (left-out fields are logged).
fn convert(doc: &Document, settings: &Settings) -> Result<Vec<SpanRecord>, DropReason> {
    match from_xray::convert(&doc.body, settings) {
        Ok(converted) => {
            if !converted.left_out.is_empty() {
                tracing::debug!(
                    "otlp sink: fields left out of segment {} of trace {}: {}",
                    converted.head.id_hex(),
                    converted.head.xray_trace_id(),
                    converted.left_out
                );
            }
            Ok(converted.spans)
        }
        Err(e) => {
            tracing::debug!("otlp sink: a document gives no spans: {e}");
            Err(DropReason::InvalidSpan)
        }
    }
}

/// What the sink remembers across batches: the services of recent span ids, and the documents
/// it holds back.
#[derive(Debug, Default)]
struct State {
    names: Names,
    holds: Holds,
}

/// A recent span id's service, and whether a complete document carried it (an open segment
/// names its service before it is complete).
#[derive(Clone, Debug)]
struct Known {
    name: Arc<str>,
    complete: bool,
}

/// Which service recent span ids belong to, by trace: two generations of at most
/// [`NAMES_PER_GENERATION`] ids each, the older forgotten when the newer fills.
#[derive(Debug, Default)]
struct Names {
    current: HashMap<([u8; 16], [u8; 8]), Known>,
    previous: HashMap<([u8; 16], [u8; 8]), Known>,
}

impl Names {
    fn known(&self, trace_id: &[u8; 16], id: &[u8; 8]) -> Option<&Known> {
        let key = (*trace_id, *id);
        self.current.get(&key).or_else(|| self.previous.get(&key))
    }

    /// The service of span `id` in trace `trace_id`, if known.
    fn get(&self, trace_id: &[u8; 16], id: &[u8; 8]) -> Option<&str> {
        self.known(trace_id, id).map(|k| &*k.name)
    }

    /// Whether a complete document with span `id` of trace `trace_id` has been converted.
    fn completed(&self, trace_id: &[u8; 16], id: &[u8; 8]) -> bool {
        self.known(trace_id, id).is_some_and(|k| k.complete)
    }

    fn insert(&mut self, key: ([u8; 16], [u8; 8]), known: Known) {
        if self.current.len() >= NAMES_PER_GENERATION {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, known);
    }

    /// Remembers that `spans` (of trace `trace_id`, from a complete document) belong to service
    /// `name`.
    fn learn(&mut self, trace_id: &[u8; 16], spans: &[SpanRecord], name: &str) {
        let name: Arc<str> = Arc::from(name);
        for span in spans {
            let Ok(id) = <[u8; 8]>::try_from(span.span.span_id.as_slice()) else {
                continue;
            };
            let known = Known {
                name: Arc::clone(&name),
                complete: true,
            };
            self.insert((*trace_id, id), known);
        }
    }

    /// Remembers that the open segment `id` names service `name` (unless known already).
    fn learn_open(&mut self, trace_id: &[u8; 16], id: &[u8; 8], name: &str) {
        if self.known(trace_id, id).is_none() {
            let known = Known {
                name: Arc::from(name),
                complete: false,
            };
            self.insert((*trace_id, *id), known);
        }
    }
}

/// A document held back: its trace, its id, and whether it is the in-progress one (its
/// complete document has the same ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Held {
    trace_id: [u8; 16],
    id: [u8; 8],
    in_progress: bool,
}

impl Held {
    fn of(head: &from_xray::Head) -> Self {
        Held {
            trace_id: head.trace_id,
            id: head.id,
            in_progress: head.in_progress,
        }
    }
}

/// The documents held back, and since when: each for at most [`HOLD`], and at most
/// [`MAX_HELD`] at once (fewer than a batch, so a full batch always sends something). The
/// documents themselves stay in the buffer, in the sink's lane, charged to the budget; only
/// their ids are kept here.
#[derive(Debug, Default)]
struct Holds {
    since: HashMap<Held, Instant>,
}

impl Holds {
    /// Whether the document `key` is to be held back (again) at `now`: yes while its hold
    /// lasts, and for a new one while there is room.
    fn keep(&mut self, key: Held, now: Instant) -> bool {
        if let Some(since) = self.since.get(&key) {
            return now.saturating_duration_since(*since) < HOLD;
        }
        if self.since.len() >= MAX_HELD {
            // Holds of documents the buffer gave up while they waited (spillover) end here.
            self.since
                .retain(|_, since| now.saturating_duration_since(*since) < HOLD * 2);
            if self.since.len() >= MAX_HELD {
                return false;
            }
        }
        self.since.insert(key, now);
        true
    }

    /// The document `key` goes out now: its hold, if any, is over.
    fn release(&mut self, key: &Held) {
        self.since.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(json: &str) -> (usize, Document) {
        (0, Document::unchecked(json.to_owned()))
    }

    fn service(spans: &[SpanRecord]) -> Vec<String> {
        spans
            .iter()
            .map(|s| s.service_name().unwrap_or("").to_owned())
            .collect()
    }

    const TRACE: &str = "1-5f84c7a1-0123456789abcdef01234567";

    /// A batch converted while draining: nothing is held back.
    fn draining() -> Clock {
        Clock {
            now: Instant::now(),
            may_hold: false,
        }
    }

    /// A batch converted `after` the test's `start`, while documents may be held back.
    fn at(start: Instant, after: Duration) -> Clock {
        Clock {
            now: start + after,
            may_hold: true,
        }
    }

    /// The services of the spans of the document at batch index `i`, or its drop reason.
    fn services_at(out: &Conversion, i: usize) -> Option<Result<Vec<String>, DropReason>> {
        out.out
            .iter()
            .find(|(k, _)| *k == i)
            .map(|(_, r)| r.as_ref().map(|s| service(s)).map_err(|e| *e))
    }

    #[test]
    fn a_subsegment_is_held_until_its_segment_comes_or_its_hold_ends() {
        let state = Mutex::new(State::default());
        let start = Instant::now();
        let sub = format!(
            r#"{{"type":"subsegment","trace_id":"{TRACE}","id":"00000000000000b2","parent_id":"00000000000000a1","name":"query","start_time":1.5,"end_time":1.6}}"#
        );
        let segment = format!(
            r#"{{"trace_id":"{TRACE}","id":"00000000000000a1","name":"flask-app","start_time":1,"end_time":2}}"#
        );
        // Alone in its batch, the subsegment is held back; with its segment a batch later, both
        // go, named after the segment.
        let first = convert_documents(&[doc(&sub)], &state, "fallback", at(start, Duration::ZERO));
        assert_eq!((first.held.as_slice(), first.out.len()), (&[0][..], 0));
        let second = convert_documents(
            &[(0, doc(&sub).1), (1, doc(&segment).1)],
            &state,
            "fallback",
            at(start, Duration::from_secs(1)),
        );
        assert!(second.held.is_empty());
        assert_eq!(services_at(&second, 0), Some(Ok(vec!["flask-app".into()])));
        // An orphan is held while its hold lasts, then goes under the default name.
        let orphan = sub.replace("00000000000000a1", "00000000000000e1");
        for secs in [0, 2, 4] {
            let c = convert_documents(
                &[doc(&orphan)],
                &state,
                "fallback",
                at(start, Duration::from_secs(secs)),
            );
            assert_eq!(c.held, [0], "held at {secs} s");
        }
        let c = convert_documents(&[doc(&orphan)], &state, "fallback", at(start, HOLD));
        assert!(c.held.is_empty());
        assert_eq!(services_at(&c, 0), Some(Ok(vec!["fallback".into()])));
        // Back again (after a failed call, say): its hold is over, it is not held anew.
        let later = at(start, HOLD + Duration::from_secs(1));
        let c = convert_documents(&[doc(&orphan)], &state, "fallback", later);
        assert!(c.held.is_empty(), "held again: {:?}", c.held);
        // While draining nothing is held.
        let other = sub.replace("00000000000000a1", "00000000000000f1");
        let c = convert_documents(&[doc(&other)], &state, "fallback", draining());
        assert_eq!(services_at(&c, 0), Some(Ok(vec!["fallback".into()])));
    }

    #[test]
    fn at_most_max_held_documents_are_held_at_once() {
        let state = Mutex::new(State::default());
        let start = Instant::now();
        let batch: Vec<(usize, Document)> = (0..MAX_HELD + 10)
            .map(|n| {
                let json = format!(
                    r#"{{"type":"subsegment","trace_id":"{TRACE}","id":"{:016x}","parent_id":"00000000000000e1","name":"q","start_time":1.5,"end_time":1.6}}"#,
                    n + 1
                );
                (n, Document::unchecked(json))
            })
            .collect();
        let c = convert_documents(&batch, &state, "fallback", at(start, Duration::ZERO));
        assert_eq!((c.held.len(), c.out.len()), (MAX_HELD, 10));
        // Copies of one document count one each: a batch never holds more than MAX_HELD.
        let copies: Vec<(usize, Document)> = (0..MAX_HELD + 10)
            .map(|n| (n, batch[0].1.clone()))
            .collect();
        let c = convert_documents(&copies, &state, "fallback", at(start, Duration::ZERO));
        assert_eq!((c.held.len(), c.out.len()), (MAX_HELD, 10));
        // Holds long over (documents the buffer gave up) make room again.
        let late = at(start, HOLD * 3);
        let fresh = format!(
            r#"{{"type":"subsegment","trace_id":"{TRACE}","id":"0000000000009999","parent_id":"00000000000000e1","name":"q","start_time":1.5,"end_time":1.6}}"#
        );
        let c = convert_documents(&[doc(&fresh)], &state, "fallback", late);
        assert_eq!(c.held, [0]);
    }

    #[test]
    fn an_in_progress_document_waits_for_its_complete_one_or_goes_marked() {
        let state = Mutex::new(State::default());
        let start = Instant::now();
        let open = format!(
            r#"{{"trace_id":"{TRACE}","id":"00000000000000a1","name":"app","start_time":1,"in_progress":true}}"#
        );
        let complete = format!(
            r#"{{"trace_id":"{TRACE}","id":"00000000000000a1","name":"app","start_time":1,"end_time":2}}"#
        );
        // A subsegment of the open segment takes its name at once.
        let sub = format!(
            r#"{{"type":"subsegment","trace_id":"{TRACE}","id":"00000000000000b1","parent_id":"00000000000000a1","name":"q","start_time":1.1,"end_time":1.2}}"#
        );
        let c = convert_documents(
            &[(0, doc(&open).1), (1, doc(&sub).1)],
            &state,
            "fallback",
            at(start, Duration::ZERO),
        );
        assert_eq!(c.held, [0]);
        assert_eq!(services_at(&c, 1), Some(Ok(vec!["app".into()])));
        // The complete document comes: it is sent, and the open one has nothing left to send.
        let c = convert_documents(
            &[(0, doc(&open).1), (1, doc(&complete).1)],
            &state,
            "fallback",
            at(start, Duration::from_secs(1)),
        );
        assert!(c.held.is_empty());
        assert_eq!(services_at(&c, 0), Some(Ok(vec![])));
        assert_eq!(services_at(&c, 1), Some(Ok(vec!["app".into()])));
        // One that never completes goes marked once its hold is over.
        let never = open.replace("00000000000000a1", "00000000000000a9");
        assert_eq!(
            convert_documents(&[doc(&never)], &state, "f", at(start, Duration::ZERO)).held,
            [0]
        );
        let c = convert_documents(&[doc(&never)], &state, "f", at(start, HOLD));
        let spans = match &c.out[..] {
            [(0, Ok(spans))] => spans,
            other => panic!("{other:?}"),
        };
        assert_eq!(service(spans), ["app"]);
        let marked = spans[0].span.attributes.iter().any(|kv| {
            kv.key == "aws.xray.inprogress"
                && kv.value.as_ref().and_then(|v| v.value.as_ref())
                    == Some(&crate::otlp::proto::any_value::Value::BoolValue(true))
        });
        assert!(marked, "{:?}", spans[0].span.attributes);
    }

    #[test]
    fn a_streamed_subsegment_takes_its_segments_name_in_the_same_or_a_later_batch() {
        let names = Mutex::new(State::default());
        let sub = format!(
            r#"{{"type":"subsegment","trace_id":"{TRACE}","id":"00000000000000b2","parent_id":"00000000000000b1","name":"query","start_time":1.5,"end_time":1.6}}"#
        );
        let sub_of_sub = format!(
            r#"{{"type":"subsegment","trace_id":"{TRACE}","id":"00000000000000b1","parent_id":"00000000000000a1","name":"remote","start_time":1.4,"end_time":1.7,"subsegments":[{{"id":"00000000000000c1","name":"inner","start_time":1.45,"end_time":1.46}}]}}"#
        );
        let segment = format!(
            r#"{{"trace_id":"{TRACE}","id":"00000000000000a1","name":"flask-app","start_time":1,"end_time":2}}"#
        );
        // Subsegments first (as the Python SDK streams them), the segment last: all named.
        let batch = [
            (0, doc(&sub).1),
            (1, doc(&sub_of_sub).1),
            (2, doc(&segment).1),
        ];
        let out = convert_documents(&batch, &names, "fallback", draining()).out;
        let by_index: HashMap<usize, Vec<String>> = out
            .iter()
            .map(|(i, r)| (*i, r.as_ref().map(|s| service(s)).unwrap_or_default()))
            .collect();
        assert_eq!(by_index[&0], ["flask-app"]);
        assert_eq!(by_index[&1], ["flask-app", "flask-app"]);
        assert_eq!(by_index[&2], ["flask-app"]);
        // A later batch: a subsegment of the embedded one still finds the name.
        let late = format!(
            r#"{{"type":"subsegment","trace_id":"{TRACE}","id":"00000000000000d1","parent_id":"00000000000000c1","name":"late","start_time":1.47,"end_time":1.48}}"#
        );
        let out = convert_documents(&[doc(&late)], &names, "fallback", draining()).out;
        assert_eq!(
            out[0].1.as_ref().map(|s| service(s)),
            Ok(vec!["flask-app".to_owned()])
        );
        // An orphan takes the fallback.
        let orphan = late.replace("00000000000000c1", "00000000000000e1");
        let out = convert_documents(&[doc(&orphan)], &names, "fallback", draining()).out;
        assert_eq!(
            out[0].1.as_ref().map(|s| service(s)),
            Ok(vec!["fallback".to_owned()])
        );
    }

    #[test]
    fn documents_of_one_service_share_one_resource() {
        let names = Mutex::new(State::default());
        let doc = |id: &str, name: &str| {
            Document::unchecked(format!(
                r#"{{"trace_id":"{TRACE}","id":"{id}","name":"{name}","start_time":1,"end_time":2}}"#
            ))
        };
        let out = convert_documents(
            &[
                (0, doc("00000000000000a1", "app")),
                (1, doc("00000000000000a2", "app")),
                (2, doc("00000000000000a3", "other")),
            ],
            &names,
            "x",
            draining(),
        )
        .out;
        let resource = |i: usize| {
            out.iter()
                .find(|(k, _)| *k == i)
                .and_then(|(_, r)| r.as_ref().ok())
                .and_then(|s| s.first())
                .map(|s| Arc::clone(&s.resource))
        };
        let (a, b, c) = (resource(0), resource(1), resource(2));
        assert!(a.is_some() && b.is_some() && c.is_some());
        let same = |x: &Option<Arc<crate::otlp::span::SpanResource>>,
                    y: &Option<Arc<crate::otlp::span::SpanResource>>| {
            matches!((x, y), (Some(x), Some(y)) if Arc::ptr_eq(x, y))
        };
        assert!(same(&a, &b), "one service, one resource");
        assert!(!same(&a, &c), "another service keeps its own");
    }

    #[test]
    fn in_progress_unusable_and_distro_documents() {
        let names = Mutex::new(State::default());
        let open = format!(
            r#"{{"trace_id":"{TRACE}","id":"00000000000000a1","name":"app","start_time":1,"in_progress":true}}"#
        );
        let out = convert_documents(
            &[
                (0, Document::unchecked(open)),
                (1, Document::unchecked(r#"{"name":"no ids"}"#)),
                (2, Document::unchecked("T1U AAAA")),
                (3, Document::unchecked("T1S !!not base64!!")),
            ],
            &names,
            "x",
            draining(),
        )
        .out;
        let by_index: HashMap<usize, Result<usize, DropReason>> = out
            .into_iter()
            .map(|(i, r)| (i, r.map(|s| s.len())))
            .collect();
        assert_eq!(
            by_index[&0],
            Ok(1),
            "while draining, sent marked in progress"
        );
        assert_eq!(by_index[&1], Err(DropReason::InvalidSpan));
        assert_eq!(by_index[&2], Ok(0), "for X-Ray alone");
        assert_eq!(by_index[&3], Err(DropReason::InvalidSpan));
    }

    #[test]
    fn names_forget_the_older_generation_only() {
        let mut names = Names::default();
        let trace = [1u8; 16];
        // (Spans of complete documents.)
        let span = |n: u64| {
            let mut record = SpanRecord::new(
                Arc::default(),
                Arc::default(),
                crate::otlp::proto::Span::default(),
            );
            record.span.span_id = n.to_be_bytes().to_vec();
            record
        };
        let first: Vec<SpanRecord> = (1..=NAMES_PER_GENERATION as u64).map(span).collect();
        names.learn(&trace, &first, "a");
        names.learn(&trace, &[span(u64::MAX)], "b");
        assert_eq!(names.get(&trace, &1u64.to_be_bytes()), Some("a"));
        assert_eq!(names.get(&trace, &u64::MAX.to_be_bytes()), Some("b"));
        let second: Vec<SpanRecord> = (0..NAMES_PER_GENERATION as u64)
            .map(|n| span(1_000_000_000 + n))
            .collect();
        names.learn(&trace, &second, "c");
        assert_eq!(names.get(&trace, &1u64.to_be_bytes()), None);
        assert_eq!(names.get(&trace, &u64::MAX.to_be_bytes()), Some("b"));
    }

    #[test]
    fn compression_parses_and_header_values_stay_out_of_debug() {
        assert_eq!("GZIP".parse(), Ok(Compression::Gzip));
        assert_eq!("none".parse(), Ok(Compression::None));
        assert!("brotli".parse::<Compression>().is_err());
        let settings = OtlpSettings {
            url: "http://127.0.0.1:1/v1/traces".into(),
            headers: vec![("x-honeycomb-team".into(), "s3cret-key".into())],
            compression: Compression::Gzip,
            timeout: Duration::from_secs(1),
            service_name: "x".into(),
        };
        let shown = format!("{settings:?}");
        assert!(
            shown.contains("x-honeycomb-team") && !shown.contains("s3cret"),
            "{shown}"
        );
        let bad = OtlpSettings {
            headers: vec![("x-key".into(), "line\nbreak".into())],
            ..settings
        };
        let e = OtlpSink::new(&bad, &Outbound::direct())
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("x-key") && !e.contains("line")),
            "{e:?}"
        );
    }
}
