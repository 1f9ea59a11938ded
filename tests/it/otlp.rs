//! OpenTelemetry in, part 1: OTLP/HTTP from the real OpenTelemetry SDK for Python, converted to
//! X-Ray segment documents that reach moto; and the receiver's answer to each kind of bad
//! request, against the real binary.

use std::io::Write as _;
use std::time::Duration;

use serde_json::Value;

use crate::support::flask::run_python_peer_with_env;
use crate::support::http::{Response, request, request_within};
use crate::support::udp_tap::UdpTap;
use crate::support::{Daemon, Moto, TEST_REGION, assert_balanced, free_addr};

/// How long spans may take to reach moto on this shared 2-core machine.
const ARRIVAL: Duration = Duration::from_secs(40);

/// A daemon relaying to `moto`, receiving OTLP/HTTP on a port of its own.
async fn daemon_with_otlp(moto: &Moto, extra: &[&str]) -> (Daemon, std::net::SocketAddr) {
    let otlp = free_addr();
    let daemon = Daemon::builder()
        .upstream(moto)
        .args(["--otlp-http", &otlp.to_string()])
        .args(extra)
        .start()
        .await;
    (daemon, otlp)
}

/// The X-Ray form of an OTLP trace id in hex.
fn xray_trace_id(hex: &str) -> String {
    format!("1-{}-{}", &hex[..8], &hex[8..])
}

/// The reference user's OpenTelemetry half (Flask, requests, BatchSpanProcessor, the OTLP/HTTP
/// protobuf exporter, configured by OTEL_* variables only): after three requests moto holds,
/// per request, one segment for the SERVER span and the nested subsegments beneath it with the
/// right parents, times and HTTP fields, and `app.hubabuba` as an annotation (indexed).
#[tokio::test]
async fn otel_flask_spans_reach_moto_as_segments_with_their_subsegments() {
    let moto = Moto::start().await;
    let (daemon, otlp) = daemon_with_otlp(&moto, &["--indexed-attributes", "app.hubabuba"]).await;
    let endpoint = format!("http://{otlp}");
    let call = format!("http://{}/daemon/health", daemon.tcp_addr());
    let line = run_python_peer_with_env(
        "the OpenTelemetry Flask peer",
        "otel_flask_app.py",
        &["3".to_owned(), call],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", "otel-flask"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-team=checkout"),
        ],
    )
    .await;
    let run: Value = serde_json::from_str(&line).expect("the peer's JSON line");
    assert_eq!(run["export_ok"], true, "{line}");
    let spans = run["spans"].as_array().expect("spans");
    let servers: Vec<&Value> = spans.iter().filter(|s| s["kind"] == "SERVER").collect();
    assert_eq!(servers.len(), 3, "one SERVER span a request: {line}");

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
        // The SERVER span: a segment named after the service, with its HTTP fields.
        let segment = by_id(server["span_id"].as_str().expect("span id"));
        assert_eq!(segment["trace_id"], trace.as_str());
        assert_eq!(segment["name"], "otel-flask", "{segment}");
        assert!(segment.get("type").is_none() && segment.get("parent_id").is_none());
        assert_eq!(segment["http"]["request"]["method"], "GET", "{segment}");
        assert_eq!(segment["http"]["response"]["status"], 200, "{segment}");
        let start = server["start_ns"].as_f64().expect("start") / 1e9;
        let end = server["end_ns"].as_f64().expect("end") / 1e9;
        assert!((segment["start_time"].as_f64().expect("start_time") - start).abs() < 1e-3);
        assert!((segment["end_time"].as_f64().expect("end_time") - end).abs() < 1e-3);
        // Every other span: a subsegment document under its parent.
        for span in in_trace.iter().filter(|s| s["kind"] != "SERVER") {
            let doc = by_id(span["span_id"].as_str().expect("span id"));
            assert_eq!(doc["type"], "subsegment", "{doc}");
            assert_eq!(doc["trace_id"], trace.as_str(), "{doc}");
            assert_eq!(doc["parent_id"], span["parent_id"], "{doc}");
            match span["name"].as_str() {
                Some("home-activities-data") => {
                    assert_eq!(
                        doc["annotations"]["app_hubabuba"], "hubabuba-value",
                        "indexed attribute as an annotation: {doc}"
                    );
                }
                Some("home-result-activities") => {
                    assert_eq!(
                        doc["metadata"]["default"]["app.result.count"], 3,
                        "other attributes in metadata: {doc}"
                    );
                }
                _ if span["kind"] == "CLIENT" => {
                    assert_eq!(doc["namespace"], "remote", "{doc}");
                    assert_eq!(doc["http"]["request"]["method"], "GET", "{doc}");
                }
                _ => {}
            }
        }
    }
    let stats = daemon.stats().await;
    let otlp = &stats.inputs["otlp_http"];
    assert_eq!(otlp.accepted, spans.len() as u64, "{stats:?}");
    assert!(otlp.requests["accepted"] >= 1, "{stats:?}");
    assert_balanced(&stats);
}

/// Sends `body` to `/v1/traces` with these headers.
async fn post_traces(
    addr: std::net::SocketAddr,
    headers: &[(&str, &str)],
    body: impl Into<bytes::Bytes>,
) -> Response {
    request(addr, "POST", "/v1/traces", headers, body)
        .await
        .expect("POST /v1/traces")
}

/// Sends the headers of a JSON `POST /v1/traces` declaring `length` bytes and the first 64 KiB
/// of the body, then reads the answer until the daemon closes the connection.
async fn head_then_read(addr: std::net::SocketAddr, length: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let _ = stream.write_all(&vec![b' '; 64 * 1024]).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer));
    let _ = read.await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// One OTLP JSON request with one span per (trace id, span id) pair.
fn json_request(ids: &[(&str, &str)]) -> String {
    let spans: Vec<Value> = ids
        .iter()
        .map(|(trace, span)| {
            serde_json::json!({
                "traceId": trace, "spanId": span, "name": "op", "kind": 2,
                "startTimeUnixNano": "1700000000000000000",
                "endTimeUnixNano": 1_700_000_000_500_000_000u64,
                "attributes": [{"key": "http.method", "value": {"stringValue": "GET"}}],
                "unknownField": true
            })
        })
        .collect();
    serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
        "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}]
    }]})
    .to_string()
}

/// Each kind of bad request gets its documented status and message, and is counted; a request
/// with one span of bad ids gets `200` with `partial_success` for that span, and the good span
/// arrives; the daemon keeps serving throughout.
#[tokio::test]
async fn bad_otlp_requests_get_their_documented_answers_and_the_daemon_keeps_serving() {
    let moto = Moto::start().await;
    let (daemon, otlp) = daemon_with_otlp(&moto, &[]).await;
    let json = [("content-type", "application/json")];
    let protobuf = [("content-type", "application/x-protobuf")];

    // Garbage protobuf: 400 with a protobuf google.rpc.Status.
    let r = post_traces(otlp, &protobuf, vec![0xffu8; 64]).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
    // Bad JSON: 400 with a JSON Status naming the problem.
    let r = post_traces(otlp, &json, "{\"resourceSpans\": [").await;
    assert_eq!(r.status, 400, "{}", r.text());
    let status = r.json().expect("a JSON Status");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("OTLP JSON")),
        "{status}"
    );
    // Another content type, another encoding: 415.
    let r = post_traces(otlp, &[("content-type", "text/plain")], "hello").await;
    assert_eq!(r.status, 415, "{}", r.text());
    assert!(r.text().contains("application/x-protobuf"), "{}", r.text());
    let r = post_traces(otlp, &[json[0], ("content-encoding", "br")], "{}").await;
    assert_eq!(r.status, 415, "{}", r.text());
    // 30 MB declared: over the 20 MiB cap, answered before the body is read (a client that
    // keeps writing then sees the connection closed, so this one sends headers and a start).
    let answer = head_then_read(otlp, 30_000_000).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("OTEL_BSP_MAX_EXPORT_BATCH_SIZE"),
        "{answer}"
    );
    // A gzip bomb: 50 MiB of zeros in about 50 KB, refused once 20 MiB are out.
    let bomb = {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..50 {
            gz.write_all(&zeros).expect("gzip");
        }
        gz.finish().expect("gzip")
    };
    let r = post_traces(otlp, &[protobuf[0], ("content-encoding", "gzip")], bomb).await;
    assert_eq!(r.status, 413, "{}", r.text());
    // Metrics: 404 naming the setting that stops them.
    let r = request(otlp, "POST", "/v1/metrics", &protobuf, vec![0u8; 4])
        .await
        .expect("POST /v1/metrics");
    assert_eq!(r.status, 404);
    assert!(
        r.text().contains("OTEL_METRICS_EXPORTER=none"),
        "{}",
        r.text()
    );

    // One good span, one with an 8-byte trace id: 200, one refused in partial_success.
    let good_trace = "5759e988bd862e3fe1be46a994272793";
    let body = json_request(&[
        (good_trace, "53995c3f42cd8ad8"),
        ("5759e988bd862e3f", "53995c3f42cd8ad9"),
    ]);
    let r = post_traces(otlp, &json, body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json().expect("JSON answer");
    assert_eq!(answer["partialSuccess"]["rejectedSpans"], "1", "{answer}");
    let stored = moto
        .wait_for_documents(TEST_REGION, &[xray_trace_id(good_trace)], 1, ARRIVAL)
        .await;
    let doc: Value = serde_json::from_str(&stored[0]).expect("JSON document");
    assert_eq!(
        (doc["id"].as_str(), doc["name"].as_str()),
        (Some("53995c3f42cd8ad8"), Some("json-svc"))
    );
    // A good request answers {} in JSON.
    let r = post_traces(
        otlp,
        &json,
        json_request(&[(good_trace, "53995c3f42cd8ada")]),
    )
    .await;
    assert_eq!((r.status, r.text().trim()), (200, "{}"));

    let health = daemon.get("/daemon/health").await.expect("health");
    assert_eq!(health.status, 200, "still serving");
    let stats = daemon
        .wait_for_stats(
            |s| s.sent == 2 && s.in_flight == 0 && s.buffered == 0,
            ARRIVAL,
        )
        .await;
    let input = &stats.inputs["otlp_http"];
    for (outcome, n) in [
        ("undecodable", 2),
        ("unsupported_content_type", 1),
        ("unsupported_encoding", 1),
        ("too_large", 2),
        ("not_traces", 1),
        ("accepted", 2),
    ] {
        assert_eq!(input.requests[outcome], n, "{outcome}: {stats:?}");
    }
    assert_eq!((input.received, input.accepted), (3, 2), "{stats:?}");
    assert_eq!(input.refused["invalid_span"], 1, "{stats:?}");
    assert_balanced(&stats);
}

/// The OTLP high-water mark: while the buffer holds 75% of its budget (here, UDP segments in
/// calls that a slow X-Ray holds until the receiver has said so), the receiver answers `503`
/// with `Retry-After`; the Python exporter tries again, and its spans arrive once the calls are
/// over and there is room.
#[tokio::test]
async fn a_full_buffer_answers_503_and_the_sdk_spans_arrive_once_there_is_room() {
    let moto = Moto::start().await;
    let otlp = free_addr();
    let (daemon, slow_xray) =
        crate::support::otlp::held_past_the_mark(&moto, ["--otlp-http", &otlp.to_string()]).await;

    let endpoint = format!("http://{otlp}");
    let call = format!("http://{}/daemon/health", daemon.tcp_addr());
    let args = ["1".to_owned(), call];
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_SERVICE_NAME", "otel-flask"),
    ];
    let (line, ()) = tokio::join!(
        run_python_peer_with_env(
            "the OpenTelemetry Flask peer",
            "otel_flask_app.py",
            &args,
            &env
        ),
        crate::support::otlp::release_once_busy(&daemon, &slow_xray, "otlp_http"),
    );
    let run: Value = serde_json::from_str(&line).expect("the peer's JSON line");
    let spans = run["spans"].as_array().expect("spans");
    let server = spans
        .iter()
        .find(|s| s["kind"] == "SERVER")
        .expect("a SERVER span");
    let otel_trace = xray_trace_id(server["trace_id"].as_str().expect("trace id"));
    moto.wait_for_documents(TEST_REGION, &[&otel_trace], spans.len(), ARRIVAL)
        .await;
    let stats = daemon.stats().await;
    let requests = &stats.inputs["otlp_http"].requests;
    assert!(requests["busy"] >= 1, "a 503 first: {stats:?}");
    assert_eq!(requests["accepted"], 1, "then taken once: {stats:?}");
    assert_eq!(stats.inputs["otlp_http"].accepted, spans.len() as u64);
}

/// Decoding, decompression and conversion run off the runtime's one thread: during a flood of
/// 19 MiB gzip'd OTLP requests (each decoded and converted, then refused as more than the
/// buffer ever admits at once), the health check keeps answering within its timeout.
#[tokio::test]
async fn health_answers_during_a_flood_of_large_otlp_requests() {
    let otlp = free_addr();
    let builder = Daemon::builder();
    let sink = builder.dir().join("flood-sink.jsonl");
    let daemon = builder
        .args(["--sink", &format!("file:{}", sink.display())])
        .args(["-m", "20", "--otlp-http", &otlp.to_string()])
        .start()
        .await;
    // About 19 MiB of OTLP JSON: many spans with a few attributes each.
    let body = {
        let mut spans = Vec::new();
        let mut size = 0;
        let mut n = 0u64;
        while size < 19 * 1024 * 1024 {
            let span = serde_json::json!({
                "traceId": format!("{:032x}", n + 1), "spanId": format!("{:016x}", n + 1),
                "name": format!("op-{n}"), "kind": 3,
                "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000500000000",
                "attributes": [
                    {"key": "http.url", "value": {"stringValue": format!("http://svc/items/{n}")}},
                    {"key": "app.pad", "value": {"stringValue": "p".repeat(200)}}
                ]
            })
            .to_string();
            size += span.len() + 1;
            spans.push(span);
            n += 1;
        }
        let json = format!(
            "{{\"resourceSpans\":[{{\"resource\":{{}},\"scopeSpans\":[{{\"spans\":[{}]}}]}}]}}",
            spans.join(",")
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(json.as_bytes()).expect("gzip");
        bytes::Bytes::from(gz.finish().expect("gzip"))
    };
    // Four senders keep requests coming until the health checks are done: at least 5 s, and
    // until some request has been answered (a debug build on a loaded machine takes seconds
    // to decode one).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (body, stop, answered) = (body.clone(), stop.clone(), answered.clone());
        senders.spawn(async move {
            let headers = [
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let within = Duration::from_secs(60);
                let sent =
                    request_within(otlp, "POST", "/v1/traces", &headers, body.clone(), within);
                if let Ok(r) = sent.await {
                    answered.lock().expect("answers").push(r.status);
                }
            }
        });
    }
    let started = std::time::Instant::now();
    let mut slowest = Duration::ZERO;
    let mut checks = 0;
    while started.elapsed() < Duration::from_secs(5)
        || (answered.lock().expect("answers").is_empty()
            && started.elapsed() < Duration::from_secs(90))
    {
        let asked = std::time::Instant::now();
        let health = daemon.get("/daemon/health").await.expect("health answers");
        assert_eq!(health.status, 200);
        slowest = slowest.max(asked.elapsed());
        checks += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while senders.join_next().await.is_some() {}
    let answers = answered.lock().expect("answers").clone();
    assert!(
        slowest < Duration::from_secs(1),
        "health took {slowest:?} during the flood ({checks} checks)"
    );
    assert!(
        answers.contains(&413),
        "decoded, then refused as too large: {answers:?}"
    );
    let stats = daemon.stats().await;
    assert!(
        stats.inputs["otlp_http"].requests["too_large"] >= 1,
        "{stats:?}"
    );
}

/// The local sinks get spans as spans: `--sink stdout` prints one line per span (trace id, span
/// id, kind, name, duration, status), `--sink file:PATH` writes a one-span OTLP JSON line that
/// no reader can take for an X-Ray document. No AWS account needed.
#[tokio::test]
async fn local_sinks_print_and_write_spans_as_spans() {
    let otlp = free_addr();
    let builder = Daemon::builder();
    let file = builder.dir().join("spans.jsonl");
    let daemon = builder
        .args([
            "--sink",
            "stdout",
            "--sink",
            &format!("file:{}", file.display()),
        ])
        .args(["--otlp-http", &otlp.to_string()])
        .start()
        .await;
    let trace = "5759e988bd862e3fe1be46a994272793";
    let r = post_traces(
        otlp,
        &[("content-type", "application/json")],
        json_request(&[(trace, "53995c3f42cd8ad8")]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    daemon.wait_for_stats(|s| s.sent == 1, ARRIVAL).await;
    let line = daemon
        .stdout()
        .lines()
        .find(|l| l.contains("53995c3f42cd8ad8"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no line for the span:\n{}", daemon.stdout()));
    assert!(
        line.starts_with("1-5759e988-bd862e3fe1be46a994272793 53995c3f42cd8ad8"),
        "{line}"
    );
    assert!(
        line.contains("server") && line.contains("\"op\"") && line.contains("500.0 ms"),
        "{line}"
    );
    let written = std::fs::read_to_string(&file).expect("the file sink's file");
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines.len(), 1, "{written}");
    let span: Value = serde_json::from_str(lines[0]).expect("a JSON line");
    let s = &span["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    assert_eq!(
        (s["traceId"].as_str(), s["spanId"].as_str()),
        (Some(trace), Some("53995c3f42cd8ad8"))
    );
}

/// The migration case: an X-Ray SDK service calls an OpenTelemetry service that runs with
/// `OTEL_PROPAGATORS=xray,tracecontext`. Moto holds one trace: the X-Ray SDK's documents byte
/// for byte as the SDK sent them, and the OpenTelemetry service's segment whose `parent_id` is
/// the caller's subsegment for the call.
#[tokio::test]
async fn an_xray_sdk_caller_and_an_opentelemetry_callee_make_one_trace() {
    let moto = Moto::start().await;
    let (daemon, otlp) = daemon_with_otlp(&moto, &[]).await;
    let tap = UdpTap::start(daemon.udp_addr()).await;
    let endpoint = format!("http://{otlp}");
    let tap_addr = tap.addr().to_string();
    let line = run_python_peer_with_env(
        "the migration peer",
        "migration.py",
        &[],
        &[
            ("AWS_XRAY_DAEMON_ADDRESS", &tap_addr),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", "otel-callee"),
            ("OTEL_PROPAGATORS", "xray,tracecontext"),
        ],
    )
    .await;
    let run: Value = serde_json::from_str(&line).expect("the peer's JSON line");
    let trace = run["xray_trace_id"].as_str().expect("X-Ray trace id");
    let otel_trace = run["otel_trace_id"].as_str().expect("OTel trace id");
    assert_eq!(xray_trace_id(otel_trace), trace, "one trace: {line}");
    assert_eq!(run["otel_parent_id"], run["call_subsegment_id"], "{line}");

    let emitted = tap.wait_for(1, Duration::from_secs(10)).await;
    let sdk_docs: Vec<Vec<u8>> = emitted
        .iter()
        .map(|d| {
            let newline = d.iter().position(|b| *b == b'\n').expect("header line");
            d[newline + 1..].to_vec()
        })
        .collect();
    let stored = moto
        .wait_for_documents(TEST_REGION, &[trace], sdk_docs.len() + 1, ARRIVAL)
        .await;
    for doc in &sdk_docs {
        assert!(
            stored.iter().any(|s| s.as_bytes() == doc.as_slice()),
            "the SDK's document is stored byte for byte: {}",
            String::from_utf8_lossy(doc)
        );
    }
    let otel_id = run["otel_server_span_id"].as_str().expect("span id");
    let otel_doc: Value = stored
        .iter()
        .map(|s| serde_json::from_str::<Value>(s).expect("JSON"))
        .find(|d| d["id"] == otel_id)
        .unwrap_or_else(|| panic!("no segment {otel_id} in {stored:#?}"));
    assert_eq!(otel_doc["name"], "otel-callee", "{otel_doc}");
    assert_eq!(otel_doc["trace_id"], trace, "{otel_doc}");
    assert_eq!(
        otel_doc["parent_id"], run["call_subsegment_id"],
        "{otel_doc}"
    );
    assert!(otel_doc.get("type").is_none(), "a segment: {otel_doc}");
}

/// The README's OTLP quick start, run as written (`curl … -d '…'`) against `--sink stdout
/// --otlp-http`: the daemon answers `{}` and prints the line the README shows.
#[tokio::test]
async fn readme_curl_span_is_printed() {
    let readme =
        std::fs::read_to_string(crate::support::repo_root().join("README.md")).expect("README.md");
    let command = readme
        .lines()
        .find(|l| l.starts_with("curl -s -H 'content-type: application/json'"))
        .expect("the README's curl line");
    let after = &readme[readme.find(command).expect("curl line")..];
    let expected = after
        .split("```\n")
        .nth(2)
        .and_then(|block| block.lines().next())
        .expect("the line the README says is printed")
        .to_owned();
    let otlp = free_addr();
    let daemon = Daemon::builder()
        .args(["--sink", "stdout", "--otlp-http", &otlp.to_string()])
        .start()
        .await;
    let command = command.replace("127.0.0.1:4318", &otlp.to_string());
    let out = crate::support::proc::run_shell(&command, "curl").await;
    assert_eq!(out.trim(), "{}");
    daemon.wait_for_stdout_line(&expected, ARRIVAL).await;
}

/// OTLP JSON from the OpenTelemetry JS SDK (`@opentelemetry/exporter-trace-otlp-http`, whose
/// default is JSON): its SERVER span becomes a segment and its child a subsegment in moto.
#[tokio::test]
async fn node_otlp_json_spans_reach_moto_as_segments() {
    let moto = Moto::start().await;
    let (_daemon, otlp) = daemon_with_otlp(&moto, &[]).await;
    let peer = crate::support::repo_root().join("tests/peers/node");
    assert!(
        peer.join("node_modules").is_dir(),
        "{}/node_modules is missing: run scripts/test.sh once (it runs npm ci there)",
        peer.display()
    );
    let mut command = tokio::process::Command::new("node");
    command
        .arg(peer.join("otlp_json.mjs"))
        .arg(format!("http://{otlp}/v1/traces"));
    let stdout =
        crate::support::flask::run_peer("the Node peer (Node.js is needed)", command).await;
    let run: Value = serde_json::from_str(stdout.trim()).expect("the peer's JSON line");
    let spans = run["spans"].as_array().expect("spans");
    assert_eq!(spans.len(), 2, "{stdout}");
    let trace = xray_trace_id(spans[0]["trace_id"].as_str().expect("trace id"));
    let stored = moto
        .wait_for_documents(TEST_REGION, &[&trace], 2, ARRIVAL)
        .await;
    let docs: Vec<Value> = stored
        .iter()
        .map(|d| serde_json::from_str(d).expect("JSON"))
        .collect();
    for span in spans {
        let doc = docs
            .iter()
            .find(|d| d["id"] == span["span_id"])
            .unwrap_or_else(|| panic!("no document for {span} in {stored:#?}"));
        match span["name"].as_str() {
            Some("node-request") => {
                assert_eq!(doc["name"], "node-app", "{doc}");
                assert_eq!(doc["http"]["response"]["status"], 200, "{doc}");
            }
            _ => {
                assert_eq!(doc["type"], "subsegment", "{doc}");
                assert_eq!(doc["parent_id"], span["parent_id"], "{doc}");
                assert_eq!(doc["metadata"]["default"]["app.hubabuba"], "node", "{doc}");
            }
        }
    }
}
