//! The `xray` binary: arguments → resolved config → logging → runtime → [`app::run`] → exit
//! code.
//!
//! Exit codes as the original daemon's: 0 after help, version or a clean shutdown; 2 for a
//! usage error (unknown flag, a value that does not parse); 1 for a configuration or startup
//! error (a number out of range among them), and (ours) when a second SIGTERM or SIGINT gives
//! up the drain. A config error is written to standard
//! error as a log line, and also to the `-f` log file if one was given, like the original (its
//! directories are made, as for the log). Once logging has started, lines go through its
//! writer thread; the guard [`logging::init`] returns is held to the end of `main`, so the
//! lines still queued (the final summary among them) are written before the process exits.

use std::ffi::OsString;
use std::process::ExitCode;

use tracing::Level;
use xray_daemon::config::args::{self, Invocation};
use xray_daemon::config::{self, cli::Cli, file};
use xray_daemon::{app, logging, shutdown};

/// mimalloc instead of the C library's allocator: documents are allocated on the receiving
/// thread and freed on the uploading one, where glibc's malloc took 14% of the daemon's CPU at
/// 150k segments/s, partly waiting on its arena lock, and kept the peak's memory after load
/// (measured with the benchmark, bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long after a second SIGTERM or SIGINT the process exits even if the daemon has not
/// answered it (it answers at once during the drain).
const EXIT_NOW_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

fn main() -> ExitCode {
    let (args, ignored) = match args::normalize(std::env::args_os().skip(1)) {
        Ok(Invocation::Daemon { args, ignored }) => (args, ignored),
        Ok(Invocation::Subcommand { name, args }) => return subcommand(name, args),
        Err(e) => {
            eprintln!("xray: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = match Cli::parse_words(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(2),
            };
        }
    };
    if cli.version {
        println!(
            "AWS X-Ray daemon (xray-daemon-rs) version: {}",
            app::VERSION
        );
        return ExitCode::SUCCESS;
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let loaded = match file::locate(cli.config.as_deref(), &cwd) {
        None => None,
        Some((path, from_flag)) => match file::load(&path, from_flag) {
            Ok(l) => Some(l),
            Err(e) => return config_error(&cli, &e.to_string()),
        },
    };
    let config = match config::resolve(&cli, loaded.as_ref(), config::Machine::detect()) {
        Ok(c) => c,
        Err(e) => return config_error(&cli, &e.to_string()),
    };
    // Kept to the end of `main`: dropped last, it writes the lines still queued (the final
    // summary among them), waiting at most `logging::FLUSH_TIMEOUT`.
    let _log_writer = match logging::init(&config.log) {
        Ok(guard) => guard,
        Err(e) => return config_error(&cli, &e.to_string()),
    };
    if !ignored.is_empty() {
        tracing::warn!(
            "Ignored the arguments after the first word that is not a flag: {} (a flag's value \
             goes right after it or after '=', for example -o=false; remove the extra words)",
            ignored.join(" ")
        );
    }
    match &config.config_file {
        Some(path) => tracing::info!("Using config file {}", path.display()),
        None => tracing::debug!("No config file: using the flags and built-in defaults"),
    }
    for note in &config.notes {
        tracing::warn!("{note}");
    }
    log_settings(&config);
    raise_open_files_limit();
    // One runtime thread for batching, uploads, the proxy and telemetry; the UDP receiver has a
    // thread of its own (see `receiver`). Measured against two worker threads (bench/README.md): a
    // fifth less CPU per segment and more segments per second before loss, since nothing hops
    // between threads.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("xray: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let bound = app::bind(&config)?;
        let signals = shutdown::install(logging::reopen)
            .map_err(|e| anyhow::anyhow!("cannot install signal handlers: {e}"))?;
        let exit_now = signals.exit_now.clone();
        tokio::select! {
            biased;
            result = app::run(config, bound, signals) => {
                result?;
            }
            // The drain answers a second signal itself; this is for one that comes before the
            // drain started (a startup lookup still under way), which must not be ignored.
            () = async {
                exit_now.cancelled().await;
                tokio::time::sleep(EXIT_NOW_GRACE).await;
            } => {
                tracing::error!(
                    "A second signal came before the drain started: exiting without it"
                );
                return Err(app::StartupError::Interrupted { lost: 0 }.into());
            }
        }
        anyhow::Ok(())
    });
    // The drain is over (or its deadline passed): blocking work still running (a write to a
    // stuck pipe, say) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A second signal gave up the drain: the loss and the summary are logged already.
        Err(e)
            if matches!(
                e.downcast_ref::<app::StartupError>(),
                Some(app::StartupError::Interrupted { .. })
            ) =>
        {
            ExitCode::from(1)
        }
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("xray: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The settings the banner does not show, at Debug (the original logs the same facts there).
fn log_settings(config: &config::Config) {
    let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
    tracing::debug!(
        "ARN of the AWS resource running the daemon: {}",
        or_none(&config.resource_arn)
    );
    tracing::debug!("Role to assume: {}", or_none(&config.role_arn));
    tracing::debug!("Using proxy address: {}", or_none(&config.proxy_address));
    tracing::debug!(
        "Local mode: {}; upload concurrency: {}; TLS certificate checks: {}; log rotation: {}",
        config.local_mode,
        config.concurrency,
        if config.no_verify_ssl { "off" } else { "on" },
        config.log.rotation.map_or_else(
            || "off".to_owned(),
            |r| format!("at {} bytes, keeping {} old files", r.max_bytes, r.keep)
        ),
    );
}

/// A subcommand named as the first argument (see `config::args::SUBCOMMANDS`); each has its
/// own module.
fn subcommand(name: &str, args: Vec<OsString>) -> ExitCode {
    match name {
        // The container health check: a client of the running daemon, not the daemon.
        "health" => xray_daemon::health::run(args),
        _ => {
            eprintln!(
                "xray: the {name} subcommand is not available in this build; run `xray --help`"
            );
            ExitCode::from(2)
        }
    }
}

/// Reports a config or startup problem found before logging starts: a log line on standard
/// error, and in the `-f` file if one was given (best effort; its directories are created, as
/// for the log itself). Exit code 1.
fn config_error(cli: &Cli, message: &str) -> ExitCode {
    let line = logging::line_in(cli.log_format.unwrap_or_default(), Level::ERROR, message);
    eprintln!("{line}");
    if let Some(path) = cli
        .log_file
        .as_deref()
        .filter(|p| !p.as_os_str().is_empty())
    {
        // The line is on standard error already; the file is a copy.
        let _ = logging::append_line(path, &line);
    }
    ExitCode::from(1)
}

/// Raises the soft limit on open files to the hard one, as Go programs (the original daemon
/// among them) do at start: TCP clients hold a descriptor each, and the usual soft limit
/// (1,024) would be reached before the listeners' connection cap. Where it cannot be raised
/// (a seccomp filter, as in the systemd unit, which sets `LimitNOFILE` instead), nothing
/// changes.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!("Raised the open files limit from {soft} to {hard}"),
            Err(e) => tracing::debug!("Could not raise the open files limit from {soft}: {e}"),
        },
        _ => {}
    }
}
