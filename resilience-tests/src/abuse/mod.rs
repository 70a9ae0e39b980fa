//! `resilience-tests abuse --target URL`: hostile clients against a gateway or an
//! llm-service (issue 16, "Hostile clients"), at a bounded size, while a well-behaved
//! client sends the model route at a fixed rate; pass or fail per attack, with the figures.
//!
//! The run: the target is checked (loopback, unless `--i-own-this-host`), its process
//! found for RSS (`--pid`, or the owner of the listening socket), the well-behaved client
//! runs alone for a baseline (its p99 sets the latency bar, max(2 × idle p99, 50 ms)), then
//! each attack in turn ([`attacks`]), each bounded in size (`--size small|full` and a flag
//! per attack) and in time. The report is printed (and written with `--json PATH`); the
//! exit code is 1 when any attack failed.
//!
//! - [`target`]: the URL, loopback check, request bodies.
//! - [`probe`]: the well-behaved client.
//! - [`raw`]: raw HTTP/1.1 over TCP under deadlines.
//! - [`rss`]: the target's RSS from `/proc`.
//! - [`rules`]: the pass rules, pure.
//! - [`worker`]: the hidden `abuse-worker` subcommand that holds idle connections.
//! - [`report`]: the text and JSON report.

mod attacks;
mod probe;
mod raw;
mod report;
mod rss;
mod rules;
mod target;
#[cfg(test)]
mod tests;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;

pub use self::worker::{WorkerArgs, run as run_worker};

use self::attacks::{AttackKind, Ctx, Sizes};
use self::report::{Report, Verdict};
use self::rss::RssSource;
use self::target::{Api, Target};

/// The longest a time option may be, in seconds (catches typos).
const MAX_SECONDS: f64 = 3600.0;
/// The most of any attack's count (catches typos).
const MAX_COUNT: usize = 100_000;
/// The most requests per second of the well-behaved client.
const MAX_RATE: f64 = 1000.0;

/// Preset sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Size {
    /// For CI: the whole run in about 90 s.
    Small,
    /// The sizes of issue 16's "Done when" (several minutes).
    Full,
}

/// `abuse` options.
#[derive(Debug, Clone, clap::Args)]
pub struct AbuseArgs {
    /// The base URL of the gateway (or llm-service) to attack; http:// only.
    #[arg(long)]
    pub target: String,
    /// Allow a target that is not a loopback address: only for a host you own.
    #[arg(long = "i-own-this-host")]
    pub i_own_this_host: bool,
    /// The model route: `lab` (POST /generate) or `openai` (POST /v1/chat/completions).
    #[arg(long, value_enum, default_value_t = Api::Lab)]
    pub api: Api,
    /// The model the requests name (chat default: `default`).
    #[arg(long)]
    pub model: Option<String>,
    /// Preset sizes: `small` (CI, about 90 s) or `full` (issue 16's sizes).
    #[arg(long, value_enum, default_value_t = Size::Small)]
    pub size: Size,
    /// The well-behaved client's requests per second.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// How long the well-behaved client runs alone first, in seconds [small: 5, full: 10].
    #[arg(long)]
    pub baseline: Option<f64>,
    /// The target's header-read timeout, in seconds (the gateway's default).
    #[arg(long, default_value_t = 10.0)]
    pub header_timeout: f64,
    /// The target's whole-body deadline, in seconds (the gateway's default).
    #[arg(long, default_value_t = 10.0)]
    pub body_deadline: f64,
    /// Lateness allowed on each time limit, in seconds.
    #[arg(long, default_value_t = 3.0)]
    pub slack: f64,
    /// Slowloris connections [small: 20, full: 100].
    #[arg(long)]
    pub slowloris: Option<usize>,
    /// Slow-body HTTP/1.1 connections [small: 20, full: 200].
    #[arg(long)]
    pub slow_bodies: Option<usize>,
    /// HTTP/2 streams tried on one connection [small: 100, full: 1000].
    #[arg(long)]
    pub h2_streams: Option<usize>,
    /// Idle connections [small: 500, full: 15000].
    #[arg(long)]
    pub idle: Option<usize>,
    /// How long the idle connections are held, in seconds [small: 5, full: 10].
    #[arg(long)]
    pub idle_hold: Option<u64>,
    /// How long after the idle connections close RSS is read, in seconds [small: 15, full: 60].
    #[arg(long)]
    pub idle_settle: Option<u64>,
    /// Requests with a 900 KB model name [small: 50, full: 1200].
    #[arg(long)]
    pub oversized: Option<usize>,
    /// Run only these attacks (comma-separated) [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<AttackKind>,
    /// The target's process id, for its RSS [default: the owner of the target port's
    /// listening socket, when the target is loopback].
    #[arg(long)]
    pub pid: Option<u32>,
    /// A Redis (`redis://host:port`) whose `used_memory` the oversized attack watches.
    #[arg(long)]
    pub redis: Option<String>,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Raises this process's open-file soft limit to its hard limit (workers inherit it).
pub fn raise_nofile_limit() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
}

/// This process's open-file soft limit (1024 when it cannot be read).
pub fn nofile_limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
}

/// The preset for `size` with the flags over it; `custom` when a flag changed a size.
fn sizes(args: &AbuseArgs) -> (Sizes, String) {
    let preset = match args.size {
        Size::Small => Sizes {
            slowloris: 20,
            slow_bodies: 20,
            h2_streams: 100,
            idle: 500,
            idle_hold_s: 5,
            // The services' allocator gives freed pages back over about ten seconds.
            idle_settle_s: 15,
            oversized: 50,
        },
        Size::Full => Sizes {
            slowloris: 100,
            slow_bodies: 200,
            h2_streams: 1000,
            idle: 15_000,
            idle_hold_s: 10,
            idle_settle_s: 60,
            oversized: 1200,
        },
    };
    let sizes = Sizes {
        slowloris: args.slowloris.unwrap_or(preset.slowloris),
        slow_bodies: args.slow_bodies.unwrap_or(preset.slow_bodies),
        h2_streams: args.h2_streams.unwrap_or(preset.h2_streams),
        idle: args.idle.unwrap_or(preset.idle),
        idle_hold_s: args.idle_hold.unwrap_or(preset.idle_hold_s),
        idle_settle_s: args.idle_settle.unwrap_or(preset.idle_settle_s),
        oversized: args.oversized.unwrap_or(preset.oversized),
    };
    let name = match (sizes == preset, args.size) {
        (false, _) => "custom",
        (true, Size::Small) => "small",
        (true, Size::Full) => "full",
    };
    (sizes, name.to_owned())
}

/// A time option in seconds, checked.
fn seconds(name: &str, value: f64, problems: &mut Vec<String>) -> Duration {
    match Duration::try_from_secs_f64(value) {
        Ok(duration) if value <= MAX_SECONDS => duration,
        _ => {
            problems.push(format!("--{name} must be 0 to {MAX_SECONDS} seconds"));
            Duration::ZERO
        }
    }
}

/// Runs the suite; see the module documentation.
pub async fn run(args: AbuseArgs) -> anyhow::Result<ExitCode> {
    let run_started = Instant::now();
    raise_nofile_limit();
    let (sizes, size_name) = sizes(&args);
    let mut problems = Vec::new();
    let header_timeout = seconds("header-timeout", args.header_timeout, &mut problems);
    let body_deadline = seconds("body-deadline", args.body_deadline, &mut problems);
    let slack = seconds("slack", args.slack, &mut problems);
    let default_baseline = match args.size {
        Size::Small => 5.0,
        Size::Full => 10.0,
    };
    let baseline = seconds(
        "baseline",
        args.baseline.unwrap_or(default_baseline),
        &mut problems,
    );
    if !(args.rate > 0.0 && args.rate <= MAX_RATE) {
        problems.push(format!("--rate must be above 0 and at most {MAX_RATE}"));
    }
    let counts = [
        sizes.slowloris,
        sizes.slow_bodies,
        sizes.h2_streams,
        sizes.idle,
        sizes.oversized,
    ];
    if counts.iter().any(|count| *count > MAX_COUNT) {
        problems.push(format!("an attack's count is above {MAX_COUNT}"));
    }
    if sizes.idle_hold_s as f64 > MAX_SECONDS || sizes.idle_settle_s as f64 > MAX_SECONDS {
        problems.push(format!(
            "--idle-hold and --idle-settle must be at most {MAX_SECONDS} seconds"
        ));
    }
    anyhow::ensure!(problems.is_empty(), "{}", problems.join("; "));

    let target = Arc::new(
        Target::resolve(
            &args.target,
            args.i_own_this_host,
            args.api,
            args.model.clone(),
        )
        .await?,
    );
    let client = probe::Client::new(target.clone())?;
    anyhow::ensure!(
        client.get_ok("/live").await,
        "the target at {} does not answer GET /live with 2xx; is it running?",
        target.base
    );
    let rss = match args.pid {
        Some(pid) => Some(
            RssSource::pid(pid)
                .with_context(|| format!("--pid {pid}: cannot read /proc/{pid}/status"))?,
        ),
        None if target.loopback => RssSource::listening_on(target.addr.port()),
        None => None,
    };
    let baseline_rss = rss.as_ref().and_then(RssSource::sample);

    let baseline_figures = client.run_for(args.rate, baseline).await;
    let bar = rules::latency_bar(Duration::from_secs_f64(baseline_figures.p99_ms / 1000.0));
    let ctx = Ctx {
        target: target.clone(),
        client,
        rate: args.rate,
        bar,
        rss: rss.clone(),
        sizes,
        header_timeout,
        body_deadline,
        slack,
        redis: args.redis.clone(),
    };
    let mut attacks = Vec::new();
    for kind in AttackKind::ALL {
        if args.only.is_empty() || args.only.contains(&kind) {
            attacks.push(attacks::run(kind, &ctx).await);
        }
    }
    let passed = attacks
        .iter()
        .filter(|attack| attack.verdict == Verdict::Pass)
        .count();
    let report = Report {
        target: target.base.clone(),
        size: size_name,
        rate: args.rate,
        baseline: baseline_figures,
        latency_bar_ms: bar.as_secs_f64() * 1000.0,
        rss_pid: rss.as_ref().map(RssSource::process_id),
        baseline_rss_mib: baseline_rss.map(rules::mib),
        failed: attacks.len() - passed,
        passed,
        attacks,
        elapsed_s: (run_started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    };
    print!("{}", report.text());
    if let Some(path) = &args.json {
        report.write_json(path)?;
    }
    Ok(if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
