//! `--sink otlp:URL` beside `--sink xray`: X-Ray SDK documents go to moto byte for byte and,
//! converted, to an OTLP backend played by a recording fault injector (answers `/v1/traces`
//! itself; what it received is decoded by `tests/peers/otlp_decode.py` with PyPI
//! `opentelemetry-proto`, not by the daemon's code), with scripted faults where a real backend
//! cannot be made to fail on cue.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};

use crate::support::flask::run_python_peer_with_env;
use crate::support::otlp::otlp_answer;
use crate::support::{
    Daemon, FaultInjector, Moto, Recorded, Step, TEST_REGION, assert_balanced, new_segment_id,
    new_trace_id, segment_json,
};

/// How long documents may take to arrive on this shared 2-core machine.
const ARRIVAL: Duration = Duration::from_secs(40);

/// Moto, and a recording injector playing an OTLP backend on `path` (200 with an empty
/// `ExportTraceServiceResponse`, after the `script`).
async fn backend(path: &str, script: Vec<Step>) -> (Moto, FaultInjector) {
    let moto = Moto::start().await;
    let injector = FaultInjector::with_script(&moto.endpoint(), script).await;
    injector.always(path, otlp_answer(200, &[], Bytes::new()));
    (moto, injector)
}

/// Every request the backend received on `path`.
fn calls(injector: &FaultInjector, path: &str) -> Vec<Recorded> {
    injector
        .requests()
        .into_iter()
        .filter(|r| r.path == path)
        .collect()
}

/// The backend's requests decoded by the Python peer.
async fn decoded(daemon: &Daemon, calls: &[Recorded]) -> Value {
    let recorded: Vec<Value> = calls
        .iter()
        .map(|c| json!({"headers": c.headers, "body_hex": hex::encode(&c.body)}))
        .collect();
    let file = daemon.dir().join("otlp-recorded.json");
    std::fs::write(&file, Value::Array(recorded).to_string()).expect("write the recording");
    let line = run_python_peer_with_env(
        "the OTLP decoder",
        "otlp_decode.py",
        &[file.display().to_string()],
        &[],
    )
    .await;
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

fn span<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(|s| s["span_id"] == id))
        .unwrap_or_else(|| panic!("span {id} not received: {report:#}"))
}

/// The issue's case with an X-Ray SDK's documents: a subsegment streamed before its segment
/// (so its service name must be learned), a segment with HTTP, a fault, an integer
/// annotation and times with microseconds. Moto stores the documents byte for byte; the OTLP
/// backend gets the conversion, gzip'd, with the sink's own header, and the X-Ray id's hex as
/// trace id.
#[tokio::test]
async fn x_ray_documents_reach_x_ray_byte_for_byte_and_an_otlp_backend_converted() {
    let (moto, injector) = backend("/custom/traces", Vec::new()).await;
    let url = format!("{}/custom/traces", injector.endpoint());
    let daemon = Daemon::builder()
        .upstream(&moto)
        .args(["--sink", "xray", "--sink", &format!("otlp:{url}")])
        .args(["--otlp-header", "x-team=team-key-123"])
        .start()
        .await;
    let trace = new_trace_id();
    let segment = new_segment_id();
    let sub = new_segment_id();
    let subsegment = format!(
        r#"{{"type": "subsegment", "trace_id": "{trace}", "id": "{sub}", "parent_id": "{segment}", "name": "dynamodb", "namespace": "aws", "start_time": 1764662400.123456, "end_time": 1764662400.223457, "aws": {{"operation": "GetItem", "table_name": "users"}}}}"#
    );
    let root = format!(
        r#"{{"trace_id": "{trace}", "id": "{segment}", "name": "flask-app", "start_time": 1764662400.1, "end_time": 1764662400.5, "fault": true, "http": {{"request": {{"method": "GET", "url": "http://localhost/users/7"}}, "response": {{"status": 500}}}}, "annotations": {{"user_id": 7, "tier": "gold"}}}}"#
    );
    daemon.send_segment(&subsegment);
    daemon.send_segment(&root);

    let stats = daemon
        .wait_for_stats(
            |s| {
                s.sinks.get("xray").is_some_and(|x| x.sent == 2)
                    && s.sinks
                        .get(&format!("otlp:{url}"))
                        .is_some_and(|x| x.sent == 2)
            },
            ARRIVAL,
        )
        .await;
    assert_balanced(&stats);
    let stored = moto
        .wait_for_documents(TEST_REGION, &[&trace], 2, ARRIVAL)
        .await;
    for doc in [&subsegment, &root] {
        assert!(stored.contains(doc), "byte for byte: {doc} in {stored:?}");
    }

    let calls = calls(&injector, "/custom/traces");
    assert!(!calls.is_empty());
    for call in &calls {
        assert_eq!(call.header("x-team"), Some("team-key-123"));
        assert_eq!(call.header("content-encoding"), Some("gzip"));
        assert_eq!(call.header("content-type"), Some("application/x-protobuf"));
        assert!(call.header("authorization").is_none(), "not signed");
    }
    let report = decoded(&daemon, &calls).await;
    assert_eq!(
        report["spans"].as_array().map(Vec::len),
        Some(2),
        "{report:#}"
    );
    let trace_hex = trace.split('-').skip(1).collect::<String>();
    let seg = span(&report, &segment);
    assert_eq!(seg["trace_id"], trace_hex.as_str());
    assert_eq!(seg["parent_span_id"], "");
    assert_eq!(seg["name"], "flask-app");
    assert_eq!(seg["kind"], 2, "SERVER");
    assert_eq!(seg["status"], 2, "a fault is ERROR");
    assert_eq!(seg["start"], "1764662400100000000");
    assert_eq!(seg["end"], "1764662400500000000");
    assert_eq!(
        seg["resource"]["service.name"],
        json!(["string_value", "flask-app"])
    );
    assert_eq!(
        seg["attributes"]["user_id"],
        json!(["int_value", "7"]),
        "an int stays one"
    );
    assert_eq!(seg["attributes"]["tier"], json!(["string_value", "gold"]));
    assert_eq!(
        seg["attributes"]["aws.xray.fault"],
        json!(["bool_value", true])
    );
    assert_eq!(
        seg["attributes"]["http.status_code"],
        json!(["int_value", "500"])
    );
    assert_eq!(
        seg["attributes"]["http.method"],
        json!(["string_value", "GET"])
    );
    let child = span(&report, &sub);
    assert_eq!(child["trace_id"], trace_hex.as_str());
    assert_eq!(child["parent_span_id"], segment.as_str());
    assert_eq!(child["kind"], 3, "CLIENT: an AWS call");
    assert_eq!(child["start"], "1764662400123456000");
    assert_eq!(child["end"], "1764662400223457000");
    assert_eq!(
        child["resource"]["service.name"],
        json!(["string_value", "flask-app"]),
        "streamed before its segment, named after it"
    );
    assert_eq!(
        child["attributes"]["aws.operation"],
        json!(["string_value", "GetItem"])
    );
    let log = daemon.stdout() + &daemon.stderr();
    assert!(
        !log.contains("team-key-123"),
        "a header value is never logged"
    );
}

/// Documents held back across batches: a subsegment streamed well before its segment (in a
/// batch of its own) still takes the segment's name; an in-progress segment whose complete
/// document follows is not sent (the complete one is, once); one that never completes is sent
/// marked `aws.xray.inprogress` when its hold is over. Moto gets every document as sent.
#[tokio::test]
async fn subsegments_and_in_progress_documents_are_held_until_their_segment_comes() {
    let (moto, injector) = backend("/v1/traces", Vec::new()).await;
    let sink = format!("otlp:{}", injector.endpoint());
    let lane = format!("{sink}/v1/traces");
    let daemon = Daemon::builder()
        .upstream(&moto)
        .args(["--sink", "xray", "--sink", &sink])
        .start()
        .await;
    let trace = new_trace_id();
    let (segment, sub, never) = (new_segment_id(), new_segment_id(), new_segment_id());
    let subsegment = format!(
        r#"{{"type": "subsegment", "trace_id": "{trace}", "id": "{sub}", "parent_id": "{segment}", "name": "query", "start_time": 1764662400.2, "end_time": 1764662400.3}}"#
    );
    let open = format!(
        r#"{{"trace_id": "{trace}", "id": "{segment}", "name": "slow-app", "start_time": 1764662400.1, "in_progress": true}}"#
    );
    let complete = format!(
        r#"{{"trace_id": "{trace}", "id": "{segment}", "name": "slow-app", "start_time": 1764662400.1, "end_time": 1764662400.9}}"#
    );
    let open_forever = format!(
        r#"{{"trace_id": "{trace}", "id": "{never}", "name": "stuck-app", "start_time": 1764662400.1, "in_progress": true}}"#
    );
    daemon.send_segment(&subsegment);
    daemon.send_segment(&open_forever);
    // Past the sink's 1 s linger: the subsegment's first batch goes without its segment.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    daemon.send_segment(&open);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    daemon.send_segment(&complete);
    let stats = daemon
        .wait_for_stats(
            |s| {
                s.sinks.get(&lane).is_some_and(|x| x.sent == 4)
                    && s.sinks.get("xray").is_some_and(|x| x.sent == 4)
            },
            ARRIVAL,
        )
        .await;
    assert_balanced(&stats);
    assert_eq!(stats.retried, 0, "held back is not retried: {stats:?}");
    let stored = moto
        .wait_for_documents(TEST_REGION, &[&trace], 4, ARRIVAL)
        .await;
    for doc in [&subsegment, &open, &complete, &open_forever] {
        assert!(stored.contains(doc), "byte for byte: {doc} in {stored:?}");
    }
    let report = decoded(&daemon, &calls(&injector, "/v1/traces")).await;
    let spans = report["spans"].as_array().cloned().unwrap_or_default();
    assert_eq!(spans.len(), 3, "{report:#}");
    let child = span(&report, &sub);
    assert_eq!(
        child["resource"]["service.name"],
        json!(["string_value", "slow-app"]),
        "held until its segment came"
    );
    let seg = span(&report, &segment);
    assert_eq!(seg["end"], "1764662400900000000", "the complete one");
    assert!(seg["attributes"].get("aws.xray.inprogress").is_none());
    let stuck = span(&report, &never);
    assert_eq!(
        stuck["attributes"]["aws.xray.inprogress"],
        json!(["bool_value", true])
    );
    assert_eq!(
        stuck["resource"]["service.name"],
        json!(["string_value", "stuck-app"])
    );
}

/// The fault matrix, five documents one after another against the script 429 (`Retry-After:
/// 1`), 503, 400, 413, partial success: the first document is retried after the `429` (not
/// before a second) and the `503`, then given up on the `400` (`upload_failed`); the second is
/// given up on the `413`; the third is refused by the partial success (not resent); the last
/// two are sent. Meanwhile every document reaches moto.
#[tokio::test]
async fn an_otlp_backends_answers_are_followed_and_x_ray_never_waits_on_it() {
    #[derive(Clone, PartialEq, prost::Message)]
    struct Partial {
        #[prost(int64, tag = "1")]
        rejected_spans: i64,
        #[prost(string, tag = "2")]
        error_message: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Response {
        #[prost(message, optional, tag = "1")]
        partial_success: Option<Partial>,
    }
    let partial = prost::Message::encode_to_vec(&Response {
        partial_success: Some(Partial {
            rejected_spans: 1,
            error_message: "span too old".into(),
        }),
    });
    let path = "/v1/traces";
    let script = vec![
        Step::on(
            path,
            otlp_answer(429, &[("retry-after", "1")], Bytes::new()),
        ),
        Step::on(path, otlp_answer(503, &[], Bytes::new())),
        Step::on(
            path,
            otlp_answer(400, &[], Bytes::from_static(b"bad request")),
        ),
        Step::on(path, otlp_answer(413, &[], Bytes::new())),
        Step::on(path, otlp_answer(200, &[], partial)),
    ];
    let (moto, injector) = backend(path, script).await;
    let sink = format!("otlp:{}", injector.endpoint());
    let daemon = Daemon::builder()
        .upstream(&moto)
        .args(["--sink", "xray", "--sink", &sink])
        .args(["--otlp-header", "x-mlflow-experiment-id=0"])
        .start()
        .await;
    let lane = format!("{sink}/v1/traces");
    let mut traces = Vec::new();
    let mut sent_at = Instant::now();
    // One document per call, each after the previous call's outcome is known.
    for n in 0..5u64 {
        let trace = new_trace_id();
        daemon.send_segment(&segment_json(&trace, &new_segment_id(), "matrix"));
        traces.push(trace);
        if n == 0 {
            sent_at = Instant::now();
        }
        daemon
            .wait_for_stats(
                |s| {
                    s.sinks.get(&lane).is_some_and(|x| {
                        x.sent + x.rejected + x.dropped.values().sum::<u64>() == n + 1
                    })
                },
                ARRIVAL,
            )
            .await;
    }
    // X-Ray's lane goes at its own pace: its last call may still be under way.
    let stats = daemon
        .wait_for_stats(
            |s| s.sinks.get("xray").is_some_and(|x| x.sent == 5),
            ARRIVAL,
        )
        .await;
    assert_balanced(&stats);
    let otlp = &stats.sinks[&lane];
    assert_eq!(
        otlp.sent, 2,
        "the first document, retried after the 429 and the 503, met the 400; the last two \
         were sent: {otlp:?}"
    );
    assert_eq!(
        otlp.dropped.get("upload_failed").copied(),
        Some(2),
        "{otlp:?}"
    );
    assert_eq!(otlp.rejected, 1, "partial success: {otlp:?}");
    let refs: Vec<&str> = traces.iter().map(String::as_str).collect();
    moto.wait_for_documents(TEST_REGION, &refs, 5, ARRIVAL)
        .await;
    let received = calls(&injector, path);
    assert_eq!(received.len(), 7, "5 documents, 2 of them twice");
    // The 429's retry came after its Retry-After.
    assert!(
        received[1]
            .received_at
            .duration_since(received[0].received_at)
            >= Duration::from_millis(950),
        "{:?}",
        received[1]
            .received_at
            .duration_since(received[0].received_at)
    );
    assert!(sent_at.elapsed() < ARRIVAL * 2);
}

/// A dead OTLP backend (connection refused, then hanging) never holds back X-Ray: documents
/// reach moto as they come; once the backend is back, what it missed arrives.
#[tokio::test]
async fn a_dead_otlp_backend_never_delays_x_ray() {
    let (moto, injector) = backend("/v1/traces", Vec::new()).await;
    let sink = format!("otlp:{}", injector.endpoint());
    let daemon = Daemon::builder()
        .upstream(&moto)
        .args(["--sink", "xray", "--sink", &sink, "--upload-timeout", "2"])
        .start()
        .await;
    injector.go_down();
    let mut traces = Vec::new();
    for _ in 0..20 {
        let trace = new_trace_id();
        daemon.send_segment(&segment_json(&trace, &new_segment_id(), "while-down"));
        traces.push(trace);
    }
    let refs: Vec<&str> = traces.iter().map(String::as_str).collect();
    let started = Instant::now();
    moto.wait_for_documents(TEST_REGION, &refs, 20, ARRIVAL)
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let lane = format!("{sink}/v1/traces");
    let stats = daemon.stats().await;
    assert_eq!(stats.sinks[&lane].sent, 0, "{stats:?}");
    injector.come_back().await;
    let stats = daemon
        .wait_for_stats(
            |s| s.sinks.get(&lane).is_some_and(|x| x.sent == 20),
            ARRIVAL,
        )
        .await;
    assert_balanced(&stats);
}

/// A bare `--sink otlp` takes `OTEL_EXPORTER_OTLP_ENDPOINT` (with `/v1/traces` appended) and
/// `OTEL_EXPORTER_OTLP_HEADERS`; with neither it refuses to start, naming both ways to give a
/// URL; a URL that is the daemon's own OTLP receiver is refused as a loop.
#[tokio::test]
async fn a_bare_otlp_sink_takes_the_standard_variables_and_a_loop_is_refused() {
    let (_moto, injector) = backend("/v1/traces", Vec::new()).await;
    let daemon = Daemon::builder()
        .args(["--sink", "otlp"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", injector.endpoint())
        .env("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=s%3Dcret")
        .without_credentials()
        .start()
        .await;
    daemon.send_segment(&segment_json(&new_trace_id(), &new_segment_id(), "env"));
    let lane = format!("otlp:{}/v1/traces", injector.endpoint());
    daemon
        .wait_for_stats(|s| s.sinks.get(&lane).is_some_and(|x| x.sent == 1), ARRIVAL)
        .await;
    let got = calls(&injector, "/v1/traces");
    assert_eq!(got[0].header("x-api-key"), Some("s=cret"));

    let finished = Daemon::builder()
        .args(["--sink", "otlp"])
        .without_credentials()
        .run_to_exit(ARRIVAL)
        .await;
    assert_eq!(finished.status.code(), Some(1), "{}", finished.stderr);
    assert!(
        finished.stderr.contains("OTEL_EXPORTER_OTLP_ENDPOINT")
            && finished.stderr.contains("--sink otlp:"),
        "{}",
        finished.stderr
    );
    let finished = Daemon::builder()
        .args([
            "--otlp-http",
            "127.0.0.1:4318",
            "--sink",
            "otlp:http://localhost:4318",
        ])
        .without_credentials()
        .run_to_exit(ARRIVAL)
        .await;
    assert_eq!(finished.status.code(), Some(1), "{}", finished.stderr);
    assert!(finished.stderr.contains("loop"), "{}", finished.stderr);
}

/// `12345.6789` (a document's time as written) in nanoseconds, as text.
fn nanos_of(seconds: &str) -> String {
    let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
    let digits: String = fraction
        .chars()
        .chain(std::iter::repeat('0'))
        .take(9)
        .collect();
    format!("{whole}{digits}")
        .trim_start_matches('0')
        .to_owned()
}

/// The text of a top-level number field of a JSON document, as written.
fn number_text(doc: &str, field: &str) -> String {
    let key = format!("\"{field}\": ");
    let at = doc
        .find(&key)
        .map(|i| i + key.len())
        .unwrap_or_else(|| panic!("{field} in {doc}"));
    doc[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect()
}

/// The reference user's X-Ray half (Flask, the Python X-Ray SDK, subsegments streamed before
/// their segment) with `--sink xray --sink otlp:MLFLOW`: moto holds every document, and MLflow
/// (a real OTLP backend, with its `x-mlflow-experiment-id` header given per sink) holds each
/// trace under the X-Ray id's hex with the same span ids, parents, names, times to the
/// nanosecond, and attributes.
#[tokio::test]
async fn the_flask_apps_x_ray_traces_reach_mlflow_and_x_ray_at_once() {
    let mlflow = crate::support::mlflow::mlflow();
    let moto = Moto::start().await;
    let daemon = Daemon::builder()
        .upstream(&moto)
        .args(["--sink", "xray", "--sink", &format!("otlp:{}", mlflow.url)])
        .args(["--otlp-header", "x-mlflow-experiment-id=0"])
        .start()
        .await;
    let run = crate::support::run_flask_peer(&daemon.udp_addr().to_string(), 3, 0).await;
    let traces: Vec<&str> = run.trace_ids.iter().map(String::as_str).collect();
    let stored = moto
        .wait_for_documents(TEST_REGION, &traces, 9, ARRIVAL)
        .await;
    for request in &run.requests {
        let hex = request.trace_id.split('-').skip(1).collect::<String>();
        let spans = mlflow.wait_for_spans(&hex, 3, ARRIVAL).await;
        let by_id = |id: &str| {
            spans
                .iter()
                .find(|s| s["span_id"] == id)
                .unwrap_or_else(|| panic!("span {id} in {spans:#?}"))
        };
        let root = by_id(&request.segment_id);
        assert_eq!(root["name"], "flask-test");
        assert_eq!(root["parent_id"], Value::Null);
        assert_eq!(root["attributes"]["http.status_code"], 200);
        assert_eq!(root["attributes"]["http.method"], "GET");
        let document = stored
            .iter()
            .find(|d| d.contains(&format!("\"id\": \"{}\"", request.segment_id)))
            .unwrap_or_else(|| panic!("segment {} in moto", request.segment_id));
        assert_eq!(
            root["start_ns"],
            nanos_of(&number_text(document, "start_time"))
        );
        assert_eq!(root["end_ns"], nanos_of(&number_text(document, "end_time")));
        let names: Vec<&str> = request
            .subsegment_ids
            .iter()
            .map(|id| {
                let sub = by_id(id);
                assert_eq!(sub["parent_id"], request.segment_id.as_str(), "{sub:#}");
                sub["name"].as_str().unwrap_or_default()
            })
            .collect();
        assert_eq!(names, ["db", "cache"]);
        let db = by_id(&request.subsegment_ids[0]);
        assert_eq!(db["attributes"]["step"], "db", "the annotation");
        assert_eq!(db["attributes"]["aws.xray.annotations"], json!(["step"]));
    }
    // MLflow may hold the last spans before its answer reaches the daemon, which then counts.
    let lane = format!("otlp:{}/v1/traces", mlflow.url);
    let stats = daemon
        .wait_for_stats(|s| s.sinks.get(&lane).is_some_and(|x| x.sent == 9), ARRIVAL)
        .await;
    assert_balanced(&stats);
}

/// The reference user's OpenTelemetry half (OTLP/HTTP into the daemon) reaches MLflow
/// unchanged: the SDK's own trace and span ids, parents, names and attributes.
#[tokio::test]
async fn opentelemetry_spans_reach_mlflow_unchanged() {
    let mlflow = crate::support::mlflow::mlflow();
    let otlp = crate::support::free_addr();
    let daemon = Daemon::builder()
        .args(["--otlp-http", &otlp.to_string()])
        .args(["--sink", &format!("otlp:{}", mlflow.url)])
        .args(["--otlp-header", "x-mlflow-experiment-id=0"])
        .without_credentials()
        .start()
        .await;
    let call = format!("http://{}/daemon/health", daemon.tcp_addr());
    let line = run_python_peer_with_env(
        "the OpenTelemetry Flask peer",
        "otel_flask_app.py",
        &["1".to_owned(), call],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &format!("http://{otlp}")),
            ("OTEL_SERVICE_NAME", "otel-flask"),
        ],
    )
    .await;
    let run: Value = serde_json::from_str(&line).expect("the peer's JSON line");
    assert_eq!(run["export_ok"], true, "{line}");
    let sent = run["spans"].as_array().cloned().unwrap_or_default();
    assert!(sent.len() >= 3, "{line}");
    let trace = sent[0]["trace_id"].as_str().unwrap_or_default().to_owned();
    let got = mlflow.wait_for_spans(&trace, sent.len(), ARRIVAL).await;
    for span in &sent {
        let id = span["span_id"].as_str().unwrap_or_default();
        let twin = got
            .iter()
            .find(|g| g["span_id"] == id)
            .unwrap_or_else(|| panic!("span {id} in {got:#?}"));
        assert_eq!(twin["name"], span["name"]);
        assert_eq!(twin["parent_id"], span["parent_id"]);
        assert_eq!(twin["start_ns"], span["start_ns"].to_string());
        assert_eq!(twin["end_ns"], span["end_ns"].to_string());
    }
    assert!(
        got.iter()
            .any(|g| g["attributes"].get("app.hubabuba").is_some()),
        "the app's attribute app.hubabuba: {got:#?}"
    );
}

/// The config file's `Sinks` list: an OTLP backend with its header and compression from the
/// file (where an API key belongs: a command line shows in `ps`), and the key in no log line.
#[tokio::test]
async fn the_config_files_sinks_give_an_otlp_backend_its_own_header() {
    let (_moto, injector) = backend("/v1/traces", Vec::new()).await;
    let builder = Daemon::builder().without_credentials();
    let config = builder.write_file(
        "cfg.yaml",
        &format!(
            "Version: 2\nSinks:\n  - Type: stdout\n  - Type: otlp\n    Endpoint: {}\n    \
             Headers:\n      x-api-key: file-key-123\n    Compression: none\n",
            injector.endpoint()
        ),
    );
    let daemon = builder.arg("-c").arg(&config).start().await;
    daemon.send_segment(&segment_json(
        &new_trace_id(),
        &new_segment_id(),
        "from-file",
    ));
    let lane = format!("otlp:{}/v1/traces", injector.endpoint());
    // Each lane goes at its own pace: both are waited for.
    daemon
        .wait_for_stats(
            |s| {
                s.sinks.get(&lane).is_some_and(|x| x.sent == 1)
                    && s.sinks.get("stdout").is_some_and(|x| x.sent == 1)
            },
            ARRIVAL,
        )
        .await;
    let got = calls(&injector, "/v1/traces");
    assert_eq!(got[0].header("x-api-key"), Some("file-key-123"));
    assert_eq!(got[0].header("content-encoding"), None, "Compression: none");
    let report = decoded(&daemon, &got).await;
    assert_eq!(report["spans"][0]["name"], "from-file", "{report:#}");
    let log = daemon.stdout() + &daemon.stderr();
    assert!(!log.contains("file-key-123"), "{log}");
}
