//! The retry decision, as pure functions: what a sink call's result means for its documents,
//! how long to wait before the next attempt, and when to give up.
//!
//! In: the result of one [`crate::sink::Sink::send`] call, attempt counts and ages. Out: a
//! [`Verdict`] and [`Duration`]s; no I/O, no clock, no randomness of its own (the caller passes
//! the jitter), so every rule here is unit-tested below.
//!
//! The rules:
//! - a call that succeeded with nothing refused is [`Verdict::Sent`];
//! - a call that succeeded but whose destination refused some documents is
//!   [`Verdict::Partial`]: refusals whose code says throttling or an internal error (X-Ray's
//!   `UnprocessedTraceSegments` with `ThrottlingException`, `InternalFailure`, …) are tried
//!   again, the others are final;
//! - any complete 2xx answer means the call succeeded: one whose body cannot be read counts
//!   its documents as sent, since the destination stored them (the sink returns an empty
//!   [`Delivery`] and warns, rate-limited; see [`crate::aws::failure::unreadable_success`]);
//! - no complete answer (a reset before or during the body, a timeout before the status) is a
//!   failed call of kind [`ErrorKind::Timeout`] or [`ErrorKind::Connection`], tried again:
//!   delivery is at least once, so a destination may get a document twice;
//! - a failed call is [`Verdict::Retry`] when its [`ErrorKind`] is throttling (HTTP 429), HTTP
//!   5xx, a timeout or a connection failure, and [`Verdict::Drop`] otherwise (another 4xx: the
//!   request itself is wrong, or no credentials), as retrying would only fail again; a call
//!   whose credentials could not be had has the kind of what failed underneath (STS throttled
//!   for `-r`'s AssumeRole is throttling; see `crate::aws::failure::credentials_kind`); a sink
//!   may say more ([`RetryHint::Never`]: X-Ray's OTLP endpoint, like any OTLP endpoint, is
//!   retried on 429, 502, 503 and 504 only, so its 500 is dropped);
//! - the wait before the next attempt is what the destination asked for when it said
//!   (`Retry-After`, in seconds or as an HTTP date, read by [`parse_retry_after`]; at most
//!   [`MAX_RETRY_AFTER`]), else exponential backoff with full jitter:
//!   `jitter × min(cap, base × 2^(failures−1))`, `jitter` uniform in `[0, 1)` ([`wait_before_retry`]);
//! - a document is given up after [`RetryPolicy::max_attempts`] attempts (the first included)
//!   or [`RetryPolicy::max_age`] after its first failed attempt, whichever comes first.

use std::time::{Duration, SystemTime};

pub use crate::config::defaults::RetryPolicy;
use crate::outcome::ErrorKind;
use crate::sink::{Delivery, RetryHint, SinkError};

/// The longest wait a destination's `Retry-After` is honoured for; a longer one is cut to this
/// (items still age out after [`RetryPolicy::max_age`]).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// What one call's result means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every document was taken.
    Sent,
    /// The call succeeded but the destination refused some documents. Indices are into
    /// [`Delivery::refused`]: `retry` lists refusals to try again, `reject` the final ones.
    /// Documents not named in either were taken.
    Partial {
        /// Refusals worth another attempt (throttling, internal error).
        retry: Vec<usize>,
        /// Final refusals.
        reject: Vec<usize>,
    },
    /// The call failed in a way worth another attempt.
    Retry(ErrorKind),
    /// The call failed in a way that another attempt would not fix.
    Drop(ErrorKind),
}

/// Classifies one call's result.
pub fn classify(result: &Result<Delivery, SinkError>) -> Verdict {
    match result {
        Ok(delivery) if delivery.refused.is_empty() => Verdict::Sent,
        Ok(delivery) => {
            let (mut retry, mut reject) = (Vec::new(), Vec::new());
            for (i, r) in delivery.refused.iter().enumerate() {
                // A refusal that names no document of the batch cannot be sent again alone.
                if r.index.is_some() && code_is_retryable(&r.code) {
                    retry.push(i);
                } else {
                    reject.push(i);
                }
            }
            Verdict::Partial { retry, reject }
        }
        Err(e) if e.hint() == RetryHint::Never => Verdict::Drop(e.kind()),
        Err(e) if kind_is_retryable(e.kind()) => Verdict::Retry(e.kind()),
        Err(e) => Verdict::Drop(e.kind()),
    }
}

/// True for failures another attempt may get past.
pub fn kind_is_retryable(kind: ErrorKind) -> bool {
    match kind {
        ErrorKind::Throttled
        | ErrorKind::Http5xx
        | ErrorKind::Timeout
        | ErrorKind::ConnectionRefused
        | ErrorKind::UnknownHost
        | ErrorKind::Connection => true,
        ErrorKind::Http4xx | ErrorKind::Other => false,
    }
}

/// True for a refusal code that says throttling or a failure on the service's side
/// (`ThrottlingException`, `ThrottledException`, `InternalFailure`, `InternalError`,
/// `ServiceUnavailable`, `TooManyRequests`, `SlowDown`), in any letter case.
pub fn code_is_retryable(code: &str) -> bool {
    let code = code.to_ascii_lowercase();
    [
        "throttl",
        "internal",
        "unavailable",
        "toomanyrequests",
        "slowdown",
    ]
    .iter()
    .any(|w| code.contains(w))
}

/// The wait before the next attempt after `failures` consecutive failures (1 for the first),
/// given `jitter` in `[0, 1)`: full jitter over an exponentially growing, capped ceiling.
pub fn backoff(policy: &RetryPolicy, failures: u32, jitter: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    let ceiling = policy
        .base
        .saturating_mul(1u32 << doublings)
        .min(policy.cap);
    ceiling.mul_f64(jitter.clamp(0.0, 1.0))
}

/// The wait before the next attempt after `failures` consecutive failures: `retry_after` (what
/// the destination asked for) when given, at most [`MAX_RETRY_AFTER`]; else [`backoff`].
pub fn wait_before_retry(
    policy: &RetryPolicy,
    failures: u32,
    jitter: f64,
    retry_after: Option<Duration>,
) -> Duration {
    match retry_after {
        Some(wait) => wait.min(MAX_RETRY_AFTER),
        None => backoff(policy, failures, jitter),
    }
}

/// The wait a `Retry-After` header value asks for at `now`: delay-seconds (`120`) or an HTTP
/// date (`Sun, 06 Nov 1994 08:49:37 GMT`, and the two obsolete forms HTTP still accepts); a date
/// already past asks for no wait. `None` for anything else, which the caller ignores.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds still means "a long time".
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// True when a document that has had `attempts` attempts, the first of which failed `age`
/// ago, gets no more.
pub fn gives_up(policy: &RetryPolicy, attempts: u32, age: Duration) -> bool {
    attempts >= policy.max_attempts || age >= policy.max_age
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Refused;

    fn call_error(kind: ErrorKind) -> Result<Delivery, SinkError> {
        Err(SinkError::Call {
            sink: "xray",
            kind,
            message: "x".into(),
            hint: RetryHint::ByKind,
        })
    }

    fn refused(index: Option<usize>, code: &str) -> Refused {
        Refused {
            index,
            id: None,
            code: code.into(),
            message: String::new(),
        }
    }

    #[test]
    fn failures_retry_only_when_another_attempt_can_help() {
        for kind in [
            ErrorKind::Throttled,
            ErrorKind::Http5xx,
            ErrorKind::Timeout,
            ErrorKind::ConnectionRefused,
            ErrorKind::UnknownHost,
            ErrorKind::Connection,
        ] {
            assert_eq!(classify(&call_error(kind)), Verdict::Retry(kind));
        }
        for kind in [ErrorKind::Http4xx, ErrorKind::Other] {
            assert_eq!(classify(&call_error(kind)), Verdict::Drop(kind));
        }
        let io = Err(SinkError::Io {
            sink: "file",
            source: std::io::Error::other("disk full"),
        });
        assert_eq!(classify(&io), Verdict::Drop(ErrorKind::Other));
    }

    #[test]
    fn a_complete_2xx_is_sent_and_no_complete_answer_is_retried() {
        // What the X-Ray sink returns for a 2xx whose body it could not read.
        assert_eq!(classify(&Ok(Delivery::default())), Verdict::Sent);
        // A body cut off mid-answer, a reset or a timeout before the status.
        for kind in [ErrorKind::Connection, ErrorKind::Timeout] {
            assert_eq!(classify(&call_error(kind)), Verdict::Retry(kind));
        }
    }

    #[test]
    fn refusals_split_into_retry_and_reject_by_code() {
        assert_eq!(classify(&Ok(Delivery::default())), Verdict::Sent);
        let delivery = Delivery {
            dropped: Vec::new(),
            held: Vec::new(),
            no_call: false,
            retry_after: None,
            refused: vec![
                refused(Some(0), "ThrottlingException"),
                refused(Some(1), "MissingParam"),
                refused(Some(2), "InternalFailure"),
                refused(None, "ThrottlingException"),
                refused(Some(4), "InvalidSegment"),
            ],
        };
        assert_eq!(
            classify(&Ok(delivery)),
            Verdict::Partial {
                retry: vec![0, 2],
                reject: vec![1, 3, 4]
            }
        );
    }

    #[test]
    fn retryable_codes() {
        for code in [
            "ThrottlingException",
            "ThrottledException",
            "InternalFailure",
            "InternalError",
            "ServiceUnavailable",
            "TooManyRequestsException",
        ] {
            assert!(code_is_retryable(code), "{code}");
        }
        for code in ["MissingParam", "JSONFormatError", "InvalidSegment", ""] {
            assert!(!code_is_retryable(code), "{code}");
        }
    }

    #[test]
    fn backoff_grows_to_the_cap_with_full_jitter() {
        let p = RetryPolicy::default();
        assert!(backoff(&p, 1, 0.999) < Duration::from_millis(100));
        assert_eq!(backoff(&p, 1, 0.5), Duration::from_millis(50));
        assert_eq!(backoff(&p, 2, 0.5), Duration::from_millis(100));
        assert_eq!(backoff(&p, 4, 0.5), Duration::from_millis(400));
        assert_eq!(
            backoff(&p, 7, 0.5),
            Duration::from_millis(2500),
            "capped at 5 s"
        );
        assert_eq!(backoff(&p, u32::MAX, 0.5), Duration::from_millis(2500));
        assert_eq!(
            backoff(&p, 3, 0.0),
            Duration::ZERO,
            "full jitter reaches zero"
        );
        assert_eq!(backoff(&p, 0, 1.0), Duration::from_millis(100));
    }

    #[test]
    fn a_hint_can_forbid_a_retry_or_set_the_wait() {
        let answered = |kind, hint| {
            Err(SinkError::Call {
                sink: "xray-otlp",
                kind,
                message: "x".into(),
                hint,
            })
        };
        // OTLP: a 500 is final, a 503 is retried after what it asked for.
        let internal = answered(ErrorKind::Http5xx, RetryHint::Never);
        assert_eq!(classify(&internal), Verdict::Drop(ErrorKind::Http5xx));
        let busy = answered(ErrorKind::Http5xx, RetryHint::After(Duration::from_secs(3)));
        assert_eq!(classify(&busy), Verdict::Retry(ErrorKind::Http5xx));
        // A wait on an answer whose kind is final does not make it retried.
        let bad = answered(ErrorKind::Http4xx, RetryHint::After(Duration::from_secs(3)));
        assert_eq!(classify(&bad), Verdict::Drop(ErrorKind::Http4xx));

        let p = RetryPolicy::default();
        let asked = Some(Duration::from_secs(3));
        assert_eq!(wait_before_retry(&p, 1, 0.5, asked), Duration::from_secs(3));
        assert_eq!(
            wait_before_retry(&p, 1, 0.5, Some(Duration::from_secs(86_400))),
            MAX_RETRY_AFTER
        );
        assert_eq!(wait_before_retry(&p, 2, 0.5, None), backoff(&p, 2, 0.5));
        assert_eq!(
            wait_before_retry(&p, 9, 0.5, Some(Duration::ZERO)),
            Duration::ZERO
        );
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // 08:49:37 GMT
        let parse = |v: &str| parse_retry_after(v, now);
        assert_eq!(parse("1"), Some(Duration::from_secs(1)));
        assert_eq!(parse(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(parse("0"), Some(Duration::ZERO));
        assert_eq!(
            parse("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
        // The three date forms HTTP allows, 30 s after `now`.
        for date in [
            "Sun, 06 Nov 1994 08:50:07 GMT",
            "Sunday, 06-Nov-94 08:50:07 GMT",
            "Sun Nov  6 08:50:07 1994",
        ] {
            assert_eq!(parse(date), Some(Duration::from_secs(30)), "{date}");
        }
        // A date in the past asks for no wait.
        assert_eq!(parse("Sun, 06 Nov 1994 08:00:00 GMT"), Some(Duration::ZERO));
        for junk in ["", "soon", "-1", "1.5", "+3", "Sun, 06 Nov 1994"] {
            assert_eq!(parse(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn gives_up_at_the_attempt_limit_or_the_age_limit() {
        let p = RetryPolicy {
            max_attempts: 3,
            max_age: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        assert!(!gives_up(&p, 2, Duration::from_secs(9)));
        assert!(gives_up(&p, 3, Duration::ZERO));
        assert!(gives_up(&p, 1, Duration::from_secs(10)));
    }
}
