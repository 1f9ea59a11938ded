//! Fuzzes the buffer's accounting: any sequence of intakes (accepted and refused units), batches
//! taken from any of three lanes and settled (sent, rejected, dropped, retried, cut off), and an
//! abandon at any point, must keep every identity of the stats snapshot (over all, per input,
//! per sink) and the budget after every step.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use xray_daemon::buffer::{Batch, Buffer, Fate, FullPolicy, Intake, LaneSettings};
use xray_daemon::document::Document;
use xray_daemon::item::{Input, Item};
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
    let budget = 8192;
    let lanes = usize::from(data.first().copied().unwrap_or(0) % 3) + 1;
    let buffer = Buffer::new(
        budget,
        (0..lanes)
            .map(|i| LaneSettings {
                name: format!("sink{i}"),
                batch_size: 4,
            })
            .collect(),
        FullPolicy::DropOldest,
        Arc::clone(&stats),
    );
    let mut batches: Vec<Batch> = Vec::new();
    let mut intake = Intake::new(Input::Udp, 8);
    let mut bytes = data.iter().copied().skip(1);
    while let Some(op) = bytes.next() {
        let arg = bytes.next().unwrap_or(0);
        match op % 5 {
            0 | 1 => {
                let n = usize::from(arg % 4) + 1;
                for i in 0..n {
                    let body = vec![b'x'; usize::from(arg) * 8 + i];
                    intake.received(body.len());
                    if arg % 11 == 0 {
                        intake.refused(DropReason::InvalidBody);
                    } else {
                        intake.accepted(Item::XrayDocument(Document::unchecked(body)));
                    }
                }
                buffer.admit(&mut intake);
            }
            2 => batches.extend(buffer.take(usize::from(arg) % lanes, 4)),
            3 if !batches.is_empty() => {
                let batch = batches.swap_remove(usize::from(arg) % batches.len());
                if arg % 7 == 0 {
                    drop(batch); // cut off without a verdict
                } else {
                    let fates: Vec<Fate> = (0..batch.len())
                        .map(|i| fate(arg.wrapping_add(i as u8)))
                        .collect();
                    let states = batch.states().to_vec();
                    batch.finish(&fates, &states);
                }
            }
            4 if arg == 0xff => {
                buffer.abandon();
            }
            _ => {}
        }
        let s = stats.snapshot();
        assert!(s.broken_identities().is_empty(), "{s:?}");
        assert!(
            s.buffered_bytes + s.in_flight_bytes <= budget as u64,
            "{s:?}"
        );
        assert_eq!(s.buffered_bytes + s.in_flight_bytes, buffer.held_bytes());
    }
    drop(batches);
    let s = stats.snapshot();
    assert_eq!(s.in_flight, 0);
    assert!(s.broken_identities().is_empty(), "{s:?}");
});
