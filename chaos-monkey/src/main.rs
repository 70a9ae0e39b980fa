//! `chaos-monkey`: with no subcommand, the lab's daemon (design §6) — every
//! `CHAOS_INTERVAL` seconds, with probability `FAILURE_PROBABILITY`, one fault on one of
//! `TARGET_SERVICES` for `CHAOS_DURATION` seconds, through the llm-service fault API.
//!
//! Safety of the daemon: every fault carries its own duration, so the llm-service removes
//! it even if the monkey dies; on SIGTERM or Ctrl-C the monkey removes the faults it still
//! has in place before it exits.

mod daemon;
mod experiment;
mod proxy;

use std::process::ExitCode;

use clap::Parser;

/// Injects faults into the llm-services.
#[derive(Debug, Parser)]
#[command(name = "chaos-monkey", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    daemon: daemon::DaemonArgs,
    /// `pretty` or `json` logs.
    #[arg(long, env = "LOG_FORMAT", default_value = "pretty")]
    log_format: String,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// The experiments `run` knows.
    List,
    /// One experiment with a steady-state hypothesis, a guard, rollback and a journal.
    Run(Box<experiment::RunArgs>),
    /// A loopback TCP fault proxy with a Toxiproxy-compatible HTTP API.
    Proxy(proxy::ProxyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Some(Command::List)) {
        return experiment::list();
    }
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
    let work = async {
        let shutdown = http_edge::process::shutdown_signal();
        match cli.command {
            Some(Command::Run(args)) => experiment::run(*args, shutdown).await,
            Some(Command::Proxy(args)) => proxy::serve(args, shutdown)
                .await
                .map(|()| ExitCode::SUCCESS),
            Some(Command::List) => Ok(experiment::list()),
            None => daemon::run(cli.daemon, shutdown)
                .await
                .map(|()| ExitCode::SUCCESS),
        }
    };
    match runtime.block_on(work) {
        Ok(code) => code,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
