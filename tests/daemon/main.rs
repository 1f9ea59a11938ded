//! In-process daemon tests: the library's [`Daemon`] on `127.0.0.1:0`, real UDP and TCP
//! sockets, and assertions on the typed stats snapshot and on what reached each sink. No
//! Python, no root, no AWS: `cargo test` runs them in seconds. Tests against real peers (moto,
//! the Python X-Ray SDK) are in `tests/it`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the test failing"
)]

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use xray_daemon::app::Daemon;
use xray_daemon::config::{self, Machine, cli::Cli};
use xray_daemon::stats::Snapshot;

const HEADER: &str = r#"{"format":"json","version":1}"#;

/// A daemon on free loopback ports with these extra flags, plus an in-memory store sink.
fn start(flags: &[&str]) -> Daemon {
    let mut args = vec![
        "xray",
        "-b",
        "127.0.0.1:0",
        "-t",
        "127.0.0.1:0",
        "--no-telemetry",
    ];
    args.extend_from_slice(flags);
    let cli = Cli::try_parse_from(args).expect("flags parse");
    let config = config::resolve(&cli, None, Machine::default()).expect("config resolves");
    Daemon::start(config, Some(1 << 20)).expect("daemon starts")
}

fn document(n: usize) -> String {
    format!(
        r#"{{"trace_id":"1-6566a1b2-0123456789abcdef{n:08x}","id":"{n:016x}","name":"t é \"q\"","start_time":1.5,"end_time":2.25}}"#
    )
}

async fn send(to: SocketAddr, datagrams: impl IntoIterator<Item = Vec<u8>>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for d in datagrams {
        socket.send_to(&d, to).await.unwrap();
    }
}

fn datagram(body: &str) -> Vec<u8> {
    format!("{HEADER}\n{body}").into_bytes()
}

/// Waits (at most 10 s) until the snapshot satisfies `pred`; fails with the last one.
async fn wait_for(daemon: &Daemon, what: &str, pred: impl Fn(&Snapshot) -> bool) -> Snapshot {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let snap = daemon.snapshot();
        assert!(snap.broken_identities().is_empty(), "{snap:#?}");
        if pred(&snap) {
            return snap;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {snap:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET path` on the daemon's TCP address; returns status line and body.
async fn get(to: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(to).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

#[tokio::test]
async fn a_segment_reaches_the_store_byte_for_byte() {
    let daemon = start(&["--sink", "file:/dev/null"]);
    let body = document(1);
    send(daemon.udp, [datagram(&body)]).await;
    let snap = wait_for(&daemon, "the memory sink to take it", |s| {
        s.sinks["memory"].sent == 1
    })
    .await;
    assert_eq!(snap.inputs["udp"].accepted, 1);
    let stored = daemon.memory().unwrap().items();
    let doc = stored[0].as_document().unwrap();
    assert_eq!(&doc.body[..], body.as_bytes());
    let end = daemon.stop().await.unwrap();
    assert_eq!(
        (end.received, end.sent, end.buffered, end.in_flight),
        (1, 1, 0, 0)
    );
    assert_eq!(end.sinks["file:/dev/null"].sent, 1);
}

#[tokio::test]
async fn a_distro_t1s_datagram_reaches_the_store_byte_for_byte() {
    // The AWS distros' UDP exporter: the Java one writes its header with spaces.
    let body = "T1SCiQKIgoMc2VydmljZS5uYW1lEhIKEG15LXNlcnZpY2UtbmFtZRIA";
    let daemon = start(&["--sink", "file:/dev/null"]);
    let datagram = format!("{{\"format\": \"json\", \"version\": 1}}\n{body}");
    send(daemon.udp, [datagram.into_bytes()]).await;
    let snap = wait_for(&daemon, "the memory sink to take it", |s| {
        s.sinks["memory"].sent == 1
    })
    .await;
    let udp = &snap.inputs["udp"];
    assert_eq!((udp.received, udp.accepted), (1, 1), "{udp:?}");
    assert_eq!(udp.accepted_by_kind["T1S"], 1, "{udp:?}");
    assert_eq!(udp.accepted_by_kind["json"], 0, "{udp:?}");
    let stored = daemon.memory().unwrap().items();
    assert_eq!(&stored[0].as_document().unwrap().body[..], body.as_bytes());
    let (_, metrics) = get(daemon.tcp, "/daemon/metrics").await;
    assert!(
        metrics.contains(r#"xray_input_accepted_total{input="udp",kind="T1S"} 1"#),
        "{metrics}"
    );
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn bad_datagrams_are_counted_by_reason_and_the_daemon_keeps_receiving() {
    let daemon = start(&["--sink", "file:/dev/null"]);
    send(
        daemon.udp,
        [
            b"no newline here".to_vec(),
            b"not json\n{}".to_vec(),
            format!("{{\"format\":\"xml\",\"version\":1}}\n{}", document(0)).into_bytes(),
            format!("{HEADER}\n").into_bytes(),
            format!("{HEADER}\n{{\"id\":").into_bytes(),
            datagram(&document(2)),
        ],
    )
    .await;
    let snap = wait_for(&daemon, "six datagrams", |s| s.received == 6 && s.sent == 1).await;
    let refused = &snap.inputs["udp"].refused;
    for reason in [
        "missing_newline",
        "header_not_json",
        "unsupported_header",
        "empty_body",
        "invalid_body",
    ] {
        assert_eq!(refused[reason], 1, "{reason}: {refused:?}");
        assert_eq!(snap.dropped[reason], 1, "{reason}");
    }
    assert_eq!(snap.inputs["udp"].accepted, 1);
    let (status, _) = get(daemon.tcp, "/daemon/health").await;
    assert!(status.contains("200"), "{status}");
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn a_dead_sink_does_not_hold_back_another() {
    // Every write to /dev/full fails: that sink gives up each batch, the store gets them all.
    let daemon = start(&["--sink", "file:/dev/full"]);
    send(daemon.udp, (0..120).map(|n| datagram(&document(n)))).await;
    let snap = wait_for(&daemon, "both sinks to settle", |s| {
        s.sinks["memory"].sent == 120 && s.sinks["file:/dev/full"].pending == 0
    })
    .await;
    let dead = &snap.sinks["file:/dev/full"];
    assert_eq!(
        (dead.received, dead.sent, dead.dropped["upload_failed"]),
        (120, 0, 120)
    );
    // Over all, an item one sink gave up counts as dropped (once).
    assert_eq!((snap.sent, snap.dropped["upload_failed"]), (0, 120));
    assert_eq!(daemon.memory().unwrap().taken(), 120);
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn stats_over_http_are_typed_and_every_read_balances_under_load() {
    let daemon = start(&["--sink", "file:/dev/null"]);
    let to = daemon.udp;
    let flood = tokio::spawn(async move {
        for round in 0..40 {
            send(to, (0..50).map(|n| datagram(&document(round * 50 + n)))).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let mut reads = 0;
    while !flood.is_finished() {
        let (status, body) = get(daemon.tcp, "/daemon/stats").await;
        assert!(status.contains("200"), "{status}");
        let snap: Snapshot = serde_json::from_str(&body).expect("the stats JSON is a Snapshot");
        assert!(snap.broken_identities().is_empty(), "{snap:#?}");
        reads += 1;
    }
    assert!(reads > 0);
    let (_, metrics) = get(daemon.tcp, "/daemon/metrics").await;
    assert!(
        metrics.contains("xray_segments_received_total"),
        "{metrics}"
    );
    let end = daemon.stop().await.unwrap();
    assert!(end.broken_identities().is_empty(), "{end:#?}");
    assert_eq!(
        end.received,
        end.sent + end.dropped_total() + end.buffered,
        "{end:#?}"
    );
}
