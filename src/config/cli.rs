//! The command line: the original daemon's 13 options (same short and long names), plus ours.
//!
//! Values stay `Option`s here so that [`crate::config::resolve`] can tell a flag that was given
//! from one that was not, and let a given flag beat the config file.
//!
//! The original's rule for exit codes: a value that does not parse is a usage error (exit 2),
//! a value that parses but is out of range is a config error (exit 1). So every number is read
//! here as a signed one of its kind (`i64`, `f64`), whatever its range, and its range is checked
//! in `resolve`: `--concurrency -1` and `--log-rotate-bytes 0` exit 1 naming the flag, as
//! `-m 2` does; `--concurrency lots` exits 2.
//!
//! clap sees the command line only after [`super::args::normalize`] has rewritten the
//! original's spellings (`-bind`, `--b`, `-n=x`, `-o=false`, repeats) into `--long=value`, so
//! the parse here is the original's.

use std::path::PathBuf;

use clap::Parser;

use crate::logging::LogFormat;
use crate::sink::SinkSpec;

// The subcommands (`xray health`) are taken off the command line before clap sees it
// (`args::normalize`), so the usage line and the text after the flags name them here. (A
// second paragraph of the doc comment below would become clap's long help text.)
/// AWS X-Ray daemon, drop-in: receives segments on UDP and relays them to AWS X-Ray.
#[derive(Debug, Default, Clone, Parser)]
#[command(
    name = "xray",
    override_usage = usage(),
    after_help = subcommands_help(),
    disable_version_flag = true,
    // As the original's flags: a flag given again wins (the image's entrypoint passes -t and
    // -b; a task definition's command may pass them again).
    args_override_self = true,
    about = "Receives X-Ray segments on UDP and relays them to AWS X-Ray (a drop-in for the AWS X-Ray daemon)"
)]
pub struct Cli {
    /// Amazon Resource Name (ARN) of the AWS resource running the daemon (sent in telemetry).
    #[arg(short = 'a', long = "resource-arn", value_name = "ARN")]
    pub resource_arn: Option<String>,

    /// Don't check for EC2 instance metadata (region, instance id).
    #[arg(
        short = 'o',
        long = "local-mode",
        num_args = 0..=1,
        default_missing_value = "true",
        require_equals = true,
        value_name = "BOOL"
    )]
    pub local_mode: Option<bool>,

    /// Buffer memory in MB (minimum 3). Default: 1% of the memory available to the daemon (the
    /// container's limit, else the host's RAM), at least 3 MB.
    #[arg(
        short = 'm',
        long = "buffer-memory",
        value_name = "MB",
        allow_negative_numbers = true
    )]
    pub buffer_memory: Option<i64>,

    /// Send segments to this AWS region.
    #[arg(short = 'n', long = "region", value_name = "REGION")]
    pub region: Option<String>,

    /// UDP address to receive segments on.
    #[arg(short = 'b', long = "bind", value_name = "HOST:PORT")]
    pub bind: Option<String>,

    /// TCP address of the sampling proxy and the daemon's own stats and health paths.
    #[arg(short = 't', long = "bind-tcp", value_name = "HOST:PORT")]
    pub bind_tcp: Option<String>,

    /// IAM role to assume (through STS) for every call to AWS.
    #[arg(short = 'r', long = "role-arn", value_name = "ARN")]
    pub role_arn: Option<String>,

    /// Load this YAML configuration file (checked strictly) instead of /etc/amazon/xray/cfg.yaml
    /// or ./cfg.yaml; flags given here still win over it.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Write the log to this file instead of standard output.
    #[arg(short = 'f', long = "log-file", value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// Log level: dev, debug, info, warn, error or prod (prod is info).
    #[arg(
        short = 'l',
        long = "log-level",
        value_name = "LEVEL",
        value_parser = ["dev", "debug", "info", "warn", "error", "prod"]
    )]
    pub log_level: Option<String>,

    /// Proxy through which to call AWS (for example http://proxy.example:3128).
    #[arg(short = 'p', long = "proxy-address", value_name = "URL")]
    pub proxy_address: Option<String>,

    /// Print the version and exit.
    #[arg(short = 'v', long = "version")]
    pub version: bool,

    /// [ours] X-Ray API endpoint URL (the config file's Endpoint), e.g. a local test server.
    #[arg(long = "endpoint", value_name = "URL")]
    pub endpoint: Option<String>,

    /// [ours] Where segments go: xray (PutTraceSegments), stdout (a readable line each) or
    /// file:PATH (JSON Lines). Repeat to send to several. Default: xray.
    #[arg(long = "sink", value_name = "SINK")]
    pub sink: Vec<SinkSpec>,

    /// [ours] Upload calls in flight at once (the config file's Concurrency). Default 8.
    #[arg(long = "concurrency", value_name = "N", allow_negative_numbers = true)]
    pub concurrency: Option<i64>,

    /// [ours] Largest segment document accepted, in bytes. Default 65536.
    #[arg(
        long = "max-segment-size",
        value_name = "BYTES",
        allow_negative_numbers = true
    )]
    pub max_segment_size: Option<i64>,

    /// [ours] On SIGTERM/SIGINT, how long to keep sending what is buffered, in seconds. Default 25.
    #[arg(long = "shutdown-timeout", value_name = "SECONDS")]
    pub shutdown_timeout: Option<f64>,

    /// [ours] Log line format: text (the original's lines) or json (one object a line).
    #[arg(long = "log-format", value_name = "FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// [ours] Rotate the log file when it would grow past this many bytes. Default 52428800
    /// (50 MiB, as the original). Ignored when Logging.LogRotation is false.
    #[arg(
        long = "log-rotate-bytes",
        value_name = "BYTES",
        allow_negative_numbers = true
    )]
    pub log_rotate_bytes: Option<i64>,

    // The trace viewer
    /// [ours] Serve the trace viewer on the TCP address: http://127.0.0.1:2000/ shows every
    /// trace received, live (config Viewer.Enabled).
    #[arg(long = "viewer")]
    pub viewer: bool,

    /// [ours] The viewer's store, in MB: past it the least recently updated traces are
    /// forgotten. Default 16 (config Viewer.MemoryMB).
    #[arg(
        long = "viewer-memory",
        value_name = "MB",
        allow_negative_numbers = true
    )]
    pub viewer_memory: Option<i64>,

    /// [ours] Let browsers on other hosts open the viewer (the compose case), with the token
    /// the daemon prints in its banner (config Viewer.AllowRemote).
    #[arg(long = "viewer-allow-remote")]
    pub viewer_allow_remote: bool,

    // The sampling proxy
    /// [ours] Forward only the SDKs' sampling calls (POST /GetSamplingRules and POST
    /// /SamplingTargets) through the TCP proxy; other paths get 404.
    #[arg(long = "proxy-sampling-only")]
    pub proxy_sampling_only: bool,

    /// [ours] How long a TCP proxy client may take to send a request's headers, and again its
    /// body, in seconds. Default 10.
    #[arg(long = "proxy-client-timeout", value_name = "SECONDS")]
    pub proxy_client_timeout: Option<f64>,

    /// [ours] How long the TCP proxy's call to X-Ray may take, in seconds. Default 10.
    #[arg(long = "proxy-upstream-timeout", value_name = "SECONDS")]
    pub proxy_upstream_timeout: Option<f64>,

    /// [ours] The config file's NoVerifySSL: do not verify TLS certificates of AWS endpoints.
    #[arg(long = "no-verify-ssl")]
    pub no_verify_ssl: bool,

    // Delivery
    /// [ours] Upload attempts per segment, the first included, before it is given up (counted
    /// as retries_exhausted). Default 10.
    #[arg(
        long = "retry-max-attempts",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub retry_max_attempts: Option<i64>,

    /// [ours] Seconds after a segment's first failed upload when it is given up. Default 300.
    #[arg(long = "retry-max-age", value_name = "SECONDS")]
    pub retry_max_age: Option<f64>,

    /// [ours] Seconds one call to X-Ray (segments, telemetry) may take before it is given up
    /// and its segments are tried again; after a timeout only one batch is sent until a call
    /// succeeds. Default 10.
    #[arg(long = "upload-timeout", value_name = "SECONDS")]
    pub upload_timeout: Option<f64>,

    /// [ours] Seconds between telemetry records (PutTelemetryRecords). Default 60.
    #[arg(long = "telemetry-interval", value_name = "SECONDS")]
    pub telemetry_interval: Option<f64>,

    /// [ours] Send no telemetry records.
    #[arg(long = "no-telemetry")]
    pub no_telemetry: bool,

    // OpenTelemetry in
    /// [ours] Receive OTLP/HTTP traces (`POST /v1/traces`, protobuf or JSON) on this TCP
    /// address, for example 127.0.0.1:4318 (0.0.0.0:4318 in a container). Off by default.
    #[arg(long = "otlp-http", value_name = "HOST:PORT")]
    pub otlp_http: Option<String>,

    /// [ours] Receive OTLP/gRPC traces (`TraceService/Export`, gzip or not) on this TCP
    /// address, for example 127.0.0.1:4317 (0.0.0.0:4317 in a container). Off by default.
    #[arg(long = "otlp-grpc", value_name = "HOST:PORT")]
    pub otlp_grpc: Option<String>,

    /// [ours] The largest OTLP request body accepted, in bytes, after decompression
    /// (larger ones get 413). Default 20971520 (20 MiB).
    #[arg(
        long = "otlp-max-request-bytes",
        value_name = "BYTES",
        allow_negative_numbers = true
    )]
    pub otlp_max_request_bytes: Option<i64>,

    /// [ours] Span attributes that become X-Ray annotations (searchable), comma-separated;
    /// the others go to metadata.
    #[arg(
        long = "indexed-attributes",
        value_name = "KEY,...",
        value_delimiter = ','
    )]
    pub indexed_attributes: Vec<String>,

    /// [ours] Every span attribute becomes an X-Ray annotation.
    #[arg(long = "index-all-attributes")]
    pub index_all_attributes: bool,

    /// [ours] How spans go to X-Ray (--sink xray): segments (converted to X-Ray segment
    /// documents, PutTraceSegments; the default) or otlp (unchanged, as OTLP to X-Ray's OTLP
    /// endpoint, /v1/traces; the account needs CloudWatch Transaction Search). X-Ray SDK
    /// segments go to PutTraceSegments either way.
    #[arg(long = "otlp-to-xray", value_name = "MODE", value_enum)]
    pub otlp_to_xray: Option<super::ToXray>,

    /// [ours] A header for the --sink otlp given before it (repeatable), for example
    /// x-honeycomb-team=KEY. Command lines show in `ps`: keep API keys in
    /// OTEL_EXPORTER_OTLP_HEADERS with a bare --sink otlp.
    #[arg(long = "otlp-header", value_name = "NAME=VALUE")]
    pub otlp_header: Vec<String>,

    /// [ours] service.name of X-Ray subsegments sent to --sink otlp whose segment the daemon
    /// has not seen. Default unknown_service:xray.
    #[arg(long = "otlp-service-name", value_name = "NAME")]
    pub otlp_service_name: Option<String>,

    /// For each --otlp-header, the position among the --sink flags of the one before it.
    #[arg(skip)]
    pub otlp_header_at: Vec<Option<usize>>,

    // Stats
    /// [ours] Also serve /daemon/stats, /daemon/metrics and /daemon/health on this TCP address
    /// (for example 0.0.0.0:2100 for a Prometheus scraper); nothing is forwarded there.
    #[arg(long = "stats-address", value_name = "HOST:PORT")]
    pub stats_address: Option<String>,
}

impl Cli {
    /// Parses the canonical words [`super::args::normalize`] gives (`--long=value`), and
    /// notes which `--sink` each `--otlp-header` follows.
    pub fn parse_words(words: Vec<std::ffi::OsString>) -> Result<Cli, clap::Error> {
        let mut cli = Cli::try_parse_from(words.iter())?;
        let mut sinks_seen = 0usize;
        for word in words.iter().skip(1) {
            let word = word.to_string_lossy();
            if word.starts_with("--sink=") || word == "--sink" {
                sinks_seen += 1;
            } else if word.starts_with("--otlp-header=") || word == "--otlp-header" {
                cli.otlp_header_at.push(sinks_seen.checked_sub(1));
            }
        }
        Ok(cli)
    }

    /// Each `--otlp-header` with the position of the `--sink` it follows (see
    /// [`Cli::parse_words`]; `None` where it follows none).
    pub fn otlp_header_owners(&self) -> Vec<(Option<usize>, String)> {
        self.otlp_header
            .iter()
            .enumerate()
            .map(|(i, h)| (self.otlp_header_at.get(i).copied().flatten(), h.clone()))
            .collect()
    }
}

/// The usage line: the daemon, then each subcommand.
fn usage() -> String {
    format!("xray [OPTIONS]\n       {}", crate::health::USAGE)
}

/// The subcommands, listed after the flags as clap lists its own.
fn subcommands_help() -> String {
    format!(
        "Commands:\n  {}\n          {}",
        crate::health::USAGE,
        crate::health::SUMMARY
    )
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// `xray health` was missing from `--help`: the daemon's help names it, in the usage and
    /// after the flags, with the arguments `xray health --help` takes.
    #[test]
    fn help_names_the_health_subcommand() {
        let help = Cli::command().render_long_help().to_string();
        assert!(
            help.contains("Usage: xray [OPTIONS]\n       xray health [HOST:PORT] [--max-upload-failure SECONDS]"),
            "{help}"
        );
        assert!(
            help.contains("Commands:\n  xray health [HOST:PORT]")
                && help.contains("exit 0 if it is"),
            "{help}"
        );
        assert!(
            super::super::args::SUBCOMMANDS
                .iter()
                .all(|name| help.contains(&format!("xray {name} "))),
            "every subcommand is named: {help}"
        );
    }
}
