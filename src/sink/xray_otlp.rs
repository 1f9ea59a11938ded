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

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_runtime_api::client::http::SharedHttpConnector;
use aws_smithy_types::body::SdkBody;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderValue, Method, Uri};
use prost::Message as _;

use super::otlp_call::{self, Accepted, Export, Failure, gzip};
use super::{Delivery, Refused, RetryHint, Sink, SinkFuture};
use crate::aws::failure::credentials_kind;
use crate::aws::signing::sign_request;
use crate::aws::{AwsContext, AwsError, credentials_failure, describe_error};
use crate::item::Item;
use crate::otlp::export::{self, Limits};
use crate::otlp::span::SpanRecord;
use crate::outcome::ErrorKind;
use crate::ratelimit::{RateLimit, Suppressed};

/// The sink's name in stats and logs.
pub const NAME: &str = "xray-otlp";
/// The path of the OTLP traces endpoint, appended to the X-Ray endpoint.
pub const TRACES_PATH: &str = "/v1/traces";
/// Spans per batch cut from the lane (each batch is then cut by the endpoint's limits).
pub const BATCH_SPANS: usize = 1000;
/// The SigV4 service name.
const SERVICE: &str = "xray";
/// How long fetching credentials may take for one call.
const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(10);
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
    async fn send_request(&self, spans: &[&SpanRecord]) -> Result<Accepted, Failure> {
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
        otlp_call::call(&self.connector, request, self.call_timeout).await
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
            otlp_call::send_planned(self, &spans, &at, &self.limits, &mut delivery).await?;
            Ok(delivery)
        })
    }
}

impl Export for XrayOtlpSink {
    fn sink_name(&self) -> &'static str {
        NAME
    }

    async fn export(&self, spans: &[&SpanRecord]) -> Result<Accepted, Failure> {
        self.send_request(spans).await
    }

    fn failed(&self, failure: &Failure) {
        if failure.transaction_search_off {
            self.log_search_off(&failure.message);
        }
    }
}
