//! Signals and what reaches the log: SIGHUP reopens the `-f` file, SIGUSR1/SIGUSR2 are
//! ignored, SIGQUIT drains as SIGTERM does, a second SIGTERM gives up the drain with exit code 1
//! and the loss logged; and text from outside cannot forge a log line.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::{Daemon, Moto, TEST_REGION, new_segment_id, new_trace_id, segment_json, wait};

/// How long a step may take on this shared 2-core machine.
const WITHIN: Duration = Duration::from_secs(20);

/// A loopback port that takes connections (the kernel completes them from the backlog) and
/// never answers: uploads to it hang.
fn silent_endpoint() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a TCP port");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    (listener, url)
}

/// Waits until `read()` contains `needle`; panics with what it holds after [`WITHIN`].
async fn wait_for_text(what: &str, read: impl Fn() -> String, needle: &str) -> String {
    let found = wait::until(WITHIN, wait::POLL_INTERVAL, async || {
        let text = read();
        text.contains(needle).then_some(text)
    })
    .await;
    found.unwrap_or_else(|| panic!("{what} never said {needle:?}:\n{}", read()))
}

fn read(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

#[tokio::test]
async fn hup_reopens_the_log_file() {
    let (_listener, url) = silent_endpoint();
    let builder = Daemon::builder().upload_to(&url);
    let log = builder.dir().join("logs").join("xray.log");
    let mut daemon = builder.arg("-f").arg(&log).start().await;
    wait_for_text("the log file", || read(&log), "receiving segments on UDP").await;

    // logrotate's way: move the file away, then SIGHUP.
    let moved = log.with_extension("log.1");
    std::fs::rename(&log, &moved).expect("rename the log file");
    daemon.signal(Signal::SIGHUP);
    let new = wait_for_text(
        "the new log file",
        || read(&log),
        "Got SIGHUP: reopened the log file",
    )
    .await;
    assert!(
        !new.contains("receiving segments on UDP"),
        "a new file: {new}"
    );
    assert!(!read(&moved).contains("SIGHUP"), "{}", read(&moved));
    assert_eq!(
        daemon.get("/daemon/health").await.map(|r| r.status).ok(),
        Some(200)
    );

    daemon.sigterm();
    let status = daemon.wait_exit(WITHIN).await;
    assert_eq!(status.code(), Some(0));
    assert!(read(&log).contains("Stopped. "), "{}", read(&log));
}

#[tokio::test]
async fn usr1_usr2_are_ignored_and_quit_drains_like_term() {
    const COUNT: usize = 20;
    let moto = Moto::start().await;
    let mut daemon = Daemon::builder().upstream(&moto).start().await;
    daemon.signal(Signal::SIGUSR1);
    daemon.signal(Signal::SIGUSR2);
    wait_for_text("stdout", || daemon.stdout(), "Got SIGUSR2: ignored").await;
    assert!(daemon.stdout().contains("Got SIGUSR1: ignored"));
    let health = daemon
        .get("/daemon/health")
        .await
        .expect("GET /daemon/health");
    assert_eq!(health.status, 200, "{}", health.text());

    let trace = new_trace_id();
    let documents: Vec<String> = (0..COUNT)
        .map(|_| segment_json(&trace, &new_segment_id(), "quit"))
        .collect();
    for document in &documents {
        daemon.send_segment(document);
    }
    let held = daemon
        .wait_for_stats(|s| s.received == COUNT as u64, WITHIN)
        .await;
    // Fewer than a batch: they wait out the 1 s idle flush, so SIGQUIT finds them all held.
    assert_eq!(held.sent, 0, "{held:?}");
    daemon.signal(Signal::SIGQUIT);
    let status = daemon.wait_exit(WITHIN).await;
    let out = daemon.stdout();
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(out.contains("Got SIGQUIT: no longer receiving"), "{out}");
    assert!(
        out.contains(&format!(
            "Stopped. Segments received: {COUNT}, sent: {COUNT}, rejected by X-Ray: 0, dropped: 0"
        )),
        "held when SIGQUIT came: {held:?}\n{out}"
    );
    let stored = moto
        .wait_for_documents(TEST_REGION, &[&trace], COUNT, WITHIN)
        .await;
    assert_eq!(stored.len(), COUNT);
}

#[tokio::test]
async fn a_second_term_exits_1_and_says_what_was_lost() {
    const COUNT: usize = 10;
    let (_listener, url) = silent_endpoint();
    let mut daemon = Daemon::builder()
        .upload_to(&url)
        .args(["--shutdown-timeout", "60"])
        .start()
        .await;
    let trace = new_trace_id();
    for _ in 0..COUNT {
        daemon.send_segment(&segment_json(&trace, &new_segment_id(), "lost"));
    }
    daemon
        .wait_for_stats(|s| s.in_flight == COUNT as u64, WITHIN)
        .await;
    daemon.sigterm();
    wait_for_text("stdout", || daemon.stdout(), "Draining ").await;
    daemon.sigterm();
    let status = daemon.wait_exit(Duration::from_secs(5)).await;
    let out = daemon.stdout();
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "[Error] A second signal gave up the drain: {COUNT} segment(s) still held were not sent"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("Stopped. Segments received: {COUNT}, sent: 0,")),
        "{out}"
    );
}

/// Regression: a segment id holding a newline forged a log line of its own.
#[tokio::test]
async fn a_newline_in_a_segment_id_cannot_forge_a_log_line() {
    let (_listener, url) = silent_endpoint();
    let daemon = Daemon::builder()
        .upload_to(&url)
        .args(["-l", "dev"])
        .start()
        .await;
    let body = serde_json::json!({
        "trace_id": new_trace_id(),
        "id": "abc\n[Error] forged\u{0}",
        "name": "forger",
        "start_time": 1.0,
        "end_time": 2.0,
    })
    .to_string();
    daemon.send_segment(&body);
    let out = wait_for_text("stdout", || daemon.stdout(), "Segment abc").await;
    assert!(
        out.contains("Segment abc\\n[Error] forged\\u{0} of trace"),
        "escaped on one line: {out}"
    );
    assert!(
        !out.lines().any(|l| l.starts_with("[Error] forged")),
        "a forged line: {out}"
    );
    assert!(!out.contains('\0'), "a NUL in the log: {out:?}");
}
