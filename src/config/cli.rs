//! The command line: the original daemon's 13 options (same short and long names), plus ours.
//!
//! Values stay `Option`s here so that [`crate::config::resolve`] can tell a flag that was given
//! from one that was not, and let a given flag beat the config file.

use std::path::PathBuf;

use clap::Parser;

use crate::sink::SinkSpec;

/// AWS X-Ray daemon, drop-in: receives segments on UDP and relays them to AWS X-Ray.
#[derive(Debug, Default, Clone, Parser)]
#[command(
    name = "xray",
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
    #[arg(short = 'o', long = "local-mode", num_args = 0..=1, default_missing_value = "true", require_equals = true, value_name = "BOOL")]
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

    /// Load a YAML configuration file.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Write the log to this file instead of standard output.
    #[arg(short = 'f', long = "log-file", value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// Log level: dev, debug, info, warn, error or prod (prod is info).
    #[arg(short = 'l', long = "log-level", value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Proxy address through which to call AWS (for example http://proxy:3128).
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
    #[arg(long = "concurrency", value_name = "N")]
    pub concurrency: Option<usize>,

    /// [ours] Largest segment document accepted, in bytes. Default 65536.
    #[arg(long = "max-segment-size", value_name = "BYTES")]
    pub max_segment_size: Option<usize>,

    /// [ours] On SIGTERM/SIGINT, how long to keep sending what is buffered, in seconds. Default 25.
    #[arg(long = "shutdown-timeout", value_name = "SECONDS")]
    pub shutdown_timeout: Option<f64>,
}
