//! The resolved configuration: every setting the daemon runs with, checked, in one struct.
//!
//! In: the parsed command line ([`cli::Cli`], after [`args::normalize`]), the config file if
//! one was found ([`file::Loaded`]) and facts about the machine ([`Machine`]: memory
//! available). Out: a [`Config`], or a [`ConfigError`] naming the setting (flag, or key, file
//! and line), the bad value and the fix. [`resolve`] is a pure function: the caller gathers the
//! inputs, so tests pass values instead of changing the process. It reaches no network: a
//! listen address given as a host name stays a [`ListenAddr`] to be looked up when binding,
//! once the log can say so, and a region is checked to be one DNS label
//! ([`is_valid_region`]) before anything puts it in a host name.
//!
//! Precedence, as in the original: a flag given on the command line beats the config file,
//! which beats the built-in default. Only one file is used: a `-c` file takes the place of the
//! default-location file (`/etc/amazon/xray/cfg.yaml`, else `./cfg.yaml`), it is not layered
//! over it. In the file, an empty string or a zero number means "the default", as in the
//! original.
//!
//! Each setting is chosen by one function, `pick`, as a [`Setting`]: its value and its
//! [`Source`] (the flag, the file's key with file and line, or the default). Messages and
//! warnings name the source, so they point at what to change.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use crate::logging::{LogSettings, Rotation};
use crate::sink::SinkSpec;

pub mod args;
pub mod cli;
pub mod defaults;
pub mod file;
pub mod otlp_sink;

/// The default UDP and TCP address.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:2000";
/// The smallest buffer the original accepts, in MB.
pub const MIN_BUFFER_MB: u64 = 3;
/// Default shutdown deadline: inside ECS's default 30 s stop timeout.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(25);

/// Everything the daemon runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// UDP address to receive on (a host name is looked up when binding).
    pub udp_addr: ListenAddr,
    /// TCP address for the proxy and the stats/health paths.
    pub tcp_addr: ListenAddr,
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
    /// When uploads are retried and given up.
    pub retry: crate::config::defaults::RetryPolicy,
    /// OpenTelemetry in: the OTLP receivers and how spans become X-Ray documents.
    pub otlp: OtlpConfig,
    /// How long one call to X-Ray may take (`--upload-timeout`, `UploadTimeout`). Default
    /// [`defaults::DEFAULT_UPLOAD_TIMEOUT`].
    pub upload_timeout: Duration,
    /// Time between telemetry records; `None`: no telemetry.
    pub telemetry_interval: Option<Duration>,
    /// A TCP address of its own for the stats and health paths (`--stats-address`), if asked.
    pub stats_addr: Option<ListenAddr>,
    /// The trace viewer (`--viewer`, `Viewer.*`).
    pub viewer: ViewerConfig,
}

/// The trace viewer, resolved (the `Viewer` keys and their flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewerConfig {
    /// Serve it (`--viewer`, `Viewer.Enabled`). Default off.
    pub enabled: bool,
    /// Its store's budget in bytes (`--viewer-memory`, `Viewer.MemoryMB`, in MB). Default
    /// [`crate::viewer::DEFAULT_MEMORY_MB`].
    pub memory_bytes: usize,
    /// Other hosts may open it, with its token (`--viewer-allow-remote`,
    /// `Viewer.AllowRemote`). Default off.
    pub allow_remote: bool,
}

impl Default for ViewerConfig {
    fn default() -> Self {
        ViewerConfig {
            enabled: false,
            memory_bytes: crate::viewer::DEFAULT_MEMORY_MB << 20,
            allow_remote: false,
        }
    }
}

/// The largest `--viewer-memory`, in MB.
pub const MAX_VIEWER_MEMORY_MB: i64 = 1024;

/// The `Viewer` settings: flags over the file over the defaults.
fn viewer(cli: &cli::Cli, f: &file::FileConfig) -> Result<ViewerConfig, ConfigError> {
    let switch = |on: bool| on.then_some(true);
    let enabled = pick(
        switch(cli.viewer),
        "--viewer",
        f.viewer_enabled.clone(),
        false,
    )
    .value;
    let allow_remote = pick(
        switch(cli.viewer_allow_remote),
        "--viewer-allow-remote",
        f.viewer_allow_remote.clone(),
        false,
    )
    .value;
    let mb = pick(
        cli.viewer_memory,
        "--viewer-memory",
        f.viewer_memory_mb.clone(),
        crate::viewer::DEFAULT_MEMORY_MB as i64,
    );
    if !(1..=MAX_VIEWER_MEMORY_MB).contains(&mb.value) {
        return Err(mb.invalid(
            mb.value,
            format!("must be a whole number of MB from 1 to {MAX_VIEWER_MEMORY_MB}"),
        ));
    }
    Ok(ViewerConfig {
        enabled,
        memory_bytes: (mb.value as usize) << 20,
        allow_remote,
    })
}

impl Config {
    /// True if any sink needs AWS (region, credentials).
    pub fn needs_aws(&self) -> bool {
        self.sinks.contains(&SinkSpec::Xray)
    }
}

/// Facts about the machine that defaults depend on.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    /// Total RAM in bytes.
    pub total_memory: Option<u64>,
    /// The cgroup (container) memory limit in bytes, if one is set.
    pub cgroup_limit: Option<u64>,
    /// The environment variables the daemon's rules read (a bare `--sink otlp` reads the
    /// OpenTelemetry exporter's).
    pub env: crate::aws::Env,
}

impl Machine {
    /// Reads the facts from this machine (Linux: /proc and /sys/fs/cgroup).
    pub fn detect() -> Self {
        Machine {
            total_memory: read_meminfo_total(),
            cgroup_limit: read_cgroup_limit(),
            env: crate::aws::Env::from_process(),
        }
    }
}

/// A setting that cannot be used. Each message names the setting (the flag, or the key with
/// its file and line, see [`Source`]), the value and what is allowed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An address that does not parse or resolve.
    #[error(
        "invalid address {value:?} for {setting}: {why}. Write HOST:PORT, for example 127.0.0.1:2000 or 0.0.0.0:2000"
    )]
    Address {
        /// Where the address came from.
        setting: Source,
        /// The value given.
        value: String,
        /// What is wrong.
        why: String,
    },
    /// A value out of range or of the wrong form.
    #[error("invalid value {value:?} for {setting}: {why}")]
    Value {
        /// Where the value came from.
        setting: Source,
        /// The value given (a URL without its password).
        value: String,
        /// What is allowed.
        why: String,
    },
    /// The config file cannot be read or has a bad key or value.
    #[error(transparent)]
    File(#[from] file::FileError),
}

/// Where a setting's value came from, as messages and warnings name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag, named as in the help: `-b/--bind`, `--endpoint`.
    Flag(&'static str),
    /// A key of the config file: shown as `Socket.UDPAddress in /etc/amazon/xray/cfg.yaml
    /// (line 3)`.
    File {
        /// The key, dotted below the top level.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The line of the value (1-based), where known.
        line: Option<u64>,
    },
    /// An environment variable (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    Variable(&'static str),
    /// The built-in default.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(name) => f.write_str(name),
            Source::File { key, path, line } => {
                write!(f, "{key} in {}", path.display())?;
                match line {
                    Some(line) => write!(f, " (line {line})"),
                    None => Ok(()),
                }
            }
            Source::Variable(name) => write!(f, "the environment variable {name}"),
            Source::Default => f.write_str("the default"),
        }
    }
}

/// A setting's value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    /// The value.
    pub value: T,
    /// Where it came from.
    pub source: Source,
}

impl<T> Setting<T> {
    /// The same setting with its value changed by `f`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Setting<U> {
        Setting {
            value: f(self.value),
            source: self.source,
        }
    }

    /// The error for this setting: `shown` is the value as the message shows it.
    fn invalid(&self, shown: impl ToString, why: impl Into<String>) -> ConfigError {
        ConfigError::Value {
            setting: self.source.clone(),
            value: shown.to_string(),
            why: why.into(),
        }
    }
}

impl Setting<String> {
    /// `None` for an empty value: an empty flag or key means "not set", as in the original.
    fn non_empty(self) -> Option<Self> {
        (!self.value.is_empty()).then_some(self)
    }
}

/// Flag over file over default: the flag's value if the flag was given, else the file's if the
/// file sets it, else `default`; each with its [`Source`].
fn pick<T>(
    flag: Option<T>,
    flag_name: &'static str,
    file: Option<Setting<T>>,
    default: T,
) -> Setting<T> {
    match (flag, file) {
        (Some(value), _) => Setting {
            value,
            source: Source::Flag(flag_name),
        },
        (None, Some(from_file)) => from_file,
        (None, None) => Setting {
            value: default,
            source: Source::Default,
        },
    }
}

/// OpenTelemetry in, resolved (the `OTLP` keys and their flags).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OtlpConfig {
    /// Where the OTLP/HTTP receiver listens (`--otlp-http`, `OTLP.HTTPAddress`); `None`: off.
    pub http_addr: Option<ListenAddr>,
    /// Where the OTLP/gRPC receiver listens (`--otlp-grpc`, `OTLP.GRPCAddress`); `None`: off.
    pub grpc_addr: Option<ListenAddr>,
    /// The largest request body, after decompression (`--otlp-max-request-bytes`,
    /// `OTLP.MaxRequestBytes`). Default [`defaults::DEFAULT_OTLP_MAX_REQUEST_BYTES`].
    pub max_request_bytes: usize,
    /// Span attributes that become annotations (`--indexed-attributes`,
    /// `OTLP.IndexedAttributes`).
    pub indexed_attributes: Vec<String>,
    /// Every span attribute becomes an annotation (`--index-all-attributes`,
    /// `OTLP.IndexAllAttributes`).
    pub index_all_attributes: bool,
    /// How spans go to X-Ray with `--sink xray` (`--otlp-to-xray`, `OTLP.ToXRay`). Default
    /// [`ToXray::Segments`].
    pub to_xray: ToXray,
}

/// How OpenTelemetry spans go to X-Ray (`--otlp-to-xray`, `OTLP.ToXRay`). X-Ray SDK documents
/// go to `PutTraceSegments` either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ToXray {
    /// Converted to X-Ray segment documents, sent with `PutTraceSegments` with the others.
    #[default]
    Segments,
    /// Unchanged, as OTLP, to X-Ray's OTLP endpoint (`/v1/traces`; the account needs CloudWatch
    /// Transaction Search).
    Otlp,
}

impl std::str::FromStr for ToXray {
    type Err = String;

    /// `segments` or `otlp`, in any letter case.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "segments" => Ok(ToXray::Segments),
            "otlp" => Ok(ToXray::Otlp),
            _ => Err(
                "write segments (spans converted to segment documents, the default) or \
                      otlp (spans unchanged to X-Ray's OTLP endpoint)"
                    .to_owned(),
            ),
        }
    }
}

/// Resolves the command line and the config file against the machine's facts into a
/// [`Config`]. `file` is the one file in use (see the module docs), already checked.
pub fn resolve(
    cli: &cli::Cli,
    file: Option<&file::Loaded>,
    machine: Machine,
) -> Result<Config, ConfigError> {
    let f = file.map(|l| l.config.clone()).unwrap_or_default();
    let otlp = otlp(cli, &f)?;
    let viewer = viewer(cli, &f)?;

    let udp = pick(
        cli.bind.clone(),
        "-b/--bind",
        f.udp_address,
        DEFAULT_ADDRESS.to_owned(),
    );
    let tcp = pick(
        cli.bind_tcp.clone(),
        "-t/--bind-tcp",
        f.tcp_address,
        DEFAULT_ADDRESS.to_owned(),
    );
    let udp_addr = parse_listen_addr(&udp.value, &udp.source)?;
    let tcp_addr = parse_listen_addr(&tcp.value, &tcp.source)?;
    let buffer = pick(
        cli.buffer_memory,
        "-m/--buffer-memory",
        f.total_buffer_size_mb,
        0,
    );
    let (buffer_bytes, buffer_source) = buffer_budget(&buffer, &machine)?;

    let concurrency = pick(
        cli.concurrency,
        "--concurrency",
        f.concurrency,
        defaults::DEFAULT_CONCURRENCY as i64,
    );
    let concurrency = usize::try_from(concurrency.value)
        .ok()
        .filter(|n| (1..=defaults::MAX_CONCURRENCY).contains(n))
        .ok_or_else(|| {
            concurrency.invalid(
                concurrency.value,
                format!(
                    "give at least 1 and at most {} uploads at once (0 in the config file means the default, {})",
                    defaults::MAX_CONCURRENCY,
                    defaults::DEFAULT_CONCURRENCY
                ),
            )
        })?;

    let max_document = pick(
        cli.max_segment_size,
        "--max-segment-size",
        None,
        crate::document::DEFAULT_MAX_DOCUMENT_BYTES as i64,
    );
    let max_document_bytes = usize::try_from(max_document.value)
        .ok()
        .filter(|n| (64..=crate::document::DEFAULT_MAX_DOCUMENT_BYTES).contains(n))
        .ok_or_else(|| {
            max_document.invalid(
                max_document.value,
                format!(
                    "must be from 64 to {} bytes",
                    crate::document::DEFAULT_MAX_DOCUMENT_BYTES
                ),
            )
        })?;
    let rotate_bytes = pick(
        cli.log_rotate_bytes,
        "--log-rotate-bytes",
        None,
        crate::logging::DEFAULT_ROTATE_BYTES as i64,
    );
    let rotate_bytes = u64::try_from(rotate_bytes.value)
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            rotate_bytes.invalid(
                rotate_bytes.value,
                format!(
                    "give the size in bytes at which the log file is rotated, at least 1 \
                     (default {}); to never rotate, set Logging.LogRotation: false",
                    crate::logging::DEFAULT_ROTATE_BYTES
                ),
            )
        })?;

    let level = pick(
        cli.log_level.clone(),
        "-l/--log-level",
        f.log_level,
        "prod".to_owned(),
    );
    let log = LogSettings {
        level: level
            .value
            .parse()
            .map_err(|why: String| level.invalid(&level.value, why))?,
        format: cli.log_format.unwrap_or_default(),
        file: Some(
            pick(
                cli.log_file.clone(),
                "-f/--log-file",
                f.log_path.map(|s| s.map(PathBuf::from)),
                PathBuf::new(),
            )
            .value,
        )
        .filter(|p| !p.as_os_str().is_empty()),
        // `Logging.LogRotation` has no flag; `--log-rotate-bytes` only sizes it.
        rotation: f.log_rotation.is_none_or(|s| s.value).then(|| Rotation {
            max_bytes: rotate_bytes,
            ..Rotation::default()
        }),
    };

    let endpoint = pick(
        cli.endpoint.clone(),
        "--endpoint",
        f.endpoint,
        String::new(),
    )
    .non_empty();
    if let Some(s) = &endpoint {
        // The endpoint is logged and becomes the signed Host: it must carry no credentials.
        check_url_setting(s, false)?;
    }
    let proxy_address = pick(
        cli.proxy_address.clone(),
        "-p/--proxy-address",
        f.proxy_address,
        String::new(),
    )
    .non_empty();
    if let Some(s) = &proxy_address {
        check_url_setting(s, true)?;
    }
    let text = |flag: &Option<String>, flag_name, file_value| {
        pick(flag.clone(), flag_name, file_value, String::new())
            .non_empty()
            .map(|s| s.value)
    };
    let region = pick(cli.region.clone(), "-n/--region", f.region, String::new())
        .map(|r| r.trim().to_owned())
        .non_empty();
    if let Some(r) = &region
        && !is_valid_region(&r.value)
    {
        // Checked before anything can put it in a host name and ask the DNS for it.
        return Err(r.invalid(
            &r.value,
            "a region is one word of letters, digits and '-', for example us-east-1",
        ));
    }
    let region = region.map(|r| r.value);
    let role_arn = text(&cli.role_arn, "-r/--role-arn", f.role_arn);
    let resource_arn = text(&cli.resource_arn, "-a/--resource-arn", f.resource_arn);
    let local_mode = pick(cli.local_mode, "-o/--local-mode", f.local_mode, false).value;
    // `--no-verify-ssl` is a switch: not given is not "false".
    let no_verify_ssl = pick(
        cli.no_verify_ssl.then_some(true),
        "--no-verify-ssl",
        f.no_verify_ssl,
        false,
    );

    let mut notes = file.map(|l| l.notes.clone()).unwrap_or_default();
    // The OTLP sinks' URLs and headers, before repeated sinks are folded into one.
    // `--sink` beats the file's `Sinks`, as every flag beats its key.
    let mut given_sinks = match (&f.sinks, cli.sink.is_empty()) {
        (Some(listed), true) => file_sinks(listed)?,
        _ => cli.sink.clone(),
    };
    let own: Vec<&ListenAddr> = [
        Some(&tcp_addr),
        otlp.http_addr.as_ref(),
        otlp.grpc_addr.as_ref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    notes.extend(otlp_sink::resolve(
        &mut given_sinks,
        &cli.otlp_header_owners(),
        &machine.env,
        cli.otlp_service_name.as_deref(),
        &own,
    )?);
    let sinks = sinks(&given_sinks)?;
    if otlp.to_xray == ToXray::Otlp && !sinks.contains(&SinkSpec::Xray) {
        notes.push(
            "--otlp-to-xray / OTLP.ToXRay is otlp, but no sink sends to X-Ray (--sink xray): \
             it has no effect"
                .to_owned(),
        );
    }
    if !viewer.enabled && (cli.viewer_memory.is_some() || cli.viewer_allow_remote) {
        notes.push(
            "--viewer-memory and --viewer-allow-remote have no effect without --viewer (or \
             Viewer.Enabled: true)"
                .to_owned(),
        );
    }
    if no_verify_ssl.value {
        let fix = match &no_verify_ssl.source {
            Source::File { .. } => "set NoVerifySSL: false",
            _ => "remove --no-verify-ssl",
        };
        notes.push(format!(
            "NoVerifySSL is true, from {}: TLS certificates of X-Ray endpoints are NOT checked, \
             so anyone on the network path can read and change what is sent. Unless this is a \
             test setup, {fix}",
            no_verify_ssl.source
        ));
    }

    let seconds = |flag: Option<f64>, name, default: Duration, min: f64, max: f64| {
        let s = pick(flag, name, None, default.as_secs_f64());
        if s.value.is_finite() && (min..=max).contains(&s.value) {
            Ok(Duration::from_secs_f64(s.value))
        } else {
            Err(s.invalid(
                s.value,
                format!("must be a number of seconds from {min} to {max}"),
            ))
        }
    };
    let retry_max_attempts = pick(
        cli.retry_max_attempts,
        "--retry-max-attempts",
        None,
        i64::from(defaults::DEFAULT_MAX_ATTEMPTS),
    );
    let max_attempts = u32::try_from(retry_max_attempts.value)
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            retry_max_attempts.invalid(
                retry_max_attempts.value,
                format!("give from 1 to {} attempts (1 means no retries)", u32::MAX),
            )
        })?;
    let retry = defaults::RetryPolicy {
        max_attempts,
        max_age: seconds(
            cli.retry_max_age,
            "--retry-max-age",
            defaults::DEFAULT_MAX_AGE,
            0.0,
            86_400.0,
        )?,
        ..defaults::RetryPolicy::default()
    };
    let upload_timeout = {
        let s = pick(
            cli.upload_timeout,
            "--upload-timeout",
            f.upload_timeout.map(|s| s.map(|n| n as f64)),
            defaults::DEFAULT_UPLOAD_TIMEOUT.as_secs_f64(),
        );
        let (min, max) = (
            defaults::MIN_UPLOAD_TIMEOUT.as_secs_f64(),
            defaults::MAX_UPLOAD_TIMEOUT.as_secs_f64(),
        );
        if s.value.is_finite() && (min..=max).contains(&s.value) {
            Duration::from_secs_f64(s.value)
        } else {
            return Err(s.invalid(
                s.value,
                format!("must be a number of seconds from {min} to {max}"),
            ));
        }
    };
    let telemetry_interval = seconds(
        cli.telemetry_interval,
        "--telemetry-interval",
        defaults::DEFAULT_TELEMETRY_INTERVAL,
        defaults::MIN_TELEMETRY_INTERVAL.as_secs_f64(),
        86_400.0,
    )?;

    Ok(Config {
        udp_addr,
        tcp_addr,
        buffer_bytes,
        buffer_source,
        sinks,
        concurrency,
        upload_timeout,
        otlp,
        max_document: max_document_bytes,
        region,
        endpoint: endpoint.map(|s| s.value),
        role_arn,
        resource_arn,
        local_mode,
        log,
        shutdown_timeout: seconds(
            cli.shutdown_timeout,
            "--shutdown-timeout",
            DEFAULT_SHUTDOWN_TIMEOUT,
            0.0,
            86_400.0,
        )?,
        proxy_address: proxy_address.map(|s| s.value),
        no_verify_ssl: no_verify_ssl.value,
        config_file: file.map(|l| l.path.clone()),
        notes,
        proxy_sampling_only: cli.proxy_sampling_only,
        proxy_client_timeout: seconds(
            cli.proxy_client_timeout,
            "--proxy-client-timeout",
            defaults::PROXY_CLIENT_TIMEOUT,
            0.05,
            3600.0,
        )?,
        proxy_upstream_timeout: seconds(
            cli.proxy_upstream_timeout,
            "--proxy-upstream-timeout",
            defaults::PROXY_UPSTREAM_TIMEOUT,
            0.05,
            3600.0,
        )?,
        retry,
        telemetry_interval: (!cli.no_telemetry).then_some(telemetry_interval),
        stats_addr: cli
            .stats_address
            .as_deref()
            .map(|a| parse_listen_addr(a, &Source::Flag("--stats-address")))
            .transpose()?,
        viewer,
    })
}

/// The `OTLP` settings: flags over the file over the defaults.
fn otlp(cli: &cli::Cli, f: &file::FileConfig) -> Result<OtlpConfig, ConfigError> {
    let address =
        |flag: &Option<String>, name: &'static str, from_file: &Option<Setting<String>>| {
            let setting = match flag {
                Some(flag) => Some(Setting {
                    value: flag.clone(),
                    source: Source::Flag(name),
                }),
                None => from_file.clone(),
            };
            setting
                .filter(|s| !s.value.is_empty())
                .map(|s| parse_listen_addr(&s.value, &s.source))
                .transpose()
        };
    let http_addr = address(&cli.otlp_http, "--otlp-http", &f.otlp_http_address)?;
    let grpc_addr = address(&cli.otlp_grpc, "--otlp-grpc", &f.otlp_grpc_address)?;
    let max = pick(
        cli.otlp_max_request_bytes,
        "--otlp-max-request-bytes",
        f.otlp_max_request_bytes.clone(),
        defaults::DEFAULT_OTLP_MAX_REQUEST_BYTES as i64,
    );
    let max_request_bytes = usize::try_from(max.value)
        .ok()
        .filter(|n| (1024..=defaults::MAX_OTLP_MAX_REQUEST_BYTES).contains(n))
        .ok_or_else(|| {
            max.invalid(
                max.value,
                format!(
                    "give a number of bytes from 1024 to {} (0 in the config file means the default, {})",
                    defaults::MAX_OTLP_MAX_REQUEST_BYTES,
                    defaults::DEFAULT_OTLP_MAX_REQUEST_BYTES
                ),
            )
        })?;
    let indexed_attributes = if cli.indexed_attributes.is_empty() {
        f.otlp_indexed_attributes
            .as_ref()
            .map(|s| s.value.clone())
            .unwrap_or_default()
    } else {
        cli.indexed_attributes
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let index_all_attributes = cli.index_all_attributes
        || f.otlp_index_all_attributes
            .as_ref()
            .is_some_and(|s| s.value);
    let to_xray = match (cli.otlp_to_xray, &f.otlp_to_xray) {
        (Some(mode), _) => mode,
        (None, Some(s)) => s
            .value
            .parse()
            .map_err(|why: String| s.invalid(&s.value, why))?,
        (None, None) => ToXray::default(),
    };
    Ok(OtlpConfig {
        http_addr,
        grpc_addr,
        max_request_bytes,
        indexed_attributes,
        index_all_attributes,
        to_xray,
    })
}

/// The sinks the config file's `Sinks` lists, as `--sink` would give them.
fn file_sinks(listed: &Setting<Vec<file::FileSink>>) -> Result<Vec<SinkSpec>, ConfigError> {
    let source = |line: Option<u64>| match &listed.source {
        Source::File { key, path, .. } => Source::File {
            key,
            path: path.clone(),
            line,
        },
        other => other.clone(),
    };
    listed
        .value
        .iter()
        .map(|sink| {
            let invalid = |value: &str, why: &str| ConfigError::Value {
                setting: source(sink.line),
                value: value.to_owned(),
                why: why.to_owned(),
            };
            let only_otlp = !sink.headers.is_empty() || sink.compression.is_some();
            match sink.kind.to_ascii_lowercase().as_str() {
                "otlp" => {
                    let compression = match &sink.compression {
                        Some(c) => Some(c.parse().map_err(|why: String| invalid(c, &why))?),
                        None => None,
                    };
                    Ok(SinkSpec::Otlp(crate::sink::otlp::OtlpTarget {
                        given: sink.endpoint.clone(),
                        headers: sink.headers.clone(),
                        compression,
                        source: source(sink.line),
                        settings: None,
                    }))
                }
                _ if only_otlp || sink.endpoint.is_some() => Err(invalid(
                    &sink.kind,
                    "Endpoint, Headers and Compression belong to a sink of Type otlp",
                )),
                "xray" => Ok(SinkSpec::Xray),
                "stdout" => Ok(SinkSpec::Stdout),
                "file" => match &sink.path {
                    Some(path) => Ok(SinkSpec::File(path.into())),
                    None => Err(invalid("file", "a sink of Type file needs a Path")),
                },
                other => Err(invalid(other, "Type is one of xray, stdout, file and otlp")),
            }
        })
        .collect()
}

/// The sinks given with `--sink` (default: X-Ray), each once, in the order first given: a
/// repeated one would get every document twice.
fn sinks(given: &[SinkSpec]) -> Result<Vec<SinkSpec>, ConfigError> {
    if given.is_empty() {
        return Ok(vec![SinkSpec::Xray]);
    }
    let mut sinks: Vec<SinkSpec> = Vec::new();
    for spec in given {
        if !sinks.contains(spec) {
            sinks.push(spec.clone());
        }
    }
    if sinks.len() > defaults::MAX_SINKS {
        return Err(ConfigError::Value {
            setting: Source::Flag("--sink"),
            value: format!("{} sinks", sinks.len()),
            why: format!(
                "at most {} different sinks can be given",
                defaults::MAX_SINKS
            ),
        });
    }
    Ok(sinks)
}

/// Checks a URL setting with [`check_url`]. `userinfo_allowed`: whether it may carry
/// `user:password@` (a proxy may). A message shows the URL without its password.
fn check_url_setting(s: &Setting<String>, userinfo_allowed: bool) -> Result<(), ConfigError> {
    let uri = check_url(&s.value).map_err(|why| s.invalid(redact_userinfo(&s.value), why))?;
    if !userinfo_allowed && has_userinfo(&uri) {
        return Err(s.invalid(
            redact_userinfo(&s.value),
            "it takes no user name or password; remove the part before @",
        ));
    }
    Ok(())
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
pub(crate) fn has_userinfo(uri: &http::Uri) -> bool {
    uri.authority().is_some_and(|a| a.as_str().contains('@'))
}

/// `text` with a `user:password@` part before the host replaced by `***@`, for messages. Works
/// on text that is not a valid URL too, so a message about a bad URL never shows a password.
pub(crate) fn redact_userinfo(text: &str) -> String {
    let start = text.find("://").map_or(0, |i| i + 3);
    let end = text[start..]
        .find(['/', '?', '#'])
        .map_or(text.len(), |i| start + i);
    match text[start..end].rfind('@') {
        Some(at) => format!("{}***{}", &text[..start], &text[start + at..]),
        None => text.to_owned(),
    }
}

/// A listen address as configured: an IP address and port, or a host name and port. A host
/// name is looked up only by [`ListenAddr::look_up`], just before binding and once logging has
/// started (which says what is looked up), so [`resolve`] never reaches the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    /// The setting it came from (for messages).
    pub setting: Source,
    target: Target,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Ip(SocketAddr),
    Host { name: String, port: u16 },
}

impl ListenAddr {
    /// An IP address and port, from `setting`.
    pub fn ip(addr: SocketAddr, setting: Source) -> Self {
        ListenAddr {
            setting,
            target: Target::Ip(addr),
        }
    }

    /// The IP address and port, when it was given as one (no lookup needed).
    pub fn as_ip(&self) -> Option<SocketAddr> {
        match &self.target {
            Target::Ip(addr) => Some(*addr),
            Target::Host { .. } => None,
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        match &self.target {
            Target::Ip(addr) => addr.port(),
            Target::Host { port, .. } => *port,
        }
    }

    /// The address to bind: the IP address given, or the host name's, looked up now (IPv4
    /// first; blocking, as the original's `ResolveUDPAddr`). The lookup is logged at Info
    /// before it is made: it may take seconds, and it asks the DNS about a configured name.
    ///
    /// Errors: the host name does not resolve, naming the setting.
    pub fn look_up(&self) -> Result<SocketAddr, ConfigError> {
        let (name, port) = match &self.target {
            Target::Ip(addr) => return Ok(*addr),
            Target::Host { name, port } => (name.as_str(), *port),
        };
        tracing::info!(
            "Looking up the host name {name} (from {}) for the address to listen on",
            self.setting
        );
        let err = |why: String| ConfigError::Address {
            setting: self.setting.clone(),
            value: self.to_string(),
            why,
        };
        let addrs: Vec<SocketAddr> = (name, port)
            .to_socket_addrs()
            .map_err(|e| err(format!("the host name does not resolve ({e})")))?
            .collect();
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
            .ok_or_else(|| err("the host name resolves to no address".into()))?;
        tracing::debug!("The host name {name} is {}", addr.ip());
        Ok(addr)
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Ip(addr) => addr.fmt(f),
            Target::Host { name, port } => write!(f, "{name}:{port}"),
        }
    }
}

/// Parses a listen address the way the original accepts them: `HOST:PORT`, `[V6]:PORT`, or
/// `:PORT` (every address, IPv4 and IPv6). `localhost` means 127.0.0.1, never only `::1`, so
/// SDKs sending to 127.0.0.1 reach it; another host name is kept to be looked up once, just
/// before binding ([`ListenAddr::look_up`]). No lookup here.
pub fn parse_listen_addr(text: &str, setting: &Source) -> Result<ListenAddr, ConfigError> {
    let err = |why: &str| ConfigError::Address {
        setting: setting.clone(),
        value: text.into(),
        why: why.into(),
    };
    let ip = |addr| Ok(ListenAddr::ip(addr, setting.clone()));
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return ip(addr);
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(|| err("no port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| err("the port must be a number from 0 to 65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return ip(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port));
    }
    if host.eq_ignore_ascii_case("localhost") {
        return ip(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Ok(addr) = host.parse::<IpAddr>() {
        return ip(SocketAddr::new(addr, port));
    }
    if !is_host_name(host) {
        return Err(err(
            "the host is neither an IP address nor a host name (letters, digits, '-', '_' and \
             '.')",
        ));
    }
    Ok(ListenAddr {
        setting: setting.clone(),
        target: Target::Host {
            name: host.to_owned(),
            port,
        },
    })
}

/// True for text that can be a DNS host name: dot-separated labels of 1 to 63 letters, digits,
/// `-` or `_` (container names have them), 253 characters at most, a final dot allowed.
fn is_host_name(text: &str) -> bool {
    let text = text.strip_suffix('.').unwrap_or(text);
    text.len() <= 253
        && text.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// True for a region that can stand in a host name as the SDK puts it there
/// (`xray.REGION.amazonaws.com`): one DNS label, 1 to 63 letters, digits and `-`, not starting
/// or ending with `-` (the SDK's `isValidHostLabel`). `x.y` is not one: it would make the daemon
/// ask the DNS for `xray.x.y.amazonaws.com`.
pub fn is_valid_region(region: &str) -> bool {
    (1..=63).contains(&region.len())
        && region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !region.starts_with('-')
        && !region.ends_with('-')
}

/// The memory budget in bytes and where it came from, in words for the banner. `given`: the MB
/// from `-m` or `TotalBufferSizeMB`; zero or negative means 1% of the memory available.
fn buffer_budget(given: &Setting<i64>, machine: &Machine) -> Result<(usize, String), ConfigError> {
    const MB: u64 = 1024 * 1024;
    if let Ok(mb) = u64::try_from(given.value)
        && mb > 0
    {
        if mb < MIN_BUFFER_MB {
            return Err(given.invalid(
                mb,
                format!(
                    "the buffer needs at least {MIN_BUFFER_MB} MB; give {MIN_BUFFER_MB} or more (or 0 for 1% of the memory)"
                ),
            ));
        }
        let bytes = mb.saturating_mul(MB);
        // The original allocated 16 buffers per MB at start with no such check; here the budget
        // is the bound on memory, so one beyond the memory there is would switch the bound off.
        if let Some((available, what)) = available_memory(machine)
            && bytes > available
        {
            let most = available / MB;
            return Err(given.invalid(
                mb,
                format!(
                    "that is more than the {most} MB of memory available to the daemon ({what}), \
                     so it would not bound memory at all; give -m/--buffer-memory or \
                     TotalBufferSizeMB at most {most} (or 0 for 1% of the memory)"
                ),
            ));
        }
        return Ok((
            usize::try_from(bytes).unwrap_or(usize::MAX),
            format!("from {}", given.source),
        ));
    }
    let (available, what) = available_memory(machine).unwrap_or((0, "unknown memory"));
    let mb = (available / 100 / MB).max(MIN_BUFFER_MB);
    Ok((
        usize::try_from(mb * MB).unwrap_or(usize::MAX),
        format!("1% of {what}, at least {MIN_BUFFER_MB} MB"),
    ))
}

/// The memory available to the process in bytes, and what it is in words: the container's
/// (cgroup) limit when there is one below the host's RAM, else the host's RAM; `None` when
/// neither is known.
fn available_memory(machine: &Machine) -> Option<(u64, &'static str)> {
    match (machine.cgroup_limit, machine.total_memory) {
        (Some(c), Some(t)) if c < t => Some((c, "the container's memory limit")),
        (Some(c), None) => Some((c, "the container's memory limit")),
        (_, Some(t)) => Some((t, "the host's RAM")),
        (None, None) => None,
    }
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
    use crate::logging::LogLevel;
    use clap::Parser;

    fn cli(words: &[&str]) -> cli::Cli {
        let args = match args::normalize(words.iter().map(std::ffi::OsString::from)) {
            Ok(args::Invocation::Daemon { args, .. }) => args,
            other => panic!("{other:?}"),
        };
        match cli::Cli::parse_words(args) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn given(mb: i64) -> Setting<i64> {
        Setting {
            value: mb,
            source: Source::Flag("-m"),
        }
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

    /// The file's `Sinks`: each OTLP backend with its own endpoint, headers and compression;
    /// `--sink` replaces the list; mistakes name the line and never show a header's value.
    #[test]
    fn the_files_sinks_list_gives_each_otlp_sink_its_settings() {
        let text = "Version: 2\nSinks:\n  - Type: xray\n  - Type: otlp\n    Endpoint: https://api.honeycomb.io\n    \
                    Headers:\n      x-honeycomb-team: s3cret-key\n  - Type: otlp\n    Endpoint: http://collector:4318/custom\n    \
                    Compression: none\n  - Type: file\n    Path: /tmp/x.jsonl\n";
        let c = ok(resolve(&cli(&[]), Some(&loaded(text)), Machine::default()));
        let otlp: Vec<&crate::sink::otlp::OtlpSettings> = c
            .sinks
            .iter()
            .filter_map(|s| match s {
                SinkSpec::Otlp(t) => t.settings.as_ref(),
                _ => None,
            })
            .collect();
        assert_eq!(c.sinks.len(), 4);
        assert_eq!(c.sinks[0], SinkSpec::Xray);
        assert_eq!(c.sinks[3], SinkSpec::File("/tmp/x.jsonl".into()));
        assert_eq!(otlp[0].url, "https://api.honeycomb.io/v1/traces");
        assert_eq!(
            otlp[0].headers,
            [("x-honeycomb-team".to_owned(), "s3cret-key".to_owned())]
        );
        assert_eq!(otlp[0].compression, crate::sink::otlp::Compression::Gzip);
        assert_eq!(otlp[1].url, "http://collector:4318/custom");
        assert_eq!(otlp[1].compression, crate::sink::otlp::Compression::None);
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "Debug never shows a header value"
        );
        // The flag replaces the list.
        let c = ok(resolve(
            &cli(&["--sink", "stdout"]),
            Some(&loaded(text)),
            Machine::default(),
        ));
        assert_eq!(c.sinks, vec![SinkSpec::Stdout]);
        for (bad, says, line) in [
            ("  - Type: kafka\n", "Type is one of", 3),
            ("  - Type: file\n", "needs a Path", 3),
            (
                "  - Type: stdout\n    Headers:\n      k: s3cret\n",
                "belong to a sink of Type otlp",
                3,
            ),
            (
                "  - Type: otlp\n    Endpoint: http://a:1\n    Compression: br\n",
                "gzip or none",
                3,
            ),
            (
                "  - Type: otlp\n    Endpont: http://a:1\n",
                "unknown key Endpont",
                4,
            ),
            ("  - otlp\n", "each item of Sinks is a mapping", 3),
            (
                "  - Type: otlp\n    Headers: s3cret\n",
                "Headers is a mapping",
                4,
            ),
        ] {
            let text = format!("Version: 2\nSinks:\n{bad}");
            let e = file::parse(&text, std::path::Path::new("/x/cfg.yaml"), true)
                .map_err(|e| e.to_string())
                .and_then(|l| {
                    resolve(&cli(&[]), Some(&l), Machine::default()).map_err(|e| e.to_string())
                })
                .err()
                .unwrap_or_default();
            assert!(
                e.contains(says) && e.contains(&format!("line {line}")),
                "{bad:?}: {e}"
            );
            assert!(!e.contains("s3cret"), "{e}");
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
    fn otlp_settings_come_from_the_flags_or_the_otlp_keys() {
        let otlp = |words: &[&str], file: Option<&file::Loaded>| {
            resolve(&cli(words), file, Machine::default()).map(|c| c.otlp)
        };
        let off = ok(resolve(&cli(&[]), None, Machine::default())).otlp;
        assert_eq!(
            (off.http_addr, off.grpc_addr),
            (None, None),
            "off by default: a drop-in opens no new port"
        );
        assert_eq!(off.max_request_bytes, 20 * 1024 * 1024);
        let f = loaded(
            "Version: 2\nOTLP:\n  HTTPAddress: 127.0.0.1:4318\n  GRPCAddress: 127.0.0.1:4317\n  \
             MaxRequestBytes: 4096\n  \
             IndexedAttributes: [app.user, \"app.tier\"]\n  IndexAllAttributes: false\n",
        );
        let from_file = match otlp(&[], Some(&f)) {
            Ok(o) => o,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(from_file.http_addr.map(|a| a.port()), Some(4318));
        assert_eq!(from_file.grpc_addr.map(|a| a.port()), Some(4317));
        assert_eq!(from_file.max_request_bytes, 4096);
        assert_eq!(from_file.indexed_attributes, ["app.user", "app.tier"]);
        let flags = [
            "--otlp-http",
            "0.0.0.0:14318",
            "--otlp-grpc",
            "0.0.0.0:14317",
            "--indexed-attributes",
            "a, b",
            "--index-all-attributes",
        ];
        let o = match otlp(&flags, Some(&f)) {
            Ok(o) => o,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(o.http_addr.map(|a| a.port()), Some(14318));
        assert_eq!(o.grpc_addr.map(|a| a.port()), Some(14317));
        match otlp(&["--otlp-grpc", "localhost"], None) {
            Err(e) => assert!(e.to_string().contains("--otlp-grpc"), "{e}"),
            Ok(o) => panic!("{o:?}"),
        }
        let off = otlp(&["--otlp-grpc", ""], Some(&f)).map(|o| o.grpc_addr);
        assert!(
            matches!(off, Ok(None)),
            "an empty flag turns it off: {off:?}"
        );
        assert_eq!(
            (o.indexed_attributes, o.index_all_attributes),
            (vec!["a".to_owned(), "b".into()], true)
        );
        let text = loaded("Version: 2\nOTLP:\n  IndexedAttributes: \"x, y,,z\"\n");
        let o = otlp(&[], Some(&text)).map(|o| o.indexed_attributes);
        assert!(matches!(o.as_deref(), Ok([x, y, z]) if x == "x" && y == "y" && z == "z"));
        match otlp(&["--otlp-max-request-bytes", "10"], None) {
            Err(e) => assert!(e.to_string().contains("--otlp-max-request-bytes"), "{e}"),
            Ok(o) => panic!("{o:?}"),
        }
        match file::parse(
            "Version: 2\nOTLP:\n  IndexedAttributes: {a: 1}\n",
            std::path::Path::new("/x"),
            true,
        ) {
            Err(e) => assert!(
                e.to_string().contains("list of span attribute names"),
                "{e}"
            ),
            Ok(l) => panic!("{:?}", l.config),
        }
    }

    #[test]
    fn spans_go_to_x_ray_as_segments_unless_otlp_is_asked() {
        let mode = |words: &[&str], file: Option<&file::Loaded>| {
            resolve(&cli(words), file, Machine::default()).map(|c| c.otlp.to_xray)
        };
        assert_eq!(mode(&[], None).ok(), Some(ToXray::Segments));
        assert_eq!(
            mode(&["--otlp-to-xray", "otlp"], None).ok(),
            Some(ToXray::Otlp)
        );
        let f = loaded("Version: 2\nOTLP:\n  ToXRay: OTLP\n");
        assert_eq!(mode(&[], Some(&f)).ok(), Some(ToXray::Otlp));
        assert_eq!(
            mode(&["--otlp-to-xray", "segments"], Some(&f)).ok(),
            Some(ToXray::Segments),
            "the flag wins"
        );
        let empty = loaded("Version: 2\nOTLP:\n  ToXRay: \"\"\n");
        assert_eq!(mode(&[], Some(&empty)).ok(), Some(ToXray::Segments));
        match mode(&[], Some(&loaded("Version: 2\nOTLP:\n  ToXRay: spans\n"))) {
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("OTLP.ToXRay") && e.contains("segments"), "{e}");
            }
            Ok(m) => panic!("{m:?}"),
        }
        assert!(cli::Cli::try_parse_from(["xray", "--otlp-to-xray", "spans"]).is_err());
        // Without --sink xray it does nothing, and says so.
        let c = ok(resolve(
            &cli(&["--otlp-to-xray", "otlp", "--sink", "stdout"]),
            None,
            Machine::default(),
        ));
        assert!(
            c.notes.iter().any(|n| n.contains("no effect")),
            "{:?}",
            c.notes
        );
        let c = ok(resolve(
            &cli(&["--otlp-to-xray", "otlp"]),
            None,
            Machine::default(),
        ));
        assert!(c.notes.is_empty(), "{:?}", c.notes);
    }

    #[test]
    fn the_viewer_comes_from_its_flags_or_the_file_and_its_memory_is_checked() {
        let v = ok(resolve(
            &cli(&["--viewer", "--viewer-memory", "32"]),
            None,
            Machine::default(),
        ))
        .viewer;
        assert_eq!(
            (v.enabled, v.memory_bytes, v.allow_remote),
            (true, 32 << 20, false)
        );
        let f =
            loaded("Version: 2\nViewer:\n  Enabled: true\n  MemoryMB: 4\n  AllowRemote: true\n");
        let v = ok(resolve(&cli(&[]), Some(&f), Machine::default())).viewer;
        assert_eq!(
            (v.enabled, v.memory_bytes, v.allow_remote),
            (true, 4 << 20, true)
        );
        let e = resolve(
            &cli(&["--viewer", "--viewer-memory", "0"]),
            None,
            Machine::default(),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            e.contains("--viewer-memory") && e.contains("from 1 to 1024"),
            "{e}"
        );
        let off = ok(resolve(
            &cli(&["--viewer-memory", "32"]),
            None,
            Machine::default(),
        ));
        assert!(!off.viewer.enabled);
        assert!(
            off.notes
                .iter()
                .any(|n| n.contains("no effect without --viewer")),
            "{:?}",
            off.notes
        );
    }

    #[test]
    fn upload_timeout_comes_from_the_flag_or_the_file_and_is_checked() {
        let timeout = |words: &[&str], file: Option<&file::Loaded>| {
            resolve(&cli(words), file, Machine::default()).map(|c| c.upload_timeout)
        };
        let secs = Duration::from_secs;
        assert!(
            matches!(timeout(&[], None), Ok(t) if t == secs(10)),
            "default 10 s"
        );
        let f = loaded("Version: 2\nUploadTimeout: 30\n");
        assert!(matches!(timeout(&[], Some(&f)), Ok(t) if t == secs(30)));
        let half = timeout(&["--upload-timeout", "0.5"], Some(&f));
        assert!(
            matches!(half, Ok(t) if t == Duration::from_millis(500)),
            "the flag wins"
        );
        for bad in ["0", "-1", "601", "nan"] {
            match timeout(&["--upload-timeout", bad], None) {
                Err(e) => assert!(e.to_string().contains("--upload-timeout"), "{e}"),
                Ok(t) => panic!("{bad} gave {t:?}"),
            }
        }
    }

    #[test]
    fn pick_takes_the_flag_over_the_file_over_the_default() {
        let file = Setting {
            value: "eu-west-1".to_owned(),
            source: Source::File {
                key: "Region",
                path: "/x/cfg.yaml".into(),
                line: Some(4),
            },
        };
        let p = |flag: Option<&str>, file: Option<Setting<String>>| {
            let s = pick(flag.map(str::to_owned), "-n/--region", file, "d".into());
            (s.value, s.source.to_string())
        };
        assert_eq!(
            p(Some("us-west-2"), Some(file.clone())),
            ("us-west-2".into(), "-n/--region".into())
        );
        assert_eq!(
            p(None, Some(file)),
            ("eu-west-1".into(), "Region in /x/cfg.yaml (line 4)".into())
        );
        assert_eq!(p(None, None), ("d".into(), "the default".into()));
        // Through resolve: the buffer names where its size came from.
        let f = loaded("Version: 2\nTotalBufferSizeMB: 12\n");
        let source =
            |words: &[&str], file| ok(resolve(&cli(words), file, Machine::default())).buffer_source;
        assert_eq!(source(&["-m", "5"], Some(&f)), "from -m/--buffer-memory");
        assert_eq!(
            source(&[], Some(&f)),
            "from TotalBufferSizeMB in /x/cfg.yaml (line 2)"
        );
        assert!(source(&[], None).starts_with("1% of"));
    }

    #[test]
    fn the_no_verify_ssl_warning_names_its_source() {
        let warning = |c: Config| {
            c.notes
                .into_iter()
                .find(|n| n.starts_with("NoVerifySSL is true"))
        };
        let w = warning(ok(resolve(
            &cli(&["--no-verify-ssl"]),
            None,
            Machine::default(),
        )));
        assert!(
            w.as_deref()
                .is_some_and(|w| w.contains("from --no-verify-ssl:")
                    && w.contains("remove --no-verify-ssl")
                    && !w.contains(" in :")),
            "{w:?}"
        );
        let f = loaded("Version: 2\nRegion: x\nNoVerifySSL: true\n");
        let w = warning(ok(resolve(&cli(&[]), Some(&f), Machine::default())));
        assert!(
            w.as_deref()
                .is_some_and(|w| w.contains("from NoVerifySSL in /x/cfg.yaml (line 3):")
                    && w.contains("set NoVerifySSL: false")),
            "{w:?}"
        );
        // `--no-verify-ssl=false` is not given at all: the file's `true` stands.
        let c = ok(resolve(
            &cli(&["--no-verify-ssl=false"]),
            Some(&f),
            Machine::default(),
        ));
        assert!(c.no_verify_ssl);
        let f = loaded("Version: 2\nNoVerifySSL: false\n");
        let c = ok(resolve(&cli(&[]), Some(&f), Machine::default()));
        assert!(!c.no_verify_ssl && warning(c).is_none());
    }

    #[test]
    fn a_bad_url_in_the_file_names_the_key_and_line() {
        let err = |text: &str| match resolve(&cli(&[]), Some(&loaded(text)), Machine::default()) {
            Ok(c) => panic!("accepted {c:?}"),
            Err(e) => e.to_string(),
        };
        let e = err("Version: 2\nRegion: x\nEndpoint: xray.local:4000\n");
        assert!(
            e.contains("Endpoint in /x/cfg.yaml (line 3)") && e.contains("http://"),
            "{e}"
        );
        let e = err("Version: 2\nProxyAddress: http://u:hunter2@proxy:port\n");
        assert!(
            e.contains("ProxyAddress in /x/cfg.yaml (line 2)")
                && e.contains("port")
                && !e.contains("hunter2"),
            "{e}"
        );
        let e = err("Version: 2\nEndpoint: https://me:pw@xray.local\n");
        assert!(
            e.contains("Endpoint in /x/cfg.yaml (line 2)")
                && e.contains("no user name")
                && !e.contains("pw@"),
            "{e}"
        );
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
            parse_listen_addr(s, &Source::Flag("-b"))
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
        assert!(p("two words:2000").is_err_and(|e| e.contains("host name")));
    }

    /// A host name is kept as given by `resolve` (which makes no lookup), and looked up only
    /// when binding: it used to be looked up while the config was read, before the log began.
    #[test]
    fn a_host_name_to_listen_on_is_looked_up_only_when_binding() {
        let c = ok(resolve(
            &cli(&["-b", "xray-sidecar.invalid:2000", "-t", "db_1.invalid:2001"]),
            None,
            Machine::default(),
        ));
        assert_eq!(c.udp_addr.to_string(), "xray-sidecar.invalid:2000");
        assert_eq!((c.udp_addr.as_ip(), c.udp_addr.port()), (None, 2000));
        assert_eq!(c.tcp_addr.to_string(), "db_1.invalid:2001");
        // `.invalid` never resolves (RFC 6761): the error names the setting.
        let e = c.udp_addr.look_up().map_err(|e| e.to_string());
        assert!(
            e.as_ref().is_err_and(|e| e.contains("-b/--bind")
                && e.contains("xray-sidecar.invalid:2000")
                && e.contains("does not resolve")),
            "{e:?}"
        );
        let local = ok(resolve(
            &cli(&["-b", "localhost:0"]),
            None,
            Machine::default(),
        ));
        assert_eq!(
            local.udp_addr.look_up().ok(),
            Some(SocketAddr::from(([127, 0, 0, 1], 0)))
        );
    }

    /// A region goes into host names (`xray.REGION.amazonaws.com`): one that is not a single
    /// DNS label is refused with the config, before anything can look it up.
    #[test]
    fn a_region_that_is_not_one_dns_label_is_refused() {
        for bad in [
            "x.y",
            "us-east-1.evil.com",
            "us east 1",
            "-us-east-1",
            "a/b",
        ] {
            match resolve(&cli(&["-n", bad]), None, Machine::default()) {
                Err(e) => assert!(
                    e.to_string().contains("-n/--region") && e.to_string().contains("us-east-1"),
                    "{e}"
                ),
                Ok(c) => panic!("{bad} accepted: {:?}", c.region),
            }
        }
        let f = loaded("Version: 2\nRegion: x.y\n");
        let e = resolve(&cli(&[]), Some(&f), Machine::default()).map(|c| c.region);
        assert!(
            e.as_ref()
                .is_err_and(|e| e.to_string().contains("Region in /x/cfg.yaml (line 2)")),
            "{e:?}"
        );
        for good in [
            "us-east-1",
            "us-gov-west-1",
            "cn-north-1",
            "us-isob-east-1",
            "local",
        ] {
            let c = ok(resolve(&cli(&["-n", good]), None, Machine::default()));
            assert_eq!(c.region.as_deref(), Some(good));
        }
        let c = ok(resolve(&cli(&["-n", " "]), None, Machine::default()));
        assert_eq!(c.region, None, "blank is unset");
    }

    #[test]
    fn buffer_is_one_percent_of_the_smaller_of_cgroup_and_ram() {
        let m = |c, t| Machine {
            cgroup_limit: c,
            total_memory: t,
            ..Machine::default()
        };
        let b = |c, t| {
            buffer_budget(&given(0), &m(c, t))
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
        assert!(buffer_budget(&given(2), &m(None, None)).is_err());
        assert_eq!(
            buffer_budget(&given(3), &m(None, None)).map(|x| x.0).ok(),
            Some(3 << 20)
        );
        assert_eq!(
            buffer_budget(&given(0), &m(None, Some(1000 * (1 << 20))))
                .map(|x| x.0)
                .ok(),
            Some(10 << 20)
        );
    }

    #[test]
    fn a_buffer_above_the_memory_available_is_refused_naming_the_flag_and_the_key() {
        let m = |c, t| Machine {
            cgroup_limit: c,
            total_memory: t,
            ..Machine::default()
        };
        let host = m(None, Some(8 * GIB));
        let e = resolve(&cli(&["-m", "9223372036854775807"]), None, host.clone())
            .map(|c| c.buffer_bytes)
            .map_err(|e| e.to_string());
        assert!(
            e.as_ref().is_err_and(|e| e.contains("-m/--buffer-memory")
                && e.contains("TotalBufferSizeMB")
                && e.contains("at most 8192")
                && e.contains("the host's RAM")),
            "{e:?}"
        );
        let f = loaded("Version: 2\nTotalBufferSizeMB: 8193\n");
        let e = resolve(&cli(&[]), Some(&f), host.clone()).map_err(|e| e.to_string());
        assert!(
            e.as_ref().is_err_and(
                |e| e.contains("TotalBufferSizeMB in /x/cfg.yaml (line 2)") && e.contains("-m")
            ),
            "{e:?}"
        );
        // The container's limit is the one that counts when it is lower.
        let container = m(Some(512 << 20), Some(8 * GIB));
        let e = buffer_budget(&given(513), &container).map_err(|e| e.to_string());
        assert!(
            e.as_ref()
                .is_err_and(|e| e.contains("at most 512") && e.contains("container")),
            "{e:?}"
        );
        // At the limit is accepted; so is anything when the memory is unknown.
        assert_eq!(
            buffer_budget(&given(8192), &host).map(|x| x.0 as u64).ok(),
            Some(8 * GIB)
        );
        assert_eq!(
            buffer_budget(&given(512), &container).map(|x| x.0).ok(),
            Some(512 << 20)
        );
        assert!(buffer_budget(&given(i64::MAX), &m(None, None)).is_ok());
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

    /// The original's rule: a value that does not parse exits 2 (clap refuses it), one out of
    /// range exits 1 (`resolve` refuses it, naming the flag). `--log-rotate-bytes 0` and
    /// `--concurrency -1` were refused by clap, so exited 2.
    #[test]
    fn numbers_out_of_range_are_config_errors_and_non_numbers_usage_errors() {
        let out_of_range = [
            ("--log-rotate-bytes", "0"),
            ("--log-rotate-bytes", "-1"),
            ("--concurrency", "-1"),
            ("--concurrency", "0"),
            ("--max-segment-size", "-1"),
            ("--max-segment-size", "63"),
            ("--retry-max-attempts", "0"),
            ("--retry-max-attempts", "-3"),
            ("--retry-max-attempts", "4294967296"),
            ("--otlp-max-request-bytes", "-1"),
            ("-m", "2"),
            ("--shutdown-timeout", "-1"),
            ("--upload-timeout", "0"),
            ("--telemetry-interval", "-1"),
            ("--proxy-client-timeout", "0"),
            ("--proxy-upstream-timeout", "0"),
            ("--retry-max-age", "-1"),
        ];
        for (flag, value) in out_of_range {
            match resolve(&cli(&[flag, value]), None, Machine::default()) {
                Err(e) => assert!(
                    e.to_string().contains(flag) && e.to_string().contains(value),
                    "{flag} {value}: {e}"
                ),
                Ok(_) => panic!("{flag} {value} accepted"),
            }
        }
        let parse = |words: &[&str]| {
            let args = match args::normalize(words.iter().map(std::ffi::OsString::from)) {
                Ok(args::Invocation::Daemon { args, .. }) => args,
                other => panic!("{other:?}"),
            };
            cli::Cli::try_parse_from(args).map(|_| ())
        };
        for flag in out_of_range.map(|(flag, _)| flag) {
            assert!(parse(&[flag, "lots"]).is_err(), "{flag} lots parses");
        }
        let c = ok(resolve(
            &cli(&["--log-rotate-bytes", "1", "--retry-max-attempts", "1"]),
            None,
            Machine::default(),
        ));
        assert_eq!(c.log.rotation.map(|r| r.max_bytes), Some(1));
        assert_eq!(c.retry.max_attempts, 1);
    }

    #[test]
    fn a_shutdown_timeout_of_a_day_is_accepted() {
        let c = ok(resolve(
            &cli(&["--shutdown-timeout", "86400"]),
            None,
            Machine::default(),
        ));
        assert_eq!(c.shutdown_timeout, std::time::Duration::from_secs(86400));
    }
}
