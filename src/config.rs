//! The resolved configuration: every setting the daemon runs with, checked, in one struct.
//!
//! In: the parsed command line ([`cli::Cli`]) and facts about the machine ([`Machine`]: memory
//! available). Out: a [`Config`], or a [`ConfigError`] naming the setting, the bad value and
//! the fix. [`resolve`] is a pure function: the caller gathers the inputs, so tests pass values
//! instead of changing the process.
//!
//! Precedence, as in the original: a flag given on the command line beats the config file,
//! which beats the built-in default.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use crate::logging::LogLevel;
use crate::sink::SinkSpec;

pub mod cli;

/// The default UDP and TCP address.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:2000";
/// The smallest buffer the original accepts, in MB.
pub const MIN_BUFFER_MB: u64 = 3;
/// Default shutdown deadline: inside ECS's default 30 s stop timeout.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(25);

/// Everything the daemon runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// UDP address to receive on.
    pub udp_addr: SocketAddr,
    /// The UDP address as the user wrote it (for messages).
    pub udp_addr_text: String,
    /// TCP address for the proxy and the stats/health paths.
    pub tcp_addr: SocketAddr,
    /// The TCP address as the user wrote it.
    pub tcp_addr_text: String,
    /// Memory budget for documents, in bytes.
    pub buffer_bytes: usize,
    /// Where the budget came from, in words.
    pub buffer_source: String,
    /// Where documents go.
    pub sinks: Vec<SinkSpec>,
    /// Upload calls at once.
    pub concurrency: usize,
    /// Largest document accepted, in bytes.
    pub max_document: usize,
    /// Region given by flag or file.
    pub region: Option<String>,
    /// X-Ray endpoint given by flag or file.
    pub endpoint: Option<String>,
    /// Role to assume for AWS calls.
    pub role_arn: Option<String>,
    /// ARN of the resource running the daemon.
    pub resource_arn: Option<String>,
    /// Skip instance metadata lookups.
    pub local_mode: bool,
    /// Log level.
    pub log_level: LogLevel,
    /// Log file, if not standard output.
    pub log_file: Option<PathBuf>,
    /// How long the shutdown drain may take.
    pub shutdown_timeout: Duration,
    // delivery (issue 5)
    /// When uploads are retried and given up.
    pub retry: crate::upload::retry::RetryPolicy,
    /// Time between telemetry records; `None`: no telemetry.
    pub telemetry_interval: Option<Duration>,
}

impl Config {
    /// True if any sink needs AWS (region, credentials).
    pub fn needs_aws(&self) -> bool {
        self.sinks.contains(&SinkSpec::Xray)
    }
}

/// Facts about the machine that defaults depend on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Machine {
    /// Total RAM in bytes.
    pub total_memory: Option<u64>,
    /// The cgroup (container) memory limit in bytes, if one is set.
    pub cgroup_limit: Option<u64>,
}

impl Machine {
    /// Reads the facts from this machine (Linux: /proc and /sys/fs/cgroup).
    pub fn detect() -> Self {
        Machine {
            total_memory: read_meminfo_total(),
            cgroup_limit: read_cgroup_limit(),
        }
    }
}

/// A setting that cannot be used. Each message names the setting and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An address that does not parse or resolve.
    #[error(
        "invalid address {value:?} for {setting}: {why}. Write HOST:PORT, for example 127.0.0.1:2000 or 0.0.0.0:2000"
    )]
    Address {
        /// The flag or key.
        setting: &'static str,
        /// The value given.
        value: String,
        /// What is wrong.
        why: String,
    },
    /// A value out of range or of the wrong form.
    #[error("invalid value {value:?} for {setting}: {why}")]
    Value {
        /// The flag or key.
        setting: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        why: String,
    },
    /// A feature not available in this version.
    #[error("{setting} is not supported by this version yet: {why}")]
    Unsupported {
        /// The flag or key.
        setting: &'static str,
        /// What to do instead.
        why: String,
    },
}

/// Resolves the command line against the machine's facts into a [`Config`].
pub fn resolve(cli: &cli::Cli, machine: Machine) -> Result<Config, ConfigError> {
    if let Some(path) = &cli.config {
        return Err(ConfigError::Unsupported {
            setting: "-c/--config",
            why: format!(
                "{} cannot be read yet; pass the settings as flags",
                path.display()
            ),
        });
    }
    if cli.proxy_address.is_some() {
        return Err(ConfigError::Unsupported {
            setting: "-p/--proxy-address",
            why: "calls to AWS cannot go through a proxy yet; remove the flag".into(),
        });
    }
    let udp_text = cli.bind.clone().unwrap_or_else(|| DEFAULT_ADDRESS.into());
    let tcp_text = cli
        .bind_tcp
        .clone()
        .unwrap_or_else(|| DEFAULT_ADDRESS.into());
    let udp_addr = parse_listen_addr(&udp_text, "-b/--bind")?;
    let tcp_addr = parse_listen_addr(&tcp_text, "-t/--bind-tcp")?;
    let (buffer_bytes, buffer_source) = buffer_budget(cli.buffer_memory, machine)?;
    let sinks = if cli.sink.is_empty() {
        vec![SinkSpec::Xray]
    } else {
        let mut s = cli.sink.clone();
        s.dedup();
        s
    };
    let concurrency = match cli.concurrency {
        Some(0) => {
            return Err(ConfigError::Value {
                setting: "--concurrency",
                value: "0".into(),
                why: "at least 1 upload must be allowed".into(),
            });
        }
        Some(n) => n,
        None => crate::upload::DEFAULT_CONCURRENCY,
    };
    let max_document = cli
        .max_segment_size
        .unwrap_or(crate::segment::DEFAULT_MAX_DOCUMENT_BYTES);
    if !(64..=crate::segment::DEFAULT_MAX_DOCUMENT_BYTES).contains(&max_document) {
        return Err(ConfigError::Value {
            setting: "--max-segment-size",
            value: max_document.to_string(),
            why: format!(
                "must be from 64 to {} bytes",
                crate::segment::DEFAULT_MAX_DOCUMENT_BYTES
            ),
        });
    }
    let log_level = match cli.log_level.as_deref() {
        None => LogLevel::default(),
        Some(word) => word.parse().map_err(|why| ConfigError::Value {
            setting: "-l/--log-level",
            value: word.into(),
            why,
        })?,
    };
    let shutdown_timeout = match cli.shutdown_timeout {
        None => DEFAULT_SHUTDOWN_TIMEOUT,
        Some(s) if s.is_finite() && (0.0..86_400.0).contains(&s) => Duration::from_secs_f64(s),
        Some(s) => {
            return Err(ConfigError::Value {
                setting: "--shutdown-timeout",
                value: s.to_string(),
                why: "must be a number of seconds from 0 to 86400".into(),
            });
        }
    };
    Ok(Config {
        udp_addr,
        udp_addr_text: udp_text,
        tcp_addr,
        tcp_addr_text: tcp_text,
        buffer_bytes,
        buffer_source,
        sinks,
        concurrency,
        max_document,
        region: cli.region.clone().filter(|r| !r.is_empty()),
        endpoint: cli.endpoint.clone().filter(|e| !e.is_empty()),
        role_arn: cli.role_arn.clone().filter(|r| !r.is_empty()),
        resource_arn: cli.resource_arn.clone(),
        local_mode: cli.local_mode.unwrap_or(false),
        log_level,
        log_file: cli.log_file.clone(),
        shutdown_timeout,
        retry: delivery::retry_policy(cli)?,
        telemetry_interval: delivery::telemetry_interval(cli)?,
    })
}

// delivery (issue 5)
mod delivery {
    use std::time::Duration;

    use super::{ConfigError, cli::Cli};
    use crate::upload::retry::RetryPolicy;

    fn seconds(
        value: Option<f64>,
        setting: &'static str,
        min: Duration,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match value {
            None => Ok(default),
            Some(s) if s.is_finite() && s >= min.as_secs_f64() && s <= 86_400.0 => {
                Ok(Duration::from_secs_f64(s))
            }
            Some(s) => Err(ConfigError::Value {
                setting,
                value: s.to_string(),
                why: format!(
                    "must be a number of seconds from {} to 86400",
                    min.as_secs_f64()
                ),
            }),
        }
    }

    pub(super) fn retry_policy(cli: &Cli) -> Result<RetryPolicy, ConfigError> {
        let mut policy = RetryPolicy::default();
        if let Some(n) = cli.retry_max_attempts {
            if n == 0 {
                return Err(ConfigError::Value {
                    setting: "--retry-max-attempts",
                    value: n.to_string(),
                    why: "at least 1 attempt is needed (1 means no retries)".into(),
                });
            }
            policy.max_attempts = n;
        }
        policy.max_age = seconds(
            cli.retry_max_age,
            "--retry-max-age",
            Duration::ZERO,
            policy.max_age,
        )?;
        Ok(policy)
    }

    pub(super) fn telemetry_interval(cli: &Cli) -> Result<Option<Duration>, ConfigError> {
        let interval = seconds(
            cli.telemetry_interval,
            "--telemetry-interval",
            crate::telemetry::MIN_INTERVAL,
            crate::telemetry::DEFAULT_INTERVAL,
        )?;
        Ok((!cli.no_telemetry).then_some(interval))
    }
}

/// Parses a listen address the way the original accepts them: `HOST:PORT`, `[V6]:PORT`, or
/// `:PORT` (every address, IPv4 and IPv6). `localhost` means 127.0.0.1, never only `::1`, so
/// SDKs sending to 127.0.0.1 reach it; another host name is resolved once, IPv4 first.
pub fn parse_listen_addr(text: &str, setting: &'static str) -> Result<SocketAddr, ConfigError> {
    let err = |why: &str| ConfigError::Address {
        setting,
        value: text.into(),
        why: why.into(),
    };
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(|| err("no port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| err("the port must be a number from 0 to 65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port));
    }
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| err(&format!("the host name does not resolve ({e})")))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| err("the host name resolves to no address"))
}

/// The memory budget in bytes and where it came from.
fn buffer_budget(flag_mb: Option<i64>, machine: Machine) -> Result<(usize, String), ConfigError> {
    const MB: u64 = 1024 * 1024;
    if let Some(mb) = flag_mb.filter(|mb| *mb > 0) {
        let mb = mb as u64;
        if mb < MIN_BUFFER_MB {
            return Err(ConfigError::Value {
                setting: "-m/--buffer-memory",
                value: mb.to_string(),
                why: format!(
                    "the buffer needs at least {MIN_BUFFER_MB} MB; give -m {MIN_BUFFER_MB} or more"
                ),
            });
        }
        let bytes = mb.saturating_mul(MB);
        return Ok((
            usize::try_from(bytes).unwrap_or(usize::MAX),
            format!("{mb} MB from -m/--buffer-memory"),
        ));
    }
    let (available, what) = match (machine.cgroup_limit, machine.total_memory) {
        (Some(c), Some(t)) if c < t => (c, "the container's memory limit"),
        (Some(c), None) => (c, "the container's memory limit"),
        (_, Some(t)) => (t, "the host's RAM"),
        (None, None) => (0, "unknown memory"),
    };
    let mb = (available / 100 / MB).max(MIN_BUFFER_MB);
    Ok((
        usize::try_from(mb * MB).unwrap_or(usize::MAX),
        format!("{mb} MB: 1% of {what}, at least {MIN_BUFFER_MB} MB"),
    ))
}

fn read_meminfo_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo_total(&text)
}

fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The memory limit of this process's cgroup (v2, else v1), if one is set.
fn read_cgroup_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok();
    // cgroup v2: "0::/path"; the limit may be set on this group or any parent.
    if let Some(path) = own
        .as_deref()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("0::")))
    {
        let mut dir = PathBuf::from("/sys/fs/cgroup").join(path.trim_start_matches('/'));
        let mut lowest: Option<u64> = None;
        loop {
            if let Ok(v) = std::fs::read_to_string(dir.join("memory.max"))
                && let Ok(n) = v.trim().parse::<u64>()
            {
                lowest = Some(lowest.map_or(n, |l| l.min(n)));
            }
            if dir == std::path::Path::new("/sys/fs/cgroup") || !dir.pop() {
                break;
            }
        }
        if lowest.is_some() {
            return lowest;
        }
    }
    // cgroup v1: an unlimited group reports a huge number.
    let v1 = std::fs::read_to_string("/sys/fs/cgroup/memory/memory.limit_in_bytes").ok()?;
    v1.trim().parse::<u64>().ok().filter(|n| *n < (1 << 60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cli(args: &[&str]) -> cli::Cli {
        let mut all = vec!["xray"];
        all.extend_from_slice(args);
        match cli::Cli::try_parse_from(all) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    const GIB: u64 = 1 << 30;

    #[test]
    fn listen_addresses_like_the_original() {
        let p = |s| {
            parse_listen_addr(s, "-b")
                .map(|a| a.to_string())
                .map_err(|e| e.to_string())
        };
        assert_eq!(p("127.0.0.1:2000"), Ok("127.0.0.1:2000".into()));
        assert_eq!(p("localhost:2001"), Ok("127.0.0.1:2001".into()));
        assert_eq!(p(":2000"), Ok("[::]:2000".into()));
        assert_eq!(p("[::]:2000"), Ok("[::]:2000".into()));
        assert_eq!(p("0.0.0.0:2000"), Ok("0.0.0.0:2000".into()));
        assert!(p("127.0.0.1").is_err_and(|e| e.contains("-b") && e.contains("HOST:PORT")));
        assert!(p("127.0.0.1:99999").is_err());
    }

    #[test]
    fn buffer_is_one_percent_of_the_smaller_of_cgroup_and_ram() {
        let m = |c, t| Machine {
            cgroup_limit: c,
            total_memory: t,
        };
        let b = |c, t| {
            buffer_budget(None, m(c, t))
                .map(|(b, _)| b as u64 / (1 << 20))
                .ok()
        };
        assert_eq!(b(None, Some(24 * GIB)), Some(245));
        assert_eq!(b(Some(2 * GIB), Some(24 * GIB)), Some(20));
        assert_eq!(
            b(Some(256 << 20), Some(24 * GIB)),
            Some(3),
            "a 256 MB sidecar still starts"
        );
        assert_eq!(b(None, None), Some(3));
        assert!(buffer_budget(Some(2), m(None, None)).is_err());
        assert_eq!(
            buffer_budget(Some(3), m(None, None)).map(|x| x.0).ok(),
            Some(3 << 20)
        );
        assert_eq!(
            buffer_budget(Some(0), m(None, Some(1000 * (1 << 20))))
                .map(|x| x.0)
                .ok(),
            Some(10 << 20)
        );
    }

    #[test]
    fn defaults_and_flags_resolve() {
        let c = resolve(&cli(&[]), Machine::default()).map_err(|e| e.to_string());
        let c = match c {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.udp_addr.to_string(), "127.0.0.1:2000");
        assert_eq!(c.sinks, vec![SinkSpec::Xray]);
        assert_eq!(c.concurrency, 8);
        let c = resolve(
            &cli(&[
                "-b",
                "0.0.0.0:3000",
                "--sink",
                "stdout",
                "--sink",
                "file:/x",
                "-o",
            ]),
            Machine::default(),
        );
        assert!(c.is_ok_and(|c| c.udp_addr.port() == 3000
            && c.sinks.len() == 2
            && c.local_mode
            && !c.needs_aws()));
    }

    #[test]
    fn meminfo_parses() {
        assert_eq!(
            parse_meminfo_total("MemTotal:       1024 kB\nMemFree: 1 kB\n"),
            Some(1024 * 1024)
        );
    }
}
