//! One OTLP/HTTP export call and what its answer means, shared by the sinks that send spans
//! over OTLP/HTTP: [`super::xray_otlp`] (X-Ray's OTLP endpoint, signed) and [`super::otlp`] (any
//! OTLP backend, `--sink otlp`).
//!
//! In: a built request (each sink adds its own headers: SigV4, or the user's) and the spans a
//! batch holds. Out: the answer classed by OTLP's rules ([`Answer::outcome`]): any `2xx` is
//! taken (a `partial_success` refuses that many spans, not resent); `429`, `502`, `503`, `504`
//! and no answer are tried again after the answer's `Retry-After` when it has one; any other
//! status is final. [`send_planned`] sends a batch request by request within the
//! destination's [`Limits`] and turns the outcomes into a [`Delivery`] for the upload stage.

use std::future::Future;
use std::io::Write as _;
use std::time::{Duration, SystemTime};

use aws_smithy_runtime_api::client::http::{HttpConnector, SharedHttpConnector};
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use prost::Message as _;

use super::{Delivery, Refused, RetryHint, SinkError};
use crate::aws::{connector_error_kind, describe_error};
use crate::otlp::export::{self, Limits, Unsendable};
use crate::otlp::proto::ExportTraceServiceResponse;
use crate::otlp::span::SpanRecord;
use crate::outcome::{DropReason, ErrorKind};

/// The largest answer read; a longer one is cut there (only its start is needed).
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// The most of an endpoint's message a log line or a refusal carries, in characters.
const MESSAGE_CHARS: usize = 400;

/// A sink's way of sending one request's spans.
pub(super) trait Export: Sync {
    /// The sink's name, for errors.
    fn sink_name(&self) -> &'static str;

    /// Sends `spans` as one request.
    fn export(
        &self,
        spans: &[&SpanRecord],
    ) -> impl Future<Output = Result<Accepted, Failure>> + Send;

    /// Told of each failed request before it is accounted (to log what the sink knows of it).
    fn failed(&self, _failure: &Failure) {}
}

/// Sends `spans` (span `k` is from batch item `at[k]`; an item may give several spans) request
/// by request within `limits`, into `delivery`: spans the limits refuse are dropped (their item
/// with it); a failed first request fails the call as a whole; a later failed request refuses
/// the items not yet sent, to retry or not by the retry rules, and the spans already sent stay
/// sent. An item is refused at most once.
pub(super) async fn send_planned<E: Export>(
    exporter: &E,
    spans: &[&SpanRecord],
    at: &[usize],
    limits: &Limits,
    delivery: &mut Delivery,
) -> Result<(), SinkError> {
    let plan = export::plan(spans, unix_nanos(SystemTime::now()), limits);
    let mut settled = std::collections::HashSet::new();
    for &(k, why) in &plan.unsendable {
        if settled.insert(at[k]) {
            delivery.dropped.push((at[k], drop_reason(why)));
        }
    }
    for (n, request) in plan.requests.iter().enumerate() {
        let group: Vec<&SpanRecord> = request.iter().map(|&k| spans[k]).collect();
        match exporter.export(&group).await {
            Ok(accepted) => {
                // OTLP does not say which spans: as many of the request's items, at most.
                let mut items: Vec<usize> = request.iter().map(|&k| at[k]).collect();
                items.sort_unstable();
                items.dedup();
                let refused = accepted.rejected.min(items.len() as u64);
                for _ in 0..refused {
                    delivery.refused.push(Refused {
                        index: None,
                        id: None,
                        code: "PartialSuccess".into(),
                        message: format!(
                            "the OTLP endpoint refused {} of the {} span(s) of a request: {}",
                            accepted.rejected,
                            request.len(),
                            accepted.message
                        ),
                    });
                }
            }
            Err(failure) => {
                exporter.failed(&failure);
                if n == 0 {
                    return Err(failure.into_error(exporter.sink_name()));
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
                    if settled.insert(at[k]) {
                        delivery.refused.push(Refused {
                            index: Some(at[k]),
                            id: None,
                            code: code.to_owned(),
                            message: failure.message.clone(),
                        });
                    }
                }
                if retried {
                    delivery.retry_after = failure.hint.after();
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Makes the call (its connection, answer and body within `timeout`) and classes the answer.
pub(super) async fn call(
    connector: &SharedHttpConnector,
    request: http::Request<SdkBody>,
    timeout: Duration,
) -> Result<Accepted, Failure> {
    let request = aws_smithy_runtime_api::http::Request::try_from(request)
        .map_err(|e| Failure::local(e.to_string()))?;
    let call = async {
        let response = connector.call(request).await.map_err(|e| Failure {
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
    let answer = tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| Failure {
            kind: ErrorKind::Timeout,
            hint: RetryHint::ByKind,
            message: format!("no answer within {timeout:?}"),
            transaction_search_off: false,
        })??;
    answer.outcome(SystemTime::now())
}

/// The drop reason for a span the endpoint would refuse.
pub(super) fn drop_reason(why: Unsendable) -> DropReason {
    match why {
        Unsendable::TooLarge => DropReason::TooLarge,
        Unsendable::TooOld | Unsendable::TooFarAhead => DropReason::OutsideTimeWindow,
    }
}

/// Nanoseconds since the Unix epoch (0 before it).
pub(super) fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// `bytes` gzip'd.
pub(super) fn gzip(bytes: &[u8]) -> std::io::Result<Bytes> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4 + 64),
        // Level 1: a fraction of the default level's CPU for a somewhat larger body, the
        // trade a local agent wants (bench/README.md, session 5).
        flate2::Compression::fast(),
    );
    encoder.write_all(bytes)?;
    encoder.finish().map(Bytes::from)
}

/// A request the endpoint took.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Accepted {
    /// Spans it refused all the same (`partial_success.rejected_spans`).
    pub rejected: u64,
    /// Its message about them.
    pub message: String,
}

/// A request that was not taken.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Failure {
    pub kind: ErrorKind,
    pub hint: RetryHint,
    /// What went wrong: `HTTP 400: the endpoint's message`, or the connection's error.
    pub message: String,
    /// The endpoint said Transaction Search is off (X-Ray's OTLP endpoint only says so).
    pub transaction_search_off: bool,
}

impl Failure {
    /// A failure before anything was sent (encoding, signing): nothing a retry fixes.
    pub(super) fn local(message: String) -> Self {
        Failure {
            kind: ErrorKind::Other,
            hint: RetryHint::ByKind,
            message,
            transaction_search_off: false,
        }
    }

    /// Whether the spans are tried again (the rules of [`crate::upload::retry::classify`]).
    pub(super) fn is_retried(&self) -> bool {
        self.hint != RetryHint::Never && crate::upload::retry::kind_is_retryable(self.kind)
    }

    /// The refusal code for spans not sent because of it: one the retry rules retry
    /// (throttling, unavailable) when it is retried, else a final one.
    pub(super) fn refusal_code(&self) -> &'static str {
        match (self.is_retried(), self.kind) {
            (true, ErrorKind::Throttled) => "TooManyRequests",
            (true, _) => "ServiceUnavailable",
            (false, _) => "Refused",
        }
    }

    pub(super) fn into_error(self, sink: &'static str) -> SinkError {
        SinkError::Call {
            sink,
            kind: self.kind,
            message: self.message,
            hint: self.hint,
        }
    }
}

/// An answer that arrived whole.
#[derive(Debug)]
pub(super) struct Answer {
    status: u16,
    content_type: Option<String>,
    retry_after: Option<String>,
    /// `x-amzn-errortype`, when X-Ray sent one.
    error_type: Option<String>,
    body: Bytes,
}

impl Answer {
    /// What the answer means at `now` (for a `Retry-After` date); see the module docs.
    pub(super) fn outcome(&self, now: SystemTime) -> Result<Accepted, Failure> {
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
