//! Process plumbing every service binary shares: logging to stdout, and the shutdown signal.

use std::future::Future;
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::logwriter::{BatchedLog, FlushGuard};

/// Logs to stdout (`json` or human-readable `pretty`), filtered by `RUST_LOG` (default
/// `info`), with colours only on a terminal. The first line a service logs when it
/// listens carries `addr=` and `url=`, which tests and launchers read.
///
/// Lines are written in batches by a thread of their own ([`BatchedLog`]): a line reaches
/// stdout within [`crate::logwriter::FLUSH_INTERVAL`]. Keep the returned guard until the
/// program ends: dropping it writes what is still waiting. Without a thread for it (the
/// system refused one), lines go to stdout directly and there is no guard.
#[must_use = "dropping the guard stops logging; keep it until the program ends"]
pub fn init_tracing(format: &str) -> Option<FlushGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stdout().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    let (writer, guard) = match BatchedLog::new(std::io::stdout()) {
        Ok((log, guard)) => {
            if format == "json" {
                let _ = JSON_SINK.set(log.clone());
            }
            (BoxMakeWriter::new(log), Some(guard))
        }
        Err(error) => {
            eprintln!("cannot start the log writer thread ({error}); logging directly");
            (BoxMakeWriter::new(std::io::stdout), None)
        }
    };
    let builder = builder.with_writer(writer);
    if format == "json" {
        // The current span's fields once ("span"), not again in a list of every span.
        builder.json().with_span_list(false).init();
    } else {
        builder.init();
    }
    guard
}

/// The batched stdout writer, when logs are JSON.
static JSON_SINK: std::sync::OnceLock<BatchedLog> = std::sync::OnceLock::new();

/// Where a line written by hand joins the formatter's JSON lines (the gateway's access log:
/// its one line per request costs a third of what the formatter takes); `None` when logs
/// are `pretty`, or go to stdout directly.
pub fn json_sink() -> Option<BatchedLog> {
    JSON_SINK.get().cloned()
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
