//! `lab`: the whole stack as local processes, no Docker (README.md, "The lab launcher").
//!
//! `lab up` starts its own `redis-server` (and `prometheus` when installed), then the
//! `llm-service` three times (`llm_service_1` and `llm_service_2`, the primaries, and
//! `llm_service_3`, the secondary tier), the `gateway` and the `chaos-monkey` found beside
//! this executable, with the compose file's environment, waits until each is healthy and
//! prints the URLs. Without `redis-server` on PATH the stack runs without Redis: the gateway
//! is given the primaries' URLs and caches in memory, and there is no secondary tier
//! (`plan::Mode`); `lab up` says which mode it chose.
//! State (the stack's description, pids, logs) lives in the run directory (`$LAB_DIR`,
//! default `./.lab/`), so `lab status|stop|start|restart|kill|pause|resume|logs|down` — and
//! the grading suite — act on the same processes from any shell.
#![allow(
    clippy::print_stdout,
    reason = "a command-line tool: its report is its standard output"
)]

mod plan;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use futures::future::BoxFuture;
use stack_control::local::LocalStack;
use stack_control::{Controller, RunState};

/// Runs the lab's stack as local processes.
#[derive(Debug, Parser)]
#[command(name = "lab", version, about)]
struct Cli {
    /// The run directory (state, pids, logs).
    #[arg(long, env = "LAB_DIR", global = true)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Starts the stack and waits until every service is healthy.
    Up {
        /// Leave the chaos monkey out.
        #[arg(long)]
        no_chaos: bool,
        /// The gateway's port; the llm-services take the next three (the secondary tier
        /// base+3), Redis base+379, Prometheus base+1090, the fault proxy's API base+474.
        #[arg(long, default_value_t = plan::DEFAULT_BASE_PORT)]
        base_port: u16,
        /// Routes this llm-service (llm_service_1 or llm_service_2) through the fault proxy
        /// (`chaos-monkey proxy`, service chaos_proxy): the gateway reaches it at its port +
        /// 100, where network faults apply. Repeatable.
        #[arg(long = "proxy", value_name = "SERVICE")]
        proxied: Vec<String>,
    },
    /// Every service, its state, pid and URL.
    Status,
    /// Stops a service (SIGTERM, then SIGKILL after a grace period).
    Stop {
        /// A compose name: api_gateway, llm_service_1, llm_service_2, llm_service_3,
        /// chaos_monkey, redis.
        name: String,
    },
    /// Starts a stopped service and waits until it is healthy.
    Start {
        /// The service.
        name: String,
    },
    /// Stops and starts a service.
    Restart {
        /// The service.
        name: String,
    },
    /// Kills a service at once (SIGKILL).
    Kill {
        /// The service.
        name: String,
    },
    /// Freezes a service (SIGSTOP).
    Pause {
        /// The service.
        name: String,
    },
    /// Thaws a paused service (SIGCONT).
    Resume {
        /// The service.
        name: String,
    },
    /// The end of a service's log.
    Logs {
        /// The service.
        name: String,
        /// Lines to show.
        #[arg(short = 'n', long, default_value_t = 100)]
        lines: usize,
    },
    /// Stops every service the stack started (and nothing else).
    Down,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("lab: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lab: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let dir = cli.dir.unwrap_or_else(LocalStack::default_dir);
    match cli.command {
        Command::Up {
            no_chaos,
            base_port,
            proxied,
        } => up(dir, base_port, !no_chaos, &proxied).await,
        Command::Status => {
            let stack = LocalStack::open(&dir)?;
            print_status(&stack).await
        }
        Command::Stop { name } => act(&dir, &name, "stopped", |s, n| s.stop(n)).await,
        Command::Start { name } => act(&dir, &name, "started", |s, n| s.start(n)).await,
        Command::Restart { name } => act(&dir, &name, "restarted", |s, n| s.restart(n)).await,
        Command::Kill { name } => act(&dir, &name, "killed", |s, n| s.kill(n)).await,
        Command::Pause { name } => act(&dir, &name, "paused", |s, n| s.pause(n)).await,
        Command::Resume { name } => act(&dir, &name, "resumed", |s, n| s.resume(n)).await,
        Command::Logs { name, lines } => {
            let stack = LocalStack::open(&dir)?;
            stack.spec(&name)?;
            println!("{}", stack.log_tail(&name, lines));
            Ok(())
        }
        Command::Down => {
            let stack = match LocalStack::open(&dir) {
                Ok(stack) => stack,
                Err(_) => {
                    println!("no stack in {}: nothing to stop", dir.display());
                    return Ok(());
                }
            };
            stack.down().await?;
            println!("stack down (logs kept in {})", dir.join("logs").display());
            Ok(())
        }
    }
}

async fn up(dir: PathBuf, base_port: u16, chaos: bool, proxied: &[String]) -> anyhow::Result<()> {
    let plan = plan::Plan::new(base_port, chaos, proxied, &dir)?;
    if let Ok(existing) = LocalStack::open(&dir) {
        let running = existing.status().await?;
        let any_running = running.iter().any(|s| s.state != RunState::Stopped);
        if any_running && existing.file() != &plan.file {
            anyhow::bail!(
                "a different stack is running in {} (lab status); `lab down` it first",
                dir.display()
            );
        }
    }
    let stack = LocalStack::create(&dir, plan.file.clone())?;
    println!("{}", plan.mode.describe());
    println!("starting the stack in {} …", dir.display());
    if let Err(error) = stack.up().await {
        anyhow::bail!("{error}\n(`lab status` shows what runs; `lab down` stops it)");
    }
    println!("stack up:");
    print_status(&stack).await?;
    println!(
        "\ntry:  curl -s localhost:{base_port}/generate -H 'content-type: application/json' -d '{{\"prompt\": \"What is AI?\"}}'"
    );
    Ok(())
}

async fn act<F>(dir: &PathBuf, name: &str, done: &str, action: F) -> anyhow::Result<()>
where
    F: for<'a> FnOnce(
        &'a LocalStack,
        &'a str,
    ) -> BoxFuture<'a, Result<(), stack_control::ControlError>>,
{
    let stack = LocalStack::open(dir)?;
    stack.spec(name)?;
    action(&stack, name).await?;
    println!("{name} {done}");
    Ok(())
}

async fn print_status(stack: &LocalStack) -> anyhow::Result<()> {
    println!("{:<15} {:<9} {:>8}  URL", "SERVICE", "STATE", "PID");
    for service in stack.status().await? {
        let state = service.state.as_str();
        println!(
            "{:<15} {:<9} {:>8}  {}",
            service.name,
            state,
            service.pid.map(|p| p.to_string()).unwrap_or_default(),
            service.url.unwrap_or_default()
        );
    }
    Ok(())
}
