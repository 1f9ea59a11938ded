//! Buffer → batches. Takes documents from the [`Buffer`] in batches of at most 50 (the
//! PutTraceSegments limit the original uses), each sent when it is full, 1 s after its first
//! document arrived, or at once when input has closed, and hands them to the upload stage over
//! a bounded channel.
//!
//! Backpressure: when every upload worker is busy the channel is full and the batcher waits;
//! documents then wait in the buffer, where the budget and its full-policy apply. The linger
//! timer only runs while a batch is waiting, so an idle daemon does not wake up.
//!
//! 50 documents of at most 64 KiB each stay well within the API's request size, so no byte cap
//! per batch is needed besides the document cap.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::buffer::{Batch, Buffer, Taken};

/// Documents per PutTraceSegments call (the API's and the original's limit).
pub const MAX_BATCH_DOCUMENTS: usize = 50;

/// How long a partial batch waits for more documents (the original's idle flush).
pub const LINGER: Duration = Duration::from_secs(1);

/// Runs until the buffer is closed and empty, then drops `out` (which ends the upload stage).
pub async fn run(buffer: Arc<Buffer>, linger: Duration, out: mpsc::Sender<Batch>) {
    while let Taken::Batch(batch) = buffer.next_batch(linger).await {
        tracing::debug!("Batch of {} segment(s) ready", batch.len());
        if out.send(batch).await.is_err() {
            // The upload stage is gone (shutdown deadline passed); the batch's drop releases it.
            break;
        }
    }
}
