//! The upload stage: batches in, calls to every sink out, each document accounted for, failed
//! ones retried.
//!
//! In: [`Batch`]es from the batcher over a bounded channel. Out: calls to the configured
//! [`Sink`]s, at most `concurrency` batches at a time (the original's `Concurrency`, default 8);
//! the next batch is only taken from the channel when a worker is free, so backpressure reaches
//! the buffer, where the memory budget applies.
//!
//! Each call's result is classified by the pure [`retry::classify`]; this is the one retry layer
//! (the AWS SDK's own retries are off, see [`crate::aws`]). Per document, once its batch is
//! done with ([`Batch::finish`]):
//! - **sent** when every sink took it;
//! - **rejected** when a sink refused it for good (X-Ray's `UnprocessedTraceSegments` with a
//!   code other than throttling or an internal error), logged with its ids, code and message;
//! - **retry**: the call failed with throttling, 5xx, a timeout or a connection error, or the
//!   document was refused with a throttling/internal code: it goes back to the front of the
//!   buffer, still charged to the budget, and the buffer waits out a backoff with full jitter
//!   ([`retry::backoff`], growing with consecutive failures) before the next batch;
//! - **dropped** `retries_exhausted` once it has had [`RetryPolicy::max_attempts`] attempts or
//!   its first failure is [`RetryPolicy::max_age`] old; **dropped** `upload_failed` when the
//!   call failed in a way another attempt would not fix (a 4xx other than 429).
//!
//! With several sinks, each document remembers which sinks already took it, so a retry goes
//! only where it is still missing.
//!
//! Shutdown: when `abandon` is cancelled (the drain deadline passed), calls under way are cut
//! off and their documents counted as dropped (`shutdown`) by the batch itself.

pub mod retry;

use std::borrow::Cow;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use self::retry::{RetryPolicy, Verdict};
use crate::buffer::{Batch, DocState, Fate};
use crate::segment::Segment;
use crate::sink::Sink;
use crate::outcome::DropReason;
use crate::stats::Stats;

/// Default number of batches uploaded at once (the original's `Concurrency`).
pub const DEFAULT_CONCURRENCY: usize = 8;

/// Most uploads at once that `--concurrency` accepts.
pub const MAX_CONCURRENCY: usize = 1024;

/// Most sinks a batch can go to (each document remembers which took it in a 32-bit set).
pub const MAX_SINKS: usize = 32;

/// The sinks every batch goes to (at most 32).
pub type Sinks = Arc<[Box<dyn Sink>]>;

/// How the stage runs.
#[derive(Clone, Copy, Debug)]
pub struct UploadSettings {
    /// Batches uploaded at once; at least 1. Default [`DEFAULT_CONCURRENCY`].
    pub concurrency: usize,
    /// When to retry and when to give up.
    pub retry: RetryPolicy,
}

/// What the workers share.
#[derive(Debug)]
struct Shared {
    sinks: Sinks,
    stats: Arc<Stats>,
    retry: RetryPolicy,
    /// Failed calls since the last call that succeeded (drives the backoff).
    failures: AtomicU32,
}

/// Runs until the batch channel closes and every upload under way has finished, or until
/// `abandon` is cancelled (then calls under way are cut off).
pub async fn run(
    mut batches: mpsc::Receiver<Batch>,
    sinks: Sinks,
    settings: UploadSettings,
    stats: Arc<Stats>,
    abandon: CancellationToken,
) {
    let shared = Arc::new(Shared {
        sinks,
        stats,
        retry: settings.retry,
        failures: AtomicU32::new(0),
    });
    let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut uploads = JoinSet::new();
    loop {
        let slot = tokio::select! {
            biased;
            () = abandon.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let batch = tokio::select! {
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

/// Sends one batch to every sink that still lacks some of its documents, then settles each
/// document.
async fn deliver(batch: Batch, shared: &Shared) {
    let started = Instant::now();
    let docs = batch.docs();
    let n = docs.len();
    let mut states: Vec<DocState> = batch.states().to_vec();
    // Documents a sink refused to take in a way no retry fixes.
    let mut hard_failed = vec![false; n];
    // Failed calls worth another attempt: kind, error, documents in the call.
    let mut failures: Vec<(crate::outcome::ErrorKind, String, usize)> = Vec::new();
    for (si, sink) in shared.sinks.iter().enumerate().take(MAX_SINKS) {
        let bit = 1u32 << si;
        let pending: Vec<usize> = (0..n)
            .filter(|&i| states[i].done_sinks & bit == 0)
            .collect();
        if pending.is_empty() {
            continue;
        }
        let subset: Cow<'_, [Segment]> = if pending.len() == n {
            Cow::Borrowed(docs)
        } else {
            Cow::Owned(pending.iter().map(|&i| docs[i].clone()).collect())
        };
        let result = sink.send(&subset).await;
        match (retry::classify(&result), &result) {
            (Verdict::Sent, _) => {
                for &i in &pending {
                    states[i].done_sinks |= bit;
                }
            }
            (Verdict::Partial { retry, reject }, Ok(delivery)) => {
                for &i in &pending {
                    states[i].done_sinks |= bit;
                }
                for r in retry.iter().filter_map(|&k| delivery.refused.get(k)) {
                    if let Some(&i) = r.index.and_then(|j| pending.get(j)) {
                        states[i].done_sinks &= !bit;
                        shared
                            .stats
                            .log_refusal(Some(&docs[i]), None, &r.code, &r.message, true);
                    }
                }
                for r in reject.iter().filter_map(|&k| delivery.refused.get(k)) {
                    // A refusal naming no document of the batch still takes one off the sent
                    // count: the first not yet refused without an id, else the last one.
                    let i = r.index.and_then(|j| pending.get(j)).copied().or_else(|| {
                        let open = |&&i: &&usize| !states[i].refused;
                        pending
                            .iter()
                            .filter(open)
                            .find(|&&i| docs[i].ids().id.is_none())
                            .or_else(|| pending.iter().rfind(|i| !states[**i].refused))
                            .copied()
                    });
                    if let Some(i) = i {
                        states[i].refused = true;
                    }
                    shared.stats.log_refusal(
                        i.map(|i| &docs[i]),
                        r.id.as_deref(),
                        &r.code,
                        &r.message,
                        false,
                    );
                }
            }
            (Verdict::Retry(kind), Err(e)) => {
                // Logged below, once the backoff is known.
                failures.push((kind, e.to_string(), pending.len()));
            }
            (Verdict::Drop(kind), Err(e)) => {
                shared
                    .stats
                    .call_failed(pending.len() as u64, kind, e, None);
                for &i in &pending {
                    hard_failed[i] = true;
                }
            }
            // classify gives Partial only for Ok and Retry/Drop only for Err.
            (_, _) => {}
        }
    }

    let all_sinks = if shared.sinks.len() >= 32 {
        u32::MAX
    } else {
        (1u32 << shared.sinks.len()) - 1
    };
    let now = tokio::time::Instant::now();
    let mut fates = Vec::with_capacity(n);
    let mut to_retry = 0u64;
    for (i, state) in states.iter_mut().enumerate() {
        let fate = if hard_failed[i] {
            Fate::Dropped(DropReason::UploadFailed)
        } else if state.done_sinks & all_sinks == all_sinks {
            if state.refused {
                Fate::Rejected
            } else {
                Fate::Sent
            }
        } else {
            state.attempts += 1;
            let first = *state.first_failure.get_or_insert(now);
            if retry::gives_up(&shared.retry, state.attempts, now - first) {
                Fate::Dropped(DropReason::RetriesExhausted)
            } else {
                to_retry += 1;
                Fate::Retry
            }
        };
        fates.push(fate);
    }
    let backoff = if !failures.is_empty() || to_retry > 0 {
        let consecutive = shared.failures.fetch_add(1, Ordering::Relaxed) + 1;
        Some(retry::backoff(&shared.retry, consecutive, jitter()))
    } else {
        shared.failures.store(0, Ordering::Relaxed);
        None
    };
    for (kind, error, count) in &failures {
        shared.stats.call_failed(
            *count as u64,
            *kind,
            error,
            (to_retry > 0).then(|| backoff.unwrap_or_default()),
        );
    }
    tracing::debug!(
        "Batch of {n} segment(s): {} sent, {} refused, {to_retry} to retry, {} dropped ({:.3} s)",
        fates.iter().filter(|f| **f == Fate::Sent).count(),
        fates.iter().filter(|f| **f == Fate::Rejected).count(),
        fates
            .iter()
            .filter(|f| matches!(f, Fate::Dropped(_)))
            .count(),
        started.elapsed().as_secs_f64()
    );
    batch.finish(&fates, &states, backoff);
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::buffer::{Buffer, FullPolicy, Taken};
    use crate::outcome::ErrorKind;
    use crate::sink::{Delivery, SinkError, SinkFuture};

    /// A sink that fails with the scripted kinds first, then takes everything; it records
    /// the ids of every batch it is sent.
    #[derive(Debug, Default)]
    struct ScriptedSink {
        failures: Mutex<VecDeque<ErrorKind>>,
        calls: Mutex<Vec<Vec<String>>>,
    }

    impl ScriptedSink {
        fn failing(kinds: &[ErrorKind]) -> Arc<Self> {
            Arc::new(ScriptedSink {
                failures: Mutex::new(kinds.iter().copied().collect()),
                calls: Mutex::default(),
            })
        }

        fn calls(&self) -> Vec<Vec<String>> {
            self.calls.lock().map(|c| c.clone()).unwrap_or_default()
        }
    }

    #[derive(Debug)]
    struct ScriptedHandle(Arc<ScriptedSink>);

    impl Sink for ScriptedHandle {
        fn name(&self) -> &'static str {
            "scripted"
        }

        fn send<'a>(&'a self, batch: &'a [Segment]) -> SinkFuture<'a> {
            let ids = batch
                .iter()
                .map(|d| d.ids().id.as_deref().unwrap_or("-").to_owned())
                .collect();
            if let Ok(mut calls) = self.0.calls.lock() {
                calls.push(ids);
            }
            let failure = self.0.failures.lock().ok().and_then(|mut f| f.pop_front());
            Box::pin(async move {
                match failure {
                    Some(kind) => Err(SinkError::Call {
                        sink: "scripted",
                        kind,
                        message: "scripted".into(),
                    }),
                    None => Ok(Delivery::default()),
                }
            })
        }
    }

    fn doc(id: usize) -> Segment {
        Segment::unchecked(format!(r#"{{"id":"{id}"}}"#))
    }

    /// Runs the batcher loop and the upload stage over `docs` until everything is settled.
    async fn run_to_end(
        sinks: Vec<Arc<ScriptedSink>>,
        docs: usize,
        retry: RetryPolicy,
    ) -> Arc<Stats> {
        let stats = Arc::new(Stats::new());
        let buffer = Buffer::new(1 << 20, 2, FullPolicy::DropOldest, Arc::clone(&stats));
        for _ in 0..docs {
            stats.datagram_received(2);
        }
        buffer.push_all((0..docs).map(doc));
        buffer.close();
        let (tx, rx) = mpsc::channel(1);
        let sinks: Sinks = sinks
            .into_iter()
            .map(|s| Box::new(ScriptedHandle(s)) as Box<dyn Sink>)
            .collect::<Vec<_>>()
            .into();
        let uploads = tokio::spawn(run(
            rx,
            sinks,
            UploadSettings {
                concurrency: 2,
                retry,
            },
            Arc::clone(&stats),
            CancellationToken::new(),
        ));
        while let Taken::Batch(batch) = buffer.next_batch(Duration::from_millis(10)).await {
            if tx.send(batch).await.is_err() {
                break;
            }
        }
        drop(tx);
        let _ = uploads.await;
        stats
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_goes_only_to_the_sink_that_failed() {
        let good = ScriptedSink::failing(&[]);
        let flaky = ScriptedSink::failing(&[ErrorKind::Http5xx, ErrorKind::Throttled]);
        let stats = run_to_end(
            vec![Arc::clone(&good), Arc::clone(&flaky)],
            4,
            RetryPolicy::default(),
        )
        .await;
        let snap = stats.snapshot();
        assert_eq!(
            (snap.sent, snap.dropped_total(), snap.unaccounted()),
            (4, 0, 0)
        );
        assert_eq!(snap.backend_errors["http_5xx"], 1);
        assert_eq!(snap.backend_errors["throttled"], 1);
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
    async fn retries_end_at_the_attempt_limit_and_client_errors_are_not_retried() {
        let down = ScriptedSink::failing(&[ErrorKind::ConnectionRefused; 10]);
        let policy = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let snap = run_to_end(vec![Arc::clone(&down)], 2, policy)
            .await
            .snapshot();
        assert_eq!(snap.dropped["retries_exhausted"], 2);
        assert_eq!((snap.retried, snap.unaccounted()), (4, 0));
        assert_eq!(down.calls().len(), 3, "three attempts");

        let refused = ScriptedSink::failing(&[ErrorKind::Http4xx]);
        let snap = run_to_end(vec![Arc::clone(&refused)], 2, policy)
            .await
            .snapshot();
        assert_eq!((snap.dropped["upload_failed"], snap.retried), (2, 0));
        assert_eq!(refused.calls().len(), 1);
    }
}
