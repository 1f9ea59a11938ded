//! Signals → one [`CancellationToken`].
//!
//! The first SIGINT or SIGTERM cancels the token: the edges stop taking input and the middle
//! drains under the shutdown deadline (see [`crate::app`]). A second signal during the drain
//! ends the process at once, with exit code 130 (SIGINT) or 143 (SIGTERM), as a shell would.

use tokio_util::sync::CancellationToken;

/// Installs the signal handlers and returns the token they cancel.
pub fn install() -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let cancel = token.clone();
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(
                "Got {name}: no longer receiving; sending what is buffered (a second signal stops at once)"
            );
            cancel.cancel();
            let code = tokio::select! {
                _ = term.recv() => 143,
                _ = int.recv() => 130,
            };
            tracing::warn!("Second signal: exiting without finishing the drain");
            std::process::exit(code);
        });
    }
    #[cfg(not(unix))]
    {
        let cancel = token.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancel.cancel();
            }
        });
    }
    Ok(token)
}
