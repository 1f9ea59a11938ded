//! For the OpenTelemetry tests: a daemon whose buffer is held past the OTLP high-water mark
//! (75% of the budget) until the test releases it, so a receiver answers "busy"; and
//! [`otlp_answer`], what a fault injector playing an OTLP endpoint answers.

use std::time::Duration;

use super::{Daemon, Fault, FaultInjector, Moto, new_segment_id, new_trace_id};

/// What an OTLP endpoint answers: `status`, protobuf, these extra headers, this body.
pub fn otlp_answer(status: u16, extra: &[(&str, &str)], body: impl Into<bytes::Bytes>) -> Fault {
    let mut headers = vec![(
        "content-type".to_owned(),
        "application/x-protobuf".to_owned(),
    )];
    headers.extend(
        extra
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
    );
    Fault::Answer {
        status,
        headers,
        body: body.into(),
    }
}

/// Starts a daemon (`-m 3`, plus `receiver` such as `["--otlp-http", ADDR]`) relaying to moto
/// through a fault injector that holds every `PutTraceSegments` ([`Fault::Held`]) until
/// [`release_once_busy`], and fills its buffer with about 2.6 MB of UDP segments, all in calls
/// at once (6 batches, 8 slots): past the mark until those calls are released. Returns once the
/// stats show it.
///
/// The calls used to be delayed by a fixed 3 s, so a peer that took longer than that to start
/// and export (Python's imports on a busy 2-core machine) found the buffer empty again.
pub async fn held_past_the_mark(moto: &Moto, receiver: [&str; 2]) -> (Daemon, FaultInjector) {
    let injector = FaultInjector::start(&moto.endpoint()).await;
    injector.always("/TraceSegments", Fault::Held);
    let daemon = Daemon::builder()
        .upload_to(&injector.endpoint())
        .args(["-m", "3"])
        .args(receiver)
        .start()
        .await;
    let trace = new_trace_id();
    for _ in 0..260 {
        let doc = serde_json::json!({
            "trace_id": trace, "id": new_segment_id(), "name": "filler",
            "start_time": 1.0, "end_time": 2.0,
            "annotations": {"pad": "x".repeat(10_000)}
        });
        daemon.send_segment(&doc.to_string());
    }
    let full = daemon
        .wait_for_stats(
            |s| (s.buffered_bytes + s.in_flight_bytes) * 100 > s.budget_bytes * 75,
            Duration::from_secs(40),
        )
        .await;
    assert!(full.in_flight > 0, "{full:?}");
    (daemon, injector)
}

/// Waits until the daemon's `input` (`"otlp_http"`, `"otlp_grpc"`) has answered a request
/// "busy", then releases the calls [`held_past_the_mark`] holds: the buffer drains, and the
/// exporter's next try is taken. Run it beside the peer (`tokio::join!`).
pub async fn release_once_busy(daemon: &Daemon, held: &FaultInjector, input: &str) {
    daemon
        .wait_for_stats(
            |s| {
                s.inputs
                    .get(input)
                    .and_then(|i| i.requests.get("busy"))
                    .is_some_and(|busy| *busy >= 1)
            },
            Duration::from_secs(60),
        )
        .await;
    held.release();
}
