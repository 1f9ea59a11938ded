//! The upload stage: batches in, calls to every sink out, each document accounted for.
//!
//! In: [`Batch`]es from the batcher over a bounded channel. Out: calls to the configured
//! [`Sink`]s, at most `concurrency` batches at a time (the original's `Concurrency`, default 8);
//! the next batch is only taken from the channel when a worker is free, so backpressure reaches
//! the buffer, where the memory budget applies.
//!
//! Accounting per document, once the batch is done with: **rejected** if a sink refused it,
//! **sent** if every sink took it, **dropped** (`upload_failed`) when a call failed. The batch's
//! bytes go back to the budget when it is dropped here.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::buffer::Batch;
use crate::sink::Sink;
use crate::stats::Stats;

/// Default number of batches uploaded at once (the original's `Concurrency`).
pub const DEFAULT_CONCURRENCY: usize = 8;

/// The sinks every batch goes to.
pub type Sinks = Arc<[Box<dyn Sink>]>;

/// Runs until the batch channel closes and every upload under way has finished.
pub async fn run(
    mut batches: mpsc::Receiver<Batch>,
    sinks: Sinks,
    concurrency: usize,
    stats: Arc<Stats>,
) {
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut uploads = JoinSet::new();
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let Some(batch) = batches.recv().await else {
            break;
        };
        let (sinks, stats) = (Arc::clone(&sinks), Arc::clone(&stats));
        uploads.spawn(async move {
            deliver(&batch, &sinks, &stats).await;
            drop(slot);
        });
        while uploads.try_join_next().is_some() {}
    }
    while uploads.join_next().await.is_some() {}
}

/// Sends one batch to every sink and accounts for each of its documents.
async fn deliver(batch: &Batch, sinks: &[Box<dyn Sink>], stats: &Stats) {
    let docs = batch.docs();
    let started = Instant::now();
    let mut refused = vec![false; docs.len()];
    // Refusals naming no document of the batch still take one document off the sent count.
    let mut unmatched = 0usize;
    for sink in sinks {
        match sink.send(docs).await {
            Ok(delivery) => {
                for r in delivery.refused {
                    let doc = r.index.and_then(|i| docs.get(i));
                    match r.index {
                        Some(i) if refused[i] => continue, // already counted for another sink
                        Some(i) => refused[i] = true,
                        None => unmatched += 1,
                    }
                    stats.document_rejected(
                        doc.and_then(|d| d.trace_id.as_deref()),
                        r.id.as_deref().or(doc.and_then(|d| d.id.as_deref())),
                        &r.code,
                        &r.message,
                    );
                }
            }
            Err(e) => {
                let lost = (refused.iter().filter(|r| !**r).count()).saturating_sub(unmatched);
                stats.batch_failed(lost as u64, &e);
                return;
            }
        }
    }
    let sent = refused
        .iter()
        .filter(|r| !**r)
        .count()
        .saturating_sub(unmatched) as u64;
    stats.batch_sent(sent);
    tracing::debug!(
        "Sent batch of {} segment(s), {} refused ({:.3} s)",
        docs.len(),
        docs.len() as u64 - sent,
        started.elapsed().as_secs_f64()
    );
}
