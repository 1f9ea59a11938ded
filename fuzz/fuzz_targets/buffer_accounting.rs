//! Fuzzes the buffer's accounting: any sequence of pushes, batches taken and batches finished
//! (sent, rejected, dropped, retried, cut off), and an abandon at any point, must keep
//! `pushed = sent + rejected + dropped + buffered + in_flight` and the budget after every
//! step.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use xray_daemon::buffer::{Batch, Buffer, Fate, FullPolicy};
use xray_daemon::segment::Segment;
use xray_daemon::outcome::DropReason;
use xray_daemon::stats::Stats;

fn fate(byte: u8) -> Fate {
    match byte % 6 {
        0 => Fate::Sent,
        1 => Fate::Rejected,
        2 => Fate::Dropped(DropReason::RetriesExhausted),
        3 => Fate::Dropped(DropReason::UploadFailed),
        _ => Fate::Retry,
    }
}

fuzz_target!(|data: &[u8]| {
    let stats = Arc::new(Stats::new());
    let budget = 4096;
    let buffer = Buffer::new(budget, 4, FullPolicy::DropOldest, Arc::clone(&stats));
    let mut batches: Vec<Batch> = Vec::new();
    let mut pushed = 0u64;
    let mut bytes = data.iter().copied();
    while let Some(op) = bytes.next() {
        let arg = bytes.next().unwrap_or(0);
        match op % 5 {
            0 | 1 => {
                let n = usize::from(arg % 4) + 1;
                let docs = (0..n)
                    .map(|i| Segment::unchecked(vec![b'x'; usize::from(arg) * 8 + i]));
                pushed += n as u64;
                buffer.push_all(docs);
            }
            2 => batches.extend(buffer.take_batch()),
            3 if !batches.is_empty() => {
                let batch = batches.swap_remove(usize::from(arg) % batches.len());
                if arg % 7 == 0 {
                    drop(batch); // cut off without a verdict
                } else {
                    let fates: Vec<Fate> =
                        (0..batch.len()).map(|i| fate(arg.wrapping_add(i as u8))).collect();
                    let states = batch.states().to_vec();
                    let backoff = (arg % 3 == 0).then_some(Duration::from_millis(1));
                    batch.finish(&fates, &states, backoff);
                }
            }
            4 if arg == 0xff => {
                buffer.abandon();
            }
            _ => {}
        }
        let s = stats.snapshot();
        assert_eq!(
            s.sent + s.rejected + s.dropped_total() + s.buffered + s.in_flight,
            pushed,
            "{s:?}"
        );
        assert!(s.buffered_bytes + s.in_flight_bytes <= budget as u64, "{s:?}");
    }
    drop(batches);
    let s = stats.snapshot();
    assert_eq!(s.in_flight, 0);
    assert_eq!(s.sent + s.rejected + s.dropped_total() + s.buffered, pushed);
});
