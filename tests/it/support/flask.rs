//! Runs `tests/peers/flask_app.py`: Flask + the Python X-Ray SDK as a real UDP client.
//!
//! Each request makes one segment (`name` "flask-test") with two subsegments ("db", "cache").
//! The SDK sends one datagram per request when `streaming_threshold` is high (e.g. 100), and
//! with threshold 0 it streams each subsegment as its own datagram before the segment: three
//! per request. Python's JSON spacing (`", "`), float times.

use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;

use super::paths::{peer_script, venv_bin};

/// How long one run of the peer may take.
pub const FLASK_DEADLINE: Duration = Duration::from_secs(60);

/// One request served by the peer.
#[derive(Debug, Clone, Deserialize)]
pub struct FlaskRequest {
    /// The trace id the SDK generated.
    pub trace_id: String,
    /// The segment's id.
    pub segment_id: String,
    /// The ids of its two subsegments, in the order they were opened.
    pub subsegment_ids: Vec<String>,
}

/// What the peer reported after serving its requests.
#[derive(Debug, Clone, Deserialize)]
pub struct FlaskRun {
    /// One per request, in order.
    pub trace_ids: Vec<String>,
    /// One per request, in order.
    pub segment_ids: Vec<String>,
    /// All subsegment ids, request by request.
    pub subsegment_ids: Vec<String>,
    /// The same, grouped by request.
    pub requests: Vec<FlaskRequest>,
}

/// Runs the peer with the venv's python: it serves `requests` requests and sends their
/// segments to `daemon_address` (`AWS_XRAY_DAEMON_ADDRESS` syntax: `127.0.0.1:2000` or
/// `tcp:H:P udp:H:P`). The peer's environment has no `AWS_*` variables but that one.
/// Panics with its stderr if it fails or takes longer than [`FLASK_DEADLINE`].
pub async fn run_flask_peer(
    daemon_address: &str,
    requests: usize,
    streaming_threshold: u32,
) -> FlaskRun {
    let mut command = tokio::process::Command::new(venv_bin("python"));
    command
        .arg(peer_script("flask_app.py"))
        .arg(requests.to_string())
        .arg(streaming_threshold.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AWS_") {
            command.env_remove(key);
        }
    }
    command.env("AWS_XRAY_DAEMON_ADDRESS", daemon_address);
    let child = command.spawn().expect("spawn the Flask peer");
    let output = tokio::time::timeout(FLASK_DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the Flask peer did not finish within {FLASK_DEADLINE:?}"))
        .expect("wait for the Flask peer");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Flask peer failed: {}\n--- stderr:\n{stderr}\n--- stdout:\n{stdout}",
        output.status
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| {
            panic!("the Flask peer printed no JSON line:\n{stdout}\n--- stderr:\n{stderr}")
        });
    let run: FlaskRun = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("the Flask peer's line is not the expected JSON ({e}): {line}"));
    assert_eq!(
        run.trace_ids.len(),
        requests,
        "one trace per request: {line}"
    );
    run
}
