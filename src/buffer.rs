//! The one memory-bounded store of documents between the receiver and the uploads.
//!
//! In: [`Segment`]s pushed by the UDP receiver (a push never waits). Out: [`Batch`]es taken by
//! the batcher. Every document the daemon holds is charged here, from the moment it is pushed
//! until its batch is done with (a [`Batch`] releases its bytes when dropped), so the budget
//! covers documents waiting **and** in flight, and is never exceeded.
//!
//! When a push would go over the budget, the [`FullPolicy`] decides what goes; the default,
//! [`FullPolicy::DropOldest`], drops the oldest waiting documents until the new one fits (fresh
//! traces are worth more than stale ones), or the new one itself if the documents in flight
//! leave no room. Every drop is counted as spillover in [`Stats`].
//!
//! One short mutex section per push batch (the receiver pushes all it read in one wake-up
//! at once) and per batch taken.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use crate::segment::Segment;
use crate::stats::{DropReason, Stats};

/// What to drop when a new document does not fit the budget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FullPolicy {
    /// Drop the oldest waiting documents until the new one fits.
    #[default]
    DropOldest,
    /// Drop the new document.
    DropNewest,
}

/// The bounded store. Shared as `Arc<Buffer>`.
#[derive(Debug)]
pub struct Buffer {
    state: Mutex<State>,
    /// Woken when documents arrive, when a batch fills up, and on close.
    arrived: Notify,
    budget: usize,
    batch_size: usize,
    policy: FullPolicy,
    stats: Arc<Stats>,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Segment>,
    queued_bytes: usize,
    in_flight_docs: usize,
    in_flight_bytes: usize,
    closed: bool,
}

impl State {
    fn held(&self) -> usize {
        self.queued_bytes + self.in_flight_bytes
    }
}

/// Documents taken out of the buffer for one upload. Their bytes stay charged to the budget
/// until the batch is dropped.
#[derive(Debug)]
pub struct Batch {
    docs: Vec<Segment>,
    cost: usize,
    buffer: Arc<Buffer>,
}

impl Batch {
    /// The documents, in arrival order.
    pub fn docs(&self) -> &[Segment] {
        &self.docs
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// True if the batch holds no document.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        let mut s = self.buffer.lock();
        s.in_flight_docs -= self.docs.len();
        s.in_flight_bytes -= self.cost;
        self.buffer.publish(&s);
    }
}

/// What [`Buffer::next_batch`] waits for.
#[derive(Debug)]
pub enum Taken {
    /// A batch to upload.
    Batch(Batch),
    /// The buffer is closed and empty: nothing more will come.
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

    /// The budget in bytes.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Adds documents, dropping per the policy where they do not fit. Never waits.
    pub fn push_all(&self, docs: impl IntoIterator<Item = Segment>) {
        let mut spilled = 0u64;
        let mut s = self.lock();
        let before = s.queue.len();
        for doc in docs {
            let cost = doc.cost();
            if s.closed || cost > self.budget {
                spilled += 1;
                continue;
            }
            if s.held() + cost > self.budget && self.policy == FullPolicy::DropOldest {
                while s.held() + cost > self.budget {
                    let Some(old) = s.queue.pop_front() else {
                        break;
                    };
                    s.queued_bytes -= old.cost();
                    spilled += 1;
                }
            }
            if s.held() + cost > self.budget {
                spilled += 1;
                continue;
            }
            s.queued_bytes += cost;
            s.queue.push_back(doc);
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
    /// first document of a batch was seen, or at once when the buffer is closed (then partial
    /// batches go out until it is empty).
    pub async fn next_batch(self: &Arc<Self>, linger: Duration) -> Taken {
        // Wait for the first document.
        loop {
            let notified = self.arrived.notified();
            {
                let s = self.lock();
                if !s.queue.is_empty() {
                    break;
                }
                if s.closed {
                    return Taken::Closed;
                }
            }
            notified.await;
        }
        // Then for a full batch, the linger deadline, or close.
        let deadline = tokio::time::Instant::now() + linger;
        loop {
            let notified = self.arrived.notified();
            {
                let s = self.lock();
                if s.queue.len() >= self.batch_size || s.closed {
                    break;
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        self.take_batch().map_or(Taken::Closed, Taken::Batch)
    }

    /// Takes up to `batch_size` documents now, if any wait.
    pub fn take_batch(self: &Arc<Self>) -> Option<Batch> {
        let mut s = self.lock();
        let n = s.queue.len().min(self.batch_size);
        if n == 0 {
            return None;
        }
        let docs: Vec<Segment> = s.queue.drain(..n).collect();
        let cost = docs.iter().map(Segment::cost).sum();
        s.queued_bytes -= cost;
        s.in_flight_docs += n;
        s.in_flight_bytes += cost;
        self.publish(&s);
        Some(Batch {
            docs,
            cost,
            buffer: Arc::clone(self),
        })
    }

    /// Stops accepting documents; waiting batchers hand out what is left, then see
    /// [`Taken::Closed`].
    pub fn close(&self) {
        self.lock().closed = true;
        self.arrived.notify_waiters();
        self.arrived.notify_one();
    }

    /// Drops every waiting document, counting them under `reason`; returns how many.
    pub fn discard_waiting(&self, reason: DropReason) -> u64 {
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
    use bytes::Bytes;

    fn doc(n: usize) -> Segment {
        Segment {
            body: Bytes::from(vec![b'x'; n]),
            trace_id: None,
            id: None,
        }
    }

    #[test]
    fn never_exceeds_the_budget_and_drops_oldest() {
        let stats = Arc::new(Stats::new());
        let one = Segment {
            id: Some("0".into()),
            ..doc(100)
        }
        .cost();
        let b = Buffer::new(one * 3, 50, FullPolicy::DropOldest, stats.clone());
        b.push_all((0..5).map(|i| {
            let mut d = doc(100);
            d.id = Some(i.to_string().into());
            d
        }));
        let snap = stats.snapshot();
        assert_eq!(snap.buffered, 3);
        assert_eq!(snap.dropped["spillover"], 2);
        assert!(snap.buffered_bytes <= (one * 3) as u64);
        let batch = b
            .take_batch()
            .map(|b| b.docs().iter().map(|d| d.id.clone()).collect::<Vec<_>>());
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
        assert!(matches!(
            b.next_batch(Duration::from_secs(1)).await,
            Taken::Closed
        ));
    }
}
