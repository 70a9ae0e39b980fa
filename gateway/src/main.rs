//! `gateway` binary: configuration → tracing → bind → [`gateway::run`] until SIGTERM or
//! SIGINT. `gateway healthcheck` is the container health check: one GET to this host's
//! `/ready`, exit 0 when it answers 2xx. `gateway keys` and `gateway token` mint an API key
//! and a JWT for testing ([`gateway::auth::mint`]); like the health check, they need no
//! other valid setting.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use gateway::auth::mint::{KeysArgs, MintError, TokenArgs};
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
    /// Mints an API key: prints it once, then the `API_KEYS_FILE` and `API_KEYS` entries
    /// that hold only its hash.
    Keys(KeysArgs),
    /// Mints an HS256 JWT signed with `JWT_SECRET_KEY` (for testing `AUTH_MODE=jwt`).
    Token(TokenArgs),
}

/// jemalloc, whose background threads give memory freed after a burst (thousands of
/// connections, large bodies) back to the system within seconds, so RSS returns to its
/// baseline; glibc's arenas keep much of it.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let Cli { args, command } = Cli::parse();
    match command {
        Some(Command::Healthcheck(check)) => {
            return match args.listen() {
                Ok((host, port)) => check.run(host, port, "/ready"),
                Err(problems) => invalid(problems),
            };
        }
        Some(Command::Keys(keys)) => return minted(keys.run()),
        Some(Command::Token(token)) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            return minted(token.run(&args, now));
        }
        None => {}
    }
    let settings = match Settings::load(&args) {
        Ok(settings) => settings,
        Err(problems) => return invalid(problems),
    };
    let _log = http_edge::process::init_tracing(settings.log_format.as_str());
    // Spans over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; flushed (with a deadline)
    // when the guard drops, after the runtime has stopped.
    let _otel = http_edge::otel::init("gateway");
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

/// Prints a minted credential to stdout (exit 0), or why not to stderr (exit 2).
fn minted(result: Result<String, MintError>) -> ExitCode {
    match result {
        Ok(text) => match std::io::stdout().lock().write_all(text.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("gateway: cannot write to stdout: {error}");
                ExitCode::FAILURE
            }
        },
        Err(error) => {
            eprintln!("gateway: {error}");
            ExitCode::from(2)
        }
    }
}

async fn start(settings: Settings) -> anyhow::Result<()> {
    let shutdown = http_edge::process::shutdown_signal();
    let addr = SocketAddr::new(settings.host, settings.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (PORT/HOST): {e}"))?;
    gateway::run(settings, listener, shutdown).await
}
