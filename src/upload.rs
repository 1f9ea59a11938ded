//! The upload stage of one sink: batches in, calls to the sink out, each item's fate decided
//! and handed back to the buffer.
//!
//! In: [`Batch`]es from the sink's batcher over a bounded channel, each with the upload slot it
//! was cut under: at most `concurrency` calls at a time (the original's `Concurrency`, default
//! 8), and a batch is only cut when a slot is free, so backpressure reaches the buffer, where
//! the memory budget applies (see [`crate::batcher`]). Out: calls to the sink. Every sink has
//! its own upload stage, so a slow or dead sink never holds back another.
//!
//! Each call's result is classified by the pure [`retry::classify`]; this is the one retry layer
//! (the AWS SDK's own retries are off, see [`crate::aws`]). Per item, when its call is over:
//! - **sent** when the sink took it;
//! - **rejected** when the sink refused it for good (X-Ray's `UnprocessedTraceSegments` with a
//!   code other than throttling or an internal error), logged with its ids, code and message;
//! - **retry**: the call failed with throttling, 5xx, a timeout or a connection error, or the
//!   item was refused with a throttling/internal code: it goes back into the sink's lane,
//!   still charged to the budget, and the lane's batcher waits before the next batch: what the
//!   destination asked for (`Retry-After`), else a backoff with full jitter
//!   ([`retry::wait_before_retry`], growing with consecutive failures);
//! - **held**: the sink held it back unsent for a later batch ([`Delivery::held`]: an OTLP sink
//!   waiting for a subsegment's segment): back into the lane as it was, no attempt counted;
//! - **dropped** `retries_exhausted` once it has had [`RetryPolicy::max_attempts`] attempts or
//!   its first failure is [`RetryPolicy::max_age`] old; **dropped** `upload_failed` when the
//!   call failed in a way another attempt would not fix (a 4xx other than 429); **dropped**
//!   with the sink's own reason when the sink gave the item up without sending it
//!   ([`Delivery::dropped`]: a span outside X-Ray's OTLP time window, say).
//!
//! Shutdown: when `abandon` is cancelled (the drain deadline passed), calls under way are cut
//! off and their items counted as dropped (`shutdown`) by the batch itself.

pub mod retry;

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use self::retry::{RetryPolicy, Verdict};
use crate::buffer::{Batch, DocState, Fate};
use crate::item::Item;
use crate::outcome::DropReason;
use crate::ratelimit::{RateLimit, WARN_INTERVAL};
use crate::sink::{Delivery, Sink};
use crate::stats::Stats;

/// How many refused items are logged one by one per [`WARN_INTERVAL`] before the rest are only
/// counted.
pub const REJECT_LOG_BURST: u64 = 20;

/// How one sink's stage runs.
#[derive(Clone, Copy, Debug)]
pub struct UploadSettings {
    /// When to retry and when to give up.
    pub retry: RetryPolicy,
}

/// What the workers of one sink share.
#[derive(Debug)]
struct Shared {
    sink: Arc<dyn Sink>,
    calls: mpsc::Sender<Option<Duration>>,
    stats: Arc<Stats>,
    retry: RetryPolicy,
    /// Failed calls since the last call that succeeded (drives the backoff).
    failures: AtomicU32,
    reject_log: RateLimit,
}

/// Runs until the batch channel closes and every upload under way has finished, or until
/// `abandon` is cancelled (then calls under way are cut off). Each call's end is reported on
/// `calls` (the backoff after a failure, `None` after an answer) before its batch is settled,
/// for the lane's batcher.
pub async fn run(
    mut batches: mpsc::Receiver<(Batch, OwnedSemaphorePermit)>,
    sink: Arc<dyn Sink>,
    calls: mpsc::Sender<Option<Duration>>,
    settings: UploadSettings,
    stats: Arc<Stats>,
    abandon: CancellationToken,
) {
    let shared = Arc::new(Shared {
        sink,
        calls,
        stats,
        retry: settings.retry,
        failures: AtomicU32::new(0),
        reject_log: RateLimit::default(),
    });
    let mut uploads = JoinSet::new();
    loop {
        // Each batch comes with the upload slot it was cut under (see the batcher), so its
        // call starts at once.
        let (batch, slot) = tokio::select! {
            biased;
            () = abandon.cancelled() => break,
            batch = batches.recv() => match batch {
                Some(batch) => batch,
                None => break,
            },
        };
        let (shared, abandon) = (Arc::clone(&shared), abandon.clone());
        uploads.spawn(async move {
            tokio::select! {
                biased;
                // The batch is dropped unfinished and counts itself as dropped (shutdown).
                () = abandon.cancelled() => {}
                () = deliver(batch, &shared) => {}
            }
            drop(slot);
        });
        while uploads.try_join_next().is_some() {}
    }
    // Batches still queued in the channel are dropped with it and count themselves.
    drop(batches);
    while uploads.join_next().await.is_some() {}
}

/// A uniform number in `[0, 1)` for the backoff's jitter, from std's randomly keyed hasher.
fn jitter() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Sends one batch to the sink, decides each item's fate, tells the gate, settles the batch.
async fn deliver(batch: Batch, shared: &Shared) {
    let started = Instant::now();
    let n = batch.len();
    let mut states: Vec<DocState> = batch.states().to_vec();
    let result = shared.sink.send(batch.items()).await;
    let now = tokio::time::Instant::now();
    let mut fates = vec![Fate::Sent; n];
    // Items the sink gave up itself (a span X-Ray's OTLP endpoint would refuse): dropped with
    // the sink's reason, never retried, and never the item a refusal without an index costs.
    let given_up: &[(usize, DropReason)] = match &result {
        Ok(delivery) => &delivery.dropped,
        Err(_) => &[],
    };
    for &(i, reason) in given_up.iter().filter(|(i, _)| *i < n) {
        fates[i] = Fate::Dropped(reason);
    }
    // Items the sink held back were not part of the call: back into the lane as they were, and
    // never the item a refusal without an index costs.
    let held: &[usize] = match &result {
        Ok(delivery) => &delivery.held,
        Err(e) => e.held(),
    };
    for &i in held.iter().filter(|&&i| i < n) {
        fates[i] = Fate::Held;
    }
    // Items that failed in a way worth another attempt: the retry policy decides.
    let mut again = vec![false; n];
    let mut failure = None;
    match (retry::classify(&result), &result) {
        (Verdict::Sent, _) => {}
        (Verdict::Partial { retry, reject }, Ok(delivery)) => {
            for i in refused_items(delivery, &retry, batch.items()) {
                again[i] = true;
            }
            for (k, i) in refused_items_with_refusal(delivery, &reject, batch.items(), &fates) {
                if let Some(i) = i {
                    fates[i] = Fate::Rejected;
                }
                let r = &delivery.refused[k];
                log_refusal(
                    shared,
                    i.map(|i| &batch.items()[i]),
                    r.id.as_deref(),
                    &r.code,
                    &r.message,
                );
            }
            for r in retry.iter().filter_map(|&k| delivery.refused.get(k)) {
                if let Some(i) = r.index.filter(|&i| i < n) {
                    log_retried(shared.sink.name(), &batch.items()[i], &r.code, &r.message);
                }
            }
        }
        (Verdict::Retry(kind), Err(e)) => {
            again.iter_mut().for_each(|a| *a = true);
            failure = Some((kind, e.to_string()));
        }
        (Verdict::Drop(kind), Err(e)) => {
            let in_call = n.saturating_sub(held.len());
            shared.stats.call_failed(in_call as u64, kind, e, None);
            fates
                .iter_mut()
                .filter(|f| **f != Fate::Held)
                .for_each(|f| *f = Fate::Dropped(DropReason::UploadFailed));
        }
        // classify gives Partial only for Ok and Retry/Drop only for Err.
        (_, _) => {}
    }
    for &(i, reason) in given_up.iter().filter(|(i, _)| *i < n) {
        fates[i] = Fate::Dropped(reason);
        again[i] = false;
    }
    for &i in held.iter().filter(|&&i| i < n) {
        fates[i] = Fate::Held;
        again[i] = false;
    }
    // The destination's own word on when to come back (Retry-After), if it gave one.
    let retry_after = match &result {
        Ok(delivery) => delivery.retry_after,
        Err(e) => e.hint().after(),
    };
    let mut to_retry = 0u64;
    for i in (0..n).filter(|&i| again[i]) {
        let state = &mut states[i];
        state.attempts += 1;
        state.held = false;
        let first = *state.first_failure.get_or_insert(now);
        fates[i] = if retry::gives_up(&shared.retry, state.attempts, now - first) {
            Fate::Dropped(DropReason::RetriesExhausted)
        } else {
            to_retry += 1;
            Fate::Retry
        };
    }
    // No call made (every item held back): nothing to learn about the destination.
    let no_call = matches!(&result, Ok(d) if d.no_call);
    let backoff = if no_call {
        None
    } else if failure.is_some() || to_retry > 0 {
        let consecutive = shared.failures.fetch_add(1, Ordering::Relaxed) + 1;
        Some(retry::wait_before_retry(
            &shared.retry,
            consecutive,
            jitter(),
            retry_after,
        ))
    } else {
        shared.failures.store(0, Ordering::Relaxed);
        None
    };
    match &failure {
        Some((kind, error)) => shared.stats.call_failed(
            n.saturating_sub(held.len()) as u64,
            *kind,
            error,
            (to_retry > 0).then(|| backoff.unwrap_or_default()),
        ),
        // A call that was answered succeeded, even if it refused every item.
        None if result.is_ok() && !no_call => shared.stats.call_answered(),
        None => {}
    }
    // The channel has room for every batch that can be out (see the batcher), so this does not
    // wait; if the batcher is gone, nobody needs the report.
    let _ = shared.calls.send(backoff).await;
    let settled = batch.finish(&fates, &states);
    tracing::debug!(
        "Batch of {n} segment(s) to {}: {} sent, {} refused, {} to retry, {} held, {} dropped ({:.3} s)",
        shared.sink.name(),
        settled.sent,
        settled.rejected,
        settled.retried,
        settled.held,
        settled.dropped,
        started.elapsed().as_secs_f64()
    );
}

/// The batch positions of the refusals `which` that name an item of the batch.
fn refused_items<'a>(
    delivery: &'a Delivery,
    which: &'a [usize],
    items: &'a [Item],
) -> impl Iterator<Item = usize> + 'a {
    which
        .iter()
        .filter_map(|&k| delivery.refused.get(k))
        .filter_map(|r| r.index)
        .filter(|&i| i < items.len())
}

/// Each final refusal with the item it takes off the sent count: the one it names, else the
/// first not yet refused (nor given up by the sink) without an id, else the last such one (a
/// refusal always costs one item, so the counts stay honest).
fn refused_items_with_refusal(
    delivery: &Delivery,
    which: &[usize],
    items: &[Item],
    fates: &[Fate],
) -> Vec<(usize, Option<usize>)> {
    // Taken: refused already, or given up by the sink.
    let mut refused: Vec<bool> = fates.iter().map(|f| *f != Fate::Sent).collect();
    let mut out = Vec::new();
    for &k in which {
        let Some(r) = delivery.refused.get(k) else {
            continue;
        };
        let i = r
            .index
            .filter(|&i| i < items.len() && !refused[i])
            .or_else(|| {
                let open = |i: &usize| !refused[*i];
                (0..items.len())
                    .filter(open)
                    .find(|&i| items[i].as_document().is_some_and(|d| d.ids().id.is_none()))
                    .or_else(|| (0..items.len()).rev().find(open))
            });
        if let Some(i) = i {
            refused[i] = true;
        }
        out.push((k, i));
    }
    out
}

/// Logs one item the destination refused for good, with its ids, code and message: up to
/// [`REJECT_LOG_BURST`] lines per [`WARN_INTERVAL`], then only a count of the rest. `named_id` is
/// the id the destination named, if any; the item's own ids are read only when a line is
/// written.
fn log_refusal(
    shared: &Shared,
    item: Option<&Item>,
    named_id: Option<&str>,
    code: &str,
    message: &str,
) {
    let warn = shared.reject_log.allow(REJECT_LOG_BURST, WARN_INTERVAL);
    if warn.is_none() && !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let ids = item
        .and_then(Item::as_document)
        .map(|d| d.ids())
        .unwrap_or_default();
    let id = named_id.or(ids.id.as_deref()).unwrap_or("(no id)");
    let trace_id = ids.trace_id.as_deref().unwrap_or("(no trace id)");
    let who = destination(shared.sink.name());
    match warn {
        Some(suppressed) => tracing::warn!(
            "{who} refused segment {id} of trace {trace_id}: {code}: {message}; it is not sent again{}",
            if suppressed > 0 {
                format!(" ({suppressed} more refusals were not logged)")
            } else {
                String::new()
            }
        ),
        None => tracing::debug!(
            "{who} refused segment {id} of trace {trace_id}: {code}: {message}; it is not sent again"
        ),
    }
}

/// Logs, at debug level, an item the destination refused with a code worth another attempt.
fn log_retried(sink: &str, item: &Item, code: &str, message: &str) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::debug!(
            "{} refused {}: {code}: {message}; retrying it",
            destination(sink),
            item.log_name()
        );
    }
}

/// The destination a sink's refusals come from, as a log line names it.
fn destination(sink: &str) -> &str {
    match sink {
        "xray" | "xray-otlp" => "X-Ray",
        "otlp" => "The OTLP backend",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::batcher::{self, BatchSettings};
    use crate::buffer::{Buffer, FullPolicy, Intake, LaneSettings};
    use crate::document::Document;
    use crate::item::Input;
    use crate::outcome::ErrorKind;
    use crate::sink::{RetryHint, SinkError, SinkFuture};

    /// A sink that fails with the scripted kinds first (a `None` stalls the call for a
    /// minute), then takes everything; it records the ids of every batch it is sent.
    #[derive(Debug, Default)]
    struct ScriptedSink {
        name: &'static str,
        failures: Mutex<VecDeque<Option<ErrorKind>>>,
        calls: Mutex<Vec<Vec<String>>>,
    }

    impl ScriptedSink {
        fn failing(name: &'static str, kinds: &[Option<ErrorKind>]) -> Arc<Self> {
            Arc::new(ScriptedSink {
                name,
                failures: Mutex::new(kinds.iter().copied().collect()),
                calls: Mutex::default(),
            })
        }

        fn calls(&self) -> Vec<Vec<String>> {
            self.calls.lock().map(|c| c.clone()).unwrap_or_default()
        }
    }

    impl Sink for ScriptedSink {
        fn name(&self) -> &'static str {
            self.name
        }

        fn send<'a>(&'a self, batch: &'a [Item]) -> SinkFuture<'a> {
            let ids = batch
                .iter()
                .filter_map(Item::as_document)
                .map(|d| d.ids().id.as_deref().unwrap_or("-").to_owned())
                .collect();
            if let Ok(mut calls) = self.calls.lock() {
                calls.push(ids);
            }
            let failure = self.failures.lock().ok().and_then(|mut f| f.pop_front());
            Box::pin(async move {
                match failure {
                    Some(Some(kind)) => Err(SinkError::Call {
                        sink: "scripted",
                        kind,
                        message: "scripted".into(),
                        hint: RetryHint::ByKind,
                    }),
                    Some(None) => {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        Ok(Delivery::default())
                    }
                    None => Ok(Delivery::default()),
                }
            })
        }
    }

    fn doc(id: usize) -> Item {
        Item::XrayDocument(Document::unchecked(format!(r#"{{"id":"{id}"}}"#)))
    }

    /// Fails its first call with HTTP 503 asking to wait `wait` (`Retry-After`), then drops the
    /// first item of each batch (`too_large`) and takes the rest; records when each call came.
    #[derive(Debug)]
    struct HintedSink {
        wait: Duration,
        calls: Mutex<Vec<tokio::time::Instant>>,
    }

    impl Sink for HintedSink {
        fn name(&self) -> &'static str {
            "hinted"
        }

        fn send<'a>(&'a self, _batch: &'a [Item]) -> SinkFuture<'a> {
            let first = match self.calls.lock() {
                Ok(mut calls) => {
                    calls.push(tokio::time::Instant::now());
                    calls.len() == 1
                }
                Err(_) => false,
            };
            let wait = self.wait;
            Box::pin(async move {
                if first {
                    return Err(SinkError::Call {
                        sink: "hinted",
                        kind: ErrorKind::Http5xx,
                        message: "503".into(),
                        hint: RetryHint::After(wait),
                    });
                }
                Ok(Delivery {
                    dropped: vec![(0, DropReason::TooLarge)],
                    ..Delivery::default()
                })
            })
        }
    }

    /// Runs a batcher and an upload stage per sink over `docs` documents until everything is
    /// settled; returns the stats and, per sink, when it finished.
    async fn run_to_end(
        sinks: Vec<Arc<dyn Sink>>,
        docs: usize,
        retry: RetryPolicy,
    ) -> (Arc<Stats>, Vec<Duration>) {
        let stats = Arc::new(Stats::new());
        let lanes = sinks
            .iter()
            .map(|s| LaneSettings {
                name: s.name().to_owned(),
                batch_size: 2,
                takes: crate::buffer::Takes::Everything,
            })
            .collect();
        let buffer = Buffer::new(1 << 20, lanes, FullPolicy::DropOldest, Arc::clone(&stats));
        let mut intake = Intake::new(Input::Udp, docs);
        for i in 0..docs {
            intake.received(2);
            intake.accepted(doc(i));
        }
        buffer.admit(&mut intake);
        buffer.close();
        let start = tokio::time::Instant::now();
        let mut lanes = JoinSet::new();
        for (lane, sink) in sinks.into_iter().enumerate() {
            let (tx, rx) = mpsc::channel(1);
            let (calls, reports) = mpsc::channel(batcher::reports_capacity(2));
            let settings = BatchSettings {
                batch_size: 2,
                linger: Duration::from_millis(10),
                max_age: retry.max_age,
            };
            let slots = Arc::new(tokio::sync::Semaphore::new(2));
            let cut = batcher::run(Arc::clone(&buffer), lane, settings, reports, slots, tx);
            let up = run(
                rx,
                sink,
                calls,
                UploadSettings { retry },
                Arc::clone(&stats),
                CancellationToken::new(),
            );
            lanes.spawn(async move {
                tokio::join!(cut, up);
                (lane, start.elapsed())
            });
        }
        let mut done = Vec::new();
        while let Some(Ok(finished)) = lanes.join_next().await {
            done.push(finished);
        }
        done.sort();
        (stats, done.into_iter().map(|(_, t)| t).collect())
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_goes_only_to_the_sink_that_failed() {
        let good = ScriptedSink::failing("good", &[]);
        let flaky = ScriptedSink::failing(
            "flaky",
            &[Some(ErrorKind::Http5xx), Some(ErrorKind::Throttled)],
        );
        let (stats, _) = run_to_end(
            vec![Arc::clone(&good) as Arc<dyn Sink>, flaky.clone()],
            4,
            RetryPolicy::default(),
        )
        .await;
        let snap = stats.snapshot();
        assert_eq!(
            (snap.sent, snap.dropped_total(), snap.broken_identities()),
            (4, 0, Vec::<String>::new())
        );
        assert_eq!(snap.backend_errors["http_5xx"], 1);
        assert_eq!(snap.backend_errors["throttled"], 1);
        assert_eq!((snap.sinks["good"].sent, snap.sinks["flaky"].sent), (4, 4));
        let mut taken: Vec<String> = good.calls().concat();
        taken.sort();
        assert_eq!(
            taken,
            ["0", "1", "2", "3"],
            "the good sink got each document once"
        );
        assert_eq!(
            flaky.calls().len(),
            4,
            "two failed calls, then the two batches"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_sink_does_not_hold_back_another() {
        let quick = ScriptedSink::failing("quick", &[]);
        let stalled = ScriptedSink::failing("stalled", &[None, None, None]);
        let (stats, finished) = run_to_end(
            vec![Arc::clone(&quick) as Arc<dyn Sink>, stalled.clone()],
            6,
            RetryPolicy::default(),
        )
        .await;
        assert!(finished[0] < Duration::from_secs(1), "{finished:?}");
        assert!(finished[1] >= Duration::from_secs(60), "{finished:?}");
        let snap = stats.snapshot();
        assert_eq!(
            (snap.sinks["quick"].sent, snap.sinks["stalled"].sent),
            (6, 6)
        );
        assert!(snap.broken_identities().is_empty(), "{snap:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_end_at_the_attempt_limit_and_client_errors_are_not_retried() {
        let down = ScriptedSink::failing("down", &[Some(ErrorKind::ConnectionRefused); 10]);
        let policy = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let snap = run_to_end(vec![down.clone()], 2, policy).await.0.snapshot();
        assert_eq!(snap.dropped(DropReason::RetriesExhausted), 2);
        assert_eq!((snap.retried, snap.unaccounted()), (4, 0));
        assert_eq!(down.calls().len(), 3, "three attempts");

        let refused = ScriptedSink::failing("refused", &[Some(ErrorKind::Http4xx)]);
        let snap = run_to_end(vec![refused.clone()], 2, policy)
            .await
            .0
            .snapshot();
        assert_eq!(
            (snap.dropped(DropReason::UploadFailed), snap.retried),
            (2, 0)
        );
        assert_eq!(refused.calls().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_a_destination_asks_for_is_kept_and_a_sink_can_drop_items() {
        let sink = Arc::new(HintedSink {
            wait: Duration::from_secs(3),
            calls: Mutex::default(),
        });
        let snap = run_to_end(vec![sink.clone()], 2, RetryPolicy::default())
            .await
            .0
            .snapshot();
        let calls = sink.calls.lock().map(|c| c.clone()).unwrap_or_default();
        assert_eq!(calls.len(), 2, "{calls:?}");
        let waited = calls[1] - calls[0];
        // Without the hint the backoff would be under 100 ms.
        assert!(
            waited >= Duration::from_secs(3) && waited < Duration::from_millis(3100),
            "{waited:?}"
        );
        assert_eq!(
            (snap.sent, snap.dropped(DropReason::TooLarge), snap.retried),
            (1, 1, 2)
        );
        assert_eq!(snap.sinks["hinted"].dropped["too_large"], 1);
        assert!(snap.broken_identities().is_empty(), "{snap:?}");
    }

    /// Gives up the last item of each batch itself and reports one refusal that names no item
    /// (as an OTLP `partial_success` does).
    #[derive(Debug)]
    struct PartialSink;

    impl Sink for PartialSink {
        fn name(&self) -> &'static str {
            "partial"
        }

        fn send<'a>(&'a self, batch: &'a [Item]) -> SinkFuture<'a> {
            let last = batch.len().saturating_sub(1);
            Box::pin(async move {
                Ok(Delivery {
                    refused: vec![crate::sink::Refused {
                        index: None,
                        id: None,
                        code: "PartialSuccess".into(),
                        message: "1 span refused".into(),
                    }],
                    dropped: vec![(last, DropReason::OutsideTimeWindow)],
                    held: Vec::new(),
                    no_call: false,
                    retry_after: None,
                })
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_without_an_index_never_costs_an_item_the_sink_gave_up() {
        let snap = run_to_end(vec![Arc::new(PartialSink)], 2, RetryPolicy::default())
            .await
            .0
            .snapshot();
        assert_eq!(
            (
                snap.sent,
                snap.rejected,
                snap.dropped(DropReason::OutsideTimeWindow)
            ),
            (0, 1, 1)
        );
        assert!(snap.broken_identities().is_empty(), "{snap:?}");
    }

    /// Holds the first item of its first batch back, and with it either reports one refusal
    /// that names no item (`fail_first` false) or fails the call for good, a 400 (`true`);
    /// takes everything after that.
    #[derive(Debug, Default)]
    struct HoldingSink {
        fail_first: bool,
        calls: Mutex<Vec<usize>>,
    }

    impl Sink for HoldingSink {
        fn name(&self) -> &'static str {
            "holding"
        }

        fn send<'a>(&'a self, batch: &'a [Item]) -> SinkFuture<'a> {
            let first = match self.calls.lock() {
                Ok(mut calls) => {
                    calls.push(batch.len());
                    calls.len() == 1
                }
                Err(_) => false,
            };
            let fail = first && self.fail_first;
            Box::pin(async move {
                if fail {
                    return Err(SinkError::Held {
                        held: vec![0],
                        error: Box::new(SinkError::Call {
                            sink: "holding",
                            kind: ErrorKind::Http4xx,
                            message: "HTTP 400".into(),
                            hint: RetryHint::ByKind,
                        }),
                    });
                }
                let mut delivery = Delivery::default();
                if first {
                    delivery.held.push(0);
                    delivery.refused.push(crate::sink::Refused {
                        index: None,
                        id: None,
                        code: "PartialSuccess".into(),
                        message: "1 span refused".into(),
                    });
                }
                Ok(delivery)
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_item_held_back_from_a_failed_call_is_not_lost_with_it() {
        let sink = Arc::new(HoldingSink {
            fail_first: true,
            ..HoldingSink::default()
        });
        let snap = run_to_end(vec![sink.clone()], 2, RetryPolicy::default())
            .await
            .0
            .snapshot();
        let calls = sink.calls.lock().map(|c| c.clone()).unwrap_or_default();
        assert_eq!(calls, [2, 1]);
        assert_eq!(
            (
                snap.sent,
                snap.dropped(DropReason::UploadFailed),
                snap.retried
            ),
            (1, 1, 0),
            "{snap:?}"
        );
        assert!(snap.broken_identities().is_empty(), "{snap:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_item_held_back_comes_again_unsent_and_is_never_charged_a_refusal() {
        let sink = Arc::new(HoldingSink::default());
        let snap = run_to_end(vec![sink.clone()], 2, RetryPolicy::default())
            .await
            .0
            .snapshot();
        let calls = sink.calls.lock().map(|c| c.clone()).unwrap_or_default();
        assert_eq!(calls, [2, 1], "the held item came again alone");
        assert_eq!(
            (snap.sent, snap.rejected, snap.retried, snap.dropped_total()),
            (1, 1, 0, 0),
            "{snap:?}"
        );
        assert!(snap.broken_identities().is_empty(), "{snap:?}");
    }
}
