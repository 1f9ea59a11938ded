//! Signals → one [`CancellationToken`] for shutdown, and a second one for "exit now".
//!
//! | signal | what the daemon does |
//! |---|---|
//! | SIGTERM, SIGINT, SIGQUIT | the first cancels [`Signals::shutdown`]: the edges stop taking input and the middle drains under the shutdown deadline (see [`crate::app`]), then exit 0 |
//! | the same, again, during the drain | cancels [`Signals::exit_now`]: the drain is given up, what is still held is logged as lost with the summary line, exit 1 |
//! | SIGHUP | calls the hang-up hook (the binary reopens the `-f` log file, as logrotate expects) |
//! | SIGUSR1, SIGUSR2 | logged (Info) and ignored |
//!
//! The original daemon dies at once on SIGHUP, dumps its goroutines and exits 2 on SIGQUIT, and
//! swallows a second SIGTERM, so only SIGKILL ends a hung drain.

use tokio_util::sync::CancellationToken;

/// The two tokens the signals cancel.
#[derive(Clone, Debug, Default)]
pub struct Signals {
    /// Cancelled by the first SIGTERM, SIGINT or SIGQUIT: drain and stop.
    pub shutdown: CancellationToken,
    /// Cancelled by a second one, during the drain: stop draining and exit 1.
    pub exit_now: CancellationToken,
}

impl Signals {
    /// Tokens no signal cancels (for an in-process daemon, whose host stops it).
    pub fn new() -> Self {
        Self::default()
    }
}

/// Installs the signal handlers and returns the tokens they cancel. `on_hangup` runs on each
/// SIGHUP, on the runtime's thread (it must not block).
pub fn install(on_hangup: impl Fn() + Send + 'static) -> std::io::Result<Signals> {
    let signals = Signals::new();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut quit = signal(SignalKind::quit())?;
        let mut hup = signal(SignalKind::hangup())?;
        let mut usr1 = signal(SignalKind::user_defined1())?;
        let mut usr2 = signal(SignalKind::user_defined2())?;
        let tokens = signals.clone();
        tokio::spawn(async move {
            loop {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                    _ = quit.recv() => "SIGQUIT",
                    _ = hup.recv() => {
                        on_hangup();
                        continue;
                    }
                    _ = usr1.recv() => {
                        tracing::info!("Got SIGUSR1: ignored");
                        continue;
                    }
                    _ = usr2.recv() => {
                        tracing::info!("Got SIGUSR2: ignored");
                        continue;
                    }
                };
                if tokens.shutdown.is_cancelled() {
                    tracing::warn!("Got {name} again: giving up the drain");
                    tokens.exit_now.cancel();
                } else {
                    tracing::info!(
                        "Got {name}: no longer receiving; sending what is buffered (a second \
                         SIGTERM or SIGINT gives up what is still held and exits 1)"
                    );
                    tokens.shutdown.cancel();
                }
            }
        });
    }
    #[cfg(not(unix))]
    {
        let _ = on_hangup;
        let tokens = signals.clone();
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                if tokens.shutdown.is_cancelled() {
                    tokens.exit_now.cancel();
                } else {
                    tokens.shutdown.cancel();
                }
            }
        });
    }
    Ok(signals)
}
