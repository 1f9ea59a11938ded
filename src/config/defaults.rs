//! The defaults and limits of the daemon's public settings, in one leaf that every stage may
//! import: the config resolves flags and files against them, and the stages name them in their
//! docs. Nothing here imports a stage.

use std::time::Duration;

/// Default number of batches uploaded at once (the original's `Concurrency`).
pub const DEFAULT_CONCURRENCY: usize = 8;

/// Most uploads at once that `--concurrency` accepts.
pub const MAX_CONCURRENCY: usize = 1024;

/// Most sinks at once (the buffer keeps which lanes still hold an item in a 32-bit set).
pub const MAX_SINKS: usize = 32;

/// Default time a sampling-proxy client has to send its headers, and again its body
/// (`--proxy-client-timeout`).
pub const PROXY_CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time the sampling proxy's call to X-Ray may take (`--proxy-upstream-timeout`).
pub const PROXY_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// Default time one call to X-Ray may take before it is given up as a timeout and tried again
/// (`--upload-timeout`, `UploadTimeout`). Long enough that a slow but working X-Ray is not sent
/// every batch twice: a call cut off by the timeout may have been stored already.
pub const DEFAULT_UPLOAD_TIMEOUT: Duration = Duration::from_secs(10);
/// The shortest `--upload-timeout` accepted.
pub const MIN_UPLOAD_TIMEOUT: Duration = Duration::from_millis(100);
/// The longest `--upload-timeout` accepted.
pub const MAX_UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// Default largest OTLP request body, after decompression (`--otlp-max-request-bytes`): 20 MiB.
pub const DEFAULT_OTLP_MAX_REQUEST_BYTES: usize = 20 * 1024 * 1024;
/// The largest `--otlp-max-request-bytes` accepted: 256 MiB.
pub const MAX_OTLP_MAX_REQUEST_BYTES: usize = 256 * 1024 * 1024;

/// Default time between telemetry records.
pub const DEFAULT_TELEMETRY_INTERVAL: Duration = Duration::from_secs(60);
/// The shortest interval accepted.
pub const MIN_TELEMETRY_INTERVAL: Duration = Duration::from_millis(50);

/// Default attempts per document, the first included (`--retry-max-attempts`).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;
/// Default time after a document's first failed attempt when it is given up
/// (`--retry-max-age`): 5 minutes.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// The first backoff's ceiling.
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// The largest backoff ceiling.
pub const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// When retries end, and how long they wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per document, the first included; at least 1. Default [`DEFAULT_MAX_ATTEMPTS`].
    pub max_attempts: u32,
    /// Time after a document's first failed attempt when it is given up. Default
    /// [`DEFAULT_MAX_AGE`].
    pub max_age: Duration,
    /// The first backoff's ceiling. Default [`BACKOFF_BASE`].
    pub base: Duration,
    /// The largest backoff ceiling. Default [`BACKOFF_CAP`].
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_age: DEFAULT_MAX_AGE,
            base: BACKOFF_BASE,
            cap: BACKOFF_CAP,
        }
    }
}
