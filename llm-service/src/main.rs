//! `llm-service` binary: configuration → tracing → bind → [`llm_service::run`] until
//! SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use llm_service::config::Config;
use tokio::net::TcpListener;

fn main() -> ExitCode {
    let config = Config::parse();
    let problems = config.problems();
    if !problems.is_empty() {
        for problem in problems {
            eprintln!("llm-service: invalid setting {problem}");
        }
        return ExitCode::from(2);
    }
    http_edge::process::init_tracing(&config.log_format);
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
