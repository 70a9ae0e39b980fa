//! `gateway` binary: configuration → tracing → bind → [`gateway::run`] until SIGTERM or
//! SIGINT. `gateway healthcheck` is the container health check: one GET to this host's
//! `/ready`, exit 0 when it answers 2xx.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use gateway::config::{Args, Config};
use tokio::net::TcpListener;

/// The gateway's settings, and the optional subcommand.
#[derive(Debug, Parser)]
#[command(name = "gateway", version, about)]
struct Cli {
    #[command(flatten)]
    args: Args,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Exits 0 when the gateway on this host answers `/ready` with 2xx (for containers).
    Healthcheck(http_edge::healthcheck::HealthcheckArgs),
}

fn main() -> ExitCode {
    let Cli { args, command } = Cli::parse();
    if let Some(Command::Healthcheck(check)) = command {
        return check.run(args.host, args.port, "/ready");
    }
    let config = match Config::load(args) {
        Ok(config) => config,
        Err(problems) => {
            for problem in problems {
                eprintln!("gateway: invalid setting {problem}");
            }
            return ExitCode::from(2);
        }
    };
    http_edge::process::init_tracing(&config.args.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("gateway: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(start(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("gateway failed: {error:#}");
            eprintln!("gateway: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn start(config: Config) -> anyhow::Result<()> {
    let shutdown = http_edge::process::shutdown_signal();
    let addr = SocketAddr::new(config.args.host, config.args.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (PORT/HOST): {e}"))?;
    gateway::run(config, listener, shutdown).await
}
