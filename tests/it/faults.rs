//! Holding up under faults of the X-Ray endpoint and of the operator's settings, through the
//! real binary against moto and the fault injector.
//!
//! The rule for an answer that cannot be read: any complete 2xx answer means the call
//! succeeded (X-Ray stored the documents; only its report is unreadable), so the documents
//! count as sent; no complete answer (a reset before or during the body, a timeout before the
//! status) means the call is tried again (at least once).

use std::time::Duration;

use crate::support::{
    Daemon, DropReason, ErrorKind, Fault, FaultInjector, Moto, Snapshot, Step, TEST_REGION,
    assert_balanced, backend_errors, new_segment_id, new_trace_id, segment_json, wait,
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

/// The answer X-Ray gives when a caller goes over its rate.
fn throttled() -> Fault {
    Fault::Respond {
        status: 429,
        body: r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_owned(),
    }
}

/// Issue "Hold under faults", item 2: every call takes 2 s, within `--upload-timeout 6` (the
/// margin is for moto's own time on a loaded 2-core machine: 3 s was seen cut off). Each
/// batch is sent once and counted as sent: no call is cut off and sent again (with the old
/// fixed 5 s attempt timeout and 5 s calls, 1,350 copies of 500 segments were stored).
#[tokio::test]
async fn a_slow_xray_within_the_upload_timeout_gets_each_batch_once() {
    let moto = Moto::start().await;
    let injector = FaultInjector::start(&moto.endpoint()).await;
    injector.always("/TraceSegments", Fault::Delay(Duration::from_secs(2)));
    let daemon = Daemon::builder()
        .upload_to(&injector.endpoint())
        .args(["--upload-timeout", "6"])
        .start()
        .await;
    let (trace, docs) = documents(100);
    for d in &docs {
        daemon.send_segment(d);
    }
    let stats = daemon
        .wait_for_stats(|s| s.sent == 100 && settled(s), SETTLE)
        .await;
    assert_eq!((stats.retried, stats.dropped_total()), (0, 0), "{stats:?}");
    assert_balanced(&stats);
    assert_eq!(injector.put_trace_segments_batches(), [50, 50], "no copies");
    let stored = moto
        .wait_for_documents(TEST_REGION, &[trace], docs.len(), SETTLE)
        .await;
    assert_eq!(stored.len(), docs.len());
}

/// Issue "Hold under faults", item 2: X-Ray answers slower than `--upload-timeout`. After the
/// first timeout only one batch (the probe) is in flight until a call succeeds, so each
/// following call starts at least one timeout after the one before; once X-Ray is quick again
/// the backlog goes out at full concurrency and nothing is lost.
#[tokio::test]
async fn after_a_timeout_only_the_probe_is_in_flight_until_a_call_succeeds() {
    let moto = Moto::start().await;
    let injector = FaultInjector::start(&moto.endpoint()).await;
    injector.always("/TraceSegments", Fault::Delay(Duration::from_secs(2)));
    let timeout = Duration::from_secs(1);
    let daemon = Daemon::builder()
        .upload_to(&injector.endpoint())
        .args(["--upload-timeout", "1", "--concurrency", "8"])
        .start()
        .await;
    let (_, docs) = documents(400);
    for d in &docs {
        daemon.send_segment(d);
    }
    // The first round (up to 8 calls at once), then three probes.
    let calls = wait::until(SETTLE, Duration::from_millis(50), async || {
        let calls = injector.put_trace_segments();
        let first = calls.first()?.received_at;
        let later: Vec<_> = calls
            .iter()
            .map(|c| c.received_at)
            .filter(|t| t.duration_since(first) > timeout / 2)
            .collect();
        (later.len() >= 3).then_some(later)
    })
    .await;
    let Some(probes) = calls else {
        panic!(
            "fewer than 3 calls after the first round: {:?}",
            injector.put_trace_segments_batches()
        )
    };
    for pair in probes.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(
            gap >= timeout * 9 / 10,
            "a call started {gap:?} after the one before, within the timeout: more than the probe in flight"
        );
    }
    injector.lift("/TraceSegments");
    let stats = daemon
        .wait_for_stats(|s| s.sent == 400 && settled(s), SETTLE)
        .await;
    assert_eq!(stats.dropped_total(), 0, "{stats:?}");
    assert!(backend_errors(&stats, ErrorKind::Timeout) >= 4, "{stats:?}");
    assert_balanced(&stats);
    // The backlog drained at full concurrency: the calls after the first answered one all
    // started within a second of it, not one per backoff.
    let calls = injector.put_trace_segments();
    let answered = calls.iter().position(|c| c.upstream_status == Some(200));
    let Some(answered) = answered else {
        panic!("no call answered")
    };
    let start = calls[answered].received_at;
    for c in &calls[answered..] {
        assert!(
            c.received_at.duration_since(start) < Duration::from_secs(1),
            "the backlog went out one batch at a time"
        );
    }
}

/// Issue "Hold under faults", item 3: under constant 429s, segments waiting for another
/// attempt are given up `--retry-max-age` after their first failure, on time; they used to be
/// given up only at their next failed attempt, one probe per backoff (the last of 500 after
/// 58 s with `--retry-max-age 8`).
#[tokio::test]
async fn retries_age_out_on_time_under_constant_throttling() {
    let moto = Moto::start().await;
    let injector = FaultInjector::start(&moto.endpoint()).await;
    injector.always("/TraceSegments", throttled());
    let daemon = Daemon::builder()
        .upload_to(&injector.endpoint())
        .args(["--retry-max-age", "2", "--retry-max-attempts", "1000"])
        .args(["--concurrency", "8"])
        .start()
        .await;
    let (_, docs) = documents(400);
    let sent_at = std::time::Instant::now();
    for d in &docs {
        daemon.send_segment(d);
    }
    let stats = daemon
        .wait_for_stats(
            |s| s.dropped(DropReason::RetriesExhausted) == 400 && settled(s),
            SETTLE,
        )
        .await;
    let took = sent_at.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "the last segment was given up {took:?} after it was sent, with --retry-max-age 2"
    );
    assert_eq!(stats.sent, 0, "{stats:?}");
    assert_balanced(&stats);
}
