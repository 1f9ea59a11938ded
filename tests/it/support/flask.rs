//! Runs `tests/peers/flask_app.py`: Flask + the Python X-Ray SDK as a real UDP client.
//!
//! Each request makes one segment (`name` "flask-test") with two subsegments ("db", "cache").
//! The SDK sends one datagram per request when `streaming_threshold` is high (e.g. 100), and
//! with threshold 0 it streams each subsegment as its own datagram before the segment: three
//! per request. Python's JSON spacing (`", "`), float times.
//!
//! [`run_python_peer`] is the runner both this peer and `flask_sampling.py` (see `sampling`)
//! use: the venv's python, a clean `AWS_*` environment, the last JSON line of stdout.

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
    let line = run_python_peer(
        "the Flask peer",
        "flask_app.py",
        &[requests.to_string(), streaming_threshold.to_string()],
        daemon_address,
    )
    .await;
    let run: FlaskRun = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("the Flask peer's line is not the expected JSON ({e}): {line}"));
    assert_eq!(
        run.trace_ids.len(),
        requests,
        "one trace per request: {line}"
    );
    run
}

/// Runs `tests/peers/<script>` with the venv's python and `args`, sending to `daemon_address`
/// (`AWS_XRAY_DAEMON_ADDRESS`); the peer's environment has no other `AWS_*` variable and no
/// `*_PROXY` one. Returns the last line of its stdout that starts with `{` (its JSON report).
/// Panics, naming the peer as `what` with its stderr and stdout, if it fails, prints no such
/// line, or takes longer than [`FLASK_DEADLINE`].
pub async fn run_python_peer(
    what: &str,
    script: &str,
    args: &[String],
    daemon_address: &str,
) -> String {
    run_python_peer_with_env(
        what,
        script,
        args,
        &[("AWS_XRAY_DAEMON_ADDRESS", daemon_address)],
    )
    .await
}

/// [`run_python_peer`] with the environment variables `env` (for example the standard
/// `OTEL_*` ones) instead of `AWS_XRAY_DAEMON_ADDRESS` alone.
pub async fn run_python_peer_with_env(
    what: &str,
    script: &str,
    args: &[String],
    env: &[(&str, &str)],
) -> String {
    let mut command = tokio::process::Command::new(venv_bin("python"));
    command.arg(peer_script(script)).args(args);
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy().to_ascii_uppercase();
        if name.starts_with("AWS_") || name.ends_with("_PROXY") {
            command.env_remove(key);
        }
    }
    for (key, value) in env {
        command.env(key, value);
    }
    run_peer(what, command).await
}

/// Runs a peer `command` (any program: the venv's python, the distro's, node) to its end: stdin
/// empty, output captured, killed if the test ends first. Returns the last line of its stdout
/// that starts with `{` (its JSON report). Panics, naming the peer as `what` with its stderr and
/// stdout, if it cannot start, fails, prints no such line, or takes longer than
/// [`FLASK_DEADLINE`].
pub async fn run_peer(what: &str, mut command: tokio::process::Command) -> String {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let output = tokio::time::timeout(FLASK_DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {FLASK_DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("wait for {what}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what} failed: {}\n--- stderr:\n{stderr}\n--- stdout:\n{stdout}",
        output.status
    );
    stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("{what} printed no JSON line:\n{stdout}\n--- stderr:\n{stderr}"))
}
