//! Smoke tests of the harness itself, without the daemon: each peer does what the daemon's
//! tests will rely on, so a failing daemon test points at the daemon.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::support::{
    self, Fault, FaultInjector, Moto, Step, TEST_REGION, XRAY_HEADER, new_segment_id, new_trace_id,
    peak_rss_kib, segment_json,
};

/// moto stores what PutTraceSegments sends and BatchGetTraces returns it byte for byte, per
/// region; reset forgets it.
#[tokio::test]
async fn smoke_moto_stores_documents_byte_for_byte() {
    let moto = Moto::start().await;
    let trace_id = new_trace_id();
    // Odd spacing on purpose: the stored document must be the bytes sent, not re-serialised.
    let document = format!(
        r#"{{"trace_id": "{trace_id}",  "id":"{}", "name":"smoke", "start_time":1.5,"end_time":2.25}}"#,
        new_segment_id()
    );
    moto.put_trace_segments(TEST_REGION, &[&document]).await;

    let stored = moto
        .wait_for_documents(TEST_REGION, &[&trace_id], 1, Duration::from_secs(10))
        .await;
    assert_eq!(stored, vec![document]);
    assert!(
        moto.batch_get_traces("eu-west-1", &[&trace_id])
            .await
            .is_empty(),
        "moto keeps state per region"
    );

    moto.reset().await;
    assert!(
        moto.batch_get_traces(TEST_REGION, &[&trace_id])
            .await
            .is_empty()
    );
}

/// The Python X-Ray SDK under Flask sends one datagram per segment and per streamed
/// subsegment, each the JSON header line then the document.
#[tokio::test]
async fn smoke_flask_peer_sends_xray_datagrams() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap().to_string();

    // Threshold 0: every subsegment is streamed, so 3 datagrams per request.
    let run = support::run_flask_peer(&address, 2, 0).await;
    assert_eq!(run.segment_ids.len(), 2);
    assert_eq!(run.subsegment_ids.len(), 4);

    let mut ids = BTreeSet::new();
    let mut trace_ids = BTreeSet::new();
    let mut buf = vec![0u8; 65_536];
    for _ in 0..6 {
        let n = tokio::time::timeout(Duration::from_secs(10), socket.recv(&mut buf))
            .await
            .expect("a datagram from the SDK within 10 s")
            .unwrap();
        let datagram = &buf[..n];
        let prefix = format!("{XRAY_HEADER}\n");
        assert!(
            datagram.starts_with(prefix.as_bytes()),
            "datagram without the X-Ray header: {}",
            String::from_utf8_lossy(datagram)
        );
        let body: serde_json::Value = serde_json::from_slice(&datagram[prefix.len()..]).unwrap();
        ids.insert(body["id"].as_str().unwrap().to_owned());
        trace_ids.insert(body["trace_id"].as_str().unwrap().to_owned());
    }
    let expected: BTreeSet<String> = run
        .segment_ids
        .iter()
        .chain(&run.subsegment_ids)
        .cloned()
        .collect();
    assert_eq!(ids, expected);
    assert_eq!(trace_ids, run.trace_ids.iter().cloned().collect());

    // High threshold: one datagram per request, the segment with its subsegments inline.
    let run = support::run_flask_peer(&address, 1, 100).await;
    let n = tokio::time::timeout(Duration::from_secs(10), socket.recv(&mut buf))
        .await
        .expect("a datagram from the SDK within 10 s")
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&buf[XRAY_HEADER.len() + 1..n]).unwrap();
    assert_eq!(body["id"], run.segment_ids[0].as_str());
    assert_eq!(body["subsegments"].as_array().map(Vec::len), Some(2));
}

/// The fault injector forwards to moto and records batches; a scripted fault answers
/// instead of moto, once, then requests pass through again.
#[tokio::test]
async fn smoke_fault_injector_forwards_records_and_faults() {
    let moto = Moto::start().await;
    let injector = FaultInjector::with_script(
        &moto.endpoint(),
        vec![Step::on(
            "/TraceSegments",
            Fault::Respond {
                status: 500,
                body: r#"{"message":"injected"}"#.to_owned(),
            },
        )],
    )
    .await;
    let client = {
        let config = aws_sdk_xray::Config::builder()
            .behavior_version(aws_sdk_xray::config::BehaviorVersion::latest())
            .region(aws_sdk_xray::config::Region::new(TEST_REGION))
            .credentials_provider(aws_sdk_xray::config::Credentials::new(
                "AKIDTEST", "secret", None, None, "test",
            ))
            .endpoint_url(injector.endpoint())
            .retry_config(aws_sdk_xray::config::retry::RetryConfig::disabled())
            .build();
        aws_sdk_xray::Client::from_conf(config)
    };
    let trace_id = new_trace_id();
    let documents = vec![
        segment_json(&trace_id, &new_segment_id(), "a"),
        segment_json(&trace_id, &new_segment_id(), "b"),
    ];

    let first = client
        .put_trace_segments()
        .set_trace_segment_documents(Some(documents.clone()))
        .send()
        .await;
    assert!(first.is_err(), "the scripted 500 reaches the client");
    client
        .put_trace_segments()
        .set_trace_segment_documents(Some(documents.clone()))
        .send()
        .await
        .expect("the second request passes through to moto");

    let stored = moto
        .wait_for_documents(TEST_REGION, &[&trace_id], 2, Duration::from_secs(10))
        .await;
    assert_eq!(
        stored.iter().collect::<BTreeSet<_>>(),
        documents.iter().collect::<BTreeSet<_>>()
    );
    assert_eq!(injector.put_trace_segments_batches(), vec![2, 2]);
    let requests = injector.requests();
    assert_eq!(requests[0].upstream_status, None);
    assert!(matches!(
        requests[0].fault,
        Some(Fault::Respond { status: 500, .. })
    ));
    assert_eq!(requests[1].upstream_status, Some(200));
    let authorization = requests[1].header("authorization").unwrap_or_default();
    assert!(
        authorization.contains(&format!("/{TEST_REGION}/xray/aws4_request")),
        "signed for X-Ray: {authorization}"
    );
    assert!(injector.remaining_script().is_empty());
}

/// Ports are free for UDP and TCP and never handed out twice; VmHWM is readable.
#[tokio::test]
async fn smoke_ports_and_rss() {
    let ports: BTreeSet<u16> = (0..20).map(|_| support::free_port()).collect();
    assert_eq!(ports.len(), 20);
    for port in ports {
        std::net::UdpSocket::bind(("127.0.0.1", port)).unwrap();
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }
    assert!(peak_rss_kib(std::process::id()) > 0);
}
