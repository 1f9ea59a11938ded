//! One sink's lane → batches: where a batch is cut, how long a partial batch lingers, and the
//! retry gate that holds batches back after a failed call and then probes with one.
//!
//! In: the items waiting in one lane of the [`Buffer`] (each sink has its own lane and its own
//! batcher, so a slow sink never holds back another), and the outcome of each call from the
//! upload stage as [`CallOver`] reports. Out: [`Batch`]es over a bounded channel to that sink's
//! upload workers.
//!
//! A batch is cut when any of these holds:
//! - `batch_size` items wait (50 for X-Ray: the `PutTraceSegments` limit the original uses);
//! - the first item seen waiting has lingered `linger` (1 s for X-Ray, the original's idle
//!   flush; zero for a local store);
//! - the buffer is closed (shutdown: what is left goes out at once);
//! - the first waiting item is a retry (it has waited enough already).
//!
//! The gate: after a failed call the upload stage reports a backoff ([`CallOver`], over a
//! channel of its own, so neither stage imports the other); no batch is cut before it has passed, and then only one (the probe) until a call comes back
//! without a failure, so a throttled or unreachable endpoint is not hammered by every worker at
//! once. The backoff's length is decided by [`crate::upload::retry`].
//!
//! Aging: items waiting for another attempt are given up (`retries_exhausted`) when
//! `max_age` has passed since their first failure, at that moment ([`Buffer::expire`]), not
//! at their next failed attempt, which a long backoff or a probe at a time would delay.
//!
//! Backpressure: a batch is cut only when an upload slot is free (one permit per call the sink
//! may make at once, [`Handover`]); while every slot is busy, items wait in the buffer, where
//! the budget and its memory rule apply, and count as buffered, not in flight: `in_flight` is
//! exactly what is in calls under way. Timers run only
//! while a batch is waiting, so an idle daemon does not wake up.
//!
//! 50 documents of at most 64 KiB each stay well within the API's request size, so no byte cap
//! per batch is needed besides the document cap.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;

use crate::buffer::{Batch, Buffer};

/// Documents per PutTraceSegments call (the API's and the original's limit).
pub const MAX_BATCH_DOCUMENTS: usize = 50;

/// How long a partial batch waits for more documents (the original's idle flush).
pub const LINGER: Duration = Duration::from_secs(1);

/// How one lane is cut into batches.
#[derive(Clone, Copy, Debug)]
pub struct BatchSettings {
    /// Most items per batch; at least 1.
    pub batch_size: usize,
    /// How long a partial batch waits for more items.
    pub linger: Duration,
    /// How long after its first failed attempt an item waiting for another one is given up
    /// ([`crate::upload::retry::RetryPolicy::max_age`]): checked on time, while it waits.
    pub max_age: Duration,
}

/// A batch handed to the upload stage with the upload slot it was cut under: the call may start
/// at once, and the slot is free again when the permit is dropped (the call is over).
pub type Handover = (Batch, OwnedSemaphorePermit);

/// What the upload stage reports when a call is over: `Some(backoff)` when it failed (or some
/// items are to be retried), `None` when the destination answered. Reported before the batch
/// is settled in the buffer, so the batcher that the settled items wake sees it first.
pub type CallOver = Option<Duration>;

/// Capacity of the channel of [`CallOver`] reports for `concurrency` upload workers: one per
/// batch that can be out at once (in calls, in the batch channel, and being handed over), so
/// reporting never waits.
pub fn reports_capacity(concurrency: usize) -> usize {
    concurrency.max(1) + 2
}

/// The retry gate of one lane, fed by the upload stage's [`CallOver`] reports.
#[derive(Debug, Default)]
struct Gate {
    /// No batch goes out before this (backoff after a failure).
    resume_at: Option<Instant>,
    /// A call failed and none has succeeded since: one batch at a time.
    probing: bool,
    /// Batches cut and not reported back yet.
    out: usize,
}

/// Whether a batch may be cut now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Open {
    /// Yes.
    Now,
    /// Not before this instant (the backoff).
    At(Instant),
    /// Not while the probe is out.
    AfterProbe,
}

impl Gate {
    /// A call is over: with a backoff, hold batches back that long, then probe with one;
    /// without, let batches flow.
    fn call_over(&mut self, backoff: CallOver) {
        self.out = self.out.saturating_sub(1);
        match backoff {
            Some(wait) => {
                let until = Instant::now() + wait;
                self.resume_at = Some(self.resume_at.map_or(until, |t| t.max(until)));
                self.probing = true;
            }
            None => {
                self.resume_at = None;
                self.probing = false;
            }
        }
    }

    fn open(&self, now: Instant) -> Open {
        match self.resume_at {
            Some(t) if t > now => Open::At(t),
            _ if self.probing && self.out > 0 => Open::AfterProbe,
            _ => Open::Now,
        }
    }
}

/// Cuts lane `lane` of `buffer` into batches until the lane is done (closed and empty, nothing
/// out that could come back), then drops `out` (which ends the lane's upload stage). `calls`
/// brings the upload stage's report of each call ([`CallOver`]). `slots` holds one permit per
/// call the upload stage may make at once: a batch is cut only with a permit, which goes
/// along with it and is given back when its call is over.
pub async fn run(
    buffer: Arc<Buffer>,
    lane: usize,
    settings: BatchSettings,
    mut calls: mpsc::Receiver<CallOver>,
    slots: Arc<Semaphore>,
    out: mpsc::Sender<Handover>,
) {
    let batch_size = settings.batch_size.max(1);
    let mut gate = Gate::default();
    // When the batcher first saw the items of the batch it is waiting to cut.
    let mut first_seen: Option<Instant> = None;
    // An upload slot taken for the next batch, and whether the loop waits for one.
    let mut slot: Option<OwnedSemaphorePermit> = None;
    loop {
        let mut wants_slot = false;
        // Reports come before the settled items that wake this loop: read them all first.
        while let Ok(over) = calls.try_recv() {
            gate.call_over(over);
        }
        let now = Instant::now();
        let mut status = buffer.status(lane);
        // Items waiting for another attempt age out on time, not only at their next failure.
        let mut expires_at = None;
        if status.retry_first {
            expires_at = buffer.expire(lane, settings.max_age, now);
            status = buffer.status(lane);
        }
        if status.done {
            return;
        }
        let cut_at = if status.waiting == 0 {
            first_seen = None;
            None
        } else {
            // Lingering counts from when the items were first seen, even behind a closed gate.
            let first = *first_seen.get_or_insert(now);
            match gate.open(now) {
                Open::At(t) => Some(t),
                Open::AfterProbe => None,
                Open::Now => {
                    let due = first + settings.linger;
                    let is_due = status.waiting >= batch_size
                        || status.closed
                        || status.retry_first
                        || now >= due;
                    if is_due && slot.is_none() {
                        slot = Arc::clone(&slots).try_acquire_owned().ok();
                    }
                    match slot.take() {
                        Some(permit) if is_due => {
                            if let Some(batch) = buffer.take(lane, batch_size) {
                                first_seen = None;
                                gate.out += 1;
                                tracing::debug!("Batch of {} segment(s) ready", batch.len());
                                if out.send((batch, permit)).await.is_err() {
                                    // The upload stage is gone (shutdown deadline passed); the
                                    // batch's drop released it.
                                    return;
                                }
                            }
                            continue;
                        }
                        // Every upload slot is busy: the items wait in the buffer (counted as
                        // buffered, not in flight) until a call is over.
                        None if is_due => {
                            wants_slot = true;
                            None
                        }
                        kept => {
                            slot = kept;
                            Some(due)
                        }
                    }
                }
            }
        };
        let wake_at = match (cut_at, expires_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let sleep = async {
            match wake_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = buffer.changed(lane) => {}
            Some(over) = calls.recv() => gate.call_over(over),
            () = sleep => {}
            permit = Arc::clone(&slots).acquire_owned(), if wants_slot => match permit {
                Ok(permit) => slot = Some(permit),
                // Closed: the upload stage is gone.
                Err(_) => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::Fate;
    use crate::buffer::testing::{self, ids, named, push};
    use crate::outcome::DropReason;

    /// Reports the call's end to the batcher, then settles the batch, as the upload stage does.
    fn settle(batch: Batch, calls: &mpsc::Sender<CallOver>, fate: Fate, backoff: CallOver) {
        assert!(calls.try_send(backoff).is_ok());
        testing::settle(batch, fate);
    }

    struct Lane {
        buffer: Arc<Buffer>,
        calls: mpsc::Sender<CallOver>,
        rx: mpsc::Receiver<Handover>,
    }

    fn start(batch_size: usize) -> Lane {
        start_with(batch_size, Duration::from_secs(300))
    }

    fn start_with(batch_size: usize, max_age: Duration) -> Lane {
        let (buffer, _) = testing::buffer(1 << 20, batch_size, &["test"]);
        let (calls, reports) = mpsc::channel(reports_capacity(1));
        let (tx, rx) = mpsc::channel(1);
        let slots = Arc::new(Semaphore::new(8));
        let settings = BatchSettings {
            batch_size,
            linger: LINGER,
            max_age,
        };
        tokio::spawn(run(Arc::clone(&buffer), 0, settings, reports, slots, tx));
        Lane { buffer, calls, rx }
    }

    #[tokio::test(start_paused = true)]
    async fn lingers_for_a_partial_batch_and_cuts_full_ones_at_once() {
        let mut lane = start(2);
        push(&lane.buffer, [named(0)]);
        let start = Instant::now();
        let first = lane.next().await;
        assert_eq!(start.elapsed(), LINGER);
        push(&lane.buffer, (1..4).map(named));
        let start = Instant::now();
        let full = lane.next().await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(
            full.as_ref().map(ids),
            Some(vec!["1".to_owned(), "2".into()])
        );
        lane.buffer.close();
        let last = lane.next().await;
        assert_eq!(start.elapsed(), Duration::ZERO, "closing flushes at once");
        for batch in [first, full, last].into_iter().flatten() {
            settle(batch, &lane.calls, Fate::Sent, None);
        }
        assert!(lane.next().await.is_none(), "the lane is done");
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_failure_waits_out_the_backoff_then_probes_with_one_batch() {
        let mut lane = start(2);
        push(&lane.buffer, (0..2).map(named));
        let Some(first) = lane.next().await else {
            panic!("no batch")
        };
        let start = Instant::now();
        settle(
            first,
            &lane.calls,
            Fate::Retry,
            Some(Duration::from_millis(700)),
        );
        push(&lane.buffer, (2..6).map(named));
        let Some(probe) = lane.next().await else {
            panic!("no batch")
        };
        assert_eq!(start.elapsed(), Duration::from_millis(700));
        assert_eq!(ids(&probe), ["0", "1"], "the retried items go first");
        // While the probe is out, no other batch goes.
        assert!(
            tokio::time::timeout(Duration::from_secs(60), lane.next())
                .await
                .is_err()
        );
        settle(probe, &lane.calls, Fate::Sent, None);
        let next = lane.next().await;
        let after = lane.next().await;
        assert_eq!(
            (next.as_ref().map(ids), after.as_ref().map(ids)),
            (
                Some(vec!["2".to_owned(), "3".into()]),
                Some(vec!["4".to_owned(), "5".into()])
            )
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_lane_waits_for_batches_out_that_may_come_back() {
        let mut lane = start(50);
        push(&lane.buffer, (0..3).map(named));
        lane.buffer.close();
        let Some(batch) = lane.next().await else {
            panic!("no batch")
        };
        settle(batch, &lane.calls, Fate::Retry, None);
        let Some(again) = lane.next().await else {
            panic!("the retried batch comes out again")
        };
        assert_eq!(again.len(), 3);
        settle(again, &lane.calls, Fate::Sent, None);
        assert!(lane.next().await.is_none());
        let snap = lane.buffer_stats();
        assert_eq!((snap.sent, snap.unaccounted()), (3, 0));
    }

    /// Issue "Hold under faults", item 3: with a long backoff, items waiting for another
    /// attempt are given up when `max_age` has passed since their first failure, not at their
    /// next failed attempt; items never tried wait on.
    #[tokio::test(start_paused = true)]
    async fn items_waiting_for_a_retry_age_out_on_time() {
        let max_age = Duration::from_secs(2);
        let mut lane = start_with(2, max_age);
        push(&lane.buffer, (0..2).map(named));
        let Some(first) = lane.next().await else {
            panic!("no batch")
        };
        let failed_at = Instant::now();
        settle(
            first,
            &lane.calls,
            Fate::Retry,
            Some(Duration::from_secs(60)),
        );
        push(&lane.buffer, [named(2)]);
        let given_up = |lane: &Lane| lane.buffer_stats().dropped(DropReason::RetriesExhausted);
        tokio::time::sleep_until(failed_at + max_age - Duration::from_millis(1)).await;
        assert_eq!(given_up(&lane), 0, "not before max_age");
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert_eq!(
            given_up(&lane),
            2,
            "given up at max_age, long before the next attempt"
        );
        let s = lane.buffer_stats();
        assert_eq!((s.buffered, s.sent), (1, 0), "the new item waits: {s:?}");
        // Once the backoff has passed the new item goes out as the probe.
        let Some(probe) = lane.next().await else {
            panic!("no batch")
        };
        assert_eq!(ids(&probe), ["2"]);
        assert_eq!(failed_at.elapsed(), Duration::from_secs(60));
    }

    /// Issue "Ship complete": `in_flight` counted batches waiting for an upload slot. A batch
    /// is now cut only when a slot is free, so what waits for one is `buffered`.
    #[tokio::test(start_paused = true)]
    async fn no_batch_is_cut_while_every_upload_slot_is_busy() {
        let (buffer, stats) = testing::buffer(1 << 20, 2, &["test"]);
        let (calls, reports) = mpsc::channel(reports_capacity(1));
        let (tx, mut rx) = mpsc::channel(1);
        let slots = Arc::new(Semaphore::new(1));
        let settings = BatchSettings {
            batch_size: 2,
            linger: LINGER,
            max_age: Duration::from_secs(300),
        };
        tokio::spawn(run(Arc::clone(&buffer), 0, settings, reports, slots, tx));
        push(&buffer, (0..6).map(named));
        let Some((first, slot)) = rx.recv().await else {
            panic!("no batch")
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        let s = stats.snapshot();
        assert_eq!(
            (s.in_flight, s.buffered),
            (2, 4),
            "only the call under way is in flight"
        );
        assert!(rx.try_recv().is_err(), "no batch waits for a slot");
        assert!(calls.try_send(None).is_ok());
        testing::settle(first, Fate::Sent);
        drop(slot);
        let Some((second, _)) = rx.recv().await else {
            panic!("no batch")
        };
        assert_eq!(ids(&second), ["2", "3"]);
    }

    impl Lane {
        /// The next batch handed over (its upload slot freed at once).
        async fn next(&mut self) -> Option<Batch> {
            self.rx.recv().await.map(|(batch, _slot)| batch)
        }

        fn buffer_stats(&self) -> crate::stats::Snapshot {
            self.buffer.stats().snapshot()
        }
    }
}
