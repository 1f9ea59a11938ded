//! `xray-bench`: the benchmark in one command. Measures the loopback ceiling, then the `xray`
//! daemon against a counting endpoint at stepped rates, at low rates and idle, and writes
//! `results.md` and `results.json`.
//!
//! A benchmark tool (package `tools/bench`, never built with the daemon nor packaged; Linux
//! only: it reads `/proc`). `scripts/bench.sh` builds everything in release mode and runs it; see
//! `bench/README.md` for the method. The figures are for reading and comparing; nothing here
//! asserts performance.
//!
//! Steps, in one run:
//! 1. **ceiling**: `xray-loadgen` at full speed against a minimal receive loop in this process
//!    (a blocking `recv` loop on a socket with the daemon's receive buffer);
//! 2. **steps**: the daemon (`--endpoint` at `xray-bench-endpoint`, pinned fake AWS
//!    environment, `-n us-east-1`, loopback only) fed at rising rates until loss appears; per
//!    step: offered and delivered segments/s, loss, the kernel's drop count
//!    (`/daemon/stats` `kernel_dropped`), daemon CPU seconds per million segments
//!    (`/proc/PID/stat` utime + stime) and peak RSS (`VmHWM`, reset before each step);
//! 3. **low rates and idle**: CPU % and CPU seconds per million segments at 1k and 4k
//!    segments/s, context switches per second of all
//!    the daemon's threads while idle (after start and after load), idle RSS, time from start to
//!    listening, binary size;
//! 4. the Markdown table and JSON, with the ratio of the highest lossless rate to the ceiling.
//!
//! The generator runs pinned to one core (`--gen-cpu`, default the last core); the daemon and
//! the endpoint share the others. Every child is killed when this process ends a step or fails.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use serde_json::{Value, json};

/// Settings of one run.
#[derive(Debug, Clone)]
struct Settings {
    xray: PathBuf,
    tools: PathBuf,
    out: PathBuf,
    size: usize,
    ceiling_count: u64,
    rates: Option<Vec<u64>>,
    start_rate: u64,
    rate_step: u64,
    step_seconds: f64,
    low_rates: Vec<u64>,
    low_seconds: f64,
    idle_seconds: f64,
    starts: usize,
    retries: usize,
    gen_cpu: Option<usize>,
    buffer_mb: Option<u64>,
    daemon_env: Vec<(String, String)>,
    daemon_args: Vec<String>,
}

/// The command line. A flag given wins over `--smoke`'s tiny configuration, which wins over the
/// defaults.
#[derive(Debug, Parser)]
#[command(
    name = "xray-bench",
    // A flag given again wins, as `scripts/bench.sh` relies on: it passes `--xray` and `--out`
    // before the caller's arguments.
    args_override_self = true,
    about = "Runs the whole benchmark and writes DIR/results.md and DIR/results.json (default DIR: bench).",
    // The doc comment above is for readers of this code, not for --help.
    long_about = None,
    after_help = "Measures the loopback ceiling (xray-loadgen at full speed against a bare receive \
        loop), then the xray daemon against xray-bench-endpoint at rising rates until loss \
        appears, at low rates and idle, and its start-up time. xray-loadgen and \
        xray-bench-endpoint are looked for next to this program. See bench/README.md for the \
        method."
)]
struct Cli {
    /// A run of a few seconds that only checks the command works (--ceiling-count 2000
    /// --rates 2000 --step-seconds 0.5 --low-rates 1000 --low-seconds 0.5 --idle-seconds 0.5
    /// --starts 1 --retries 0; flags given win)
    #[arg(long)]
    smoke: bool,
    /// The daemon binary under test [default: xray next to this program]
    #[arg(long, value_name = "PATH")]
    xray: Option<PathBuf>,
    /// Directory for results.md and results.json
    #[arg(long, value_name = "DIR", default_value = "bench")]
    out: PathBuf,
    /// Bytes of each segment document
    #[arg(long, value_name = "BYTES", default_value_t = 1024)]
    size: usize,
    /// Datagrams sent at full speed to measure the ceiling [default: 1000000; --smoke: 2000]
    #[arg(long, value_name = "N")]
    ceiling_count: Option<u64>,
    /// The step rates, segments/s, instead of --start-rate and --rate-step [--smoke: 2000]
    #[arg(long, value_name = "R1,R2,...", value_parser = rate_list)]
    rates: Option<Rates>,
    /// First step rate, segments/s (at least 1)
    #[arg(long, value_name = "N", default_value_t = 25_000)]
    start_rate: u64,
    /// Rate added at each step, segments/s (at least 1)
    #[arg(long, value_name = "N", default_value_t = 25_000)]
    rate_step: u64,
    /// Seconds of sending per step [default: 5; --smoke: 0.5]
    #[arg(long, value_name = "S")]
    step_seconds: Option<f64>,
    /// Rates, segments/s, at which the daemon's CPU % is measured [default: 1000,4000;
    /// --smoke: 1000]
    #[arg(long, value_name = "R1,R2", value_parser = rate_list)]
    low_rates: Option<Rates>,
    /// Seconds of sending per low rate [default: 10; --smoke: 0.5]
    #[arg(long, value_name = "S")]
    low_seconds: Option<f64>,
    /// Seconds of each idle measurement [default: 10; --smoke: 0.5]
    #[arg(long, value_name = "S")]
    idle_seconds: Option<f64>,
    /// Daemon starts timed to listening [default: 5; --smoke: 1]
    #[arg(long, value_name = "N")]
    starts: Option<usize>,
    /// Retries of a step that lost segments [default: 1; --smoke: 0]
    #[arg(long, value_name = "N")]
    retries: Option<usize>,
    /// The core the generator is pinned to, or none [default: the last core; none on one CPU]
    #[arg(long, value_name = "N|none", value_parser = gen_cpu)]
    gen_cpu: Option<GenCpu>,
    /// The daemon's buffer, MB (its -m) [default: the daemon's own]
    #[arg(long, value_name = "N")]
    buffer_mb: Option<u64>,
    /// A variable added to the daemon's environment (repeatable)
    #[arg(long, value_name = "NAME=VALUE", value_parser = name_value)]
    daemon_env: Vec<(String, String)>,
    /// A word added to the daemon's command line (repeatable); `{endpoint}` in it becomes the
    /// counting endpoint's `http://ADDR`, e.g. `--daemon-arg=--sink --daemon-arg=xray
    /// --daemon-arg=--sink --daemon-arg=otlp:{endpoint}/otlp` for an OTLP sink beside X-Ray
    #[arg(long, value_name = "WORD", allow_hyphen_values = true)]
    daemon_arg: Vec<String>,
}

/// A comma-separated list of rates (`--rates`, `--low-rates`).
#[derive(Debug, Clone)]
struct Rates(Vec<u64>);

fn rate_list(v: &str) -> Result<Rates, String> {
    v.split(',')
        .map(|r| {
            r.trim()
                .parse::<u64>()
                .map_err(|e| format!("rate {r:?}: {e}"))
        })
        .collect::<Result<_, _>>()
        .map(Rates)
}

/// `--gen-cpu`: a core, or `none` for no pinning.
#[derive(Debug, Clone, Copy)]
struct GenCpu(Option<usize>);

fn gen_cpu(v: &str) -> Result<GenCpu, String> {
    if v == "none" {
        return Ok(GenCpu(None));
    }
    v.parse()
        .map(|cpu| GenCpu(Some(cpu)))
        .map_err(|e| format!("{e} (want a core number or none)"))
}

fn name_value(v: &str) -> Result<(String, String), String> {
    v.split_once('=')
        .map(|(k, val)| (k.to_owned(), val.to_owned()))
        .ok_or_else(|| "want NAME=VALUE".to_owned())
}

/// `small` in a `--smoke` run, else `full`.
fn smoke<T>(tiny: bool, small: T, full: T) -> T {
    if tiny { small } else { full }
}

impl Cli {
    /// The run's settings: flags given, else `--smoke`'s, else the defaults.
    fn settings(self) -> Result<Settings> {
        let exe = std::env::current_exe().context("cannot find this executable's path")?;
        let tools = exe
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| anyhow!("no parent directory for {}", exe.display()))?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let tiny = self.smoke;
        Ok(Settings {
            xray: self.xray.unwrap_or_else(|| tools.join("xray")),
            tools,
            out: self.out,
            size: self.size,
            ceiling_count: self.ceiling_count.unwrap_or(smoke(tiny, 2_000, 1_000_000)),
            rates: self
                .rates
                .map(|r| r.0)
                .or_else(|| tiny.then(|| vec![2_000])),
            start_rate: self.start_rate.max(1),
            rate_step: self.rate_step.max(1),
            step_seconds: self.step_seconds.unwrap_or(smoke(tiny, 0.5, 5.0)),
            low_rates: self
                .low_rates
                .map_or_else(|| smoke(tiny, vec![1_000], vec![1_000, 4_000]), |r| r.0),
            low_seconds: self.low_seconds.unwrap_or(smoke(tiny, 0.5, 10.0)),
            idle_seconds: self.idle_seconds.unwrap_or(smoke(tiny, 0.5, 10.0)),
            starts: self.starts.unwrap_or(smoke(tiny, 1, 5)),
            retries: self.retries.unwrap_or(smoke(tiny, 0, 1)),
            gen_cpu: self.gen_cpu.map_or((cpus > 1).then_some(cpus - 1), |c| c.0),
            buffer_mb: self.buffer_mb,
            daemon_env: self.daemon_env,
            daemon_args: self.daemon_arg,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A child process killed when dropped.
#[derive(Debug)]
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What one generator run reported.
#[derive(Debug, Clone, Copy, Default)]
struct Generated {
    sent: u64,
    errors: u64,
    elapsed_s: f64,
    rate: f64,
}

/// Runs `xray-loadgen` to completion.
fn generate(s: &Settings, to: SocketAddr, rate: Option<u64>, count: u64) -> Result<Generated> {
    let mut cmd = Command::new(s.tools.join("xray-loadgen"));
    cmd.arg("--to").arg(to.to_string());
    cmd.arg("--rate")
        .arg(rate.map_or_else(|| "max".to_owned(), |r| r.to_string()));
    cmd.arg("--count").arg(count.to_string());
    cmd.arg("--size").arg(s.size.to_string());
    if let Some(cpu) = s.gen_cpu {
        cmd.arg("--cpu").arg(cpu.to_string());
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", s.tools.join("xray-loadgen").display()))?;
    if !out.status.success() {
        bail!(
            "xray-loadgen failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("xray-loadgen's output")?;
    Ok(Generated {
        sent: v["sent"].as_u64().unwrap_or(0),
        errors: v["errors"].as_u64().unwrap_or(0),
        elapsed_s: v["elapsed_s"].as_f64().unwrap_or(0.0),
        rate: v["rate"].as_f64().unwrap_or(0.0),
    })
}

/// A free loopback port (for both TCP and UDP at the moment of asking).
fn free_port() -> Result<u16> {
    for _ in 0..50 {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free loopback port found")
}

/// A minimal HTTP/1.1 GET; returns the body parsed as JSON.
fn get_json(addr: SocketAddr, path: &str) -> Result<Value> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let at = memchr::memmem::find(&raw, b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP header end from {addr}{path}"))?;
    serde_json::from_slice(&raw[at + 4..]).with_context(|| format!("JSON from {addr}{path}"))
}

/// The counting endpoint, running.
#[derive(Debug)]
struct Endpoint {
    _child: Guard,
    addr: SocketAddr,
}

impl Endpoint {
    fn start(s: &Settings) -> Result<Endpoint> {
        let path = s.tools.join("xray-bench-endpoint");
        let mut child = Command::new(&path)
            .args(["--listen", "127.0.0.1:0", "--max-seconds", "3600"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot run {}", path.display()))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let mut reader = std::io::BufReader::new(out);
            std::io::BufRead::read_line(&mut reader, &mut line)?;
        }
        let guard = Guard(child);
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("xray-bench-endpoint said {line:?}"))?;
        let addr = v["listening"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| anyhow!("xray-bench-endpoint said {line:?}"))?;
        Ok(Endpoint {
            _child: guard,
            addr,
        })
    }

    fn documents(&self) -> Result<u64> {
        Ok(get_json(self.addr, "/counts")?["documents"]
            .as_u64()
            .unwrap_or(0))
    }
}

/// The daemon under test, running.
#[derive(Debug)]
struct Daemon {
    child: Guard,
    pid: u32,
    udp: SocketAddr,
    tcp: SocketAddr,
    /// From spawn to accepting TCP connections (which it does after binding UDP).
    ready_after: Duration,
    _dir: TempDir,
}

/// A directory removed when dropped.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "xray-bench-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Daemon {
    fn start(s: &Settings, endpoint: SocketAddr) -> Result<Daemon> {
        let dir = TempDir::new()?;
        std::fs::write(dir.path().join("aws-config"), "")?;
        std::fs::write(dir.path().join("aws-credentials"), "")?;
        let log = std::fs::File::create(dir.path().join("daemon.log"))?;
        let (udp_port, tcp_port) = (free_port()?, free_port()?);
        let udp = SocketAddr::from(([127, 0, 0, 1], udp_port));
        let tcp = SocketAddr::from(([127, 0, 0, 1], tcp_port));
        let mut cmd = Command::new(&s.xray);
        cmd.env_clear()
            .env("AWS_ACCESS_KEY_ID", "AKIDXRAYBENCH")
            .env("AWS_SECRET_ACCESS_KEY", "xray-bench-fake-secret")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", dir.path().join("aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                dir.path().join("aws-credentials"),
            )
            .env("HOME", dir.path())
            .args(["-o", "-n", "us-east-1", "--endpoint"])
            .arg(format!("http://{endpoint}"))
            .arg("-b")
            .arg(udp.to_string())
            .arg("-t")
            .arg(tcp.to_string());
        if let Some(mb) = s.buffer_mb {
            cmd.arg("-m").arg(mb.to_string());
        }
        cmd.envs(s.daemon_env.iter().map(|(k, v)| (k, v)));
        cmd.args(
            s.daemon_args
                .iter()
                .map(|a| a.replace("{endpoint}", &format!("http://{endpoint}"))),
        );
        let started = Instant::now();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot run {}", s.xray.display()))?;
        let pid = child.id();
        let mut child = Guard(child);
        let ready_after = loop {
            if TcpStream::connect(tcp).is_ok() {
                break started.elapsed();
            }
            if let Ok(Some(status)) = child.0.try_wait() {
                let log =
                    std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
                bail!("the daemon exited at start ({status}):\n{log}");
            }
            if started.elapsed() > Duration::from_secs(10) {
                bail!("the daemon did not listen on {tcp} within 10 s");
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        Ok(Daemon {
            child,
            pid,
            udp,
            tcp,
            ready_after,
            _dir: dir,
        })
    }

    fn stats(&self) -> Result<Value> {
        get_json(self.tcp, "/daemon/stats")
    }

    /// SIGTERM, then waits up to `within` for the exit.
    fn stop(mut self, within: Duration) -> Result<()> {
        let pid = nix::unistd::Pid::from_raw(self.pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.child.0.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        bail!("the daemon did not exit within {within:?} of SIGTERM")
    }
}

// ---------------------------------------------------------------------------------------------
// /proc

/// Clock ticks per second for `/proc/PID/stat` (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
const CLOCK_TICKS: f64 = 100.0;

/// utime + stime of the whole process, in seconds.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("odd /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let utime: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let stime: f64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    Ok((utime + stime) / CLOCK_TICKS)
}

/// A `VmXXX:` line of `/proc/PID/status`, in KiB.
fn status_kib(pid: u32, key: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow!("no {key} in /proc/{pid}/status"))
}

/// Resets the peak RSS (`VmHWM`); false when the kernel does not allow it.
fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Voluntary plus involuntary context switches summed over the process's threads, and the
/// number of threads.
fn context_switches(pid: u32) -> Result<(u64, usize)> {
    let mut total = 0;
    let mut threads = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(status) = std::fs::read_to_string(task?.path().join("status")) else {
            continue; // the thread ended meanwhile
        };
        threads += 1;
        for line in status.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    Ok((total, threads))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Measurements

/// Step 1: the generator at full speed against a bare receive loop.
fn ceiling(s: &Settings) -> Result<Value> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // The daemon's receive buffer (forced where privileged, as the daemon does).
    if nix::sys::socket::setsockopt(
        &socket,
        nix::sys::socket::sockopt::RcvBufForce,
        &xray_daemon::net::UDP_RECEIVE_BUFFER,
    )
    .is_err()
    {
        socket.set_recv_buffer_size(xray_daemon::net::UDP_RECEIVE_BUFFER)?;
    }
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let addr = socket.local_addr()?;
    let received = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let receiver = {
        let (received, done) = (Arc::clone(&received), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            loop {
                match socket.recv(&mut buf) {
                    Ok(_) => {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) if done.load(Ordering::Relaxed) => break,
                    Err(_) => {}
                }
            }
        })
    };
    let generated = generate(s, addr, None, s.ceiling_count);
    done.store(true, Ordering::Relaxed);
    let _ = receiver.join();
    let g = generated?;
    let got = received.load(Ordering::Relaxed);
    let delivered_rate = got as f64 / g.elapsed_s.max(1e-9);
    let loss = loss_pct(g.sent, got);
    eprintln!(
        "ceiling: offered {:.0}/s, received {got} of {} ({loss:.3}% lost) = {delivered_rate:.0}/s",
        g.rate, g.sent
    );
    Ok(json!({
        "offered_per_s": round(g.rate, 0),
        "sent": g.sent,
        "received": got,
        "loss_pct": round(loss, 4),
        "delivered_per_s": round(delivered_rate, 0),
    }))
}

fn loss_pct(sent: u64, delivered: u64) -> f64 {
    if sent == 0 {
        0.0
    } else {
        sent.saturating_sub(delivered) as f64 * 100.0 / sent as f64
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// Waits until the endpoint has `target` documents, or they stop coming for longer than the
/// daemon's linger (1 s) plus slack; returns the count.
fn wait_delivered(endpoint: &Endpoint, target: u64) -> Result<u64> {
    let mut last = endpoint.documents()?;
    let mut last_change = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while last < target && last_change.elapsed() < Duration::from_millis(2_500) {
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        let now = endpoint.documents()?;
        if now != last {
            last = now;
            last_change = Instant::now();
        }
    }
    Ok(last)
}

fn stat_u64(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

fn dropped_total(v: &Value) -> u64 {
    v["dropped"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
}

/// One rate through the daemon: sends `rate × seconds` segments and measures.
fn step(
    s: &Settings,
    daemon: &Daemon,
    endpoint: &Endpoint,
    rate: u64,
    seconds: f64,
) -> Result<Value> {
    let count = ((rate as f64 * seconds) as u64).max(1);
    let peak_reset = reset_peak_rss(daemon.pid);
    let before_stats = daemon.stats()?;
    let before_docs = endpoint.documents()?;
    let cpu_before = cpu_seconds(daemon.pid)?;
    let g = generate(s, daemon.udp, Some(rate), count)?;
    let cpu_generating = cpu_seconds(daemon.pid)? - cpu_before;
    let docs = wait_delivered(endpoint, before_docs + g.sent)? - before_docs;
    let cpu = cpu_seconds(daemon.pid)? - cpu_before;
    let after_stats = daemon.stats()?;
    let peak_rss = status_kib(daemon.pid, "VmHWM")?;
    let kernel = stat_u64(&after_stats, "kernel_dropped")
        .saturating_sub(stat_u64(&before_stats, "kernel_dropped"));
    let daemon_dropped = dropped_total(&after_stats).saturating_sub(dropped_total(&before_stats));
    let loss = loss_pct(g.sent, docs);
    let delivered_rate = docs as f64 / g.elapsed_s.max(1e-9);
    let cpu_per_million = if docs > 0 {
        cpu * 1e6 / docs as f64
    } else {
        0.0
    };
    eprintln!(
        "step {rate}/s: offered {:.0}/s, delivered {docs} of {} = {delivered_rate:.0}/s, \
         loss {loss:.3}% (kernel {kernel}, daemon {daemon_dropped}), {cpu_per_million:.2} CPU-s/M, \
         peak RSS {} KiB, load {}",
        g.rate,
        g.sent,
        peak_rss,
        load_average()
    );
    Ok(json!({
        "target_per_s": rate,
        "offered_per_s": round(g.rate, 0),
        "sent": g.sent,
        "send_errors": g.errors,
        "delivered": docs,
        "delivered_per_s": round(delivered_rate, 0),
        "loss_pct": round(loss, 4),
        "kernel_dropped": kernel,
        "daemon_dropped": daemon_dropped,
        "cpu_s": round(cpu, 2),
        "cpu_pct_while_sending": round(cpu_generating * 100.0 / g.elapsed_s.max(1e-9), 1),
        "cpu_s_per_million": round(cpu_per_million, 2),
        "peak_rss_kib": peak_rss,
        "peak_rss_reset": peak_reset,
        "load_average": load_average(),
    }))
}

/// Context switches per second and RSS over `seconds` of silence.
fn idle(daemon: &Daemon, seconds: f64) -> Result<Value> {
    let (before, threads_before) = context_switches(daemon.pid)?;
    let cpu_before = cpu_seconds(daemon.pid)?;
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let elapsed = started.elapsed().as_secs_f64();
    let (after, threads_after) = context_switches(daemon.pid)?;
    let cpu = cpu_seconds(daemon.pid)? - cpu_before;
    let rss = status_kib(daemon.pid, "VmRSS")?;
    let per_s = after.saturating_sub(before) as f64 / elapsed;
    eprintln!(
        "idle {seconds} s: {per_s:.2} context switches/s, RSS {rss} KiB, threads {threads_before}→{threads_after}"
    );
    Ok(json!({
        "seconds": round(elapsed, 2),
        "wakeups_per_s": round(per_s, 2),
        "context_switches": after.saturating_sub(before),
        "cpu_s": round(cpu, 2),
        "rss_kib": rss,
        "threads": threads_after,
    }))
}

/// CPU % of the daemon while it receives `rate` segments/s for `seconds`, and its CPU seconds per
/// million segments sent.
fn low_rate(
    s: &Settings,
    daemon: &Daemon,
    endpoint: &Endpoint,
    rate: u64,
    seconds: f64,
) -> Result<Value> {
    let count = ((rate as f64 * seconds) as u64).max(1);
    let before_docs = endpoint.documents()?;
    let cpu_before = cpu_seconds(daemon.pid)?;
    let g = generate(s, daemon.udp, Some(rate), count)?;
    let cpu = cpu_seconds(daemon.pid)? - cpu_before;
    let docs = wait_delivered(endpoint, before_docs + g.sent)? - before_docs;
    let pct = cpu * 100.0 / g.elapsed_s.max(1e-9);
    let per_million = cpu * 1e6 / (g.sent.max(1) as f64);
    eprintln!(
        "low rate {rate}/s: CPU {pct:.2}%, {per_million:.1} CPU-s per million ({docs} of {} delivered)",
        g.sent
    );
    Ok(json!({
        "target_per_s": rate,
        "offered_per_s": round(g.rate, 0),
        "seconds": round(g.elapsed_s, 2),
        "cpu_pct": round(pct, 2),
        "cpu_s_per_million": round(per_million, 1),
        "delivered": docs,
        "sent": g.sent,
    }))
}

fn run(s: &Settings) -> Result<Value> {
    let began = Instant::now();
    let load_at_start = load_average();
    let binary_size = std::fs::metadata(&s.xray)
        .with_context(|| {
            format!(
                "no daemon binary at {} (build it, or give --xray PATH)",
                s.xray.display()
            )
        })?
        .len();

    eprintln!("1/4 ceiling: generator at full speed against a bare receive loop");
    let ceiling = ceiling(s)?;
    let ceiling_rate = ceiling["delivered_per_s"].as_f64().unwrap_or(0.0);

    let endpoint = Endpoint::start(s)?;

    eprintln!("3/4 start to listening ({} starts)", s.starts);
    let mut ready_ms = Vec::new();
    for _ in 0..s.starts {
        let d = Daemon::start(s, endpoint.addr)?;
        ready_ms.push(d.ready_after.as_secs_f64() * 1000.0);
        d.stop(Duration::from_secs(10))?;
    }
    ready_ms.sort_by(f64::total_cmp);
    let median_ready = ready_ms.get(ready_ms.len() / 2).copied().unwrap_or(0.0);

    let daemon = Daemon::start(s, endpoint.addr)?;
    // Let one-off start-up work (credential check, runtime threads) finish.
    std::thread::sleep(Duration::from_secs_f64(s.idle_seconds.min(2.0)));
    let idle_after_start = idle(&daemon, s.idle_seconds)?;
    let budget = stat_u64(&daemon.stats()?, "budget_bytes");

    let mut low = Vec::new();
    for &rate in &s.low_rates {
        low.push(low_rate(s, &daemon, &endpoint, rate, s.low_seconds)?);
    }

    eprintln!("2/4 steps: rising rates until loss appears");
    let mut steps = Vec::new();
    let mut highest_lossless: Option<f64> = None;
    let mut stopped_because = String::from("the list of rates ended");
    let rates: Box<dyn Iterator<Item = u64>> = match &s.rates {
        Some(list) => Box::new(list.clone().into_iter()),
        None => Box::new((0..).map(|i| s.start_rate + i * s.rate_step)),
    };
    'rates: for rate in rates {
        for attempt in 0..=s.retries {
            let mut result = step(s, &daemon, &endpoint, rate, s.step_seconds)?;
            let lossless = result["loss_pct"].as_f64() == Some(0.0);
            let offered = result["offered_per_s"].as_f64().unwrap_or(0.0);
            result["attempt"] = json!(attempt + 1);
            result["lossless"] = json!(lossless);
            steps.push(result);
            if lossless {
                highest_lossless = Some(highest_lossless.map_or(offered, |h: f64| h.max(offered)));
                if offered < rate as f64 * 0.9 {
                    stopped_because =
                        format!("the generator could not offer {rate}/s (reached {offered:.0}/s)");
                    break 'rates;
                }
                continue 'rates;
            }
        }
        stopped_because = format!("loss at {rate}/s");
        break;
    }

    let idle_after_load = idle(&daemon, s.idle_seconds)?;
    let final_stats = daemon.stats()?;
    daemon.stop(Duration::from_secs(30))?;

    let ratio = highest_lossless.map(|h| round(h / ceiling_rate.max(1.0), 3));
    Ok(json!({
        "settings": {
            "segment_bytes": s.size,
            "step_seconds": s.step_seconds,
            "generator_cpu": s.gen_cpu,
            "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
            "xray": s.xray.display().to_string(),
            "daemon_env": s.daemon_env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "daemon_args": s.daemon_args,
            "buffer_budget_bytes": budget,
        },
        "load_average_at_start": load_at_start,
        "load_average_at_end": load_average(),
        "ceiling": ceiling,
        "steps": steps,
        "stopped_because": stopped_because,
        "highest_lossless_per_s": highest_lossless.map(|h| round(h, 0)),
        "ratio_to_ceiling": ratio,
        "low_rates": low,
        "idle_after_start": idle_after_start,
        "idle_after_load": idle_after_load,
        "start_to_listening_ms": {
            "median": round(median_ready, 1),
            "all": ready_ms.iter().map(|m| round(*m, 1)).collect::<Vec<_>>(),
        },
        "binary_bytes": binary_size,
        "final_stats": final_stats,
        "run_seconds": round(began.elapsed().as_secs_f64(), 1),
    }))
}

fn fmt(v: &Value) -> String {
    match v {
        Value::Null => "–".to_owned(),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            if n.is_u64() || n.is_i64() || f.fract() == 0.0 {
                format!("{f:.0}")
            } else {
                n.to_string()
            }
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn markdown(r: &Value) -> String {
    let mut md = String::new();
    let c = &r["ceiling"];
    md.push_str("# xray-daemon-rs benchmark\n\n");
    md.push_str(&format!(
        "Daemon `{}`. Segments of {} bytes; generator pinned to CPU {}; {} CPUs; load average {} at start, {} at end; \
         buffer budget {} bytes; run took {} s.\n\n",
        fmt(&r["settings"]["xray"]),
        fmt(&r["settings"]["segment_bytes"]),
        fmt(&r["settings"]["generator_cpu"]),
        fmt(&r["settings"]["cpus"]),
        fmt(&r["load_average_at_start"]),
        fmt(&r["load_average_at_end"]),
        fmt(&r["settings"]["buffer_budget_bytes"]),
        fmt(&r["run_seconds"]),
    ));
    if let Some(args) = r["settings"]["daemon_args"]
        .as_array()
        .filter(|a| !a.is_empty())
    {
        let words: Vec<&str> = args.iter().filter_map(Value::as_str).collect();
        md.push_str(&format!(
            "Daemon arguments added: `{}`.\n\n",
            words.join(" ")
        ));
    }
    md.push_str("## Summary\n\n| figure | value |\n|---|---|\n");
    let rows = [
        (
            "loopback ceiling (bare receive loop), segments/s",
            fmt(&c["delivered_per_s"]),
        ),
        ("ceiling loss %", fmt(&c["loss_pct"])),
        (
            "highest lossless rate, segments/s",
            fmt(&r["highest_lossless_per_s"]),
        ),
        ("ratio to ceiling", fmt(&r["ratio_to_ceiling"])),
        ("stepping stopped because", fmt(&r["stopped_because"])),
        (
            "start to listening, ms (median)",
            fmt(&r["start_to_listening_ms"]["median"]),
        ),
        (
            "idle RSS after start, KiB",
            fmt(&r["idle_after_start"]["rss_kib"]),
        ),
        (
            "idle wakeups/s after start (context switches, all threads)",
            fmt(&r["idle_after_start"]["wakeups_per_s"]),
        ),
        (
            "idle RSS after load, KiB",
            fmt(&r["idle_after_load"]["rss_kib"]),
        ),
        (
            "idle wakeups/s after load",
            fmt(&r["idle_after_load"]["wakeups_per_s"]),
        ),
        ("binary size, bytes", fmt(&r["binary_bytes"])),
    ];
    for (k, v) in rows {
        md.push_str(&format!("| {k} | {v} |\n"));
    }
    if let Some(low) = r["low_rates"].as_array() {
        for l in low {
            md.push_str(&format!(
                "| CPU % at {rate}/s | {} |\n| CPU-s per million at {rate}/s | {} |\n",
                fmt(&l["cpu_pct"]),
                fmt(&l["cpu_s_per_million"]),
                rate = fmt(&l["target_per_s"]),
            ));
        }
    }
    md.push_str(
        "\n## Steps\n\n| target/s | offered/s | delivered/s | loss % | kernel drops | daemon drops \
         | CPU-s per M | CPU % while sending | peak RSS KiB | load avg |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    if let Some(steps) = r["steps"].as_array() {
        for s in steps {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                fmt(&s["target_per_s"]),
                fmt(&s["offered_per_s"]),
                fmt(&s["delivered_per_s"]),
                fmt(&s["loss_pct"]),
                fmt(&s["kernel_dropped"]),
                fmt(&s["daemon_dropped"]),
                fmt(&s["cpu_s_per_million"]),
                fmt(&s["cpu_pct_while_sending"]),
                fmt(&s["peak_rss_kib"]),
                fmt(&s["load_average"]),
            ));
        }
    }
    md.push_str(
        "\nLoss counts documents the endpoint did not receive; kernel drops are the daemon \
         socket's `SO_RXQ_OVFL` count. CPU is utime + stime from `/proc/PID/stat` (10 ms ticks). \
         Wakeups are voluntary + involuntary context switches of all the daemon's threads.\n",
    );
    md
}

fn main() -> ExitCode {
    let settings = match Cli::parse().settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("xray-bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    let result = run(&settings).and_then(|r| {
        std::fs::create_dir_all(&settings.out)
            .with_context(|| format!("cannot create {}", settings.out.display()))?;
        let json_path = settings.out.join("results.json");
        let md_path = settings.out.join("results.md");
        std::fs::write(&json_path, serde_json::to_string_pretty(&r)? + "\n")
            .with_context(|| format!("cannot write {}", json_path.display()))?;
        let md = markdown(&r);
        std::fs::write(&md_path, &md)
            .with_context(|| format!("cannot write {}", md_path.display()))?;
        println!("{md}");
        eprintln!("wrote {} and {}", md_path.display(), json_path.display());
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xray-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        reason = "test code: a panic is the test failing"
    )]

    use super::*;
    use clap::CommandFactory;

    fn settings(args: &[&str]) -> Settings {
        let cli = Cli::try_parse_from(std::iter::once("xray-bench").chain(args.iter().copied()))
            .expect("the command line parses");
        cli.settings().expect("settings")
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_and_smoke() {
        let s = settings(&[]);
        assert_eq!(s.xray, s.tools.join("xray"));
        assert_eq!(s.out, PathBuf::from("bench"));
        assert_eq!(s.size, 1024);
        assert_eq!(s.ceiling_count, 1_000_000);
        assert_eq!(s.rates, None);
        assert_eq!((s.start_rate, s.rate_step), (25_000, 25_000));
        assert_eq!(s.step_seconds, 5.0);
        assert_eq!(s.low_rates, [1_000, 4_000]);
        assert_eq!((s.low_seconds, s.idle_seconds), (10.0, 10.0));
        assert_eq!((s.starts, s.retries), (5, 1));
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(s.gen_cpu, (cpus > 1).then_some(cpus - 1));
        assert_eq!(s.buffer_mb, None);
        assert!(s.daemon_env.is_empty());

        let s = settings(&["--smoke"]);
        assert_eq!(s.ceiling_count, 2_000);
        assert_eq!(s.rates, Some(vec![2_000]));
        assert_eq!(s.step_seconds, 0.5);
        assert_eq!(s.low_rates, [1_000]);
        assert_eq!((s.low_seconds, s.idle_seconds), (0.5, 0.5));
        assert_eq!((s.starts, s.retries), (1, 0));
        assert_eq!(s.size, 1024);
        // A flag given wins over --smoke, wherever it stands.
        let s = settings(&["--retries", "3", "--smoke", "--rates", "7"]);
        assert_eq!((s.retries, s.rates), (3, Some(vec![7])));
    }

    #[test]
    fn every_flag() {
        let s = settings(&[
            "--xray",
            "/bin/xray",
            "--out",
            "o",
            "--size",
            "2048",
            "--ceiling-count",
            "10",
            "--rates",
            "150000,200000",
            "--start-rate",
            "0",
            "--rate-step",
            "5",
            "--step-seconds",
            "1.5",
            "--low-rates",
            "10, 20",
            "--low-seconds",
            "2",
            "--idle-seconds",
            "3",
            "--starts",
            "4",
            "--retries",
            "0",
            "--gen-cpu",
            "none",
            "--buffer-mb",
            "64",
            "--daemon-env",
            "TOKIO_WORKER_THREADS=2",
            "--daemon-env",
            "A=b=c",
            // Given again: the last one wins (scripts/bench.sh passes --xray and --out first).
            "--out",
            "p",
        ]);
        assert_eq!(s.xray, PathBuf::from("/bin/xray"));
        assert_eq!(s.out, PathBuf::from("p"));
        assert_eq!(s.size, 2048);
        assert_eq!(s.ceiling_count, 10);
        assert_eq!(s.rates, Some(vec![150_000, 200_000]));
        assert_eq!((s.start_rate, s.rate_step), (1, 5));
        assert_eq!(s.step_seconds, 1.5);
        assert_eq!(s.low_rates, [10, 20]);
        assert_eq!((s.low_seconds, s.idle_seconds), (2.0, 3.0));
        assert_eq!((s.starts, s.retries), (4, 0));
        assert_eq!(s.gen_cpu, None);
        assert_eq!(s.buffer_mb, Some(64));
        let env = [("TOKIO_WORKER_THREADS", "2"), ("A", "b=c")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(s.daemon_env, env);
        assert_eq!(settings(&["--gen-cpu", "0"]).gen_cpu, Some(0));
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["--rates", "1,x"][..],
            &["--rates", ""],
            &["--gen-cpu", "last"],
            &["--daemon-env", "NOVALUE"],
            &["--size", "-1"],
            &["--starts"],
            &["--unknown", "1"],
            &["positional"],
        ] {
            let parsed =
                Cli::try_parse_from(std::iter::once("xray-bench").chain(args.iter().copied()));
            assert!(parsed.is_err(), "{args:?} parsed");
        }
    }
}
