//! The `xray-otlp` sink: OpenTelemetry spans, unchanged, to X-Ray's OTLP endpoint
//! (`--otlp-to-xray otlp`).
//!
//! In: a batch of span items (its lane takes spans only, [`crate::buffer::Takes::Spans`]; the
//! X-Ray documents, the distros' `T1S`… bodies among them, go to `PutTraceSegments` in the
//! `xray` lane). Out: `POST /v1/traces` calls to X-Ray's OTLP endpoint,
//! `https://xray.REGION.amazonaws.com/v1/traces` (the account needs CloudWatch Transaction
//! Search), or the configured `--endpoint` with `/v1/traces` appended; FIPS and dual-stack as
//! for `PutTraceSegments` (the same resolved endpoint).
//!
//! Each call carries one `ExportTraceServiceRequest` as protobuf, gzip'd (`Content-Encoding:
//! gzip`), signed with SigV4 for service `xray` over the compressed bytes exactly as sent
//! ([`crate::aws::signing`]); the region, credentials (`-r` included), outbound proxy (`-p`) and
//! TLS rules are those of every call to AWS ([`AwsContext`]). A batch is cut into requests
//! within the endpoint's limits by [`crate::otlp::export::plan`]; the spans it would refuse are
//! dropped before sending and counted: older than 14 days or more than 2 hours ahead
//! (`outside_time_window`), over 200 KB (`too_large`).
//!
//! Answers:
//! - `2xx`: the spans are sent. A `partial_success` with `rejected_spans` refuses that many of
//!   the request's spans (OTLP does not say which: counted as refused, not resent);
//! - `429`, `502`, `503`, `504`, and no answer (a timeout, a refused or broken connection): tried
//!   again, after the answer's `Retry-After` (seconds or an HTTP date) when it has one, else
//!   after the usual backoff ([`crate::upload::retry`]); these are the only ones OTLP retries;
//! - any other status: given up (`upload_failed`), with X-Ray's message in the log. When the
//!   message says Transaction Search is off (X-Ray answers `400` "The OTLP API is supported
//!   with CloudWatch Logs as a Trace Segment Destination…"), an error says so and how to turn
//!   it on, at most once per [`WARN_INTERVAL`](crate::ratelimit::WARN_INTERVAL).
//!
//! A batch that needs more than one request (over 5 MB, or spans more than 24 hours apart) is
//! sent request by request. If the first fails, the call fails as a whole (every span is
//! retried or given up together, and the failure is counted in `backend_errors`); if a later
//! one fails, the spans already sent count as sent and the rest are returned as refusals, to
//! retry (after the failure's `Retry-After`) or not, by the same rules — such a failure is not
//! counted in `backend_errors`.
//!
//! Encoding and compressing run on the blocking pool, never on the runtime's threads.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_runtime_api::client::http::{HttpConnector, SharedHttpConnector};
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderValue, Method, Uri};
use http_body_util::{BodyExt, Limited};
use prost::Message as _;

use super::{Delivery, Refused, RetryHint, Sink, SinkError, SinkFuture};
use crate::aws::failure::credentials_kind;
use crate::aws::signing::sign_request;
use crate::aws::{AwsContext, AwsError, connector_error_kind, credentials_failure, describe_error};
use crate::item::Item;
use crate::otlp::export::{self, Limits, Unsendable};
use crate::otlp::proto::ExportTraceServiceResponse;
use crate::otlp::span::SpanRecord;
use crate::outcome::{DropReason, ErrorKind};
use crate::ratelimit::{RateLimit, Suppressed};

/// The sink's name in stats and logs.
pub const NAME: &str = "xray-otlp";
/// The path of the OTLP traces endpoint, appended to the X-Ray endpoint.
pub const TRACES_PATH: &str = "/v1/traces";
/// Spans per batch cut from the lane (each batch is then cut by the endpoint's limits).
pub const BATCH_SPANS: usize = 1000;
/// The SigV4 service name.
const SERVICE: &str = "xray";
/// The largest answer read; a longer one is cut there (only its start is needed).
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// How long fetching credentials may take for one call.
const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of X-Ray's message a log line or a refusal carries, in characters.
const MESSAGE_CHARS: usize = 400;
/// The command that turns Transaction Search on, for the log.
pub const ENABLE_TRANSACTION_SEARCH: &str =
    "aws xray update-trace-segment-destination --destination CloudWatchLogs";

/// Sends spans to X-Ray's OTLP endpoint.
#[derive(Debug)]
pub struct XrayOtlpSink {
    /// `…/v1/traces`.
    url: Uri,
    /// The `Host` header value.
    host: String,
    region: String,
    credentials: SharedCredentialsProvider,
    /// `-r`, for messages about credentials.
    role_arn: Option<String>,
    connector: SharedHttpConnector,
    /// How long one call may take, answer included (`--upload-timeout`).
    call_timeout: Duration,
    limits: Limits,
    /// Paces the error about Transaction Search being off.
    search_off_log: Arc<RateLimit>,
}

impl XrayOtlpSink {
    /// A sink sending to the context's X-Ray endpoint with [`TRACES_PATH`] appended, each call
    /// taking at most `call_timeout`.
    pub fn new(aws: &AwsContext, call_timeout: Duration) -> Result<Self, AwsError> {
        let err = |why: String| AwsError::Endpoint {
            region: aws.region.to_string(),
            why,
        };
        let text = format!("{}{TRACES_PATH}", aws.xray_endpoint.trim_end_matches('/'));
        let url: Uri = text
            .parse()
            .map_err(|e| err(format!("{text} is not a URL: {e}")))?;
        let host = url
            .authority()
            .map(|a| a.as_str().to_owned())
            .ok_or_else(|| err(format!("{text} has no host")))?;
        let credentials = aws
            .sdk
            .credentials_provider()
            .ok_or_else(|| err("no AWS credential provider".into()))?;
        Ok(XrayOtlpSink {
            url,
            host,
            region: aws.region.to_string(),
            credentials,
            role_arn: aws.role_arn.clone(),
            connector: aws
                .outbound
                .connector(crate::aws::CONNECT_TIMEOUT, call_timeout),
            call_timeout,
            limits: Limits::XRAY,
            search_off_log: Arc::default(),
        })
    }

    /// The URL spans are sent to.
    pub fn url(&self) -> String {
        self.url.to_string()
    }

    /// Sends one request's spans; the count and message of a partial success.
    async fn export(&self, spans: &[&SpanRecord]) -> Result<Accepted, Failure> {
        let request = export::request_of(spans);
        let body = tokio::task::spawn_blocking(move || gzip(&request.encode_to_vec()))
            .await
            .map_err(|e| Failure::local(format!("encoding the request failed: {e}")))?
            .map_err(|e| Failure::local(format!("compressing the request failed: {e}")))?;
        let credentials = self.credentials().await?;
        let mut request = http::Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(HOST, &self.host)
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header(CONTENT_ENCODING, "gzip")
            .body(SdkBody::from(body.clone()))
            .map_err(|e| Failure::local(e.to_string()))?;
        sign_request(
            &mut request,
            &body,
            &credentials,
            &self.region,
            SERVICE,
            SystemTime::now(),
        )
        .map_err(|e| Failure::local(format!("cannot sign the request: {e}")))?;
        // Unsigned, so a proxy or mesh may rewrite them.
        let headers = request.headers_mut();
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("xray-daemon-rs/", env!("CARGO_PKG_VERSION"))),
        );
        headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        let request = aws_smithy_runtime_api::http::Request::try_from(request)
            .map_err(|e| Failure::local(e.to_string()))?;
        let call = async {
            let response = self.connector.call(request).await.map_err(|e| Failure {
                kind: connector_error_kind(&e),
                hint: RetryHint::ByKind,
                message: describe_error(&e),
                transaction_search_off: false,
            })?;
            let status = response.status().as_u16();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .map(str::to_owned)
                    .filter(|v| !v.is_empty())
            };
            let content_type = header("content-type");
            let retry_after = header("retry-after");
            let error_type = header("x-amzn-errortype");
            let answer = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| Failure {
                    kind: ErrorKind::Connection,
                    hint: RetryHint::ByKind,
                    message: format!("reading the answer (HTTP {status}) failed: {e}"),
                    transaction_search_off: false,
                })?
                .to_bytes();
            Ok(Answer {
                status,
                content_type,
                retry_after,
                error_type,
                body: answer,
            })
        };
        let answer = tokio::time::timeout(self.call_timeout, call)
            .await
            .map_err(|_| Failure {
                kind: ErrorKind::Timeout,
                hint: RetryHint::ByKind,
                message: format!("no answer within {:?}", self.call_timeout),
                transaction_search_off: false,
            })??;
        answer.outcome(SystemTime::now())
    }

    /// Credentials to sign with, or the failure: classed and described as for `PutTraceSegments`
    /// (a throttled or unreachable STS for `-r` is retried; no credentials at all is not).
    async fn credentials(&self) -> Result<Credentials, Failure> {
        match tokio::time::timeout(CREDENTIALS_TIMEOUT, self.credentials.provide_credentials())
            .await
        {
            Ok(Ok(credentials)) => Ok(credentials),
            Ok(Err(e)) => Err(Failure {
                kind: credentials_kind(&e),
                hint: RetryHint::ByKind,
                message: credentials_failure(&e, self.role_arn.as_deref())
                    .unwrap_or_else(|| describe_error(&e)),
                transaction_search_off: false,
            }),
            Err(_) => Err(Failure {
                kind: ErrorKind::Timeout,
                hint: RetryHint::ByKind,
                message: format!("no AWS credentials within {CREDENTIALS_TIMEOUT:?}"),
                transaction_search_off: false,
            }),
        }
    }

    /// Logs, at most once per [`WARN_INTERVAL`](crate::ratelimit::WARN_INTERVAL), that Transaction Search is off and how to turn
    /// it on.
    fn log_search_off(&self, message: &str) {
        if let Some(suppressed) = self.search_off_log.once() {
            tracing::error!(
                "X-Ray's OTLP endpoint ({}) refused spans because this account does not send \
                 traces to CloudWatch Logs (Transaction Search is off in {}): {message}. Turn it \
                 on once per account and region: in the CloudWatch console (Application Signals, \
                 Transaction Search, Enable), or with `{ENABLE_TRANSACTION_SEARCH}` after giving \
                 X-Ray a CloudWatch Logs resource policy for the aws/spans log group; or send \
                 spans as segments (--otlp-to-xray segments). Until then spans are dropped \
                 (upload_failed){}",
                self.url,
                self.region,
                Suppressed(suppressed, "such refusals")
            );
        }
    }
}

impl Sink for XrayOtlpSink {
    fn name(&self) -> &'static str {
        NAME
    }

    fn send<'a>(&'a self, batch: &'a [Item]) -> SinkFuture<'a> {
        Box::pin(async move {
            let mut delivery = Delivery::default();
            // The spans, and where each is in the batch.
            let mut spans: Vec<&SpanRecord> = Vec::with_capacity(batch.len());
            let mut at: Vec<usize> = Vec::with_capacity(batch.len());
            for (i, item) in batch.iter().enumerate() {
                match item {
                    Item::Span(span) => {
                        spans.push(&span.record);
                        at.push(i);
                    }
                    // Its lane takes spans only; a document here would be a wiring mistake. It
                    // is refused (and counted), never sent as something else.
                    Item::XrayDocument(_) => delivery.refused.push(Refused {
                        index: Some(i),
                        id: None,
                        code: "NotASpan".into(),
                        message: "the xray-otlp sink sends OpenTelemetry spans only".into(),
                    }),
                }
            }
            let plan = export::plan(&spans, unix_nanos(SystemTime::now()), &self.limits);
            for &(k, why) in &plan.unsendable {
                delivery.dropped.push((at[k], drop_reason(why)));
            }
            for (n, request) in plan.requests.iter().enumerate() {
                let group: Vec<&SpanRecord> = request.iter().map(|&k| spans[k]).collect();
                match self.export(&group).await {
                    Ok(accepted) => {
                        let refused = accepted.rejected.min(request.len() as u64);
                        for _ in 0..refused {
                            delivery.refused.push(Refused {
                                index: None,
                                id: None,
                                code: "PartialSuccess".into(),
                                message: format!(
                                    "X-Ray's OTLP endpoint refused {} of the {} span(s) of a \
                                     request: {}",
                                    accepted.rejected,
                                    request.len(),
                                    accepted.message
                                ),
                            });
                        }
                    }
                    Err(failure) => {
                        if failure.transaction_search_off {
                            self.log_search_off(&failure.message);
                        }
                        if n == 0 {
                            return Err(failure.into_error());
                        }
                        // Later requests: the spans sent so far stay sent.
                        let retried = failure.is_retried();
                        let rest = if retried {
                            &plan.requests[n..]
                        } else {
                            &plan.requests[n..=n]
                        };
                        let code = failure.refusal_code();
                        for &k in rest.iter().flatten() {
                            delivery.refused.push(Refused {
                                index: Some(at[k]),
                                id: None,
                                code: code.to_owned(),
                                message: failure.message.clone(),
                            });
                        }
                        if retried {
                            delivery.retry_after = failure.hint.after();
                            break;
                        }
                    }
                }
            }
            Ok(delivery)
        })
    }
}

/// The drop reason for a span the endpoint would refuse.
fn drop_reason(why: Unsendable) -> DropReason {
    match why {
        Unsendable::TooLarge => DropReason::TooLarge,
        Unsendable::TooOld | Unsendable::TooFarAhead => DropReason::OutsideTimeWindow,
    }
}

/// Nanoseconds since the Unix epoch (0 before it).
fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// `bytes` gzip'd.
fn gzip(bytes: &[u8]) -> std::io::Result<Bytes> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4 + 64),
        flate2::Compression::default(),
    );
    encoder.write_all(bytes)?;
    encoder.finish().map(Bytes::from)
}

/// A request the endpoint took.
#[derive(Debug, Default, PartialEq, Eq)]
struct Accepted {
    /// Spans it refused all the same (`partial_success.rejected_spans`).
    rejected: u64,
    /// Its message about them.
    message: String,
}

/// A request that was not taken.
#[derive(Debug, PartialEq, Eq)]
struct Failure {
    kind: ErrorKind,
    hint: RetryHint,
    /// What went wrong: `HTTP 400: X-Ray's message`, or the connection's error.
    message: String,
    /// The endpoint said Transaction Search is off.
    transaction_search_off: bool,
}

impl Failure {
    /// A failure before anything was sent (encoding, signing): nothing a retry fixes.
    fn local(message: String) -> Self {
        Failure {
            kind: ErrorKind::Other,
            hint: RetryHint::ByKind,
            message,
            transaction_search_off: false,
        }
    }

    /// Whether the spans are tried again (the rules of [`crate::upload::retry::classify`]).
    fn is_retried(&self) -> bool {
        self.hint != RetryHint::Never && crate::upload::retry::kind_is_retryable(self.kind)
    }

    /// The refusal code for spans not sent because of it: one the retry rules retry
    /// (throttling, unavailable) when it is retried, else a final one.
    fn refusal_code(&self) -> &'static str {
        match (self.is_retried(), self.kind) {
            (true, ErrorKind::Throttled) => "TooManyRequests",
            (true, _) => "ServiceUnavailable",
            (false, _) => "Refused",
        }
    }

    fn into_error(self) -> SinkError {
        SinkError::Call {
            sink: NAME,
            kind: self.kind,
            message: self.message,
            hint: self.hint,
        }
    }
}

/// An answer that arrived whole.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: Option<String>,
    retry_after: Option<String>,
    /// `x-amzn-errortype`, when X-Ray sent one.
    error_type: Option<String>,
    body: Bytes,
}

impl Answer {
    /// What the answer means at `now` (for a `Retry-After` date); see the module docs.
    fn outcome(&self, now: SystemTime) -> Result<Accepted, Failure> {
        let json = self
            .content_type
            .as_deref()
            .is_some_and(|t| t.to_ascii_lowercase().contains("json"));
        if (200..300).contains(&self.status) {
            let response = if json {
                serde_json::from_slice::<ExportTraceServiceResponse>(&self.body).ok()
            } else {
                ExportTraceServiceResponse::decode(self.body.as_ref()).ok()
            };
            let partial = response.and_then(|r| r.partial_success).unwrap_or_default();
            return Ok(Accepted {
                rejected: u64::try_from(partial.rejected_spans).unwrap_or(0),
                message: clip(&partial.error_message),
            });
        }
        let said = error_message(json, &self.body);
        let message = match (&self.error_type, said.is_empty()) {
            (Some(t), true) => format!("HTTP {}: {t}", self.status),
            (Some(t), false) => format!("HTTP {}: {t}: {said}", self.status),
            (None, true) => format!("HTTP {}", self.status),
            (None, false) => format!("HTTP {}: {said}", self.status),
        };
        let hint = match self.status {
            429 | 502 | 503 | 504 => self
                .retry_after
                .as_deref()
                .and_then(|v| crate::upload::retry::parse_retry_after(v, now))
                .map_or(RetryHint::ByKind, RetryHint::After),
            500..=599 => RetryHint::Never,
            _ => RetryHint::ByKind,
        };
        Err(Failure {
            kind: ErrorKind::from_status(self.status),
            hint,
            transaction_search_off: matches!(self.status, 400 | 403) && says_search_is_off(&said),
            message,
        })
    }
}

/// The message of an error answer: a `google.rpc.Status` (protobuf, or JSON with `message`),
/// else the body as text; clipped.
fn error_message(json: bool, body: &[u8]) -> String {
    #[derive(Clone, PartialEq, prost::Message)]
    struct RpcStatus {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    let from_json = || {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        ["message", "Message"]
            .iter()
            .find_map(|k| value.get(*k)?.as_str().map(str::to_owned))
    };
    let from_protobuf = || {
        RpcStatus::decode(body)
            .ok()
            .map(|s| s.message)
            .filter(|m| !m.is_empty() && !m.contains('\u{fffd}'))
    };
    let said = if json { from_json() } else { from_protobuf() };
    let said = said.unwrap_or_else(|| {
        String::from_utf8_lossy(body)
            .chars()
            .filter(|c| !c.is_control() || *c == ' ')
            .collect()
    });
    clip(said.trim())
}

/// True when X-Ray's message says the account does not send traces to CloudWatch Logs (what
/// Transaction Search turns on).
fn says_search_is_off(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("transaction search")
        || m.contains("trace segment destination")
        || m.contains("updatetracesegmentdestination")
        || (m.contains("cloudwatch logs") && m.contains("destination"))
}

/// At most [`MESSAGE_CHARS`] characters of `text`.
fn clip(text: &str) -> String {
    match text.char_indices().nth(MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Answer {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        };
        Answer {
            status,
            content_type: header("content-type"),
            retry_after: header("retry-after"),
            error_type: header("x-amzn-errortype"),
            body: Bytes::copy_from_slice(body),
        }
    }

    const NOW: u64 = 1_700_000_000;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
    }

    #[test]
    fn a_2xx_is_taken_with_its_partial_success() {
        let ok = answer(200, &[("content-type", "application/x-protobuf")], b"");
        assert_eq!(ok.outcome(now()), Ok(Accepted::default()));
        let partial = ExportTraceServiceResponse {
            partial_success: Some(crate::otlp::proto::ExportTracePartialSuccess {
                rejected_spans: 2,
                error_message: "too old".into(),
            }),
        };
        let pb = answer(200, &[], &partial.encode_to_vec());
        let expected = Accepted {
            rejected: 2,
            message: "too old".into(),
        };
        assert_eq!(pb.outcome(now()), Ok(expected));
        let json = answer(
            200,
            &[("content-type", "application/json")],
            br#"{"partialSuccess":{"rejectedSpans":"1","errorMessage":"x"}}"#,
        );
        assert_eq!(json.outcome(now()).map(|a| a.rejected), Ok(1));
        // A body that is not a response still means the spans were taken.
        let odd = answer(200, &[("content-type", "text/html")], b"<html>ok</html>");
        assert_eq!(odd.outcome(now()), Ok(Accepted::default()));
    }

    #[test]
    fn only_429_502_503_504_are_retried_with_their_retry_after() {
        let retried = |status: u16, retry_after: &str| {
            answer(status, &[("retry-after", retry_after)], b"")
                .outcome(now())
                .err()
                .map(|f| (f.kind, f.hint, f.is_retried()))
        };
        let secs = |n| RetryHint::After(Duration::from_secs(n));
        assert_eq!(retried(503, "1"), Some((ErrorKind::Http5xx, secs(1), true)));
        assert_eq!(
            retried(429, "Tue, 14 Nov 2023 22:13:40 GMT"),
            Some((ErrorKind::Throttled, secs(20), true)),
            "an HTTP date, 20 s after now"
        );
        assert_eq!(
            retried(502, "soon"),
            Some((ErrorKind::Http5xx, RetryHint::ByKind, true))
        );
        assert_eq!(
            retried(504, ""),
            Some((ErrorKind::Http5xx, RetryHint::ByKind, true))
        );
        for status in [500, 501, 505] {
            assert_eq!(
                retried(status, "1"),
                Some((ErrorKind::Http5xx, RetryHint::Never, false)),
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 413] {
            assert_eq!(
                retried(status, "1"),
                Some((ErrorKind::Http4xx, RetryHint::ByKind, false)),
                "{status}: a 4xx is final whatever it says"
            );
        }
    }

    #[test]
    fn transaction_search_off_is_recognised_in_each_form_x_ray_uses() {
        const SAID: &str = "The OTLP API is supported with CloudWatch Logs as a Trace Segment \
                            Destination. Please enable the CloudWatch Logs destination for your \
                            traces using the UpdateTraceSegmentDestination API \
                            (https://docs.aws.amazon.com/xray/latest/api/API_UpdateTraceSegmentDestination.html)";
        #[derive(Clone, PartialEq, prost::Message)]
        struct RpcStatus {
            #[prost(int32, tag = "1")]
            code: i32,
            #[prost(string, tag = "2")]
            message: String,
        }
        let status = RpcStatus {
            code: 3,
            message: SAID.into(),
        }
        .encode_to_vec();
        let json = serde_json::json!({ "message": SAID }).to_string();
        for (headers, body) in [
            (vec![("content-type", "application/x-protobuf")], status),
            (
                vec![("content-type", "text/plain")],
                SAID.as_bytes().to_vec(),
            ),
            (
                vec![
                    ("content-type", "application/json"),
                    ("x-amzn-errortype", "InvalidRequestException"),
                ],
                json.into_bytes(),
            ),
        ] {
            let failure = answer(400, &headers, &body).outcome(now()).err();
            let failure = failure.unwrap_or_else(|| panic!("{headers:?}: a 400 is a failure"));
            assert!(failure.transaction_search_off, "{headers:?}: {failure:?}");
            assert!(
                failure.message.starts_with("HTTP 400: "),
                "{}",
                failure.message
            );
            assert!(
                failure.message.contains("Trace Segment Destination"),
                "{}",
                failure.message
            );
            assert!(!failure.is_retried());
        }
        let other = answer(
            403,
            &[],
            b"The security token included in the request is invalid.",
        );
        let failure = other.outcome(now()).err();
        assert_eq!(failure.map(|f| f.transaction_search_off), Some(false));
        // The same words on a 503 are not this (and are retried).
        let busy = answer(503, &[], SAID.as_bytes()).outcome(now()).err();
        assert_eq!(busy.map(|f| f.transaction_search_off), Some(false));
    }

    #[test]
    fn error_messages_are_clipped_and_plain() {
        let long = "x".repeat(5_000);
        let m = error_message(false, long.as_bytes());
        assert_eq!(m.chars().count(), MESSAGE_CHARS + 1);
        assert_eq!(error_message(false, b"line\none\r\n"), "lineone");
        assert_eq!(error_message(true, br#"{"Message":"denied"}"#), "denied");
        assert_eq!(error_message(true, b"not json"), "not json");
    }

    #[test]
    fn a_later_request_that_fails_refuses_its_spans_with_a_code_the_retry_rules_follow() {
        let failure = |kind, hint| Failure {
            kind,
            hint,
            message: String::new(),
            transaction_search_off: false,
        };
        use crate::upload::retry::code_is_retryable;
        let code = |f: Failure| (f.refusal_code(), code_is_retryable(f.refusal_code()));
        assert_eq!(
            code(failure(ErrorKind::Throttled, RetryHint::ByKind)),
            ("TooManyRequests", true)
        );
        assert_eq!(
            code(failure(ErrorKind::Timeout, RetryHint::ByKind)),
            ("ServiceUnavailable", true)
        );
        assert_eq!(
            code(failure(ErrorKind::Http5xx, RetryHint::Never)),
            ("Refused", false)
        );
        assert_eq!(
            code(failure(ErrorKind::Http4xx, RetryHint::ByKind)),
            ("Refused", false)
        );
    }

    #[test]
    fn spans_outside_the_window_are_dropped_as_such() {
        assert_eq!(
            drop_reason(Unsendable::TooOld),
            DropReason::OutsideTimeWindow
        );
        assert_eq!(
            drop_reason(Unsendable::TooFarAhead),
            DropReason::OutsideTimeWindow
        );
        assert_eq!(drop_reason(Unsendable::TooLarge), DropReason::TooLarge);
        assert_eq!(unix_nanos(now()), NOW * 1_000_000_000);
        let zipped = gzip(b"spans").unwrap_or_default();
        let mut gunzip = flate2::read::GzDecoder::new(zipped.as_ref());
        let mut back = String::new();
        let _ = std::io::Read::read_to_string(&mut gunzip, &mut back);
        assert_eq!(back, "spans");
    }
}
