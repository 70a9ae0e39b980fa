//! `gateway` binary: configuration → tracing → bind → [`gateway::run`] until SIGTERM or
//! SIGINT. `gateway healthcheck` is the container health check: one GET to this host's
//! `/ready`, exit 0 when it answers 2xx.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use gateway::config::{Args, Settings};
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

/// jemalloc, whose background threads give memory freed after a burst (thousands of
/// connections, large bodies) back to the system within seconds, so RSS returns to its
/// baseline; glibc's arenas keep much of it.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let Cli { args, command } = Cli::parse();
    if let Some(Command::Healthcheck(check)) = command {
        return match args.listen() {
            Ok((host, port)) => check.run(host, port, "/ready"),
            Err(problems) => invalid(problems),
        };
    }
    let settings = match Settings::load(&args) {
        Ok(settings) => settings,
        Err(problems) => return invalid(problems),
    };
    let _log = http_edge::process::init_tracing(settings.log_format.as_str());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("gateway: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(start(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("gateway failed: {error:#}");
            eprintln!("gateway: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints every invalid setting; exit code 2.
fn invalid(problems: Vec<llm_api::FieldError>) -> ExitCode {
    for problem in problems {
        eprintln!("gateway: invalid setting {problem}");
    }
    ExitCode::from(2)
}

async fn start(settings: Settings) -> anyhow::Result<()> {
    let shutdown = http_edge::process::shutdown_signal();
    let addr = SocketAddr::new(settings.host, settings.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (PORT/HOST): {e}"))?;
    gateway::run(settings, listener, shutdown).await
}
