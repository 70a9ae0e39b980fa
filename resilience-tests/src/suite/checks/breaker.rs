//! Rubric 2, the circuit breaker (20 points): CLOSED at start; the seed's invalid-input
//! variant (a documented deviation: a 4xx that never counts against the breaker); OPEN
//! after repeated upstream failures (an error fault injected into every instance) while
//! answers stay 200 from fallback; HALF_OPEN once the recovery timeout has passed; CLOSED
//! again once the instances recover; the metrics that report it. Faults are cleared and the
//! breaker reset afterwards, whatever happened.

use std::time::{Duration, Instant};

use llm_api::fault::{FaultKind, FaultSpec};
use serde_json::{Value, json};

use super::nonce;
use crate::suite::client::{Answer, truncate};
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
            state == "CLOSED",
            format!("/metrics circuit_breaker.state: {state}"),
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
        |s| s != "OPEN",
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
        all_4xx && state == "CLOSED",
        format!(
            "{SEED_REQUESTS} × HTTP {}, breaker {state} — deviation: invalid input is the client's fault (see README)",
            seen.join("/")
        ),
    ))
}

struct Trip {
    answers: Vec<Answer>,
    opened_at: Option<Instant>,
    recovery: Option<Duration>,
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
        let breaker = &metrics["circuit_breaker"];
        trip.last_state = breaker["state"].as_str().unwrap_or("absent").to_owned();
        if trip.last_state == "OPEN" {
            trip.opened_at = Some(Instant::now());
            trip.recovery = breaker["retry_after_ms"]
                .as_u64()
                .map(Duration::from_millis);
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
    let mut tiers: Vec<&str> = answers.iter().filter_map(Answer::fallback_type).collect();
    tiers.sort_unstable();
    tiers.dedup();
    let mut detail = format!(
        "{} answers, all 200 from fallback ({})",
        answers.len(),
        tiers.join(", ")
    );
    if let Some(answer) = while_open {
        let reason = answer.fallback_reason().unwrap_or("none");
        detail.push_str(&format!(
            "; while OPEN: {} in {} ({reason})",
            answer.fallback_type().unwrap_or("?"),
            format_duration(answer.elapsed)
        ));
        if reason != "circuit_open" {
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
    let mut state: Option<String> = None;
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
        state.clone_from(&read.state);
        if read.state.as_deref() == Some("CLOSED") {
            return Verdict::pass(format!(
                "CLOSED after {sent} request(s) once the faults were cleared (last served by {}){}",
                answer.served_by().unwrap_or("?"),
                errors_note(errors)
            ));
        }
        if read.state.as_deref() == Some("OPEN") {
            let left = deadline.saturating_duration_since(Instant::now());
            let reopened = wait_state(
                left,
                ctx.settings.poll_interval,
                || ctx.gateway.breaker_state(),
                |s| s != "OPEN",
            )
            .await;
            errors += reopened.errors;
            if reopened.state.is_some() {
                state.clone_from(&reopened.state);
            }
            if reopened.error.is_some() {
                last_error.clone_from(&reopened.error);
            }
        }
    }
    let mut detail = format!(
        "still {} after {sent} request(s) with the faults cleared",
        state.as_deref().unwrap_or("unread")
    );
    if let Some(error) = last_error {
        detail.push_str(&format!("; last /metrics error: {error}"));
    }
    detail.push_str(&errors_note(errors));
    Verdict::fail(detail)
}

/// The end of [`wait_state`].
#[derive(Debug, Default, PartialEq, Eq)]
struct StateWait {
    /// The last state read, if any read succeeded.
    state: Option<String>,
    /// The last read's error, when the last read failed.
    error: Option<String>,
    /// Reads that failed along the way.
    errors: usize,
    /// Whether a state satisfying the condition was read.
    done: bool,
}

/// Reads the breaker's state every `interval` until one satisfies `done` or `timeout`
/// passes (the first read is immediate). A read that fails — a slow answer on a busy
/// machine — does not end the wait: only the deadline does.
async fn wait_state<R, Fut>(
    timeout: Duration,
    interval: Duration,
    mut read: R,
    done: impl Fn(&str) -> bool,
) -> StateWait
where
    R: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut wait = StateWait::default();
    loop {
        match read().await {
            Ok(state) => {
                wait.done = done(&state);
                wait.state = Some(state);
                wait.error = None;
            }
            Err(error) => {
                wait.errors += 1;
                wait.error = Some(format!("{error:#}"));
            }
        }
        if wait.done || tokio::time::Instant::now() + interval > deadline {
            return wait;
        }
        tokio::time::sleep(interval).await;
    }
}

/// The state now, read again until a read succeeds (within the change timeout).
async fn read_state(ctx: &Ctx) -> anyhow::Result<String> {
    let read = wait_state(
        ctx.settings.change_timeout,
        ctx.settings.poll_interval,
        || ctx.gateway.breaker_state(),
        |_| true,
    )
    .await;
    match (read.state, read.error) {
        (Some(state), _) if read.done => Ok(state),
        (_, error) => Err(anyhow::anyhow!(
            "no readable breaker state in {}: {}",
            format_duration(ctx.settings.change_timeout),
            error.unwrap_or_else(|| "no read".into())
        )),
    }
}

/// The HALF_OPEN step: the wait for a state other than OPEN after the breaker opened.
fn half_open_verdict(half: &StateWait, open_for: Duration, recovery: Duration) -> Verdict {
    let timing = format!(
        "{} after opening (recovery timeout {})",
        format_duration(open_for),
        format_duration(recovery)
    );
    let errors = errors_note(half.errors);
    match (half.done, half.state.as_deref(), &half.error) {
        (true, Some("HALF_OPEN"), _) => {
            Verdict::pass(format!("HALF_OPEN {timing}, with no request sent{errors}"))
        }
        (true, state, _) => Verdict::fail(format!(
            "read {} {timing}{errors}",
            state.unwrap_or("nothing")
        )),
        (false, state, error) => {
            let mut detail = format!("still {} {timing}", state.unwrap_or("unread"));
            if let Some(error) = error {
                detail.push_str(&format!("; last /metrics error: {error}"));
            }
            detail.push_str(&errors);
            Verdict::fail(detail)
        }
    }
}

/// ` (2 /metrics reads failed and were retried)`, or nothing.
fn errors_note(errors: usize) -> String {
    if errors == 0 {
        String::new()
    } else {
        format!(" ({errors} /metrics read(s) failed and were retried)")
    }
}

async fn metrics(ctx: &Ctx) -> anyhow::Result<Verdict> {
    let metrics = ctx.gateway.metrics().await?;
    let breaker = &metrics["circuit_breaker"];
    let state = breaker["state"].as_str();
    let failures = failure_count(breaker);
    let instances = metrics["circuit_breakers"]
        .as_object()
        .map_or(0, serde_json::Map::len);
    let detail = format!(
        "circuit_breaker.state {}, failures {}, transitions {}, {instances} instance breaker(s)",
        state.unwrap_or("absent"),
        failures.map_or("absent".into(), |f| f.to_string()),
        breaker["counters"]["transitions"]
    );
    let ok = matches!(state, Some("CLOSED" | "OPEN" | "HALF_OPEN"))
        && failures.is_some_and(|f| f > 0)
        && metrics["fallback"].is_object();
    Ok(Verdict::check(ok, detail))
}

/// The breaker's failure count under any of the usual names.
fn failure_count(breaker: &Value) -> Option<u64> {
    [
        &breaker["counters"]["failures"],
        &breaker["failures"],
        &breaker["failure_count"],
        &breaker["window"]["failures"],
    ]
    .into_iter()
    .find_map(Value::as_u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::report::Outcome;

    #[test]
    fn the_failure_count_is_read_from_the_snapshot_counters() {
        let snapshot = json!({"state": "CLOSED", "counters": {"failures": 7, "transitions": 3}});
        assert_eq!(failure_count(&snapshot), Some(7));
        assert_eq!(failure_count(&json!({"failure_count": 2})), Some(2));
        assert_eq!(failure_count(&json!({"state": "CLOSED"})), None);
    }

    /// A scripted `/metrics`: each read takes the next reading (the last one repeats).
    fn script(
        readings: &[Result<&str, &str>],
    ) -> impl FnMut() -> std::future::Ready<anyhow::Result<String>> {
        let readings: Vec<Result<String, String>> = readings
            .iter()
            .map(|r| r.map(str::to_owned).map_err(str::to_owned))
            .collect();
        let mut next = 0;
        move || {
            let reading = readings[next.min(readings.len() - 1)].clone();
            next += 1;
            std::future::ready(reading.map_err(|e| anyhow::anyhow!(e)))
        }
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn a_failed_read_does_not_end_the_wait_for_half_open() {
        let reads = script(&[
            Ok("OPEN"),
            Err("GET /metrics: operation timed out"),
            Ok("OPEN"),
            Err("GET /metrics: operation timed out"),
            Ok("HALF_OPEN"),
        ]);
        let half = wait_state(10 * SECOND, SECOND, reads, |s| s != "OPEN").await;
        assert_eq!(
            half,
            StateWait {
                state: Some("HALF_OPEN".into()),
                error: None,
                errors: 2,
                done: true,
            }
        );
        let verdict = half_open_verdict(&half, 31 * SECOND, 30 * SECOND);
        assert_eq!(verdict.outcome, Outcome::Pass, "{}", verdict.detail);
        assert!(
            verdict.detail.contains("2 /metrics read(s) failed"),
            "{}",
            verdict.detail
        );
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_deadline_fails_the_wait_with_the_last_error() {
        let started = tokio::time::Instant::now();
        let reads = script(&[Ok("OPEN"), Err("GET /metrics: connection reset")]);
        let half = wait_state(5 * SECOND, SECOND, reads, |s| s != "OPEN").await;
        assert!(started.elapsed() >= 4 * SECOND, "polled until the deadline");
        assert!(!half.done);
        assert_eq!(half.state.as_deref(), Some("OPEN"));
        assert_eq!(
            half.errors, 5,
            "reads at 0 (OPEN), then 1 to 5 s, all failing"
        );
        let verdict = half_open_verdict(&half, 45 * SECOND, 30 * SECOND);
        assert_eq!(verdict.outcome, Outcome::Fail);
        assert!(
            verdict
                .detail
                .starts_with("still OPEN 45.0 s after opening")
                && verdict
                    .detail
                    .contains("last /metrics error: GET /metrics: connection reset"),
            "{}",
            verdict.detail
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_state_other_than_half_open_fails_at_once() {
        let reads = script(&[Ok("OPEN"), Ok("CLOSED")]);
        let half = wait_state(10 * SECOND, SECOND, reads, |s| s != "OPEN").await;
        let verdict = half_open_verdict(&half, 31 * SECOND, 30 * SECOND);
        assert_eq!(verdict.outcome, Outcome::Fail);
        assert!(
            verdict.detail.starts_with("read CLOSED"),
            "{}",
            verdict.detail
        );
    }
}
