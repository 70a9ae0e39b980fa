//! Process plumbing every service binary shares: logging to stdout, and the shutdown signal.

use std::future::Future;
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Logs to stdout (`json` or human-readable `pretty`), filtered by `RUST_LOG` (default
/// `info`), with colours only on a terminal. The first line a service logs when it
/// listens carries `addr=` and `url=`, which tests and launchers read.
pub fn init_tracing(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .with_ansi(std::io::stdout().is_terminal());
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// A future that completes on SIGTERM or SIGINT (Ctrl-C). Both handlers are installed when
/// this is called, not when the future is first polled, so a signal that comes early still
/// ends the program cleanly. Call it inside a Tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let handlers = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        )
    };
    async move {
        #[cfg(unix)]
        match handlers {
            (Ok(mut terminate), Ok(mut interrupt)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                return;
            }
            (terminate, interrupt) => {
                if let Err(error) = terminate.and(interrupt) {
                    tracing::warn!(%error, "cannot listen for SIGTERM or SIGINT; falling back to Ctrl-C");
                }
            }
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
