//! The AWS distros for OpenTelemetry's UDP form, end to end: a header line, then `T1S`, `T1U`,
//! `T1` or `M1` and the base64 of an OTLP protobuf. The original daemon forwards these as they
//! are; so must we.
//!
//! moto cannot store them: its `PutTraceSegments` parses every document as JSON and answers
//! each of these with an `UnprocessedTraceSegments` entry (`JSONFormatError`), where X-Ray
//! ingests them. So what is checked is what reaches moto's HTTP API, recorded by a
//! [`FaultInjector`] in pass-through, and moto's own answer; a JSON segment sent beside them is
//! the control that the same path stores what moto can store.

use std::time::Duration;

use serde_json::Value;

use crate::support::flask::run_peer;
use crate::support::paths::distro_venv_bin;
use crate::support::udp_tap::UdpTap;
use crate::support::{
    Daemon, FaultInjector, Moto, TEST_REGION, assert_balanced, datagram, new_segment_id,
    new_trace_id, peer_script, segment_json,
};

/// What the distros' exporters write after the prefix: base64 of an OTLP export request (this
/// one holds a resource with `service.name`), with the `+`, `/` and `=` of the alphabet.
const OTLP_BASE64: &str = "CiQKIgoMc2VydmljZS5uYW1lEhIKEG15LXNlcnZpY2UtbmFtZRIA+/==";

/// How long a document may take from the daemon's socket to moto.
const ARRIVAL: Duration = Duration::from_secs(30);

/// The `TraceSegmentDocuments` of every `PutTraceSegments` the injector saw, in order.
fn documents_sent(injector: &FaultInjector) -> Vec<String> {
    injector
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/TraceSegments")
        .flat_map(|r| {
            let body: Value = r.json().expect("a PutTraceSegments body is JSON");
            body["TraceSegmentDocuments"]
                .as_array()
                .expect("TraceSegmentDocuments is an array")
                .iter()
                .map(|d| d.as_str().expect("each document is a string").to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn distro_span_datagrams_reach_x_ray_byte_for_byte() {
    let moto = Moto::start().await;
    let injector = FaultInjector::start(&moto.endpoint()).await;
    let daemon = Daemon::builder()
        .upload_to(&injector.endpoint())
        .start()
        .await;
    let distro: Vec<String> = ["T1S", "T1U", "T1", "M1"]
        .iter()
        .map(|prefix| format!("{prefix}{OTLP_BASE64}"))
        .collect();
    // The Java exporter writes its header with spaces; the others without.
    daemon.send(format!("{{\"format\": \"json\", \"version\": 1}}\n{}", distro[0]).as_bytes());
    for body in &distro[1..] {
        daemon.send(&datagram(body));
    }
    let trace = new_trace_id();
    let control = segment_json(&trace, &new_segment_id(), "control");
    daemon.send(&datagram(&control));

    let stored = moto
        .wait_for_documents(TEST_REGION, &[&trace], 1, ARRIVAL)
        .await;
    assert_eq!(
        stored,
        std::slice::from_ref(&control),
        "the JSON control is stored"
    );
    let stats = daemon
        .wait_for_stats(|s| s.sent + s.rejected == 5, ARRIVAL)
        .await;
    assert_balanced(&stats);

    // Each reached X-Ray's API once, byte for byte, as a JSON string.
    let mut sent = documents_sent(&injector);
    sent.sort();
    let mut expected = distro.clone();
    expected.push(control);
    expected.sort();
    assert_eq!(sent, expected, "the documents PutTraceSegments carried");
    assert!(
        injector
            .requests()
            .iter()
            .filter(|r| r.path == "/TraceSegments")
            .all(|r| r.upstream_status == Some(200)),
        "moto answered every call"
    );

    // moto refuses what is not JSON (X-Ray would take it); the daemon counts that as rejected.
    assert_eq!((stats.sent, stats.rejected), (1, 4), "{stats:?}");
    let udp = &stats.inputs["udp"];
    assert_eq!((udp.received, udp.accepted), (5, 5), "{udp:?}");
    for kind in ["json", "T1S", "T1U", "T1", "M1"] {
        assert_eq!(udp.accepted_by_kind[kind], 1, "{kind}: {udp:?}");
    }
    assert!(udp.refused.values().all(|n| *n == 0), "{udp:?}");
}

/// The real exporter: the AWS distro for OpenTelemetry's `OTLPUdpSpanExporter` (Python, in its
/// own venv), sampled and unsampled, one datagram per span. X-Ray (the fault injector in front
/// of moto) gets each datagram's body byte for byte, never converted and never twice; `--sink
/// stdout` prints the sampled spans as spans, and none of the unsampled ones.
#[tokio::test]
async fn the_distro_exporter_s_spans_reach_x_ray_as_sent_and_stdout_as_spans() {
    let moto = Moto::start().await;
    let injector = FaultInjector::start(&moto.endpoint()).await;
    let daemon = Daemon::builder()
        .upload_to(&injector.endpoint())
        .args(["--sink", "xray", "--sink", "stdout"])
        .start()
        .await;
    let tap = UdpTap::start(daemon.udp_addr()).await;
    let line = run_distro_peer(&tap.addr().to_string()).await;
    let run: Value = serde_json::from_str(&line).expect("the peer's JSON line");
    let sampled = run["sampled"].as_array().expect("sampled spans");
    let unsampled = run["unsampled"].as_array().expect("unsampled spans");
    assert_eq!((sampled.len(), unsampled.len()), (2, 2), "{line}");

    let emitted = tap.wait_for(4, Duration::from_secs(10)).await;
    let mut bodies: Vec<String> = emitted
        .iter()
        .map(|d| {
            let newline = d.iter().position(|b| *b == b'\n').expect("a header line");
            String::from_utf8(d[newline + 1..].to_vec()).expect("UTF-8 body")
        })
        .collect();
    assert_eq!(
        bodies.iter().filter(|b| b.starts_with("T1S")).count(),
        2,
        "{bodies:?}"
    );
    assert_eq!(bodies.iter().filter(|b| b.starts_with("T1U")).count(), 2);
    daemon
        .wait_for_stats(
            |s| s.sinks["xray"].sent + s.sinks["xray"].rejected == 4,
            ARRIVAL,
        )
        .await;
    let mut sent = documents_sent(&injector);
    sent.sort();
    bodies.sort();
    assert_eq!(sent, bodies, "each body once, byte for byte");

    let stdout = daemon.stdout();
    for span in sampled {
        let id = span["span_id"].as_str().expect("span id");
        let name = span["name"].as_str().expect("name");
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(id) && l.contains(&format!("{name:?}"))),
            "no line for sampled span {id} {name}:\n{stdout}"
        );
    }
    for span in unsampled {
        let id = span["span_id"].as_str().expect("span id");
        assert!(
            !stdout.contains(id),
            "unsampled span {id} printed:\n{stdout}"
        );
    }
}

/// Runs tests/peers/distro_udp.py with .venv-distro's python against `endpoint`.
async fn run_distro_peer(endpoint: &str) -> String {
    let mut command = tokio::process::Command::new(distro_venv_bin("python"));
    command.arg(peer_script("distro_udp.py")).arg(endpoint);
    run_peer("the distro peer", command).await
}
