//! Drop-in compatibility: the original daemon's flags in each spelling, its config
//! file, its exit codes and its log file with rotation, observed from the running `xray`.
//!
//! Daemons here use `--sink stdout` unless a test needs the AWS path, so no peer but the
//! daemon itself is needed; what a setting changed is read from `/daemon/stats`, from
//! datagrams counted on the address it bound, or from its log.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    Daemon, DaemonBuilder, Finished, datagram, free_addr, new_segment_id, new_trace_id,
    segment_json, wait,
};

const WITHIN: Duration = Duration::from_secs(10);
const MIB: u64 = 1024 * 1024;

/// A daemon with the given arguments and no `-b`/`-t` of the harness: the test passes its
/// own, on the harness's addresses, in the spelling it is testing.
fn bare() -> DaemonBuilder {
    Daemon::builder()
        .no_bind_flags()
        .arg("--sink")
        .arg("stdout")
}

/// Sends one segment to `addr` from a fresh socket.
fn send_to(addr: SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let body = segment_json(&new_trace_id(), &new_segment_id(), "compat");
    socket.send_to(&datagram(&body), addr).unwrap();
}

/// Waits until the daemon's stdout contains `needle`; returns stdout.
async fn wait_stdout(d: &Daemon, needle: &str) -> String {
    let found = wait::until(WITHIN, wait::POLL_INTERVAL, async || {
        let out = d.stdout();
        out.contains(needle).then_some(out)
    })
    .await;
    found.unwrap_or_else(|| panic!("stdout never contained {needle:?}:\n{}", d.stdout()))
}

/// Waits until `path` contains `needle`; returns its text.
async fn wait_file(path: &Path, needle: &str) -> String {
    let found = wait::until(WITHIN, wait::POLL_INTERVAL, async || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.contains(needle).then_some(text)
    })
    .await;
    found.unwrap_or_else(|| {
        panic!(
            "{} never contained {needle:?}:\n{}",
            path.display(),
            std::fs::read_to_string(path).unwrap_or_default()
        )
    })
}

fn assert_clean_failure(f: &Finished, code: i32, needles: &[&str]) {
    assert_eq!(
        f.status.code(),
        Some(code),
        "exit code; stderr:\n{}\nstdout:\n{}",
        f.stderr,
        f.stdout
    );
    for needle in needles {
        assert!(
            f.stderr.contains(needle),
            "stderr should name {needle:?}:\n{}",
            f.stderr
        );
    }
    assert!(
        !f.stderr.contains("panicked") && !f.stderr.contains("backtrace"),
        "no panic: {}",
        f.stderr
    );
}

/// Each way the original accepts a flag with a value: `-b V`, `--b V`, `-bind V`,
/// `--bind V`, `-b=V`, `--bind=V`.
fn spellings(short: &str, long: &str, value: &str) -> Vec<Vec<String>> {
    vec![
        vec![format!("-{short}"), value.into()],
        vec![format!("--{short}"), value.into()],
        vec![format!("-{long}"), value.into()],
        vec![format!("--{long}"), value.into()],
        vec![format!("-{short}={value}")],
        vec![format!("--{long}={value}")],
    ]
}

/// `-b` and `-t` in every spelling, each after an earlier value of the same flag: the last
/// one is the address bound (the stats answer on the TCP one, a datagram sent to the UDP one
/// is counted).
#[tokio::test]
async fn bind_flags_in_every_spelling_and_repeated_last_wins() {
    for i in 0..6 {
        let builder = bare();
        let (udp, tcp) = (builder.udp_addr(), builder.tcp_addr());
        let decoy = free_addr().to_string();
        let b = &spellings("b", "bind", &udp.to_string())[i];
        let t = &spellings("t", "bind-tcp", &tcp.to_string())[i];
        let daemon = builder
            .args(["-b", &decoy, "--bind-tcp", &decoy])
            .args(b)
            .args(t)
            .start()
            .await;
        send_to(udp);
        daemon.wait_for_stats(|s| s.received == 1, WITHIN).await;
        assert!(
            UdpSocket::bind(&decoy).is_ok(),
            "the earlier -b value ({decoy}) must not be bound ({b:?})"
        );
    }
}

/// `-m` in every spelling sets the buffer budget; repeated, the last wins.
#[tokio::test]
async fn buffer_memory_flag_sets_the_budget() {
    for (i, words) in spellings("m", "buffer-memory", "7").into_iter().enumerate() {
        let daemon = Daemon::builder()
            .args(["--sink", "stdout", "-m", "20"])
            .args(&words)
            .start()
            .await;
        assert_eq!(
            daemon.stats().await.budget_bytes,
            7 * MIB,
            "spelling {i}: {words:?}"
        );
    }
}

/// `-n` in its spellings: the startup banner names the region of the last one.
#[tokio::test]
async fn region_flag_shows_in_the_banner() {
    for words in spellings("n", "region", "eu-central-1") {
        let daemon = Daemon::builder()
            .endpoint("http://127.0.0.1:9")
            .args(["-n", "us-west-2"])
            .args(&words)
            .start()
            .await;
        let out = wait_stdout(&daemon, "region eu-central-1").await;
        assert!(!out.contains("us-west-2"), "{words:?}: {out}");
    }
}

/// `-l`: Debug lines appear at debug and not at info; the last `-l` wins.
#[tokio::test]
async fn log_level_flag_controls_debug_lines() {
    for (words, debug) in [
        (vec!["-l", "info", "-log-level=debug"], true),
        (vec!["--l", "debug", "--log-level", "prod"], false),
        (vec!["-l=dev"], true),
        (vec!["--log-level=warn"], false),
    ] {
        let daemon = Daemon::builder()
            .args(["--sink", "stdout"])
            .args(&words)
            .start()
            .await;
        daemon.send_segment(&segment_json(&new_trace_id(), &new_segment_id(), "lvl"));
        daemon.wait_for_stats(|s| s.sent == 1, WITHIN).await;
        if debug {
            wait_stdout(&daemon, "[Debug] Batch of 1 segment(s)").await;
        } else {
            assert!(
                !daemon.stdout().contains("[Debug]"),
                "{words:?}: {}",
                daemon.stdout()
            );
        }
    }
}

/// `-f` in every spelling: the log goes to the last file named, in the original's format.
#[tokio::test]
async fn log_file_flag_writes_the_log_there() {
    for (i, words) in spellings("f", "log-file", "PLACEHOLDER")
        .into_iter()
        .enumerate()
    {
        let builder = Daemon::builder().args(["--sink", "stdout"]);
        let first = builder.dir().join("first.log");
        let last = builder.dir().join(format!("logs/{i}/xray.log"));
        let words: Vec<String> = words
            .iter()
            .map(|w| w.replace("PLACEHOLDER", &last.to_string_lossy()))
            .collect();
        let daemon = builder.arg("-f").arg(&first).args(&words).start().await;
        let text = wait_file(&last, "receiving segments on UDP").await;
        let line = text.lines().next().unwrap_or("");
        assert!(is_log_line(line), "{line:?}");
        assert!(!first.exists(), "{words:?}: the earlier -f is not used");
        assert!(!daemon.stdout().contains("receiving segments"));
    }
}

/// `-f` under a regular file stops startup (exit 1) naming the parent that is not a directory;
/// it said "File exists", the OS's words for the directory it could not make.
#[tokio::test]
async fn log_file_under_a_regular_file_says_its_parent_is_not_a_directory() {
    for below in ["xray.log", "logs/xray.log"] {
        let builder = bare();
        let plain = builder.write_file("plain", "not a directory");
        let f = builder
            .arg("-f")
            .arg(plain.join(below))
            .run_to_exit(WITHIN)
            .await;
        let parent = format!("its parent {} is not a directory", plain.display());
        assert_clean_failure(&f, 1, &[&parent]);
        assert!(!f.stderr.contains("File exists"), "{}", f.stderr);
    }
}

/// A config error reaches the `-f` file even when its directory does not exist yet, as the
/// log itself does (it was written there only when the directory existed).
#[tokio::test]
async fn config_error_reaches_a_log_file_whose_directory_is_not_made_yet() {
    // Not the builder's directory: it goes with the daemon.
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("not/made/yet/xray.log");
    let f = bare()
        .args(["--concurrency", "0", "-f"])
        .arg(&log)
        .run_to_exit(WITHIN)
        .await;
    assert_clean_failure(&f, 1, &["--concurrency"]);
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains("[Error]") && logged.contains("--concurrency"),
        "the -f file has the error: {logged:?}"
    );
}

/// `-o` the Go way: alone or `=true` is local mode, `=false` is not; `-o false` is local
/// mode and warns that the words after it were ignored. Observed in the no-region error,
/// which mentions instance metadata only when it was looked at.
#[tokio::test]
async fn local_mode_flag_the_go_way() {
    for (words, local, ignored) in [
        (vec!["-o"], true, false),
        (vec!["--local-mode=true"], true, false),
        (vec!["-o", "-o=false"], false, false),
        (vec!["-local-mode=0"], false, false),
        (vec!["-o", "false"], true, true),
    ] {
        let f = Daemon::builder()
            .arg("-l=debug")
            .args(&words)
            .run_to_exit(WITHIN)
            .await;
        assert_clean_failure(&f, 1, &["no AWS region"]);
        let all = format!("{}{}", f.stderr, f.stdout);
        assert_eq!(
            !all.contains("instance metadata"),
            local,
            "{words:?}: {all}"
        );
        assert!(
            all.contains(&format!("Local mode: {local}")),
            "{words:?}: {all}"
        );
        assert_eq!(
            all.contains("Ignored the arguments after the first word that is not a flag: false"),
            ignored,
            "{words:?}: {all}"
        );
    }
}

/// `-a`, `-r`, `-p` in their spellings reach the daemon (Debug lines), and `-p` is checked.
#[tokio::test]
async fn arn_role_and_proxy_flags_reach_the_daemon() {
    let daemon = Daemon::builder()
        .args(["--sink", "stdout", "-l", "debug"])
        .args([
            "-a",
            "arn:one",
            "--resource-arn=arn:aws:ec2:us-east-1:1:instance/i-9",
        ])
        .args(["-role-arn", "arn:aws:iam::1:role/r"])
        .args(["--p=http://127.0.0.1:3128"])
        .start()
        .await;
    let out = wait_stdout(&daemon, "Using proxy address").await;
    assert!(
        out.contains("running the daemon: arn:aws:ec2:us-east-1:1:instance/i-9"),
        "{out}"
    );
    assert!(
        out.contains("Role to assume: arn:aws:iam::1:role/r"),
        "{out}"
    );
    assert!(
        out.contains("Using proxy address: http://127.0.0.1:3128"),
        "{out}"
    );

    let f = Daemon::builder()
        .args(["--sink", "stdout", "-p", "proxy:3128"])
        .run_to_exit(WITHIN)
        .await;
    assert_clean_failure(&f, 1, &["-p/--proxy-address", "http://"]);
}

/// Help and version exit 0 on stdout; unknown flags and bad values exit 2 naming them.
#[tokio::test]
async fn help_version_and_usage_errors() {
    for words in [vec!["-h"], vec!["-help"], vec!["--help"]] {
        let f = Daemon::builder()
            .no_bind_flags()
            .args(&words)
            .run_to_exit(WITHIN)
            .await;
        assert_eq!(f.status.code(), Some(0), "{words:?}");
        assert!(
            f.stdout.contains("--bind-tcp") && f.stdout.contains("-c, --config"),
            "{}",
            f.stdout
        );
    }
    for words in [vec!["-v"], vec!["--version"], vec!["-version=true"]] {
        let f = Daemon::builder()
            .no_bind_flags()
            .args(&words)
            .run_to_exit(WITHIN)
            .await;
        assert_eq!(f.status.code(), Some(0));
        assert!(
            f.stdout
                .starts_with("AWS X-Ray daemon (xray-daemon-rs) version: "),
            "{}",
            f.stdout
        );
    }
    for (words, needle) in [
        (vec!["-x"], "-x"),
        (vec!["--no-such-flag=1"], "-no-such-flag"),
        (vec!["-bx", "1"], "-bx"),
        (vec!["-m", "lots"], "lots"),
        (vec!["-o=maybe"], "maybe"),
        (vec!["-l", "loud"], "loud"),
        (vec!["-n"], "-n"),
        (vec!["--log-format=xml"], "xml"),
    ] {
        let f = Daemon::builder().args(&words).run_to_exit(WITHIN).await;
        assert_clean_failure(&f, 2, &[needle]);
    }
}

/// `xray --help` names the `health` subcommand (it was missing), and `xray health --help`
/// answers as that line says.
#[tokio::test]
async fn help_names_the_health_subcommand() {
    let f = Daemon::builder()
        .no_bind_flags()
        .arg("--help")
        .run_to_exit(WITHIN)
        .await;
    assert_eq!(f.status.code(), Some(0), "{}", f.stderr);
    assert!(
        f.stdout
            .contains("xray health [HOST:PORT] [--max-upload-failure SECONDS]")
            && f.stdout.contains("Commands:"),
        "{}",
        f.stdout
    );
    let f = Daemon::builder()
        .no_bind_flags()
        .args(["health", "--help"])
        .run_to_exit(WITHIN)
        .await;
    assert_eq!(f.status.code(), Some(0), "{}", f.stderr);
    assert!(f.stdout.contains("--max-upload-failure"), "{}", f.stdout);
}

/// The original's rule: a value that does not parse exits 2, a number out of range exits 1
/// with a log line naming the flag. `--log-rotate-bytes 0` and `--concurrency -1` exited 2.
#[tokio::test]
async fn numbers_out_of_range_exit_1_and_words_for_numbers_exit_2() {
    for words in [
        ["--log-rotate-bytes", "0"],
        ["--log-rotate-bytes", "-1"],
        ["--concurrency", "-1"],
        ["--max-segment-size", "-1"],
        ["--retry-max-attempts", "0"],
        ["-m", "2"],
    ] {
        let f = bare().args(words).run_to_exit(WITHIN).await;
        assert_clean_failure(&f, 1, &[words[0], "[Error]"]);
    }
    for words in [["--log-rotate-bytes", "lots"], ["--concurrency", "1.5"]] {
        let f = bare().args(words).run_to_exit(WITHIN).await;
        assert_clean_failure(&f, 2, &[words[0]]);
    }
}

/// A host name to listen on is looked up after the log has started, and the log says so
/// before the lookup: it used to be looked up while the config was read, with nothing logged.
/// (`.invalid` never resolves, so the lookup fails and the daemon exits 1 naming the flag.)
#[tokio::test]
async fn a_host_name_to_listen_on_is_looked_up_after_the_log_says_so() {
    let builder = bare();
    let tcp = builder.tcp_addr().to_string();
    let f = builder
        .args(["-b", "xray-sidecar.invalid:2000", "-t", &tcp])
        .run_to_exit(WITHIN)
        .await;
    assert_clean_failure(&f, 1, &["-b/--bind", "does not resolve"]);
    let said = f
        .stdout
        .lines()
        .find(|l| l.contains("Looking up the host name xray-sidecar.invalid"));
    assert!(
        said.is_some_and(|l| is_log_line(l) && l.contains("[Info]") && l.contains("-b/--bind")),
        "the log names the lookup first:\n{}",
        f.stdout
    );
}

/// A region that cannot be one label of a host name is refused before anything can ask the
/// DNS for `xray.REGION.amazonaws.com` (it was taken as given): from the flag as a config
/// error, from `AWS_REGION` once looked at, both exit 1 naming where it came from.
#[tokio::test]
async fn a_region_that_is_not_a_host_label_exits_1_naming_its_source() {
    let f = Daemon::builder()
        .args(["-n", "x.y", "-o"])
        .run_to_exit(WITHIN)
        .await;
    assert_clean_failure(&f, 1, &["\"x.y\"", "-n/--region", "us-east-1"]);
    let f = Daemon::builder()
        .env("AWS_REGION", "x.y")
        .arg("-o")
        .run_to_exit(WITHIN)
        .await;
    assert_clean_failure(&f, 1, &["\"x.y\"", "AWS_REGION"]);
}

/// Every key of a version 2 file and a version 1 file (same keys), through `-c`: addresses,
/// budget, region, endpoint, log level and file, ARNs, proxy, local mode, concurrency, and
/// the loud NoVerifySSL warning.
#[tokio::test]
async fn config_file_versions_1_and_2_with_every_key_take_effect() {
    for (version, spelling) in [(2, "-c"), (1, "--config")] {
        let builder = Daemon::builder().no_bind_flags();
        let log = builder.dir().join("from-config.log");
        let text = format!(
            "TotalBufferSizeMB: 6\nConcurrency: 3\nRegion: ap-south-1\nEndpoint: http://127.0.0.1:9\n\
             Socket:\n  UDPAddress: {}\n  TCPAddress: {}\n\
             proxyserver:\n  idleconntimeout: 5\n  maxidleconnsperhost: 1\n  maxidleconns: 4\n\
             Logging:\n  LogRotation: false\n  LogLevel: debug\n  LogPath: {}\n\
             LocalMode: true\nResourceARN: arn:aws:ecs:x\nRoleARN: arn:aws:iam::1:role/cfg\n\
             NoVerifySSL: true\nProxyAddress: http://127.0.0.1:3128\nVersion: {version}\n",
            builder.udp_addr(),
            builder.tcp_addr(),
            log.display()
        );
        let cfg = builder.write_file("my.yaml", &text);
        let daemon = builder.arg(spelling).arg(&cfg).start().await;
        assert_eq!(daemon.stats().await.budget_bytes, 6 * MIB);
        daemon.send_segment(&segment_json(&new_trace_id(), &new_segment_id(), "v"));
        daemon.wait_for_stats(|s| s.received == 1, WITHIN).await;
        let out = wait_file(&log, "receiving segments on UDP").await;
        for needle in [
            "region ap-south-1",
            "X-Ray endpoint http://127.0.0.1:9",
            "[Debug] ARN of the AWS resource running the daemon: arn:aws:ecs:x",
            "Role to assume: arn:aws:iam::1:role/cfg",
            "Using proxy address: http://127.0.0.1:3128",
            "Local mode: true; upload concurrency: 3; TLS certificate checks: off; log rotation: off",
            "[Warn] NoVerifySSL is true",
            "proxyserver.idleconntimeout has no effect",
            &format!("Using config file {}", cfg.display()),
        ] {
            assert!(
                out.contains(needle),
                "version {version}: {needle:?} missing:\n{out}"
            );
        }
        assert!(
            !daemon.stdout().contains("region ap-south-1"),
            "the log went to the file"
        );
    }
}

/// A flag beats the file; the file beats the default.
#[tokio::test]
async fn flag_overrides_the_config_file() {
    let builder = Daemon::builder().args(["--sink", "stdout"]);
    let cfg = builder.write_file(
        "cfg.yaml",
        "Version: 2\nTotalBufferSizeMB: 6\nLogging:\n  LogLevel: error\n",
    );
    let daemon = builder
        .arg("-c")
        .arg(&cfg)
        .args(["-m", "8", "-l", "info"])
        .start()
        .await;
    assert_eq!(daemon.stats().await.budget_bytes, 8 * MIB);
    wait_stdout(&daemon, "[Info] AWS X-Ray daemon").await;
}

/// Without `-c` the daemon reads `./cfg.yaml`; with `-c` it reads only that file, not
/// `./cfg.yaml` underneath it.
#[tokio::test]
async fn config_flag_file_is_not_layered_over_the_working_directory_file() {
    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(
        cwd.path().join("cfg.yaml"),
        "Version: 2\nTotalBufferSizeMB: 13\nRegion: eu-north-1\n",
    )
    .unwrap();

    let daemon = Daemon::builder()
        .current_dir(cwd.path())
        .args(["--sink", "stdout"])
        .start()
        .await;
    assert_eq!(
        daemon.stats().await.budget_bytes,
        13 * MIB,
        "./cfg.yaml is read"
    );
    drop(daemon);

    let builder = Daemon::builder()
        .current_dir(cwd.path())
        .args(["--sink", "stdout"]);
    let other = builder.write_file("other.yaml", "Version: 2\nConcurrency: 2\n");
    let daemon = builder.arg("-c").arg(&other).start().await;
    let stats = daemon.stats().await;
    assert_ne!(
        stats.budget_bytes,
        13 * MIB,
        "-c replaces ./cfg.yaml: {stats:?}"
    );
    assert!(stats.budget_bytes >= 3 * MIB, "{stats:?}");
    let out = wait_stdout(&daemon, "Using config file").await;
    assert!(out.contains(&other.display().to_string()), "{out}");
}

/// The sample cfg.yaml at the repository root loads as is.
#[tokio::test]
async fn sample_config_loads_as_is() {
    let sample: PathBuf = crate::support::repo_root().join("cfg.yaml");
    let daemon = Daemon::builder()
        .args(["--sink", "stdout", "-c"])
        .arg(&sample)
        .start()
        .await;
    wait_stdout(&daemon, "Using config file").await;
    assert!(!daemon.stdout().contains("[Warn]"), "{}", daemon.stdout());
}

/// Bad config files stop startup with exit 1 and a message naming the problem.
#[tokio::test]
async fn bad_config_files_exit_1_naming_the_problem() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "unknown key",
            "Version: 2\nRegoin: us-east-1\n",
            &["line 2", "Regoin", "Region"],
        ),
        (
            "string for a number",
            "Version: 2\nTotalBufferSizeMB: lots\n",
            &["line 2", "TotalBufferSizeMB", "whole number"],
        ),
        (
            "buffer below the minimum",
            "Version: 2\nTotalBufferSizeMB: 2\n",
            &["TotalBufferSizeMB", "(line 2)", "at least 3"],
        ),
        (
            "malformed address",
            "Version: 2\nSocket:\n  UDPAddress: 127.0.0.1\n",
            &["Socket.UDPAddress", "(line 3)", "HOST:PORT"],
        ),
        (
            "missing Version",
            "Region: us-east-1\n",
            &["Version", "Version: 2"],
        ),
        ("wrong Version", "Version: 3\n", &["Version", "1 or 2"]),
        (
            "retired key",
            "Version: 2\nProcessor:\n  Routine: 4\n",
            &["Processor.Routine", "Concurrency"],
        ),
        ("not YAML", "Version: 2\n  x: [\n", &["line 2", "YAML"]),
    ];
    let logs = tempfile::tempdir().unwrap();
    for (what, text, needles) in cases {
        // No -b/-t: they would override the file's addresses.
        let builder = Daemon::builder().no_bind_flags();
        let log = logs.path().join(format!("{}.log", what.replace(' ', "-")));
        let cfg = builder.write_file("bad.yaml", text);
        let f = builder
            .arg("-c")
            .arg(&cfg)
            .arg("-f")
            .arg(&log)
            .run_to_exit(WITHIN)
            .await;
        let mut needles = needles.to_vec();
        let shown = cfg.display().to_string();
        needles.push(&shown);
        assert_clean_failure(&f, 1, &needles);
        assert!(f.stderr.contains("[Error]"), "{what}: {}", f.stderr);
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            logged.contains(needles[0]),
            "{what}: also in the -f file: {logged:?}"
        );
    }
    for (what, path) in [
        ("missing file", PathBuf::from("/nonexistent/xray/cfg.yaml")),
        ("a directory", std::env::temp_dir()),
    ] {
        let f = Daemon::builder()
            .arg("-c")
            .arg(&path)
            .run_to_exit(WITHIN)
            .await;
        assert_clean_failure(&f, 1, &[&path.display().to_string(), "-c/--config"]);
        let _ = what;
    }
}

/// Log rotation with a small size: a bounded set of files, each within the size, and the
/// lines in them whole and without a gap: the per-datagram Trace lines across the kept files,
/// oldest first, are the last ones sent, in order, ending with the very last.
#[tokio::test]
async fn log_rotation_keeps_a_bounded_set_of_whole_lines() {
    const MAX: u64 = 2_000;
    const SENT: usize = 150;
    let builder = Daemon::builder().args(["--sink", "stdout", "-l", "dev"]);
    let log = builder.dir().join("logs/xray.log");
    let daemon = builder
        .arg("-f")
        .arg(&log)
        .args(["--log-rotate-bytes", &MAX.to_string()])
        .start()
        .await;
    let trace = new_trace_id();
    for chunk in 0..SENT / 25 {
        for i in chunk * 25..(chunk + 1) * 25 {
            daemon.send_segment(&segment_json(&trace, &format!("{i:016x}"), "rot"));
        }
        let want = (chunk as u64 + 1) * 25;
        daemon.wait_for_stats(|s| s.received >= want, WITHIN).await;
    }
    let last = format!("Segment {:016x} of trace", SENT - 1);
    wait_file(&log, &last).await;

    let name = |n: usize| PathBuf::from(format!("{}.{n}", log.display()));
    let files: Vec<PathBuf> = std::fs::read_dir(log.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        files.len() <= 4,
        "at most the file and 3 old ones: {files:?}"
    );
    assert!(name(3).exists(), "rotation happened: {files:?}");
    let mut ids = Vec::new();
    for path in [name(3), name(2), name(1), log.clone()] {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.len() as u64 <= MAX,
            "{} is {} bytes",
            path.display(),
            text.len()
        );
        assert!(
            text.ends_with('\n'),
            "{} ends with a whole line",
            path.display()
        );
        for line in text.lines() {
            assert!(
                is_log_line(line),
                "torn line in {}: {line:?}",
                path.display()
            );
            if let Some(rest) = line.split_once("[Trace] Segment ").map(|(_, r)| r) {
                let id = &rest[..16];
                ids.push(usize::from_str_radix(id, 16).unwrap());
            }
        }
    }
    assert!(!ids.is_empty());
    assert_eq!(*ids.last().unwrap(), SENT - 1);
    let first = ids[0];
    assert!(first > 0, "older lines were rotated away");
    assert_eq!(
        ids,
        (first..SENT).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
}

/// `--log-format json`: one JSON object a line with time, level and message.
#[tokio::test]
async fn json_log_format() {
    let daemon = Daemon::builder()
        .args(["--sink", "stdout", "--log-format", "json"])
        .start()
        .await;
    let out = wait_stdout(&daemon, "receiving segments").await;
    let first: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["level"], "Info");
    assert!(first["time"].as_str().is_some_and(|t| t.len() >= 20));
    assert!(first["message"].as_str().is_some());
}

/// `TIME [Level] message`, the time RFC 3339 to the second.
fn is_log_line(line: &str) -> bool {
    let Some((time, rest)) = line.split_once(' ') else {
        return false;
    };
    let time_ok = chrono_like(time);
    let level_ok = ["[Trace] ", "[Debug] ", "[Info] ", "[Warn] ", "[Error] "]
        .iter()
        .any(|l| rest.starts_with(l));
    time_ok && level_ok
}

/// `2026-11-27T08:00:00Z` or `…+01:00`.
fn chrono_like(t: &str) -> bool {
    let b = t.as_bytes();
    let base = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':';
    base && (t.len() == 20 && t.ends_with('Z') || t.len() == 25 && matches!(b[19], b'+' | b'-'))
}
