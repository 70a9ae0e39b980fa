//! Rubric 3, service discovery (20 points): the instances registered themselves (every
//! llm-service of the stack in `/health` `service_discovery.services[]`, the secondary tier's
//! llm_service_3 included when the stack has it), requests are spread over them, a stopped
//! instance leaves the pool and a started one rejoins it (the lab's `docker stop
//! llm_service_1`, then `available_services` one less).

use std::time::Instant;

use stack_control::{LLM_SERVICE_1, LLM_SERVICE_2, LLM_SERVICE_3};

use crate::suite::client::health;
use crate::suite::context::Ctx;
use crate::suite::report::{Category, Verdict, format_duration};
use crate::suite::stack::find;
use crate::suite::traffic::{self, Summary};

/// Check names.
pub const REGISTERED: &str = "auto-registration: every instance in /health";
/// See [`REGISTERED`].
pub const BALANCED: &str = "load balancing: requests spread over the instances";
/// See [`REGISTERED`].
pub const LEAVES: &str = "failure detection: a stopped instance leaves the pool";
/// See [`REGISTERED`].
pub const REJOINS: &str = "recovery: a started instance rejoins the pool";
/// Every check of the group.
pub const NAMES: &[&str] = &[REGISTERED, BALANCED, LEAVES, REJOINS];

const CATEGORY: Category = Category::ServiceDiscovery;
const BALANCE_REQUESTS: usize = 20;
const BALANCE_CONCURRENCY: usize = 4;

/// Runs the group; the stop/start part restores the stack after it.
pub async fn run(ctx: &Ctx) {
    if !ctx.begin(CATEGORY, NAMES) {
        return;
    }
    ctx.check(CATEGORY, REGISTERED, registered(ctx)).await;
    ctx.check(CATEGORY, BALANCED, balanced(ctx)).await;
    if ctx.selected(CATEGORY, LEAVES) || ctx.selected(CATEGORY, REJOINS) {
        leave_and_rejoin(ctx).await;
    }
}

async fn registered(ctx: &Ctx) -> anyhow::Result<Verdict> {
    let doc = ctx.gateway.health().await?;
    let services = &doc.typed("GET /health")?.service_discovery.services;
    let listed = services
        .iter()
        .map(|s| {
            let state = if s.healthy { "healthy" } else { "unhealthy" };
            format!("{} {} {state} ({})", s.id, s.url, s.tier)
        })
        .collect::<Vec<_>>()
        .join(", ");
    // With a stack, its llm-services by name (their SERVICE_ID): the two primaries, and the
    // secondary when the stack runs one; without, any two.
    let expected: Vec<&str> = match ctx.status().await {
        Some(status) => [LLM_SERVICE_1, LLM_SERVICE_2, LLM_SERVICE_3]
            .into_iter()
            .filter(|name| find(&status, name).is_some())
            .collect(),
        None => Vec::new(),
    };
    let healthy = |id: &str| services.iter().any(|s| s.id == id && s.healthy);
    let ok = if expected.is_empty() {
        services.iter().filter(|s| s.healthy).count() >= 2
    } else {
        expected.len() >= 2 && expected.iter().all(|id| healthy(id))
    };
    let want = if expected.is_empty() {
        "want ≥ 2 healthy".to_owned()
    } else {
        format!("want {} healthy", expected.join(" and "))
    };
    Ok(Verdict::check(ok, format!("services[]: {listed} ({want})")))
}

async fn balanced(ctx: &Ctx) -> anyhow::Result<Verdict> {
    let answers = traffic::concurrent(
        &ctx.gateway,
        BALANCE_REQUESTS,
        BALANCE_CONCURRENCY,
        "Explain load balancing in one sentence",
    )
    .await;
    let summary = Summary::of(&answers);
    let instances = summary
        .served_by
        .keys()
        .filter(|by| by.as_str() != "fallback_manager")
        .count();
    Ok(Verdict::check(
        instances >= 2,
        format!(
            "{} requests served by {} ({} instance(s))",
            summary.total,
            summary.distribution(),
            instances
        ),
    ))
}

async fn leave_and_rejoin(ctx: &Ctx) {
    let started = Instant::now();
    if let Err(skip) = ctx.stack() {
        ctx.record(CATEGORY, LEAVES, started, skip.clone());
        ctx.record(CATEGORY, REJOINS, started, skip);
        return;
    }
    match leave(ctx).await {
        Ok((leaves, before)) => {
            ctx.record(CATEGORY, LEAVES, started, leaves);
            let started = Instant::now();
            let rejoins = rejoin(ctx, before).await;
            ctx.record(CATEGORY, REJOINS, started, rejoins);
        }
        Err(failed) => {
            let why = format!("not reached: {}", failed.detail);
            ctx.record(CATEGORY, LEAVES, started, failed);
            ctx.record(CATEGORY, REJOINS, Instant::now(), Verdict::fail(why));
        }
    }
    ctx.restore(CATEGORY, "service discovery").await;
}

/// Stops llm_service_1 and waits for `available_services` to drop by one; the verdict and
/// the count before, or a failure when it could not be stopped.
async fn leave(ctx: &Ctx) -> Result<(Verdict, u64), Verdict> {
    let before = match ctx.gateway.health().await {
        Ok(doc) => health::available(&doc).unwrap_or(0),
        Err(error) => return Err(Verdict::fail(format!("{error:#}"))),
    };
    if let Err(error) = ctx.stop(LLM_SERVICE_1).await {
        return Err(Verdict::fail(format!("{error:#}")));
    }
    let stopped = Instant::now();
    let polled = ctx
        .poll(
            ctx.settings.change_timeout,
            || async {
                let doc = ctx.gateway.health().await.ok()?;
                let gone = !doc.get().is_some_and(|h| {
                    h.service_discovery
                        .services
                        .iter()
                        .any(|s| s.id == LLM_SERVICE_1 && s.healthy)
                });
                Some((health::available(&doc).unwrap_or(0), gone))
            },
            |reading| reading.is_some_and(|(n, gone)| n < before && gone),
        )
        .await;
    let after = polled
        .value
        .map_or("unknown".into(), |(n, _)| n.to_string());
    let detail = format!(
        "available_services {before} → {after} {} after stopping {LLM_SERVICE_1} (limit {})",
        format_duration(stopped.elapsed()),
        format_duration(ctx.settings.change_timeout)
    );
    Ok((Verdict::check(polled.ok, detail), before))
}

/// Starts llm_service_1 and waits for `available_services` to be back to `before`.
async fn rejoin(ctx: &Ctx, before: u64) -> Verdict {
    let started = Instant::now();
    if let Err(error) = ctx.start(LLM_SERVICE_1).await {
        return Verdict::fail(format!("{error:#}"));
    }
    let start_took = started.elapsed();
    let polled = ctx
        .poll(
            ctx.settings.change_timeout,
            || async {
                let doc = ctx.gateway.health().await.ok()?;
                Some(health::available(&doc).unwrap_or(0))
            },
            |n| n.is_some_and(|n| n >= before),
        )
        .await;
    let now = polled.value.map_or("unknown".into(), |n| n.to_string());
    Verdict::check(
        polled.ok,
        format!(
            "available_services back to {now} (want {before}) {} after starting {LLM_SERVICE_1} (healthy after {})",
            format_duration(started.elapsed()),
            format_duration(start_took)
        ),
    )
}
