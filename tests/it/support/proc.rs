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
