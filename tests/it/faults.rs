//! Holding up under faults of the X-Ray endpoint and of the operator's settings, through the
//! real binary against moto and the fault injector.
//!
//! The rule for an answer that cannot be read: any complete 2xx answer means the call
//! succeeded (X-Ray stored the documents; only its report is unreadable), so the documents
//! count as sent; no complete answer (a reset before or during the body, a timeout before the
//! status) means the call is tried again (at least once).

use std::time::Duration;

use crate::support::{
    Daemon, DropReason, Fault, FaultInjector, Moto, Snapshot, Step, TEST_REGION, assert_balanced,
    new_segment_id, new_trace_id, segment_json, wait,
};

/// How long a scenario may take to settle on this shared 2-core machine.
const SETTLE: Duration = Duration::from_secs(40);
/// How long a daemon that refuses its config may take to exit.
const WITHIN: Duration = Duration::from_secs(10);

/// Nothing waiting and nothing in flight.
fn settled(stats: &Snapshot) -> bool {
    stats.buffered == 0 && stats.in_flight == 0
}

/// `n` segment documents of one new trace: (trace id, documents).
fn documents(n: usize) -> (String, Vec<String>) {
    let trace = new_trace_id();
    let docs = (0..n)
        .map(|_| segment_json(&trace, &new_segment_id(), "faults"))
        .collect();
    (trace, docs)
}

/// Issue "Hold under faults", item 4: X-Ray answers `200` with a body that is not its JSON.
/// It stored the segments, so they are sent, not `upload_failed`, and not sent again.
#[tokio::test]
async fn a_200_with_an_unreadable_body_counts_as_sent() {
    let moto = Moto::start().await;
    let garbage = Fault::Respond {
        status: 200,
        body: "<html>not the answer you expected".to_owned(),
    };
    let injector =
        FaultInjector::with_script(&moto.endpoint(), vec![Step::on("/TraceSegments", garbage)])
            .await;
    let daemon = Daemon::builder()
        .upload_to(&injector.endpoint())
        .start()
        .await;
    let (_, docs) = documents(5);
    for d in &docs {
        daemon.send_segment(d);
    }
    let stats = daemon
        .wait_for_stats(|s| s.sent == 5 && settled(s), SETTLE)
        .await;
    assert_eq!(stats.dropped(DropReason::UploadFailed), 0, "{stats:?}");
    assert_eq!(stats.dropped_total(), 0, "{stats:?}");
    assert_eq!(stats.retried, 0, "{stats:?}");
    assert_balanced(&stats);
    assert!(injector.remaining_script().is_empty(), "the 200 was used");
    assert_eq!(
        injector.put_trace_segments_batches(),
        [5],
        "one call, not sent again"
    );
    let warned = wait::until(SETTLE, Duration::from_millis(50), async || {
        daemon.stdout().contains("could not be read").then_some(())
    })
    .await;
    assert!(warned.is_some(), "a warning: {}", daemon.stdout());
}

/// Issue "Hold under faults", item 4: the connection breaks in the middle of a `200`'s body.
/// That is no complete answer, so the call is tried again: every segment reaches moto and none
/// is dropped.
#[tokio::test]
async fn a_reset_after_a_partial_200_is_retried() {
    let moto = Moto::start().await;
    let injector = FaultInjector::with_script(
        &moto.endpoint(),
        vec![Step::on("/TraceSegments", Fault::CutBody)],
    )
    .await;
    let daemon = Daemon::builder()
        .upload_to(&injector.endpoint())
        .start()
        .await;
    let (trace, docs) = documents(5);
    for d in &docs {
        daemon.send_segment(d);
    }
    let stats = daemon
        .wait_for_stats(|s| s.sent == 5 && settled(s), SETTLE)
        .await;
    assert!(injector.remaining_script().is_empty(), "the cut was used");
    assert_eq!(injector.put_trace_segments_batches(), [5, 5], "tried again");
    assert!(stats.retried >= 1, "{stats:?}");
    assert_eq!(stats.dropped_total(), 0, "{stats:?}");
    assert_balanced(&stats);
    let stored = moto
        .wait_for_documents(TEST_REGION, &[trace], docs.len(), SETTLE)
        .await;
    assert!(stored.len() >= docs.len(), "{stored:?}");
}

/// Issue "Hold under faults", item 7: `-m 9223372036854775807` would switch the memory bound
/// off; a buffer above the memory there is stops startup with exit 1, naming the flag, the
/// file key and the fix.
#[tokio::test]
async fn a_buffer_above_the_memory_available_is_refused() {
    let f = Daemon::builder()
        .args(["-m", "9223372036854775807"])
        .run_to_exit(WITHIN)
        .await;
    assert_eq!(f.status.code(), Some(1), "stderr:\n{}", f.stderr);
    for needle in ["-m/--buffer-memory", "TotalBufferSizeMB", "at most"] {
        assert!(f.stderr.contains(needle), "{needle:?} in:\n{}", f.stderr);
    }
}
