//! The `xray` binary: flags → resolved config → logging → runtime → [`app::run`] → exit code.
//!
//! Exit codes as the original daemon's: 0 after help, version or a clean shutdown; 2 for a
//! usage error (unknown flag, bad value); 1 for a configuration or startup error.

use std::process::ExitCode;

use clap::Parser;
use xray_daemon::config::{self, cli::Cli};
use xray_daemon::{app, logging, shutdown};

fn main() -> ExitCode {
    // `xray health [ADDR] …`: the container health check (src/health.rs), not the daemon.
    if std::env::args_os().nth(1).is_some_and(|a| a == "health") {
        return xray_daemon::health::run(std::env::args_os().skip(2));
    }
    let cli = match Cli::try_parse() {
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
    let config = match config::resolve(&cli, config::Machine::detect()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xray: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = logging::init(config.log_level, config.log_file.as_deref()) {
        eprintln!(
            "xray: cannot write the log file {}: {e}. Fix its directory's permissions or choose another file with -f",
            config
                .log_file
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
        return ExitCode::from(1);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
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
        let token = shutdown::install()
            .map_err(|e| anyhow::anyhow!("cannot install signal handlers: {e}"))?;
        app::run(config, bound, token).await?;
        anyhow::Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("xray: {e:#}");
            ExitCode::from(1)
        }
    }
}
