//! `resilience-tests`: the lab's grading suite (`suite`), its load test (`load`), its final
//! checklist (`validate`), run against a live stack (README.md, "Grading the stack"), and
//! the hostile-client suite (`abuse`), and the benchmark against nginx (`bench`).
#![allow(
    clippy::print_stdout,
    reason = "a command-line tool: its report is its standard output"
)]

mod abuse;
mod bench;
mod load;
mod suite;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Grades a running stack the way the lab does.
#[derive(Debug, Parser)]
#[command(name = "resilience-tests", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The lab's grading: every check, the score, `N passed, N failed[, N skipped]`.
    Suite(suite::SuiteArgs),
    /// A load test with a report (JSON and an HTML page).
    Load(load::LoadArgs),
    /// The lab's final checklist.
    Validate(validate::ValidateArgs),
    /// Hostile clients (slowloris, slow bodies, idle floods, oversized and malformed
    /// input, header bombs) while a well-behaved client measures the damage.
    Abuse(abuse::AbuseArgs),
    /// The benchmark: the gateway against nginx and the direct path, on servers it starts
    /// itself on 127.0.0.1 (README.md, "Benchmark").
    Bench(bench::BenchArgs),
    /// Internal: one of `abuse`'s idle-connection workers.
    #[command(hide = true)]
    AbuseWorker(abuse::WorkerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("resilience-tests: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Suite(args) => suite::run(args).await,
            Command::Load(args) => load::run(args).await,
            Command::Validate(args) => validate::run(args).await,
            Command::Abuse(args) => abuse::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::AbuseWorker(args) => abuse::run_worker(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("resilience-tests: {error:#}");
            ExitCode::FAILURE
        }
    }
}
