//! The TCP sampling proxy: the Python X-Ray SDK's centralized sampling through the daemon,
//! SigV4 signatures over a minimal header set, replies relayed unchanged, and bad clients
//! answered while good ones are served. The upstream is the sampling fault injector (moto has
//! no sampling APIs); uploads pass through it to moto.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::daemon::{FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY};
use crate::support::fault::{Fault, FaultInjector, Recorded, Step};
use crate::support::sampling::{
    authorization, health_excluded_rules, health_excluded_targets, run_flask_sampling_peer,
    verify_sigv4,
};
use crate::support::{Daemon, Moto, TEST_REGION, http, sampling_injector, wait};

/// The headers the daemon signs, whatever the client sent.
const MINIMAL_SIGNED: &str = "content-type;host;x-amz-content-sha256;x-amz-date";
/// The only headers the daemon sends upstream.
const SENT_UPSTREAM: [&str; 7] = [
    "host",
    "content-type",
    "content-length",
    "x-amz-date",
    "x-amz-content-sha256",
    "authorization",
    "user-agent",
];
/// An upstream nobody listens on (for injectors that must never forward).
const NOWHERE: &str = "http://127.0.0.1:9";

fn sampling_calls(requests: &[Recorded]) -> Vec<Recorded> {
    requests
        .iter()
        .filter(|r| r.path == "/GetSamplingRules" || r.path == "/SamplingTargets")
        .cloned()
        .collect()
}

/// Checks one forwarded request: SigV4 for the test keys in `region`, minimal signed headers,
/// nothing else sent.
fn assert_signed_minimally(r: &Recorded, region: &str) {
    let auth = authorization(r).unwrap_or_else(|| panic!("unsigned: {r:?}"));
    assert_eq!(auth.key_id, FAKE_ACCESS_KEY_ID);
    assert!(
        auth.scope
            .ends_with(&format!("/{region}/xray/aws4_request")),
        "scope {}",
        auth.scope
    );
    assert_eq!(auth.signed_headers, MINIMAL_SIGNED, "{r:?}");
    verify_sigv4(r, FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY, region)
        .unwrap_or_else(|e| panic!("{e}: {r:?}"));
    for (name, _) in &r.headers {
        assert!(
            SENT_UPSTREAM.contains(&name.as_str()),
            "header {name} was sent upstream: {r:?}"
        );
    }
}

/// the SDK fetches rules through the daemon and obeys them (nothing
/// under /health is traced, everything else is); every call the daemon forwarded is signed for
/// the test credentials over the minimal header set; the SDK's statistics reach X-Ray intact
/// and its targets come back.
#[tokio::test]
async fn python_sdk_obeys_sampling_rules_fetched_through_the_signed_proxy() {
    let moto = Moto::start().await;
    let injector = sampling_injector(
        &moto.endpoint(),
        &health_excluded_rules(),
        &health_excluded_targets(),
    )
    .await;
    let daemon = Daemon::builder()
        .upload_to(&injector.endpoint())
        .start()
        .await;
    let address = format!("tcp:{} udp:{}", daemon.tcp_addr(), daemon.udp_addr());

    let out = run_flask_sampling_peer(&address, 4, true).await;

    let requests = out["requests"].as_array().expect("requests");
    let ids = |path: &str, sampled: bool| -> Vec<String> {
        requests
            .iter()
            .filter(|r| r["path"] == path)
            .inspect(|r| assert_eq!(r["sampled"], sampled, "{r}"))
            .map(|r| r["trace_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let work = ids("/work", true);
    let health = ids("/health", false);
    assert_eq!((work.len(), health.len()), (4, 4), "{out}");
    let work_refs: Vec<&str> = work.iter().map(String::as_str).collect();
    moto.wait_for_documents(TEST_REGION, &work_refs, 4, Duration::from_secs(15))
        .await;
    let health_refs: Vec<&str> = health.iter().map(String::as_str).collect();
    assert!(
        moto.batch_get_traces(TEST_REGION, &health_refs)
            .await
            .is_empty(),
        "a /health request produced a segment"
    );
    let stats = daemon.stats().await;
    assert_eq!(
        stats.received, 4,
        "only the /work segments reached the daemon: {stats:?}"
    );

    let calls = sampling_calls(&injector.requests());
    assert!(
        calls.iter().any(|r| r.path == "/GetSamplingRules"),
        "no GetSamplingRules upstream: {calls:?}"
    );
    for call in &calls {
        assert_eq!(call.method, "POST");
        assert_signed_minimally(call, TEST_REGION);
        assert!(
            !call.header("user-agent").unwrap_or("").contains("Botocore"),
            "the SDK's own User-Agent was forwarded"
        );
    }

    // The statistics the SDK generated are what X-Ray received, and the targets X-Ray answered
    // are what the SDK loaded.
    let targets_calls: Vec<&Recorded> = calls
        .iter()
        .filter(|r| r.path == "/SamplingTargets")
        .collect();
    let first = targets_calls
        .first()
        .expect("a SamplingTargets call upstream");
    let sent: Value = first.json().expect("SamplingTargets body is JSON");
    assert_eq!(
        sent["SamplingStatisticsDocuments"], out["reports"][0],
        "statistics changed on the way"
    );
    let docs = sent["SamplingStatisticsDocuments"].as_array().unwrap();
    assert!(
        docs.iter()
            .any(|d| d["RuleName"] == "health-checks" && d["RequestCount"] == 4),
        "{sent}"
    );
    let got = &out["targets"][0];
    assert_eq!(got["Default"]["rate"], 1.0, "{got}");
    assert_eq!(got["health-checks"]["rate"], 0.0, "{got}");
}

/// a SamplingTargets body goes upstream byte for byte,
/// X-Ray's answer (and its errors) come back byte for byte with their content type, and extra
/// client headers are neither signed nor sent.
#[tokio::test]
async fn bodies_and_answers_cross_the_proxy_unchanged() {
    let answer = r#"{"SamplingTargetDocuments": [ {"RuleName":"r","FixedRate":0.5} ],"LastRuleModification":1.0,"UnprocessedStatistics":[]}"#;
    let error = r#"{"__type":"InvalidRequestException","message":"bad doc"}"#;
    let injector = FaultInjector::with_script(
        NOWHERE,
        vec![
            Step::on(
                "/SamplingTargets",
                Fault::Respond {
                    status: 200,
                    body: answer.into(),
                },
            ),
            Step::on(
                "/SamplingTargets",
                Fault::Respond {
                    status: 400,
                    body: error.into(),
                },
            ),
        ],
    )
    .await;
    let daemon = Daemon::builder()
        .endpoint(&injector.endpoint())
        .args(["-n", "eu-west-1"])
        .start()
        .await;
    let body = r#"{"SamplingStatisticsDocuments":[{"RuleName": "r", "ClientID":"0123456789abcdef01234567","RequestCount":10,"BorrowCount":0,"SampledCount":5,"Timestamp":1700000000}]}"#;
    let headers = [
        ("content-type", "application/json"),
        ("x-mesh-added", "istio"),
        ("user-agent", "Botocore/1.0"),
        (
            "x-amzn-trace-id",
            "Root=1-00000000-000000000000000000000000",
        ),
    ];
    let post_targets = async || {
        http::request(
            daemon.tcp_addr(),
            "POST",
            "/SamplingTargets",
            &headers,
            body,
        )
        .await
        .unwrap()
    };
    let ok = post_targets().await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.text(), answer);
    assert_eq!(ok.header("content-type"), Some("application/json"));
    let bad = post_targets().await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.text(), error);

    let calls = injector.requests();
    assert_eq!(calls.len(), 2);
    for call in &calls {
        assert_eq!(
            call.body.as_ref(),
            body.as_bytes(),
            "body changed on the way"
        );
        assert_signed_minimally(call, "eu-west-1");
        assert_eq!(
            call.header("host"),
            Some(injector.addr().to_string().as_str())
        );
    }
    // The verification can fail: a changed body, region or secret no longer verifies.
    let mut tampered = calls[0].clone();
    tampered.body = bytes::Bytes::from_static(b"{}");
    assert!(
        verify_sigv4(
            &tampered,
            FAKE_ACCESS_KEY_ID,
            FAKE_SECRET_ACCESS_KEY,
            "eu-west-1"
        )
        .is_err()
    );
    assert!(
        verify_sigv4(
            &calls[0],
            FAKE_ACCESS_KEY_ID,
            FAKE_SECRET_ACCESS_KEY,
            "us-east-1"
        )
        .is_err()
    );
    assert!(verify_sigv4(&calls[0], FAKE_ACCESS_KEY_ID, "other-secret", "eu-west-1").is_err());
}

/// Sends raw bytes and reads until the peer closes or `within` passes; returns what came back
/// and how long it took.
async fn raw_exchange(addr: SocketAddr, bytes: &[u8], within: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    // One answer is enough: the daemon closes or keeps the connection.
                    if String::from_utf8_lossy(&got).contains("\r\n\r\n") {
                        let text = String::from_utf8_lossy(&got).into_owned();
                        if let Some(len) = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().to_owned())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                        {
                            let head = text.find("\r\n\r\n").unwrap() + 4;
                            if got.len() >= head + len {
                                break;
                            }
                        }
                    }
                }
            }
        }
    })
    .await;
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

/// an oversized body, a client that stalls halfway through its headers or its
/// body, a request naming another host (in `Host` or as an absolute URL), and, with
/// `--proxy-sampling-only`, another path: each gets its clear answer or is timed out, while a
/// concurrent good client is served; only the X-Ray endpoint ever receives anything.
#[tokio::test]
async fn bad_clients_are_answered_while_good_ones_are_served() {
    let injector = sampling_injector(NOWHERE, &health_excluded_rules(), "{}").await;
    let bystander = FaultInjector::start(NOWHERE).await;
    let daemon = Daemon::builder()
        .upload_to(&injector.endpoint())
        .args(["--proxy-sampling-only", "--proxy-client-timeout", "1"])
        .start()
        .await;
    let tcp = daemon.tcp_addr();

    // Two stalled clients, held open while the good client works.
    let half_headers = tokio::spawn(raw_exchange(
        tcp,
        b"POST /GetSamplingRules HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty",
        Duration::from_secs(8),
    ));
    let half_body = tokio::spawn(raw_exchange(
        tcp,
        b"POST /GetSamplingRules HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":",
        Duration::from_secs(8),
    ));
    let good = tokio::spawn(async move {
        let mut served = 0;
        for _ in 0..10 {
            let r = http::post(tcp, "/GetSamplingRules", "{}").await.unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
            served += 1;
        }
        served
    });

    // A 2 MiB body is refused from its declared length, before it is read. (Sent raw, head
    // and a first piece only: a client writing the whole body races the early answer and may
    // see a broken pipe instead of the 413.)
    let mut oversized = format!(
        "POST /SamplingTargets HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        2 * 1024 * 1024
    )
    .into_bytes();
    oversized.extend_from_slice(&[b'x'; 16 * 1024]);
    let (answer, _) = raw_exchange(tcp, &oversized, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("limit"), "{answer}");

    let r = http::request(
        tcp,
        "POST",
        "/GetSamplingRules",
        &[("host", &bystander.addr().to_string())],
        "{}",
    )
    .await
    .unwrap();
    assert_eq!(
        r.status,
        200,
        "a foreign Host header still goes to X-Ray: {}",
        r.text()
    );

    let absolute = format!(
        "POST http://{}/GetSamplingRules HTTP/1.1\r\nHost: {}\r\nContent-Length: 2\r\n\r\n{{}}",
        bystander.addr(),
        bystander.addr()
    );
    let (answer, _) = raw_exchange(tcp, absolute.as_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("not a forward proxy"), "{answer}");

    let r = http::post(tcp, "/TraceSegments", "{}").await.unwrap();
    assert_eq!(r.status, 404);
    assert!(r.text().contains("--proxy-sampling-only"), "{}", r.text());

    let (answer, took) = half_body.await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "stalled body: {answer:?} after {took:?}"
    );
    let (answer, took) = half_headers.await.unwrap();
    assert!(
        took < Duration::from_secs(8),
        "a client stalled in its headers was not cut off: {answer:?}"
    );
    assert_eq!(good.await.unwrap(), 10);

    // Many SDK clients at once are all served.
    let mut many = tokio::task::JoinSet::new();
    for _ in 0..40 {
        many.spawn(async move {
            http::post(tcp, "/GetSamplingRules", "{}")
                .await
                .map(|r| r.status)
        });
    }
    while let Some(status) = many.join_next().await {
        assert_eq!(status.unwrap().unwrap(), 200);
    }

    assert!(bystander.requests().is_empty(), "another host was reached");
    let upstream = injector.requests();
    assert_eq!(upstream.len(), 51, "{upstream:?}");
    for r in &upstream {
        assert_eq!(r.path, "/GetSamplingRules");
        assert_eq!(r.header("host"), Some(injector.addr().to_string().as_str()));
    }
    // The daemon is still healthy.
    let ok = wait::until(Duration::from_secs(5), wait::POLL_INTERVAL, async || {
        daemon
            .get("/daemon/health")
            .await
            .ok()
            .filter(|r| r.status == 200)
    })
    .await;
    assert!(ok.is_some());
}

/// The call to X-Ray has a deadline (`--proxy-upstream-timeout`): a slow X-Ray gets the client
/// a 504 saying so, not a hung connection.
#[tokio::test]
async fn a_slow_x_ray_gets_a_gateway_timeout() {
    let injector = FaultInjector::with_script(
        NOWHERE,
        vec![Step::on(
            "/GetSamplingRules",
            Fault::Delay(Duration::from_secs(5)),
        )],
    )
    .await;
    let daemon = Daemon::builder()
        .upload_to(&injector.endpoint())
        .args(["--proxy-upstream-timeout", "0.5"])
        .start()
        .await;
    let started = Instant::now();
    let r = http::post(daemon.tcp_addr(), "/GetSamplingRules", "{}")
        .await
        .unwrap();
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(r.text().contains("did not answer"), "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(injector.requests().len(), 1);
}

/// Issue "OpenTelemetry in, part 1": `POST /v1/traces` on the TCP port. While the OTLP receiver
/// is off it is forwarded to X-Ray (its OTLP endpoint) signed, with its `Content-Encoding`, so
/// a gzip'd body stays readable; with the receiver on, the receiver answers it and nothing is
/// forwarded.
#[tokio::test]
async fn otlp_traces_on_the_tcp_port_keep_their_encoding_or_go_to_the_receiver() {
    let injector = FaultInjector::with_script(
        NOWHERE,
        vec![Step::on(
            "/v1/traces",
            Fault::Respond {
                status: 200,
                body: "{}".into(),
            },
        )],
    )
    .await;
    let gzipped = {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(br#"{"resourceSpans":[]}"#).unwrap();
        gz.finish().unwrap()
    };
    let headers = [
        ("content-type", "application/json"),
        ("content-encoding", "gzip"),
    ];
    let off = Daemon::builder()
        .endpoint(&injector.endpoint())
        .args(["-n", "eu-west-1"])
        .start()
        .await;
    let r = http::request(
        off.tcp_addr(),
        "POST",
        "/v1/traces",
        &headers,
        gzipped.clone(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let calls = injector.requests();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].header("content-encoding"), Some("gzip"));
    assert_eq!(calls[0].body.as_ref(), gzipped.as_slice());
    verify_sigv4(
        &calls[0],
        FAKE_ACCESS_KEY_ID,
        FAKE_SECRET_ACCESS_KEY,
        "eu-west-1",
    )
    .unwrap();

    let on = Daemon::builder()
        .endpoint(&injector.endpoint())
        .args(["-n", "eu-west-1", "--otlp-http", "127.0.0.1:0"])
        .start()
        .await;
    let r = http::request(on.tcp_addr(), "POST", "/v1/traces", &headers, gzipped)
        .await
        .unwrap();
    assert_eq!((r.status, r.text().trim()), (200, "{}"));
    assert_eq!(injector.requests().len(), 1, "nothing more forwarded");
    let stats = on.stats().await;
    assert_eq!(
        stats.inputs["otlp_http"].requests["accepted"], 1,
        "{stats:?}"
    );
}

/// Issue "OpenTelemetry in, part 2": an app instrumented with the AWS distro for OpenTelemetry
/// and `OTEL_TRACES_SAMPLER=xray` gets X-Ray's sampling rules through the daemon's TCP port
/// (signed and forwarded, as for the X-Ray SDKs) and obeys them.
#[tokio::test]
async fn an_adot_app_with_the_xray_sampler_gets_its_rules_through_the_proxy() {
    let moto = Moto::start().await;
    let injector = sampling_injector(
        &moto.endpoint(),
        &health_excluded_rules(),
        &health_excluded_targets(),
    )
    .await;
    let daemon = Daemon::builder()
        .upload_to(&injector.endpoint())
        .start()
        .await;
    let endpoint = format!("endpoint=http://{}", daemon.tcp_addr());
    let mut command =
        tokio::process::Command::new(crate::support::paths::distro_venv_bin("python"));
    command
        .arg(crate::support::peer_script("adot_sampling.py"))
        .env("OTEL_TRACES_SAMPLER", "xray")
        .env("OTEL_TRACES_SAMPLER_ARG", &endpoint)
        .env("OTEL_SERVICE_NAME", "adot-app");
    let stdout = crate::support::flask::run_peer("the ADOT peer", command).await;
    let run: Value = serde_json::from_str(stdout.trim()).expect("the peer's JSON line");
    assert_eq!(run["obeyed"], true, "{stdout}");
    let calls = sampling_calls(&injector.requests());
    let rules: Vec<&Recorded> = calls
        .iter()
        .filter(|r| r.path == "/GetSamplingRules")
        .collect();
    assert!(!rules.is_empty(), "no GetSamplingRules upstream: {calls:?}");
    for call in rules {
        assert_signed_minimally(call, TEST_REGION);
    }
}

/// Issue "Ship complete": request bodies being read by the sampling proxy share a stated 16 MiB
/// (sixteen at its 1 MiB cap): a seventeenth large body is answered `503` at once instead of
/// being held, and the daemon keeps serving.
#[tokio::test]
async fn proxy_bodies_being_read_stay_within_their_stated_room() {
    let daemon = Daemon::builder().args(["-n", "eu-west-1"]).start().await;
    let head = format!(
        "POST /GetSamplingRules HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         content-length: 1048576\r\n\r\n",
        daemon.tcp_addr()
    );
    // Sixteen clients that declare 1 MiB and send nothing more: their room is held.
    let mut held = Vec::new();
    for _ in 0..16 {
        let mut stream = TcpStream::connect(daemon.tcp_addr()).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        held.push(stream);
    }
    // The daemon takes their room as it reads their headers, which a busy machine may not have
    // done yet (a fixed 300 ms pause was the wait): a seventeenth that finds room left gets no
    // answer; it is held like the sixteen (one of them is refused instead) and another tries.
    let deadline = wait::Deadline::after(Duration::from_secs(8));
    let (answer, took) = loop {
        let started = Instant::now();
        let mut probe = TcpStream::connect(daemon.tcp_addr()).await.unwrap();
        probe.write_all(head.as_bytes()).await.unwrap();
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(2), probe.read(&mut buf)).await {
            Ok(read) => {
                let answer = match read {
                    Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
                    Err(e) => format!("no answer: {e}"),
                };
                break (answer, started.elapsed());
            }
            Err(_) if deadline.passed() => break (String::new(), started.elapsed()),
            Err(_) => held.push(probe),
        }
    };
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(took < Duration::from_secs(2), "answered at once: {took:?}");
    let health = daemon.get("/daemon/health").await.unwrap();
    assert_eq!(health.status, 200);
    drop(held);
}
