//! `llm-service` binary: configuration → tracing → bind → [`llm_service::run`] until
//! SIGTERM or SIGINT. `llm-service healthcheck` is the container health check: one GET to
//! this host's `/health`, exit 0 when it answers 2xx (healthy or degraded).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use llm_service::config::Config;
use tokio::net::TcpListener;

/// The service's settings, and the optional subcommand.
#[derive(Debug, Parser)]
#[command(name = "llm-service", version, about)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Exits 0 when the service on this host answers `/health` with 2xx (for containers).
    Healthcheck(http_edge::healthcheck::HealthcheckArgs),
}

fn main() -> ExitCode {
    let Cli { config, command } = Cli::parse();
    if let Some(Command::Healthcheck(check)) = command {
        return check.run(config.host, config.port, "/health");
    }
    let problems = config.problems();
    if !problems.is_empty() {
        for problem in problems {
            eprintln!("llm-service: invalid setting {problem}");
        }
        return ExitCode::from(2);
    }
    let _log = http_edge::process::init_tracing(&config.log_format);
    // Spans over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; flushed (with a deadline)
    // when the guard drops, after the runtime has stopped.
    let _otel = http_edge::otel::init("llm-service");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("llm-service: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(start(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("llm-service failed: {error:#}");
            eprintln!("llm-service: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn start(config: Config) -> anyhow::Result<()> {
    // Listen for signals before anything else starts, so a SIGTERM that comes early still
    // deregisters and drains instead of killing the process outright.
    let shutdown = http_edge::process::shutdown_signal();
    let addr = SocketAddr::new(config.host, config.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (PORT/HOST): {e}"))?;
    llm_service::run(config, listener, shutdown).await
}
