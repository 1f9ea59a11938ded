//! The daemon's counters: one method per event, each counting and (where it matters) logging.
//!
//! Every stage is handed an `Arc<Stats>` and reports what happened to each document through it;
//! nothing else keeps counts. The stats endpoint ([`crate::proxy`]) reads them back as
//! Prometheus text or JSON, and the shutdown summary is built from them.
//!
//! The accounting identity: `received = sent + rejected + dropped (all reasons) + buffered +
//! in_flight`, where `received` counts every non-empty datagram read from the socket. Datagrams
//! the kernel dropped before the daemon could read them are not received; they are
//! `kernel_dropped`. Every move of documents between these counters happens inside one
//! [`Stats::books`] transaction, and [`Stats::snapshot`] waits for a moment when none is under
//! way (a sequence lock), so a snapshot satisfies the identity exactly — as far as every stage
//! wraps its moves in a transaction (the receiver does per burst of datagrams, the buffer per
//! push, batch taken and batch finished).
//!
//! Besides the counters: upload failures by kind ([`ErrorKind`], the backend connection errors
//! telemetry reports), documents put back for retry, and a summary line logged every minute
//! while something changed ([`Snapshot::summary_line`], [`SUMMARY_INTERVAL`]) and at exit.
//!
//! Counting is one relaxed atomic add; warnings about bad input are rate-limited per reason so a
//! flood of garbage cannot flood the log ([`WARN_INTERVAL`]), and each warning says how many
//! like it were suppressed since the last.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::outcome::DropReason;
use crate::outcome::ErrorKind;
use crate::ratelimit::{RateLimit, Suppressed, WARN_INTERVAL};
use crate::segment::Segment;

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// How often the summary line is logged while something changed.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// How many refused documents are logged one by one per [`WARN_INTERVAL`] before the rest are
/// only counted.
pub const REJECT_LOG_BURST: u64 = 20;

/// The in-progress part of [`Stats::books`]' state word; the rest counts finished transactions.
const BOOKS_OPEN_MASK: u64 = (1 << 32) - 1;
/// One finished transaction.
const BOOKS_GENERATION: u64 = 1 << 32;

/// How long [`Stats::snapshot`] waits for a moment without an open transaction.
pub const SNAPSHOT_PATIENCE: Duration = Duration::from_millis(20);

/// An open [`Stats::books`] transaction; snapshots wait until it is dropped.
#[derive(Debug)]
pub struct Books<'a> {
    stats: &'a Stats,
}

impl Drop for Books<'_> {
    fn drop(&mut self) {
        // Closes this transaction and counts one more finished: the counters written inside
        // are visible before a snapshot can see the new word.
        self.stats
            .books
            .fetch_add(BOOKS_GENERATION - 1, Ordering::Release);
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// All counters and gauges of one daemon.
#[derive(Debug)]
pub struct Stats {
    registry: Registry,
    received: Counter,
    received_bytes: Counter,
    sent: Counter,
    rejected: Counter,
    batches_sent: Counter,
    batches_failed: Counter,
    dropped: [Counter; DropReason::ALL.len()],
    warn_limits: [RateLimit; DropReason::ALL.len()],
    reject_limit: RateLimit,
    retried: Counter,
    backend_errors: [Counter; ErrorKind::ALL.len()],
    failure_limit: RateLimit,
    books: AtomicU64,
    buffered: Gauge,
    buffered_bytes: Gauge,
    in_flight: Gauge,
    in_flight_bytes: Gauge,
    budget_bytes: Gauge,
    last_upload: Gauge,
    kernel_dropped: Gauge,
    /// Set once the UDP receive loop has ended (read by the health check).
    receiver_stopped: AtomicBool,
    /// Unix seconds of the first failed upload since the last successful one; 0 = none.
    upload_failing_since: AtomicU64,
}

/// A point-in-time copy of the counters, for JSON, logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    /// Non-empty datagrams read from the socket.
    pub received: u64,
    /// Bytes of those datagrams.
    pub received_bytes: u64,
    /// Documents the destination accepted.
    pub sent: u64,
    /// Documents the destination refused (X-Ray's `UnprocessedTraceSegments`).
    pub rejected: u64,
    /// Upload calls that succeeded.
    pub batches_sent: u64,
    /// Upload calls that failed.
    pub batches_failed: u64,
    /// Documents dropped, by reason.
    pub dropped: std::collections::BTreeMap<&'static str, u64>,
    /// Documents waiting in the buffer.
    pub buffered: u64,
    /// Bytes those documents cost against the budget.
    pub buffered_bytes: u64,
    /// Documents in upload calls under way.
    pub in_flight: u64,
    /// Bytes those documents cost against the budget.
    pub in_flight_bytes: u64,
    /// The memory budget in bytes.
    pub budget_bytes: u64,
    /// Unix seconds of the last successful upload, if any.
    pub last_upload_unix: Option<u64>,
    /// Datagrams the kernel dropped because the socket's receive queue was full (Linux).
    pub kernel_dropped: u64,
    /// Documents put back into the buffer for another attempt (a document retried three times
    /// counts three).
    pub retried: u64,
    /// Failed upload and telemetry calls, by kind (`throttled`, `http_4xx`, `http_5xx`,
    /// `timeout`, `connection_refused`, `unknown_host`, `connection`, `other`).
    pub backend_errors: std::collections::BTreeMap<&'static str, u64>,
    /// True while the UDP receive loop runs (what `xray health` checks by default).
    pub receiving: bool,
    /// Unix seconds of the first failed upload since the last successful one, while uploads
    /// keep failing; `None` once one succeeds (`xray health --max-upload-failure`).
    pub upload_failing_since_unix: Option<u64>,
}

impl Snapshot {
    /// Documents dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// `received − (sent + rejected + dropped + buffered + in_flight)`: zero when every
    /// received document is accounted for.
    pub fn unaccounted(&self) -> i128 {
        i128::from(self.received)
            - i128::from(self.sent)
            - i128::from(self.rejected)
            - i128::from(self.dropped_total())
            - i128::from(self.buffered)
            - i128::from(self.in_flight)
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
        let dropped: Vec<String> = self
            .dropped
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let errors: Vec<String> = self
            .backend_errors
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        format!(
            "Segments received: {}, sent: {}, rejected by X-Ray: {}, dropped: {}{}, buffered: {}, \
             in flight: {}, retried: {}, upload errors: {}{}, kernel dropped: {}",
            self.received,
            self.sent,
            self.rejected,
            self.dropped_total(),
            if dropped.is_empty() {
                String::new()
            } else {
                format!(" ({})", dropped.join(", "))
            },
            self.buffered,
            self.in_flight,
            self.retried,
            self.backend_errors.values().sum::<u64>(),
            if errors.is_empty() {
                String::new()
            } else {
                format!(" ({})", errors.join(", "))
            },
            self.kernel_dropped,
        )
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Creates the counters, registered for the Prometheus text output.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("xray");
        let received = Counter::default();
        let received_bytes = Counter::default();
        let sent = Counter::default();
        let rejected = Counter::default();
        let batches_sent = Counter::default();
        let batches_failed = Counter::default();
        let dropped_family = Family::<ReasonLabel, Counter>::default();
        let dropped = DropReason::ALL.map(|r| {
            dropped_family
                .get_or_create(&ReasonLabel { reason: r.as_str() })
                .clone()
        });
        let retried = Counter::default();
        let errors_family = Family::<KindLabel, Counter>::default();
        let backend_errors = ErrorKind::ALL.map(|k| {
            errors_family
                .get_or_create(&KindLabel { kind: k.as_str() })
                .clone()
        });
        registry.register(
            "segments_retried",
            "Documents put back into the buffer for another attempt",
            retried.clone(),
        );
        registry.register(
            "backend_errors",
            "Failed upload and telemetry calls, by kind",
            errors_family,
        );
        let [
            buffered,
            buffered_bytes,
            in_flight,
            in_flight_bytes,
            budget_bytes,
            last_upload,
            kernel_dropped,
        ] = std::array::from_fn(|_| Gauge::default());
        registry.register(
            "segments_received",
            "Non-empty datagrams received",
            received.clone(),
        );
        registry.register(
            "received_bytes",
            "Bytes of datagrams received",
            received_bytes.clone(),
        );
        registry.register(
            "segments_sent",
            "Documents accepted by the destination",
            sent.clone(),
        );
        registry.register(
            "segments_rejected",
            "Documents refused by the destination",
            rejected.clone(),
        );
        registry.register(
            "batches_sent",
            "Upload calls that succeeded",
            batches_sent.clone(),
        );
        registry.register(
            "batches_failed",
            "Upload calls that failed",
            batches_failed.clone(),
        );
        registry.register(
            "segments_dropped",
            "Documents dropped, by reason",
            dropped_family,
        );
        registry.register(
            "buffered_segments",
            "Documents waiting in the buffer",
            buffered.clone(),
        );
        registry.register(
            "buffered_bytes",
            "Budget bytes held by waiting documents",
            buffered_bytes.clone(),
        );
        registry.register(
            "in_flight_segments",
            "Documents in upload calls under way",
            in_flight.clone(),
        );
        registry.register(
            "in_flight_bytes",
            "Budget bytes held by documents in flight",
            in_flight_bytes.clone(),
        );
        registry.register(
            "buffer_budget_bytes",
            "The memory budget for documents",
            budget_bytes.clone(),
        );
        registry.register(
            "last_upload_timestamp_seconds",
            "Unix time of the last successful upload",
            last_upload.clone(),
        );
        registry.register(
            "kernel_dropped_datagrams",
            "Datagrams the kernel dropped on a full receive queue",
            kernel_dropped.clone(),
        );
        Stats {
            registry,
            received,
            received_bytes,
            sent,
            rejected,
            batches_sent,
            batches_failed,
            dropped,
            warn_limits: Default::default(),
            reject_limit: RateLimit::default(),
            retried,
            backend_errors,
            failure_limit: RateLimit::default(),
            books: AtomicU64::new(0),
            buffered,
            buffered_bytes,
            in_flight,
            in_flight_bytes,
            budget_bytes,
            last_upload,
            kernel_dropped,
            receiver_stopped: AtomicBool::new(false),
            upload_failing_since: AtomicU64::new(0),
        }
    }

    /// A datagram of `bytes` bytes was read from the socket.
    pub fn datagram_received(&self, bytes: usize) {
        self.received.inc();
        self.received_bytes.inc_by(bytes as u64);
    }

    /// A datagram was refused as bad input; warns (rate-limited) naming reason and sender.
    pub fn datagram_refused(
        &self,
        reason: DropReason,
        sender: SocketAddr,
        why: &dyn std::fmt::Display,
    ) {
        self.dropped[reason.index()].inc();
        if let Some(suppressed) = self.warn_limits[reason.index()].once() {
            tracing::warn!(
                "Refused a datagram from {sender} ({}): {why}{}",
                reason.as_str(),
                Suppressed(suppressed, "datagrams refused for this reason")
            );
        }
    }

    /// `count` documents were dropped for `reason` (capacity or delivery, not bad input).
    pub fn documents_dropped(&self, reason: DropReason, count: u64) {
        if count == 0 {
            return;
        }
        self.dropped[reason.index()].inc_by(count);
        if let Some(suppressed) = self.warn_limits[reason.index()].once() {
            let advice = match reason {
                DropReason::Spillover => {
                    ": the buffer is full; raise -m/--buffer-memory or check that uploads succeed"
                }
                DropReason::RetriesExhausted => {
                    ": uploads kept failing; see the upload errors above, or raise \
                     --retry-max-attempts / --retry-max-age"
                }
                DropReason::UploadFailed => ": X-Ray refused the call; see the error above",
                _ => "",
            };
            if reason == DropReason::Spillover {
                tracing::warn!(
                    "Dropped {count} segment(s) ({}){advice}{}",
                    reason.as_str(),
                    Suppressed(suppressed, "such drops")
                );
            } else {
                tracing::error!(
                    "Dropped {count} segment(s) ({}){advice}{}",
                    reason.as_str(),
                    Suppressed(suppressed, "such drops")
                );
            }
        }
    }

    /// Opens a transaction: counter moves made while the returned guard lives are seen by
    /// [`Self::snapshot`] all together or not at all. Transactions may nest and overlap; keep
    /// them short (no waiting inside).
    pub fn books(&self) -> Books<'_> {
        self.books.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::Release);
        Books { stats: self }
    }

    /// An upload call delivered `count` documents.
    pub fn batch_sent(&self, count: u64) {
        self.batches_sent.inc();
        self.sent.inc_by(count);
        self.last_upload.set(unix_seconds() as i64);
        self.upload_failing_since.store(0, Ordering::Relaxed);
    }

    /// An upload call of `count` documents failed with an error of `kind`. `retry_in` says when
    /// they will be tried again; `None` means they are given up (counted by the caller).
    pub fn call_failed(
        &self,
        count: u64,
        kind: ErrorKind,
        error: &dyn std::fmt::Display,
        retry_in: Option<Duration>,
    ) {
        self.batches_failed.inc();
        let _ = self.upload_failing_since.compare_exchange(
            0,
            unix_seconds().max(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        self.backend_error(kind);
        if let Some(suppressed) = self.failure_limit.once() {
            match retry_in {
                Some(wait) => tracing::warn!(
                    "Sending a batch of {count} segment(s) failed ({}), they stay buffered and are \
                     retried in {:.1} s: {error}{}",
                    kind.as_str(),
                    wait.as_secs_f64(),
                    Suppressed(suppressed, "failed calls")
                ),
                None => tracing::error!(
                    "Sending a batch of {count} segment(s) failed ({}), not retried: {error}{}",
                    kind.as_str(),
                    Suppressed(suppressed, "failed calls")
                ),
            }
        }
    }

    /// A call to AWS (upload or telemetry) failed with an error of `kind`.
    pub fn backend_error(&self, kind: ErrorKind) {
        if let Some(i) = ErrorKind::ALL.iter().position(|k| *k == kind) {
            self.backend_errors[i].inc();
        }
    }

    /// `count` documents were refused for good by the destination (logged one by one with
    /// [`Self::log_refusal`]).
    pub fn documents_rejected(&self, count: u64) {
        self.rejected.inc_by(count);
    }

    /// `count` documents were put back into the buffer for another attempt.
    pub fn documents_retried(&self, count: u64) {
        self.retried.inc_by(count);
    }

    /// Logs one document the destination refused, with its ids, code and message: up to
    /// [`REJECT_LOG_BURST`] lines per [`WARN_INTERVAL`], then only a count of the rest; a retried
    /// one only at debug level. `named_id` is the id the destination named, if any; the
    /// document's own ids are read from it only when a line is written.
    pub fn log_refusal(
        &self,
        doc: Option<&Segment>,
        named_id: Option<&str>,
        code: &str,
        message: &str,
        retried: bool,
    ) {
        let debug = tracing::enabled!(tracing::Level::DEBUG);
        let warn = if retried {
            None
        } else {
            self.reject_limit.allow(REJECT_LOG_BURST, WARN_INTERVAL)
        };
        if !debug && warn.is_none() {
            return;
        }
        let ids = doc.map(Segment::ids).unwrap_or_default();
        let id = named_id.or(ids.id.as_deref()).unwrap_or("(no id)");
        let trace_id = ids.trace_id.as_deref().unwrap_or("(no trace id)");
        let what = if retried {
            "retrying it"
        } else {
            "it is not sent again"
        };
        tracing::debug!(
            "X-Ray refused segment {id} of trace {trace_id}: {code}: {message}; {what}"
        );
        if let Some(suppressed) = warn {
            tracing::warn!(
                "X-Ray refused segment {id} of trace {trace_id}: {code}: {message}; {what}{}",
                if suppressed > 0 {
                    format!(" ({suppressed} more refusals were not logged)")
                } else {
                    String::new()
                }
            );
        }
    }

    /// The buffer's contents changed.
    pub fn set_buffered(&self, documents: usize, bytes: usize) {
        self.buffered.set(documents as i64);
        self.buffered_bytes.set(bytes as i64);
    }

    /// The documents in flight changed.
    pub fn set_in_flight(&self, documents: usize, bytes: usize) {
        self.in_flight.set(documents as i64);
        self.in_flight_bytes.set(bytes as i64);
    }

    /// Bytes the buffer holds now, waiting and in flight (cheap: two atomic reads).
    pub fn held_bytes(&self) -> u64 {
        let held = self
            .buffered_bytes
            .get()
            .saturating_add(self.in_flight_bytes.get());
        u64::try_from(held).unwrap_or(0)
    }

    /// The kernel's cumulative count of datagrams dropped on the socket.
    pub fn set_kernel_dropped(&self, count: u32) {
        self.kernel_dropped.set(i64::from(count));
    }

    /// The memory budget in bytes.
    pub fn set_budget(&self, bytes: usize) {
        self.budget_bytes.set(bytes as i64);
    }

    /// The UDP receive loop has ended: from now on the daemon reports itself unhealthy.
    pub fn receiver_stopped(&self) {
        self.receiver_stopped.store(true, Ordering::Relaxed);
    }

    /// True until [`Self::receiver_stopped`] is called.
    pub fn receiving(&self) -> bool {
        !self.receiver_stopped.load(Ordering::Relaxed)
    }

    /// A copy of every counter, taken at a moment when no [`Self::books`] transaction is open
    /// (so the accounting identity holds in it). Gives up waiting for such a moment after
    /// [`SNAPSHOT_PATIENCE`] and returns the last copy read.
    pub fn snapshot(&self) -> Snapshot {
        let start = std::time::Instant::now();
        loop {
            let before = self.books.load(Ordering::Acquire);
            if before & BOOKS_OPEN_MASK != 0 {
                if start.elapsed() < SNAPSHOT_PATIENCE {
                    std::thread::yield_now();
                    continue;
                }
                return self.read_counters();
            }
            let snap = self.read_counters();
            fence(Ordering::Acquire);
            if self.books.load(Ordering::Relaxed) == before || start.elapsed() >= SNAPSHOT_PATIENCE
            {
                return snap;
            }
        }
    }

    fn read_counters(&self) -> Snapshot {
        let last = self.last_upload.get();
        Snapshot {
            received: self.received.get(),
            received_bytes: self.received_bytes.get(),
            sent: self.sent.get(),
            rejected: self.rejected.get(),
            batches_sent: self.batches_sent.get(),
            batches_failed: self.batches_failed.get(),
            dropped: DropReason::ALL
                .iter()
                .map(|r| (r.as_str(), self.dropped[r.index()].get()))
                .collect(),
            buffered: self.buffered.get().max(0) as u64,
            buffered_bytes: self.buffered_bytes.get().max(0) as u64,
            in_flight: self.in_flight.get().max(0) as u64,
            in_flight_bytes: self.in_flight_bytes.get().max(0) as u64,
            budget_bytes: self.budget_bytes.get().max(0) as u64,
            last_upload_unix: (last > 0).then_some(last as u64),
            kernel_dropped: self.kernel_dropped.get().max(0) as u64,
            retried: self.retried.get(),
            backend_errors: ErrorKind::ALL
                .iter()
                .zip(&self.backend_errors)
                .map(|(k, c)| (k.as_str(), c.get()))
                .collect(),
            receiving: self.receiving(),
            upload_failing_since_unix: match self.upload_failing_since.load(Ordering::Relaxed) {
                0 => None,
                since => Some(since),
            },
        }
    }

    /// The counters in the Prometheus text exposition format.
    pub fn prometheus_text(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_reason_and_renders_both_formats() {
        let s = Stats::new();
        let from: SocketAddr = ([127, 0, 0, 1], 9).into();
        s.datagram_received(10);
        s.datagram_refused(DropReason::EmptyBody, from, &"x");
        s.documents_dropped(DropReason::Spillover, 3);
        let snap = s.snapshot();
        assert_eq!(snap.received, 1);
        assert_eq!(snap.dropped["empty_body"], 1);
        assert_eq!(snap.dropped["spillover"], 3);
        assert_eq!(snap.dropped_total(), 4);
        let text = s.prometheus_text();
        assert!(
            text.contains("xray_segments_dropped_total{reason=\"spillover\"} 3"),
            "{text}"
        );
        assert!(text.contains("xray_segments_received_total 1"), "{text}");
    }

    /// Moves of documents between counters inside `books` transactions are never seen half
    /// done, however the snapshot and the moves interleave.
    #[test]
    fn snapshots_never_see_a_move_half_done() {
        let stats = std::sync::Arc::new(Stats::new());
        let mover = {
            let stats = std::sync::Arc::clone(&stats);
            std::thread::spawn(move || {
                for i in 0..20_000u64 {
                    let _books = stats.books();
                    stats.datagram_received(1);
                    // Waiting, then in flight, then delivered: three gauges and a counter.
                    stats.set_buffered(1, 1);
                    std::hint::spin_loop();
                    stats.set_buffered(0, 0);
                    stats.set_in_flight(1, 1);
                    std::hint::spin_loop();
                    stats.set_in_flight(0, 0);
                    if i % 2 == 0 {
                        stats.batch_sent(1);
                    } else {
                        let _nested = stats.books();
                        stats.documents_dropped(DropReason::RetriesExhausted, 1);
                    }
                }
            })
        };
        let mut checked = 0;
        while !mover.is_finished() {
            let snap = stats.snapshot();
            assert_eq!(snap.unaccounted(), 0, "{snap:?}");
            checked += 1;
        }
        assert!(mover.join().is_ok());
        let end = stats.snapshot();
        assert_eq!((end.received, end.unaccounted()), (20_000, 0));
        assert!(checked > 0);
    }

    #[test]
    fn the_summary_line_names_what_was_lost_and_why() {
        let s = Stats::new();
        for _ in 0..5 {
            s.datagram_received(10);
        }
        s.batch_sent(2);
        s.documents_rejected(1);
        s.documents_dropped(DropReason::RetriesExhausted, 2);
        s.backend_error(ErrorKind::Throttled);
        let snap = s.snapshot();
        assert_eq!(snap.unaccounted(), 0);
        assert_eq!(
            snap.summary_line(),
            "Segments received: 5, sent: 2, rejected by X-Ray: 1, dropped: 2 (retries_exhausted 2), \
             buffered: 0, in flight: 0, retried: 0, upload errors: 1 (throttled 1), kernel dropped: 0"
        );
        assert!(snap.same_events(&s.snapshot()));
        s.datagram_received(1);
        assert!(!snap.same_events(&s.snapshot()));
    }

    #[test]
    fn bad_input_reasons_are_the_first_seven() {
        let bad: Vec<_> = DropReason::ALL
            .iter()
            .filter(|r| r.is_bad_input())
            .collect();
        assert_eq!(bad.len(), 7);
    }
}
