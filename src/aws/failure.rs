//! What went wrong in a call to AWS, for the log and for the retry rules.
//!
//! In: an SDK error (any AWS service's), or a connector's for calls made outside an SDK client
//! ([`connector_error_kind`]). Out: one line of words ([`describe_error`]) and its
//! class ([`error_kind`], a [`crate::outcome::ErrorKind`]): throttling (HTTP 429 or a
//! `Throttling…` error code), other 4xx, 5xx, timeout, connection refused, unknown host, other
//! connection failures, or other. `crate::upload::retry` decides from the class.
//!
//! A call whose credentials could not be had fails before it is sent (the SDK reports a
//! dispatch failure around the [`CredentialsError`]): it is classed by what failed underneath
//! ([`credentials_kind`]), so STS answering `-r`'s AssumeRole with throttling or a 5xx, or not
//! in time, is tried again like any transient failure, while a refusal (access denied) or no
//! credentials at all is not; [`credentials_failure`] says so naming STS and the role, not
//! X-Ray, which was never called.
//!
//! One failure is not a failure: an answer that arrived whole with a 2xx status but whose body
//! the SDK could not parse ([`unreadable_success`]). The service took the call; only its report
//! is unreadable, so the caller counts the call as answered. An answer cut off mid-body is a
//! broken connection ([`ErrorKind::Connection`]), tried again.

use std::error::Error;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_sts::operation::assume_role::AssumeRoleError;
use aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::{ConnectorError, SdkError};
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
                    // The credentials could not be had: classed by what failed underneath.
                    _ => match credentials_error(err) {
                        Some(c) => credentials_kind(c),
                        // A user error, a request that could not be signed: nothing a retry
                        // fixes.
                        None => ErrorKind::Other,
                    },
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

/// The credential error among the causes of `err`, if the call failed for want of credentials.
fn credentials_error<'e>(err: &'e (dyn Error + 'static)) -> Option<&'e CredentialsError> {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            return Some(c);
        }
        cause = e.source();
    }
    None
}

/// What kind of failure a failed credential lookup was, for the retry rules: a provider that
/// timed out, or whose call to STS (`-r`'s AssumeRole, web identity) or to a credentials
/// endpoint was throttled, answered 5xx, timed out or could not connect, may pass and is
/// retryable; no credentials anywhere, a configuration the provider refused, or a refusal
/// (STS's access denied) are [`ErrorKind::Http4xx`] or [`ErrorKind::Other`], not retried.
pub fn credentials_kind(err: &CredentialsError) -> ErrorKind {
    match err {
        CredentialsError::ProviderTimedOut(_) => ErrorKind::Timeout,
        CredentialsError::CredentialsNotLoaded(_) | CredentialsError::InvalidConfiguration(_) => {
            ErrorKind::Other
        }
        _ => {
            let mut cause = err.source();
            while let Some(e) = cause {
                if let Some(sts) = e.downcast_ref::<SdkError<AssumeRoleError, HttpResponse>>() {
                    return error_kind(sts);
                }
                if let Some(sts) =
                    e.downcast_ref::<SdkError<AssumeRoleWithWebIdentityError, HttpResponse>>()
                {
                    return error_kind(sts);
                }
                if let Some(inner) = e.downcast_ref::<CredentialsError>() {
                    return credentials_kind(inner);
                }
                if let Some(c) = e.downcast_ref::<ConnectorError>() {
                    return if c.is_timeout() {
                        ErrorKind::Timeout
                    } else if c.is_io() {
                        connection_kind(c)
                    } else {
                        ErrorKind::Other
                    };
                }
                if let Some(io) = e.downcast_ref::<std::io::Error>() {
                    return match io.kind() {
                        std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
                        std::io::ErrorKind::ConnectionRefused => ErrorKind::ConnectionRefused,
                        std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::BrokenPipe
                        | std::io::ErrorKind::UnexpectedEof => ErrorKind::Connection,
                        _ => ErrorKind::Other,
                    };
                }
                cause = e.source();
            }
            ErrorKind::Other
        }
    }
}

/// For a call that failed because its credentials could not be had (`None` for any other
/// failure): what failed, in words naming where the credentials were to come from; with
/// `role` (`-r`), STS's AssumeRole for that role. X-Ray was not called.
pub fn credentials_failure(err: &(dyn Error + 'static), role: Option<&str>) -> Option<String> {
    let credentials = credentials_error(err)?;
    let mut cause = credentials.source();
    while let Some(e) = cause {
        if let Some(sts) = e.downcast_ref::<SdkError<AssumeRoleError, HttpResponse>>() {
            let whose = role.map_or_else(
                || "the AWS profile's role".to_owned(),
                |r| format!("the role {r}"),
            );
            return Some(format!(
                "STS AssumeRole for {whose} (session {}) failed, so there are no credentials to \
                 call X-Ray with: {}",
                super::ROLE_SESSION_NAME,
                describe_sdk_error(sts)
            ));
        }
        if let Some(sts) =
            e.downcast_ref::<SdkError<AssumeRoleWithWebIdentityError, HttpResponse>>()
        {
            return Some(format!(
                "STS AssumeRoleWithWebIdentity (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN) \
                 failed, so there are no credentials to call X-Ray with: {}",
                describe_sdk_error(sts)
            ));
        }
        cause = e.source();
    }
    Some(format!(
        "no AWS credentials to call X-Ray with: {}",
        describe_error(credentials)
    ))
}

/// A failed call in one line: [`describe_error`], with the service's error code and message
/// when it answered (the SDK's own display says only "service error").
fn describe_sdk_error<E>(err: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + Error + 'static,
{
    match err {
        SdkError::ServiceError(e) => format!(
            "HTTP {}: {}: {}",
            e.raw().status().as_u16(),
            e.err().code().unwrap_or("(no code)"),
            e.err().message().unwrap_or("(no message)")
        ),
        other => describe_error(other),
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

    /// An upload whose credentials failed, as the SDK reports it: a dispatch failure around
    /// the credential error, around what the provider's call to STS gave.
    fn upload_without(credentials: CredentialsError) -> Error {
        SdkError::dispatch_failure(ConnectorError::other(Box::new(credentials), None))
    }

    fn sts_answer(
        status: u16,
        code: &str,
    ) -> Result<SdkError<AssumeRoleError, HttpResponse>, Box<dyn std::error::Error>> {
        let meta = ErrorMetadata::builder()
            .code(code)
            .message("from STS")
            .build();
        Ok(SdkError::service_error(
            AssumeRoleError::generic(meta),
            HttpResponse::new(StatusCode::try_from(status)?, SdkBody::empty()),
        ))
    }

    /// With -r, an AssumeRole that failed dropped the batch at once (`other`): throttling, 5xx
    /// and timeouts at STS are now what they are, so the upload stage retries them; a refusal
    /// and no credentials at all are still not retried.
    #[test]
    fn a_failed_assume_role_is_classed_by_what_sts_answered()
    -> Result<(), Box<dyn std::error::Error>> {
        use crate::upload::retry::kind_is_retryable;
        let throttled = upload_without(CredentialsError::provider_error(sts_answer(
            400,
            "Throttling",
        )?));
        assert_eq!(error_kind(&throttled), ErrorKind::Throttled);
        let down = upload_without(CredentialsError::provider_error(sts_answer(
            503,
            "ServiceUnavailable",
        )?));
        assert_eq!(error_kind(&down), ErrorKind::Http5xx);
        let slow: SdkError<AssumeRoleError, HttpResponse> =
            SdkError::timeout_error(std::io::Error::other("attempt timeout"));
        let slow = upload_without(CredentialsError::provider_error(slow));
        assert_eq!(error_kind(&slow), ErrorKind::Timeout);
        let unreachable: SdkError<AssumeRoleError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io(Box::new(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused,
            ))));
        let unreachable = upload_without(CredentialsError::provider_error(unreachable));
        assert_eq!(error_kind(&unreachable), ErrorKind::ConnectionRefused);
        let timed_out = upload_without(CredentialsError::provider_timed_out(
            std::time::Duration::from_secs(5),
        ));
        assert_eq!(error_kind(&timed_out), ErrorKind::Timeout);
        for retried in [&throttled, &down, &slow, &unreachable, &timed_out] {
            assert!(kind_is_retryable(error_kind(retried)), "{retried:?}");
        }

        let denied = upload_without(CredentialsError::provider_error(sts_answer(
            403,
            "AccessDenied",
        )?));
        assert_eq!(error_kind(&denied), ErrorKind::Http4xx);
        let none = upload_without(CredentialsError::not_loaded("no provider had any"));
        assert_eq!(error_kind(&none), ErrorKind::Other);
        let misconfigured = upload_without(CredentialsError::invalid_configuration("bad profile"));
        assert_eq!(error_kind(&misconfigured), ErrorKind::Other);
        for dropped in [&denied, &none, &misconfigured] {
            assert!(!kind_is_retryable(error_kind(dropped)), "{dropped:?}");
        }
        Ok(())
    }

    /// The message of an upload that failed for want of credentials names STS and the role
    /// (it read as an X-Ray failure), and other failures have none.
    #[test]
    fn a_failed_assume_role_is_told_as_sts_and_the_role() -> Result<(), Box<dyn std::error::Error>>
    {
        let role = "arn:aws:iam::123456789012:role/xray-writer";
        let throttled = upload_without(CredentialsError::provider_error(sts_answer(
            400,
            "Throttling",
        )?));
        let message = credentials_failure(&throttled, Some(role)).unwrap_or_default();
        assert!(
            message.starts_with(
                "STS AssumeRole for the role arn:aws:iam::123456789012:role/xray-writer"
            ) && message.contains("session xray-daemon")
                && message.contains("HTTP 400: Throttling: from STS"),
            "{message}"
        );
        let none = upload_without(CredentialsError::not_loaded("nothing found"));
        let message = credentials_failure(&none, None).unwrap_or_default();
        assert!(message.starts_with("no AWS credentials"), "{message}");
        assert_eq!(credentials_failure(&answer(500, None)?, Some(role)), None);
        Ok(())
    }
}
