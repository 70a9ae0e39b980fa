//! `resilience-tests suite`: the lab's grading, run against a live stack (README.md, "Grading
//! the stack").
//!
//! It waits for steady state, stops the chaos monkey for the length of the grading (so that
//! random faults do not blur the checks), runs the checks group by group — the lab rubric's
//! five categories with their points, then zero downtime, the chaos scenarios and the
//! performance criteria as extras — restoring the stack after each destructive one, prints
//! the score and ends with `N passed, N failed[, N skipped]`.
//!
//! - [`report`]: check results, the score, the last line, the JSON report (shared with
//!   `validate`).
//! - [`client`]: the gateway and llm-service HTTP clients (shared with `validate`).
//! - [`stack`]: `--controller`, `--lab-dir`, `--compose-file` (shared with `validate`).
//! - [`context`]: what the checks share, and the restore after a destructive check.
//! - [`doc`]: a JSON answer read through its `llm-api` type, the raw body beside it.
//! - [`wait`]: polling, and the steady state every check starts from.
//! - [`traffic`]: requests at a concurrency or a rate, their summary and percentiles.
//! - [`checks`]: the checks, a file per group.

pub mod checks;
pub mod client;
pub mod context;
pub mod doc;
pub mod report;
pub mod stack;
pub mod traffic;
pub mod wait;

#[cfg(test)]
pub mod tests;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use llm_api::token::ChaosToken;
use serde_json::json;
use stack_control::{CHAOS_MONKEY, ServiceStatus};

use self::client::{GatewayClient, LlmClient, http_client};
use self::context::{Ctx, CtxParts, Settings};
use self::report::{Category, Counts, Verdict, format_duration};
use self::stack::{ControllerKind, Stack, StackArgs, find, is_up};

/// `suite` options.
#[derive(Debug, clap::Args)]
pub struct SuiteArgs {
    /// The gateway's base URL.
    #[arg(long, default_value = "http://localhost:8000")]
    pub gateway: String,
    /// The stack to act on.
    #[command(flatten)]
    pub stack: StackArgs,
    /// Also write a JSON report of every check (name, category, outcome, detail, duration)
    /// and the score to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Run only the checks whose name (or group) contains this text, case-insensitively.
    #[arg(long, value_name = "SUBSTRING")]
    pub only: Option<String>,
    /// Grade only what needs no stack controller: the checks that stop services are skipped.
    /// Without it, a stack that cannot be controlled (no `lab up` run directory, no Docker)
    /// is a failed setup check.
    #[arg(long)]
    pub no_controller: bool,
    /// The llm-services' `CHAOS_TOKEN`, sent to their fault API as `Authorization: Bearer`
    /// (unset: no header; `lab up` passes its own environment's to the llm-services).
    #[arg(long, env = "CHAOS_TOKEN", hide_env_values = true)]
    pub chaos_token: Option<ChaosToken>,
}

/// The setup check that fails when no stack controller could be opened.
pub const STACK_CONTROLLER: &str = "stack controller";

/// The exit status of an interrupted run (128 + SIGINT, as a shell reports it).
pub const INTERRUPTED: u8 = 130;

/// Runs the grading suite; exits 0 only when it ran to the end and no check failed, 130
/// when interrupted.
pub async fn run(args: SuiteArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let started_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let http = http_client()?;
    let opened = open_stack(&args).await;
    let status = opened.status;
    let mut ctx = Ctx::new(CtxParts {
        http: http.clone(),
        gateway: GatewayClient::new(http.clone(), &args.gateway),
        llm: LlmClient::new(http).with_token(args.chaos_token.clone()),
        stack: opened.stack,
        no_stack: opened.no_stack,
        settings: Settings::default(),
        only: args.only.clone(),
        echo: true,
    });

    ctx.note("🧪 Resilience test suite");
    ctx.note(&format!("   gateway {}", ctx.gateway.base()));
    match &ctx.stack {
        Some(stack) => ctx.note(&format!(
            "   controller {}: {}",
            stack.controller.kind(),
            stack::describe(&status)
        )),
        None => ctx.note(&format!(
            "   no controller ({}): checks that stop services are skipped",
            ctx.no_stack
        )),
    }
    if let Some(only) = &args.only {
        ctx.note(&format!("   only checks matching {only:?}"));
    }
    if let Some(verdict) = opened.setup {
        ctx.note("");
        ctx.record(Category::Setup, STACK_CONTROLLER, started, verdict);
    }

    let chaos_paused = pause_chaos_monkey(&ctx, &status).await;
    let steady = tokio::select! {
        steady = ctx.wait_steady() => Some(steady),
        () = ctrl_c() => None,
    };
    // Where Ctrl-C stopped the run: before grading (nothing touched yet) or during it.
    let (interrupted, touched) = match steady {
        None => (true, false),
        Some(Ok(steady)) => {
            ctx.note(&format!(
                "   steady state in {}: {} instance(s) available ({}), breaker CLOSED",
                format_duration(steady.took),
                steady.available,
                steady
                    .services
                    .iter()
                    .map(|s| s.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            ctx.set_instances(&steady, &status);
            let interrupted = tokio::select! {
                () = grade(&ctx) => false,
                () = ctrl_c() => true,
            };
            (interrupted, interrupted)
        }
        Some(Err(why)) => {
            ctx.note("");
            ctx.record(
                Category::Setup,
                "steady state before grading",
                started,
                Verdict::fail(format!(
                    "{why} — is the stack up (`lab up`) and the gateway at {}?",
                    ctx.gateway.base()
                )),
            );
            (false, false)
        }
    };
    if interrupted {
        ctx.note("");
        ctx.note("⚠️ interrupted");
    }
    let mut gave_up = false;
    // A check cut short may have left the breaker open or a service stopped.
    if touched || ctx.is_disturbed() {
        ctx.note("   restoring the stack (Ctrl-C again to leave it as it is)");
        // A second Ctrl-C gives up on the restore (the handler above replaced the default).
        let restored = tokio::select! {
            () = ctx.restore(Category::Setup, "the grading") => true,
            () = ctrl_c() => false,
        };
        if !restored {
            ctx.note("⚠️ interrupted again: the stack is left as it is (`lab status`)");
            gave_up = true;
        }
    }
    if chaos_paused {
        if gave_up {
            ctx.note(&format!(
                "   ⚠️ chaos_monkey left stopped: `lab start {CHAOS_MONKEY}`"
            ));
        } else {
            resume_chaos_monkey(&ctx).await;
        }
    }

    let (counts, score_lines, json_report) = {
        let report = ctx.report();
        let meta = json!({
            "gateway": ctx.gateway.base(),
            "controller": ctx.stack.as_ref().map(|s| s.controller.kind()),
            "started_at_ms": u64::try_from(started_at_ms).unwrap_or(u64::MAX),
            "duration_s": started.elapsed().as_secs_f64(),
            "interrupted": interrupted,
            "only": args.only,
        });
        (
            report.counts(),
            report.score().lines(),
            report.to_json(meta),
        )
    };
    ctx.note("");
    ctx.note(&format!(
        "── Score against the lab rubric ({}) ──",
        format_duration(started.elapsed())
    ));
    for line in score_lines {
        ctx.note(&line);
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&json_report)?;
        std::fs::write(path, text)
            .with_context(|| format!("cannot write the JSON report to {}", path.display()))?;
        ctx.note(&format!("JSON report: {}", path.display()));
    }
    if interrupted {
        ctx.note("");
        ctx.note(&interrupted_note(counts));
    }
    println!("{}", counts.summary_line());
    Ok(ExitCode::from(exit_status(counts, interrupted)))
}

/// The stack the suite acts on, or why there is none.
struct Opened {
    stack: Option<Stack>,
    status: Vec<ServiceStatus>,
    /// Why there is no stack, for the skipped checks.
    no_stack: String,
    /// The failed setup check of a stack that could not be opened (none with
    /// `--no-controller`, which asks for no stack).
    setup: Option<Verdict>,
}

/// Opens the stack of `--controller` unless `--no-controller`; a stack that cannot be
/// opened is a failed setup check, saying how to fix it.
async fn open_stack(args: &SuiteArgs) -> Opened {
    if args.no_controller {
        return Opened {
            stack: None,
            status: Vec::new(),
            no_stack: "--no-controller".into(),
            setup: None,
        };
    }
    match args.stack.open().await {
        Ok((stack, status)) => Opened {
            stack: Some(stack),
            status,
            no_stack: String::new(),
            setup: None,
        },
        Err(why) => Opened {
            setup: Some(Verdict::fail(format!(
                "{why} — {}",
                how_to_get_a_controller(args.stack.controller)
            ))),
            stack: None,
            status: Vec::new(),
            no_stack: why,
        },
    }
}

/// What to do when the stack cannot be controlled, for the failed setup check.
fn how_to_get_a_controller(kind: ControllerKind) -> &'static str {
    match kind {
        ControllerKind::Local => {
            "without it the checks that stop services cannot run: run the suite from the \
             directory where `lab up` ran (its ./.lab), or pass --lab-dir DIR (or set LAB_DIR) \
             to its run directory; or pass --no-controller to grade only what needs no \
             controller"
        }
        ControllerKind::Compose => {
            "without it the checks that stop services cannot run: start the stack with \
             `docker compose up` (or, without Docker, deploy/compose-local.sh up) and pass its \
             --compose-file (each override too), or use --controller local for a `lab up` \
             stack; or pass --no-controller to grade only what needs no controller"
        }
    }
}

/// The exit status: [`INTERRUPTED`] when Ctrl-C cut the grading short (whatever the checks
/// that ran said), 1 when a check failed, else 0.
fn exit_status(counts: Counts, interrupted: bool) -> u8 {
    if interrupted {
        INTERRUPTED
    } else if counts.failed > 0 {
        1
    } else {
        0
    }
}

/// The line before the counts of an interrupted run.
fn interrupted_note(counts: Counts) -> String {
    format!(
        "⚠️ the run was interrupted (Ctrl-C): the grading is incomplete, only the {} check(s) \
         that finished are counted below",
        counts.passed + counts.failed + counts.skipped
    )
}

/// Completes on Ctrl-C; never when Ctrl-C cannot be listened to (instead of reading that as
/// an interruption).
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Every group in order; destructive groups restore the stack themselves.
async fn grade(ctx: &Ctx) {
    checks::basic::run(ctx).await;
    checks::breaker::run(ctx).await;
    checks::discovery::run(ctx).await;
    checks::fallback::run(ctx).await;
    checks::health::run(ctx).await;
    checks::chaos::run_zero_downtime(ctx).await;
    checks::chaos::run(ctx).await;
    checks::performance::run(ctx).await;
}

/// Stops a running chaos monkey for the grading; true when it did.
async fn pause_chaos_monkey(ctx: &Ctx, status: &[stack_control::ServiceStatus]) -> bool {
    let Some(stack) = &ctx.stack else {
        return false;
    };
    if !find(status, CHAOS_MONKEY).is_some_and(|s| is_up(s.state)) {
        return false;
    }
    match stack.controller.stop(CHAOS_MONKEY).await {
        Ok(()) => {
            ctx.note("   ⏸ chaos_monkey stopped for the grading, so its random faults do not blur the checks (started again at the end)");
            true
        }
        Err(error) => {
            ctx.note(&format!(
                "   ⚠️ could not stop chaos_monkey ({error}): its faults may blur the checks"
            ));
            false
        }
    }
}

async fn resume_chaos_monkey(ctx: &Ctx) {
    let Some(stack) = &ctx.stack else {
        return;
    };
    match stack.controller.start(CHAOS_MONKEY).await {
        Ok(()) => ctx.note("   ▶ chaos_monkey started again"),
        Err(error) => ctx.note(&format!(
            "   ⚠️ could not start chaos_monkey again ({error}): `lab start {CHAOS_MONKEY}`"
        )),
    }
}
