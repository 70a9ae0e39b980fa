//! `chaos-monkey`: with no subcommand, the lab's daemon (README.md, "Chaos experiments, step
//! by step") — every
//! `CHAOS_INTERVAL` seconds, with probability `FAILURE_PROBABILITY`, one fault on one of
//! `TARGET_SERVICES` for `CHAOS_DURATION` seconds, through the llm-service fault API.
//!
//! `chaos-monkey healthcheck` is the container health check: the daemon rewrites a heartbeat
//! file every 10 s (it serves no HTTP), the check fails when it is older than 30 s.
//!
//! Safety of the daemon: every fault carries its own duration, so the llm-service removes
//! it even if the monkey dies; on SIGTERM or Ctrl-C the monkey removes the faults it still
//! has in place before it exits.

mod daemon;
mod experiment;
mod heartbeat;
mod proxy;
mod token;

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
    /// Exits 0 when the daemon's heartbeat is fresh (for containers).
    Healthcheck(heartbeat::HealthcheckArgs),
}

/// What runs inside the runtime (`list` and `healthcheck` answer without one).
enum Work {
    Run(Box<experiment::RunArgs>),
    Proxy(proxy::ProxyArgs),
    Daemon(daemon::DaemonArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let work = match cli.command {
        Some(Command::List) => return experiment::list(),
        Some(Command::Healthcheck(check)) => {
            return check.run(&heartbeat::path(cli.daemon.heartbeat_file.as_deref()));
        }
        Some(Command::Run(args)) => Work::Run(args),
        Some(Command::Proxy(args)) => Work::Proxy(args),
        None => Work::Daemon(cli.daemon),
    };
    let _log = http_edge::process::init_tracing(&cli.log_format);
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
        match work {
            Work::Run(args) => experiment::run(*args, shutdown).await,
            Work::Proxy(args) => proxy::serve(args, shutdown)
                .await
                .map(|()| ExitCode::SUCCESS),
            Work::Daemon(args) => daemon::run(args, shutdown)
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
