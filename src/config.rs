//! The resolved configuration: every setting the daemon runs with, checked, in one struct.
//!
//! In: the parsed command line ([`cli::Cli`], after [`args::normalize`]), the config file if
//! one was found ([`file::Loaded`]) and facts about the machine ([`Machine`]: memory
//! available). Out: a [`Config`], or a [`ConfigError`] naming the setting (flag, or key, file
//! and line), the bad value and the fix. [`resolve`] is a pure function: the caller gathers the
//! inputs, so tests pass values instead of changing the process.
//!
//! Precedence, as in the original: a flag given on the command line beats the config file,
//! which beats the built-in default. Only one file is used: a `-c` file takes the place of the
//! default-location file (`/etc/amazon/xray/cfg.yaml`, else `./cfg.yaml`), it is not layered
//! over it. In the file, an empty string or a zero number means "the default", as in the
//! original.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use crate::logging::{LogLevel, LogSettings, Rotation};
use crate::sink::SinkSpec;

pub mod args;
pub mod cli;
pub mod defaults;
pub mod file;

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
    /// Upload calls at once (`--concurrency`, `Concurrency`). Default 8.
    pub concurrency: usize,
    /// Largest document accepted, in bytes.
    pub max_document: usize,
    /// Region given by flag or file.
    pub region: Option<String>,
    /// X-Ray endpoint given by flag or file (an http:// or https:// URL).
    pub endpoint: Option<String>,
    /// Role to assume for AWS calls.
    pub role_arn: Option<String>,
    /// ARN of the resource running the daemon.
    pub resource_arn: Option<String>,
    /// Skip instance metadata lookups.
    pub local_mode: bool,
    /// Where, how and how much to log.
    pub log: LogSettings,
    /// How long the shutdown drain may take.
    pub shutdown_timeout: Duration,
    /// Outbound proxy for calls to AWS (`-p`, `ProxyAddress`): an http:// or https:// URL.
    pub proxy_address: Option<String>,
    /// Skip TLS certificate checks on calls to X-Ray (`NoVerifySSL`). Default false.
    pub no_verify_ssl: bool,
    /// The config file used, if any.
    pub config_file: Option<PathBuf>,
    /// Warnings to log once logging is up (ignored words and keys, risky settings).
    pub notes: Vec<String>,
    /// Forward only the sampling calls through the TCP proxy (`--proxy-sampling-only`).
    pub proxy_sampling_only: bool,
    /// Time a TCP proxy client has to send headers, and again a body (`--proxy-client-timeout`).
    pub proxy_client_timeout: Duration,
    /// Time the TCP proxy's call to X-Ray may take (`--proxy-upstream-timeout`).
    pub proxy_upstream_timeout: Duration,
    // delivery (issue 5)
    /// When uploads are retried and given up.
    pub retry: crate::config::defaults::RetryPolicy,
    /// Time between telemetry records; `None`: no telemetry.
    pub telemetry_interval: Option<Duration>,
    /// A TCP address of its own for the stats and health paths (`--stats-address`), if asked.
    pub stats_addr: Option<SocketAddr>,
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
        /// The flag, or the key and file.
        setting: String,
        /// The value given.
        value: String,
        /// What is wrong.
        why: String,
    },
    /// A value out of range or of the wrong form.
    #[error("invalid value {value:?} for {setting}: {why}")]
    Value {
        /// The flag, or the key and file.
        setting: String,
        /// The value given.
        value: String,
        /// What is allowed.
        why: String,
    },
    /// The config file cannot be read or has a bad key or value.
    #[error(transparent)]
    File(#[from] file::FileError),
}

/// A value with the name of where it came from, for messages.
struct Given<T> {
    value: T,
    setting: String,
}

/// The flag's value if given, else the file's: with where it came from.
fn pick<T: Clone>(
    flag: Option<&T>,
    flag_name: &str,
    file: Option<(&file::Loaded, Option<&T>)>,
    key: &str,
) -> Option<Given<T>> {
    if let Some(v) = flag {
        return Some(Given {
            value: v.clone(),
            setting: flag_name.to_owned(),
        });
    }
    let (loaded, v) = file?;
    v.map(|v| Given {
        value: v.clone(),
        setting: loaded.describe(key),
    })
}

/// Pairs a file value with its file, for [`pick`].
fn with_file<'a, T>(
    file: Option<&'a file::Loaded>,
    value: Option<&'a T>,
) -> Option<(&'a file::Loaded, Option<&'a T>)> {
    file.map(|l| (l, value))
}

/// Resolves the command line and the config file against the machine's facts into a
/// [`Config`]. `file` is the one file in use (see the module docs), already checked.
pub fn resolve(
    cli: &cli::Cli,
    file: Option<&file::Loaded>,
    machine: Machine,
) -> Result<Config, ConfigError> {
    let f = file.map(|l| &l.config);
    let value_err = |g: &Given<String>, why: &str| ConfigError::Value {
        setting: g.setting.clone(),
        value: g.value.clone(),
        why: why.into(),
    };

    let address = |flag: Option<&String>, flag_name: &str, file_v, key| {
        let g = pick(flag, flag_name, with_file(file, file_v), key).unwrap_or(Given {
            value: DEFAULT_ADDRESS.to_owned(),
            setting: "the default".into(),
        });
        let addr = parse_listen_addr(&g.value, &g.setting)?;
        Ok::<_, ConfigError>((addr, g.value))
    };
    let (udp_addr, udp_text) = address(
        cli.bind.as_ref(),
        "-b/--bind",
        f.and_then(|c| c.udp_address.as_ref()),
        "Socket.UDPAddress",
    )?;
    let (tcp_addr, tcp_text) = address(
        cli.bind_tcp.as_ref(),
        "-t/--bind-tcp",
        f.and_then(|c| c.tcp_address.as_ref()),
        "Socket.TCPAddress",
    )?;

    let buffer = pick(
        cli.buffer_memory.as_ref(),
        "-m/--buffer-memory",
        with_file(file, f.and_then(|c| c.total_buffer_size_mb.as_ref())),
        "TotalBufferSizeMB",
    );
    let (buffer_bytes, buffer_source) = buffer_budget(buffer, machine)?;

    let sinks = if cli.sink.is_empty() {
        vec![SinkSpec::Xray]
    } else {
        // Each sink once, in the order first given: a repeated one would get every document twice.
        let mut s: Vec<SinkSpec> = Vec::new();
        for spec in &cli.sink {
            if !s.contains(spec) {
                s.push(spec.clone());
            }
        }
        s
    };
    if sinks.len() > defaults::MAX_SINKS {
        return Err(ConfigError::Value {
            setting: "--sink".into(),
            value: format!("{} sinks", sinks.len()),
            why: format!(
                "at most {} different sinks can be given",
                defaults::MAX_SINKS
            ),
        });
    }

    let concurrency = match (cli.concurrency, file.zip(f.and_then(|c| c.concurrency))) {
        (Some(0), _) => {
            return Err(ConfigError::Value {
                setting: "--concurrency".into(),
                value: "0".into(),
                why: "at least 1 upload must be allowed".into(),
            });
        }
        (Some(n), _) => n,
        (None, Some((l, n))) => {
            usize::try_from(n)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ConfigError::Value {
                    setting: l.describe("Concurrency"),
                    value: n.to_string(),
                    why: "it must be at least 1 (or 0 for the default, 8)".into(),
                })?
        }
        (None, None) => defaults::DEFAULT_CONCURRENCY,
    };
    if concurrency > defaults::MAX_CONCURRENCY {
        return Err(ConfigError::Value {
            setting: "--concurrency / Concurrency".into(),
            value: concurrency.to_string(),
            why: format!("at most {} uploads at once", defaults::MAX_CONCURRENCY),
        });
    }

    let max_document = cli
        .max_segment_size
        .unwrap_or(crate::segment::DEFAULT_MAX_DOCUMENT_BYTES);
    if !(64..=crate::segment::DEFAULT_MAX_DOCUMENT_BYTES).contains(&max_document) {
        return Err(ConfigError::Value {
            setting: "--max-segment-size".into(),
            value: max_document.to_string(),
            why: format!(
                "must be from 64 to {} bytes",
                crate::segment::DEFAULT_MAX_DOCUMENT_BYTES
            ),
        });
    }

    let level = match pick(
        cli.log_level.as_ref(),
        "-l/--log-level",
        with_file(file, f.and_then(|c| c.log_level.as_ref())),
        "Logging.LogLevel",
    ) {
        None => LogLevel::default(),
        Some(g) => g.value.parse().map_err(|why: String| value_err(&g, &why))?,
    };
    let log_file = pick(
        cli.log_file
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .as_ref(),
        "-f/--log-file",
        with_file(file, f.and_then(|c| c.log_path.as_ref())),
        "Logging.LogPath",
    )
    .map(|g| g.value)
    .filter(|p| !p.is_empty())
    .map(PathBuf::from);
    let rotation = match f.and_then(|c| c.log_rotation) {
        Some(false) => None,
        _ => Some(Rotation {
            max_bytes: cli
                .log_rotate_bytes
                .unwrap_or(crate::logging::DEFAULT_ROTATE_BYTES),
            ..Rotation::default()
        }),
    };
    let log = LogSettings {
        level,
        format: cli.log_format.unwrap_or_default(),
        file: log_file,
        rotation,
    };

    let shutdown_timeout = match cli.shutdown_timeout {
        None => DEFAULT_SHUTDOWN_TIMEOUT,
        Some(s) if s.is_finite() && (0.0..86_400.0).contains(&s) => Duration::from_secs_f64(s),
        Some(s) => {
            return Err(ConfigError::Value {
                setting: "--shutdown-timeout".into(),
                value: s.to_string(),
                why: "must be a number of seconds from 0 to 86400".into(),
            });
        }
    };

    let text = |flag: Option<&String>, flag_name: &str, file_v: Option<&String>, key: &str| {
        pick(flag, flag_name, with_file(file, file_v), key).filter(|g| !g.value.is_empty())
    };
    let endpoint = text(
        cli.endpoint.as_ref(),
        "--endpoint",
        f.and_then(|c| c.endpoint.as_ref()),
        "Endpoint",
    );
    if let Some(g) = &endpoint {
        let uri = check_url(&g.value).map_err(|why| ConfigError::Value {
            setting: g.setting.clone(),
            value: redact_userinfo(&g.value),
            why,
        })?;
        // The endpoint is logged and becomes the signed Host: it must carry no credentials.
        if has_userinfo(&uri) {
            return Err(ConfigError::Value {
                setting: g.setting.clone(),
                value: redact_userinfo(&g.value),
                why: "an X-Ray endpoint takes no user name or password; remove the part before @"
                    .into(),
            });
        }
    }
    let proxy_address = text(
        cli.proxy_address.as_ref(),
        "-p/--proxy-address",
        f.and_then(|c| c.proxy_address.as_ref()),
        "ProxyAddress",
    );
    if let Some(g) = &proxy_address {
        // A proxy URL may hold a password: never echo it in the message.
        check_url(&g.value).map_err(|why| ConfigError::Value {
            setting: g.setting.clone(),
            value: redact_userinfo(&g.value),
            why,
        })?;
    }
    let region = text(
        cli.region.as_ref(),
        "-n/--region",
        f.and_then(|c| c.region.as_ref()),
        "Region",
    );
    let role_arn = text(
        cli.role_arn.as_ref(),
        "-r/--role-arn",
        f.and_then(|c| c.role_arn.as_ref()),
        "RoleARN",
    );
    let resource_arn = text(
        cli.resource_arn.as_ref(),
        "-a/--resource-arn",
        f.and_then(|c| c.resource_arn.as_ref()),
        "ResourceARN",
    );
    let local_mode = cli
        .local_mode
        .or(f.and_then(|c| c.local_mode))
        .unwrap_or(false);
    let no_verify_ssl = cli.no_verify_ssl || f.and_then(|c| c.no_verify_ssl).unwrap_or(false);

    let mut notes = file.map(|l| l.notes.clone()).unwrap_or_default();
    if no_verify_ssl {
        notes.push(format!(
            "NoVerifySSL is true in {}: TLS certificates of X-Ray endpoints are NOT checked, so \
             anyone on the network path can read and change what is sent. Set NoVerifySSL: false \
             unless this is a test setup",
            file.map(|l| l.path.display().to_string())
                .unwrap_or_default()
        ));
    }
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
        region: region.map(|g| g.value),
        endpoint: endpoint.map(|g| g.value),
        role_arn: role_arn.map(|g| g.value),
        resource_arn: resource_arn.map(|g| g.value),
        local_mode,
        log,
        shutdown_timeout,
        proxy_address: proxy_address.map(|g| g.value),
        no_verify_ssl,
        config_file: file.map(|l| l.path.clone()),
        notes,
        proxy_sampling_only: cli.proxy_sampling_only,
        proxy_client_timeout: proxy_timeout(
            cli.proxy_client_timeout,
            defaults::PROXY_CLIENT_TIMEOUT,
            "--proxy-client-timeout",
        )?,
        proxy_upstream_timeout: proxy_timeout(
            cli.proxy_upstream_timeout,
            defaults::PROXY_UPSTREAM_TIMEOUT,
            "--proxy-upstream-timeout",
        )?,
        retry: delivery::retry_policy(cli)?,
        telemetry_interval: delivery::telemetry_interval(cli)?,
        stats_addr: cli
            .stats_address
            .as_deref()
            .map(|a| parse_listen_addr(a, "--stats-address"))
            .transpose()?,
    })
}

/// Checks that `text` is an `http://` or `https://` URL with a host, and returns it parsed.
/// A `user:password@` part is allowed here; the caller decides whether it may have one.
fn check_url(text: &str) -> Result<http::Uri, String> {
    const FORM: &str =
        "write it as http://HOST:PORT or https://HOST, for example http://127.0.0.1:3128";
    // The parse error names what is wrong (a bad port, a bad character), never the text itself.
    let uri: http::Uri = text
        .parse()
        .map_err(|e| format!("it is not a URL ({e}); {FORM}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!(
            "the URL must start with http:// or https://; {FORM}"
        ));
    }
    let Some(authority) = uri.authority().filter(|a| !a.host().is_empty()) else {
        return Err(format!("the URL has no host; {FORM}"));
    };
    // `http::Uri` leaves the port unchecked (`host:port` parses, with no port): whatever
    // follows the host must be a port number.
    let host_and_port = authority
        .as_str()
        .rsplit_once('@')
        .map_or(authority.as_str(), |(_, h)| h);
    if host_and_port != authority.host() && authority.port_u16().is_none() {
        return Err(format!(
            "the port after the host must be a number from 0 to 65535; {FORM}"
        ));
    }
    Ok(uri)
}

/// Whether a parsed URL carries a user name or password (`user:password@host`).
fn has_userinfo(uri: &http::Uri) -> bool {
    uri.authority().is_some_and(|a| a.as_str().contains('@'))
}

/// `text` with a `user:password@` part before the host replaced by `***@`, for messages. Works
/// on text that is not a valid URL too, so a message about a bad URL never shows a password.
fn redact_userinfo(text: &str) -> String {
    let start = text.find("://").map_or(0, |i| i + 3);
    let end = text[start..]
        .find(['/', '?', '#'])
        .map_or(text.len(), |i| start + i);
    match text[start..end].rfind('@') {
        Some(at) => format!("{}***{}", &text[..start], &text[start + at..]),
        None => text.to_owned(),
    }
}

/// A proxy timeout flag in seconds (0.05 to 3600), or its default.
fn proxy_timeout(
    flag: Option<f64>,
    default: Duration,
    setting: &'static str,
) -> Result<Duration, ConfigError> {
    match flag {
        None => Ok(default),
        Some(s) if s.is_finite() && (0.05..=3600.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(ConfigError::Value {
            setting: setting.into(),
            value: s.to_string(),
            why: "must be a number of seconds from 0.05 to 3600".into(),
        }),
    }
}

// delivery (issue 5)
mod delivery {
    use std::time::Duration;

    use super::{ConfigError, cli::Cli};
    use crate::config::defaults::RetryPolicy;

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
                setting: setting.into(),
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
                    setting: "--retry-max-attempts".into(),
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
            super::defaults::MIN_TELEMETRY_INTERVAL,
            super::defaults::DEFAULT_TELEMETRY_INTERVAL,
        )?;
        Ok((!cli.no_telemetry).then_some(interval))
    }
}

/// Parses a listen address the way the original accepts them: `HOST:PORT`, `[V6]:PORT`, or
/// `:PORT` (every address, IPv4 and IPv6). `localhost` means 127.0.0.1, never only `::1`, so
/// SDKs sending to 127.0.0.1 reach it; another host name is resolved once, IPv4 first.
pub fn parse_listen_addr(text: &str, setting: &str) -> Result<SocketAddr, ConfigError> {
    let err = |why: &str| ConfigError::Address {
        setting: setting.to_owned(),
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
/// `given`: the MB from `-m` or `TotalBufferSizeMB`; zero or negative means automatic.
fn buffer_budget(
    given: Option<Given<i64>>,
    machine: Machine,
) -> Result<(usize, String), ConfigError> {
    const MB: u64 = 1024 * 1024;
    if let Some(g) = given.filter(|g| g.value > 0) {
        let mb = g.value as u64;
        if mb < MIN_BUFFER_MB {
            return Err(ConfigError::Value {
                setting: g.setting,
                value: mb.to_string(),
                why: format!(
                    "the buffer needs at least {MIN_BUFFER_MB} MB; give {MIN_BUFFER_MB} or more (or 0 for 1% of the memory)"
                ),
            });
        }
        let bytes = mb.saturating_mul(MB);
        return Ok((
            usize::try_from(bytes).unwrap_or(usize::MAX),
            format!("from {}", g.setting),
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
        format!("1% of {what}, at least {MIN_BUFFER_MB} MB"),
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

    fn cli(words: &[&str]) -> cli::Cli {
        let args = match args::normalize(words.iter().map(std::ffi::OsString::from)) {
            Ok(args::Invocation::Daemon { args, .. }) => args,
            other => panic!("{other:?}"),
        };
        match cli::Cli::try_parse_from(args) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn given(mb: i64) -> Option<Given<i64>> {
        Some(Given {
            value: mb,
            setting: "-m".into(),
        })
    }

    fn loaded(text: &str) -> file::Loaded {
        match file::parse(text, std::path::Path::new("/x/cfg.yaml"), true) {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        }
    }

    fn ok(c: Result<Config, ConfigError>) -> Config {
        match c {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn flag_beats_file_beats_default() {
        let f = loaded(
            "Version: 2\nRegion: eu-west-1\nTotalBufferSizeMB: 12\nConcurrency: 3\n\
             Socket:\n  UDPAddress: 127.0.0.1:3000\nLogging:\n  LogLevel: debug\n  LogRotation: false\n\
             LocalMode: true\nNoVerifySSL: true\nProxyAddress: http://p:3128\nEndpoint: http://e:1\n",
        );
        let c = ok(resolve(&cli(&[]), Some(&f), Machine::default()));
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.buffer_bytes, 12 << 20);
        assert!(
            c.buffer_source
                .contains("TotalBufferSizeMB in /x/cfg.yaml (line 3)"),
            "{}",
            c.buffer_source
        );
        assert_eq!(c.concurrency, 3);
        assert_eq!(c.udp_addr.port(), 3000);
        assert_eq!(c.tcp_addr.port(), 2000);
        assert_eq!(c.log.level, LogLevel::Debug);
        assert_eq!(c.log.rotation, None);
        assert!(c.local_mode && c.no_verify_ssl);
        assert!(c.notes.iter().any(|n| n.contains("NoVerifySSL")));
        assert_eq!(c.proxy_address.as_deref(), Some("http://p:3128"));
        assert_eq!(c.endpoint.as_deref(), Some("http://e:1"));
        let c = ok(resolve(
            &cli(&[
                "-n",
                "us-west-2",
                "-m",
                "0",
                "-b",
                ":4000",
                "-l",
                "warn",
                "-o=false",
                "--concurrency",
                "9",
                "-p",
                "https://q:1",
            ]),
            Some(&f),
            Machine::default(),
        ));
        assert_eq!(c.region.as_deref(), Some("us-west-2"));
        assert_eq!(c.buffer_bytes, 3 << 20, "an explicit -m 0 means automatic");
        assert_eq!(c.udp_addr.port(), 4000);
        assert_eq!(c.log.level, LogLevel::Warn);
        assert!(!c.local_mode);
        assert_eq!(c.concurrency, 9);
        assert_eq!(c.proxy_address.as_deref(), Some("https://q:1"));
    }

    #[test]
    fn file_values_are_checked_with_key_and_file_in_the_message() {
        let err = |text: &str| match resolve(&cli(&[]), Some(&loaded(text)), Machine::default()) {
            Ok(c) => panic!("accepted {c:?}"),
            Err(e) => e.to_string(),
        };
        let e = err("Version: 2\nTotalBufferSizeMB: 2\n");
        assert!(
            e.contains("TotalBufferSizeMB in /x/cfg.yaml (line 2)") && e.contains("at least 3"),
            "{e}"
        );
        let e = err("Version: 2\nSocket:\n  UDPAddress: nowhere\n");
        assert!(
            e.contains("Socket.UDPAddress") && e.contains("HOST:PORT"),
            "{e}"
        );
        let e = err("Version: 2\nConcurrency: -1\n");
        assert!(e.contains("Concurrency") && e.contains("at least 1"), "{e}");
        let e = err("Version: 2\nLogging:\n  LogLevel: verbose\n");
        assert!(
            e.contains("Logging.LogLevel") && e.contains("dev, debug"),
            "{e}"
        );
        let e = err("Version: 2\nProxyAddress: proxy:3128\n");
        assert!(e.contains("ProxyAddress") && e.contains("http://"), "{e}");
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("http://127.0.0.1:4567").is_ok());
        assert!(check_url("https://xray.us-east-1.amazonaws.com/").is_ok());
        assert!(check_url("http://user:pw@proxy:3128").is_ok_and(|u| has_userinfo(&u)));
        assert!(check_url("http://[::1]:3128").is_ok_and(|u| !has_userinfo(&u)));
        assert!(check_url("127.0.0.1:3128").is_err());
        assert!(check_url("proxy:3128").is_err());
        assert!(check_url("ftp://proxy:3128").is_err());
        assert!(check_url("http://").is_err());
        assert!(check_url("http://host:port").is_err());
        assert!(check_url("http://host:99999").is_err());
        assert!(check_url("http://host:").is_err());
        assert!(check_url("http://u:pw@:1").is_err());
        assert_eq!(
            redact_userinfo("http://u:secret@p:3128/x"),
            "http://***@p:3128/x"
        );
        assert_eq!(redact_userinfo("u:secret@p:3128"), "***@p:3128");
        assert_eq!(redact_userinfo("http://p:3128/a@b"), "http://p:3128/a@b");
        assert_eq!(redact_userinfo("http://p:3128"), "http://p:3128");
        let e = resolve(
            &cli(&["--endpoint", "http://u:pw@127.0.0.1:1"]),
            None,
            Machine::default(),
        );
        assert!(e.is_err_and(
            |e| !e.to_string().contains("pw") && e.to_string().contains("no user name")
        ));
        let e = resolve(
            &cli(&["-p", "http://u:secret@:1"]),
            None,
            Machine::default(),
        );
        assert!(e.is_err_and(|e| !e.to_string().contains("secret")));
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
            buffer_budget(None::<Given<i64>>, m(c, t))
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
        assert!(buffer_budget(given(2), m(None, None)).is_err());
        assert_eq!(
            buffer_budget(given(3), m(None, None)).map(|x| x.0).ok(),
            Some(3 << 20)
        );
        assert_eq!(
            buffer_budget(given(0), m(None, Some(1000 * (1 << 20))))
                .map(|x| x.0)
                .ok(),
            Some(10 << 20)
        );
    }

    #[test]
    fn each_sink_once_in_order_and_bounded_counts() {
        let c = resolve(
            &cli(&["--sink", "xray", "--sink", "stdout", "--sink", "xray"]),
            None,
            Machine::default(),
        );
        assert!(c.is_ok_and(|c| c.sinks == vec![SinkSpec::Xray, SinkSpec::Stdout]));
        let many: Vec<String> = (0..40).map(|i| format!("file:/tmp/{i}")).collect();
        let mut words = vec![];
        for m in &many {
            words.extend(["--sink", m.as_str()]);
        }
        assert!(resolve(&cli(&words), None, Machine::default()).is_err());
        let c = resolve(&cli(&["--concurrency", "100000"]), None, Machine::default());
        assert!(c.is_err_and(|e| e.to_string().contains("at most 1024")));
    }

    #[test]
    fn defaults_and_flags_resolve() {
        let c = resolve(&cli(&[]), None, Machine::default()).map_err(|e| e.to_string());
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
            None,
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
