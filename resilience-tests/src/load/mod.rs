//! `resilience-tests load`: the lab's load test (`python test/load_test.py --concurrent 50
//! --duration 300`), with a live progress bar, a summary on standard output and a report
//! (`report.json`, `report.html`) in `--report DIR`.
//!
//! - [`client`]: builds the requests for `/generate` or `/v1/chat/completions` and
//!   classifies their answers ([`outcome`]: status or transport error, fallback tier).
//! - [`driver`]: closed loop (N workers) or open loop (`--rps`), until the duration ends.
//! - [`stats`]: the recorder — HDR histogram, counts, per-second series in bounded memory.
//! - [`progress`]: the indicatif bar with the live rate and error rate.
//! - [`report`], [`html`], [`svg`]: the JSON report, the text summary and the HTML page.
//!
//! The exit code is 0 whenever the run completes, whatever its error rate, unless
//! `--min-availability` is given and availability fell below it; an unreachable gateway
//! at the start is an error.

mod client;
mod driver;
mod html;
mod outcome;
mod progress;
mod report;
mod stats;
mod svg;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use self::client::{Endpoint, LoadClient};
use self::driver::{Driven, Mode, SharedRecorder};
use self::progress::Progress;
use self::report::{Parameters, Report};
use self::stats::Recorder;

/// Closed-loop workers when `--concurrent` is not given.
const DEFAULT_WORKERS: usize = 10;
/// The open loop's default cap on requests in flight: `rps × timeout` (so that no tick is
/// skipped while the gateway answers within the timeout), at most this.
const MAX_DEFAULT_IN_FLIGHT: usize = 1000;
/// Upper bounds that catch typos (`--duration 30000000`) before they become odd errors.
const MAX_CONCURRENT: usize = 10_000;
const MAX_RPS: f64 = 100_000.0;
const MAX_TIMEOUT_S: f64 = 3600.0;

/// `load` options.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// The gateway's base URL.
    #[arg(long, default_value = "http://localhost:8000")]
    pub gateway: String,
    /// Closed loop: concurrent workers [default: 10]. With --rps: requests in flight at
    /// most [default: rps × timeout, at most 1000].
    #[arg(long)]
    pub concurrent: Option<usize>,
    /// How long to send load, in seconds.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Open loop: send this many requests per second, whatever the gateway's pace.
    #[arg(long)]
    pub rps: Option<f64>,
    /// `generate` (POST /generate) or `chat` (POST /v1/chat/completions, whole answers).
    #[arg(long, value_enum, default_value_t = Endpoint::Generate)]
    pub endpoint: Endpoint,
    /// The prompt. Its placeholder, as in the default, becomes the request's number modulo
    /// 100, so that the response cache does not answer everything.
    #[arg(long, default_value = "Load test request {n}")]
    pub prompt: String,
    /// The model to ask for (chat default: `default`, the gateway's default route).
    #[arg(long)]
    pub model: Option<String>,
    /// Where to write report.json and report.html.
    #[arg(long, default_value = "./load-report")]
    pub report: PathBuf,
    /// Per-request timeout, in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    /// No progress bar (for CI logs).
    #[arg(long)]
    pub quiet: bool,
    /// Exit non-zero when availability (2xx answers / requests, in %) is below this.
    #[arg(long, value_name = "PERCENT")]
    pub min_availability: Option<f64>,
}

/// The validated command line.
#[derive(Debug, Clone)]
struct Plan {
    mode: Mode,
    duration: Duration,
    timeout: Duration,
}

/// Runs the load test; see the module documentation for the exit code. Ctrl-C stops
/// sending and waits for the requests in flight; a second Ctrl-C abandons them. Either
/// way the report is written.
pub async fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let plan = Plan::from_args(&args)?;
    let client = LoadClient::new(
        &args.gateway,
        args.endpoint,
        args.prompt.clone(),
        args.model.clone(),
        plan.timeout,
    )?;
    client.preflight().await?;

    let recorder = SharedRecorder::new(Recorder::new()?);
    let started_at = SystemTime::now();
    let start = Instant::now();
    let progress = Progress::start(args.quiet, start, plan.duration, recorder.clone());
    let driving = driver::drive(
        &client,
        plan.mode,
        start,
        plan.duration,
        &recorder,
        interrupt(1),
    );
    let driven = tokio::select! {
        driven = driving => driven,
        () = interrupt(2) => Driven { elapsed: start.elapsed(), interrupted: true },
    };
    progress.finish().await;

    let results = recorder.lock().results(driven.elapsed);
    let started_at_unix_ms = report::unix_ms(started_at);
    let report = Report {
        parameters: plan.parameters(&args, client.url()),
        started_at: report::rfc3339_utc(started_at_unix_ms),
        started_at_unix_ms,
        elapsed_s: driven.elapsed.as_secs_f64(),
        interrupted: driven.interrupted,
        results,
    };
    let written = report::write(&args.report, &report)?;
    print!("{}", report::summary(&report));
    println!(
        "{:<13}{} · {}",
        "Report",
        written.json.display(),
        written.html.display()
    );

    let availability = report.results.totals.availability_pct;
    match args.min_availability {
        Some(minimum) if availability < minimum => {
            eprintln!(
                "resilience-tests: availability {availability:.2} % is below \
                 --min-availability {minimum} %"
            );
            Ok(ExitCode::FAILURE)
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Completes on the `count`-th Ctrl-C from now; never when signals cannot be listened to.
async fn interrupt(count: usize) {
    for _ in 0..count {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Plan {
    /// Checks every option at once, naming each bad one.
    fn from_args(args: &LoadArgs) -> anyhow::Result<Self> {
        let mut problems = Vec::new();
        if args.duration == 0 {
            problems.push("--duration must be at least 1 second".to_owned());
        }
        let timeout = match Duration::try_from_secs_f64(args.timeout) {
            Ok(timeout) if !timeout.is_zero() && args.timeout <= MAX_TIMEOUT_S => timeout,
            _ => {
                problems.push(format!(
                    "--timeout must be above 0 and at most {MAX_TIMEOUT_S} seconds"
                ));
                Duration::from_secs(1)
            }
        };
        if let Some(concurrent) = args.concurrent
            && !(1..=MAX_CONCURRENT).contains(&concurrent)
        {
            problems.push(format!("--concurrent must be 1 to {MAX_CONCURRENT}"));
        }
        if let Some(minimum) = args.min_availability
            && !(0.0..=100.0).contains(&minimum)
        {
            problems.push("--min-availability must be a percentage, 0 to 100".to_owned());
        }
        let mode = match args.rps {
            None => Mode::Closed {
                workers: args.concurrent.unwrap_or(DEFAULT_WORKERS),
            },
            Some(rps) => {
                let period = if rps > 0.0 && rps <= MAX_RPS {
                    Duration::try_from_secs_f64(1.0 / rps).ok()
                } else {
                    None
                };
                let default_cap = (rps * timeout.as_secs_f64()).ceil();
                let max_in_flight = args.concurrent.unwrap_or_else(|| {
                    if default_cap >= MAX_DEFAULT_IN_FLIGHT as f64 {
                        MAX_DEFAULT_IN_FLIGHT
                    } else {
                        // In range: 1 ≤ cap < 1000 (NaN and negatives fall to 1).
                        (default_cap as usize).max(1)
                    }
                });
                match period {
                    Some(period) => Mode::Open {
                        period,
                        max_in_flight,
                    },
                    None => {
                        problems.push(format!("--rps must be above 0 and at most {MAX_RPS}"));
                        Mode::Closed { workers: 1 }
                    }
                }
            }
        };
        if !problems.is_empty() {
            anyhow::bail!("invalid options: {}", problems.join("; "));
        }
        Ok(Self {
            mode,
            duration: Duration::from_secs(args.duration),
            timeout,
        })
    }

    fn parameters(&self, args: &LoadArgs, url: &str) -> Parameters {
        let (mode, concurrent) = match self.mode {
            Mode::Closed { workers } => ("closed_loop", workers),
            Mode::Open { max_in_flight, .. } => ("open_loop", max_in_flight),
        };
        Parameters {
            gateway: args.gateway.clone(),
            url: url.to_owned(),
            endpoint: match args.endpoint {
                Endpoint::Generate => "generate",
                Endpoint::Chat => "chat",
            }
            .to_owned(),
            mode: mode.to_owned(),
            concurrent,
            rps: args.rps,
            duration_s: args.duration,
            timeout_s: args.timeout,
            prompt: args.prompt.clone(),
            model: args.model.clone(),
            min_availability: args.min_availability,
        }
    }
}
