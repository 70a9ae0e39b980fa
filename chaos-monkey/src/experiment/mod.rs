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

pub use actions::EXPERIMENTS;
use actions::{Action, Target};
use journal::{Journal, Outcome};
use probe::{Guard, Prober};

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
    /// The highest share of client-visible errors (non-2xx, no answer) the hypothesis and
    /// the guard accept.
    #[arg(long, default_value_t = 0.1)]
    pub max_error_rate: f64,
    /// The highest share of fallback answers the hypothesis and the guard accept (1 = any).
    #[arg(long, default_value_t = 1.0)]
    pub max_fallback_rate: f64,
    /// Milliseconds between two guard probes.
    #[arg(long, default_value_t = 200)]
    pub probe_interval_ms: u64,
    /// Probes the guard judges at a time (the most recent ones).
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
    /// The compose file.
    #[arg(long, default_value = "docker-compose.yml")]
    pub compose_file: PathBuf,
    /// The fault proxy's Toxiproxy-compatible API (`chaos-monkey proxy`), for the network
    /// experiments; the target is then the proxy's name.
    #[arg(long, default_value = "http://127.0.0.1:8474")]
    pub proxy_api: String,
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

/// Runs one experiment (see the module's steps) until done or `shutdown`.
pub async fn run(
    args: RunArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<ExitCode> {
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
        args.duration.is_finite() && args.duration > 0.0,
        "--duration must be a positive number of seconds"
    );
    anyhow::ensure!(args.window > 0, "--window must be at least 1");
    let controller = controller(&args)?;
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

    let outcome = execute(&args, &action, &prober, &mut journal, shutdown).await;
    journal.finish(outcome);
    if let Some(path) = &args.report {
        journal
            .write(path)
            .with_context(|| format!("cannot write the journal to {}", path.display()))?;
    }
    journal.print_summary();
    Ok(ExitCode::from(outcome.exit_code()))
}

/// The steps of the module's doc; the rollback runs whatever happens after the injection.
async fn execute(
    args: &RunArgs,
    action: &Action<'_>,
    prober: &Prober,
    journal: &mut Journal,
    shutdown: impl Future<Output = ()>,
) -> Outcome {
    tokio::pin!(shutdown);
    let before = prober.hypothesis(journal, "before").await;
    if !before {
        journal.note("the steady state does not hold before the experiment: nothing injected");
        return Outcome::NotInjected;
    }
    if let Err(error) = action.inject().await {
        journal.action("inject", false, format!("{error:#}"));
        // Part of it may be in place: roll back all the same.
        rollback(action, journal).await;
        return Outcome::Failed;
    }
    journal.action("inject", true, action.describe());
    let mut guard = Guard::new(args.window, args.max_error_rate, args.max_fallback_rate);
    let end = tokio::time::Instant::now() + Duration::from_secs_f64(args.duration);
    let mut ticker = tokio::time::interval(Duration::from_millis(args.probe_interval_ms.max(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut aborted = None;
    loop {
        tokio::select! {
            () = &mut shutdown => {
                journal.abort("interrupted (Ctrl-C or SIGTERM)");
                aborted = Some(Outcome::Interrupted);
                break;
            }
            () = tokio::time::sleep_until(end) => break,
            _ = ticker.tick() => {
                let probe = prober.probe().await;
                journal.probe("guard", &probe);
                if let Some(breach) = guard.observe(&probe) {
                    journal.abort(&breach);
                    aborted = Some(Outcome::Aborted);
                    break;
                }
            }
        }
    }
    rollback(action, journal).await;
    let after = prober
        .settle(journal, Duration::from_secs_f64(args.settle.max(0.0)))
        .await;
    match aborted {
        Some(outcome) => outcome,
        None if after => Outcome::Completed,
        None => Outcome::Deviated,
    }
}

async fn rollback(action: &Action<'_>, journal: &mut Journal) {
    match action.rollback().await {
        Ok(()) => journal.rollback(true, action.describe_rollback()),
        Err(error) => journal.rollback(false, format!("{error:#}")),
    }
}

/// The controller `--controller` names; `None` for `none`.
fn controller(args: &RunArgs) -> anyhow::Result<Option<Box<dyn Controller>>> {
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
        "compose" => Some(Box::new(Compose::new(args.compose_file.clone()))),
        other => anyhow::bail!("--controller must be local, compose or none, not `{other}`"),
    })
}
