//! The one memory-bounded store of documents between the receiver and the uploads.
//!
//! In: [`Segment`]s pushed by the UDP receiver (a push never waits), and documents the upload
//! stage puts back for another attempt ([`Batch::finish`]). Out: [`Batch`]es taken by the
//! batcher. Every document the daemon holds is charged here, from the moment it is pushed
//! until its batch is finished, so the budget covers documents waiting **and** in flight, and
//! is never exceeded.
//!
//! When a push would go over the budget, the [`FullPolicy`] decides what goes; the default,
//! [`FullPolicy::DropOldest`], drops the oldest waiting documents until the new one fits (fresh
//! traces are worth more than stale ones), or the new one itself if the documents in flight
//! leave no room. Every drop is counted as spillover in [`Stats`].
//!
//! Retries: a batch whose upload failed puts the documents worth another attempt back at the
//! front of the queue, in arrival order, with their [`DocState`] (attempts so far). Their bytes
//! stay charged all along, so a retry never needs room; and when the endpoint stays down and
//! new documents keep coming, the oldest (the ones being retried) are the first to spill over.
//! After a failure the buffer holds further batches back until the backoff has passed, then
//! lets one batch out as a probe, and more only once a batch comes back without a failure, so
//! a throttled or unreachable endpoint is not hammered by every worker at once.
//!
//! Accounting: a document is always in exactly one place: waiting (`buffered`), in a batch
//! (`in_flight`), or counted as sent, rejected or dropped. Each move happens under the buffer's
//! lock and inside one [`Stats::books`] transaction, so a stats snapshot never sees a document
//! in two places or in none. A [`Batch`] dropped without [`Batch::finish`] (an upload task cut
//! off at the shutdown deadline) counts its documents as dropped when it goes.
//!
//! One short mutex section per push batch (the receiver pushes all it read in one wake-up
//! at once) and per batch taken or finished.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::segment::Segment;
use crate::outcome::DropReason;
use crate::stats::Stats;

/// What to drop when a new document does not fit the budget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FullPolicy {
    /// Drop the oldest waiting documents until the new one fits.
    #[default]
    DropOldest,
    /// Drop the new document.
    DropNewest,
}

/// What the upload stage remembers about a document across attempts. Fresh documents have
/// the default (no attempt yet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DocState {
    /// Attempts made so far (each one failed, or the document would not be back).
    pub attempts: u32,
    /// When the first attempt failed.
    pub first_failure: Option<Instant>,
    /// Bit `i` set: sink `i` has taken (or finally refused) the document; it is not sent there
    /// again.
    pub done_sinks: u32,
    /// A sink refused the document for good.
    pub refused: bool,
}

/// What became of one document of a finished batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Delivered: counted as sent.
    Sent,
    /// Refused for good by a destination: counted as rejected.
    Rejected,
    /// Given up: counted as dropped for this reason.
    Dropped(DropReason),
    /// Back to the front of the queue for another attempt.
    Retry,
}

/// The bounded store. Shared as `Arc<Buffer>`.
#[derive(Debug)]
pub struct Buffer {
    state: Mutex<State>,
    /// Woken when documents arrive, when a batch fills up, when a batch is finished, and on
    /// close.
    arrived: Notify,
    budget: usize,
    batch_size: usize,
    policy: FullPolicy,
    stats: Arc<Stats>,
}

#[derive(Debug)]
struct Queued {
    doc: Segment,
    /// Arrival order, kept when a document is put back.
    seq: u64,
    state: DocState,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Queued>,
    queued_bytes: usize,
    next_seq: u64,
    in_flight_docs: usize,
    in_flight_bytes: usize,
    in_flight_batches: usize,
    /// No batch goes out before this (backoff after a failure).
    resume_at: Option<Instant>,
    /// An upload failed and none has succeeded since: one batch at a time.
    probing: bool,
    closed: bool,
    /// The shutdown deadline passed: nothing more goes out; what comes back is dropped.
    abandoned: bool,
}

impl State {
    fn held(&self) -> usize {
        self.queued_bytes + self.in_flight_bytes
    }
}

/// Documents taken out of the buffer for one upload. Their bytes stay charged to the budget
/// until the batch is finished (or dropped).
#[derive(Debug)]
pub struct Batch {
    docs: Vec<Segment>,
    seqs: Vec<u64>,
    states: Vec<DocState>,
    cost: usize,
    buffer: Arc<Buffer>,
    finished: bool,
}

impl Batch {
    /// The documents, in arrival order.
    pub fn docs(&self) -> &[Segment] {
        &self.docs
    }

    /// Each document's retry state, in the order of [`Self::docs`].
    pub fn states(&self) -> &[DocState] {
        &self.states
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// True if the batch holds no document.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// Settles every document at once: counts the sent, rejected and dropped ones, and puts
    /// those to retry back at the front of the queue with their new `states` (same order as
    /// [`Self::docs`]). With `backoff` (the call failed), no batch goes out before it has
    /// passed, and then only one at a time until a batch is finished without one (the endpoint
    /// answers again). A missing fate counts as dropped (`upload_failed`).
    pub fn finish(self, fates: &[Fate], states: &[DocState], backoff: Option<Duration>) {
        let gate = match backoff {
            Some(wait) => Gate::Hold(wait),
            None => Gate::Open,
        };
        self.settle(fates, states, gate);
    }

    fn settle(mut self, fates: &[Fate], states: &[DocState], gate: Gate) {
        self.finished = true;
        let buffer = Arc::clone(&self.buffer);
        let stats = &buffer.stats;
        let _books = stats.books();
        let (mut sent, mut rejected, mut failed, mut exhausted, mut shutdown) = (0, 0, 0, 0, 0);
        let mut s = buffer.lock();
        let abandoned = s.abandoned;
        let mut retried = 0u64;
        let docs = std::mem::take(&mut self.docs);
        for (i, doc) in docs.into_iter().enumerate() {
            let fate = match fates.get(i).copied() {
                Some(Fate::Retry) if abandoned => Fate::Dropped(DropReason::Shutdown),
                Some(fate) => fate,
                None => Fate::Dropped(DropReason::UploadFailed),
            };
            if let Fate::Dropped(reason) = fate {
                // Which segments were lost, for an operator who needs to know (never the body).
                if tracing::enabled!(tracing::Level::DEBUG) {
                    let ids = doc.ids();
                    tracing::debug!(
                        "Lost segment {} of trace {} ({})",
                        ids.id.as_deref().unwrap_or("(no id)"),
                        ids.trace_id.as_deref().unwrap_or("(no trace id)"),
                        reason.as_str()
                    );
                }
            }
            match fate {
                Fate::Sent => sent += 1,
                Fate::Rejected => rejected += 1,
                Fate::Dropped(DropReason::RetriesExhausted) => exhausted += 1,
                Fate::Dropped(DropReason::Shutdown) => shutdown += 1,
                Fate::Dropped(_) => failed += 1,
                Fate::Retry => {
                    let seq = self.seqs[i];
                    let state = states
                        .get(i)
                        .or(self.states.get(i))
                        .copied()
                        .unwrap_or_default();
                    let at = s.queue.partition_point(|q| q.seq < seq);
                    s.queued_bytes += doc.cost();
                    s.queue.insert(at, Queued { doc, seq, state });
                    retried += 1;
                }
            }
        }
        s.in_flight_docs -= self.seqs.len();
        s.in_flight_bytes -= self.cost;
        s.in_flight_batches -= 1;
        match gate {
            Gate::Hold(wait) => {
                let until = Instant::now() + wait;
                s.resume_at = Some(s.resume_at.map_or(until, |t| t.max(until)));
                s.probing = true;
            }
            Gate::Open => {
                s.resume_at = None;
                s.probing = false;
            }
            Gate::Keep => {}
        }
        buffer.publish(&s);
        drop(s);
        // A call that X-Ray answered succeeded, even if it refused every document: it also
        // ends an upload failure streak (what `xray health --max-upload-failure` watches).
        if sent > 0 || rejected > 0 {
            stats.batch_sent(sent);
        }
        stats.documents_rejected(rejected);
        stats.documents_retried(retried);
        stats.documents_dropped(DropReason::UploadFailed, failed);
        stats.documents_dropped(DropReason::RetriesExhausted, exhausted);
        stats.documents_dropped(DropReason::Shutdown, shutdown);
        buffer.arrived.notify_one();
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Not finished: its upload was cut off (shutdown deadline) or lost (a bug). Either way
        // its documents are gone; count them.
        let abandoned = self.buffer.lock().abandoned;
        let reason = if abandoned {
            DropReason::Shutdown
        } else {
            tracing::error!(
                "A batch of {} segment(s) was dropped before its upload finished",
                self.docs.len()
            );
            DropReason::UploadFailed
        };
        let fates = vec![Fate::Dropped(reason); self.docs.len()];
        let batch = Batch {
            docs: std::mem::take(&mut self.docs),
            seqs: std::mem::take(&mut self.seqs),
            states: Vec::new(),
            cost: self.cost,
            buffer: Arc::clone(&self.buffer),
            finished: false,
        };
        self.finished = true;
        batch.settle(&fates, &[], Gate::Keep);
    }
}

/// What a finished batch does to the flow of batches.
#[derive(Clone, Copy, Debug)]
enum Gate {
    /// The call failed: hold batches back this long, then probe with one.
    Hold(Duration),
    /// The endpoint answered: let batches flow.
    Open,
    /// Say nothing (a batch cut off at shutdown).
    Keep,
}

/// Queue slots kept when the queue empties; a larger queue left by a backlog is shrunk to this.
const SHRINK_ABOVE: usize = 4096;

/// What [`Buffer::next_batch`] waits for.
#[derive(Debug)]
pub enum Taken {
    /// A batch to upload.
    Batch(Batch),
    /// The buffer is closed, empty and nothing is in flight (or it was abandoned): nothing
    /// more will come.
    Closed,
}

impl Buffer {
    /// A buffer holding at most `budget` bytes (see [`Segment::cost`]) that hands out batches of
    /// at most `batch_size` documents.
    pub fn new(
        budget: usize,
        batch_size: usize,
        policy: FullPolicy,
        stats: Arc<Stats>,
    ) -> Arc<Self> {
        stats.set_budget(budget);
        Arc::new(Buffer {
            state: Mutex::new(State::default()),
            arrived: Notify::new(),
            budget,
            batch_size: batch_size.max(1),
            policy,
            stats,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock would be a bug in this module; the state is still
        // consistent counters, so carry on with it rather than poison the whole daemon.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, s: &State) {
        self.stats.set_buffered(s.queue.len(), s.queued_bytes);
        self.stats
            .set_in_flight(s.in_flight_docs, s.in_flight_bytes);
    }

    /// Adds documents, dropping per the policy where they do not fit. Never waits.
    pub fn push_all(&self, docs: impl IntoIterator<Item = Segment>) {
        let _books = self.stats.books();
        let mut spilled = 0u64;
        let mut s = self.lock();
        let before = s.queue.len();
        for doc in docs {
            let cost = doc.cost();
            if s.closed || cost > self.budget {
                spilled += 1;
                continue;
            }
            // Evicting waiting documents only helps when the ones in flight leave room.
            if s.held() + cost > self.budget
                && s.in_flight_bytes + cost <= self.budget
                && self.policy == FullPolicy::DropOldest
            {
                while s.held() + cost > self.budget {
                    let Some(old) = s.queue.pop_front() else {
                        break;
                    };
                    s.queued_bytes -= old.doc.cost();
                    spilled += 1;
                }
            }
            if s.held() + cost > self.budget {
                spilled += 1;
                continue;
            }
            let seq = s.next_seq;
            s.next_seq += 1;
            s.queued_bytes += cost;
            s.queue.push_back(Queued {
                doc,
                seq,
                state: DocState::default(),
            });
        }
        let after = s.queue.len();
        self.publish(&s);
        drop(s);
        if (before == 0 && after > 0) || (before < self.batch_size && after >= self.batch_size) {
            self.arrived.notify_one();
        }
        self.stats.documents_dropped(DropReason::Spillover, spilled);
    }

    /// Waits for the next batch: as soon as `batch_size` documents wait, or `linger` after the
    /// first document of a batch was seen, or at once when the buffer is closed or the first
    /// document is a retry (then partial batches go out until it is empty). After a failed
    /// upload it first waits out the backoff, and for the probe batch to come back.
    pub async fn next_batch(self: &Arc<Self>, linger: Duration) -> Taken {
        // Wait for a document that may go out now.
        loop {
            let notified = self.arrived.notified();
            let resume_at = {
                let s = self.lock();
                if s.abandoned || (s.closed && s.queue.is_empty() && s.in_flight_batches == 0) {
                    return Taken::Closed;
                }
                if s.queue.is_empty() || (s.probing && s.in_flight_batches > 0) {
                    None
                } else {
                    match s.resume_at {
                        Some(t) if t > Instant::now() => Some(t),
                        _ => break,
                    }
                }
            };
            match resume_at {
                Some(t) => {
                    let _ = tokio::time::timeout_at(t, notified).await;
                }
                None => notified.await,
            }
        }
        // Then for a full batch, the linger deadline, or close.
        let deadline = Instant::now() + linger;
        loop {
            let notified = self.arrived.notified();
            {
                let s = self.lock();
                let retrying = s.queue.front().is_some_and(|q| q.state.attempts > 0);
                if s.queue.len() >= self.batch_size || s.closed || retrying {
                    break;
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        self.take_batch().map_or(Taken::Closed, Taken::Batch)
    }

    /// Takes up to `batch_size` documents now, if any wait (none once abandoned).
    pub fn take_batch(self: &Arc<Self>) -> Option<Batch> {
        let _books = self.stats.books();
        let mut s = self.lock();
        let n = s.queue.len().min(self.batch_size);
        if n == 0 || s.abandoned {
            return None;
        }
        let mut docs = Vec::with_capacity(n);
        let mut seqs = Vec::with_capacity(n);
        let mut states = Vec::with_capacity(n);
        let mut cost = 0;
        for q in s.queue.drain(..n) {
            cost += q.doc.cost();
            docs.push(q.doc);
            seqs.push(q.seq);
            states.push(q.state);
        }
        s.queued_bytes -= cost;
        if s.queue.is_empty() && s.queue.capacity() > SHRINK_ABOVE {
            // A backlog is gone: give its slots back (nothing to move in an empty queue).
            s.queue.shrink_to(SHRINK_ABOVE);
        }
        s.in_flight_docs += n;
        s.in_flight_bytes += cost;
        s.in_flight_batches += 1;
        self.publish(&s);
        Some(Batch {
            docs,
            seqs,
            states,
            cost,
            buffer: Arc::clone(self),
            finished: false,
        })
    }

    /// Stops accepting documents; waiting batchers hand out what is left (retries included),
    /// then see [`Taken::Closed`].
    pub fn close(&self) {
        self.lock().closed = true;
        self.arrived.notify_waiters();
        self.arrived.notify_one();
    }

    /// The shutdown deadline passed: drops every waiting document (counted as `shutdown`),
    /// hands out no more batches, and counts documents of batches still in flight as
    /// `shutdown` when they come back. Returns how many were waiting.
    pub fn abandon(&self) -> u64 {
        {
            let mut s = self.lock();
            s.closed = true;
            s.abandoned = true;
        }
        let discarded = self.discard_waiting(DropReason::Shutdown);
        self.arrived.notify_waiters();
        self.arrived.notify_one();
        discarded
    }

    /// Drops every waiting document, counting them under `reason`; returns how many.
    pub fn discard_waiting(&self, reason: DropReason) -> u64 {
        let _books = self.stats.books();
        let mut s = self.lock();
        let n = s.queue.len() as u64;
        s.queue.clear();
        s.queued_bytes = 0;
        self.publish(&s);
        drop(s);
        self.stats.documents_dropped(reason, n);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(n: usize) -> Segment {
        Segment::unchecked(vec![b'x'; n])
    }

    /// A document of `n` bytes whose `id` is `id`.
    fn doc_with_id(id: &str, n: usize) -> Segment {
        let head = format!(r#"{{"id":"{id}","pad":""#);
        let pad = n.saturating_sub(head.len() + 2);
        Segment::unchecked(format!("{head}{}\"}}", "x".repeat(pad)))
    }

    #[test]
    fn never_exceeds_the_budget_and_drops_oldest() {
        let stats = Arc::new(Stats::new());
        let one = doc_with_id("0", 100).cost();
        let b = Buffer::new(one * 3, 50, FullPolicy::DropOldest, stats.clone());
        b.push_all((0..5).map(|i| doc_with_id(&i.to_string(), 100)));
        let snap = stats.snapshot();
        assert_eq!(snap.buffered, 3);
        assert_eq!(snap.dropped["spillover"], 2);
        assert!(snap.buffered_bytes <= (one * 3) as u64);
        let batch = b
            .take_batch()
            .map(|b| b.docs().iter().map(|d| d.ids().id).collect::<Vec<_>>());
        assert_eq!(
            batch,
            Some(vec![Some("2".into()), Some("3".into()), Some("4".into())])
        );
    }

    #[test]
    fn in_flight_bytes_count_until_the_batch_is_dropped() {
        let stats = Arc::new(Stats::new());
        let one = doc(100).cost();
        let b = Buffer::new(one * 2, 50, FullPolicy::DropOldest, stats.clone());
        b.push_all([doc(100), doc(100)]);
        let batch = b.take_batch();
        b.push_all([doc(100)]);
        assert_eq!(
            stats.snapshot().dropped["spillover"],
            1,
            "no room while two are in flight"
        );
        drop(batch);
        b.push_all([doc(100)]);
        assert_eq!(stats.snapshot().buffered, 1);
        assert_eq!(stats.snapshot().in_flight, 0);
    }

    #[test]
    fn waiting_documents_are_not_evicted_when_that_cannot_make_room() {
        // Regression: with the budget taken by documents in flight, a bigger newcomer used to
        // evict every waiting document and then be dropped itself.
        let stats = Arc::new(Stats::new());
        let small = doc(100).cost();
        let b = Buffer::new(small * 4, 2, FullPolicy::DropOldest, stats.clone());
        b.push_all([doc(100), doc(100)]);
        let batch = b.take_batch();
        b.push_all([doc(100), doc(100)]);
        b.push_all([doc(small * 3)]);
        let snap = stats.snapshot();
        assert_eq!(
            (snap.buffered, snap.dropped["spillover"]),
            (2, 1),
            "{snap:?}"
        );
        drop(batch);
    }

    #[tokio::test(start_paused = true)]
    async fn lingers_for_a_partial_batch_and_returns_full_ones_at_once() {
        let stats = Arc::new(Stats::new());
        let b = Buffer::new(1 << 20, 2, FullPolicy::DropOldest, stats);
        b.push_all([doc(1)]);
        let start = tokio::time::Instant::now();
        let Taken::Batch(first) = b.next_batch(Duration::from_secs(1)).await else {
            panic!("closed")
        };
        assert_eq!(first.len(), 1);
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        b.push_all([doc(1), doc(1), doc(1)]);
        let start = tokio::time::Instant::now();
        let Taken::Batch(full) = b.next_batch(Duration::from_secs(1)).await else {
            panic!("closed")
        };
        assert_eq!((full.len(), start.elapsed()), (2, Duration::ZERO));
        b.close();
        let Taken::Batch(last) = b.next_batch(Duration::from_secs(1)).await else {
            panic!("closed")
        };
        assert_eq!((last.len(), start.elapsed()), (1, Duration::ZERO));
        for batch in [first, full, last] {
            settle(batch, Fate::Sent, None);
        }
        assert!(matches!(
            b.next_batch(Duration::from_secs(1)).await,
            Taken::Closed
        ));
    }

    fn take(b: &Arc<Buffer>) -> Batch {
        match b.take_batch() {
            Some(batch) => batch,
            None => panic!("no batch"),
        }
    }

    fn settle(batch: Batch, fate: Fate, backoff: Option<Duration>) {
        let fates = vec![fate; batch.len()];
        let states: Vec<DocState> = batch
            .states()
            .iter()
            .map(|s| DocState {
                attempts: s.attempts + 1,
                ..*s
            })
            .collect();
        batch.finish(&fates, &states, backoff);
    }

    fn named(id: usize) -> Segment {
        doc_with_id(&id.to_string(), 100)
    }

    fn ids(batch: &Batch) -> Vec<String> {
        batch
            .docs()
            .iter()
            .map(|d| d.ids().id.as_deref().unwrap_or("-").to_owned())
            .collect()
    }

    /// pushed = sent + rejected + dropped + buffered + in_flight.
    fn assert_identity(stats: &Stats, pushed: u64) {
        let s = stats.snapshot();
        assert_eq!(
            s.sent + s.rejected + s.dropped_total() + s.buffered + s.in_flight,
            pushed,
            "{s:?}"
        );
    }

    #[test]
    fn a_retried_batch_goes_back_to_the_front_in_order_and_stays_charged() {
        let stats = Arc::new(Stats::new());
        let b = Buffer::new(1 << 20, 2, FullPolicy::DropOldest, stats.clone());
        b.push_all((0..5).map(named));
        let first = take(&b);
        let second = take(&b);
        let held = stats.snapshot().buffered_bytes + stats.snapshot().in_flight_bytes;
        settle(second, Fate::Retry, None);
        settle(first, Fate::Retry, None);
        let snap = stats.snapshot();
        assert_eq!((snap.buffered, snap.in_flight, snap.retried), (5, 0, 4));
        assert_eq!(snap.buffered_bytes, held, "bytes charged all along");
        assert_identity(&stats, 5);
        let again = take(&b);
        assert_eq!(ids(&again), ["0", "1"]);
        assert_eq!(again.states()[0].attempts, 1);
        settle(again, Fate::Sent, None);
        assert_eq!(stats.snapshot().sent, 2);
        assert_identity(&stats, 5);
    }

    #[test]
    fn documents_being_retried_are_the_first_to_spill_over() {
        let stats = Arc::new(Stats::new());
        let one = named(0).cost();
        let b = Buffer::new(one * 3, 2, FullPolicy::DropOldest, stats.clone());
        b.push_all((0..2).map(named));
        let batch = take(&b);
        b.push_all([named(2)]);
        settle(batch, Fate::Retry, None);
        b.push_all([named(3), named(4)]);
        let snap = stats.snapshot();
        assert_eq!(snap.dropped["spillover"], 2);
        let left = take(&b);
        assert_eq!(ids(&left), ["2", "3"]);
        drop(left);
        assert_identity(&stats, 5);
    }

    #[test]
    fn every_fate_is_counted_once() {
        let stats = Arc::new(Stats::new());
        let b = Buffer::new(1 << 20, 5, FullPolicy::DropOldest, stats.clone());
        b.push_all((0..5).map(named));
        let batch = take(&b);
        let states = batch.states().to_vec();
        batch.finish(
            &[
                Fate::Sent,
                Fate::Rejected,
                Fate::Dropped(DropReason::RetriesExhausted),
                Fate::Dropped(DropReason::UploadFailed),
                Fate::Retry,
            ],
            &states,
            None,
        );
        let snap = stats.snapshot();
        assert_eq!((snap.sent, snap.rejected, snap.buffered), (1, 1, 1));
        assert_eq!(snap.dropped["retries_exhausted"], 1);
        assert_eq!(snap.dropped["upload_failed"], 1);
        assert_identity(&stats, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_failure_waits_out_the_backoff_then_probes_with_one_batch() {
        let stats = Arc::new(Stats::new());
        let b = Buffer::new(1 << 20, 2, FullPolicy::DropOldest, stats.clone());
        b.push_all((0..6).map(named));
        let linger = Duration::from_secs(1);
        let Taken::Batch(first) = b.next_batch(linger).await else {
            panic!("closed")
        };
        let start = tokio::time::Instant::now();
        settle(first, Fate::Retry, Some(Duration::from_millis(700)));
        let Taken::Batch(probe) = b.next_batch(linger).await else {
            panic!("closed")
        };
        assert_eq!(start.elapsed(), Duration::from_millis(700));
        assert_eq!(ids(&probe), ["0", "1"], "the retried documents go first");
        // While the probe is out, no other batch goes.
        assert!(
            tokio::time::timeout(Duration::from_secs(60), b.next_batch(linger))
                .await
                .is_err()
        );
        settle(probe, Fate::Sent, None);
        let Taken::Batch(next) = b.next_batch(linger).await else {
            panic!("closed")
        };
        let Taken::Batch(after) = b.next_batch(linger).await else {
            panic!("closed")
        };
        assert_eq!(
            (ids(&next), ids(&after)),
            (
                vec!["2".to_owned(), "3".into()],
                vec!["4".to_owned(), "5".into()]
            )
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_buffer_waits_for_batches_in_flight_that_may_come_back() {
        let stats = Arc::new(Stats::new());
        let b = Buffer::new(1 << 20, 50, FullPolicy::DropOldest, stats.clone());
        b.push_all((0..3).map(named));
        b.close();
        let linger = Duration::from_secs(1);
        let Taken::Batch(batch) = b.next_batch(linger).await else {
            panic!("closed")
        };
        let waiter = {
            let b = Arc::clone(&b);
            tokio::spawn(async move { b.next_batch(linger).await })
        };
        tokio::task::yield_now().await;
        settle(batch, Fate::Retry, None);
        let Ok(Taken::Batch(again)) = waiter.await else {
            panic!("the retried batch comes out again")
        };
        assert_eq!(again.len(), 3);
        settle(again, Fate::Sent, None);
        assert!(matches!(b.next_batch(linger).await, Taken::Closed));
        assert_identity(&stats, 3);
    }

    #[test]
    fn abandoning_counts_waiting_and_in_flight_documents_as_shutdown() {
        let stats = Arc::new(Stats::new());
        let b = Buffer::new(1 << 20, 2, FullPolicy::DropOldest, stats.clone());
        b.push_all((0..5).map(named));
        let cut_off = take(&b);
        let comes_back = take(&b);
        assert_eq!(b.abandon(), 1);
        drop(cut_off);
        settle(comes_back, Fate::Retry, None);
        let snap = stats.snapshot();
        assert_eq!(snap.dropped["shutdown"], 5);
        assert_eq!((snap.buffered, snap.in_flight), (0, 0));
        assert!(b.take_batch().is_none());
        assert_identity(&stats, 5);
    }
}
