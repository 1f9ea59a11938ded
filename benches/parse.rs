//! `cargo bench --bench parse`: nanoseconds per `document::parse` of a 1.1 KB document shaped
//! like the Python SDK's Flask segment (as captured from `tests/peers/flask_app.py`), and of the
//! same document with an escaped character in its `id`.
//!
//! A plain timing loop (no harness crate): the figure is for comparing changes on one machine.
//! (It showed that a hand-written validating scanner saved under 10% over `serde_json` here, so
//! the parser stayed as it was.)

use std::hint::black_box;
use std::time::Instant;

use xray_daemon::document::{DEFAULT_MAX_DOCUMENT_BYTES, parse};

const DOC: &str = r#"{"id": "8f630cda78aa2d51", "name": "flask-test", "start_time": 1795770833.332308, "in_progress": false, "http": {"request": {"url": "http://localhost/work", "method": "GET", "user_agent": "Werkzeug/3.1.9", "client_ip": "127.0.0.1"}, "response": {"status": 200, "content_length": 12}}, "aws": {"xray": {"sdk": "X-Ray for Python", "sdk_version": "2.15.0"}}, "subsegments": [{"id": "6453157fce9eb7e5", "name": "db", "start_time": 1795770833.332436, "parent_id": "8f630cda78aa2d51", "in_progress": false, "annotations": {"step": "db"}, "trace_id": "1-6b0949d1-e20ce1988a454fb4c50eeca3", "type": "subsegment", "namespace": "local", "end_time": 1795770833.3324544}, {"id": "50c49de51672bd17", "name": "cache", "start_time": 1795770833.33247, "parent_id": "8f630cda78aa2d51", "in_progress": false, "metadata": {"default": {"hit": false}}, "trace_id": "1-6b0949d1-e20ce1988a454fb4c50eeca3", "type": "subsegment", "namespace": "local", "end_time": 1795770833.3324769}], "trace_id": "1-6b0949d1-e20ce1988a454fb4c50eeca3", "service": {"runtime": "CPython", "runtime_version": "3.11.7"}, "end_time": 1795770833.332722}"#;

fn time(label: &str, datagram: &[u8]) {
    const N: u32 = 200_000;
    for _ in 0..N / 10 {
        let _ = black_box(parse(black_box(datagram), DEFAULT_MAX_DOCUMENT_BYTES));
    }
    let start = Instant::now();
    for _ in 0..N {
        let _ = black_box(parse(black_box(datagram), DEFAULT_MAX_DOCUMENT_BYTES));
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(N);
    println!(
        "{label}: {ns:.0} ns per datagram of {} bytes ({:.0} MB/s)",
        datagram.len(),
        datagram.len() as f64 * 1e3 / ns
    );
}

fn main() {
    let header = "{\"format\":\"json\",\"version\":1}\n";
    let plain = format!("{header}{DOC}");
    let escaped = plain.replacen("\"8f630cda78aa2d51\"", "\"8f630cda78aa2d5\\u0031\"", 1);
    assert!(parse(plain.as_bytes(), DEFAULT_MAX_DOCUMENT_BYTES).is_ok());
    assert!(parse(escaped.as_bytes(), DEFAULT_MAX_DOCUMENT_BYTES).is_ok());
    time("Flask segment", plain.as_bytes());
    time("Flask segment, escaped id", escaped.as_bytes());
}
