//! Shipping: the release artifacts are built by `scripts/release.sh` and then
//! inspected and run, not only described.
//!
//! - Static binaries for x86_64 and arm64 (the arm64 one under `qemu-aarch64-static`) relay a
//!   segment to moto.
//! - The `FROM scratch` image (built with the root `Dockerfile`) relays a segment sent from
//!   outside it, runs as uid 10001, answers `xray health`, and trusts exactly its CA bundle.
//! - The rpm (named `xray`, epoch 1) is inspected with `rpm -qp`, installed into a scratch root,
//!   and upgrades a stand-in of the original daemon's 3.6.6 package; its unit passes
//!   `systemd-analyze verify`.
//! - The deb is inspected with `dpkg-deb`; the zip's `xray` runs under another name and path.
//! - Every artifact carries `LICENSE` and the third-party notices (`THIRD-PARTY-LICENSES`,
//!   written by cargo-about) where its format expects them, and the notices name each crate
//!   linked into `xray` with its licence.
//! - The multi-arch OCI archive (buildah) holds an index of linux/amd64 and linux/arm64; each
//!   image's `xray` is the release binary, and the arm64 one relays to moto under qemu.
//! - The example ECS task definition and docker-compose file have the shape ECS and Compose need.
//!
//! The artifacts are built once per test run (`scripts/release.sh --no-image`, shared through
//! a `OnceLock`): the first packaging test to need them waits for the build, the others reuse
//! it. The tools come from `scripts/packaging-setup.sh` (which `scripts/test.sh` runs as root); a
//! missing tool fails the test with that command. The Docker engine is started by the image test
//! when it is not running, and stopped by it again.
//!
//! A test binary of its own (`cargo test --test packaging`, run by scripts/test.sh as root):
//! plain `cargo test` does not build release images for two architectures.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the test failing"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "the harness reads its own environment to prepare the child processes it starts"
)]
#![allow(
    dead_code,
    reason = "the support module is shared with tests/it; this binary uses part of it"
)]

#[path = "../it/support/mod.rs"]
mod support;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::stats::{self, Snapshot};
use crate::support::{
    Daemon, Deadline, Moto, TEST_REGION, free_addr, new_segment_id, new_trace_id, repo_root,
    segment_json, venv_bin,
};

/// The command that installs every tool these tests use.
const SETUP: &str = "run `scripts/packaging-setup.sh` as root (scripts/test.sh runs it)";

/// The package version (artifact names carry it).
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long a relayed segment may take to show up in moto (qemu is slow to start).
const RELAY_WITHIN: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Helpers: commands, tools, the shared release build.

/// Runs `command` to its end; panics naming it if it cannot start.
fn output(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}; {SETUP}"))
}

/// Runs `command`, panics with its output unless it exits 0, and returns its stdout.
fn stdout_of(command: &mut Command) -> String {
    let out = output(command);
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n--- stdout:\n{}\n--- stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Panics naming [`SETUP`] unless every program is on `PATH`.
fn require_tools(tools: &[&str]) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .collect();
    assert!(
        missing.is_empty(),
        "missing {}: {SETUP}",
        missing.join(", ")
    );
}

/// The two architectures the original ships for Linux.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    fn name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }
}

/// What `scripts/release.sh` left in `target/dist`.
#[derive(Debug)]
struct Dist {
    dir: PathBuf,
}

impl Dist {
    /// The static binary for `arch`.
    fn binary(&self, arch: Arch) -> PathBuf {
        self.dir.join(format!("linux-{}", arch.name())).join("xray")
    }

    /// `aws-xray-daemon-linux-<arch>-<V>.<ext>`.
    fn artifact(&self, arch: Arch, ext: &str) -> PathBuf {
        self.dir.join(format!(
            "aws-xray-daemon-linux-{}-{VERSION}.{ext}",
            arch.name()
        ))
    }

    /// The staged Docker build context for amd64.
    fn image_context(&self) -> PathBuf {
        self.dir.join("image-amd64")
    }

    /// The third-party notices `scripts/release.sh` wrote with cargo-about.
    fn notices(&self) -> PathBuf {
        self.dir.join("THIRD-PARTY-LICENSES")
    }

    /// Both images in one OCI archive.
    fn oci_archive(&self) -> PathBuf {
        self.dir.join(format!("xray-daemon-rs-{VERSION}.oci.tar"))
    }
}

static DIST: OnceLock<Result<Dist, String>> = OnceLock::new();

/// Builds the release artifacts once per test run (`scripts/release.sh --no-image`) and
/// returns where they are; every caller after the first waits for that build or reuses it.
fn dist() -> &'static Dist {
    let built = DIST.get_or_init(|| {
        require_tools(&[
            "cargo-generate-rpm",
            "cargo-deb",
            "cargo-about",
            "buildah",
            "aarch64-linux-gnu-gcc",
            "zip",
            "file",
        ]);
        let log = repo_root().join("target").join("release-it.log");
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let started = Instant::now();
        let status = Command::new(repo_root().join("scripts").join("release.sh"))
            .arg("--no-image")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file)
            .status()
            .map_err(|e| format!("cannot run scripts/release.sh: {e}"))?;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if !status.success() {
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!(
                "scripts/release.sh --no-image failed ({status}); log {}:\n{}",
                log.display(),
                tail.join("\n")
            ));
        }
        let sizes = text
            .split("==> artifacts (bytes)")
            .nth(1)
            .unwrap_or_default()
            .trim_end()
            .to_owned();
        eprintln!(
            "release.sh --no-image took {:.0} s; artifacts (bytes):{sizes}",
            started.elapsed().as_secs_f64()
        );
        Ok(Dist {
            dir: repo_root().join("target").join("dist"),
        })
    });
    match built {
        Ok(dist) => dist,
        Err(why) => panic!("{why}"),
    }
}

/// A temp dir for one test.
fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir")
}

/// Sends one new segment through `daemon` and asserts moto stores exactly its bytes.
async fn assert_relays(daemon: &Daemon, moto: &Moto, name: &str) {
    let trace_id = new_trace_id();
    let body = segment_json(&trace_id, &new_segment_id(), name);
    daemon.send_segment(&body);
    let stored = moto
        .wait_for_documents(TEST_REGION, &[&trace_id], 1, RELAY_WITHIN)
        .await;
    assert_eq!(
        stored,
        vec![body],
        "moto must hold the segment byte for byte"
    );
}

// ---------------------------------------------------------------------------------------------
// Licences: what every artifact must carry.

/// The version of `name` in Cargo.lock (the one package of that name).
fn locked_version(name: &str) -> String {
    let lock = std::fs::read_to_string(repo_root().join("Cargo.lock")).expect("Cargo.lock");
    let versions: Vec<&str> = lock
        .split("[[package]]")
        .filter(|p| p.lines().any(|l| l == format!("name = \"{name}\"")))
        .filter_map(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .map(|v| v.trim_end_matches('"'))
        .collect();
    assert_eq!(versions.len(), 1, "{name} in Cargo.lock: {versions:?}");
    versions[0].to_owned()
}

/// Asserts that `text` is the third-party notices of the release: each crate of `xray` named
/// with its version and licence (tokio: MIT, and tokio among the users of the MIT text), the
/// full texts of the licences, and nothing that is not in the shipped binary (dev-dependencies,
/// the benchmark tools, our own package). `what` names the file in messages.
fn assert_notices(text: &str, what: &str) {
    let crates: Vec<&str> = text
        .split("Crates and their licences")
        .nth(1)
        .and_then(|rest| rest.split("Licences used").next())
        .unwrap_or_else(|| panic!("{what}: no crate list:\n{text:.2000}"))
        .lines()
        .filter(|l| l.contains(": "))
        .collect();
    let tokio = format!("tokio {}", locked_version("tokio"));
    let rustls = format!("rustls {}", locked_version("rustls"));
    for line in [
        format!("{tokio}: MIT"),
        format!("{rustls}: Apache-2.0 OR ISC OR MIT"),
    ] {
        assert!(
            crates.contains(&line.as_str()),
            "{what} lacks the line {line:?}; crates: {crates:#?}"
        );
    }
    // The texts: each block is a licence's name, the crates it covers, then its text.
    let mit_users: Vec<&str> = text
        .split(
            "\n================================================================================\n",
        )
        .filter(|block| block.starts_with("MIT License (MIT)\nused by:\n"))
        .flat_map(|block| block.lines().skip(2).take_while(|l| l.starts_with("  ")))
        .collect();
    assert!(
        mit_users
            .iter()
            .any(|l| l.trim_start().starts_with(&format!("{tokio} ")) || l.trim_start() == tokio),
        "{what}: tokio is not among the crates under the MIT text: {mit_users:?}"
    );
    assert!(
        crates.len() > 150,
        "{what} names only {} crates: {crates:#?}",
        crates.len()
    );
    for absent in [
        "proptest ",
        "tempfile ",
        "xray-bench-tools ",
        "xray-daemon-rs ",
    ] {
        assert!(
            !crates.iter().any(|l| l.starts_with(absent)),
            "{what} names {absent:?}, which is not in the shipped binary"
        );
    }
    for licence_text in [
        // MIT's text and Apache-2.0's.
        "Permission is hereby granted, free of charge, to any person obtaining",
        "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION",
    ] {
        assert!(
            text.contains(licence_text),
            "{what} lacks the licence text {licence_text:?}"
        );
    }
}

/// Asserts that `dir` holds `LICENSE` (the repository's Apache-2.0 text) and
/// `THIRD-PARTY-LICENSES` (the release's notices, byte for byte). `what` names `dir`.
fn assert_licence_files(dir: &Path, dist: &Dist, what: &str) {
    let read = |path: PathBuf| {
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{what}: {}: {e}", path.display()))
    };
    let licence = read(dir.join("LICENSE"));
    assert_eq!(
        licence,
        read(repo_root().join("LICENSE")),
        "{what}: LICENSE is not the project's"
    );
    assert!(licence.contains("Apache License") && licence.contains("Version 2.0, January 2004"));
    let notices = read(dir.join("THIRD-PARTY-LICENSES"));
    assert_eq!(
        notices,
        read(dist.notices()),
        "{what}: THIRD-PARTY-LICENSES is not the release's"
    );
    assert_notices(&notices, what);
}

/// The notices scripts/release.sh wrote name every crate that `cargo tree` finds linked into
/// the `xray` package for the two shipped targets (normal dependencies only), and no other.
#[test]
fn third_party_notices_name_every_crate_of_the_shipped_binary() {
    let dist = dist();
    let text = std::fs::read_to_string(dist.notices()).expect("THIRD-PARTY-LICENSES");
    assert_notices(&text, "target/dist/THIRD-PARTY-LICENSES");
    let listed: std::collections::BTreeSet<String> = text
        .split("Crates and their licences")
        .nth(1)
        .and_then(|rest| rest.split("Licences used").next())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(name_version, _)| name_version.to_owned())
        .collect();
    let mut tree = std::collections::BTreeSet::new();
    for target in ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"] {
        let out = stdout_of(Command::new(env!("CARGO")).current_dir(repo_root()).args([
            "tree",
            "--locked",
            "--offline",
            "-p",
            "xray-daemon-rs",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "--target",
            target,
        ]));
        for line in out.lines() {
            // "tokio v1.48.0" or "tokio-macros v2.6.0 (proc-macro)"; the package itself carries
            // its path.
            let mut words = line.split_whitespace();
            if let (Some(name), Some(version)) = (words.next(), words.next())
                && name != "xray-daemon-rs"
            {
                tree.insert(format!("{name} {}", version.trim_start_matches('v')));
            }
        }
    }
    let missing: Vec<&String> = tree.difference(&listed).collect();
    let extra: Vec<&String> = listed.difference(&tree).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "THIRD-PARTY-LICENSES and `cargo tree -e normal` differ: missing {missing:?}, extra {extra:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Static release binaries.

fn assert_static(binary: &Path, machine: &str) {
    let described = stdout_of(Command::new("file").arg("-b").arg(binary));
    assert!(
        described.contains("statically linked") || described.contains("static-pie linked"),
        "{} is not static: {described}",
        binary.display()
    );
    assert!(
        described.contains(machine),
        "{} is not a {machine} binary: {described}",
        binary.display()
    );
}

/// The x86_64 release binary is static and relays a segment to moto.
#[tokio::test]
async fn release_binary_x86_64_is_static_and_relays_to_moto() {
    let dist = dist();
    let binary = dist.binary(Arch::Amd64);
    assert_static(&binary, "x86-64");
    let moto = Moto::start().await;
    let daemon = Daemon::builder()
        .program([&binary])
        .upstream(&moto)
        .start()
        .await;
    assert_relays(&daemon, &moto, "release-x86_64").await;
}

/// The arm64 release binary is static and, under `qemu-aarch64-static`, relays a segment to
/// moto.
#[tokio::test]
async fn release_binary_arm64_is_static_and_relays_to_moto_under_qemu() {
    require_tools(&["qemu-aarch64-static"]);
    let dist = dist();
    let binary = dist.binary(Arch::Arm64);
    assert_static(&binary, "ARM aarch64");
    let moto = Moto::start().await;
    let daemon = Daemon::builder()
        .program([OsStr::new("qemu-aarch64-static"), binary.as_os_str()])
        .upstream(&moto)
        .ready_within(Duration::from_secs(60))
        .start()
        .await;
    assert_relays(&daemon, &moto, "release-arm64").await;
}

// ---------------------------------------------------------------------------------------------
// 2. The image.

/// The Docker engine for one test: already running, or started here and stopped on drop.
#[derive(Debug)]
struct DockerEngine {
    started: Option<Child>,
    _dir: tempfile::TempDir,
}

impl DockerEngine {
    fn running() -> bool {
        Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Uses the running engine, or starts `dockerd --iptables=false --bridge=none`.
    async fn ensure() -> DockerEngine {
        require_tools(&["docker", "dockerd"]);
        let dir = temp_dir("xray-it-dockerd-");
        if Self::running() {
            return DockerEngine {
                started: None,
                _dir: dir,
            };
        }
        let log = dir.path().join("dockerd.log");
        let log_file = std::fs::File::create(&log).expect("dockerd log");
        let child = Command::new("dockerd")
            .args(["--iptables=false", "--bridge=none"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup log"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dockerd: {e}; {SETUP}"));
        let engine = DockerEngine {
            started: Some(child),
            _dir: dir,
        };
        let deadline = Deadline::after(Duration::from_secs(60));
        while !Self::running() {
            assert!(
                !deadline.passed(),
                "dockerd did not answer within 60 s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            deadline.tick(Duration::from_millis(200)).await;
        }
        engine
    }
}

impl Drop for DockerEngine {
    fn drop(&mut self) {
        let Some(child) = self.started.as_mut() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        // dockerd stops its containers first; give it a while, then kill it.
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A container started by a test, removed (`docker rm -f`) on drop.
#[derive(Debug)]
struct Container {
    name: String,
}

impl Container {
    /// `docker run -d --network host --name NAME <docker_args> IMAGE <args>`.
    fn run(image: &str, docker_args: &[&str], args: &[&str]) -> Container {
        let name = format!("xray-it-{}-{}", std::process::id(), free_addr().port());
        let mut command = Command::new("docker");
        command
            .args(["run", "-d", "--network", "host", "--name", &name])
            .args(docker_args)
            .arg(image)
            .args(args);
        stdout_of(&mut command);
        Container { name }
    }

    fn logs(&self) -> String {
        let out = output(Command::new("docker").args(["logs", &self.name]));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// `docker exec NAME argv…`.
    fn exec(&self, argv: &[&str]) -> Output {
        output(
            Command::new("docker")
                .arg("exec")
                .arg(&self.name)
                .args(argv),
        )
    }

    /// The container's main process id on the host.
    fn host_pid(&self) -> u32 {
        stdout_of(Command::new("docker").args(["inspect", "-f", "{{.State.Pid}}", &self.name]))
            .trim()
            .parse()
            .expect("a pid from docker inspect")
    }

    /// `docker stop` (SIGTERM; the daemon drains and exits).
    fn stop(&self) {
        stdout_of(Command::new("docker").args(["stop", "-t", "20", &self.name]));
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- container {} logs:\n{}", self.name, self.logs());
        }
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// GET `/daemon/stats` from a daemon on `addr` (typed, see [`stats::parse`]) until `pred`
/// holds; panics with the last answer and the container's logs after `within`.
async fn wait_for_stats(
    addr: std::net::SocketAddr,
    container: &Container,
    within: Duration,
    pred: impl Fn(&Snapshot) -> bool,
) -> Snapshot {
    let mut last = None;
    let found = crate::support::wait::until(within, Duration::from_millis(100), async || {
        let stats = crate::support::http::get(addr, "/daemon/stats")
            .await
            .ok()
            .filter(|r| r.status == 200)
            .map(|r| stats::parse(&r.text()));
        let hit = stats.as_ref().filter(|s| pred(s)).cloned();
        last = stats;
        hit
    })
    .await;
    found.unwrap_or_else(|| {
        panic!(
            "the daemon in {} did not reach the expected stats within {within:?}; last: {last:#?}\n--- logs:\n{}",
            container.name,
            container.logs()
        )
    })
}

/// Makes a throwaway CA and a `localhost` certificate it signed; returns (ca.crt, server.crt,
/// server.key).
fn make_test_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = dir.join("ca.key");
    let ca_crt = dir.join("ca.crt");
    let key = dir.join("server.key");
    let csr = dir.join("server.csr");
    let crt = dir.join("server.crt");
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n\
         subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .expect("write server.ext");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    stdout_of(
        Command::new("openssl")
            .args(["req", "-x509"])
            .args(ec)
            .args(["-days", "2", "-subj", "/CN=xray-it test CA", "-keyout"])
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca_crt),
    );
    stdout_of(
        Command::new("openssl")
            .arg("req")
            .args(ec)
            .args(["-subj", "/CN=localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&csr),
    );
    stdout_of(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&ca_crt)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-CAcreateserial")
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&crt),
    );
    // Readable by the container's user (uid 10001) when mounted.
    for file in [&ca_crt, &crt, &key] {
        std::fs::set_permissions(file, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .expect("chmod");
    }
    (ca_crt, crt, key)
}

/// `tests/peers/tls_xray.py`: HTTPS on loopback answering like PutTraceSegments; killed on
/// drop.
#[derive(Debug)]
struct TlsXray {
    child: Child,
    port: u16,
}

impl TlsXray {
    fn start(cert: &Path, key: &Path) -> TlsXray {
        let mut child = Command::new(venv_bin("python"))
            .arg(crate::support::peer_script("tls_xray.py"))
            .arg(cert)
            .arg(key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start tests/peers/tls_xray.py");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        let mut reader = BufReader::new(stdout);
        reader.read_line(&mut line).expect("the peer's port line");
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("tls_xray.py printed {line:?}, not a port"));
        // Keep draining its stdout so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in reader.lines() {});
        TlsXray { child, port }
    }
}

impl Drop for TlsXray {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The image builds from the repository's Dockerfile; run with `--network host` on a
/// non-default port (flags appended after the entrypoint's), it relays a segment sent from
/// outside to moto byte for byte, runs as uid 10001, and `xray health` (the task definition's
/// command) exits 0 while it runs and 1 once it has stopped. TLS from inside it works against a
/// loopback HTTPS endpoint whose CA is mounted over the bundle, and fails with the image's own.
/// The licence and the third-party notices are in /usr/share/licenses/xray.
#[tokio::test]
async fn image_relays_runs_as_xray_and_answers_health_and_trusts_its_ca_bundle() {
    require_tools(&["openssl"]);
    let dist = dist();
    let _engine = DockerEngine::ensure().await;
    let image = format!("xray-daemon-rs:it-{}", std::process::id());
    stdout_of(
        Command::new("docker")
            .args(["build", "--quiet", "-f"])
            .arg(repo_root().join("Dockerfile"))
            .args(["-t", &image])
            .arg(dist.image_context()),
    );
    let size: u64 =
        stdout_of(Command::new("docker").args(["image", "inspect", "-f", "{{.Size}}", &image]))
            .trim()
            .parse()
            .expect("image size");
    eprintln!("image {image}: {size} bytes");
    let _image_guard = ImageGuard(image.clone());

    // The licences, copied out of a created (never started) container.
    let created = stdout_of(Command::new("docker").args(["create", &image]))
        .trim()
        .to_owned();
    let copied = temp_dir("xray-it-image-licences-");
    let cp = output(
        Command::new("docker")
            .arg("cp")
            .arg(format!("{created}:/usr/share/licenses/xray"))
            .arg(copied.path().join("xray")),
    );
    let _ = output(Command::new("docker").args(["rm", "-f", &created]));
    assert!(cp.status.success(), "docker cp of the licences: {cp:?}");
    assert_licence_files(
        &copied.path().join("xray"),
        dist,
        "the image's /usr/share/licenses/xray",
    );

    // Relay from outside, non-default ports appended after the entrypoint's flags.
    let moto = Moto::start().await;
    let addr = free_addr();
    let bind = addr.to_string();
    let credentials = [
        "-e",
        "AWS_ACCESS_KEY_ID=AKIDIMAGETEST",
        "-e",
        "AWS_SECRET_ACCESS_KEY=image-test-secret",
        "-e",
        "AWS_EC2_METADATA_DISABLED=true",
    ];
    let endpoint = moto.endpoint();
    let container = Container::run(
        &image,
        &credentials,
        &[
            "-b",
            &bind,
            "-t",
            &bind,
            "--endpoint",
            &endpoint,
            "-n",
            TEST_REGION,
        ],
    );
    wait_for_stats(addr, &container, Duration::from_secs(30), |_| true).await;
    let trace_id = new_trace_id();
    let body = segment_json(&trace_id, &new_segment_id(), "image");
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("UDP sender");
    sender
        .send_to(&crate::support::datagram(&body), addr)
        .expect("send the segment");
    let stored = moto
        .wait_for_documents(TEST_REGION, &[&trace_id], 1, RELAY_WITHIN)
        .await;
    assert_eq!(stored, vec![body], "relayed byte for byte from the image");

    // It runs as the image's user, uid 10001.
    let status = std::fs::read_to_string(format!("/proc/{}/status", container.host_pid()))
        .expect("the container's /proc status");
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("a Uid line");
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|uid| uid == "10001"),
        "the daemon runs as {uid_line}, not uid 10001"
    );

    // The task definition's health check, inside the container, with this test's address.
    let health = task_definition_health_command();
    let mut argv: Vec<&str> = health.iter().skip(1).map(String::as_str).collect();
    argv.push(&bind);
    let healthy = container.exec(&argv);
    assert!(
        healthy.status.success(),
        "{argv:?} inside the running container failed: {}{}",
        String::from_utf8_lossy(&healthy.stdout),
        String::from_utf8_lossy(&healthy.stderr)
    );
    assert!(String::from_utf8_lossy(&healthy.stdout).starts_with("healthy: "));
    // /usr/bin/xray is the same binary.
    let version = container.exec(&["/usr/bin/xray", "--version"]);
    assert!(
        String::from_utf8_lossy(&version.stdout).contains(VERSION),
        "/usr/bin/xray --version: {version:?}"
    );

    container.stop();
    let unhealthy = output(
        Command::new("docker")
            .args(["run", "--rm", "--network", "host", "--entrypoint", argv[0]])
            .arg(&image)
            .args(&argv[1..]),
    );
    assert_eq!(
        unhealthy.status.code(),
        Some(1),
        "`xray health` must exit 1 with no daemon: {unhealthy:?}"
    );
    let reason = String::from_utf8_lossy(&unhealthy.stderr);
    assert!(
        reason.starts_with("unhealthy: ") && reason.trim_end().lines().count() == 1,
        "one line saying why: {reason:?}"
    );
    drop(container);

    // TLS: the test CA mounted over the bundle is trusted; the image's own bundle does not know it.
    let dir = temp_dir("xray-it-tls-");
    let (ca, cert, key) = make_test_ca(dir.path());
    let peer = TlsXray::start(&cert, &key);
    let https = format!("https://localhost:{}", peer.port);
    for trusted in [true, false] {
        let addr = free_addr();
        let bind = addr.to_string();
        let mount = format!("{}:/etc/ssl/certs/ca-certificates.crt:ro", ca.display());
        let mut docker_args: Vec<&str> = credentials.to_vec();
        if trusted {
            docker_args.extend(["-v", &mount]);
        }
        let container = Container::run(
            &image,
            &docker_args,
            &[
                "-b",
                &bind,
                "-t",
                &bind,
                "--endpoint",
                &https,
                "-n",
                TEST_REGION,
            ],
        );
        wait_for_stats(addr, &container, Duration::from_secs(30), |_| true).await;
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("UDP sender");
        let body = segment_json(&new_trace_id(), &new_segment_id(), "tls");
        sender
            .send_to(&crate::support::datagram(&body), addr)
            .expect("send the segment");
        let stats = wait_for_stats(addr, &container, Duration::from_secs(60), |s| {
            s.batches_sent > 0 || s.batches_failed > 0
        })
        .await;
        if trusted {
            assert_eq!(stats.batches_sent, 1, "TLS with the mounted CA: {stats:?}");
            assert_eq!(stats.sent, 1, "{stats:?}");
        } else {
            assert_eq!(
                stats.batches_sent, 0,
                "the image's bundle must not trust the test CA: {stats:?}"
            );
            // The failure is retried with backoff, so a second failed call may be counted by now.
            assert!(stats.batches_failed >= 1, "{stats:?}");
            let logs = container.logs();
            assert!(
                logs.contains("UnknownIssuer"),
                "the log should say the certificate was not trusted:\n{logs}"
            );
        }
    }
}

/// Removes the test's image tag on drop.
#[derive(Debug)]
struct ImageGuard(String);

impl Drop for ImageGuard {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.0])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

// ---------------------------------------------------------------------------------------------
// 2b. The multi-arch OCI archive.

/// Copies the `arch` image out of the OCI archive with `skopeo` (its `dir:` layout) and unpacks
/// its layers into `into/rootfs`; returns the image's config (JSON).
fn unpack_oci_image(archive: &Path, arch: Arch, into: &Path) -> Value {
    let copy = into.join("image");
    std::fs::create_dir_all(into).expect("a directory for the image");
    stdout_of(
        Command::new("skopeo")
            .args(["--override-os", "linux", "--override-arch", arch.name()])
            .args(["copy", "--quiet"])
            .arg(format!("oci-archive:{}", archive.display()))
            .arg(format!("dir:{}", copy.display())),
    );
    let blob = |digest: &str| {
        let hex = digest
            .strip_prefix("sha256:")
            .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"));
        copy.join(hex)
    };
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(copy.join("manifest.json")).expect("the image's manifest"),
    )
    .expect("manifest.json is JSON");
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .expect("config digest");
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(blob(config_digest)).expect("the image's config"),
    )
    .expect("the config is JSON");
    let rootfs = into.join("rootfs");
    std::fs::create_dir_all(&rootfs).expect("rootfs");
    let layers = manifest["layers"].as_array().expect("layers");
    assert!(!layers.is_empty(), "no layers: {manifest}");
    for layer in layers {
        let digest = layer["digest"].as_str().expect("layer digest");
        // GNU tar recognises a gzip-compressed layer by itself.
        stdout_of(
            Command::new("tar")
                .arg("-xf")
                .arg(blob(digest))
                .arg("-C")
                .arg(&rootfs),
        );
    }
    config
}

/// `scripts/release.sh` writes one OCI archive whose index holds linux/amd64 and linux/arm64.
/// Each image is the release: its `/xray` is that architecture's release binary, byte for byte,
/// with the user, entrypoint and licences of the Dockerfile. The arm64 image's binary, run from
/// its unpacked layers under `qemu-aarch64-static`, relays a segment to moto.
#[tokio::test]
async fn oci_archive_indexes_amd64_and_arm64_and_the_arm64_image_relays_under_qemu() {
    require_tools(&["skopeo", "tar", "qemu-aarch64-static"]);
    let dist = dist();
    let archive = dist.oci_archive();
    let raw = stdout_of(
        Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci-archive:{}", archive.display())),
    );
    let index: Value = serde_json::from_str(&raw).expect("the index is JSON");
    assert_eq!(
        index["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{raw}"
    );
    let mut platforms: Vec<String> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap_or("?"),
                m["platform"]["architecture"].as_str().unwrap_or("?")
            )
        })
        .collect();
    platforms.sort();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"], "{raw}");

    let dir = temp_dir("xray-it-oci-");
    let mut arm64_rootfs = PathBuf::new();
    for arch in [Arch::Amd64, Arch::Arm64] {
        let into = dir.path().join(arch.name());
        let config = unpack_oci_image(&archive, arch, &into);
        assert_eq!(config["architecture"], arch.name(), "{config}");
        assert_eq!(config["os"], "linux", "{config}");
        assert_eq!(config["config"]["User"], "xray", "{config}");
        assert_eq!(
            config["config"]["Entrypoint"],
            serde_json::json!(["/xray", "-t", "0.0.0.0:2000", "-b", "0.0.0.0:2000"]),
            "{config}"
        );
        let rootfs = into.join("rootfs");
        assert!(
            std::fs::read(rootfs.join("xray")).expect("/xray in the image")
                == std::fs::read(dist.binary(arch)).expect("the release binary"),
            "the {} image's /xray is not the release binary",
            arch.name()
        );
        assert_licence_files(
            &rootfs.join("usr/share/licenses/xray"),
            dist,
            &format!("the {} image's /usr/share/licenses/xray", arch.name()),
        );
        if arch == Arch::Arm64 {
            arm64_rootfs = rootfs;
        }
    }

    let binary = arm64_rootfs.join("xray");
    assert_static(&binary, "ARM aarch64");
    let moto = Moto::start().await;
    let daemon = Daemon::builder()
        .program([OsStr::new("qemu-aarch64-static"), binary.as_os_str()])
        .upstream(&moto)
        .ready_within(Duration::from_secs(60))
        .start()
        .await;
    assert_relays(&daemon, &moto, "oci-arm64").await;
}

// ---------------------------------------------------------------------------------------------
// 3. The rpm.

/// `rpm` against a scratch root.
fn rpm_root(root: &Path) -> Command {
    let mut command = Command::new("rpm");
    command
        .arg("--root")
        .arg(root)
        .args(["--dbpath", "/var/lib/rpm"]);
    command
}

/// A scratch root with an initialised rpm database.
fn scratch_root(prefix: &str) -> tempfile::TempDir {
    let root = temp_dir(prefix);
    stdout_of(rpm_root(root.path()).arg("--initdb"));
    root
}

/// The original daemon's unit, as its rpm installs it (UPSTREAM.md §9).
const ORIGINAL_UNIT: &str = "[Unit]\nDescription=AWS X-Ray Daemon\nAfter=network-online.target\n\n\
[Service]\nType=exec\nWorkingDirectory=/usr/bin/\nUser=xray\nGroup=xray\n\
ExecStart=/usr/bin/xray -f /var/log/xray/xray.log\nRestart=always\nLogsDirectory=xray\n\
LogsDirectoryMode=0755\nConfigurationDirectory=amazon/xray\nConfigurationDirectoryMode=0755\n\n\
[Install]\nWantedBy=network-online.target\n";

/// Builds a stand-in for the original daemon's rpm: name `xray`, version 3.6.6, release 1, no
/// epoch, and its layout (binary, config, licence, upstart job, unit in /etc/systemd/system).
fn build_original_standin(dir: &Path) -> PathBuf {
    let sources = dir.join("SOURCES");
    std::fs::create_dir_all(&sources).expect("SOURCES");
    std::fs::write(
        sources.join("xray"),
        "#!/bin/sh\necho 'original daemon 3.6.6'\n",
    )
    .expect("xray");
    std::fs::write(sources.join("cfg.yaml"), "Version: 2\nConcurrency: 8\n").expect("cfg.yaml");
    std::fs::write(sources.join("LICENSE"), "stand-in licence\n").expect("LICENSE");
    std::fs::write(sources.join("xray.conf"), "respawn\n").expect("xray.conf");
    std::fs::write(sources.join("xray.service"), ORIGINAL_UNIT).expect("xray.service");
    let spec = dir.join("xray.spec");
    std::fs::write(
        &spec,
        "Name: xray\nVersion: 3.6.6\nRelease: 1\nSummary: X-Ray daemon (test stand-in)\n\
         License: Apache License, Version 2.0\nGroup: Amazon/Tools\nBuildArch: x86_64\n\n\
         %description\nStand-in for the original daemon's package.\n\n\
         %install\n\
         install -D -m 755 %{_sourcedir}/xray %{buildroot}/usr/bin/xray\n\
         install -D -m 644 %{_sourcedir}/cfg.yaml %{buildroot}/etc/amazon/xray/cfg.yaml\n\
         install -D -m 644 %{_sourcedir}/LICENSE %{buildroot}/etc/amazon/xray/LICENSE\n\
         install -D -m 644 %{_sourcedir}/xray.conf %{buildroot}/etc/init/xray.conf\n\
         install -D -m 644 %{_sourcedir}/xray.service %{buildroot}/etc/systemd/system/xray.service\n\n\
         %files\n/usr/bin/xray\n%license /etc/amazon/xray/LICENSE\n\
         %config(noreplace) /etc/amazon/xray/cfg.yaml\n%config(noreplace) /etc/init/xray.conf\n\
         %config(noreplace) /etc/systemd/system/xray.service\n",
    )
    .expect("xray.spec");
    stdout_of(
        Command::new("rpmbuild")
            .arg("-bb")
            .arg("--define")
            .arg(format!("_topdir {}", dir.display()))
            .args([
                "--define",
                "_build_id_links none",
                "--define",
                "debug_package %{nil}",
            ])
            .arg(&spec),
    );
    let rpm = dir.join("RPMS/x86_64/xray-3.6.6-1.x86_64.rpm");
    assert!(rpm.is_file(), "rpmbuild made no {}", rpm.display());
    rpm
}

/// Copies the host's systemd units into `root`, so `systemd-analyze verify --root` finds
/// `multi-user.target` and friends there.
fn copy_host_units(root: &Path) {
    let dest = root.join("usr/lib/systemd/system");
    std::fs::create_dir_all(&dest).expect("unit dir");
    stdout_of(
        Command::new("cp")
            .arg("-a")
            .arg("--no-clobber")
            .arg("/usr/lib/systemd/system/.")
            .arg(&dest),
    );
}

/// `systemd-analyze verify` of `unit` inside `root`; panics unless it exits 0 with empty stderr.
fn verify_unit_in_root(root: &Path, unit: &str) {
    let out = output(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.display()))
            .arg(unit),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify {unit} in {}: {}\n{stderr}",
        root.display(),
        out.status
    );
}

/// The rpm's metadata, file list, config marking, scriptlets and requirements; installed into a
/// scratch root its binary runs and its unit verifies; and it upgrades a stand-in of the
/// original's `xray-3.6.6` in place, keeping the user's config and leaving our unit in charge.
#[tokio::test]
async fn rpm_is_xray_with_epoch_installs_and_upgrades_the_original() {
    require_tools(&["rpm", "rpmbuild", "systemd-analyze"]);
    let dist = dist();
    let rpm = dist.artifact(Arch::Amd64, "rpm");

    let query = |args: &[&str]| stdout_of(Command::new("rpm").arg("-qp").args(args).arg(&rpm));
    assert_eq!(
        query(&["--qf", "%{NAME} %{EPOCH} %{VERSION} %{RELEASE} %{ARCH}"]),
        format!("xray 1 {VERSION} 1 x86_64")
    );
    let files: Vec<String> = query(&[
        "--qf",
        "[%{FILENAMES} %{FILEFLAGS:fflags} %{FILEMODES:perms}\n]",
    ])
    .lines()
    .map(str::to_owned)
    .collect();
    assert_eq!(
        files,
        vec![
            "/etc/amazon/xray/cfg.yaml cn -rw-r--r--",
            "/usr/bin/xray  -rwxr-xr-x",
            "/usr/lib/systemd/system/xray.service  -rw-r--r--",
            "/usr/share/licenses/xray/LICENSE  -rw-r--r--",
            "/usr/share/licenses/xray/THIRD-PARTY-LICENSES  -rw-r--r--",
        ],
        "files, config(noreplace) flags and modes"
    );
    // Plain files, not %doc: `--excludedocs` (tsflags=nodocs in container images) keeps them.
    // cargo-generate-rpm cannot set %license, so `rpm -qp --licensefiles` lists none yet.
    let listed = query(&["-l"]);
    for licence in [
        "/usr/share/licenses/xray/LICENSE",
        "/usr/share/licenses/xray/THIRD-PARTY-LICENSES",
    ] {
        assert!(
            listed.lines().any(|l| l == licence),
            "rpm -qlp lacks {licence}:\n{listed}"
        );
    }
    let docs = query(&["--docfiles"]);
    assert!(docs.trim().is_empty(), "no %doc files: {docs}");
    let arm64 = stdout_of(
        Command::new("rpm")
            .args(["-qp", "--qf", "%{NAME} %{EPOCH} %{ARCH}"])
            .arg(dist.artifact(Arch::Arm64, "rpm")),
    );
    assert_eq!(arm64, "xray 1 aarch64", "the Graviton rpm");
    let scripts = query(&["--scripts"]);
    for expected in [
        "preinstall scriptlet",
        "useradd --system",
        "chown xray:xray /var/log/xray",
        "preuninstall scriptlet",
        "systemctl disable --now xray.service",
        "postuninstall scriptlet",
        "posttrans scriptlet",
        "systemctl enable xray.service",
        "systemctl restart xray.service",
        "systemctl try-restart xray.service",
    ] {
        assert!(
            scripts.contains(expected),
            "scriptlets lack {expected:?}:\n{scripts}"
        );
    }
    let requires = query(&["--requires"]);
    for expected in ["/bin/sh", "/usr/sbin/useradd", "/usr/bin/getent"] {
        assert!(
            requires.lines().any(|l| l.starts_with(expected)),
            "requires {expected}: {requires}"
        );
    }
    assert!(
        !requires.contains("libc.so"),
        "a static binary needs no shared libraries: {requires}"
    );

    // A fresh install into a scratch root: the binary runs; the unit verifies.
    let root = scratch_root("xray-it-rpm-");
    stdout_of(
        rpm_root(root.path())
            .args(["-i", "--nodeps", "--noscripts"])
            .arg(&rpm),
    );
    let version = stdout_of(Command::new(root.path().join("usr/bin/xray")).arg("--version"));
    assert!(version.contains(VERSION), "--version: {version}");
    assert_licence_files(
        &root.path().join("usr/share/licenses/xray"),
        dist,
        "the rpm's /usr/share/licenses/xray",
    );
    // Installed with --excludedocs (as tsflags=nodocs does), the licences stay.
    let nodocs = scratch_root("xray-it-rpm-nodocs-");
    stdout_of(
        rpm_root(nodocs.path())
            .args(["-i", "--nodeps", "--noscripts", "--excludedocs"])
            .arg(&rpm),
    );
    assert_licence_files(
        &nodocs.path().join("usr/share/licenses/xray"),
        dist,
        "the rpm installed with --excludedocs",
    );
    copy_host_units(root.path());
    verify_unit_in_root(root.path(), "xray.service");
    // A drop-in pointing -c and -f at other files under /etc and /var/log verifies too.
    let dropin = root.path().join("etc/systemd/system/xray.service.d");
    std::fs::create_dir_all(&dropin).expect("drop-in dir");
    std::fs::write(
        dropin.join("override.conf"),
        "[Service]\nExecStart=\nExecStart=/usr/bin/xray -c /etc/xray/custom.yaml -f /var/log/custom/xray.log\n",
    )
    .expect("drop-in");
    verify_unit_in_root(root.path(), "xray.service");

    // Upgrade: the original's package (stand-in), with the user's config edit, then ours.
    let build = temp_dir("xray-it-rpmbuild-");
    let original = build_original_standin(build.path());
    let root = scratch_root("xray-it-rpm-upgrade-");
    stdout_of(
        rpm_root(root.path())
            .args(["-i", "--nodeps", "--noscripts"])
            .arg(&original),
    );
    let cfg = root.path().join("etc/amazon/xray/cfg.yaml");
    std::fs::write(&cfg, "Version: 2\nRegion: eu-west-1\n").expect("edit cfg.yaml");
    stdout_of(
        rpm_root(root.path())
            .args(["-U", "--nodeps", "--noscripts"])
            .arg(&rpm),
    );

    let installed = stdout_of(rpm_root(root.path()).args([
        "-q",
        "--qf",
        "%{EPOCH}:%{VERSION}-%{RELEASE}\n",
        "xray",
    ]));
    assert_eq!(
        installed,
        format!("1:{VERSION}-1\n"),
        "only our package is installed"
    );
    let version = stdout_of(Command::new(root.path().join("usr/bin/xray")).arg("--version"));
    assert!(
        version.contains(VERSION),
        "the upgraded binary is ours: {version}"
    );
    assert!(
        !root.path().join("etc/systemd/system/xray.service").exists(),
        "the original's unit in /etc/systemd/system would override ours"
    );
    assert!(
        !root.path().join("etc/init/xray.conf").exists(),
        "the upstart job is gone"
    );
    assert_eq!(
        std::fs::read_to_string(root.path().join("usr/lib/systemd/system/xray.service"))
            .expect("our unit"),
        std::fs::read_to_string(repo_root().join("packaging/xray.service"))
            .expect("packaging/xray.service")
    );
    assert_eq!(
        std::fs::read_to_string(&cfg).expect("cfg.yaml"),
        "Version: 2\nRegion: eu-west-1\n",
        "the user's config survives the upgrade"
    );
    assert!(
        root.path()
            .join("etc/amazon/xray/cfg.yaml.rpmnew")
            .is_file(),
        "the new sample is set aside as cfg.yaml.rpmnew"
    );
    copy_host_units(root.path());
    verify_unit_in_root(root.path(), "xray.service");
    // Enabling it (as %posttrans does) links the unit systemd resolves `xray.service` to: ours.
    stdout_of(
        Command::new("systemctl")
            .arg(format!("--root={}", root.path().display()))
            .args(["enable", "xray.service"]),
    );
    let wanted = root
        .path()
        .join("etc/systemd/system/multi-user.target.wants/xray.service");
    assert_eq!(
        std::fs::read_link(&wanted).expect("the enable symlink"),
        Path::new("/usr/lib/systemd/system/xray.service"),
        "systemd uses our unit"
    );
}

/// The unit is hardened well below the bare unit's exposure (9.2) and keeps the original's
/// contract.
#[test]
fn unit_is_hardened_and_keeps_the_original_contract() {
    require_tools(&["systemd-analyze"]);
    let unit_path = repo_root().join("packaging/xray.service");
    let unit = std::fs::read_to_string(&unit_path).expect("packaging/xray.service");
    for line in [
        "User=xray",
        "ExecStart=/usr/bin/xray -f /var/log/xray/xray.log",
        "Restart=always",
        "LogsDirectory=xray",
        "ConfigurationDirectory=amazon/xray",
        "ReadWritePaths=-/var/log",
        "WantedBy=multi-user.target",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line:?}");
    }
    let out = output(
        Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(&unit_path),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for xray.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure in systemd-analyze security output:\n{text}"));
    eprintln!("systemd-analyze security: exposure {exposure}");
    assert!(
        exposure <= 2.0,
        "exposure {exposure} (bare unit: 9.2):\n{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. The deb and the zip.

/// The deb: package `xray` (epoch 1) with the same files, user and unit, and its maintainer
/// scripts, checked with `dpkg-deb`.
#[test]
fn deb_has_the_files_unit_and_maintainer_scripts() {
    require_tools(&["dpkg-deb"]);
    let dist = dist();
    let deb = dist.artifact(Arch::Amd64, "deb");
    let field = |name: &str| {
        stdout_of(Command::new("dpkg-deb").args(["-f"]).arg(&deb).arg(name))
            .trim()
            .to_owned()
    };
    assert_eq!(field("Package"), "xray");
    assert_eq!(field("Version"), format!("1:{VERSION}"));
    assert_eq!(field("Architecture"), "amd64");
    let arm64 = stdout_of(
        Command::new("dpkg-deb")
            .arg("-f")
            .arg(dist.artifact(Arch::Arm64, "deb"))
            .arg("Architecture"),
    );
    assert_eq!(arm64.trim(), "arm64", "the Graviton deb");
    // useradd for preinst; the static binary itself needs no libraries.
    assert_eq!(field("Pre-Depends"), "passwd");
    assert_eq!(field("Depends"), "passwd");

    let listing = stdout_of(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let mut files: Vec<&str> = listing
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    files.sort_unstable();
    assert_eq!(
        files,
        vec![
            "./etc/amazon/xray/cfg.yaml",
            "./lib/systemd/system/xray.service",
            "./usr/bin/xray",
            "./usr/share/doc/xray/THIRD-PARTY-LICENSES",
            "./usr/share/doc/xray/copyright",
        ],
        "{listing}"
    );
    for line in listing
        .lines()
        .filter(|l| l.contains("/usr/share/doc/xray/") && !l.starts_with('d'))
    {
        assert!(line.starts_with("-rw-r--r--"), "mode: {line}");
    }
    // Debian's copyright file: machine-readable (DEP-5), Apache-2.0, with the licence's text.
    let doc = temp_dir("xray-it-deb-doc-");
    stdout_of(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(doc.path()));
    let doc_dir = doc.path().join("usr/share/doc/xray");
    let copyright =
        std::fs::read_to_string(doc_dir.join("copyright")).expect("usr/share/doc/xray/copyright");
    assert!(
        copyright.starts_with(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        ),
        "not DEP-5:\n{copyright:.600}"
    );
    assert!(
        copyright.lines().any(|l| l == "License: Apache-2.0"),
        "copyright names no Apache-2.0 licence:\n{copyright:.600}"
    );
    assert!(
        copyright.contains("TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION"),
        "copyright lacks the licence's text:\n{copyright:.600}"
    );
    // The stand-alone licence paragraph: its text is continuation lines (indented, an empty
    // line written " .") up to the end, or the paragraph would end at the first empty line.
    let (_, text) = copyright
        .rsplit_once("\nLicense: Apache-2.0\n")
        .expect("a License: Apache-2.0 paragraph");
    let loose: Vec<&str> = text.lines().filter(|l| !l.starts_with(' ')).collect();
    assert!(
        loose.is_empty() && text.lines().count() > 150,
        "the licence's text is not a DEP-5 continuation: {loose:?}"
    );
    let notices = std::fs::read_to_string(doc_dir.join("THIRD-PARTY-LICENSES"))
        .expect("usr/share/doc/xray/THIRD-PARTY-LICENSES");
    assert_eq!(
        notices,
        std::fs::read_to_string(dist.notices()).expect("THIRD-PARTY-LICENSES"),
        "the deb's notices are the release's"
    );
    assert_notices(
        &notices,
        "the deb's /usr/share/doc/xray/THIRD-PARTY-LICENSES",
    );

    let control = temp_dir("xray-it-deb-");
    stdout_of(
        Command::new("dpkg-deb")
            .arg("-e")
            .arg(&deb)
            .arg(control.path()),
    );
    let read = |name: &str| {
        std::fs::read_to_string(control.path().join(name))
            .unwrap_or_else(|e| panic!("control file {name}: {e}"))
    };
    assert_eq!(read("conffiles").trim(), "/etc/amazon/xray/cfg.yaml");
    for (script, expected) in [
        ("preinst", "useradd --system"),
        ("postinst", "systemctl enable xray.service"),
        ("postinst", "systemctl try-restart xray.service"),
        ("prerm", "systemctl disable --now xray.service"),
        ("postrm", "daemon-reload"),
    ] {
        let text = read(script);
        assert!(
            text.contains(expected),
            "{script} lacks {expected:?}:\n{text}"
        );
        let syntax = output(
            Command::new("sh")
                .arg("-n")
                .arg(control.path().join(script)),
        );
        assert!(syntax.status.success(), "{script}: {syntax:?}");
    }
    let unit = stdout_of(
        Command::new("sh")
            .arg("-c")
            .arg("dpkg-deb --fsys-tarfile \"$1\" | tar -xOf - ./lib/systemd/system/xray.service")
            .arg("sh")
            .arg(&deb),
    );
    assert_eq!(
        unit,
        std::fs::read_to_string(repo_root().join("packaging/xray.service")).expect("unit")
    );
}

/// The zip holds `xray`, `cfg.yaml`, `LICENSE` and `THIRD-PARTY-LICENSES` at its top, like the
/// original's; its `xray`, copied to
/// another name and path as the seed's Dockerfile does (`/usr/bin/xray-daemon`), relays a
/// segment to moto.
#[tokio::test]
async fn zip_layout_and_its_xray_runs_under_another_name() {
    require_tools(&["unzip"]);
    let dist = dist();
    for arch in [Arch::Amd64, Arch::Arm64] {
        let zip = dist.artifact(arch, "zip");
        let names = stdout_of(Command::new("unzip").arg("-Z1").arg(&zip));
        assert_eq!(
            names.lines().collect::<Vec<_>>(),
            vec!["xray", "cfg.yaml", "LICENSE", "THIRD-PARTY-LICENSES"],
            "{}",
            zip.display()
        );
    }
    let dir = temp_dir("xray-it-zip-");
    stdout_of(
        Command::new("unzip")
            .arg("-q")
            .arg(dist.artifact(Arch::Amd64, "zip"))
            .arg("-d")
            .arg(dir.path().join("unzipped")),
    );
    assert_licence_files(&dir.path().join("unzipped"), dist, "the amd64 zip");
    let renamed = dir.path().join("usr/bin/xray-daemon");
    std::fs::create_dir_all(renamed.parent().expect("parent")).expect("usr/bin");
    std::fs::copy(dir.path().join("unzipped/xray"), &renamed).expect("copy xray");
    let version = stdout_of(Command::new(&renamed).arg("--version"));
    assert!(version.contains(VERSION), "{version}");
    let moto = Moto::start().await;
    let daemon = Daemon::builder()
        .program([&renamed])
        .upstream(&moto)
        .start()
        .await;
    assert_relays(&daemon, &moto, "zip").await;
}

// ---------------------------------------------------------------------------------------------
// 5. Example deployments.

/// The sidecar's health check command in packaging/ecs-task-definition.json.
fn task_definition_health_command() -> Vec<String> {
    let task = task_definition();
    let sidecar = container_named(&task, "xray-daemon");
    sidecar["healthCheck"]["command"]
        .as_array()
        .expect("healthCheck.command is an array")
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

fn task_definition() -> Value {
    let path = repo_root().join("packaging/ecs-task-definition.json");
    let text = std::fs::read_to_string(&path).expect("packaging/ecs-task-definition.json");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn container_named<'a>(task: &'a Value, name: &str) -> &'a Value {
    task["containerDefinitions"]
        .as_array()
        .expect("containerDefinitions is an array")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name:?}"))
}

/// The task definition has what ECS requires (family; each container a name and an image;
/// task-level cpu and memory for Fargate; awsvpc port mappings without other host ports); the
/// app depends on the sidecar being HEALTHY, and the sidecar's health check is `/xray health`,
/// the command the image test runs.
#[test]
fn ecs_task_definition_has_the_required_fields_and_the_health_check() {
    let task = task_definition();
    assert!(task["family"].as_str().is_some_and(|f| !f.is_empty()));
    assert_eq!(task["networkMode"], "awsvpc");
    assert!(
        task["cpu"].is_string() && task["memory"].is_string(),
        "Fargate needs task cpu and memory"
    );
    let containers = task["containerDefinitions"].as_array().expect("containers");
    assert_eq!(
        containers.len(),
        3,
        "the sidecar, an X-Ray SDK app, an OpenTelemetry app"
    );
    for c in containers {
        assert!(c["name"].as_str().is_some_and(|n| !n.is_empty()), "{c}");
        assert!(c["image"].as_str().is_some_and(|n| !n.is_empty()), "{c}");
        assert_eq!(c["essential"], true, "{c}");
        for mapping in c["portMappings"].as_array().into_iter().flatten() {
            assert!(mapping["containerPort"].is_u64(), "{mapping}");
            assert!(
                mapping.get("hostPort").is_none()
                    || mapping["hostPort"] == mapping["containerPort"],
                "awsvpc needs hostPort == containerPort: {mapping}"
            );
        }
    }
    let sidecar = container_named(&task, "xray-daemon");
    assert_eq!(task_definition_health_command(), ["CMD", "/xray", "health"]);
    assert!(
        sidecar["healthCheck"]["timeout"]
            .as_u64()
            .is_some_and(|t| t >= 2)
    );
    let ports: Vec<(u64, &str)> = sidecar["portMappings"]
        .as_array()
        .expect("sidecar ports")
        .iter()
        .map(|m| {
            (
                m["containerPort"].as_u64().unwrap_or(0),
                m["protocol"].as_str().unwrap_or("tcp"),
            )
        })
        .collect();
    assert_eq!(ports, [(2000, "udp"), (2000, "tcp"), (4318, "tcp")]);
    let otel = container_named(&task, "otel-app");
    assert!(
        otel["environment"]
            .as_array()
            .expect("otel-app environment")
            .iter()
            .any(|e| e["name"] == "OTEL_EXPORTER_OTLP_ENDPOINT"
                && e["value"] == "http://127.0.0.1:4318"),
        "{otel}"
    );
    let command: Vec<&str> = sidecar["command"]
        .as_array()
        .expect("sidecar command")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(command, ["--otlp-http", "0.0.0.0:4318"]);
    let app = container_named(&task, "app");
    assert_eq!(
        app["dependsOn"],
        serde_json::json!([{ "containerName": "xray-daemon", "condition": "HEALTHY" }]),
        "the app starts after, and stops before, the sidecar"
    );
    assert!(
        app["environment"]
            .as_array()
            .expect("app environment")
            .iter()
            .any(|e| e["name"] == "AWS_XRAY_DAEMON_ADDRESS" && e["value"] == "127.0.0.1:2000")
    );
}

/// The compose file: a Flask backend pointing `AWS_XRAY_DAEMON_ADDRESS` at an `xray-daemon`
/// service that runs our image with the same health check.
#[test]
fn docker_compose_example_has_the_flask_app_and_the_daemon() {
    let out = stdout_of(
        Command::new(venv_bin("python"))
            .args([
                "-c",
                "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
            ])
            .arg(repo_root().join("packaging/docker-compose.yml")),
    );
    let compose: Value = serde_json::from_str(&out).expect("compose as JSON");
    let backend = &compose["services"]["backend"];
    let daemon = &compose["services"]["xray-daemon"];
    assert_eq!(
        backend["environment"]["AWS_XRAY_DAEMON_ADDRESS"],
        "xray-daemon:2000"
    );
    assert_eq!(
        backend["depends_on"]["xray-daemon"]["condition"],
        "service_healthy"
    );
    assert!(
        daemon["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("xray-daemon-rs:"))
    );
    let test: Vec<String> = daemon["healthcheck"]["test"]
        .as_array()
        .expect("healthcheck.test")
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(test, task_definition_health_command());
    assert_eq!(
        compose["services"]["otel-backend"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"],
        "http://xray-daemon:4318"
    );
    assert!(
        daemon["command"].as_array().is_some_and(|c| c
            .windows(2)
            .any(|w| w[0] == "--otlp-http" && w[1] == "0.0.0.0:4318")),
        "{daemon}"
    );
}

// ---------------------------------------------------------------------------------------------
// The health check against the daemon built for this test run.

/// Runs `xray health ARGS…` (the test build) and returns its output.
fn xray_health(args: &[&str]) -> Output {
    output(
        Command::new(crate::support::xray_bin())
            .arg("health")
            .args(args),
    )
}

/// `xray health` exits 0 while the daemon runs, even while its uploads fail (liveness only);
/// `--max-upload-failure S` turns unhealthy once uploads have failed for longer than S; once
/// the daemon has stopped it exits 1 with one line saying so.
#[tokio::test]
async fn health_subcommand_reports_liveness_and_optionally_failing_uploads() {
    // Nothing listens on the upstream port: every upload fails.
    let dead_upstream = format!("http://{}", free_addr());
    let mut daemon = Daemon::builder()
        .endpoint(&dead_upstream)
        .arg("-n")
        .arg(TEST_REGION)
        .start()
        .await;
    let addr = daemon.tcp_addr().to_string();

    let healthy = xray_health(&[&addr]);
    assert_eq!(healthy.status.code(), Some(0), "{healthy:?}");
    let line = String::from_utf8_lossy(&healthy.stdout);
    assert!(
        line.starts_with("healthy: ") && line.trim_end().lines().count() == 1,
        "{line:?}"
    );
    let no_failures = xray_health(&[&addr, "--max-upload-failure", "0"]);
    assert_eq!(no_failures.status.code(), Some(0), "{no_failures:?}");

    daemon.send_segment(&segment_json(&new_trace_id(), &new_segment_id(), "health"));
    daemon
        .wait_for_stats(|s| s.batches_failed > 0, Duration::from_secs(30))
        .await;
    // Liveness alone stays healthy: an X-Ray outage must not restart the application's task.
    assert_eq!(xray_health(&[&addr]).status.code(), Some(0));
    let tolerant = xray_health(&[&addr, "--max-upload-failure=3600"]);
    assert_eq!(tolerant.status.code(), Some(0), "{tolerant:?}");
    assert!(String::from_utf8_lossy(&tolerant.stdout).contains("uploads have been failing"));
    // Failing for longer than 0 s: true from the next whole second on.
    let strict = crate::support::wait::until(
        Duration::from_secs(10),
        Duration::from_millis(200),
        async || {
            let out = xray_health(&[&addr, "--max-upload-failure", "0"]);
            (out.status.code() == Some(1)).then_some(out)
        },
    )
    .await
    .expect("unhealthy once uploads have failed for more than 0 s");
    let reason = String::from_utf8_lossy(&strict.stderr);
    assert!(
        reason.starts_with("unhealthy: uploads from the daemon at")
            && reason.contains("--max-upload-failure"),
        "{reason:?}"
    );

    daemon.sigterm();
    daemon.wait_exit(Duration::from_secs(30)).await;
    let stopped = xray_health(&[&addr]);
    assert_eq!(stopped.status.code(), Some(1), "{stopped:?}");
    let reason = String::from_utf8_lossy(&stopped.stderr);
    assert!(
        reason.starts_with("unhealthy: no daemon answers at")
            && reason.trim_end().lines().count() == 1,
        "{reason:?}"
    );
    // A usage error is exit 1 too (Docker reserves 2 in health checks).
    assert_eq!(xray_health(&["--bogus"]).status.code(), Some(1));
}

// ---------------------------------------------------------------------------------------------
// The rpm's scriptlets and the deb's maintainer scripts, run.

/// Runs `scenario` (shell) as root in a private mount namespace (`unshare -m`) where /run,
/// /var/lib, /var/log and /etc/systemd/system are empty tmpfs mounts and /run/systemd/system
/// exists (so the scripts believe systemd runs), with `getent`, `useradd`, `chown` and
/// `systemctl` replaced by stubs that record their arguments. `getent` finds the `xray` user
/// only when `user_exists`. The host is not touched. Returns the recorded calls and the
/// scenario's stdout.
fn run_scripts(scenario: &str, user_exists: bool) -> (Vec<String>, String) {
    require_tools(&["unshare", "mount"]);
    let dir = temp_dir("xray-it-scripts-");
    let stubs = dir.path().join("stubs");
    std::fs::create_dir_all(&stubs).expect("stubs dir");
    let calls = dir.path().join("calls.log");
    for (name, status) in [
        ("getent", if user_exists { 0 } else { 2 }),
        ("useradd", 0),
        ("chown", 0),
        ("systemctl", 0),
    ] {
        let stub = stubs.join(name);
        std::fs::write(
            &stub,
            format!(
                "#!/bin/sh\necho \"{name} $*\" >> '{}'\nexit {status}\n",
                calls.display()
            ),
        )
        .expect("write stub");
        std::fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod stub");
    }
    let script = format!(
        "set -e\n\
         for d in /run /var/lib /var/log /etc/systemd/system; do mount -t tmpfs tmpfs \"$d\"; done\n\
         mkdir -p /run/systemd/system\n\
         export PATH='{}':\"$PATH\"\n{scenario}",
        stubs.display()
    );
    let stdout = stdout_of(Command::new("unshare").args(["-m", "sh", "-c", &script]));
    let recorded = std::fs::read_to_string(&calls).unwrap_or_default();
    (recorded.lines().map(str::to_owned).collect(), stdout)
}

/// The commands a package's scripts run on a first install (no `xray` user yet), `nologin`
/// being the distribution's path of that shell.
fn first_install_calls(nologin: &str) -> Vec<String> {
    let useradd = format!(
        "useradd --system --user-group --home-dir / --no-create-home --shell {nologin} xray"
    );
    [
        "getent passwd xray",
        "getent group xray",
        &useradd,
        "chown xray:xray /var/log/xray",
        "systemctl daemon-reload",
        "systemctl enable xray.service",
        "systemctl restart xray.service",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The commands a package's scripts run when installed over the original daemon's package
/// (the `xray` user exists): enable and restart ours.
const UPGRADE_OVER_ORIGINAL_CALLS: [&str; 5] = [
    "getent passwd xray",
    "chown xray:xray /var/log/xray",
    "systemctl daemon-reload",
    "systemctl enable xray.service",
    "systemctl restart xray.service",
];

/// The rpm's scriptlets, as packaged: a first install creates the user and log directory and
/// enables and starts the service; an upgrade over the original's package (its unit in
/// /etc/systemd/system) enables and restarts ours and removes the original's dangling enable
/// link; an upgrade of ours only restarts a running service; erase stops and disables it.
#[test]
fn rpm_scriptlets_enable_on_install_restart_on_upgrade_stop_on_erase() {
    let rpm = dist().artifact(Arch::Amd64, "rpm");
    let dir = temp_dir("xray-it-scriptlets-");
    let mut paths = std::collections::BTreeMap::new();
    for tag in ["PREIN", "POSTTRANS", "PREUN", "POSTUN"] {
        let text = stdout_of(
            Command::new("rpm")
                .args(["-qp", "--qf"])
                .arg(format!("%{{{tag}}}"))
                .arg(&rpm),
        );
        let path = dir.path().join(tag);
        std::fs::write(&path, text).expect("write scriptlet");
        paths.insert(tag, path.display().to_string());
    }
    let (pre, posttrans) = (&paths["PREIN"], &paths["POSTTRANS"]);
    let (preun, postun) = (&paths["PREUN"], &paths["POSTUN"]);

    let (calls, _) = run_scripts(&format!("sh {pre} 1\nsh {posttrans}\n"), false);
    assert_eq!(calls, first_install_calls("/sbin/nologin"), "first install");

    // Over the original: its unit is in /etc/systemd/system (and was enabled by hand); rpm
    // removes it between %pre and %posttrans.
    let (calls, state) = run_scripts(
        &format!(
            "touch /etc/systemd/system/xray.service\n\
             mkdir /etc/systemd/system/network-online.target.wants\n\
             ln -s /etc/systemd/system/xray.service /etc/systemd/system/network-online.target.wants/\n\
             sh {pre} 2\n\
             rm /etc/systemd/system/xray.service\n\
             sh {posttrans}\n\
             find /etc/systemd/system /var/lib -mindepth 1 | sort\n"
        ),
        true,
    );
    assert_eq!(
        calls, UPGRADE_OVER_ORIGINAL_CALLS,
        "upgrade over the original"
    );
    assert_eq!(
        state.lines().collect::<Vec<_>>(),
        [
            "/etc/systemd/system/network-online.target.wants",
            "/var/lib/rpm-state",
            "/var/lib/rpm-state/xray",
        ],
        "the dangling link and the marker are gone"
    );

    let (calls, _) = run_scripts(&format!("sh {pre} 2\nsh {posttrans}\n"), true);
    assert_eq!(
        calls,
        [
            "getent passwd xray",
            "chown xray:xray /var/log/xray",
            "systemctl daemon-reload",
            "systemctl try-restart xray.service",
        ],
        "upgrade of ours keeps the administrator's enable/disable choice"
    );

    let (calls, _) = run_scripts(&format!("sh {preun} 1\nsh {postun} 1\n"), true);
    assert_eq!(
        calls,
        ["systemctl daemon-reload"],
        "the old package's side of an upgrade"
    );
    let (calls, _) = run_scripts(&format!("sh {preun} 0\nsh {postun} 0\n"), true);
    assert_eq!(
        calls,
        [
            "systemctl disable --now xray.service",
            "systemctl daemon-reload"
        ],
        "erase"
    );
}

/// The deb's maintainer scripts, as packaged, with dpkg's arguments: install creates the user
/// and enables and starts the service; configuring over the original (3.6.6) enables and
/// restarts; an upgrade of ours only restarts a running service; removal stops and disables it.
#[test]
fn deb_maintainer_scripts_enable_on_install_restart_on_upgrade_stop_on_remove() {
    let deb = dist().artifact(Arch::Amd64, "deb");
    let control = temp_dir("xray-it-deb-scripts-");
    stdout_of(
        Command::new("dpkg-deb")
            .arg("-e")
            .arg(&deb)
            .arg(control.path()),
    );
    let script = |name: &str| control.path().join(name).display().to_string();
    let (preinst, postinst) = (script("preinst"), script("postinst"));
    let (prerm, postrm) = (script("prerm"), script("postrm"));

    let (calls, _) = run_scripts(&format!("{preinst} install\n{postinst} configure\n"), false);
    assert_eq!(
        calls,
        first_install_calls("/usr/sbin/nologin"),
        "first install"
    );
    let (calls, _) = run_scripts(
        &format!("{preinst} upgrade 3.6.6\n{postinst} configure 3.6.6\n"),
        true,
    );
    assert_eq!(
        calls, UPGRADE_OVER_ORIGINAL_CALLS,
        "upgrade over the original"
    );
    let (calls, _) = run_scripts(
        &format!("{prerm} upgrade 1:{VERSION}\n{postinst} configure 1:0.0.1\n"),
        true,
    );
    assert_eq!(
        calls,
        [
            "systemctl daemon-reload",
            "systemctl try-restart xray.service"
        ],
        "upgrade of ours"
    );
    let (calls, _) = run_scripts(&format!("{prerm} remove\n{postrm} remove\n"), true);
    assert_eq!(
        calls,
        [
            "systemctl disable --now xray.service",
            "systemctl daemon-reload"
        ],
        "remove"
    );
}
