//! Delivery: retries with backoff, the accounting identity, the shutdown drain and
//! self-telemetry, through the real binary against moto and the fault injector.
//!
//! After each scenario the stats endpoint's counters must satisfy
//! `received = sent + rejected + dropped (all reasons) + buffered + in_flight`, and the same per
//! input and per sink ([`assert_balanced`]); after a shutdown, where the endpoint is gone, the
//! exit summary line must say the same.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::stats::backend_errors;
use crate::support::{
    Daemon, DropReason, ErrorKind, Fault, FaultInjector, Moto, Snapshot, Step, TEST_REGION,
    assert_balanced, new_segment_id, new_trace_id, wait,
};

/// How long a scenario may take to settle on this shared 2-core machine.
const SETTLE: Duration = Duration::from_secs(40);

/// Nothing waiting and nothing in flight.
fn settled(stats: &Snapshot) -> bool {
    stats.buffered == 0 && stats.in_flight == 0
}

/// A segment document moto accepts, with the given padding, in Python's spacing (so a
/// re-serialised copy would not compare equal).
fn document(trace_id: &str, id: &str, padding: usize) -> String {
    format!(
        r#"{{"trace_id": "{trace_id}", "id": "{id}", "name": "delivery", "start_time": 1700000000.5, "end_time": 1700000001.25, "annotations": {{"pad": "{}"}}}}"#,
        "x".repeat(padding)
    )
}

/// The id of a stored document.
fn id_of(document: &str) -> String {
    serde_json::from_str::<Value>(document)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("stored document without an id: {document}"))
}

/// Sends `documents` to the daemon, pausing every `wave` until it has read them, so the
/// kernel's receive queue never overflows.
async fn send_paced(daemon: &Daemon, documents: &[String], wave: usize) {
    let start = daemon.stats().await.received;
    for (i, chunk) in documents.chunks(wave).enumerate() {
        for d in chunk {
            daemon.send_segment(d);
        }
        let target = start + (i * wave + chunk.len()) as u64;
        daemon
            .wait_for_stats(|s| s.received >= target, SETTLE)
            .await;
    }
}

/// Waits until the daemon's stdout contains `needle`.
async fn wait_for_log(daemon: &Daemon, needle: &str, within: Duration) -> String {
    let found = wait::until(within, Duration::from_millis(50), async || {
        let out = daemon.stdout();
        out.contains(needle).then_some(out)
    })
    .await;
    found.unwrap_or_else(|| {
        panic!(
            "the daemon did not log {needle:?} within {within:?}; stdout:\n{}",
            daemon.stdout()
        )
    })
}

/// The documents, one trace id for every 40.
fn make_documents(n: usize, padding: usize) -> (Vec<String>, Vec<String>) {
    let traces: Vec<String> = (0..n.div_ceil(40)).map(|_| new_trace_id()).collect();
    let documents = (0..n)
        .map(|i| document(&traces[i / 40], &new_segment_id(), padding))
        .collect();
    (traces, documents)
}

/// A 500 with X-Ray's InternalFailure body.
fn internal_failure() -> Fault {
    Fault::Respond {
        status: 500,
        body: r#"{"__type":"InternalFailure","message":"injected"}"#.to_owned(),
    }
}

/// Waits until moto holds as many documents under `traces` as were sent, then asserts they are
/// `documents`, each once and byte for byte (in any order).
async fn assert_stored_exactly(moto: &Moto, traces: &[impl AsRef<str>], documents: &[String]) {
    let mut stored = moto
        .wait_for_documents(TEST_REGION, traces, documents.len(), SETTLE)
        .await;
    let mut expected = documents.to_vec();
    stored.sort();
    expected.sort();
    assert_eq!(stored, expected, "each segment once, byte for byte");
}

/// Requirement 1: the endpoint answers 429 to the first calls, then recovers; every segment
/// arrives exactly once, byte for byte.
#[tokio::test]
async fn throttled_calls_are_retried_until_every_segment_arrives_exactly_once() {
    let moto = Moto::start().await;
    const THROTTLED: usize = 4;
    let throttle = Fault::Respond {
        status: 429,
        body: r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_owned(),
    };
    let injector = FaultInjector::with_script(
        &moto.endpoint(),
        (0..THROTTLED)
            .map(|_| Step::on("/TraceSegments", throttle.clone()))
            .collect(),
    )
    .await;
    let daemon = Daemon::builder()
        .upload_to(&injector.endpoint())
        .start()
        .await;
    let (traces, documents) = make_documents(120, 0);
    send_paced(&daemon, &documents, 40).await;

    let stats = daemon
        .wait_for_stats(|s| s.sent == 120 && settled(s), SETTLE)
        .await;
    assert_stored_exactly(&moto, &traces, &documents).await;

    assert!(
        injector.remaining_script().is_empty(),
        "all {THROTTLED} 429s were used"
    );
    assert_eq!(
        backend_errors(&stats, ErrorKind::Throttled),
        THROTTLED as u64,
        "{stats:?}"
    );
    assert!(stats.retried >= 1, "{stats:?}");
    assert_eq!(stats.dropped_total(), 0, "{stats:?}");
    assert_balanced(&stats);
}

/// Server errors, a reset connection and a stalled call (past the SDK's attempt timeout) are
/// retried too, each counted by kind; every segment still arrives once.
#[tokio::test]
async fn server_errors_resets_and_stalls_are_retried_and_counted_by_kind() {
    let moto = Moto::start().await;
    let injector = FaultInjector::with_script(
        &moto.endpoint(),
        vec![
            Step::on("/TraceSegments", internal_failure()),
            Step::on("/TraceSegments", Fault::Close),
            Step::on("/TraceSegments", Fault::Hang),
        ],
    )
    .await;
    let daemon = Daemon::builder()
        .upload_to(&injector.endpoint())
        .start()
        .await;
    let (traces, documents) = make_documents(30, 0);
    send_paced(&daemon, &documents, 30).await;
    let stats = daemon
        .wait_for_stats(|s| s.sent == 30 && settled(s), SETTLE)
        .await;
    for kind in [
        ErrorKind::Http5xx,
        ErrorKind::Connection,
        ErrorKind::Timeout,
    ] {
        assert_eq!(backend_errors(&stats, kind), 1, "{kind:?}: {stats:?}");
    }
    assert_eq!(stats.dropped_total(), 0, "{stats:?}");
    assert_balanced(&stats);
    assert_stored_exactly(&moto, &traces, &documents).await;
}

/// Requirement 2: the endpoint refuses connections for a while as segments keep coming; what
/// fits the budget arrives afterwards, and the rest is counted as spillover.
#[tokio::test]
async fn an_unreachable_endpoint_keeps_what_fits_the_budget_and_counts_the_rest() {
    let moto = Moto::start().await;
    let injector = FaultInjector::start(&moto.endpoint()).await;
    injector.go_down();
    // -m 3: a 3 MiB budget; 320 documents of ~12 KB (3.8 MB) do not all fit.
    let daemon = Daemon::builder()
        .upload_to(&injector.endpoint())
        .args(["-m", "3"])
        .args(["--retry-max-attempts", "1000", "--retry-max-age", "600"])
        .start()
        .await;
    let (traces, documents) = make_documents(320, 12_000);
    send_paced(&daemon, &documents[..160], 20).await;
    // The endpoint has been failing for real before more arrive.
    daemon
        .wait_for_stats(
            |s| backend_errors(s, ErrorKind::ConnectionRefused) >= 2,
            SETTLE,
        )
        .await;
    send_paced(&daemon, &documents[160..], 20).await;
    let during = daemon.stats().await;
    assert_eq!(during.sent, 0, "nothing can be sent: {during:?}");
    assert!(during.dropped(DropReason::Spillover) > 0, "{during:?}");
    assert!(
        during.buffered_bytes + during.in_flight_bytes <= during.budget_bytes,
        "{during:?}"
    );
    assert_balanced(&during);

    injector.come_back().await;
    let stats = daemon.wait_for_stats(settled, SETTLE).await;
    let sent = stats.sent;
    let spilled = stats.dropped(DropReason::Spillover);
    assert_eq!(sent + spilled, 320, "{stats:?}");
    assert_eq!(stats.dropped_total(), spilled, "only spillover: {stats:?}");
    assert_eq!(stats.rejected, 0, "{stats:?}");
    assert!(sent >= 200, "most of the 3.8 MB fits 3 MiB: {stats:?}");
    assert_balanced(&stats);

    let stored = moto
        .wait_for_documents(TEST_REGION, &traces, sent as usize, SETTLE)
        .await;
    let by_id: BTreeMap<String, &String> = documents.iter().map(|d| (id_of(d), d)).collect();
    let mut seen = BTreeSet::new();
    for doc in &stored {
        let id = id_of(doc);
        assert!(seen.insert(id.clone()), "segment {id} stored twice");
        assert_eq!(Some(&doc), by_id.get(&id), "stored byte for byte");
    }
    assert_eq!(stored.len() as u64, sent);
    let newest = id_of(&documents[319]);
    assert!(
        seen.contains(&newest),
        "the oldest are dropped, not the newest"
    );
}

/// Requirement 3: X-Ray refuses some documents of a batch (moto: no `name`); those are counted
/// as rejected and logged with their ids, the rest arrive.
#[tokio::test]
async fn refused_segments_are_counted_and_logged_with_their_ids() {
    let moto = Moto::start().await;
    let daemon = Daemon::builder().upstream(&moto).start().await;
    let trace = new_trace_id();
    let good: Vec<String> = (0..10)
        .map(|_| document(&trace, &new_segment_id(), 0))
        .collect();
    let bad_ids: Vec<String> = (0..3).map(|_| new_segment_id()).collect();
    for (i, d) in good.iter().enumerate() {
        daemon.send_segment(d);
        // A refused one after the 1st, 4th and 7th good one: mixed into the same batch.
        if let Some(id) = bad_ids.get(i / 3).filter(|_| i % 3 == 0) {
            daemon.send_segment(&format!(
                r#"{{"trace_id": "{trace}", "id": "{id}", "start_time": 1.0, "end_time": 2.0}}"#
            ));
        }
    }
    let stats = daemon
        .wait_for_stats(|s| settled(s) && s.sent == 10 && s.rejected == 3, SETTLE)
        .await;
    assert_balanced(&stats);
    assert_eq!(stats.dropped_total(), 0, "{stats:?}");
    let xray = &stats.sinks["xray"];
    assert_eq!(
        (xray.sent, xray.rejected),
        (10, 3),
        "refused by the X-Ray sink: {stats:?}"
    );
    let log = wait_for_log(&daemon, &bad_ids[2], SETTLE).await;
    for id in &bad_ids {
        let line = log
            .lines()
            .find(|l| l.contains(id.as_str()))
            .unwrap_or_else(|| panic!("no log line names refused segment {id}:\n{log}"));
        assert!(
            line.contains(&trace) && line.contains("MissingParam"),
            "the line names the trace and X-Ray's code: {line}"
        );
    }
    assert_stored_exactly(&moto, &[&trace], &good).await;
}

/// Requirement 3, continued: an `UnprocessedTraceSegments` entry whose code says throttling is
/// not a refusal: that document is sent again, and arrives once.
#[tokio::test]
async fn segments_refused_for_throttling_are_sent_again() {
    let moto = Moto::start().await;
    let trace = new_trace_id();
    let id = new_segment_id();
    let body = format!(
        r#"{{"UnprocessedTraceSegments":[{{"Id":"{id}","ErrorCode":"ThrottlingException","Message":"Rate exceeded"}}]}}"#
    );
    let injector = FaultInjector::with_script(
        &moto.endpoint(),
        vec![Step::on(
            "/TraceSegments",
            Fault::Respond { status: 200, body },
        )],
    )
    .await;
    let daemon = Daemon::builder()
        .upload_to(&injector.endpoint())
        .start()
        .await;
    let doc = document(&trace, &id, 0);
    daemon.send_segment(&doc);
    let stats = daemon
        .wait_for_stats(|s| s.sent == 1 && settled(s), SETTLE)
        .await;
    assert_eq!((stats.rejected, stats.retried), (0, 1), "{stats:?}");
    assert_balanced(&stats);
    let stored = moto
        .wait_for_documents(TEST_REGION, &[&trace], 1, SETTLE)
        .await;
    assert_eq!(stored, vec![doc]);
    assert_eq!(injector.put_trace_segments_batches(), vec![1, 1]);
}

/// Requirement 4, first half: SIGTERM with many segments buffered and a slow endpoint; all
/// arrive, and the daemon exits 0 within the deadline.
#[tokio::test]
async fn sigterm_drains_everything_buffered_to_a_slow_endpoint() {
    let moto = Moto::start().await;
    let injector = FaultInjector::start(&moto.endpoint()).await;
    injector.always("/TraceSegments", Fault::Delay(Duration::from_millis(400)));
    let mut daemon = Daemon::builder()
        .upload_to(&injector.endpoint())
        .args(["--concurrency", "1"])
        .start()
        .await;
    let (traces, documents) = make_documents(400, 0);
    send_paced(&daemon, &documents, 100).await;
    let before = daemon.stats().await;
    assert_balanced(&before);
    assert!(
        before.buffered + before.in_flight > 0,
        "segments are still held when the signal comes: {before:?}"
    );

    let signalled = Instant::now();
    daemon.sigterm();
    let status = daemon.wait_exit(Duration::from_secs(30)).await;
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(took < Duration::from_secs(25), "drained in {took:?}");
    let out = daemon.stdout();
    assert!(
        out.contains("Stopped. Segments received: 400, sent: 400, rejected by X-Ray: 0, dropped: 0, buffered: 0, in flight: 0"),
        "exit summary: {out}"
    );
    assert_stored_exactly(&moto, &traces, &documents).await;
}

/// Requirement 4, second half: with an endpoint that never answers, the exit comes at the
/// deadline, with the loss reported.
#[tokio::test]
async fn sigterm_with_an_endpoint_that_never_answers_exits_at_the_deadline() {
    let moto = Moto::start().await;
    let injector = FaultInjector::start(&moto.endpoint()).await;
    injector.always("/TraceSegments", Fault::Hang);
    let mut daemon = Daemon::builder()
        .upload_to(&injector.endpoint())
        .args(["--shutdown-timeout", "3", "-l", "debug"])
        .start()
        .await;
    let (_, documents) = make_documents(100, 0);
    send_paced(&daemon, &documents, 50).await;
    let before = daemon.wait_for_stats(|s| s.in_flight > 0, SETTLE).await;
    assert_balanced(&before);

    let signalled = Instant::now();
    daemon.sigterm();
    let status = daemon.wait_exit(Duration::from_secs(20)).await;
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(8),
        "exit at the 3 s deadline (plus at most 1 s for the final telemetry record), took {took:?}"
    );
    let out = daemon.stdout();
    assert!(
        out.contains("Shutdown deadline of 3.0 s passed: 100 segment(s) were not sent"),
        "the loss is reported: {out}"
    );
    assert!(
        out.contains("Stopped. Segments received: 100, sent: 0, rejected by X-Ray: 0, dropped: 100 (shutdown 100), buffered: 0, in flight: 0"),
        "exit summary: {out}"
    );
    // At debug level, each lost segment is named.
    let lost: BTreeSet<&str> = out
        .lines()
        .filter(|l| l.contains("Lost segment") && l.ends_with("(shutdown)"))
        .filter_map(|l| l.split("Lost segment ").nth(1)?.split(' ').next())
        .collect();
    let sent: BTreeSet<String> = documents.iter().map(|d| id_of(d)).collect();
    assert_eq!(lost, sent.iter().map(String::as_str).collect(), "{out}");
}

/// Sums one counter over every record of the calls.
fn record_sum(calls: &[&Value], field: &str) -> i64 {
    calls
        .iter()
        .flat_map(|c| {
            c["TelemetryRecords"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|r| {
            r.pointer(field)
                .and_then(Value::as_i64)
                .unwrap_or_else(|| panic!("telemetry record without {field}: {r}"))
        })
        .sum()
}

/// Requirement 5: the telemetry records the fault injector received carry the counts the
/// test caused, including the final record at shutdown (which includes the drain); nothing is
/// sent before the first datagram.
#[tokio::test]
async fn telemetry_records_count_what_was_sent_including_the_drain() {
    let moto = Moto::start().await;
    let injector = FaultInjector::start(&moto.endpoint()).await;
    injector.answer_telemetry();
    injector.always("/TraceSegments", Fault::Delay(Duration::from_secs(1)));
    let arn = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0";
    let mut daemon = Daemon::builder()
        .upload_to(&injector.endpoint())
        .args(["-l", "debug", "--concurrency", "1"])
        .args(["--telemetry-interval", "0.3", "-a", arn])
        .env("AWS_HOSTNAME", "delivery-test-host")
        .env("AWS_INSTANCE_ID", "i-0123456789abcdef0")
        .start()
        .await;
    // An interval passed without a datagram: no record.
    wait_for_log(
        &daemon,
        "Skipped telemetry: no segments received yet",
        SETTLE,
    )
    .await;
    assert!(injector.telemetry_calls().is_empty());

    let (_, documents) = make_documents(150, 0);
    send_paced(&daemon, &documents, 50).await;
    daemon.send(b"no newline here");
    daemon.send(b"{\"format\":\"xml\",\"version\":1}\n{}");
    daemon.send_segment(r#"{"trace_id": "1-00000000-000000000000000000000000", "id": "0000000000000001", "start_time": 1.0, "end_time": 2.0}"#);
    let before = daemon.wait_for_stats(|s| s.received == 153, SETTLE).await;
    assert!(before.sent < 150, "the drain has work to do: {before:?}");
    wait::until(SETTLE, Duration::from_millis(50), async || {
        (!injector.telemetry_calls().is_empty()).then_some(())
    })
    .await
    .expect("a telemetry record within an interval of the first datagram");

    daemon.sigterm();
    let status = daemon.wait_exit(SETTLE).await;
    assert!(status.success(), "exit status {status}");
    let out = daemon.stdout();
    assert!(
        out.contains(
            "Stopped. Segments received: 153, sent: 150, rejected by X-Ray: 1, dropped: 2"
        ),
        "{out}"
    );

    let calls = injector.telemetry_calls();
    let calls: Vec<&Value> = calls.iter().collect();
    for call in &calls {
        assert_eq!(call["Hostname"], "delivery-test-host", "{call}");
        assert_eq!(call["EC2InstanceId"], "i-0123456789abcdef0", "{call}");
        assert_eq!(call["ResourceARN"], arn, "{call}");
        let n = call["TelemetryRecords"].as_array().map_or(0, Vec::len);
        assert!((1..=10).contains(&n), "1 to 10 records a call: {call}");
    }
    assert_eq!(record_sum(&calls, "/SegmentsReceivedCount"), 153);
    assert_eq!(
        record_sum(&calls, "/SegmentsSentCount"),
        150,
        "the drain is counted"
    );
    assert_eq!(
        record_sum(&calls, "/SegmentsRejectedCount"),
        3,
        "2 bad datagrams + 1 refused"
    );
    assert_eq!(record_sum(&calls, "/SegmentsSpilloverCount"), 0);
    let last = calls.last().expect("a final record");
    let final_sent = record_sum(&[last], "/SegmentsSentCount");
    assert!(
        final_sent > 0,
        "the final record, cut after the drain, counts segments the drain sent: {last}"
    );
}

/// Requirement 5, continued: failed telemetry calls keep their records and are counted as
/// backend connection errors; no call carries more than 10 records.
#[tokio::test]
async fn telemetry_keeps_records_through_failures_and_sends_at_most_ten_a_call() {
    let moto = Moto::start().await;
    const FAILURES: usize = 12;
    let injector = FaultInjector::with_script(
        &moto.endpoint(),
        (0..FAILURES)
            .map(|_| Step::on("/TelemetryRecords", internal_failure()))
            .collect(),
    )
    .await;
    injector.answer_telemetry();
    let mut daemon = Daemon::builder()
        .upload_to(&injector.endpoint())
        .args(["--telemetry-interval", "0.1"])
        .start()
        .await;
    let (_, documents) = make_documents(1, 0);
    send_paced(&daemon, &documents, 1).await;
    wait::until(SETTLE, Duration::from_millis(50), async || {
        injector
            .requests()
            .iter()
            .any(|r| {
                r.path == "/TelemetryRecords"
                    && r.fault
                        == Some(Fault::Respond {
                            status: 200,
                            body: "{}".to_owned(),
                        })
            })
            .then_some(())
    })
    .await
    .expect("a telemetry call succeeds after the scripted failures");
    let stats = daemon.wait_for_stats(|s| s.sent == 1, SETTLE).await;
    assert_eq!(
        backend_errors(&stats, ErrorKind::Http5xx),
        FAILURES as u64,
        "{stats:?}"
    );
    assert_balanced(&stats);
    daemon.sigterm();
    assert!(daemon.wait_exit(SETTLE).await.success());

    let requests = injector.requests();
    let delivered: Vec<Value> = requests
        .iter()
        .filter(|r| r.path == "/TelemetryRecords")
        .filter(|r| !matches!(r.fault, Some(Fault::Respond { status: 500, .. })))
        .map(|r| r.json().expect("JSON telemetry body"))
        .collect();
    let delivered: Vec<&Value> = delivered.iter().collect();
    let sizes: Vec<usize> = delivered
        .iter()
        .map(|c| c["TelemetryRecords"].as_array().map_or(0, Vec::len))
        .collect();
    assert!(sizes.iter().all(|n| (1..=10).contains(n)), "{sizes:?}");
    assert!(
        sizes.contains(&10),
        "the queued records went in calls of 10: {sizes:?}"
    );
    assert_eq!(record_sum(&delivered, "/SegmentsReceivedCount"), 1);
    assert_eq!(record_sum(&delivered, "/SegmentsSentCount"), 1);
    assert_eq!(
        record_sum(&delivered, "/BackendConnectionErrors/HTTPCode5XXCount"),
        FAILURES as i64,
        "each failed telemetry call is counted"
    );
}

/// What the daemon's log lines about `reason` add up to: each warning counts what it names
/// ("Refused a datagram" is 1, "Dropped 9 segment(s)" is 9) plus its tail "(N more … since the
/// last message were not logged)", and each later report its count ("Refused 499 more …").
fn logged_count(log: &str, reason: &str) -> u64 {
    let leading_number = |text: &str| -> u64 {
        text.split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    log.lines()
        .filter(|l| l.contains(&format!("({reason})")))
        .map(|l| {
            let named = if l.contains("Refused a datagram") {
                1
            } else if let Some(i) = l.find("] Refused ").or_else(|| l.find("] Dropped ")) {
                leading_number(&l[i + "] Refused ".len()..])
            } else {
                0
            };
            let tail = l
                .find(" since the last message were not logged")
                .and_then(|end| l[..end].rfind('(').map(|start| &l[start + 1..end]))
                .map_or(0, leading_number);
            named + tail
        })
        .sum()
}

/// In a flood, each refusal reason was logged once with no count, and the spillover warning
/// said "Dropped 9 segment(s)" while 192,951 were dropped: the rate-limited warnings did not
/// say how many they stood for. Now the lines about each reason add up to its count: for the
/// refusals once the warning interval (10 s) is over, though no later warning comes; for the
/// spillover at shutdown at the latest.
#[tokio::test]
async fn rate_limited_warnings_add_up_to_the_counts_in_a_flood() {
    let moto = Moto::start().await;
    let injector = FaultInjector::start(&moto.endpoint()).await;
    injector.go_down();
    let mut daemon = Daemon::builder()
        .upload_to(&injector.endpoint())
        .args(["-m", "3", "--shutdown-timeout", "1"])
        .args(["--retry-max-attempts", "1000", "--retry-max-age", "600"])
        .start()
        .await;
    for i in 0..300 {
        daemon.send(format!("no newline in datagram {i}").as_bytes());
    }
    let (_, documents) = make_documents(320, 12_000);
    send_paced(&daemon, &documents, 20).await;
    let refused = daemon
        .wait_for_stats(|s| s.received >= 620, SETTLE)
        .await
        .inputs["udp"]
        .refused["missing_newline"];
    // The first refusal was warned of; the rest is reported once the interval is over.
    let reported = wait::until(
        Duration::from_secs(20),
        Duration::from_millis(200),
        async || {
            let n = logged_count(&daemon.stdout(), "missing_newline");
            (n == refused).then_some(n)
        },
    )
    .await;
    assert_eq!(
        reported,
        Some(refused),
        "the refusal lines add up to the {refused} refused:\n{}",
        daemon.stdout()
    );

    daemon.sigterm();
    daemon.wait_exit(SETTLE).await;
    let out = daemon.stdout();
    let summary = out
        .lines()
        .find(|l| l.contains("Stopped."))
        .unwrap_or_else(|| panic!("no summary:\n{out}"));
    let spilled: u64 = summary
        .split("spillover ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no spillover in the summary: {summary}"));
    assert!(spilled > 0, "{summary}");
    assert_eq!(
        logged_count(&out, "spillover"),
        spilled,
        "the spillover lines add up to the {spilled} dropped:\n{out}"
    );
}
