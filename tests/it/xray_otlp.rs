//! X-Ray's OTLP endpoint (`--otlp-to-xray otlp`) against a recording fault injector: moto has no
//! OTLP endpoint, so the injector answers `/v1/traces` itself (an empty
//! `ExportTraceServiceResponse`, or a scripted fault) and passes every other path (the X-Ray
//! SDK's `PutTraceSegments`) through to moto.
//!
//! What the injector received is checked from the outside by `tests/peers/xray_otlp_check.py`:
//! the SigV4 signature with botocore's `SigV4Auth(credentials, "xray", region)` over the exact
//! bytes received, and the spans, gunzipped and decoded with PyPI `opentelemetry-proto`,
//! against the ones sent (built by the same script with every stable OTLP field).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use serde_json::Value;
use xray_daemon::otlp::proto::ExportTraceServiceRequest;

use crate::support::daemon::{FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY};
use crate::support::flask::run_python_peer_with_env;
use crate::support::http::request;
use crate::support::otlp::otlp_answer;
use crate::support::{
    Daemon, DropReason, ErrorKind, Fault, FaultInjector, Moto, Recorded, Step, TEST_REGION,
    assert_balanced, backend_errors, free_addr, new_segment_id, new_trace_id, segment_json,
};

/// How long spans may take to arrive on this shared 2-core machine.
const ARRIVAL: Duration = Duration::from_secs(40);
/// The daemon's temporary credentials' token (signed as `x-amz-security-token`).
const SESSION_TOKEN: &str = "daemon-test-session-token";
/// The command the Transaction Search error names.
const TURN_ON: &str = "aws xray update-trace-segment-destination --destination CloudWatchLogs";

/// A recording fault injector in front of a fresh moto whose `/v1/traces` answers 200 with an
/// empty `ExportTraceServiceResponse` (zero bytes of protobuf), after the `script`.
async fn otlp_injector(script: Vec<Step>) -> (Moto, FaultInjector) {
    let moto = Moto::start().await;
    let injector = FaultInjector::with_script(&moto.endpoint(), script).await;
    injector.always("/v1/traces", otlp_answer(200, &[], Bytes::new()));
    (moto, injector)
}

/// A daemon sending to `injector` with `--otlp-to-xray otlp`, receiving OTLP/HTTP on a port of
/// its own, with temporary credentials.
async fn otlp_daemon(injector: &FaultInjector) -> (Daemon, std::net::SocketAddr) {
    let otlp = free_addr();
    let daemon = Daemon::builder()
        .upload_to(&injector.endpoint())
        .env("AWS_SESSION_TOKEN", SESSION_TOKEN)
        .args(["--otlp-http", &otlp.to_string(), "--otlp-to-xray", "otlp"])
        .start()
        .await;
    (daemon, otlp)
}

/// Runs the check script with `args`; returns its JSON report.
async fn check_script(args: &[String]) -> Value {
    let line =
        run_python_peer_with_env("the X-Ray OTLP check", "xray_otlp_check.py", args, &[]).await;
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// Writes an OTLP request of `n` spans (made by the check script) in `dir`; its path and the
/// spans' ids (hex).
async fn make_spans(dir: &Path, n: usize) -> (PathBuf, Vec<String>) {
    let file = dir.join("sent.pb");
    let made = check_script(&["make".to_owned(), file.display().to_string(), n.to_string()]).await;
    let ids = made["span_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (file, ids)
}

/// POSTs the protobuf in `file` to the daemon's OTLP receiver; it must take it (200).
async fn post_spans(otlp: std::net::SocketAddr, body: impl Into<Bytes>, content_type: &str) {
    let answer = request(
        otlp,
        "POST",
        "/v1/traces",
        &[("content-type", content_type)],
        body,
    )
    .await
    .expect("POST /v1/traces to the daemon");
    assert_eq!(answer.status, 200, "{}", answer.text());
}

/// Every `POST /v1/traces` the injector received, in arrival order.
fn otlp_calls(injector: &FaultInjector) -> Vec<Recorded> {
    injector
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/traces")
        .collect()
}

/// The span ids (hex) a recorded request carries, decoded with the daemon's own messages.
fn span_ids_in(call: &Recorded) -> Vec<String> {
    let mut raw = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(call.body.as_ref()),
        &mut raw,
    )
    .expect("a gzip'd body");
    let request = ExportTraceServiceRequest::decode(raw.as_slice()).expect("an OTLP request");
    request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| hex::encode(&s.span_id))
        .collect()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// The case: a daemon with `--otlp-http` and `--otlp-to-xray otlp` sends the spans it
/// receives, unchanged, gzip'd, as protobuf to `/v1/traces` of the configured endpoint, signed
/// for service `xray` over the exact bytes (verified by botocore), while an X-Ray SDK segment
/// sent over UDP still goes to `PutTraceSegments` (moto stores it) and no span does.
#[tokio::test]
async fn otlp_mode_sends_spans_unchanged_gzipped_and_signed_and_sdk_segments_still_to_put_trace_segments()
 {
    let (moto, injector) = otlp_injector(Vec::new()).await;
    let (daemon, otlp) = otlp_daemon(&injector).await;
    let (file, sent_ids) = make_spans(daemon.dir(), 25).await;
    assert_eq!(sent_ids.len(), 25);
    post_spans(
        otlp,
        std::fs::read(&file).expect("the spans made"),
        "application/x-protobuf",
    )
    .await;
    let trace = new_trace_id();
    let segment = new_segment_id();
    daemon.send_segment(&segment_json(&trace, &segment, "xray-sdk-app"));

    let stats = daemon
        .wait_for_stats(
            |s| {
                s.sinks.get("xray-otlp").is_some_and(|x| x.sent == 25)
                    && s.sinks.get("xray").is_some_and(|x| x.sent == 1)
            },
            ARRIVAL,
        )
        .await;
    assert_balanced(&stats);
    assert_eq!(
        (stats.received, stats.sent, stats.dropped_total()),
        (26, 26, 0)
    );
    assert_eq!(
        (
            stats.sinks["xray"].received,
            stats.sinks["xray-otlp"].received
        ),
        (1, 25),
        "each lane holds only its kind"
    );

    // The X-Ray SDK's segment reached PutTraceSegments (moto), and no span did.
    let stored = moto
        .wait_for_documents(TEST_REGION, &[&trace], 1, ARRIVAL)
        .await;
    assert!(stored[0].contains(&segment), "{stored:?}");
    let put: Vec<String> = injector
        .put_trace_segments()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(injector.put_trace_segments_batches(), [1], "{put:?}");
    for id in &sent_ids {
        assert!(
            !put.iter().any(|b| b.contains(id.as_str())),
            "span {id} in {put:?}"
        );
    }

    // What X-Ray's OTLP endpoint received: checked here for the obvious, then by botocore and
    // opentelemetry-proto.
    let calls = otlp_calls(&injector);
    assert!(!calls.is_empty());
    let mut received = Vec::new();
    for call in &calls {
        assert_eq!(call.method, "POST");
        let auth = call.header("authorization").unwrap_or_default();
        assert!(
            auth.contains(&format!("/{TEST_REGION}/xray/aws4_request")),
            "{auth}"
        );
        assert_eq!(call.header("x-amz-security-token"), Some(SESSION_TOKEN));
        assert_eq!(call.header("content-encoding"), Some("gzip"));
        received.extend(span_ids_in(call));
    }
    assert_eq!(sorted(received), sorted(sent_ids.clone()), "each span once");
    let recorded: Vec<Value> = calls
        .iter()
        .map(|c| {
            serde_json::json!({
                "method": c.method,
                "path": c.path,
                "headers": c.headers,
                "body_hex": hex::encode(&c.body),
            })
        })
        .collect();
    let recorded_file = daemon.dir().join("recorded.json");
    std::fs::write(&recorded_file, Value::Array(recorded).to_string()).expect("write recorded");
    let report = check_script(&[
        "check".to_owned(),
        recorded_file.display().to_string(),
        file.display().to_string(),
        FAKE_ACCESS_KEY_ID.to_owned(),
        FAKE_SECRET_ACCESS_KEY.to_owned(),
        SESSION_TOKEN.to_owned(),
        TEST_REGION.to_owned(),
    ])
    .await;
    let all = |key: &str| {
        report[key]
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(|v| v == true))
    };
    for signature in report["signatures"].as_array().expect("signatures") {
        assert_eq!(signature["ok"], true, "botocore: {signature:#}");
    }
    assert!(
        all("payload_hash_ok") && all("gzip") && all("protobuf"),
        "{report:#}"
    );
    assert_eq!(report["spans_received"], 25, "{report:#}");
    for key in ["missing", "unexpected", "changed", "duplicates"] {
        assert_eq!(report[key], serde_json::json!([]), "{key}: {report:#}");
    }
}

/// A `503` with `Retry-After: 1`, then `200`: the spans go again once, not before a second
/// has passed (the usual backoff would be under 100 ms), and arrive once.
#[tokio::test]
async fn a_503_with_retry_after_is_retried_after_that_wait_and_the_spans_arrive_once() {
    let busy = otlp_answer(503, &[("retry-after", "1")], Bytes::new());
    let (_moto, injector) = otlp_injector(vec![Step::on("/v1/traces", busy)]).await;
    let (daemon, otlp) = otlp_daemon(&injector).await;
    let (file, sent_ids) = make_spans(daemon.dir(), 10).await;
    post_spans(
        otlp,
        std::fs::read(&file).expect("the spans made"),
        "application/x-protobuf",
    )
    .await;
    let stats = daemon
        .wait_for_stats(
            |s| s.sinks.get("xray-otlp").is_some_and(|x| x.sent == 10),
            ARRIVAL,
        )
        .await;
    let calls = otlp_calls(&injector);
    assert_eq!(calls.len(), 2, "one refused, one taken: {calls:#?}");
    assert!(matches!(
        calls[0].fault,
        Some(Fault::Answer { status: 503, .. })
    ));
    assert!(matches!(
        calls[1].fault,
        Some(Fault::Answer { status: 200, .. })
    ));
    let waited = calls[1].received_at - calls[0].received_at;
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    assert!(waited < Duration::from_secs(10), "retried after {waited:?}");
    for call in &calls {
        assert_eq!(sorted(span_ids_in(call)), sorted(sent_ids.clone()));
    }
    assert_balanced(&stats);
    assert_eq!(
        (stats.sent, stats.retried, stats.dropped_total()),
        (10, 10, 0)
    );
    assert_eq!(backend_errors(&stats, ErrorKind::Http5xx), 1);
    assert_eq!(otlp_calls(&injector).len(), 2, "nothing more once taken");
}

/// A span that started over 14 days ago is dropped (`outside_time_window`) without a call; when
/// X-Ray answers that Transaction Search is off, the span is dropped (`upload_failed`, not
/// retried) and the log says so and how to turn it on.
#[tokio::test]
async fn old_spans_are_dropped_unsent_and_transaction_search_off_is_explained() {
    #[derive(Clone, PartialEq, prost::Message)]
    struct RpcStatus {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    let off = RpcStatus {
        code: 3,
        message: "The OTLP API is supported with CloudWatch Logs as a Trace Segment Destination. \
                  Please enable the CloudWatch Logs destination for your traces using the \
                  UpdateTraceSegmentDestination API"
            .into(),
    }
    .encode_to_vec();
    let (_moto, injector) = otlp_injector(Vec::new()).await;
    injector.lift("/v1/traces");
    injector.always("/v1/traces", otlp_answer(400, &[], off));
    let (daemon, otlp) = otlp_daemon(&injector).await;
    let span = |start_ns: u128| {
        serde_json::json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
            "traceId": format!("{:032x}", start_ns | 1),
            "spanId": "00f067aa0ba902b7",
            "name": "GET /cart",
            "kind": 2,
            "startTimeUnixNano": start_ns.to_string(),
            "endTimeUnixNano": (start_ns + 1_000_000).to_string(),
        }]}]}]})
        .to_string()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_nanos();
    let fifteen_days = 15 * 86_400 * 1_000_000_000u128;
    post_spans(otlp, span(now - fifteen_days), "application/json").await;
    daemon
        .wait_for_stats(|s| s.dropped(DropReason::OutsideTimeWindow) == 1, ARRIVAL)
        .await;
    assert!(
        otlp_calls(&injector).is_empty(),
        "an old span is never sent"
    );

    post_spans(otlp, span(now), "application/json").await;
    let stats = daemon
        .wait_for_stats(|s| s.dropped(DropReason::UploadFailed) == 1, ARRIVAL)
        .await;
    assert_balanced(&stats);
    assert_eq!(
        (
            stats.sent,
            stats.retried,
            stats.sinks["xray-otlp"].dropped.len()
        ),
        (0, 0, 2)
    );
    assert_eq!(otlp_calls(&injector).len(), 1, "not retried");
    let found = crate::support::wait::until(ARRIVAL, Duration::from_millis(50), async || {
        let log = daemon.stdout();
        (log.contains("Transaction Search is off") && log.contains(TURN_ON)).then_some(())
    })
    .await;
    assert!(
        found.is_some(),
        "no explanation in the log:\n{}",
        daemon.stdout()
    );
}
