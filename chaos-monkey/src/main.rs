//! `chaos-monkey`: with no subcommand, the lab's daemon (design §6) — every
//! `CHAOS_INTERVAL` seconds, with probability `FAILURE_PROBABILITY`, one fault on one of
//! `TARGET_SERVICES` for `CHAOS_DURATION` seconds, through the llm-service fault API.
//!
//! Safety of the daemon: every fault carries its own duration, so the llm-service removes
//! it even if the monkey dies; on SIGTERM or Ctrl-C the monkey removes the faults it still
//! has in place before it exits.

mod daemon;

use std::process::ExitCode;

use clap::Parser;

/// Injects faults into the llm-services.
#[derive(Debug, Parser)]
#[command(name = "chaos-monkey", version, about)]
struct Cli {
    #[command(flatten)]
    daemon: daemon::DaemonArgs,
    /// `pretty` or `json` logs.
    #[arg(long, env = "LOG_FORMAT", default_value = "pretty")]
    log_format: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    http_edge::process::init_tracing(&cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    // The signal handlers need the runtime: create them inside it.
    let daemon = async { daemon::run(cli.daemon, http_edge::process::shutdown_signal()).await };
    match runtime.block_on(daemon) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
