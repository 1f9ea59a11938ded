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
use crate::stats::{DropReason, Stats};

/// Default number of batches uploaded at once (the original's `Concurrency`).
pub const DEFAULT_CONCURRENCY: usize = 8;

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
    let mut last_failure: Option<(crate::sink::ErrorKind, String)> = None;
    for (si, sink) in shared.sinks.iter().enumerate().take(32) {
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
                        shared.stats.log_refusal(
                            docs[i].trace_id.as_deref(),
                            docs[i].id.as_deref(),
                            &r.code,
                            &r.message,
                            true,
                        );
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
                            .find(|&&i| docs[i].id.is_none())
                            .or_else(|| pending.iter().rfind(|i| !states[**i].refused))
                            .copied()
                    });
                    if let Some(i) = i {
                        states[i].refused = true;
                    }
                    let doc = i.map(|i| &docs[i]);
                    shared.stats.log_refusal(
                        doc.and_then(|d| d.trace_id.as_deref()),
                        r.id.as_deref().or(doc.and_then(|d| d.id.as_deref())),
                        &r.code,
                        &r.message,
                        false,
                    );
                }
            }
            (Verdict::Retry(kind), Err(e)) => {
                // Logged below, once the backoff is known.
                last_failure = Some((kind, e.to_string()));
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
    let backoff = if last_failure.is_some() || to_retry > 0 {
        let failures = shared.failures.fetch_add(1, Ordering::Relaxed) + 1;
        Some(retry::backoff(&shared.retry, failures, jitter()))
    } else {
        shared.failures.store(0, Ordering::Relaxed);
        None
    };
    if let Some((kind, error)) = &last_failure {
        shared.stats.call_failed(
            n as u64,
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
