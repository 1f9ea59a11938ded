//! Trace and segment ids, minimal segment documents, and datagram framing.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The header line the X-Ray SDKs put before each document (the daemon wants it, then `\n`).
pub const XRAY_HEADER: &str = r#"{"format":"json","version":1}"#;

/// 64 random-enough bits: std's randomly keyed hasher over a process-wide counter.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    hasher.finish()
}

fn now_secs_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// A fresh trace id in X-Ray's format: `1-<8 hex: epoch seconds>-<24 hex>`.
pub fn new_trace_id() -> String {
    let epoch = now_secs_f64() as u32;
    let high = random_u64() >> 32;
    format!("1-{epoch:08x}-{high:08x}{:016x}", random_u64())
}

/// A fresh segment id: 16 hex digits.
pub fn new_segment_id() -> String {
    format!("{:016x}", random_u64())
}

/// A minimal complete segment document that moto accepts (`id`, `name`, `trace_id`,
/// `start_time`, `end_time`), compact JSON, start now, 10 ms long.
pub fn segment_json(trace_id: &str, segment_id: &str, name: &str) -> String {
    let start = now_secs_f64();
    serde_json::json!({
        "trace_id": trace_id,
        "id": segment_id,
        "name": name,
        "start_time": start,
        "end_time": start + 0.01,
    })
    .to_string()
}

/// The datagram an SDK sends for `body`: [`XRAY_HEADER`], `\n`, then the body bytes.
pub fn datagram(body: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(XRAY_HEADER.len() + 1 + body.len());
    out.extend_from_slice(XRAY_HEADER.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(body.as_bytes());
    out
}
