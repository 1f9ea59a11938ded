//! Self-telemetry, like the original daemon's: `PutTelemetryRecords` on an interval.
//!
//! In: the daemon's counters ([`Stats`]), read every interval. Out: one record per interval
//! (default [`DEFAULT_INTERVAL`], 60 s; `--telemetry-interval` shortens it, for tests), sent to
//! the X-Ray endpoint at most [`MAX_RECORDS_PER_CALL`] to a call, with the machine's
//! `Hostname`, `EC2InstanceId` and the daemon's `ResourceARN` (`-a`). Switched off with
//! `--no-telemetry`, or when no sink sends to X-Ray.
//!
//! As the original: no record is cut before the first datagram arrived; after that one is cut
//! every interval, even with all counts zero. Records a failed call could not deliver are kept
//! (at most [`MAX_QUEUED_RECORDS`], the oldest dropped) and sent with the next ones. When
//! shutdown starts the interval stops; one final record is cut **after** the drain, so it
//! holds what the drain sent (the original cut it before, and lost those counts); it is sent
//! within what is left of the shutdown deadline (at least [`FINAL_SEND_MIN`]). The SDK's retries are off; a failed call is
//! counted among the backend connection errors, as the original does.
//!
//! How our counters map onto the original's record (each record holds the change since the
//! previous one):
//!
//! | record field | our counters |
//! |---|---|
//! | `SegmentsReceivedCount` | `received` (non-empty datagrams read, like the original) |
//! | `SegmentsSentCount` | `sent` |
//! | `SegmentsRejectedCount` | `rejected` (refused by X-Ray) + drops for bad input: `missing_newline`, `header_not_json`, `unsupported_header`, `empty_body`, `invalid_body`, `truncated`, `too_large` |
//! | `SegmentsSpilloverCount` | drops of good documents: `spillover`, `retries_exhausted`, `upload_failed`, `shutdown` |
//! | `BackendConnectionErrors.TimeoutCount` | upload errors `timeout` |
//! | `…ConnectionRefusedCount` | `connection_refused` (the original never counted it) |
//! | `…HTTPCode4XXCount` | `throttled` + `http_4xx` |
//! | `…HTTPCode5XXCount` | `http_5xx` |
//! | `…UnknownHostCount` | `unknown_host` |
//! | `…OtherCount` | `connection` + `other` |
//!
//! So, summed over every record once the daemon has stopped, received = sent + rejected +
//! spillover. Documents still buffered or in flight when a record is cut are counted in a
//! later record, when their fate is known. Kernel drops (`kernel_dropped`) were never received
//! and are in no record.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_xray::Client;
use aws_sdk_xray::types::{BackendConnectionErrors, TelemetryRecord};
use aws_smithy_types::DateTime;
use aws_smithy_types::error::display::DisplayErrorContext;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::aws::error_kind;
pub use crate::config::defaults::{
    DEFAULT_TELEMETRY_INTERVAL as DEFAULT_INTERVAL, MIN_TELEMETRY_INTERVAL as MIN_INTERVAL,
};
use crate::outcome::DropReason;
use crate::stats::{Snapshot, Stats};

/// Records per `PutTelemetryRecords` call (the original's limit).
pub const MAX_RECORDS_PER_CALL: usize = 10;
/// Records kept while calls fail; the oldest go first.
pub const MAX_QUEUED_RECORDS: usize = 30;
/// The final record gets at least this long to be sent, even past the shutdown deadline.
pub const FINAL_SEND_MIN: Duration = Duration::from_secs(1);

/// Who is reporting: sent with every call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// `Hostname`: `AWS_HOSTNAME`, else instance metadata, else empty.
    pub hostname: String,
    /// `EC2InstanceId`: `AWS_INSTANCE_ID`, else instance metadata, else empty.
    pub instance_id: String,
    /// `ResourceARN`: `-a/--resource-arn`, else empty.
    pub resource_arn: String,
}

impl Identity {
    /// The identity from the AWS context's lookups (which honour `AWS_HOSTNAME` and
    /// `AWS_INSTANCE_ID`, then instance metadata unless `-o`) and `-a`.
    pub fn new(
        hostname: Option<&str>,
        instance_id: Option<&str>,
        resource_arn: Option<&str>,
    ) -> Self {
        Identity {
            hostname: hostname.unwrap_or_default().to_owned(),
            instance_id: instance_id.unwrap_or_default().to_owned(),
            resource_arn: resource_arn.unwrap_or_default().to_owned(),
        }
    }
}

/// One record's counts, in the original's terms (see the module docs for the mapping).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// `SegmentsReceivedCount`.
    pub received: i32,
    /// `SegmentsSentCount`.
    pub sent: i32,
    /// `SegmentsSpilloverCount`.
    pub spillover: i32,
    /// `SegmentsRejectedCount`.
    pub rejected: i32,
    /// `BackendConnectionErrors.TimeoutCount`.
    pub timeout: i32,
    /// `BackendConnectionErrors.ConnectionRefusedCount`.
    pub connection_refused: i32,
    /// `BackendConnectionErrors.HTTPCode4XXCount`.
    pub http_4xx: i32,
    /// `BackendConnectionErrors.HTTPCode5XXCount`.
    pub http_5xx: i32,
    /// `BackendConnectionErrors.UnknownHostCount`.
    pub unknown_host: i32,
    /// `BackendConnectionErrors.OtherCount`.
    pub other: i32,
}

/// The counts that changed from `before` to `after`, mapped onto the original's counters.
pub fn counts_between(before: &Snapshot, after: &Snapshot) -> Counts {
    let d = |a: u64, b: u64| i32::try_from(a.saturating_sub(b)).unwrap_or(i32::MAX);
    // A span outside X-Ray's OTLP time window is one X-Ray would refuse: counted as rejected.
    let refused = |r: &DropReason| r.is_bad_input() || *r == DropReason::OutsideTimeWindow;
    let dropped = |s: &Snapshot, bad: bool| -> u64 {
        DropReason::ALL
            .iter()
            .filter(|r| refused(r) == bad)
            .map(|r| s.dropped.get(r.as_str()).copied().unwrap_or(0))
            .sum()
    };
    let errors = |s: &Snapshot, kinds: &[&str]| -> u64 {
        kinds
            .iter()
            .map(|k| s.backend_errors.get(*k).copied().unwrap_or(0))
            .sum()
    };
    let e = |kinds: &[&str]| d(errors(after, kinds), errors(before, kinds));
    Counts {
        received: d(after.received, before.received),
        sent: d(after.sent, before.sent),
        spillover: d(dropped(after, false), dropped(before, false)),
        rejected: d(
            after.rejected + dropped(after, true),
            before.rejected + dropped(before, true),
        ),
        timeout: e(&["timeout"]),
        connection_refused: e(&["connection_refused"]),
        http_4xx: e(&["throttled", "http_4xx"]),
        http_5xx: e(&["http_5xx"]),
        unknown_host: e(&["unknown_host"]),
        other: e(&["connection", "other"]),
    }
}

/// One record: when it was cut, and its counts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Record {
    /// Unix seconds, millisecond precision.
    pub timestamp: f64,
    /// The counts.
    pub counts: Counts,
}

impl Record {
    fn to_sdk(self) -> Option<TelemetryRecord> {
        let c = self.counts;
        TelemetryRecord::builder()
            .timestamp(DateTime::from_millis((self.timestamp * 1000.0) as i64))
            .segments_received_count(c.received)
            .segments_sent_count(c.sent)
            .segments_spillover_count(c.spillover)
            .segments_rejected_count(c.rejected)
            .backend_connection_errors(
                BackendConnectionErrors::builder()
                    .timeout_count(c.timeout)
                    .connection_refused_count(c.connection_refused)
                    .http_code4_xx_count(c.http_4xx)
                    .http_code5_xx_count(c.http_5xx)
                    .unknown_host_count(c.unknown_host)
                    .other_count(c.other)
                    .build(),
            )
            .build()
            .ok()
    }
}

/// Tells the telemetry task that the drain is over; it then cuts and sends the final record,
/// giving up at the instant sent (or [`FINAL_SEND_MIN`] from now, whichever is later).
#[derive(Debug)]
pub struct Finish(oneshot::Sender<Instant>);

impl Finish {
    /// Sends the final record, by `deadline` at the latest (see [`FINAL_SEND_MIN`]).
    pub fn now(self, deadline: Instant) {
        let _ = self.0.send(deadline);
    }
}

/// The telemetry task's state.
#[derive(Debug)]
struct Reporter {
    client: Client,
    stats: Arc<Stats>,
    identity: Identity,
    last: Snapshot,
    queue: VecDeque<Record>,
}

impl Reporter {
    /// Cuts a record of what changed since the last one, unless no datagram ever arrived.
    fn cut(&mut self) {
        let now = self.stats.snapshot();
        if now.received == 0 {
            tracing::debug!("Skipped telemetry: no segments received yet");
            return;
        }
        let counts = counts_between(&self.last, &now);
        self.last = now;
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_millis() as f64 / 1000.0);
        if self.queue.len() >= MAX_QUEUED_RECORDS {
            self.queue.pop_front();
            tracing::debug!("Telemetry records kept too long were dropped");
        }
        self.queue.push_back(Record { timestamp, counts });
    }

    /// Sends queued records, [`MAX_RECORDS_PER_CALL`] a call; stops at the first failure and
    /// keeps what was not sent. Cancel-safe: records leave the queue only once delivered.
    async fn send_queued(&mut self) {
        while !self.queue.is_empty() {
            let n = self.queue.len().min(MAX_RECORDS_PER_CALL);
            let records: Vec<TelemetryRecord> = self
                .queue
                .iter()
                .take(n)
                .filter_map(|r| r.to_sdk())
                .collect();
            let sent = self
                .client
                .put_telemetry_records()
                .set_telemetry_records(Some(records))
                .ec2_instance_id(&self.identity.instance_id)
                .hostname(&self.identity.hostname)
                .resource_arn(&self.identity.resource_arn)
                .send()
                .await;
            match sent {
                Ok(_) => {
                    self.queue.drain(..n);
                    tracing::debug!("Sent {n} telemetry record(s)");
                }
                Err(e) => {
                    self.stats.backend_error(error_kind(&e));
                    tracing::debug!(
                        "Sending {n} telemetry record(s) failed, keeping them for the next try: {}",
                        DisplayErrorContext(&e)
                    );
                    return;
                }
            }
        }
    }
}

/// How the telemetry task runs.
#[derive(Clone, Debug)]
pub struct TelemetrySettings {
    /// Who is reporting.
    pub identity: Identity,
    /// Time between records; at least [`MIN_INTERVAL`]. Default [`DEFAULT_INTERVAL`].
    pub interval: Duration,
}

/// Starts the telemetry task: it cuts a record every interval until `shutdown` is cancelled, then, on [`Finish::now`]
/// (after the drain), the final one. Returns its handle and the [`Finish`] to end it with.
pub fn spawn(
    client: Client,
    stats: Arc<Stats>,
    settings: TelemetrySettings,
    shutdown: CancellationToken,
) -> (tokio::task::JoinHandle<()>, Finish) {
    let (tx, rx) = oneshot::channel();
    let reporter = Reporter {
        client,
        stats,
        identity: settings.identity,
        last: Snapshot::default(),
        queue: VecDeque::new(),
    };
    let interval = settings.interval.max(MIN_INTERVAL);
    let handle = tokio::spawn(run(reporter, interval, shutdown, rx));
    (handle, Finish(tx))
}

async fn run(
    mut reporter: Reporter,
    interval: Duration,
    shutdown: CancellationToken,
    finish: oneshot::Receiver<Instant>,
) {
    // Records every interval until shutdown starts; then one final record once the drain is
    // over, so it holds everything the drain did.
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
        reporter.cut();
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = reporter.send_queued() => {}
        }
    }
    let deadline = finish.await.ok();
    let Some(deadline) = deadline else {
        return; // The daemon is going away without a drain (startup failed).
    };
    reporter.cut();
    let until = deadline.max(Instant::now() + FINAL_SEND_MIN);
    if tokio::time::timeout_at(until, reporter.send_queued())
        .await
        .is_err()
        || !reporter.queue.is_empty()
    {
        tracing::warn!(
            "The final telemetry record(s) could not be sent before the shutdown deadline ({} kept)",
            reporter.queue.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(f: impl FnOnce(&mut Snapshot)) -> Snapshot {
        let mut s = Snapshot {
            dropped: DropReason::ALL
                .iter()
                .map(|r| (r.as_str().to_owned(), 0))
                .collect(),
            backend_errors: crate::outcome::ErrorKind::ALL
                .iter()
                .map(|k| (k.as_str().to_owned(), 0))
                .collect(),
            ..Snapshot::default()
        };
        f(&mut s);
        s
    }

    #[test]
    fn counts_map_onto_the_originals_counters() {
        let before = snap(|s| {
            s.received = 10;
            s.sent = 5;
        });
        let after = snap(|s| {
            s.received = 30;
            s.sent = 15;
            s.rejected = 2;
            s.buffered = 1;
            s.dropped.insert("invalid_body".into(), 1);
            s.dropped.insert("too_large".into(), 1);
            s.dropped.insert("spillover".into(), 3);
            s.dropped.insert("retries_exhausted".into(), 1);
            s.dropped.insert("shutdown".into(), 1);
            s.backend_errors.insert("throttled".into(), 2);
            s.backend_errors.insert("http_4xx".into(), 1);
            s.backend_errors.insert("http_5xx".into(), 4);
            s.backend_errors.insert("timeout".into(), 5);
            s.backend_errors.insert("connection_refused".into(), 6);
            s.backend_errors.insert("unknown_host".into(), 7);
            s.backend_errors.insert("connection".into(), 1);
            s.backend_errors.insert("other".into(), 1);
        });
        assert_eq!(
            counts_between(&before, &after),
            Counts {
                received: 20,
                sent: 10,
                spillover: 5,
                rejected: 4,
                timeout: 5,
                connection_refused: 6,
                http_4xx: 3,
                http_5xx: 4,
                unknown_host: 7,
                other: 2,
            }
        );
        assert_eq!(counts_between(&after, &after), Counts::default());
    }

    #[test]
    fn identity_from_lookups_and_flag() {
        assert_eq!(
            Identity::new(Some("box"), None, Some("arn:x")),
            Identity {
                hostname: "box".into(),
                instance_id: String::new(),
                resource_arn: "arn:x".into()
            }
        );
    }
}
