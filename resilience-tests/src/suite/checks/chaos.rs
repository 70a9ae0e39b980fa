//! The extras that break things on purpose: zero downtime (an instance restarted under
//! 10 RPS) and the lab's three mandatory chaos scenarios — one llm-service down, Redis down
//! for 30 s, and an overload like `ab -n 100 -c 10`. Each restores the stack after it.

use std::time::{Duration, Instant};

use llm_api::breaker::BreakerState;
use llm_api::gateway::{GatewayHealth, HealthStatus};
use stack_control::{LLM_SERVICE_1, REDIS};

use super::nonce;
use crate::suite::client::{Answer, health, truncate};
use crate::suite::context::Ctx;
use crate::suite::doc::Doc;
use crate::suite::report::{Category, Verdict, format_duration};
use crate::suite::stack::find;
use crate::suite::traffic::{self, Summary, Traffic};

/// Check names (zero downtime).
pub const RESTART_UNDER_LOAD: &str = "restart llm_service_1 under 10 RPS: no failed request";
/// The zero-downtime group.
pub const ZERO_DOWNTIME_NAMES: &[&str] = &[RESTART_UNDER_LOAD];

/// Check names (chaos scenarios).
pub const ONE_SERVICE_DOWN: &str = "(1) llm_service_1 down: 10 requests at 1/s all answered";
/// See [`ONE_SERVICE_DOWN`].
pub const REDIS_DOWN: &str = "(2) Redis down 30 s: degraded but serving, healthy after";
/// See [`ONE_SERVICE_DOWN`].
pub const OVERLOAD: &str = "(3) overload: 100 requests at concurrency 10";
/// The chaos group.
pub const NAMES: &[&str] = &[ONE_SERVICE_DOWN, REDIS_DOWN, OVERLOAD];

const RPS: u32 = 10;
/// Traffic before and after the restart, so it covers the whole of it.
const MARGIN: Duration = Duration::from_secs(2);
/// The seed's `request.json`.
const OVERLOAD_PROMPT: &str = "Test resilience under load";

/// Restarts llm_service_1 while sending 10 RPS; every answer must be a 200, served by the
/// instances (a few fallbacks aside: [`Summary::kept_serving`]).
pub async fn run_zero_downtime(ctx: &Ctx) {
    let category = Category::ZeroDowntime;
    if !ctx.begin(category, ZERO_DOWNTIME_NAMES) {
        return;
    }
    let started = Instant::now();
    if let Err(skip) = ctx.stack() {
        ctx.record(category, RESTART_UNDER_LOAD, started, skip);
        return;
    }
    let traffic = Traffic::start(ctx.gateway.clone(), RPS, "Zero downtime probe");
    tokio::time::sleep(MARGIN).await;
    let restart_started = Instant::now();
    let restarted = ctx.restart(LLM_SERVICE_1).await;
    let restart_took = restart_started.elapsed();
    tokio::time::sleep(MARGIN).await;
    let sent = traffic.stop().await;
    let summary = Summary::of(&sent.answers);
    let verdict = match restarted {
        Err(error) => Verdict::fail(format!("{error:#}; {}", summary.describe())),
        Ok(()) => Verdict::check(
            summary.kept_serving(),
            format!(
                "restart took {}; {:.1} RPS sent; {}, {} ({})",
                format_duration(restart_took),
                sent.achieved_rps(),
                summary.describe(),
                summary.fallback_note(),
                summary.distribution()
            ),
        ),
    };
    ctx.record(category, RESTART_UNDER_LOAD, started, verdict);
    ctx.restore(category, "zero downtime").await;
}

/// The lab's three failure scenarios.
pub async fn run(ctx: &Ctx) {
    let category = Category::Chaos;
    if !ctx.begin(category, NAMES) {
        return;
    }
    if ctx.selected(category, ONE_SERVICE_DOWN) {
        let started = Instant::now();
        match ctx.stack() {
            Err(skip) => {
                ctx.record(category, ONE_SERVICE_DOWN, started, skip);
            }
            Ok(_) => {
                let verdict = one_service_down(ctx).await;
                ctx.record(category, ONE_SERVICE_DOWN, started, verdict);
                ctx.restore(category, "scenario 1").await;
            }
        }
    }
    if ctx.selected(category, REDIS_DOWN) {
        let started = Instant::now();
        let has_redis = ctx
            .status()
            .await
            .is_some_and(|status| find(&status, REDIS).is_some());
        match ctx.stack() {
            Err(skip) => {
                ctx.record(category, REDIS_DOWN, started, skip);
            }
            Ok(_) if !has_redis => {
                ctx.record(
                    category,
                    REDIS_DOWN,
                    started,
                    Verdict::skip("no Redis in this stack"),
                );
            }
            Ok(_) => {
                let verdict = redis_down(ctx).await;
                ctx.record(category, REDIS_DOWN, started, verdict);
                ctx.restore(category, "scenario 2").await;
            }
        }
    }
    if ctx.selected(category, OVERLOAD) {
        let started = Instant::now();
        let verdict = overload(ctx).await;
        ctx.record(category, OVERLOAD, started, verdict);
        ctx.restore(category, "scenario 3").await;
    }
}

/// The lab's scenario 1: `docker-compose stop llm_service_1`, then ten requests a second
/// apart, each to be answered with a 200 by the remaining instance (a fallback answer is
/// not the traffic kept flowing; one is tolerated, for the simulated failures).
async fn one_service_down(ctx: &Ctx) -> Verdict {
    if let Err(error) = ctx.stop(LLM_SERVICE_1).await {
        return Verdict::fail(format!("{error:#}"));
    }
    let mut answers: Vec<Answer> = Vec::new();
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    let run = nonce();
    for n in 0..10 {
        ticks.tick().await;
        answers.push(
            ctx.gateway
                .generate(&format!("Test resilience {n} {run}"), 50)
                .await,
        );
    }
    let summary = Summary::of(&answers);
    Verdict::check(
        summary.kept_serving(),
        format!(
            "{}, {} ({})",
            summary.describe(),
            summary.fallback_note(),
            summary.distribution()
        ),
    )
}

/// The lab's scenario 2: Redis stopped for 30 s — `/health` degraded but 200, every request
/// answered 200 by the instances (a few fallbacks aside) — then started: healthy again.
async fn redis_down(ctx: &Ctx) -> Verdict {
    if let Err(error) = ctx.stop(REDIS).await {
        return Verdict::fail(format!("{error:#}"));
    }
    let stopped = Instant::now();
    let mut healths = Vec::new();
    let mut answers = Vec::new();
    let run = nonce();
    let mut n = 0;
    while stopped.elapsed() < ctx.settings.redis_outage {
        let reading = ctx.gateway.health().await;
        healths.push(match reading {
            Ok(doc) => (doc.status, health::overall(&doc).to_owned()),
            Err(error) => (0, format!("{error:#}")),
        });
        answers.push(
            ctx.gateway
                .generate(&format!("Redis outage {n} {run}"), 30)
                .await,
        );
        n += 1;
        let left = ctx.settings.redis_outage.saturating_sub(stopped.elapsed());
        tokio::time::sleep(left.min(Duration::from_secs(3))).await;
    }
    let degraded_seen = healths.iter().any(|(s, o)| *s == 200 && o == "degraded");
    let never_down = healths
        .iter()
        .all(|(s, o)| *s == 200 && (o == "degraded" || o == "healthy"));
    let summary = Summary::of(&answers);
    let served = summary.kept_serving();

    let restart = Instant::now();
    let back = match ctx.start(REDIS).await {
        Err(error) => Err(format!("{error:#}")),
        Ok(()) => {
            let healthy = ctx
                .wait_health(HealthStatus::Healthy, ctx.settings.change_timeout)
                .await;
            if healthy.ok {
                Ok(format_duration(restart.elapsed()))
            } else {
                Err(format!(
                    "still {} {} after Redis started",
                    overall_of(&healthy.value),
                    format_duration(restart.elapsed())
                ))
            }
        }
    };
    let mut readings: Vec<String> = healths.iter().map(|(s, o)| format!("{s} {o}")).collect();
    readings.dedup();
    let detail = format!(
        "down {}: /health {}; {}, {}; {}",
        format_duration(restart.duration_since(stopped)),
        truncate(&readings.join(" → "), 120),
        summary.describe(),
        summary.fallback_note(),
        match &back {
            Ok(took) => format!("healthy {took} after Redis returned"),
            Err(why) => why.clone(),
        }
    );
    Verdict::check(
        degraded_seen && never_down && served && back.is_ok(),
        detail,
    )
}

/// The lab's scenario 3: `ab -n 100 -c 10` on `/generate`. Every request answered — 200,
/// or 503 with `Retry-After` when the gateway sheds load — none hanging; the breaker is in
/// `/metrics`; the gateway healthy afterwards.
async fn overload(ctx: &Ctx) -> Verdict {
    let answers = traffic::concurrent(&ctx.gateway, 100, 10, OVERLOAD_PROMPT).await;
    let summary = Summary::of(&answers);
    let handled = summary.ok + summary.shed == summary.total;
    let breaker = match ctx.gateway.metrics().await {
        Ok(metrics) => metrics.get().map(|m| m.circuit_breaker.state),
        Err(_) => None,
    };
    let healthy = ctx
        .wait_health(HealthStatus::Healthy, Duration::from_secs(15))
        .await;
    let detail = format!(
        "{}{}; /metrics circuit_breaker.state {}; afterwards /health {}",
        summary.describe(),
        if summary.shed > 0 {
            format!(" ({} shed with Retry-After)", summary.shed)
        } else {
            String::new()
        },
        breaker.map_or("absent", BreakerState::as_str),
        overall_of(&healthy.value)
    );
    Verdict::check(handled && breaker.is_some() && healthy.ok, detail)
}

/// The `overall_status` of a `/health` reading, or `unreadable`.
fn overall_of(reading: &anyhow::Result<Doc<GatewayHealth>>) -> &'static str {
    reading
        .as_ref()
        .ok()
        .and_then(Doc::get)
        .map_or("unreadable", |h| h.overall_status.as_str())
}
