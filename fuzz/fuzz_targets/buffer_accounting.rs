//! Fuzzes the buffer's accounting: any sequence of intakes (accepted and refused units, X-Ray
//! documents over UDP and spans over OTLP), batches taken from any of three lanes and settled
//! (sent, rejected, dropped, retried, cut off), and an abandon at any point, must keep every
//! identity of the stats snapshot (over all, per input, per sink) and the budget after every
//! step; also when the first two lanes split the kinds between them (`--otlp-to-xray otlp`).
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use xray_daemon::buffer::{Batch, Buffer, Fate, FullPolicy, Intake, LaneSettings, Takes};
use xray_daemon::document::Document;
use xray_daemon::item::{Input, Item, SpanItem};
use xray_daemon::otlp::proto::Span;
use xray_daemon::otlp::span::SpanRecord;
use xray_daemon::outcome::DropReason;
use xray_daemon::stats::Stats;

fn fate(byte: u8) -> Fate {
    match byte % 6 {
        0 => Fate::Sent,
        1 => Fate::Rejected,
        2 => Fate::Dropped(DropReason::RetriesExhausted),
        3 => Fate::Dropped(DropReason::UploadFailed),
        4 => Fate::Dropped(DropReason::OutsideTimeWindow),
        _ => Fate::Retry,
    }
}

fuzz_target!(|data: &[u8]| {
    let stats = Arc::new(Stats::new());
    let budget = 8192;
    let first = data.first().copied().unwrap_or(0);
    let lanes = usize::from(first % 3) + 1;
    // With the 0x80 bit, the first two lanes take documents and spans apart.
    let split = first & 0x80 != 0 && lanes >= 2;
    let takes = |i: usize| match (split, i) {
        (true, 0) => Takes::XrayDocuments,
        (true, 1) => Takes::Spans,
        _ => Takes::Everything,
    };
    let buffer = Buffer::new(
        budget,
        (0..lanes)
            .map(|i| LaneSettings {
                name: format!("sink{i}"),
                batch_size: 4,
                takes: takes(i),
            })
            .collect(),
        FullPolicy::DropOldest,
        Arc::clone(&stats),
    );
    let mut batches: Vec<Batch> = Vec::new();
    let mut intake = Intake::new(Input::Udp, 8);
    let mut spans = Intake::new(Input::OtlpHttp, 8);
    let mut bytes = data.iter().copied().skip(1);
    while let Some(op) = bytes.next() {
        let arg = bytes.next().unwrap_or(0);
        match op % 6 {
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
            5 => {
                let n = usize::from(arg % 4) + 1;
                for i in 0..n {
                    let span = Span {
                        trace_id: vec![1; 16],
                        span_id: vec![arg | 1; 8],
                        name: "x".repeat(usize::from(arg) * 4 + i),
                        ..Span::default()
                    };
                    let record = SpanRecord::new(Arc::default(), Arc::default(), span);
                    let document = Document::unchecked(vec![b'{'; usize::from(arg) + 2]);
                    spans.received(record.cost());
                    spans.accepted(Item::Span(Arc::new(SpanItem::new(
                        record,
                        document,
                        Input::OtlpHttp,
                    ))));
                }
                buffer.admit(&mut spans);
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
