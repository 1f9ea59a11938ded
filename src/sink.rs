//! Where batches of items go: the [`Sink`] trait and its implementations, one file each.
//!
//! In: a batch of items from one sink's upload stage. Out: the items written to the
//! destination, and a [`Delivery`] saying which of them the destination refused.
//!
//! - [`xray`]: `PutTraceSegments` to AWS X-Ray (the default);
//! - [`xray_otlp`]: OpenTelemetry spans, unchanged, to X-Ray's OTLP endpoint
//!   (`--otlp-to-xray otlp`; a lane of its own beside `xray`'s, see [`crate::buffer::Takes`]);
//! - [`stdout`]: one readable line per document, for a laptop without an AWS account;
//! - [`mod@file`]: the raw documents appended to a file as JSON Lines;
//! - [`otlp`]: every trace as OTLP/HTTP to any OpenTelemetry backend (`--sink otlp:URL`): the
//!   spans received unchanged, the X-Ray documents converted;
//! - [`viewer`]: every trace into the trace viewer's store (`--viewer`);
//! - [`memory`]: a bounded in-memory store of the latest items (no upload at all), for the
//!   coming trace viewer and for tests.
//!
//! A sink is small: one async method. Each sink is paced on its own ([`Pacing`]: batch size,
//! linger, calls at once), with a lane of its own in the buffer, so a slow or dead destination
//! never holds back another. New destinations (OpenTelemetry) plug in here.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::item::Item;
use crate::outcome::{DropReason, ErrorKind};

pub mod file;
pub mod memory;
pub mod otlp;
mod otlp_call;
pub mod stdout;
pub mod viewer;
pub mod xray;
pub mod xray_otlp;

/// A boxed future, as sinks return them.
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<Delivery, SinkError>> + Send + 'a>>;

/// A destination for documents.
pub trait Sink: Send + Sync + Debug {
    /// A short name for logs and stats (`xray`, `stdout`, `file`).
    fn name(&self) -> &'static str;

    /// Delivers one batch. `Ok` means the call succeeded, though the destination may have
    /// refused some documents (listed in the [`Delivery`]); `Err` means nothing was delivered.
    fn send<'a>(&'a self, batch: &'a [Item]) -> SinkFuture<'a>;
}

/// How a sink's lane is cut and sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pacing {
    /// Most items per call.
    pub batch_size: usize,
    /// How long a partial batch waits for more items.
    pub linger: std::time::Duration,
    /// Calls under way at once; `None`: the daemon's `--concurrency`.
    pub concurrency: Option<usize>,
}

/// A destination as the daemon runs it: the sink, its name in stats and its pacing.
#[derive(Clone, Debug)]
pub struct Destination {
    /// The name in stats and logs (`xray`, `stdout`, `file:PATH`, `memory`).
    pub name: String,
    /// Where the items go.
    pub sink: std::sync::Arc<dyn Sink>,
    /// How its batches are cut and sent.
    pub pacing: Pacing,
}

/// The outcome of a call that succeeded.
#[derive(Debug, Default)]
pub struct Delivery {
    /// Documents the destination refused, with its reasons.
    pub refused: Vec<Refused>,
    /// Items the sink gave up without sending, by batch index, with the reason (counted as
    /// dropped for that reason): what the destination is known to refuse, such as a span outside
    /// X-Ray's OTLP time window. An index listed here is not in `refused`.
    pub dropped: Vec<(usize, DropReason)>,
    /// Items the sink holds back for a later batch, by batch index: not sent, not an attempt.
    /// They go back into the sink's lane, still charged to the budget, and come again in the
    /// next batch (the OTLP sink waits so for a streamed subsegment's segment and for an
    /// in-progress document's complete one, a bounded time). An index listed here is in
    /// neither `refused` nor `dropped`.
    pub held: Vec<usize>,
    /// The sink made no call at all (every item held back, or nothing to send): not an answer
    /// from the destination, so it neither ends a run of failures nor counts as a call.
    pub no_call: bool,
    /// How long the destination asked to wait before the refusals worth another attempt are
    /// sent again (its `Retry-After`), when it said; else the backoff decides.
    pub retry_after: Option<Duration>,
}

/// One document the destination refused.
#[derive(Debug, Clone)]
pub struct Refused {
    /// Index of the document in the batch, when it could be matched.
    pub index: Option<usize>,
    /// The segment id the destination named.
    pub id: Option<String>,
    /// The destination's error code.
    pub code: String,
    /// The destination's message.
    pub message: String,
}

/// A call that delivered nothing.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The destination answered with an error, or could not be reached.
    #[error("{sink}: {message}")]
    Call {
        /// The sink's name.
        sink: &'static str,
        /// What kind of failure it was (decides whether the call is retried).
        kind: ErrorKind,
        /// What went wrong, as the SDK or OS said it.
        message: String,
        /// What the answer said about another attempt, beyond its kind.
        hint: RetryHint,
    },
    /// The call failed, and the sink had held these items back (by batch index): they were not
    /// in it, so they go back as held; the failure is the rest's.
    #[error("{error}")]
    Held {
        /// The items held back.
        held: Vec<usize>,
        /// How the call failed.
        error: Box<SinkError>,
    },
    /// Writing locally failed.
    #[error("{sink}: {source}")]
    Io {
        /// The sink's name.
        sink: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl SinkError {
    /// What kind of failure this was; a local write failure is [`ErrorKind::Other`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            SinkError::Call { kind, .. } => *kind,
            SinkError::Held { error, .. } => error.kind(),
            SinkError::Io { .. } => ErrorKind::Other,
        }
    }

    /// Items the sink held back from the failed call (see [`SinkError::Held`]).
    pub fn held(&self) -> &[usize] {
        match self {
            SinkError::Held { held, .. } => held,
            _ => &[],
        }
    }

    /// What the answer said about another attempt ([`RetryHint::ByKind`] for a local failure).
    pub fn hint(&self) -> RetryHint {
        match self {
            SinkError::Call { hint, .. } => *hint,
            SinkError::Held { error, .. } => error.hint(),
            SinkError::Io { .. } => RetryHint::ByKind,
        }
    }
}

/// What a failed call's answer said about trying again, beyond its [`ErrorKind`]; the retry
/// rules ([`crate::upload::retry`]) weigh it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RetryHint {
    /// Nothing: the kind decides, and the backoff how long to wait.
    #[default]
    ByKind,
    /// The destination asked to wait this long (`Retry-After`); the kind still decides whether
    /// another attempt is made.
    After(Duration),
    /// Another attempt would not help, whatever the kind says (an OTLP endpoint's `500`: OTLP
    /// retries only `429`, `502`, `503` and `504`).
    Never,
}

impl RetryHint {
    /// The wait the destination asked for, if any.
    pub fn after(self) -> Option<Duration> {
        match self {
            RetryHint::After(wait) => Some(wait),
            RetryHint::ByKind | RetryHint::Never => None,
        }
    }
}

/// Which sink to build, as given on the command line (`--sink`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkSpec {
    /// PutTraceSegments to X-Ray.
    Xray,
    /// Readable lines on standard output.
    Stdout,
    /// Raw documents appended to this file, one per line.
    File(std::path::PathBuf),
    /// Every trace as OTLP/HTTP to an OpenTelemetry backend (`otlp` or `otlp:URL`).
    Otlp(otlp::OtlpTarget),
}

impl std::str::FromStr for SinkSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "xray" => Ok(SinkSpec::Xray),
            "stdout" => Ok(SinkSpec::Stdout),
            "otlp" => Ok(SinkSpec::Otlp(otlp::OtlpTarget::given(None))),
            _ => match (s.strip_prefix("file:"), s.strip_prefix("otlp:")) {
                (Some(path), _) if !path.is_empty() => Ok(SinkSpec::File(path.into())),
                (_, Some(url)) if !url.trim().is_empty() => Ok(SinkSpec::Otlp(
                    otlp::OtlpTarget::given(Some(url.trim().to_owned())),
                )),
                _ => Err(format!(
                    "unknown sink {s:?}: use xray, stdout, file:PATH (for example \
                     file:/tmp/segments.jsonl) or otlp:URL (for example \
                     otlp:https://api.honeycomb.io)"
                )),
            },
        }
    }
}

impl std::fmt::Display for SinkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkSpec::Xray => f.write_str("xray"),
            SinkSpec::Stdout => f.write_str("stdout"),
            SinkSpec::File(p) => write!(f, "file:{}", p.display()),
            SinkSpec::Otlp(target) => {
                match target
                    .settings
                    .as_ref()
                    .map(|s| &s.url)
                    .or(target.given.as_ref())
                {
                    Some(url) => write!(f, "otlp:{}", crate::config::redact_userinfo(url)),
                    None => f.write_str("otlp"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sink_specs() {
        assert_eq!("xray".parse(), Ok(SinkSpec::Xray));
        assert_eq!("stdout".parse(), Ok(SinkSpec::Stdout));
        assert_eq!("file:/a b".parse(), Ok(SinkSpec::File("/a b".into())));
        assert!("file:".parse::<SinkSpec>().is_err());
        assert!("otlp:".parse::<SinkSpec>().is_err());
        let otlp = "otlp:http://127.0.0.1:4318".parse::<SinkSpec>();
        assert_eq!(
            otlp.map(|s| s.to_string()).as_deref(),
            Ok("otlp:http://127.0.0.1:4318")
        );
        assert_eq!(
            "otlp".parse::<SinkSpec>().map(|s| s.to_string()).as_deref(),
            Ok("otlp")
        );
        assert!("kafka".parse::<SinkSpec>().is_err());
    }
}
