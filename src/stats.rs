//! The daemon's counters and the typed snapshot of them that `/daemon/stats`, `/daemon/metrics`,
//! telemetry, the shutdown summary and the tests read.
//!
//! Two kinds of counts live here:
//! - **The books** ([`Books`]): where every item is. Per input: what came in and what was
//!   refused at intake. Per sink: `received = sent + rejected + dropped + pending`. Over all:
//!   `received = sent + rejected + dropped + buffered + in_flight`. Only the buffer and the
//!   receiver's intake (through the buffer) write them, each move inside one short critical
//!   section of one mutex, so [`Stats::snapshot`] (which takes the same mutex for a copy) sees
//!   every identity hold, at every read. Nothing waits while holding it: a snapshot waits at
//!   most for one push or one settled batch, never for a task to run.
//! - **Events** that are not part of an identity: calls that succeeded or failed, failures by
//!   [`ErrorKind`], the kernel's drop count, the budget, the health flags. Each is one relaxed
//!   atomic.
//!
//! Logging of what is counted here (bad input, drops, failed calls) is rate-limited per reason
//! ([`RateLimit`]), so a flood cannot flood the log; each line says how many datagrams,
//! segments or calls it stands for, and what no later line reported is logged once the
//! interval is over ([`Stats::report_suppressed`]). The metrics text is rendered from a
//! snapshot ([`render_metrics`]), so it always agrees with the JSON; in the classic Prometheus
//! text format unless the scraper asks for OpenMetrics ([`MetricsFormat::from_accept`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::document::DocumentKind;
use crate::item::Input;
use crate::outcome::{DropReason, ErrorKind, RequestOutcome};
use crate::ratelimit::{RateLimit, Suppressed, WARN_INTERVAL};

/// How often the summary line is logged while something changed.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

const REASONS: usize = DropReason::ALL.len();

/// Where every item is: the counts the accounting identities are about. Written only under
/// [`Stats::books`]; copied whole by [`Stats::snapshot`].
#[derive(Clone, Debug, Default)]
pub struct Books {
    /// Per input, in the order of [`Input::ALL`].
    pub inputs: [InputBooks; Input::ALL.len()],
    /// Per sink, in the order the sinks were configured.
    pub sinks: Vec<SinkBooks>,
    /// Items given up, by reason (bad input included), over all inputs.
    pub dropped: [u64; REASONS],
    /// Items every sink took.
    pub sent: u64,
    /// Items some sink refused for good (and none dropped).
    pub rejected: u64,
    /// Items put back for another attempt (an item retried three times counts three).
    pub retried: u64,
    /// Items held that no sink has in flight.
    pub buffered: u64,
    /// Budget bytes of those items.
    pub buffered_bytes: u64,
    /// Items held that some sink has in flight.
    pub in_flight: u64,
    /// Budget bytes of those items.
    pub in_flight_bytes: u64,
}

/// One input's intake.
#[derive(Clone, Debug, Default)]
pub struct InputBooks {
    /// Units read (non-empty datagrams for UDP).
    pub received: u64,
    /// Bytes of them.
    pub received_bytes: u64,
    /// Refused as bad input, by reason (only bad-input reasons are ever non-zero).
    pub refused: [u64; REASONS],
    /// Accepted items of this input given up afterwards, by reason (their overall fate).
    pub dropped: [u64; REASONS],
    /// Accepted, by document kind, in the order of [`DocumentKind::ALL`]; sums to
    /// `received − refused`.
    pub accepted_by_kind: [u64; DocumentKind::ALL.len()],
}

/// One sink's share: `received = sent + rejected + dropped + waiting + in_flight`.
#[derive(Clone, Debug, Default)]
pub struct SinkBooks {
    /// The sink's name (`xray`, `stdout`, `file:PATH`, …).
    pub name: String,
    /// Items queued for this sink.
    pub received: u64,
    /// Items it took.
    pub sent: u64,
    /// Items it refused for good.
    pub rejected: u64,
    /// Items given up for it, by reason.
    pub dropped: [u64; REASONS],
    /// Items waiting for it.
    pub waiting: u64,
    /// Items in its calls under way.
    pub in_flight: u64,
}

/// All counters of one daemon.
#[derive(Debug)]
pub struct Stats {
    books: Mutex<Books>,
    batches_sent: AtomicU64,
    batches_failed: AtomicU64,
    backend_errors: [AtomicU64; ErrorKind::ALL.len()],
    budget_bytes: AtomicU64,
    last_upload: AtomicU64,
    kernel_dropped: AtomicU64,
    empty_datagrams: AtomicU64,
    trimmed_documents: AtomicU64,
    /// Requests to the inputs that take requests, per input and [`RequestOutcome`].
    requests: [[AtomicU64; RequestOutcome::ALL.len()]; Input::ALL.len()],
    /// Set once the UDP receive loop has ended (read by the health check).
    receiver_stopped: AtomicBool,
    /// Unix seconds of the first failed upload since the last successful one; 0 = none.
    upload_failing_since: AtomicU64,
    warn_limits: [RateLimit; REASONS],
    failure_limit: RateLimit,
    /// Woken when a warning was suppressed: see [`Stats::warning_suppressed`].
    suppressed_pending: tokio::sync::Notify,
    /// The trace viewer's store, as it last reported itself.
    viewer: Mutex<Option<ViewerSnapshot>>,
}

/// A point-in-time copy of the counters: the `/daemon/stats` JSON, field for field. Every
/// identity holds in it (see [`Snapshot::unaccounted`]). Typed both ways, so tests and tools
/// read it back with `serde_json::from_str`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// Items received over all inputs (today: non-empty UDP datagrams).
    pub received: u64,
    /// Bytes of them.
    pub received_bytes: u64,
    /// Items every sink accepted.
    pub sent: u64,
    /// Items a sink refused for good (X-Ray's `UnprocessedTraceSegments`).
    pub rejected: u64,
    /// Upload calls that succeeded.
    pub batches_sent: u64,
    /// Upload calls that failed.
    pub batches_failed: u64,
    /// Items dropped, by reason (bad input included).
    pub dropped: BTreeMap<String, u64>,
    /// Items waiting in the buffer (held, and in no call under way).
    pub buffered: u64,
    /// Bytes those items cost against the budget.
    pub buffered_bytes: u64,
    /// Items in upload calls under way.
    pub in_flight: u64,
    /// Bytes those items cost against the budget.
    pub in_flight_bytes: u64,
    /// The memory budget in bytes.
    pub budget_bytes: u64,
    /// Unix seconds of the last successful upload, if any.
    pub last_upload_unix: Option<u64>,
    /// Datagrams the kernel dropped because the socket's receive queue was full (Linux).
    pub kernel_dropped: u64,
    /// Empty UDP datagrams (zero bytes): ignored as the original ignores them, and counted
    /// here only, outside `received` and every identity.
    #[serde(default)]
    pub empty_datagrams: u64,
    /// X-Ray documents made from OpenTelemetry spans that were trimmed to fit the document cap
    /// (metadata first; see the README). The spans were sent, with less in them.
    #[serde(default)]
    pub trimmed_documents: u64,
    /// Items put back into the buffer for another attempt (an item retried three times counts
    /// three).
    pub retried: u64,
    /// Failed upload and telemetry calls, by kind (`throttled`, `http_4xx`, `http_5xx`,
    /// `timeout`, `connection_refused`, `unknown_host`, `connection`, `other`).
    pub backend_errors: BTreeMap<String, u64>,
    /// True while the UDP receive loop runs (what `xray health` checks by default).
    pub receiving: bool,
    /// Unix seconds of the first failed upload since the last successful one, while uploads
    /// keep failing; `None` once one succeeds (`xray health --max-upload-failure`).
    pub upload_failing_since_unix: Option<u64>,
    /// Per input (`udp`): what came in and what was refused at intake.
    #[serde(default)]
    pub inputs: BTreeMap<String, InputSnapshot>,
    /// Per sink (`xray`, `stdout`, `file:PATH`): `received = sent + rejected + dropped +
    /// pending`.
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkSnapshot>,
    /// The daemon's own log lines lost: dropped because the queue to the log writer was full,
    /// or failed to write (full disk, closed pipe). See [`crate::logging::lines_lost`].
    #[serde(default)]
    pub log_lines_lost: u64,
    /// The trace viewer's store, when `--viewer` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub viewer: Option<ViewerSnapshot>,
}

/// The trace viewer's store in a [`Snapshot`] (its memory is its own budget, outside
/// `budget_bytes`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ViewerSnapshot {
    /// Traces held.
    pub traces: u64,
    /// Documents held.
    pub documents: u64,
    /// Bytes held.
    pub bytes: u64,
    /// The store's budget (`--viewer-memory`).
    pub budget_bytes: u64,
    /// Traces forgotten to stay within the budget, since start.
    pub evicted_traces: u64,
    /// The oldest documents of a trace that alone filled the budget, forgotten, since start.
    #[serde(default)]
    pub evicted_documents: u64,
    /// Documents not kept: larger than the whole budget, an open copy of a complete one, or
    /// past the store's documents per trace.
    pub skipped_documents: u64,
}

/// One input in a [`Snapshot`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InputSnapshot {
    /// Units read (non-empty datagrams for UDP).
    pub received: u64,
    /// Bytes of them.
    pub received_bytes: u64,
    /// Refused at intake as bad input, by reason.
    pub refused: BTreeMap<String, u64>,
    /// Passed intake: `received − refused`.
    pub accepted: u64,
    /// Those accepted, by document kind: `json` (X-Ray segment documents) and the AWS distros'
    /// UDP forms `T1S`, `T1U`, `T1`, `M1` (every kind listed; they sum to `accepted`).
    #[serde(default)]
    pub accepted_by_kind: BTreeMap<String, u64>,
    /// Accepted items given up afterwards, by reason (only reasons that happened are listed):
    /// `spillover` counts this input's items the memory rule evicted.
    #[serde(default)]
    pub dropped: BTreeMap<String, u64>,
    /// For inputs that take requests (OTLP/HTTP, OTLP/gRPC): requests by outcome (`accepted`,
    /// `busy`, `too_large`, `undecodable`, …), every outcome listed. Absent for UDP.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, u64>,
}

/// One sink in a [`Snapshot`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SinkSnapshot {
    /// Items queued for this sink.
    pub received: u64,
    /// Items it took.
    pub sent: u64,
    /// Items it refused for good.
    pub rejected: u64,
    /// Items given up for it, by reason (only reasons that happened are listed).
    pub dropped: BTreeMap<String, u64>,
    /// Items not settled yet: `waiting + in_flight`.
    pub pending: u64,
    /// Items waiting for it.
    pub waiting: u64,
    /// Items in its calls under way.
    pub in_flight: u64,
}

impl SinkSnapshot {
    /// `received − (sent + rejected + dropped + pending)`: zero when the sink's items are all
    /// accounted for.
    pub fn unaccounted(&self) -> i128 {
        i128::from(self.received)
            - i128::from(self.sent)
            - i128::from(self.rejected)
            - i128::from(self.dropped.values().sum::<u64>())
            - i128::from(self.pending)
    }
}

impl Snapshot {
    /// Items dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// Items dropped for `reason` (0 when none).
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped.get(reason.as_str()).copied().unwrap_or(0)
    }

    /// `received − (sent + rejected + dropped + buffered + in_flight)`: zero when every
    /// received item is accounted for.
    pub fn unaccounted(&self) -> i128 {
        i128::from(self.received)
            - i128::from(self.sent)
            - i128::from(self.rejected)
            - i128::from(self.dropped_total())
            - i128::from(self.buffered)
            - i128::from(self.in_flight)
    }

    /// Every identity the snapshot promises, as a list of what does not hold (empty: all
    /// hold): over all, per input, per sink.
    pub fn broken_identities(&self) -> Vec<String> {
        let mut broken = Vec::new();
        if self.unaccounted() != 0 {
            broken.push(format!("overall: {} unaccounted", self.unaccounted()));
        }
        for (name, input) in &self.inputs {
            let refused: u64 = input.refused.values().sum();
            if input.received != refused + input.accepted {
                broken.push(format!(
                    "input {name}: received {} != refused {refused} + accepted {}",
                    input.received, input.accepted
                ));
            }
        }
        let received: u64 = self.inputs.values().map(|i| i.received).sum();
        if !self.inputs.is_empty() && received != self.received {
            broken.push(format!(
                "inputs received {received} != received {}",
                self.received
            ));
        }
        for (name, sink) in &self.sinks {
            if sink.unaccounted() != 0 || sink.pending != sink.waiting + sink.in_flight {
                broken.push(format!("sink {name}: {} unaccounted", sink.unaccounted()));
            }
        }
        broken
    }

    /// True when the counters that record events (not the gauges) equal `other`'s.
    pub fn same_events(&self, other: &Snapshot) -> bool {
        (
            self.received,
            self.sent,
            self.rejected,
            &self.dropped,
            self.retried,
            &self.backend_errors,
        ) == (
            other.received,
            other.sent,
            other.rejected,
            &other.dropped,
            other.retried,
            &other.backend_errors,
        )
    }

    /// One line for the log: totals, what is held, and what was lost by reason.
    pub fn summary_line(&self) -> String {
        let nonzero = |m: &BTreeMap<String, u64>| -> String {
            let parts: Vec<String> = m
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            if parts.is_empty() {
                String::new()
            } else {
                format!(" ({})", parts.join(", "))
            }
        };
        format!(
            "Segments received: {}, sent: {}, rejected by X-Ray: {}, dropped: {}{}, buffered: {}, \
             in flight: {}, retried: {}, upload errors: {}{}, kernel dropped: {}{}",
            self.received,
            self.sent,
            self.rejected,
            self.dropped_total(),
            nonzero(&self.dropped),
            self.buffered,
            self.in_flight,
            self.retried,
            self.backend_errors.values().sum::<u64>(),
            nonzero(&self.backend_errors),
            self.kernel_dropped,
            match self.log_lines_lost {
                0 => String::new(),
                n => format!(", log lines lost: {n}"),
            },
        )
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn by_reason(
    counts: &[u64; REASONS],
    keep: impl Fn(DropReason, u64) -> bool,
) -> BTreeMap<String, u64> {
    DropReason::ALL
        .iter()
        .zip(counts)
        .filter(|(r, n)| keep(**r, **n))
        .map(|(r, n)| (r.as_str().to_owned(), *n))
        .collect()
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Zeroed counters, with no sink yet (see [`Self::add_sinks`]).
    pub fn new() -> Self {
        Stats {
            books: Mutex::new(Books::default()),
            batches_sent: AtomicU64::new(0),
            batches_failed: AtomicU64::new(0),
            backend_errors: Default::default(),
            budget_bytes: AtomicU64::new(0),
            last_upload: AtomicU64::new(0),
            kernel_dropped: AtomicU64::new(0),
            empty_datagrams: AtomicU64::new(0),
            trimmed_documents: AtomicU64::new(0),
            requests: Default::default(),
            receiver_stopped: AtomicBool::new(false),
            upload_failing_since: AtomicU64::new(0),
            warn_limits: Default::default(),
            failure_limit: RateLimit::default(),
            suppressed_pending: tokio::sync::Notify::new(),
            viewer: Mutex::new(None),
        }
    }

    /// Names the sinks, in order (the buffer's lanes). Called once, when the buffer is made.
    pub fn add_sinks(&self, names: &[String]) {
        let mut books = self.books();
        books.sinks = names
            .iter()
            .map(|name| SinkBooks {
                name: name.clone(),
                ..SinkBooks::default()
            })
            .collect();
    }

    /// The books, locked. Keep the guard for one move only: no waiting, no I/O, no logging.
    pub fn books(&self) -> MutexGuard<'_, Books> {
        // Counters stay consistent numbers whatever panicked; carry on rather than poison.
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A datagram was refused as bad input (already counted in the books by the buffer's
    /// intake): warns, rate-limited per reason, naming the sender.
    pub fn warn_refused(
        &self,
        reason: DropReason,
        sender: SocketAddr,
        why: &dyn std::fmt::Display,
    ) {
        match self.warn_limits[reason.index()].once() {
            Some(suppressed) => tracing::warn!(
                "Refused a datagram from {sender} ({}): {why}{}",
                reason.as_str(),
                Suppressed(suppressed, "datagrams refused for this reason")
            ),
            None => self.suppressed_pending.notify_one(),
        }
    }

    /// `count` items were dropped for `reason` (capacity or delivery; already counted in the
    /// books): warns or errs, rate-limited per reason, with what to do about it.
    pub fn warn_dropped(&self, reason: DropReason, count: u64) {
        if count == 0 {
            return;
        }
        let Some(suppressed) = self.warn_limits[reason.index()].once_n(count) else {
            self.suppressed_pending.notify_one();
            return;
        };
        let advice = match reason {
            DropReason::Spillover => {
                ": the buffer is full; raise -m/--buffer-memory or check that uploads succeed"
            }
            DropReason::SinkBacklog => {
                ": one sink fell behind and reached its share of the buffer; see its errors above"
            }
            DropReason::RetriesExhausted => {
                ": uploads kept failing; see the upload errors above, or raise \
                 --retry-max-attempts / --retry-max-age"
            }
            DropReason::UploadFailed => {
                ": the upload failed in a way another attempt would not fix (the call was \
                 refused, or there are no credentials); see the error above"
            }
            DropReason::OutsideTimeWindow => {
                ": X-Ray's OTLP endpoint takes spans that started at most 14 days ago and at \
                 most 2 hours ahead; check the clock of the hosts that made them"
            }
            DropReason::TooLarge => ": X-Ray's OTLP endpoint takes spans of at most 200 KB",
            _ => "",
        };
        let suppressed = Suppressed(suppressed, "segments dropped for this reason");
        if matches!(reason, DropReason::Spillover | DropReason::SinkBacklog) {
            tracing::warn!(
                "Dropped {count} segment(s) ({}){advice}{suppressed}",
                reason.as_str()
            );
        } else {
            tracing::error!(
                "Dropped {count} segment(s) ({}){advice}{suppressed}",
                reason.as_str()
            );
        }
    }

    /// Returns once a warning was suppressed since the last call (at once if one was while
    /// nobody waited): the daemon then waits out [`WARN_INTERVAL`] and calls
    /// [`Self::report_suppressed`]. Nothing wakes while no warning is suppressed.
    pub async fn warning_suppressed(&self) {
        self.suppressed_pending.notified().await;
    }

    /// Logs what the rate-limited warnings suppressed and no later warning reported (a flood
    /// that ended within the interval): one line per reason, at the level of its warnings,
    /// with the count of datagrams refused, segments dropped or calls failed that it stands
    /// for, so that every one counted is in some line of the log. Only for windows that are
    /// over, so the rate holds; with `force` (at shutdown), all.
    pub fn report_suppressed(&self, force: bool) {
        for reason in DropReason::ALL {
            let Some(n) = self.warn_limits[reason.index()].take_suppressed(WARN_INTERVAL, force)
            else {
                continue;
            };
            let reason_name = reason.as_str();
            if reason.is_bad_input() {
                tracing::warn!(
                    "Refused {n} more datagram(s) ({reason_name}) since the last message about \
                     them; the totals are in /daemon/stats"
                );
            } else if matches!(reason, DropReason::Spillover | DropReason::SinkBacklog) {
                tracing::warn!(
                    "Dropped {n} more segment(s) ({reason_name}) since the last message about \
                     them; the totals are in /daemon/stats"
                );
            } else {
                tracing::error!(
                    "Dropped {n} more segment(s) ({reason_name}) since the last message about \
                     them; the totals are in /daemon/stats"
                );
            }
        }
        if let Some(n) = self.failure_limit.take_suppressed(WARN_INTERVAL, force) {
            tracing::warn!(
                "{n} more upload call(s) failed since the last message about them; the totals \
                 are in /daemon/stats (batches_failed, backend_errors)"
            );
        }
    }

    /// An upload call was answered (even if the destination refused every item): ends an
    /// upload failure streak (what `xray health --max-upload-failure` watches).
    pub fn call_answered(&self) {
        self.batches_sent.fetch_add(1, Ordering::Relaxed);
        self.last_upload.store(unix_seconds(), Ordering::Relaxed);
        self.upload_failing_since.store(0, Ordering::Relaxed);
    }

    /// An upload call of `count` items failed with an error of `kind`. `retry_in` says when
    /// they will be tried again; `None` means they are given up (counted by the buffer).
    pub fn call_failed(
        &self,
        count: u64,
        kind: ErrorKind,
        error: &dyn std::fmt::Display,
        retry_in: Option<Duration>,
    ) {
        self.batches_failed.fetch_add(1, Ordering::Relaxed);
        let _ = self.upload_failing_since.compare_exchange(
            0,
            unix_seconds().max(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        self.backend_error(kind);
        let Some(suppressed) = self.failure_limit.once() else {
            self.suppressed_pending.notify_one();
            return;
        };
        let suppressed = Suppressed(suppressed, "failed calls");
        match retry_in {
            Some(wait) => tracing::warn!(
                "Sending a batch of {count} segment(s) failed ({}), they stay buffered and are \
                 retried in {:.1} s: {error}{suppressed}",
                kind.as_str(),
                wait.as_secs_f64(),
            ),
            None => tracing::error!(
                "Sending a batch of {count} segment(s) failed ({}), not retried: {error}{suppressed}",
                kind.as_str(),
            ),
        }
    }

    /// A call to AWS (upload or telemetry) failed with an error of `kind`.
    pub fn backend_error(&self, kind: ErrorKind) {
        self.backend_errors[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The kernel's cumulative count of datagrams dropped on the socket.
    pub fn set_kernel_dropped(&self, count: u32) {
        self.kernel_dropped
            .store(u64::from(count), Ordering::Relaxed);
    }

    /// A request to `input` ended with `outcome`.
    pub fn request(&self, input: Input, outcome: RequestOutcome) {
        self.requests[input.index()][outcome.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// `n` documents made from spans were trimmed to fit the cap.
    pub fn documents_trimmed(&self, n: u64) {
        if n > 0 {
            self.trimmed_documents.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// An empty datagram came in (ignored; not an item).
    pub fn empty_datagram(&self) {
        self.empty_datagrams.fetch_add(1, Ordering::Relaxed);
    }

    /// The memory budget in bytes.
    pub fn set_budget(&self, bytes: usize) {
        self.budget_bytes.store(bytes as u64, Ordering::Relaxed);
    }

    /// The UDP receive loop has ended: from now on the daemon reports itself unhealthy.
    pub fn receiver_stopped(&self) {
        self.receiver_stopped.store(true, Ordering::Relaxed);
    }

    /// True until [`Self::receiver_stopped`] is called.
    pub fn receiving(&self) -> bool {
        !self.receiver_stopped.load(Ordering::Relaxed)
    }

    /// The trace viewer's store reports its counters.
    pub fn set_viewer(&self, viewer: ViewerSnapshot) {
        *self.viewer.lock().unwrap_or_else(|e| e.into_inner()) = Some(viewer);
    }

    /// A copy of every counter. The books are copied under their lock, so every identity holds
    /// in the copy; the events are read right after.
    pub fn snapshot(&self) -> Snapshot {
        let books = self.books().clone();
        let last = self.last_upload.load(Ordering::Relaxed);
        let received: u64 = books.inputs.iter().map(|i| i.received).sum();
        Snapshot {
            received,
            received_bytes: books.inputs.iter().map(|i| i.received_bytes).sum(),
            sent: books.sent,
            rejected: books.rejected,
            batches_sent: self.batches_sent.load(Ordering::Relaxed),
            batches_failed: self.batches_failed.load(Ordering::Relaxed),
            dropped: by_reason(&books.dropped, |_, _| true),
            buffered: books.buffered,
            buffered_bytes: books.buffered_bytes,
            in_flight: books.in_flight,
            in_flight_bytes: books.in_flight_bytes,
            budget_bytes: self.budget_bytes.load(Ordering::Relaxed),
            last_upload_unix: (last > 0).then_some(last),
            kernel_dropped: self.kernel_dropped.load(Ordering::Relaxed),
            empty_datagrams: self.empty_datagrams.load(Ordering::Relaxed),
            trimmed_documents: self.trimmed_documents.load(Ordering::Relaxed),
            retried: books.retried,
            backend_errors: ErrorKind::ALL
                .iter()
                .zip(&self.backend_errors)
                .map(|(k, c)| (k.as_str().to_owned(), c.load(Ordering::Relaxed)))
                .collect(),
            receiving: self.receiving(),
            upload_failing_since_unix: match self.upload_failing_since.load(Ordering::Relaxed) {
                0 => None,
                since => Some(since),
            },
            inputs: Input::ALL
                .iter()
                .zip(&books.inputs)
                .map(|(input, b)| {
                    let refused = by_reason(&b.refused, |r, _| r.is_bad_input());
                    let accepted = b.received.saturating_sub(refused.values().sum::<u64>());
                    let snap = InputSnapshot {
                        received: b.received,
                        received_bytes: b.received_bytes,
                        refused,
                        accepted,
                        accepted_by_kind: DocumentKind::ALL
                            .iter()
                            .zip(&b.accepted_by_kind)
                            .map(|(k, n)| (k.as_str().to_owned(), *n))
                            .collect(),
                        dropped: by_reason(&b.dropped, |_, n| n > 0),
                        requests: if input.takes_requests() {
                            RequestOutcome::ALL
                                .iter()
                                .map(|o| {
                                    let n = self.requests[input.index()][o.index()]
                                        .load(Ordering::Relaxed);
                                    (o.as_str().to_owned(), n)
                                })
                                .collect()
                        } else {
                            BTreeMap::new()
                        },
                    };
                    (input.as_str().to_owned(), snap)
                })
                .collect(),
            sinks: books
                .sinks
                .iter()
                .map(|s| {
                    let snap = SinkSnapshot {
                        received: s.received,
                        sent: s.sent,
                        rejected: s.rejected,
                        dropped: by_reason(&s.dropped, |_, n| n > 0),
                        pending: s.waiting + s.in_flight,
                        waiting: s.waiting,
                        in_flight: s.in_flight,
                    };
                    (s.name.clone(), snap)
                })
                .collect(),
            log_lines_lost: crate::logging::lines_lost(),
            viewer: *self.viewer.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// The counters in the classic Prometheus text exposition format, version 0.0.4 (from one
    /// snapshot).
    pub fn prometheus_text(&self) -> String {
        self.metrics_text(MetricsFormat::Prometheus)
    }

    /// The counters in `format` (from one snapshot).
    pub fn metrics_text(&self, format: MetricsFormat) -> String {
        render_metrics(&self.snapshot(), format)
    }
}

/// The text formats `/daemon/metrics` is served in. Both have the same metric names and
/// samples; they differ in the `# TYPE` line of a counter (`xray_segments_sent_total counter`
/// in the classic format, `xray_segments_sent counter` in OpenMetrics) and OpenMetrics' final
/// `# EOF`. A classic-format parser reads OpenMetrics' counters as `unknown`, so OpenMetrics is
/// served only to a scraper that asks for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsFormat {
    /// The classic Prometheus text format, version 0.0.4 (`text/plain; version=0.0.4`): the
    /// default.
    Prometheus,
    /// OpenMetrics 1.0 (`application/openmetrics-text; version=1.0.0`).
    OpenMetrics,
}

impl MetricsFormat {
    /// The format for a request's `Accept` header (`None`: no header): OpenMetrics when the
    /// header names `application/openmetrics-text` with a weight (`q`) above 0 and at least as
    /// high as any it gives `text/plain` (as Prometheus asks, preferring OpenMetrics), else the
    /// classic format. Parameters other than `q` are ignored; so are ranges like `*/*`, which a
    /// scraper that names neither format gets the classic one for.
    pub fn from_accept(accept: Option<&str>) -> Self {
        let Some(accept) = accept else {
            return MetricsFormat::Prometheus;
        };
        let (mut openmetrics, mut plain) = (0.0_f64, 0.0_f64);
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1.0), |(_, v)| v.trim().parse::<f64>().ok())
                .filter(|q| q.is_finite())
                .unwrap_or(0.0);
            if media.eq_ignore_ascii_case("application/openmetrics-text") {
                openmetrics = openmetrics.max(q);
            } else if media.eq_ignore_ascii_case("text/plain") {
                plain = plain.max(q);
            }
        }
        if openmetrics > 0.0 && openmetrics >= plain {
            MetricsFormat::OpenMetrics
        } else {
            MetricsFormat::Prometheus
        }
    }

    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            MetricsFormat::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            MetricsFormat::OpenMetrics => {
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            }
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct InputLabel {
    input: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct InputKindLabel {
    input: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct InputReasonLabel {
    input: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct InputOutcomeLabel {
    input: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct SinkLabel {
    sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct SinkOutcomeLabel {
    sink: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct SinkReasonLabel {
    sink: String,
    reason: String,
}

fn counter(value: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(value);
    c
}

fn gauge(value: u64) -> Gauge {
    let g = Gauge::default();
    g.set(i64::try_from(value).unwrap_or(i64::MAX));
    g
}

fn counter_family<L, I>(values: I) -> Family<L, Counter>
where
    L: Clone + std::hash::Hash + Eq + prometheus_client::encoding::EncodeLabelSet + std::fmt::Debug,
    I: IntoIterator<Item = (L, u64)>,
{
    let family = Family::<L, Counter>::default();
    for (label, value) in values {
        family.get_or_create(&label).inc_by(value);
    }
    family
}

/// A snapshot in `format`, both encoded by `prometheus-client` from one registry. The metric
/// names are public and keep their spelling (`xray_segments_received_total`, …); the per-input
/// and per-sink families were added beside them.
pub fn render_metrics(s: &Snapshot, format: MetricsFormat) -> String {
    let mut r = Registry::with_prefix("xray");
    let reasons = |m: &BTreeMap<String, u64>| -> Vec<(ReasonLabel, u64)> {
        m.iter()
            .map(|(k, v)| (ReasonLabel { reason: k.clone() }, *v))
            .collect()
    };
    r.register(
        "segments_received",
        "Non-empty datagrams received",
        counter(s.received),
    );
    r.register(
        "received_bytes",
        "Bytes of datagrams received",
        counter(s.received_bytes),
    );
    r.register(
        "segments_sent",
        "Documents accepted by the destination",
        counter(s.sent),
    );
    r.register(
        "segments_rejected",
        "Documents refused by the destination",
        counter(s.rejected),
    );
    r.register(
        "batches_sent",
        "Upload calls that succeeded",
        counter(s.batches_sent),
    );
    r.register(
        "batches_failed",
        "Upload calls that failed",
        counter(s.batches_failed),
    );
    r.register(
        "segments_dropped",
        "Documents dropped, by reason",
        counter_family(reasons(&s.dropped)),
    );
    r.register(
        "segments_retried",
        "Documents put back into the buffer for another attempt",
        counter(s.retried),
    );
    r.register(
        "backend_errors",
        "Failed upload and telemetry calls, by kind",
        counter_family(
            s.backend_errors
                .iter()
                .map(|(k, v)| (KindLabel { kind: k.clone() }, *v)),
        ),
    );
    r.register(
        "buffered_segments",
        "Documents waiting in the buffer",
        gauge(s.buffered),
    );
    r.register(
        "buffered_bytes",
        "Budget bytes held by waiting documents",
        gauge(s.buffered_bytes),
    );
    r.register(
        "in_flight_segments",
        "Documents in upload calls under way",
        gauge(s.in_flight),
    );
    r.register(
        "in_flight_bytes",
        "Budget bytes held by documents in flight",
        gauge(s.in_flight_bytes),
    );
    r.register(
        "buffer_budget_bytes",
        "The memory budget for documents",
        gauge(s.budget_bytes),
    );
    r.register(
        "last_upload_timestamp_seconds",
        "Unix time of the last successful upload",
        gauge(s.last_upload_unix.unwrap_or(0)),
    );
    r.register(
        "kernel_dropped_datagrams",
        "Datagrams the kernel dropped on a full receive queue",
        gauge(s.kernel_dropped),
    );
    r.register(
        "trimmed_documents",
        "X-Ray documents made from OpenTelemetry spans, trimmed to fit the document cap",
        counter(s.trimmed_documents),
    );
    r.register(
        "empty_datagrams",
        "Empty UDP datagrams, ignored",
        counter(s.empty_datagrams),
    );
    r.register(
        "input_received",
        "Items received, by input",
        counter_family(s.inputs.iter().map(|(name, i)| {
            (
                InputLabel {
                    input: name.clone(),
                },
                i.received,
            )
        })),
    );
    r.register(
        "input_accepted",
        "Items that passed intake, by input and document kind (json, T1S, T1U, T1, M1)",
        counter_family(s.inputs.iter().flat_map(|(name, i)| {
            i.accepted_by_kind.iter().map(move |(kind, v)| {
                let label = InputKindLabel {
                    input: name.clone(),
                    kind: kind.clone(),
                };
                (label, *v)
            })
        })),
    );
    r.register(
        "input_refused",
        "Items refused at intake as bad input, by input and reason",
        counter_family(s.inputs.iter().flat_map(|(name, i)| {
            i.refused.iter().map(move |(reason, v)| {
                let label = InputReasonLabel {
                    input: name.clone(),
                    reason: reason.clone(),
                };
                (label, *v)
            })
        })),
    );
    r.register(
        "input_requests",
        "Requests to the inputs that take requests (OTLP/HTTP, OTLP/gRPC), by input and outcome",
        counter_family(s.inputs.iter().flat_map(|(name, i)| {
            i.requests.iter().map(move |(outcome, v)| {
                let label = InputOutcomeLabel {
                    input: name.clone(),
                    outcome: outcome.clone(),
                };
                (label, *v)
            })
        })),
    );
    r.register(
        "sink_items",
        "Items queued for a sink (received) and what became of them (sent, rejected), by sink",
        counter_family(s.sinks.iter().flat_map(|(name, k)| {
            [
                ("received", k.received),
                ("sent", k.sent),
                ("rejected", k.rejected),
            ]
            .map(|(outcome, v)| {
                let label = SinkOutcomeLabel {
                    sink: name.clone(),
                    outcome: outcome.to_owned(),
                };
                (label, v)
            })
        })),
    );
    r.register(
        "sink_dropped",
        "Items given up for a sink, by sink and reason",
        counter_family(s.sinks.iter().flat_map(|(name, k)| {
            k.dropped.iter().map(move |(reason, v)| {
                let label = SinkReasonLabel {
                    sink: name.clone(),
                    reason: reason.clone(),
                };
                (label, *v)
            })
        })),
    );
    let pending = Family::<SinkLabel, Gauge>::default();
    for (name, k) in &s.sinks {
        pending
            .get_or_create(&SinkLabel { sink: name.clone() })
            .set(i64::try_from(k.pending).unwrap_or(i64::MAX));
    }
    r.register("sink_pending", "Items not yet settled, by sink", pending);
    r.register(
        "log_lines_lost",
        "The daemon's own log lines lost: queue to the log writer full, or failed to write",
        counter(s.log_lines_lost),
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = match format {
        MetricsFormat::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &r)
        }
        MetricsFormat::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &r),
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_both_formats_from_one_snapshot() {
        let s = Stats::new();
        s.add_sinks(&["xray".into()]);
        {
            let mut b = s.books();
            b.inputs[Input::Udp.index()].received = 5;
            b.inputs[Input::Udp.index()].refused[DropReason::EmptyBody.index()] = 1;
            b.inputs[Input::Udp.index()].accepted_by_kind[0] = 3;
            b.inputs[Input::Udp.index()].accepted_by_kind[1] = 1;
            b.dropped[DropReason::EmptyBody.index()] = 1;
            b.dropped[DropReason::Spillover.index()] = 3;
            b.sent = 1;
            b.sinks[0].received = 1;
            b.sinks[0].sent = 1;
        }
        let snap = s.snapshot();
        assert_eq!(snap.received, 5);
        assert_eq!(snap.dropped(DropReason::EmptyBody), 1);
        assert_eq!(snap.dropped_total(), 4);
        assert!(snap.broken_identities().is_empty(), "{snap:?}");
        assert_eq!(snap.inputs["udp"].accepted, 4);
        let by_kind = &snap.inputs["udp"].accepted_by_kind;
        assert_eq!(
            by_kind
                .iter()
                .map(|(k, v)| (k.as_str(), *v))
                .collect::<Vec<_>>(),
            [("M1", 0), ("T1", 0), ("T1S", 1), ("T1U", 0), ("json", 3)]
        );
        let text = s.prometheus_text();
        for line in [
            "xray_input_accepted_total{input=\"udp\",kind=\"json\"} 3",
            "xray_input_accepted_total{input=\"udp\",kind=\"T1S\"} 1",
            "xray_input_accepted_total{input=\"udp\",kind=\"M1\"} 0",
            "xray_segments_dropped_total{reason=\"spillover\"} 3",
            "xray_segments_received_total 5",
            "xray_sink_items_total{sink=\"xray\",outcome=\"sent\"} 1",
            "xray_input_refused_total{input=\"udp\",reason=\"empty_body\"} 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        let json = serde_json::to_string(&snap).unwrap_or_default();
        let back: Snapshot = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, snap);
    }

    /// `/daemon/metrics` was OpenMetrics for every scraper: a classic-format parser read each
    /// counter as `unknown`. Now the classic format unless OpenMetrics is asked for.
    #[test]
    fn metrics_are_the_classic_text_format_unless_openmetrics_is_asked_for() {
        use MetricsFormat::{OpenMetrics, Prometheus};
        for (accept, format) in [
            (None, Prometheus),
            (Some(""), Prometheus),
            (Some("*/*"), Prometheus),
            (Some("text/plain"), Prometheus),
            (Some("text/plain;version=0.0.4;q=1,*/*;q=0.1"), Prometheus),
            (Some("application/openmetrics-text"), OpenMetrics),
            (
                Some("Application/OpenMetrics-Text; version=1.0.0"),
                OpenMetrics,
            ),
            // What Prometheus sends: OpenMetrics first by weight.
            (
                Some(
                    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,\
                     application/openmetrics-text;version=0.0.1;q=0.5,\
                     text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
                ),
                OpenMetrics,
            ),
            (Some("application/openmetrics-text;q=0"), Prometheus),
            (
                Some("application/openmetrics-text;q=0.2, text/plain"),
                Prometheus,
            ),
            (Some("application/openmetrics-text;q=nonsense"), Prometheus),
        ] {
            assert_eq!(MetricsFormat::from_accept(accept), format, "{accept:?}");
        }
        assert!(
            Prometheus
                .content_type()
                .starts_with("text/plain; version=0.0.4")
        );
        assert!(
            OpenMetrics
                .content_type()
                .starts_with("application/openmetrics-text")
        );

        let s = Stats::new();
        s.books().inputs[0].received = 2;
        let classic = s.metrics_text(Prometheus);
        assert!(
            classic.contains("# TYPE xray_segments_received_total counter\n")
                && classic.contains("\nxray_segments_received_total 2\n")
                && classic.contains("# TYPE xray_buffered_segments gauge\n")
                && !classic.contains("# EOF"),
            "{classic}"
        );
        let open = s.metrics_text(OpenMetrics);
        assert!(
            open.contains("# TYPE xray_segments_received counter\n")
                && open.contains("\nxray_segments_received_total 2\n")
                && open.ends_with("# EOF\n"),
            "{open}"
        );
        // The same samples in both.
        let samples = |text: &str| -> Vec<String> {
            let mut lines: Vec<String> = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_owned)
                .collect();
            lines.sort();
            lines
        };
        assert_eq!(samples(&classic), samples(&open));
    }

    #[test]
    fn the_public_metric_names_are_kept() {
        let text = Stats::new().prometheus_text();
        for name in [
            "xray_segments_received_total",
            "xray_received_bytes_total",
            "xray_segments_sent_total",
            "xray_segments_rejected_total",
            "xray_batches_sent_total",
            "xray_batches_failed_total",
            "xray_segments_dropped_total",
            "xray_segments_retried_total",
            "xray_backend_errors_total",
            "xray_buffered_segments",
            "xray_buffered_bytes",
            "xray_in_flight_segments",
            "xray_in_flight_bytes",
            "xray_buffer_budget_bytes",
            "xray_last_upload_timestamp_seconds",
            "xray_kernel_dropped_datagrams",
            "xray_empty_datagrams_total",
            "xray_log_lines_lost_total",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name}")) || text.contains(&format!("\n{name}")),
                "{name} missing from {text}"
            );
        }
    }

    #[test]
    fn the_summary_line_names_what_was_lost_and_why() {
        let s = Stats::new();
        {
            let mut b = s.books();
            b.inputs[0].received = 5;
            b.sent = 2;
            b.rejected = 1;
            b.dropped[DropReason::RetriesExhausted.index()] = 2;
        }
        s.backend_error(ErrorKind::Throttled);
        let snap = s.snapshot();
        assert_eq!(snap.unaccounted(), 0);
        assert_eq!(
            snap.summary_line(),
            "Segments received: 5, sent: 2, rejected by X-Ray: 1, dropped: 2 (retries_exhausted 2), \
             buffered: 0, in flight: 0, retried: 0, upload errors: 1 (throttled 1), kernel dropped: 0"
        );
        let lost = Snapshot {
            log_lines_lost: 3,
            ..snap.clone()
        };
        assert!(
            lost.summary_line()
                .ends_with("kernel dropped: 0, log lines lost: 3")
        );
        assert!(snap.same_events(&s.snapshot()));
        s.books().inputs[0].received += 1;
        assert!(!snap.same_events(&s.snapshot()));
    }

    /// Log lines written while `f` runs, at every level.
    fn logged(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Lines(std::sync::Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = lines.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// In a flood, each refusal reason was logged once with no count, and the spillover warning
    /// said "Dropped 9 segment(s)" while far more were dropped: now the lines of the log add up
    /// to what was counted, in datagrams and segments, whether or not a later warning comes.
    #[test]
    fn rate_limited_warnings_add_up_to_what_they_stand_for() {
        let s = Stats::new();
        let sender = SocketAddr::from(([127, 0, 0, 1], 9));
        let text = logged(|| {
            for _ in 0..1000 {
                s.warn_dropped(DropReason::Spillover, 9);
            }
            for _ in 0..500 {
                s.warn_refused(DropReason::MissingNewline, sender, &"no newline");
            }
            for _ in 0..3 {
                s.call_failed(50, ErrorKind::Http5xx, &"503", Some(Duration::ZERO));
            }
            // The flood ended within the interval: no later warning reports the rest, so the
            // windows' end (here: shutdown) does.
            s.report_suppressed(true);
            s.report_suppressed(true);
        });
        let line = |needle: &str| text.lines().filter(|l| l.contains(needle)).count();
        assert_eq!(line("Dropped 9 segment(s) (spillover)"), 1, "{text}");
        assert_eq!(
            line("Dropped 8991 more segment(s) (spillover)"),
            1,
            "{text}"
        );
        assert_eq!(line("Refused a datagram from"), 1, "{text}");
        assert_eq!(
            line("Refused 499 more datagram(s) (missing_newline)"),
            1,
            "{text}"
        );
        assert_eq!(line("Sending a batch of 50 segment(s) failed"), 1, "{text}");
        assert_eq!(line("2 more upload call(s) failed"), 1, "{text}");
        assert_eq!(text.lines().count(), 6, "each reported once: {text}");

        // Within the interval, nothing is reported early; the next warning after it says the
        // count in segments.
        let s = Stats::new();
        let text = logged(|| {
            s.warn_dropped(DropReason::Spillover, 1);
            s.warn_dropped(DropReason::Spillover, 40);
            s.report_suppressed(false);
        });
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    #[test]
    fn bad_input_reasons_are_the_first_eight() {
        let bad: Vec<_> = DropReason::ALL
            .iter()
            .filter(|r| r.is_bad_input())
            .collect();
        assert_eq!(bad.len(), 8);
        assert!(DropReason::InvalidSpan.is_bad_input());
    }
}
