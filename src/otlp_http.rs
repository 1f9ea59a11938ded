//! The OTLP/HTTP receiver: `POST /v1/traces` from OpenTelemetry SDKs in, spans into the buffer.
//!
//! In: requests that [`crate::admin::route`] sent to [`crate::admin::Route::OtlpTraces`] on the
//! `--otlp-http` listener (and on `-t` while the receiver is on). Out: span items into the
//! [`Buffer`] (each with the X-Ray document made from it, see [`crate::otlp::to_xray`]), through
//! one [`Intake`] per request under the input [`Input::OtlpHttp`], and the answer the OTLP
//! exporters expect:
//! - `200` with an `ExportTraceServiceResponse` in the request's content type (JSON success is
//!   `{}`), with `partial_success` (count and message) when some spans were refused;
//! - `415` for a content type or encoding it does not take, `413` for a body over the cap
//!   (after decompression), `400` for a body that does not decode, each with a
//!   `google.rpc.Status` naming the problem and the fix ([`crate::otlp::decode`]);
//! - `503` with `Retry-After` while the buffer is at the OTLP high-water mark
//!   ([`Buffer::has_room_for_admission`]): never `429`, as the Python exporter retries only
//!   `408` and `5xx`. A request whose spans could never fit the admission share of the budget
//!   gets `413`, not `503` forever.
//!
//! The core, [`OtlpReceiver::take`], does not know HTTP: a body, its format and encoding in,
//! a [`Taken`] out. The OTLP/HTTP handler ([`OtlpReceiver::traces`]) reads the body under its
//! bounds and maps the [`Taken`] to an answer; OTLP/gRPC ([`crate::otlp_grpc`]) does the same
//! with its own status codes, sharing this receiver (its counters, its decode slot and its
//! budget of bodies being read, [`OtlpReceiver::body_room`]).
//!
//! Every request's outcome is counted by [`RequestOutcome`]; its spans are counted per input
//! (received, refused at intake with their reason, accepted) in the books.
//!
//! Bounds: a declared `Content-Length` over the cap is refused before the body is read; bodies
//! being read share [`OtlpSettings::bodies_in_flight`] bytes (past it: `503`); a client has
//! [`OtlpSettings::client_timeout`] to send its body (`408`). Decompression, decoding and
//! conversion run on a blocking thread, [`MAX_DECODES`] at a time, never on the runtime's one
//! thread, so the health check and the sampling proxy keep answering during a flood of large
//! requests. Memory: at most `bodies_in_flight` bytes of bodies, plus for each decode under way
//! the decompressed body (at most the cap) and its decoded spans.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Request, Response, StatusCode};
use tokio::sync::Semaphore;

use crate::buffer::{ADMISSION_HIGH_WATER_PERCENT, Buffer, Intake};
use crate::item::{Input, Item, SpanItem};
use crate::otlp::decode::{self, DecodeError, Encoding, Format};
use crate::otlp::span;
use crate::otlp::to_xray::{self, ConversionSettings};
use crate::outcome::{DropReason, RequestOutcome};
use crate::stats::Stats;

/// Decodes under way at once (each on a blocking thread): one, so a flood of large requests
/// takes one core at most and the UDP receive thread keeps the other.
pub const MAX_DECODES: usize = 1;

/// What `Retry-After` says while the buffer is full, in seconds.
pub const RETRY_AFTER_SECONDS: u64 = 2;

/// How the receiver runs.
#[derive(Clone, Debug)]
pub struct OtlpSettings {
    /// The largest request body, after decompression (`--otlp-max-request-bytes`).
    pub max_request_bytes: usize,
    /// Bytes of request bodies being read at once, over all connections (twice the cap).
    pub bodies_in_flight: usize,
    /// How long a client may take to send its body.
    pub client_timeout: Duration,
    /// How span attributes become annotations.
    pub conversion: ConversionSettings,
    /// The X-Ray document cap (`--max-segment-size`).
    pub max_document: usize,
}

/// The handler of `POST /v1/traces`. Shared by the listeners that route to it.
#[derive(Debug)]
pub struct OtlpReceiver {
    buffer: Arc<Buffer>,
    stats: Arc<Stats>,
    settings: OtlpSettings,
    bodies: Arc<Semaphore>,
    decodes: Arc<Semaphore>,
}

/// What became of one request's body ([`OtlpReceiver::take`]), for its transport to answer.
#[derive(Debug)]
pub enum Taken {
    /// Its spans were booked; `rejected` of them refused, as `message` says.
    Accepted {
        /// Spans refused (bad ids, a document over the cap even trimmed).
        rejected: u64,
        /// Why, for `partial_success` (empty when none was refused).
        message: String,
    },
    /// Refused as it is: type, encoding, size or body.
    Refused(DecodeError),
    /// More spans than the buffer ever admits at once; the message says so and what to do.
    NeverFits(String),
    /// No room now (the buffer is at its OTLP high-water mark): try again later.
    Busy(&'static str),
    /// Decoding failed unexpectedly.
    Failed,
}

/// What one request's spans became, off the runtime thread.
struct Decoded {
    items: Vec<Item>,
    /// Spans refused at intake, by reason, and the message for `partial_success`.
    refused: Vec<(DropReason, u64)>,
    message: String,
    /// Bytes of the decoded request, for `received_bytes`.
    bytes: usize,
    /// Documents trimmed to fit the cap.
    trimmed: u64,
}

impl OtlpReceiver {
    /// A receiver that admits into `buffer` and counts in `stats`.
    pub fn new(buffer: Arc<Buffer>, stats: Arc<Stats>, settings: OtlpSettings) -> Self {
        let permits = settings.bodies_in_flight.min(Semaphore::MAX_PERMITS);
        OtlpReceiver {
            buffer,
            stats,
            bodies: Arc::new(Semaphore::new(permits)),
            decodes: Arc::new(Semaphore::new(MAX_DECODES)),
            settings,
        }
    }

    /// How it runs.
    pub fn settings(&self) -> &OtlpSettings {
        &self.settings
    }

    /// The bytes of request bodies being read (or waiting to be decoded) at once, over every
    /// transport: one permit a byte, [`OtlpSettings::bodies_in_flight`] in all. Another
    /// transport takes permits for what it holds and answers "busy" when none are left.
    pub fn body_room(&self) -> &Arc<Semaphore> {
        &self.bodies
    }

    /// Counts one request's outcome under `input`, for a transport that refused it itself.
    pub fn count(&self, input: Input, outcome: RequestOutcome) {
        self.stats.request(input, outcome);
    }

    /// Whether the buffer is at its OTLP high-water mark, checked before a request's body is
    /// read: if so, counts the request as busy under `input` and says why.
    pub fn refuse_if_busy(&self, input: Input) -> Option<&'static str> {
        if self.buffer.has_room_for_admission() {
            return None;
        }
        self.stats.request(input, RequestOutcome::Busy);
        Some("the daemon's buffer is full")
    }

    /// Answers one `POST /v1/traces`.
    pub async fn traces(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let header = |name| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header(CONTENT_TYPE);
        let content_encoding = header(CONTENT_ENCODING);
        let format = Format::for_reply(content_type.as_deref());
        // Refuse what can be refused before reading a byte of the body.
        if let Err(e) = Format::from_content_type(content_type.as_deref())
            .and_then(|_| decode::Encoding::from_header(content_encoding.as_deref()))
        {
            return self.refuse_decode(&e, format);
        }
        if !self.buffer.has_room_for_admission() {
            return self.busy(format, "the daemon's buffer is full");
        }
        let max = self.settings.max_request_bytes;
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > max) {
            return self.refuse_decode(&DecodeError::TooLarge { cap: max }, format);
        }
        // Room for the body among the bodies being read (the declared size, else the cap).
        let want = declared.unwrap_or(max).clamp(1, max);
        let want = u32::try_from(want).unwrap_or(u32::MAX);
        let Ok(_body_room) = Arc::clone(&self.bodies).try_acquire_many_owned(want) else {
            return self.busy(
                format,
                "too many large OTLP requests are being read at once",
            );
        };
        let body = match tokio::time::timeout(
            self.settings.client_timeout,
            Limited::new(req.into_body(), max).collect(),
        )
        .await
        {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return self.refuse_decode(&DecodeError::TooLarge { cap: max }, format);
            }
            Ok(Err(e)) => {
                self.stats
                    .request(Input::OtlpHttp, RequestOutcome::Unreadable);
                return status(
                    StatusCode::BAD_REQUEST,
                    format,
                    decode::RPC_INVALID_ARGUMENT,
                    &format!("cannot read the request body: {e}"),
                );
            }
            Err(_) => {
                self.stats.request(Input::OtlpHttp, RequestOutcome::Timeout);
                return status(
                    StatusCode::REQUEST_TIMEOUT,
                    format,
                    decode::RPC_UNAVAILABLE,
                    &format!(
                        "the request body did not arrive within {:?}",
                        self.settings.client_timeout
                    ),
                );
            }
        };
        let encoding = match decode::Encoding::from_header(content_encoding.as_deref()) {
            Ok(e) => e,
            Err(e) => return self.refuse_decode(&e, format),
        };
        let body_format = match Format::from_content_type(content_type.as_deref()) {
            Ok(f) => f,
            Err(e) => return self.refuse_decode(&e, format),
        };
        match self
            .take(Input::OtlpHttp, body, body_format, encoding)
            .await
        {
            Taken::Accepted { rejected, message } => {
                let mut response = Response::new(Full::new(Bytes::from(decode::success_body(
                    format, rejected, &message,
                ))));
                set_content_type(&mut response, format);
                response
            }
            Taken::Refused(e) => {
                let code = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
                let mut response = Response::new(Full::new(Bytes::from(e.reply_body(format))));
                *response.status_mut() = code;
                set_content_type(&mut response, format);
                response
            }
            Taken::NeverFits(why) => status(
                StatusCode::PAYLOAD_TOO_LARGE,
                format,
                decode::RPC_RESOURCE_EXHAUSTED,
                &why,
            ),
            Taken::Busy(why) => busy_answer(format, why),
            Taken::Failed => status(
                StatusCode::INTERNAL_SERVER_ERROR,
                format,
                decode::RPC_INVALID_ARGUMENT,
                "the request could not be decoded",
            ),
        }
    }

    /// Takes one request's body, whatever carried it (OTLP/HTTP, OTLP/gRPC): decompresses,
    /// decodes and converts it on a blocking thread ([`MAX_DECODES`] at a time), then books its
    /// spans under `input`, unless the buffer is at the OTLP high-water mark or the spans could
    /// never fit. Counts the request's outcome under `input`.
    pub async fn take(
        &self,
        input: Input,
        body: Bytes,
        format: Format,
        encoding: Encoding,
    ) -> Taken {
        if !self.buffer.has_room_for_admission() {
            self.stats.request(input, RequestOutcome::Busy);
            return Taken::Busy("the daemon's buffer is full");
        }
        let Ok(_decoding) = Arc::clone(&self.decodes).acquire_owned().await else {
            self.stats.request(input, RequestOutcome::Busy);
            return Taken::Busy("the daemon is stopping");
        };
        let settings = self.settings.clone();
        let work = tokio::task::spawn_blocking(move || {
            decode_and_convert(&body, format, encoding, input, &settings)
        });
        let decoded = match work.await {
            Ok(Ok(decoded)) => decoded,
            Ok(Err(e)) => {
                self.stats.request(input, outcome_of(&e));
                return Taken::Refused(e);
            }
            Err(e) => {
                tracing::error!("Decoding an OTLP request failed: {e}");
                self.stats.request(input, RequestOutcome::Unreadable);
                return Taken::Failed;
            }
        };
        self.admit(input, decoded)
    }

    /// Books the decoded spans.
    fn admit(&self, input: Input, decoded: Decoded) -> Taken {
        let cost: usize = decoded.items.iter().map(Item::cost).sum();
        let share = self.buffer.budget() / 100 * ADMISSION_HIGH_WATER_PERCENT;
        if cost > share {
            self.stats.request(input, RequestOutcome::TooLarge);
            return Taken::NeverFits(format!(
                "the request's {} spans need {cost} bytes of the daemon's buffer, more than it \
                 ever admits at once ({share} bytes): export fewer spans per request (a smaller \
                 OTEL_BSP_MAX_EXPORT_BATCH_SIZE) or give the daemon more memory (-m)",
                decoded.items.len()
            ));
        }
        if !self.buffer.has_room_for_admission() {
            self.stats.request(input, RequestOutcome::Busy);
            return Taken::Busy("the daemon's buffer is full");
        }
        let spans = decoded.items.len();
        let rejected: u64 = decoded.refused.iter().map(|(_, n)| n).sum();
        let mut intake = Intake::new(input, spans);
        let total = spans as u64 + rejected;
        // Bytes per span: the request's bytes shared out (the intake counts units and bytes).
        let per_span = decoded.bytes / (total.max(1) as usize);
        for (reason, n) in &decoded.refused {
            for _ in 0..*n {
                intake.received(per_span);
                intake.refused(*reason);
            }
        }
        for item in decoded.items {
            intake.received(per_span);
            intake.accepted(item);
        }
        self.buffer.admit(&mut intake);
        self.stats.documents_trimmed(decoded.trimmed);
        self.stats.request(input, RequestOutcome::Accepted);
        if rejected > 0 {
            tracing::debug!("OTLP request: {}", decoded.message);
        }
        Taken::Accepted {
            rejected,
            message: decoded.message,
        }
    }

    /// Answers a request refused by its type, encoding, size or body, and counts it.
    fn refuse_decode(&self, e: &DecodeError, format: Format) -> Response<Full<Bytes>> {
        self.stats.request(Input::OtlpHttp, outcome_of(e));
        let code = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        let mut response = Response::new(Full::new(Bytes::from(e.reply_body(format))));
        *response.status_mut() = code;
        set_content_type(&mut response, format);
        response
    }

    /// `503` with `Retry-After`: the exporter tries again and its spans arrive once there is
    /// room.
    fn busy(&self, format: Format, why: &str) -> Response<Full<Bytes>> {
        self.stats.request(Input::OtlpHttp, RequestOutcome::Busy);
        busy_answer(format, why)
    }

    /// Answers `/v1/metrics` or `/v1/logs`: `404`, naming the exporter setting that stops them.
    pub fn other_signal(&self, path: &str, content_type: Option<&str>) -> Response<Full<Bytes>> {
        self.stats
            .request(Input::OtlpHttp, RequestOutcome::NotTraces);
        let (signal, variable) = if path.ends_with("/logs") {
            ("logs", "OTEL_LOGS_EXPORTER=none")
        } else {
            ("metrics", "OTEL_METRICS_EXPORTER=none")
        };
        status(
            StatusCode::NOT_FOUND,
            Format::for_reply(content_type),
            decode::RPC_NOT_FOUND,
            &format!(
                "this daemon receives OpenTelemetry traces only, not {signal}: set {variable} in \
                 the application, or send {signal} to a collector"
            ),
        )
    }
}

/// The outcome a refused body is counted under.
fn outcome_of(e: &DecodeError) -> RequestOutcome {
    match e {
        DecodeError::MissingContentType | DecodeError::UnsupportedContentType(_) => {
            RequestOutcome::UnsupportedContentType
        }
        DecodeError::UnsupportedEncoding(_) => RequestOutcome::UnsupportedEncoding,
        DecodeError::TooLarge { .. } => RequestOutcome::TooLarge,
        DecodeError::Decompress { .. } => RequestOutcome::BadCompression,
        DecodeError::Protobuf(_) | DecodeError::Json(_) => RequestOutcome::Undecodable,
    }
}

/// `503` with `Retry-After` and a Status saying why.
fn busy_answer(format: Format, why: &str) -> Response<Full<Bytes>> {
    let mut response = status(
        StatusCode::SERVICE_UNAVAILABLE,
        format,
        decode::RPC_UNAVAILABLE,
        &format!("{why}; retry after {RETRY_AFTER_SECONDS} s"),
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, RETRY_AFTER_SECONDS.into());
    response
}

/// A `google.rpc.Status` answer.
fn status(code: StatusCode, format: Format, rpc: i32, message: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(decode::status_body(
        format, rpc, message,
    ))));
    *response.status_mut() = code;
    set_content_type(&mut response, format);
    response
}

fn set_content_type(response: &mut Response<Full<Bytes>>, format: Format) {
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(format.content_type()),
    );
}

/// Decompresses, decodes, checks and converts one request's body: the CPU work, on a blocking
/// thread.
fn decode_and_convert(
    body: &[u8],
    format: Format,
    encoding: Encoding,
    input: Input,
    settings: &OtlpSettings,
) -> Result<Decoded, DecodeError> {
    let bytes = decode::decompress(body, encoding, settings.max_request_bytes)?;
    let request = decode::parse(&bytes, format)?;
    let bytes = body.len();
    let (records, refusals) = span::split(request);
    let mut message = refusals.message();
    let mut refused = Vec::new();
    if !refusals.is_empty() {
        refused.push((DropReason::InvalidSpan, refusals.total()));
    }
    let mut items = Vec::with_capacity(records.len());
    let mut too_large = 0u64;
    let mut trimmed = 0u64;
    for record in records {
        match to_xray::convert(&record, &settings.conversion, settings.max_document) {
            Ok(converted) => {
                trimmed += u64::from(!converted.trimmed.is_empty());
                items.push(Item::Span(Arc::new(SpanItem::new(
                    record,
                    converted.document,
                    input,
                ))));
            }
            Err(e) => {
                too_large += 1;
                tracing::debug!("OTLP span refused: {e}");
            }
        }
    }
    if too_large > 0 {
        refused.push((DropReason::TooLarge, too_large));
        if !message.is_empty() {
            message.push_str("; ");
        }
        message.push_str(&format!(
            "{too_large} span(s) refused: their X-Ray documents stay over the {}-byte cap even \
             with their metadata trimmed",
            settings.max_document
        ));
    }
    Ok(Decoded {
        items,
        refused,
        message,
        bytes,
        trimmed,
    })
}
