//! `xray health [ADDR] [--max-upload-failure SECONDS]`: the health check a container runs.
//!
//! ECS (and Docker's `HEALTHCHECK`) run a command inside the container, and the daemon's image is
//! `FROM scratch`: no shell, no curl. So the daemon's own binary asks the running daemon, over
//! its TCP address, through the reserved path [`crate::admin::HEALTH_PATH`]; it needs no config
//! file and none of the daemon's flags.
//!
//! In: the first argument after `health` may be the daemon's TCP address (`HOST:PORT`, default
//! [`DEFAULT_ADDR`], the address the original daemon's image listens on). Out: exit code 0
//! (healthy) or 1 (unhealthy, and also for a usage error, since Docker reserves exit code 2 in
//! health checks), with one line saying why: stdout when healthy, stderr otherwise.
//!
//! By default it checks liveness only: the daemon answers, and its UDP receive loop runs. It does
//! not look at uploads, because ECS replaces a task whose essential container is unhealthy, and an
//! X-Ray throttle or outage must not restart the application. `--max-upload-failure SECONDS`
//! adds one more condition: uploads have not been failing (every upload since the first failure
//! failed) for longer than that, read from [`crate::admin::STATS_PATH`]'s
//! `upload_failing_since_unix`.
//!
//! The whole check takes at most about [`TIMEOUT`] per request; it speaks just enough HTTP/1.0
//! for the daemon's own endpoints (one request per connection, the body read to the end).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::admin::{HEALTH_PATH, STATS_PATH};

/// Where the daemon is asked when no address is given: the original daemon's default TCP
/// address, which is also where its image listens (on all interfaces).
pub const DEFAULT_ADDR: &str = "127.0.0.1:2000";

/// How long one request may take to connect, and then each read or write (default 2 s; ECS
/// health checks time out after 5 s by default).
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Cap on a response read from the daemon, in bytes.
const MAX_RESPONSE: u64 = 256 * 1024;

/// What `xray health --help` says after the usage line.
const ABOUT: &str = "Asks the daemon running at HOST:PORT (default 127.0.0.1:2000, its TCP \
address, -t) whether it is healthy, and exits 0 if it is, 1 if not, printing one line saying \
why. By default only liveness is checked: the daemon answers and its UDP receive loop runs.";

/// `xray health`'s usage, for the daemon's own `--help` (which lists the subcommands clap does
/// not see; see [`crate::config::cli`]).
pub const USAGE: &str = "xray health [HOST:PORT] [--max-upload-failure SECONDS]";

/// One sentence on `xray health`, for the daemon's own `--help`.
pub const SUMMARY: &str = "Asks the daemon running at HOST:PORT (default 127.0.0.1:2000) whether \
it is healthy: exit 0 if it is, 1 if not, with one line saying why. For a container's health \
check (no shell needed); `xray health --help` for more.";

/// The arguments after `health`.
#[derive(Debug, clap::Parser)]
#[command(name = "xray health", about = ABOUT, disable_version_flag = true)]
struct Args {
    /// The daemon's TCP address (its -t).
    #[arg(value_name = "HOST:PORT", default_value = DEFAULT_ADDR)]
    addr: String,
    /// Also fail once uploads have kept failing for longer than SECONDS (not recommended for an
    /// essential ECS container: an X-Ray throttle would then restart the application's task).
    #[arg(long, value_name = "SECONDS")]
    max_upload_failure: Option<u64>,
}

/// What to check, from the arguments after `health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The daemon's TCP address, `HOST:PORT` (default [`DEFAULT_ADDR`]).
    pub addr: String,
    /// Unhealthy once uploads have failed without a success for longer than this (off by
    /// default).
    pub max_upload_failure: Option<Duration>,
}

/// What the arguments ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the check.
    Check(Check),
    /// Print this help text.
    Help(String),
}

/// Arguments `xray health` does not understand: clap's message, which names the argument and
/// ends with the usage line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct UsageError(String);

/// Why the daemon is not healthy.
#[derive(Debug, thiserror::Error)]
pub enum Unhealthy {
    /// The address does not resolve to anything.
    #[error("cannot resolve {addr}: {reason}; give the daemon's TCP address as HOST:PORT")]
    Resolve {
        /// The address given.
        addr: String,
        /// What the resolver said.
        reason: String,
    },
    /// Nothing answered at the address.
    #[error(
        "no daemon answers at {addr}: {source}; is it running, and listening on TCP there (-t)?"
    )]
    Connect {
        /// The address tried.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The connection broke or timed out.
    #[error("the daemon at {addr} did not answer GET {path} within {TIMEOUT:?}: {source}")]
    Exchange {
        /// The address.
        addr: SocketAddr,
        /// The path asked for.
        path: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Something answered, but not like the daemon does.
    #[error("{addr} answered GET {path} with something that is not the daemon's reply: {what}")]
    NotTheDaemon {
        /// The address.
        addr: SocketAddr,
        /// The path asked for.
        path: &'static str,
        /// What was wrong with the reply.
        what: String,
    },
    /// The daemon says it is not healthy.
    #[error("the daemon at {addr} reports itself unhealthy (HTTP {status}): {reason}")]
    Reported {
        /// The address.
        addr: SocketAddr,
        /// The HTTP status.
        status: u16,
        /// The first line of its reply.
        reason: String,
    },
    /// Uploads have been failing for too long.
    #[error(
        "uploads from the daemon at {addr} have been failing for {failing_for} s, more than the \
         {max} s allowed by --max-upload-failure; see its log for the upload errors"
    )]
    UploadsFailing {
        /// The address.
        addr: SocketAddr,
        /// Seconds since the first failed upload without a success since.
        failing_for: u64,
        /// The allowed seconds.
        max: u64,
    },
}

/// Parses the arguments after `health`.
pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    use clap::Parser;
    let words = std::iter::once(OsString::from("xray health")).chain(args);
    match Args::try_parse_from(words) {
        Ok(args) => Ok(Command::Check(Check {
            addr: args.addr,
            max_upload_failure: args.max_upload_failure.map(Duration::from_secs),
        })),
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => {
            Ok(Command::Help(e.render().to_string()))
        }
        Err(e) => Err(UsageError(e.render().to_string().trim_end().to_owned())),
    }
}

/// `xray health ARGS…` (the arguments after `health`): runs the check, prints one line, and
/// returns the exit code (0 healthy, 1 otherwise).
pub fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    match parse_args(args) {
        Ok(Command::Help(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        // Exit 1, not clap's 2: Docker reserves exit code 2 in health checks.
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
        Ok(Command::Check(check)) => match check_daemon(&check) {
            Ok(line) => {
                println!("healthy: {line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("unhealthy: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Asks the daemon; on success returns the line to print.
pub fn check_daemon(check: &Check) -> Result<String, Unhealthy> {
    let addr = resolve(&check.addr)?;
    let health = get(addr, HEALTH_PATH)?;
    if health.status != 200 {
        return Err(Unhealthy::Reported {
            addr,
            status: health.status,
            reason: first_line(&health.body),
        });
    }
    let Some(max) = check.max_upload_failure else {
        return Ok(format!("the daemon at {addr} is receiving segments"));
    };
    let stats = get(addr, STATS_PATH)?;
    let parsed: serde_json::Value =
        serde_json::from_slice(&stats.body).map_err(|e| Unhealthy::NotTheDaemon {
            addr,
            path: STATS_PATH,
            what: format!("HTTP {}, body not JSON: {e}", stats.status),
        })?;
    let since = parsed
        .get("upload_failing_since_unix")
        .and_then(serde_json::Value::as_u64);
    let failing_for = since.map(|s| unix_now().saturating_sub(s));
    match failing_for {
        Some(secs) if secs > max.as_secs() => Err(Unhealthy::UploadsFailing {
            addr,
            failing_for: secs,
            max: max.as_secs(),
        }),
        Some(secs) => Ok(format!(
            "the daemon at {addr} is receiving segments; uploads have been failing for {secs} s \
             (allowed: {} s)",
            max.as_secs()
        )),
        None => Ok(format!(
            "the daemon at {addr} is receiving segments and its uploads are not failing"
        )),
    }
}

fn resolve(addr: &str) -> Result<SocketAddr, Unhealthy> {
    let mut found = addr.to_socket_addrs().map_err(|e| Unhealthy::Resolve {
        addr: addr.to_owned(),
        reason: e.to_string(),
    })?;
    found.next().ok_or_else(|| Unhealthy::Resolve {
        addr: addr.to_owned(),
        reason: "no addresses".to_owned(),
    })
}

/// A response: status and body.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: Vec<u8>,
}

/// `GET path` over HTTP/1.0 (one request, the server closes the connection after the reply).
fn get(addr: SocketAddr, path: &'static str) -> Result<Reply, Unhealthy> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|source| Unhealthy::Connect { addr, source })?;
    let exchange = |source| Unhealthy::Exchange { addr, path, source };
    stream.set_read_timeout(Some(TIMEOUT)).map_err(exchange)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(exchange)?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: xray-health\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(exchange)?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE)
        .read_to_end(&mut raw)
        .map_err(exchange)?;
    parse_reply(&raw).map_err(|what| Unhealthy::NotTheDaemon { addr, path, what })
}

/// Splits a raw HTTP/1.x response into status and body.
fn parse_reply(raw: &[u8]) -> Result<Reply, String> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(format!(
            "no complete HTTP header in {} byte(s): {:?}",
            raw.len(),
            first_line(raw)
        ));
    };
    let head = String::from_utf8_lossy(&raw[..end]);
    let status_line = head.lines().next().unwrap_or_default();
    let mut words = status_line.split(' ');
    let status = match (words.next(), words.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/1.") => code.parse().ok(),
        _ => None,
    };
    let status = status.ok_or_else(|| format!("not an HTTP status line: {status_line:?}"))?;
    Ok(Reply {
        status,
        body: raw[end + 4..].to_vec(),
    })
}

fn first_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines().next().unwrap_or_default().trim().to_owned()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn no_arguments_check_liveness_at_the_default_address() {
        assert_eq!(
            parse_args(args(&[])),
            Ok(Command::Check(Check {
                addr: "127.0.0.1:2000".to_owned(),
                max_upload_failure: None,
            }))
        );
    }

    #[test]
    fn address_and_upload_option_in_either_order_and_both_spellings() {
        let expected = Ok(Command::Check(Check {
            addr: "localhost:3000".to_owned(),
            max_upload_failure: Some(Duration::from_secs(300)),
        }));
        assert_eq!(
            parse_args(args(&["localhost:3000", "--max-upload-failure", "300"])),
            expected
        );
        assert_eq!(
            parse_args(args(&["--max-upload-failure=300", "localhost:3000"])),
            expected
        );
    }

    #[test]
    fn usage_errors_name_the_argument() {
        let error = |words: &[&str]| match parse_args(args(words)) {
            Err(e) => e.to_string(),
            Ok(c) => panic!("{words:?} was accepted: {c:?}"),
        };
        assert!(error(&["-x"]).contains("'-x'"), "{}", error(&["-x"]));
        assert!(error(&["--max-upload-failure"]).contains("--max-upload-failure"));
        let bad = error(&["--max-upload-failure", "5m"]);
        assert!(
            bad.contains("5m") && bad.contains("--max-upload-failure"),
            "{bad}"
        );
        assert!(error(&["a:1", "b:2"]).contains("'b:2'"));
        assert!(error(&["a:1", "b:2"]).contains("Usage: xray health"));
        assert!(matches!(
            parse_args(args(&["a:1", "--help"])),
            Ok(Command::Help(text)) if text.contains("--max-upload-failure")
        ));
    }

    #[test]
    fn replies_are_split_into_status_and_body() {
        let Ok(reply) = parse_reply(b"HTTP/1.0 503 Service Unavailable\r\nx: y\r\n\r\nstopped\n")
        else {
            panic!("a valid reply was refused");
        };
        assert_eq!(first_line(&reply.body), "stopped");
        assert!(parse_reply(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(parse_reply(b"FTP 200 hi\r\n\r\n").is_err());
    }
}
