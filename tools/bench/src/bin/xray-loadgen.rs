//! `xray-loadgen`: sends segment datagrams to a UDP address, from one thread, at a fixed rate or
//! as fast as it can, for a set count, then prints one JSON line and exits.
//!
//! A benchmark tool (package `tools/bench`, never built with the daemon nor packaged). Each
//! datagram is the SDK header `{"format":"json","version":1}`, `\n`, then a document shaped like the one the
//! Python X-Ray SDK sends for a Flask request (a segment with an HTTP block and two
//! subsegments), padded or trimmed to exactly `--size` bytes (default 1024). Every document has
//! its own trace id, segment id and subsegment ids: the ids are written into a template in
//! place, so sending costs one `send` and no allocation.
//!
//! ```text
//! xray-loadgen --to 127.0.0.1:2000 [--rate N | --rate max] [--count N] [--size BYTES] [--cpu N]
//! ```
//! Output (stdout): `{"sent":N,"errors":N,"elapsed_s":S,"rate":R}`, where `rate` is datagrams
//! per second actually offered.
//!
//! Pacing at a fixed rate: datagram `i` is due at `start + i / rate`; the sender sends whatever
//! is due, then sleeps while it is more than 100 µs ahead (so bursts are at most about that
//! long plus the timer's slack), and never spins when idle.

use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;

/// The header line every SDK sends.
const HEADER: &[u8] = b"{\"format\":\"json\",\"version\":1}\n";

/// Largest document, in bytes (a datagram must fit 64 KiB).
const MAX_SIZE: usize = 60 * 1024;

/// Sends Flask-shaped segment datagrams to a UDP address, from one thread, at a fixed rate or as
/// fast as it can, then prints one JSON line: {"sent":N,"errors":N,"elapsed_s":S,"rate":R,"size":B}.
#[derive(Debug, Parser)]
#[command(name = "xray-loadgen", args_override_self = true)]
struct Args {
    /// Where the datagrams go
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:2000", value_parser = address)]
    to: SocketAddr,
    /// Datagrams per second, or max (also 0) for as fast as possible
    #[arg(long, value_name = "N|max", default_value = "max", value_parser = rate)]
    rate: Rate,
    /// Datagrams to send (those that fail to send count too)
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    count: u64,
    /// Bytes of each document, after the header line (at most 61440)
    #[arg(long, value_name = "BYTES", default_value_t = 1024, value_parser = size)]
    size: usize,
    /// Pin the sending thread to this core (Linux)
    #[arg(long, value_name = "N")]
    cpu: Option<usize>,
}

/// Datagrams per second; `None` = as fast as possible.
#[derive(Debug, Clone, Copy)]
struct Rate(Option<f64>);

fn address(v: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|e| format!("{e} (want HOST:PORT, e.g. 127.0.0.1:2000)"))
}

fn rate(v: &str) -> Result<Rate, String> {
    if v == "max" || v == "0" {
        return Ok(Rate(None));
    }
    v.parse::<f64>()
        .ok()
        .filter(|r| *r > 0.0)
        .map(|r| Rate(Some(r)))
        .ok_or_else(|| "want a positive number or max".to_owned())
}

fn size(v: &str) -> Result<usize, String> {
    let size = v.parse::<usize>().map_err(|e| e.to_string())?;
    if size > MAX_SIZE {
        return Err(format!("at most {MAX_SIZE} bytes"));
    }
    Ok(size)
}

/// A datagram with the places where ids go.
#[derive(Debug)]
struct Template {
    bytes: Vec<u8>,
    /// Offsets of 24 hex digits: the random part of the trace id.
    trace: Vec<usize>,
    /// Offsets of 16 hex digits: the segment id (also the subsegments' `parent_id`).
    segment: Vec<usize>,
    /// Offsets of 16 hex digits, one per subsegment.
    subsegments: Vec<usize>,
}

const TRACE_MARK: &str = "TTTTTTTTTTTTTTTTTTTTTTTT";
const SEGMENT_MARK: &str = "SSSSSSSSSSSSSSSS";
const SUB_MARKS: [&str; 2] = ["AAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBB"];

/// Builds a Flask-shaped document of exactly `size` bytes (see the module docs), or says the
/// smallest size it can build.
fn template(size: usize) -> Result<Template, usize> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let epoch = now as u32;
    let trace = format!("1-{epoch:08x}-{TRACE_MARK}");
    let sub = |mark: &str, name: &str, extra: &str, t: f64| {
        format!(
            "{{\"id\": \"{mark}\", \"name\": \"{name}\", \"start_time\": {t:.6}, \"parent_id\": \
             \"{SEGMENT_MARK}\", \"in_progress\": false, {extra}, \"trace_id\": \"{trace}\", \
             \"type\": \"subsegment\", \"namespace\": \"local\", \"end_time\": {:.7}}}",
            t + 0.000_02
        )
    };
    let subs = [
        sub(
            SUB_MARKS[0],
            "db",
            "\"annotations\": {\"step\": \"db\"}",
            now + 0.000_1,
        ),
        sub(
            SUB_MARKS[1],
            "cache",
            "\"metadata\": {\"default\": {\"hit\": false}}",
            now + 0.000_2,
        ),
    ];
    let build = |subs: &[String], pad: usize| {
        // The padding field costs `field("")` bytes around its value; less than that is spaces.
        let field = |v: &str| format!(", \"annotations\": {{\"pad\": \"{v}\"}}");
        let overhead = field("").len();
        let padding = if pad < overhead {
            " ".repeat(pad)
        } else {
            field(&"x".repeat(pad - overhead))
        };
        format!(
            "{{\"id\": \"{SEGMENT_MARK}\", \"name\": \"flask-bench\", \"start_time\": {now:.6}, \
             \"in_progress\": false, \"http\": {{\"request\": {{\"url\": \"http://localhost/work\", \
             \"method\": \"GET\", \"user_agent\": \"Werkzeug/3.1.9\", \"client_ip\": \"127.0.0.1\"}}, \
             \"response\": {{\"status\": 200, \"content_length\": 12}}}}, \"aws\": {{\"xray\": \
             {{\"sdk\": \"X-Ray for Python\", \"sdk_version\": \"2.15.0\"}}}}, \"subsegments\": \
             [{}], \"trace_id\": \"{trace}\", \"service\": {{\"runtime\": \"CPython\", \
             \"runtime_version\": \"3.11.7\"}}, \"end_time\": {:.6}{padding}}}",
            subs.join(", "),
            now + 0.000_4,
        )
    };
    // Keep as many subsegments as fit, then pad to the exact size.
    let mut doc = String::new();
    for keep in (0..=subs.len()).rev() {
        let base = build(&subs[..keep], 0);
        if base.len() <= size {
            doc = build(&subs[..keep], size - base.len());
            break;
        }
    }
    if doc.is_empty() || doc.len() != size {
        return Err(build(&[], 0).len());
    }
    let mut bytes = HEADER.to_vec();
    bytes.extend_from_slice(doc.as_bytes());
    let find = |mark: &str| -> Vec<usize> {
        let m = mark.as_bytes();
        bytes
            .windows(m.len())
            .enumerate()
            .filter(|(_, w)| *w == m)
            .map(|(i, _)| i)
            .collect()
    };
    Ok(Template {
        trace: find(TRACE_MARK),
        segment: find(SEGMENT_MARK),
        subsegments: SUB_MARKS.iter().flat_map(|m| find(m)).collect(),
        bytes,
    })
}

/// Writes `v` as `out.len()` lowercase hex digits (the low bits of `v`).
fn hex_into(out: &mut [u8], mut v: u128) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = DIGITS[(v & 0xf) as usize];
        v >>= 4;
    }
}

impl Template {
    /// Gives datagram number `n` (of a run tagged `nonce`) its own ids.
    fn stamp(&mut self, nonce: u64, n: u64) {
        let trace = (u128::from(nonce) << 64) | u128::from(n);
        for &at in &self.trace {
            hex_into(&mut self.bytes[at..at + 24], trace);
        }
        // Low two bits free for the subsegments; the high bits of `nonce ^ n` fall off the 64.
        let seg = u128::from(nonce ^ n) << 2;
        for &at in &self.segment {
            hex_into(&mut self.bytes[at..at + 16], seg);
        }
        for (k, &at) in self.subsegments.iter().enumerate() {
            hex_into(&mut self.bytes[at..at + 16], seg + k as u128 + 1);
        }
    }
}

#[cfg(target_os = "linux")]
fn pin(cpu: usize) -> Result<(), String> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).map_err(|e| format!("--cpu {cpu}: {e}"))?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .map_err(|e| format!("--cpu {cpu}: {e}"))
}

#[cfg(not(target_os = "linux"))]
fn pin(_cpu: usize) -> Result<(), String> {
    Err("--cpu is only supported on Linux".into())
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(cpu) = args.cpu
        && let Err(e) = pin(cpu)
    {
        eprintln!("xray-loadgen: {e}");
        return ExitCode::from(1);
    }
    let bind: SocketAddr = if args.to.is_ipv4() {
        SocketAddr::from(([127, 0, 0, 1], 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0))
    };
    let socket = match UdpSocket::bind(bind).and_then(|s| s.connect(args.to).map(|()| s)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("xray-loadgen: cannot open a UDP socket to {}: {e}", args.to);
            return ExitCode::from(1);
        }
    };
    let mut datagram = match template(args.size) {
        Ok(t) => t,
        Err(smallest) => {
            eprintln!(
                "xray-loadgen: --size {}: at least {smallest} bytes",
                args.size
            );
            return ExitCode::from(2);
        }
    };
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id()).rotate_left(40);
    let (mut sent, mut errors) = (0u64, 0u64);
    let start = Instant::now();
    while sent + errors < args.count {
        if let Rate(Some(rate)) = args.rate {
            let n = sent + errors;
            let due = start + Duration::from_secs_f64(n as f64 / rate);
            let now = Instant::now();
            if due > now + Duration::from_micros(100) {
                std::thread::sleep(due - now);
            }
        }
        datagram.stamp(nonce, sent + errors);
        match socket.send(&datagram.bytes) {
            Ok(_) => sent += 1,
            // Nobody listening yet (ICMP refused) and the like: counted, not retried.
            Err(_) => errors += 1,
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{{\"sent\":{sent},\"errors\":{errors},\"elapsed_s\":{elapsed:.6},\"rate\":{:.1},\"size\":{}}}",
        sent as f64 / elapsed.max(1e-9),
        datagram.bytes.len() - HEADER.len()
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("xray-loadgen").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line() {
        Args::command().debug_assert();
        let Ok(a) = parse(&[]) else {
            panic!("no arguments should parse")
        };
        assert_eq!(a.to, SocketAddr::from(([127, 0, 0, 1], 2000)));
        assert_eq!(
            (a.rate.0, a.count, a.size, a.cpu),
            (None, 100_000, 1024, None)
        );
        // What xray-bench passes.
        let Ok(a) = parse(&[
            "--to",
            "127.0.0.1:40000",
            "--rate",
            "2000",
            "--count",
            "7",
            "--size",
            "800",
            "--cpu",
            "1",
        ]) else {
            panic!("xray-bench's arguments should parse")
        };
        assert_eq!(a.to, SocketAddr::from(([127, 0, 0, 1], 40000)));
        assert_eq!(
            (a.rate.0, a.count, a.size, a.cpu),
            (Some(2000.0), 7, 800, Some(1))
        );
        for max in ["max", "0"] {
            assert!(
                parse(&["--rate", max]).is_ok_and(|a| a.rate.0.is_none()),
                "{max}"
            );
        }
        for bad in [
            &["--rate", "-5"][..],
            &["--rate", "fast"],
            &["--size", "61441"],
            &["--to", "localhost"],
            &["--count"],
            &["--cpu", "x"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn documents_have_the_asked_size_and_unique_ids() {
        let smallest = template(0).err().unwrap_or_default();
        assert!(smallest > 300 && smallest < 700, "{smallest}");
        for size in [smallest, smallest + 1, 800, 1024, 1100, 8192] {
            let Ok(mut t) = template(size) else {
                panic!("no template of {size} bytes")
            };
            t.stamp(7, 1);
            let doc = &t.bytes[HEADER.len()..];
            assert_eq!(doc.len(), size);
            let v: serde_json::Value = serde_json::from_slice(doc).unwrap_or_default();
            assert!(v["id"].is_string() && v["trace_id"].is_string(), "{size}");
            let first = v["id"].clone();
            t.stamp(7, 2);
            let v2: serde_json::Value =
                serde_json::from_slice(&t.bytes[HEADER.len()..]).unwrap_or_default();
            assert_ne!(first, v2["id"]);
            assert_ne!(v["trace_id"], v2["trace_id"]);
        }
    }
}
