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

/// A future that completes on SIGTERM or SIGINT (Ctrl-C). The SIGTERM handler is installed
/// when this is called, not when the future is first polled, so a signal that comes early
/// still shuts the service down cleanly. Call it inside a Tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        match terminate {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the service");
            }
        }
        let _ = interrupt.await;
    }
}
