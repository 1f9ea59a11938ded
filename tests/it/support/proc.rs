//! Probes of running processes, and the output tails printed when a test fails.

use std::path::Path;

/// Peak resident set size ("high water mark", `VmHWM` in `/proc/PID/status`) in KiB.
///
/// Panics when the process is gone or the field is missing.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {path}: {e} (has the process exited?)"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM line in {path}"))
}

/// One size field of `/proc/PID/status` in KiB, e.g. `VmRSS` (resident now), `RssFile`
/// (resident pages backed by files: the binary's code and data) or `RssAnon`.
///
/// Panics when the process is gone or the field is missing.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {path}: {e} (has the process exited?)"));
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} line in {path}"))
}

/// The file's text (lossy UTF-8), or an empty string when it cannot be read.
pub fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs `command` with `sh -c` as a user would type it (a README's example), within 20 s, and
/// fails the test unless it exits 0. Returns its stdout. `needs` names what the command needs
/// installed, for the failure message.
pub async fn run_shell(command: &str, needs: &str) -> String {
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("`{command}` did not finish within 20 s"))
    .unwrap_or_else(|e| panic!("run sh: {e}"));
    assert!(
        out.status.success(),
        "`{command}` failed ({needs} is needed; scripts/test.sh installs it as root): {out:?}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
