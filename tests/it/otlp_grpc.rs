//! OpenTelemetry in, part 2: OTLP/gRPC from the real OpenTelemetry SDK for Python (its gRPC
//! exporter, gzip'd) converted to X-Ray segment documents that reach moto; the exporter's retry
//! on `UNAVAILABLE` while the buffer is full; and the answers to other methods and to garbage,
//! from grpcio, against the real binary.

use std::net::SocketAddr;
use std::time::Duration;

use prost::Message as _;
use serde_json::Value;
use xray_daemon::otlp::proto::{ExportTraceServiceRequest, ResourceSpans, ScopeSpans, Span};
use xray_daemon::otlp_grpc::{LOGS_EXPORT_PATH, METRICS_EXPORT_PATH, TRACES_EXPORT_PATH};

use crate::support::flask::run_python_peer_with_env;
use crate::support::{Daemon, Moto, TEST_REGION, assert_balanced, free_addr};

/// How long spans may take to reach moto on this shared 2-core machine.
const ARRIVAL: Duration = Duration::from_secs(40);

/// The X-Ray form of an OTLP trace id in hex.
fn xray_trace_id(hex: &str) -> String {
    format!("1-{}-{}", &hex[..8], &hex[8..])
}

/// Runs the OpenTelemetry Flask peer with its gRPC exporter (gzip) against `grpc`: `requests`
/// requests, each calling `call`. Returns its report.
async fn run_grpc_flask_peer(grpc: SocketAddr, requests: usize, call: String) -> Value {
    let endpoint = format!("http://{grpc}");
    let line = run_python_peer_with_env(
        "the OpenTelemetry Flask peer (gRPC exporter)",
        "otel_flask_app.py",
        &[requests.to_string(), call],
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_SERVICE_NAME", "otel-flask-grpc"),
        ],
    )
    .await;
    serde_json::from_str(&line).expect("the peer's JSON line")
}

/// The reference user's OpenTelemetry half with `OTEL_EXPORTER_OTLP_PROTOCOL=grpc` (gzip'd):
/// moto holds, per request, the SERVER span as a segment named after the service and every
/// other span as a subsegment under its parent; the spans are counted under `otlp_grpc`.
#[tokio::test]
async fn otel_flask_spans_over_grpc_reach_moto_as_segments() {
    let moto = Moto::start().await;
    let grpc = free_addr();
    let daemon = Daemon::builder()
        .upstream(&moto)
        .args(["--otlp-grpc", &grpc.to_string()])
        .start()
        .await;
    let call = format!("http://{}/daemon/health", daemon.tcp_addr());
    let run = run_grpc_flask_peer(grpc, 2, call).await;
    assert_eq!(run["export_ok"], true, "{run}");
    let spans = run["spans"].as_array().expect("spans");
    let servers: Vec<&Value> = spans.iter().filter(|s| s["kind"] == "SERVER").collect();
    assert_eq!(servers.len(), 2, "one SERVER span a request: {run}");

    for server in servers {
        let trace_hex = server["trace_id"].as_str().expect("trace id");
        let in_trace: Vec<&Value> = spans
            .iter()
            .filter(|s| s["trace_id"] == trace_hex)
            .collect();
        let trace = xray_trace_id(trace_hex);
        let stored = moto
            .wait_for_documents(TEST_REGION, &[&trace], in_trace.len(), ARRIVAL)
            .await;
        let docs: Vec<Value> = stored
            .iter()
            .map(|d| serde_json::from_str(d).expect("stored document is JSON"))
            .collect();
        let by_id = |id: &str| {
            docs.iter()
                .find(|d| d["id"] == id)
                .unwrap_or_else(|| panic!("no document with id {id} in {stored:#?}"))
        };
        let segment = by_id(server["span_id"].as_str().expect("span id"));
        assert_eq!(segment["name"], "otel-flask-grpc", "{segment}");
        assert_eq!(segment["trace_id"], trace.as_str(), "{segment}");
        assert_eq!(segment["http"]["response"]["status"], 200, "{segment}");
        for span in in_trace.iter().filter(|s| s["kind"] != "SERVER") {
            let doc = by_id(span["span_id"].as_str().expect("span id"));
            assert_eq!(doc["type"], "subsegment", "{doc}");
            assert_eq!(doc["parent_id"], span["parent_id"], "{doc}");
            if span["name"] == "home-activities-data" {
                assert_eq!(
                    doc["metadata"]["default"]["app.hubabuba"], "hubabuba-value",
                    "{doc}"
                );
            }
        }
    }
    let stats = daemon.stats().await;
    let input = &stats.inputs["otlp_grpc"];
    assert_eq!(input.accepted, spans.len() as u64, "{stats:?}");
    assert!(input.requests["accepted"] >= 1, "{stats:?}");
    assert_eq!(
        stats.inputs["otlp_http"].received, 0,
        "all of it over gRPC: {stats:?}"
    );
    assert_balanced(&stats);
}

/// The OTLP high-water mark over gRPC: while the buffer holds 75% of its budget (UDP segments in
/// calls that a slow X-Ray holds until the receiver has said so), `TraceService/Export` answers
/// `UNAVAILABLE` (with a `RetryInfo` of 2 s); the Python gRPC exporter tries again, and its
/// spans arrive once the calls are over and there is room.
#[tokio::test]
async fn a_full_buffer_answers_unavailable_and_the_grpc_exporter_spans_arrive_once_there_is_room() {
    let moto = Moto::start().await;
    let grpc = free_addr();
    let (daemon, slow_xray) =
        crate::support::otlp::held_past_the_mark(&moto, ["--otlp-grpc", &grpc.to_string()]).await;

    let call = format!("http://{}/daemon/health", daemon.tcp_addr());
    let (run, ()) = tokio::join!(
        run_grpc_flask_peer(grpc, 1, call),
        crate::support::otlp::release_once_busy(&daemon, &slow_xray, "otlp_grpc"),
    );
    assert_eq!(run["export_ok"], true, "the exporter got through: {run}");
    let spans = run["spans"].as_array().expect("spans");
    let server = spans
        .iter()
        .find(|s| s["kind"] == "SERVER")
        .expect("a SERVER span");
    let otel_trace = xray_trace_id(server["trace_id"].as_str().expect("trace id"));
    moto.wait_for_documents(TEST_REGION, &[&otel_trace], spans.len(), ARRIVAL)
        .await;
    let stats = daemon.stats().await;
    let requests = &stats.inputs["otlp_grpc"].requests;
    assert!(requests["busy"] >= 1, "UNAVAILABLE first: {stats:?}");
    assert_eq!(requests["accepted"], 1, "then taken once: {stats:?}");
    assert_eq!(stats.inputs["otlp_grpc"].accepted, spans.len() as u64);
}

/// What grpcio got for one call (`tests/peers/grpc_calls.py`).
#[derive(Debug, serde::Deserialize)]
struct GrpcCall {
    path: String,
    code: String,
    details: Option<String>,
    reply_hex: Option<String>,
}

/// Makes raw unary calls with grpcio: each a method path and the message's bytes.
async fn grpc_calls(addr: SocketAddr, calls: &[(&str, Vec<u8>)]) -> Vec<GrpcCall> {
    let mut args = vec![addr.to_string()];
    for (path, message) in calls {
        args.push((*path).to_owned());
        args.push(message.iter().map(|b| format!("{b:02x}")).collect());
    }
    let line = run_python_peer_with_env("the grpcio caller", "grpc_calls.py", &args, &[]).await;
    #[derive(serde::Deserialize)]
    struct Report {
        calls: Vec<GrpcCall>,
    }
    let report: Report = serde_json::from_str(&line).expect("the caller's JSON line");
    assert_eq!(report.calls.len(), calls.len(), "{line}");
    report.calls
}

/// A protobuf `ExportTraceServiceRequest` with one SERVER span.
fn one_span(trace_id: [u8; 16], span_id: [u8; 8]) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: trace_id.to_vec(),
                    span_id: span_id.to_vec(),
                    name: "grpc-op".into(),
                    kind: 2,
                    start_time_unix_nano: 1_700_000_000_000_000_000,
                    end_time_unix_nano: 1_700_000_000_250_000_000,
                    ..Span::default()
                }],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
    .encode_to_vec()
}

/// The metrics and logs services get `UNIMPLEMENTED` naming the exporter setting that stops
/// them, garbage gets `INVALID_ARGUMENT`; each is counted under `inputs.otlp_grpc.requests`, and
/// the daemon keeps serving: a good export after them is answered `OK` and its span reaches
/// moto.
#[tokio::test]
async fn other_services_and_garbage_get_their_codes_and_the_daemon_keeps_serving() {
    let moto = Moto::start().await;
    let grpc = free_addr();
    let daemon = Daemon::builder()
        .upstream(&moto)
        .args(["--otlp-grpc", &grpc.to_string()])
        .start()
        .await;
    let trace = [
        0x57, 0x59, 0xe9, 0x88, 0xbd, 0x86, 0x2e, 0x3f, 0xe1, 0xbe, 0x46, 0xa9, 0x94, 0x27, 0x27,
        0x93,
    ];
    let span = [0x53, 0x99, 0x5c, 0x3f, 0x42, 0xcd, 0x8a, 0xd8];
    let calls = grpc_calls(
        grpc,
        &[
            (METRICS_EXPORT_PATH, Vec::new()),
            (LOGS_EXPORT_PATH, Vec::new()),
            (TRACES_EXPORT_PATH, vec![0xff; 64]),
            (TRACES_EXPORT_PATH, one_span(trace, span)),
        ],
    )
    .await;
    let codes: Vec<&str> = calls.iter().map(|c| c.code.as_str()).collect();
    assert_eq!(
        codes,
        ["UNIMPLEMENTED", "UNIMPLEMENTED", "INVALID_ARGUMENT", "OK"],
        "{calls:#?}"
    );
    let details = |i: usize| calls[i].details.as_deref().unwrap_or_default();
    assert!(
        details(0).contains("OTEL_METRICS_EXPORTER=none"),
        "{calls:#?}"
    );
    assert!(details(1).contains("OTEL_LOGS_EXPORTER=none"), "{calls:#?}");
    assert!(
        details(2).contains("ExportTraceServiceRequest"),
        "{calls:#?}"
    );
    assert_eq!(
        calls[3].reply_hex.as_deref(),
        Some(""),
        "full success: an empty ExportTraceServiceResponse ({})",
        calls[3].path
    );

    let trace_hex: String = trace.iter().map(|b| format!("{b:02x}")).collect();
    let stored = moto
        .wait_for_documents(TEST_REGION, &[xray_trace_id(&trace_hex)], 1, ARRIVAL)
        .await;
    let doc: Value = serde_json::from_str(&stored[0]).expect("JSON document");
    assert_eq!(doc["id"], "53995c3f42cd8ad8", "{doc}");
    let health = daemon.get("/daemon/health").await.expect("health");
    assert_eq!(health.status, 200, "still serving");
    let stats = daemon
        .wait_for_stats(|s| s.sent == 1 && s.in_flight == 0, ARRIVAL)
        .await;
    let requests = &stats.inputs["otlp_grpc"].requests;
    for (outcome, n) in [("not_traces", 2), ("undecodable", 1), ("accepted", 1)] {
        assert_eq!(requests[outcome], n, "{outcome}: {stats:?}");
    }
    assert_balanced(&stats);
}
