//! Rubric 2, the circuit breaker (20 points): CLOSED at start; the seed's invalid-input
//! variant (a documented deviation: a 4xx that never counts against the breaker); OPEN
//! after repeated upstream failures (an error fault injected into every instance) while
//! answers stay 200 from fallback; HALF_OPEN once the recovery timeout has passed; CLOSED
//! again once the instances recover; the metrics that report it. Faults are cleared and the
//! breaker reset afterwards, whatever happened.
//!
//! - [`state`]: reading the state until a step's condition holds, and the HALF_OPEN verdict.
//! - [`mod@metrics`]: the step that reads the breaker's state and failures in `/metrics`.

mod metrics;
mod state;

use std::time::{Duration, Instant};

use llm_api::breaker::BreakerState;
use llm_api::envelope::FallbackReason;
use llm_api::fault::{FaultKind, FaultSpec};
use serde_json::json;

use self::metrics::metrics;
use self::state::{errors_note, half_open_verdict, read_state, wait_state};
use super::nonce;
use crate::suite::client::{Answer, reason_name, tier_name, truncate};
use crate::suite::context::Ctx;
use crate::suite::report::{Category, Verdict, format_duration};

/// Check names.
pub const CLOSED_AT_START: &str = "breaker CLOSED at start";
/// See [`CLOSED_AT_START`].
pub const SEED_VARIANT: &str = "seed's invalid-input variant leaves it CLOSED";
/// See [`CLOSED_AT_START`].
pub const OPENS: &str = "OPEN after repeated upstream failures";
/// See [`CLOSED_AT_START`].
pub const ANSWERS_WHILE_FAILING: &str = "answers stay 200 while failing and while OPEN";
/// See [`CLOSED_AT_START`].
pub const HALF_OPEN: &str = "HALF_OPEN after the recovery timeout";
/// See [`CLOSED_AT_START`].
pub const CLOSES: &str = "CLOSED again once the services recover";
/// See [`CLOSED_AT_START`].
pub const METRICS: &str = "metrics report the state and the failures";
/// Every check of the group.
pub const NAMES: &[&str] = &[
    CLOSED_AT_START,
    SEED_VARIANT,
    OPENS,
    ANSWERS_WHILE_FAILING,
    HALF_OPEN,
    CLOSES,
    METRICS,
];

const CATEGORY: Category = Category::CircuitBreaker;
/// Failing requests sent at most to open it (the lab's threshold is 5).
const MAX_TRIP_REQUESTS: usize = 20;
/// Requests sent at most to close it again.
const MAX_CLOSE_REQUESTS: usize = 10;
/// The seed's variant sends its invalid request this many times.
const SEED_REQUESTS: usize = 10;

/// Runs the group, then restores the stack.
pub async fn run(ctx: &Ctx) {
    if !ctx.begin(CATEGORY, NAMES) {
        return;
    }
    scenario(ctx).await;
    ctx.restore(CATEGORY, "circuit breaker").await;
}

async fn scenario(ctx: &Ctx) {
    ctx.step(CATEGORY, CLOSED_AT_START, async {
        let state = read_state(ctx).await?;
        Ok(Verdict::check(
            state == BreakerState::Closed,
            format!("/metrics circuit_breaker.state: {}", state.as_str()),
        ))
    })
    .await;
    ctx.step(CATEGORY, SEED_VARIANT, seed_variant(ctx)).await;

    // Open it: every instance answers 503 (a duration bounds the fault should the suite die).
    let started = Instant::now();
    let spec = FaultSpec::new(FaultKind::Error {
        status: 503,
        code: None,
        message: Some("resilience-tests: breaker check".into()),
        retry_after_s: None,
    })
    .for_seconds(180.0);
    if let Err(error) = ctx.fault_every_instance(&spec).await {
        ctx.record(
            CATEGORY,
            OPENS,
            started,
            Verdict::fail(format!("{error:#}")),
        );
        not_reached(
            ctx,
            &[ANSWERS_WHILE_FAILING, HALF_OPEN, CLOSES],
            "no fault injected",
        );
        ctx.step(CATEGORY, METRICS, metrics(ctx)).await;
        return;
    }
    let trip = trip(ctx).await;
    ctx.record(CATEGORY, OPENS, started, trip.verdict());
    let mut answers = trip.answers.clone();
    let opened = trip.opened_at.is_some();
    let while_open = if opened {
        let answer = ctx
            .gateway
            .generate(&format!("breaker while open {}", nonce()), 30)
            .await;
        answers.push(answer.clone());
        Some(answer)
    } else {
        None
    };
    ctx.record(
        CATEGORY,
        ANSWERS_WHILE_FAILING,
        started,
        answers_verdict(&answers, while_open.as_ref()),
    );
    let Some(opened_at) = trip.opened_at else {
        not_reached(ctx, &[HALF_OPEN, CLOSES], "the breaker never opened");
        ctx.step(CATEGORY, METRICS, metrics(ctx)).await;
        return;
    };

    let started = Instant::now();
    let recovery = trip.recovery.unwrap_or(ctx.settings.recovery_default);
    let half = wait_state(
        recovery + Duration::from_secs(10),
        ctx.settings.poll_interval,
        || ctx.gateway.breaker_state(),
        |s| s != BreakerState::Open,
    )
    .await;
    let verdict = half_open_verdict(&half, opened_at.elapsed(), recovery);
    ctx.record(CATEGORY, HALF_OPEN, started, verdict);

    let started = Instant::now();
    let verdict = close(ctx, recovery).await;
    ctx.record(CATEGORY, CLOSES, started, verdict);
    ctx.step(CATEGORY, METRICS, metrics(ctx)).await;
}

fn not_reached(ctx: &Ctx, names: &[&str], why: &str) {
    for name in names {
        ctx.record(
            CATEGORY,
            name,
            Instant::now(),
            Verdict::fail(format!("not reached: {why}")),
        );
    }
}

/// The lab's own snippet posts `{"prompt": "", "max_tokens": -1}` ten times and expects
/// OPEN. Invalid input is the client's fault: it must get a 4xx and leave the breaker alone.
async fn seed_variant(ctx: &Ctx) -> anyhow::Result<Verdict> {
    // Raw JSON: a negative `max_tokens` is what the type cannot hold.
    let body = json!({"prompt": "", "max_tokens": -1});
    let mut statuses = Vec::new();
    for _ in 0..SEED_REQUESTS {
        let answer = ctx.gateway.post_generate(&body, None).await;
        statuses.push(answer.status);
    }
    let state = read_state(ctx).await?;
    let all_4xx = statuses
        .iter()
        .all(|s| s.is_some_and(|s| (400..500).contains(&s)));
    let mut seen: Vec<String> = statuses
        .iter()
        .map(|s| s.map_or("no answer".into(), |s| s.to_string()))
        .collect();
    seen.dedup();
    Ok(Verdict::check(
        all_4xx && state == BreakerState::Closed,
        format!(
            "{SEED_REQUESTS} × HTTP {}, breaker {} — deviation: invalid input is the client's fault (see README)",
            seen.join("/"),
            state.as_str()
        ),
    ))
}

struct Trip {
    answers: Vec<Answer>,
    opened_at: Option<Instant>,
    recovery: Option<Duration>,
    /// The last state read, or why none was.
    last_state: String,
}

impl Trip {
    fn verdict(&self) -> Verdict {
        match self.opened_at {
            Some(_) => Verdict::pass(format!(
                "OPEN after {} failing requests (threshold: CIRCUIT_BREAKER_FAILURE_THRESHOLD)",
                self.answers.len()
            )),
            None => Verdict::fail(format!(
                "still {} after {} requests with every instance answering 503",
                self.last_state,
                self.answers.len()
            )),
        }
    }
}

/// Sends requests until the breaker reads OPEN (bounded); notes its recovery time.
async fn trip(ctx: &Ctx) -> Trip {
    let mut trip = Trip {
        answers: Vec::new(),
        opened_at: None,
        recovery: None,
        last_state: "unknown".into(),
    };
    let run = nonce();
    for n in 1..=MAX_TRIP_REQUESTS {
        let answer = ctx
            .gateway
            .generate(&format!("breaker trip {n} {run}"), 30)
            .await;
        trip.answers.push(answer);
        let Ok(metrics) = ctx.gateway.metrics().await else {
            continue;
        };
        let Some(breaker) = metrics.get().map(|m| &m.circuit_breaker) else {
            trip.last_state = "unreadable (not the gateway's /metrics)".into();
            continue;
        };
        trip.last_state = breaker.state.as_str().to_owned();
        if breaker.state == BreakerState::Open {
            trip.opened_at = Some(Instant::now());
            trip.recovery = breaker.retry_after_ms.map(Duration::from_millis);
            break;
        }
    }
    trip
}

fn answers_verdict(answers: &[Answer], while_open: Option<&Answer>) -> Verdict {
    let bad: Vec<String> = answers
        .iter()
        .filter(|a| !(a.is_success() && a.fallback_used()))
        .map(|a| {
            if a.is_success() {
                format!(
                    "served by {} without fallback",
                    a.served_by().unwrap_or("?")
                )
            } else {
                a.describe()
            }
        })
        .collect();
    if !bad.is_empty() {
        return Verdict::fail(format!(
            "{} of {} answers not a 200 fallback: {}",
            bad.len(),
            answers.len(),
            truncate(&bad.join("; "), 300)
        ));
    }
    let mut tiers: Vec<&str> = answers
        .iter()
        .filter_map(Answer::fallback_type)
        .map(|t| t.as_str())
        .collect();
    tiers.sort_unstable();
    tiers.dedup();
    let mut detail = format!(
        "{} answers, all 200 from fallback ({})",
        answers.len(),
        tiers.join(", ")
    );
    if let Some(answer) = while_open {
        let reason = answer.fallback_reason();
        detail.push_str(&format!(
            "; while OPEN: {} in {} ({})",
            tier_name(answer.fallback_type()),
            format_duration(answer.elapsed),
            reason_name(reason)
        ));
        if reason != Some(FallbackReason::CircuitOpen) {
            return Verdict::fail(format!(
                "{detail}: a request while OPEN should not call the pool (fallback_reason circuit_open)"
            ));
        }
    }
    Verdict::pass(detail)
}

/// Clears the faults and sends requests until the breaker reads CLOSED; a probe that fails
/// (the simulated 10 % failures) re-opens it, and then it waits for HALF_OPEN again. A
/// state that cannot be read (a slow `/metrics` on a busy machine) is read again until the
/// deadline.
async fn close(ctx: &Ctx, recovery: Duration) -> Verdict {
    if let Err(error) = ctx.clear_faults().await {
        return Verdict::fail(format!("{error:#}"));
    }
    let deadline = Instant::now() + recovery + Duration::from_secs(20);
    let mut sent = 0;
    let mut state: Option<BreakerState> = None;
    let mut last_error: Option<String> = None;
    let mut errors = 0;
    let run = nonce();
    while Instant::now() < deadline && sent < MAX_CLOSE_REQUESTS {
        let answer = ctx
            .gateway
            .generate(&format!("breaker recovery {sent} {run}"), 30)
            .await;
        sent += 1;
        let read = wait_state(
            deadline.saturating_duration_since(Instant::now()),
            ctx.settings.poll_interval,
            || ctx.gateway.breaker_state(),
            |_| true,
        )
        .await;
        errors += read.errors;
        if read.error.is_some() {
            last_error.clone_from(&read.error);
        }
        if !read.done {
            // Nothing readable until the deadline.
            break;
        }
        state = read.state;
        if read.state == Some(BreakerState::Closed) {
            return Verdict::pass(format!(
                "CLOSED after {sent} request(s) once the faults were cleared (last served by {}){}",
                answer.served_by().unwrap_or("?"),
                errors_note(errors)
            ));
        }
        if read.state == Some(BreakerState::Open) {
            let left = deadline.saturating_duration_since(Instant::now());
            let reopened = wait_state(
                left,
                ctx.settings.poll_interval,
                || ctx.gateway.breaker_state(),
                |s| s != BreakerState::Open,
            )
            .await;
            errors += reopened.errors;
            if reopened.state.is_some() {
                state = reopened.state;
            }
            if reopened.error.is_some() {
                last_error.clone_from(&reopened.error);
            }
        }
    }
    let mut detail = format!(
        "still {} after {sent} request(s) with the faults cleared",
        state.map_or("unread", BreakerState::as_str)
    );
    if let Some(error) = last_error {
        detail.push_str(&format!("; last /metrics error: {error}"));
    }
    detail.push_str(&errors_note(errors));
    Verdict::fail(detail)
}
