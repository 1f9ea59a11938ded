//! What went wrong in a call to AWS, for the log and for the retry rules.
//!
//! In: an SDK error (any AWS service's), or a connector's for calls made outside an SDK client
//! ([`connector_error_kind`]). Out: one line of words ([`describe_error`]) and its
//! class ([`error_kind`], a [`crate::outcome::ErrorKind`]): throttling (HTTP 429 or a
//! `Throttling…` error code), other 4xx, 5xx, timeout, connection refused, unknown host, other
//! connection failures, or other. `crate::upload::retry` decides from the class.
//!
//! One failure is not a failure: an answer that arrived whole with a 2xx status but whose body
//! the SDK could not parse ([`unreadable_success`]). The service took the call; only its report
//! is unreadable, so the caller counts the call as answered. An answer cut off mid-body is a
//! broken connection ([`ErrorKind::Connection`]), tried again.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::outcome::ErrorKind;

/// An error and its causes in one line, without the debug dump the SDK's own display adds:
/// `a: b: c`, each cause once.
pub fn describe_error(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        // SDK errors often repeat their cause's words in their own.
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ").trim_end_matches('.').to_owned()
}

/// What kind of failure a failed call to AWS was: the X-Ray sink's and telemetry's calls.
pub fn error_kind<E>(err: &SdkError<E, HttpResponse>) -> ErrorKind
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::TimeoutError(_) => ErrorKind::Timeout,
        SdkError::DispatchFailure(d) => {
            if d.is_timeout() {
                ErrorKind::Timeout
            } else if d.is_io() {
                connection_kind(err)
            } else {
                use aws_smithy_types::retry::ErrorKind as Smithy;
                match d.as_other() {
                    Some(Smithy::TransientError) => ErrorKind::Connection,
                    Some(Smithy::ThrottlingError) => ErrorKind::Throttled,
                    Some(Smithy::ServerError) => ErrorKind::Http5xx,
                    Some(Smithy::ClientError) => ErrorKind::Http4xx,
                    // A user error, a failed credential lookup, a request that could not be
                    // signed: nothing a retry fixes.
                    _ => ErrorKind::Other,
                }
            }
        }
        SdkError::ResponseError(r) => match ErrorKind::from_status(r.raw().status().as_u16()) {
            // A 2xx whose body could not be read: the connection broke mid-answer.
            ErrorKind::Other => ErrorKind::Connection,
            kind => kind,
        },
        SdkError::ServiceError(e) => {
            let throttling = e
                .err()
                .code()
                .is_some_and(|c| c.to_ascii_lowercase().contains("throttl"));
            if throttling {
                ErrorKind::Throttled
            } else {
                ErrorKind::from_status(e.raw().status().as_u16())
            }
        }
        _ => ErrorKind::Other,
    }
}

/// What kind of failure a call made with a connector (outside an SDK client) was, when no
/// answer came: a timeout, a refused connection, an unknown host, or another connection failure.
pub fn connector_error_kind(
    err: &aws_smithy_runtime_api::client::result::ConnectorError,
) -> ErrorKind {
    if err.is_timeout() {
        ErrorKind::Timeout
    } else {
        connection_kind(err)
    }
}

/// The HTTP status of an answer that arrived whole, with a 2xx status, but whose body the SDK
/// could not parse into the operation's output; `None` for every other failure.
///
/// The SDK parses every 2xx body as the operation's output and reports a parse failure as the
/// operation's unmodelled error ([`SdkError::ServiceError`]) carrying the raw answer. A body cut
/// off by the connection is reported as [`SdkError::ResponseError`] instead: that one is not
/// an answer, and [`error_kind`] classes it a connection failure.
pub fn unreadable_success<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    match err {
        SdkError::ServiceError(e) if e.raw().status().is_success() => {
            Some(e.raw().status().as_u16())
        }
        _ => None,
    }
}

/// Refused, unknown host or another connection failure, from an I/O error's chain.
fn connection_kind(err: &(dyn std::error::Error + 'static)) -> ErrorKind {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return ErrorKind::ConnectionRefused,
                std::io::ErrorKind::TimedOut => return ErrorKind::Timeout,
                _ => {}
            }
        }
        cause = e.source();
    }
    let text = DisplayErrorContext(err).to_string().to_ascii_lowercase();
    if text.contains("connection refused") {
        ErrorKind::ConnectionRefused
    } else if text.contains("dns error")
        || text.contains("failed to lookup address")
        || text.contains("name or service not known")
    {
        ErrorKind::UnknownHost
    } else {
        ErrorKind::Connection
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn joins_causes_once() {
        let inner = std::io::Error::other("connection refused");
        let outer = std::io::Error::other(inner);
        assert_eq!(super::describe_error(&outer), "connection refused");
        #[derive(Debug)]
        struct Wrap(std::io::Error);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("dispatch failure")
            }
        }
        impl std::error::Error for Wrap {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let w = Wrap(std::io::Error::other("timed out"));
        assert_eq!(super::describe_error(&w), "dispatch failure: timed out");
    }

    use aws_sdk_xray::operation::put_trace_segments::PutTraceSegmentsError;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;

    type Error = SdkError<PutTraceSegmentsError, HttpResponse>;

    fn answer(status: u16, code: Option<&str>) -> Result<Error, Box<dyn std::error::Error>> {
        let raw = HttpResponse::new(StatusCode::try_from(status)?, SdkBody::empty());
        let mut meta = ErrorMetadata::builder();
        if let Some(code) = code {
            meta = meta.code(code);
        }
        Ok(SdkError::service_error(
            PutTraceSegmentsError::generic(meta.build()),
            raw,
        ))
    }

    #[test]
    fn answers_are_classed_by_status_and_throttling_code() -> Result<(), Box<dyn std::error::Error>>
    {
        assert_eq!(
            error_kind(&answer(400, Some("ThrottlingException"))?),
            ErrorKind::Throttled
        );
        assert_eq!(error_kind(&answer(429, None)?), ErrorKind::Throttled);
        assert_eq!(
            error_kind(&answer(403, Some("AccessDenied"))?),
            ErrorKind::Http4xx
        );
        assert_eq!(error_kind(&answer(503, None)?), ErrorKind::Http5xx);
        let unreadable: Error = SdkError::response_error(
            std::io::Error::other("body cut off"),
            HttpResponse::new(StatusCode::try_from(200)?, SdkBody::empty()),
        );
        assert_eq!(error_kind(&unreadable), ErrorKind::Connection);
        Ok(())
    }

    #[test]
    fn a_whole_2xx_answer_with_an_unreadable_body_is_a_success_and_a_cut_off_one_is_not()
    -> Result<(), Box<dyn std::error::Error>> {
        // What the SDK reports for `200` with a body that is not the operation's output.
        let unparsable: Error = SdkError::service_error(
            PutTraceSegmentsError::unhandled(std::io::Error::other("expected start object")),
            HttpResponse::new(StatusCode::try_from(200)?, SdkBody::from("garbage")),
        );
        assert_eq!(unreadable_success(&unparsable), Some(200));
        let no_content: Error = SdkError::service_error(
            PutTraceSegmentsError::unhandled(std::io::Error::other("eof")),
            HttpResponse::new(StatusCode::try_from(204)?, SdkBody::empty()),
        );
        assert_eq!(unreadable_success(&no_content), Some(204));
        // What it reports for a `200` whose body the connection cut off: no answer, retried.
        let cut_off: Error = SdkError::response_error(
            std::io::Error::from(std::io::ErrorKind::ConnectionReset),
            HttpResponse::new(StatusCode::try_from(200)?, SdkBody::empty()),
        );
        assert_eq!(unreadable_success(&cut_off), None);
        assert_eq!(error_kind(&cut_off), ErrorKind::Connection);
        // Refusals and failures before the status stay failures.
        assert_eq!(unreadable_success(&answer(500, None)?), None);
        assert_eq!(
            unreadable_success(&answer(400, Some("InvalidRequest"))?),
            None
        );
        let timeout: Error = SdkError::timeout_error(std::io::Error::other("attempt timeout"));
        assert_eq!(unreadable_success(&timeout), None);
        Ok(())
    }

    #[test]
    fn failures_to_connect_are_classed_by_cause() {
        let refused: Error = SdkError::dispatch_failure(ConnectorError::io(Box::new(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        )));
        assert_eq!(error_kind(&refused), ErrorKind::ConnectionRefused);
        let unknown: Error = SdkError::dispatch_failure(ConnectorError::io(Box::new(
            std::io::Error::other("dns error: failed to lookup address information"),
        )));
        assert_eq!(error_kind(&unknown), ErrorKind::UnknownHost);
        let timeout: Error = SdkError::timeout_error(std::io::Error::other("attempt timeout"));
        assert_eq!(error_kind(&timeout), ErrorKind::Timeout);
    }
}
