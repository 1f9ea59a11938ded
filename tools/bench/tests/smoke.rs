//! The benchmark command (`xray-bench`, what `scripts/bench.sh` runs) in a tiny configuration,
//! so it keeps working: it must run to the end against the real daemon and write well-formed
//! `results.json` and `results.md`. Figures are never asserted (machines are shared and noisy);
//! only that each measurement is there and that the daemon relayed the step's segments at all.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the test failing"
)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The daemon built by `cargo build` in the same target directory (`target/<profile>/xray`):
/// this test belongs to the benchmark's package, which cannot name another package's binary.
fn xray_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("this test's path");
    // target/<profile>/deps/smoke-HASH → target/<profile>/xray
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("xray"))
        .expect("a target directory");
    assert!(
        path.exists(),
        "{} is missing: build the daemon first (`cargo build --workspace`, as scripts/test.sh does)",
        path.display()
    );
    path
}

/// How long the smoke run may take (it needs a few seconds; debug builds, busy machines).
const WITHIN: Duration = Duration::from_secs(120);

#[test]
fn bench_smoke_run_writes_results() {
    let out = tempfile::tempdir().expect("temp dir");
    let log = out.path().join("bench.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_xray-bench"))
        .arg("--smoke")
        .arg("--xray")
        .arg(xray_bin())
        .arg("--out")
        .arg(out.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start xray-bench");
    let deadline = Instant::now() + WITHIN;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for xray-bench") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "xray-bench --smoke did not finish within {WITHIN:?}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.success(),
        "xray-bench --smoke failed ({status}):\n{stderr}"
    );

    let json = std::fs::read_to_string(out.path().join("results.json")).expect("results.json");
    let r: Value = serde_json::from_str(&json).expect("results.json is JSON");
    let number = |v: &Value, what: &str| {
        assert!(v.is_number(), "{what} should be a number in {json}");
    };
    number(&r["ceiling"]["delivered_per_s"], "ceiling.delivered_per_s");
    number(
        &r["start_to_listening_ms"]["median"],
        "start_to_listening_ms.median",
    );
    number(
        &r["idle_after_start"]["wakeups_per_s"],
        "idle_after_start.wakeups_per_s",
    );
    number(
        &r["idle_after_start"]["rss_kib"],
        "idle_after_start.rss_kib",
    );
    number(&r["low_rates"][0]["cpu_pct"], "low_rates[0].cpu_pct");
    number(
        &r["low_rates"][0]["cpu_s_per_million"],
        "low_rates[0].cpu_s_per_million",
    );
    number(&r["binary_bytes"], "binary_bytes");
    let steps = r["steps"].as_array().expect("steps is a list");
    assert!(!steps.is_empty(), "no step measured: {json}");
    for key in [
        "offered_per_s",
        "delivered_per_s",
        "loss_pct",
        "kernel_dropped",
        "cpu_s_per_million",
        "peak_rss_kib",
    ] {
        number(&steps[0][key], key);
    }
    assert!(
        steps[0]["delivered"].as_u64().unwrap_or(0) > 0,
        "the daemon relayed nothing to the counting endpoint: {json}\n{stderr}"
    );

    let md = std::fs::read_to_string(out.path().join("results.md")).expect("results.md");
    assert!(
        md.contains("| target/s | offered/s | delivered/s | loss %"),
        "results.md has no steps table:\n{md}"
    );
    assert!(
        md.contains("ratio to ceiling"),
        "results.md has no summary:\n{md}"
    );
    assert!(
        md.contains("| CPU % at 1000/s |") && md.contains("| CPU-s per million at 1000/s |"),
        "results.md has no low-rate rows:\n{md}"
    );
}
