//! [`Daemon`]: the `xray` binary as a child process, under a pinned AWS environment.
//!
//! The child's environment is the test process's minus every `AWS_*` variable, the proxy
//! variables (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`, any case) and `RUST_LOG`,
//! plus:
//! - `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`: fake values (unless
//!   [`DaemonBuilder::without_credentials`]);
//! - `AWS_REGION` only when [`DaemonBuilder::region`] gives one;
//! - `AWS_CONFIG_FILE`, `AWS_SHARED_CREDENTIALS_FILE`: empty files in the daemon's temp dir
//!   (contents settable), `HOME` = that temp dir, `AWS_EC2_METADATA_DISABLED=true`;
//! - whatever [`DaemonBuilder::env`] adds last.
//!
//! By default the daemon gets `-b 127.0.0.1:P -t 127.0.0.1:P` on a fresh port P (the same
//! number for UDP and TCP, like the upstream daemon's 2000), then the test's own arguments.
//! Its stdout and stderr go to files in the temp dir, readable at any time.

use std::ffi::{OsStr, OsString};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::http::{self, BoxError, Response};
use super::moto::{Moto, TEST_REGION};
use super::paths::xray_bin;
use super::ports::free_addr;
use super::proc::{read_lossy, tail};
use super::segments::datagram;
use super::stats::{self, Snapshot};
use super::wait::{self, Deadline, POLL_INTERVAL};

/// Fake credentials the daemon gets by default (moto does not check signatures).
pub const FAKE_ACCESS_KEY_ID: &str = "AKIDDAEMONTEST";
/// See [`FAKE_ACCESS_KEY_ID`].
pub const FAKE_SECRET_ACCESS_KEY: &str = "daemon-test-secret";

/// Default time the daemon has to answer `GET /daemon/stats` after it is spawned.
pub const READY_DEADLINE: Duration = Duration::from_secs(10);

/// How a daemon that ran to its end finished.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// All it wrote to stdout (lossy UTF-8).
    pub stdout: String,
    /// All it wrote to stderr (lossy UTF-8).
    pub stderr: String,
}

/// Builds the command line and environment of one daemon; see the module docs.
#[derive(Debug)]
pub struct DaemonBuilder {
    dir: tempfile::TempDir,
    args: Vec<OsString>,
    udp: SocketAddr,
    tcp: SocketAddr,
    /// Ports picked here (not by the test): a port lost to a race may be replaced.
    auto_ports: bool,
    bind_flags: bool,
    region: Option<String>,
    credentials: bool,
    env: Vec<(OsString, OsString)>,
    ready_within: Duration,
    current_dir: Option<PathBuf>,
    /// Replaces the test build of `xray`: the program, then arguments before the daemon's.
    program: Vec<OsString>,
}

impl Default for DaemonBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl DaemonBuilder {
    /// A daemon on a fresh port, with fake credentials, no region and no extra arguments.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("xray-it-daemon-")
            .tempdir()
            .expect("temp dir for the daemon");
        std::fs::write(dir.path().join("aws-config"), "").expect("write aws-config");
        std::fs::write(dir.path().join("aws-credentials"), "").expect("write aws-credentials");
        let addr = free_addr();
        Self {
            dir,
            args: Vec::new(),
            udp: addr,
            tcp: addr,
            auto_ports: true,
            bind_flags: true,
            region: None,
            credentials: true,
            env: Vec::new(),
            ready_within: READY_DEADLINE,
            current_dir: None,
            program: Vec::new(),
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Appends `--endpoint URL`.
    pub fn endpoint(self, url: &str) -> Self {
        self.arg("--endpoint").arg(url)
    }

    /// Appends `--endpoint URL -n` [`TEST_REGION`]: uploads go to `url` (a fault injector, a
    /// TLS front, or moto itself).
    pub fn upload_to(self, url: &str) -> Self {
        self.endpoint(url).arg("-n").arg(TEST_REGION)
    }

    /// Appends `--endpoint <moto> -n` [`TEST_REGION`]: uploads go to this moto.
    pub fn upstream(self, moto: &Moto) -> Self {
        self.upload_to(&moto.endpoint())
    }

    /// Sets `AWS_REGION` in the daemon's environment (unset by default).
    pub fn region(mut self, region: &str) -> Self {
        self.region = Some(region.to_owned());
        self
    }

    /// Starts the daemon with no `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
    pub fn without_credentials(mut self) -> Self {
        self.credentials = false;
        self
    }

    /// Sets one more environment variable (applied after the pinned ones, so it wins).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Contents of the file `AWS_CONFIG_FILE` points at (empty by default).
    pub fn aws_config_file(self, contents: &str) -> Self {
        std::fs::write(self.dir.path().join("aws-config"), contents).expect("write aws-config");
        self
    }

    /// Contents of the file `AWS_SHARED_CREDENTIALS_FILE` points at (empty by default).
    pub fn aws_credentials_file(self, contents: &str) -> Self {
        std::fs::write(self.dir.path().join("aws-credentials"), contents)
            .expect("write aws-credentials");
        self
    }

    /// The UDP address given with `-b` (a fresh port unless set).
    pub fn bind_udp(mut self, addr: SocketAddr) -> Self {
        self.udp = addr;
        self.auto_ports = false;
        self
    }

    /// The TCP address given with `-t` (a fresh port unless set).
    pub fn bind_tcp(mut self, addr: SocketAddr) -> Self {
        self.tcp = addr;
        self.auto_ports = false;
        self
    }

    /// Passes no `-b`/`-t`: the test sets the addresses another way (a config file, say). The
    /// harness still expects the daemon on [`Self::udp_addr`] / [`Self::tcp_addr`].
    pub fn no_bind_flags(mut self) -> Self {
        self.bind_flags = false;
        self.auto_ports = false;
        self
    }

    /// Runs `argv` instead of the `xray` built for this test run: its first element is the
    /// program, the rest go before the daemon's arguments (a release binary, or
    /// `qemu-aarch64-static` and an arm64 binary).
    pub fn program<I, S>(mut self, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.program = argv.into_iter().map(|a| a.as_ref().to_owned()).collect();
        self
    }

    /// How long [`Self::start`] waits for `/daemon/stats` (default [`READY_DEADLINE`]).
    pub fn ready_within(mut self, within: Duration) -> Self {
        self.ready_within = within;
        self
    }

    /// The daemon's working directory (default: the test process's, the repository root),
    /// where it looks for `./cfg.yaml`.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.current_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// The UDP address the daemon will listen on.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp
    }

    /// The TCP address the daemon will listen on.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp
    }

    /// The daemon's temp dir (its `HOME`; holds its output files); lives as long as the daemon.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` to `NAME` in the temp dir (a config file, say) and returns its path.
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    fn stdout_path(&self) -> PathBuf {
        self.dir.path().join("stdout.log")
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("stderr.log")
    }

    /// The command line and environment, output files truncated.
    fn command(&self) -> Command {
        let mut command = match self.program.split_first() {
            Some((program, leading)) => {
                let mut command = Command::new(program);
                command.args(leading);
                command
            }
            None => Command::new(xray_bin()),
        };
        if self.bind_flags {
            command
                .arg("-b")
                .arg(self.udp.to_string())
                .arg("-t")
                .arg(self.tcp.to_string());
        }
        command.args(&self.args);
        for (key, _) in std::env::vars_os() {
            let name = key.to_string_lossy().to_ascii_uppercase();
            if name.starts_with("AWS_")
                || matches!(
                    name.as_str(),
                    "HTTP_PROXY" | "HTTPS_PROXY" | "ALL_PROXY" | "NO_PROXY" | "RUST_LOG"
                )
            {
                command.env_remove(&key);
            }
        }
        if self.credentials {
            command
                .env("AWS_ACCESS_KEY_ID", FAKE_ACCESS_KEY_ID)
                .env("AWS_SECRET_ACCESS_KEY", FAKE_SECRET_ACCESS_KEY);
        }
        if let Some(region) = &self.region {
            command.env("AWS_REGION", region);
        }
        let dir = self.dir.path();
        command
            .env("AWS_CONFIG_FILE", dir.join("aws-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("aws-credentials"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("HOME", dir);
        for (key, value) in &self.env {
            command.env(key, value);
        }
        // The daemon reads ./cfg.yaml when no -c is given: run it in its own directory unless a
        // test asks otherwise, so the repository's sample cfg.yaml never leaks into a test.
        command.current_dir(self.current_dir.as_deref().unwrap_or(dir));
        let stdout = std::fs::File::create(self.stdout_path()).expect("daemon stdout file");
        let stderr = std::fs::File::create(self.stderr_path()).expect("daemon stderr file");
        command.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        command
    }

    fn spawn(self) -> Daemon {
        let child = self.command().spawn().unwrap_or_else(|e| {
            let program = self.program.first().cloned();
            let program = program.unwrap_or_else(|| xray_bin().into_os_string());
            panic!("spawn {}: {e}", program.to_string_lossy())
        });
        let sender = UdpSocket::bind("127.0.0.1:0").expect("bind the test's UDP sender");
        Daemon {
            child,
            exit: None,
            udp: self.udp,
            tcp: self.tcp,
            stdout: self.stdout_path(),
            stderr: self.stderr_path(),
            sender,
            builder_rest: Some(self),
        }
    }

    /// Spawns the daemon and waits until `GET /daemon/stats` answers 200 with a stats
    /// [`Snapshot`].
    ///
    /// Panics with the daemon's stderr and stdout if it exits first or is not ready within
    /// [`Self::ready_within`]. If it exits reporting its address in use and the ports were
    /// picked here, it is started again on new ports (up to 3 tries).
    pub async fn start(mut self) -> Daemon {
        let within = self.ready_within;
        for attempt in 1..=3 {
            let mut daemon = self.spawn();
            match daemon.wait_ready(within).await {
                Ok(()) => return daemon,
                Err(why) => {
                    let stderr = daemon.stderr();
                    let retry = attempt < 3
                        && daemon.exit.is_some()
                        && daemon.builder_rest.as_ref().is_some_and(|b| b.auto_ports)
                        && stderr.to_ascii_lowercase().contains("in use");
                    if !retry {
                        let args = daemon.builder_rest.as_ref().map(|b| b.args.clone());
                        let stdout = daemon.stdout();
                        // Dropped before panicking, so its drop does not print the same output.
                        drop(daemon);
                        panic!(
                            "xray did not become ready: {why}\n--- args: {args:?}\n--- stderr:\n{stderr}\n--- stdout:\n{stdout}"
                        );
                    }
                    self = daemon
                        .builder_rest
                        .take()
                        .expect("builder kept until start succeeds");
                    let addr = free_addr();
                    self.udp = addr;
                    self.tcp = addr;
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Runs the daemon until it exits by itself (a startup error, say) and returns how it
    /// finished; panics (after killing it) if it is still running after `within`.
    pub async fn run_to_exit(self, within: Duration) -> Finished {
        let mut daemon = self.spawn();
        let status = daemon.wait_exit(within).await;
        Finished {
            status,
            stdout: daemon.stdout(),
            stderr: daemon.stderr(),
        }
    }
}

/// A running `xray` child process; killed (SIGKILL) on drop unless it already exited.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    exit: Option<ExitStatus>,
    udp: SocketAddr,
    tcp: SocketAddr,
    stdout: PathBuf,
    stderr: PathBuf,
    sender: UdpSocket,
    /// Keeps the temp dir (output files, config files) alive; reused to respawn on a port race.
    builder_rest: Option<DaemonBuilder>,
}

impl Daemon {
    /// A builder; see [`DaemonBuilder`].
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder::new()
    }

    async fn wait_ready(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Deadline::after(within);
        loop {
            if let Some(status) = self.try_exit() {
                return Err(format!("it exited while starting: {status}"));
            }
            match self.try_stats().await {
                Ok(_) => return Ok(()),
                Err(e) if deadline.passed() => {
                    return Err(format!(
                        "GET http://{}/daemon/stats did not succeed within {within:?}: {e}",
                        self.tcp
                    ));
                }
                Err(_) => deadline.tick(POLL_INTERVAL).await,
            }
        }
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// The UDP address it listens on.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp
    }

    /// The TCP address it listens on (stats, health, sampling proxy).
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its temp dir (`HOME`, output files, files written with [`DaemonBuilder::write_file`]).
    pub fn dir(&self) -> &Path {
        self.builder_rest
            .as_ref()
            .map(|b| b.dir())
            .expect("builder kept while the daemon lives")
    }

    /// Sends one datagram (exactly these bytes) to its UDP address from the test's socket.
    pub fn send(&self, datagram: &[u8]) {
        let sent = self
            .sender
            .send_to(datagram, self.udp)
            .unwrap_or_else(|e| panic!("send {} bytes to {}: {e}", datagram.len(), self.udp));
        assert_eq!(sent, datagram.len(), "short UDP send");
    }

    /// The address [`Self::send`] sends from (what the daemon's warnings name as the sender).
    pub fn sender_addr(&self) -> SocketAddr {
        self.sender
            .local_addr()
            .expect("local address of the test's UDP sender")
    }

    /// Sends `body` framed as an SDK would: the JSON header, `\n`, the body.
    pub fn send_segment(&self, body: &str) {
        self.send(&datagram(body));
    }

    /// `GET path` on its TCP address.
    pub async fn get(&self, path: &str) -> Result<Response, BoxError> {
        http::get(self.tcp, path).await
    }

    /// `GET /daemon/stats`: the body of a 200 answer, an error otherwise.
    async fn stats_body(&self) -> Result<String, BoxError> {
        let response = self.get("/daemon/stats").await?;
        if response.status != 200 {
            return Err(format!("status {}: {}", response.status, response.text()).into());
        }
        Ok(response.text())
    }

    /// `GET /daemon/stats`, typed; an error unless it answers 200. A body that is not a
    /// [`Snapshot`] fails the test at once, naming the body.
    pub async fn try_stats(&self) -> Result<Snapshot, BoxError> {
        Ok(stats::parse(&self.stats_body().await?))
    }

    /// `GET /daemon/stats`, typed; panics on failure.
    pub async fn stats(&self) -> Snapshot {
        self.try_stats()
            .await
            .unwrap_or_else(|e| panic!("GET http://{}/daemon/stats: {e}", self.tcp))
    }

    /// Polls the stats until `pred` holds and returns them; panics with the last stats and
    /// the daemon's output after `within`.
    pub async fn wait_for_stats(
        &self,
        pred: impl Fn(&Snapshot) -> bool,
        within: Duration,
    ) -> Snapshot {
        let mut last: Option<Result<Snapshot, String>> = None;
        let found = wait::until(within, POLL_INTERVAL, async || {
            let stats = self.try_stats().await.map_err(|e| e.to_string());
            let hit = stats.as_ref().ok().filter(|s| pred(s)).cloned();
            last = Some(stats);
            hit
        })
        .await;
        match found {
            Some(stats) => stats,
            None => panic!(
                "stats did not reach the expected state within {within:?}; last: {last:#?}\n--- stderr:\n{}\n--- stdout tail:\n{}",
                tail(&self.stderr(), 40),
                tail(&self.stdout(), 40)
            ),
        }
    }

    /// Sends SIGTERM (the daemon should drain and exit 0).
    pub fn sigterm(&self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = i32::try_from(self.child.id()).expect("pid fits i32");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
            .unwrap_or_else(|e| panic!("send {signal} to the daemon: {e}"));
    }

    /// Waits for it to exit and returns its status; panics with its output (and kills it) if
    /// it is still running after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Deadline::after(within);
        loop {
            if let Some(status) = self.try_exit() {
                return status;
            }
            if deadline.passed() {
                let _ = self.child.kill();
                panic!(
                    "xray still running after {within:?}\n--- stderr:\n{}\n--- stdout tail:\n{}",
                    tail(&self.stderr(), 40),
                    tail(&self.stdout(), 40)
                );
            }
            deadline.tick(Duration::from_millis(20)).await;
        }
    }

    /// Waits up to `within` for a line of its stdout equal to `line`; fails the test, showing
    /// the stdout, if none comes.
    pub async fn wait_for_stdout_line(&self, line: &str, within: Duration) {
        let printed = super::wait::until(within, super::wait::POLL_INTERVAL, async || {
            self.stdout().lines().any(|l| l == line).then_some(())
        })
        .await;
        assert!(
            printed.is_some(),
            "stdout has no line {line:?}:\n{}",
            self.stdout()
        );
    }

    /// Everything it wrote to stdout so far (lossy UTF-8).
    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout)
    }

    /// Everything it wrote to stderr so far (lossy UTF-8).
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- xray (udp {}, tcp {}) stderr tail:\n{}\n--- xray stdout tail:\n{}",
                self.udp,
                self.tcp,
                tail(&self.stderr(), 40),
                tail(&self.stdout(), 60)
            );
        }
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
