//! One-shot experiments (`chaos-monkey list`, `chaos-monkey run …`), run the way Chaos
//! Toolkit runs them:
//!
//! 1. **Hypothesis before**: the gateway's `/health` says `healthy` and real requests through
//!    it stay under the error threshold. If not, nothing is injected.
//! 2. **Inject** the fault, then **watch** with a guard: a request every probe interval; when
//!    the client-visible error rate of the recent window crosses the threshold, the run
//!    aborts and rolls back at once.
//! 3. **Rollback**, always: at the end of the duration, on abort, on an error, on Ctrl-C or
//!    SIGTERM.
//! 4. **Hypothesis after**: the steady state must come back within the settle time, else the
//!    run is marked deviated.
//!
//! Every probe, action, abort and rollback is written to the journal (`--report FILE`, JSON)
//! and summed up on one screen.

mod actions;
mod journal;
mod probe;

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use stack_control::Controller;
use stack_control::compose::Compose;
use stack_control::local::LocalStack;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

pub use actions::EXPERIMENTS;
use actions::{Action, Target};
use journal::{Journal, Outcome};
use probe::{Guard, Prober};

use llm_api::token::ChaosToken;

/// `run` options.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The experiment (`chaos-monkey list` names them).
    pub experiment: String,
    /// The service: a compose name (`llm_service_1`, `redis`…) or an llm-service base URL.
    #[arg(long)]
    pub target: String,
    /// The gateway whose clients the hypothesis and the guard stand for.
    #[arg(long, default_value = "http://localhost:8000")]
    pub gateway: String,
    /// Seconds the fault stays in place (unless the guard aborts first).
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Write the journal (JSON) here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Also record the journal in this history database (`chaos_experiments`, beside the
    /// gateway's history): `postgres://…` or `sqlite://PATH`; unset: not recorded.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// The highest share of client-visible errors (non-2xx, no answer) the hypothesis and
    /// the guard accept.
    #[arg(long, default_value_t = 0.1)]
    pub max_error_rate: f64,
    /// The highest share of fallback answers the hypothesis and the guard accept (1 = any).
    #[arg(long, default_value_t = 1.0)]
    pub max_fallback_rate: f64,
    /// Milliseconds between two guard probes.
    #[arg(long, default_value_t = 150)]
    pub probe_interval_ms: u64,
    /// Probes the guard judges at a time (the most recent ones; it judges once it has them).
    #[arg(long, default_value_t = 10)]
    pub window: usize,
    /// Seconds the steady state may take to come back after the rollback.
    #[arg(long, default_value_t = 30.0)]
    pub settle: f64,
    /// How services are stopped and started: `local` (a `lab` run directory), `compose`, or
    /// `none` (fault-API experiments on a URL only).
    #[arg(long, default_value = "local")]
    pub controller: String,
    /// The `lab` run directory.
    #[arg(long, env = "LAB_DIR")]
    pub lab_dir: Option<PathBuf>,
    /// The compose file (`--controller compose`); repeat it for override files, in order.
    /// The compose command is `docker compose` when a Docker engine answers, else
    /// podman-compose.
    #[arg(long = "compose-file", default_value = "docker-compose.yml")]
    pub compose_files: Vec<PathBuf>,
    /// The fault proxy's Toxiproxy-compatible API (`chaos-monkey proxy`), for the network
    /// experiments; the target is then the proxy's name.
    #[arg(long, default_value = "http://127.0.0.1:8474")]
    pub proxy_api: String,
    /// The llm-services' `CHAOS_TOKEN`, sent to their fault API as `Authorization: Bearer`
    /// (unset: no header).
    #[arg(long, env = "CHAOS_TOKEN", hide_env_values = true)]
    pub chaos_token: Option<ChaosToken>,
}

/// Prints every experiment and what it does.
#[allow(clippy::print_stdout, reason = "the list is the command's output")]
pub fn list() -> ExitCode {
    println!("{:<16} WHAT", "EXPERIMENT");
    for experiment in EXPERIMENTS {
        println!("{:<16} {}", experiment.name, experiment.description);
    }
    ExitCode::SUCCESS
}

/// The longest `--duration` (a day).
const MAX_DURATION_S: f64 = 86_400.0;
/// The longest `--settle` (an hour).
const MAX_SETTLE_S: f64 = 3_600.0;

/// Runs one experiment (see the module's steps) until done or `shutdown`.
pub async fn run(
    args: RunArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<ExitCode> {
    // The signal handlers are live from here on: a signal during the injection is seen.
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let experiment = EXPERIMENTS
        .iter()
        .find(|e| e.name == args.experiment)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no experiment `{}` (chaos-monkey list names them)",
                args.experiment
            )
        })?;
    anyhow::ensure!(
        args.duration.is_finite() && args.duration > 0.0 && args.duration <= MAX_DURATION_S,
        "--duration must be 0 to {MAX_DURATION_S} seconds"
    );
    anyhow::ensure!(
        args.settle.is_finite() && (0.0..=MAX_SETTLE_S).contains(&args.settle),
        "--settle must be 0 to {MAX_SETTLE_S} seconds"
    );
    anyhow::ensure!(args.window > 0, "--window must be at least 1");
    anyhow::ensure!(
        args.probe_interval_ms >= 10,
        "--probe-interval-ms must be at least 10"
    );
    let controller = controller(&args).await?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()?;
    let target = Target::resolve(&args.target, controller.as_deref(), &http, &args.gateway)
        .await
        .context("cannot resolve the target")?;
    let action = Action::new(experiment, &target, &args, controller.as_deref(), &http)?;
    let mut journal = Journal::new(experiment.name, &args, &target);
    let prober = Prober::new(http.clone(), &args);

    let outcome = execute(&args, &action, &prober, &mut journal, stop).await;
    journal.finish(outcome);
    journal.print_summary();
    if let Some(path) = &args.report
        && let Err(error) = journal.write(path)
    {
        tracing::error!(path = %path.display(), "cannot write the journal: {error:#}");
    }
    if let Some(url) = &args.database_url {
        record(url, &journal).await;
    }
    Ok(ExitCode::from(outcome.exit_code()))
}

/// The longest wait for the journal's row to reach the database.
const RECORD_DEADLINE: Duration = Duration::from_secs(10);

/// Records `journal` in the history database at `url`, through the same writer as the
/// gateway's history; a database that does not take it within [`RECORD_DEADLINE`] is
/// logged, and the experiment's outcome stands.
async fn record(url: &str, journal: &Journal) {
    let settings = history::WriterSettings {
        retention: None,
        ..history::WriterSettings::default()
    };
    let started = history::Location::parse(url).and_then(|at| {
        let described = at.describe();
        history::History::start(&at, settings).map(|h| (h, described))
    });
    let (history, at) = match started {
        Ok((Some(history), at)) => (history, at),
        Ok((None, _)) => return,
        Err(error) => {
            tracing::error!("cannot record the journal: {error}");
            return;
        }
    };
    match journal.record() {
        Ok(row) => history.record(row),
        Err(error) => {
            tracing::error!("cannot record the journal: {error:#}");
            return;
        }
    }
    if history.flush(RECORD_DEADLINE).await {
        tracing::info!(database = %at, "journal recorded in the history database");
    } else {
        tracing::error!(database = %at, "the history database did not take the journal within {RECORD_DEADLINE:?}");
    }
}

/// Resolves once a stop was asked for.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        // The signal task is gone: no stop will come.
        std::future::pending::<()>().await;
    }
}

/// The steps of the module's doc; once anything was injected the rollback runs, whatever
/// ends the run.
async fn execute(
    args: &RunArgs,
    action: &Action<'_>,
    prober: &Prober,
    journal: &mut Journal,
    mut stop: watch::Receiver<bool>,
) -> Outcome {
    let before = tokio::select! {
        biased;
        () = stopped(&mut stop) => None,
        holds = prober.hypothesis(journal, "before") => Some(holds),
    };
    match before {
        None => {
            journal.abort("interrupted (Ctrl-C or SIGTERM) before the injection: nothing injected");
            return Outcome::Interrupted;
        }
        Some(false) => {
            journal.note("the steady state does not hold before the experiment: nothing injected");
            return Outcome::NotInjected;
        }
        Some(true) => {}
    }
    // The injection runs to its end (a half-made fault is harder to take back); a stop asked
    // for meanwhile is acted on right after.
    let injected = action.inject().await;
    let mut ending = match &injected {
        Ok(()) => {
            journal.action("inject", true, action.describe());
            None
        }
        Err(error) => {
            journal.action("inject", false, format!("{error:#}"));
            Some(Outcome::Failed)
        }
    };
    if ending.is_none() {
        ending = watch_guard(args, prober, journal, &mut stop).await;
    }
    // Rollback, always (also after a failed injection: part of it may be in place).
    let rolled_back = match action.rollback().await {
        Ok(()) => {
            journal.rollback(true, action.describe_rollback());
            true
        }
        Err(error) => {
            journal.rollback(false, format!("{error:#}"));
            false
        }
    };
    if !rolled_back {
        return Outcome::RollbackFailed;
    }
    if let Some(outcome @ (Outcome::Failed | Outcome::Interrupted)) = ending {
        if outcome == Outcome::Interrupted {
            journal.note("interrupted: rolled back, not waiting for the steady state");
        }
        return outcome;
    }
    let limit = Duration::from_secs_f64(args.settle);
    let settled = tokio::select! {
        biased;
        () = stopped(&mut stop) => false,
        settled = tokio::time::timeout(limit + Duration::from_secs(15), prober.settle(journal, limit)) => {
            settled.unwrap_or(false)
        }
    };
    match (ending, settled) {
        (_, false) => Outcome::Deviated,
        (Some(Outcome::Aborted), true) => Outcome::Aborted,
        _ => Outcome::Completed,
    }
}

/// Probes on a fixed schedule (each probe its own task, so a slow answer never delays the
/// guard, the end of the run or a stop) until the duration ends; `Some` outcome when the
/// guard or a signal ended it first.
async fn watch_guard(
    args: &RunArgs,
    prober: &Prober,
    journal: &mut Journal,
    stop: &mut watch::Receiver<bool>,
) -> Option<Outcome> {
    let mut guard = Guard::new(args.window, args.max_error_rate, args.max_fallback_rate);
    let end = tokio::time::Instant::now() + Duration::from_secs_f64(args.duration);
    let mut ticker = tokio::time::interval(Duration::from_millis(args.probe_interval_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (results_tx, mut results) = mpsc::channel(256);
    let mut probes = JoinSet::new();
    let outcome = loop {
        tokio::select! {
            biased;
            () = stopped(stop) => {
                journal.abort("interrupted (Ctrl-C or SIGTERM)");
                break Some(Outcome::Interrupted);
            }
            () = tokio::time::sleep_until(end) => break None,
            Some(probe) = results.recv() => {
                journal.probe("guard", &probe);
                if let Some(breach) = guard.observe(&probe) {
                    journal.abort(&breach);
                    break Some(Outcome::Aborted);
                }
            }
            _ = ticker.tick() => {
                let prober = prober.clone();
                let results_tx = results_tx.clone();
                probes.spawn(async move {
                    let _ = results_tx.send(prober.probe().await).await;
                });
            }
        }
    };
    probes.abort_all();
    outcome
}

/// The controller `--controller` names; `None` for `none`.
async fn controller(args: &RunArgs) -> anyhow::Result<Option<Box<dyn Controller>>> {
    Ok(match args.controller.as_str() {
        "none" => None,
        "local" => {
            let dir = args.lab_dir.clone().unwrap_or_else(LocalStack::default_dir);
            match LocalStack::open(&dir) {
                Ok(stack) => Some(Box::new(stack)),
                // URL targets need no controller; experiments that do say so.
                Err(_) => None,
            }
        }
        "compose" => Some(Box::new(Compose::detect(&args.compose_files).await)),
        other => anyhow::bail!("--controller must be local, compose or none, not `{other}`"),
    })
}
