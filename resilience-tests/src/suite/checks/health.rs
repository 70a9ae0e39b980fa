//! Rubric 5, health checks (15 points): a granular `overall_status`, per-dependency checks
//! (Redis, discovery, system resources with CPU and memory), `/health` on every llm-service,
//! and a Redis outage that degrades the gateway's health without stopping traffic.

use std::time::Instant;

use llm_api::gateway::{GatewayHealth, HealthStatus};
use stack_control::REDIS;

use super::nonce;
use crate::suite::client::health;
use crate::suite::context::Ctx;
use crate::suite::doc::Doc;
use crate::suite::report::{Category, Verdict, format_duration};
use crate::suite::stack::find;
use crate::suite::traffic::{self, Summary};

/// Check names.
pub const GRANULAR_STATUS: &str = "overall_status is healthy, degraded or unhealthy";
/// See [`GRANULAR_STATUS`].
pub const DEPENDENCIES: &str = "per-dependency checks in /health";
/// See [`GRANULAR_STATUS`].
pub const LLM_HEALTH: &str = "every llm-service answers /health";
/// See [`GRANULAR_STATUS`].
pub const REDIS_DOWN: &str = "Redis down: /health 200 degraded, /generate still answers";
/// See [`GRANULAR_STATUS`].
pub const REDIS_BACK: &str = "Redis back: healthy again";
/// Every check of the group.
pub const NAMES: &[&str] = &[
    GRANULAR_STATUS,
    DEPENDENCIES,
    LLM_HEALTH,
    REDIS_DOWN,
    REDIS_BACK,
];

const CATEGORY: Category = Category::Health;
const STATUSES: [&str; 3] = ["healthy", "degraded", "unhealthy"];
/// Requests sent while Redis is down: answered 200 by the instances, a fallback aside.
const PROBES: usize = 10;

/// Runs the group; the Redis part restores the stack after it.
pub async fn run(ctx: &Ctx) {
    if !ctx.begin(CATEGORY, NAMES) {
        return;
    }
    ctx.check(CATEGORY, GRANULAR_STATUS, granular_status(ctx))
        .await;
    ctx.check(CATEGORY, DEPENDENCIES, dependencies(ctx)).await;
    ctx.check(CATEGORY, LLM_HEALTH, llm_health(ctx)).await;
    if ctx.selected(CATEGORY, REDIS_DOWN) || ctx.selected(CATEGORY, REDIS_BACK) {
        redis_outage(ctx).await;
    }
}

async fn granular_status(ctx: &Ctx) -> anyhow::Result<Verdict> {
    let doc = ctx.gateway.health().await?;
    let status = doc.status;
    // The rubric grades `overall_status` alone: a body that is not the gateway's type is
    // graded on the raw field, as written.
    let overall = match doc.get() {
        Some(health) => health.overall_status.as_str(),
        None => doc.raw["overall_status"].as_str().unwrap_or("absent"),
    };
    let code_agrees = if overall == "unhealthy" {
        status == 503
    } else {
        status == 200
    };
    Ok(Verdict::check(
        STATUSES.contains(&overall) && code_agrees,
        format!("overall_status {overall} with HTTP {status}"),
    ))
}

async fn dependencies(ctx: &Ctx) -> anyhow::Result<Verdict> {
    let doc = ctx.gateway.health().await?;
    let stack_has_redis = ctx
        .status()
        .await
        .is_some_and(|status| find(&status, REDIS).is_some());
    Ok(dependencies_verdict(&doc, stack_has_redis))
}

/// Every check with a valid status, a `redis` one when the stack runs Redis, a system one.
fn dependencies_verdict(doc: &Doc<GatewayHealth>, stack_has_redis: bool) -> Verdict {
    // Each check's name and status. A body that is not the gateway's type is read raw, so
    // that every check without a valid status is named, not only the first that fails to
    // parse.
    let checks: Vec<(&str, Option<&str>)> = match doc.get() {
        Some(health) => health
            .health_checks
            .iter()
            .map(|(name, c)| (name.as_str(), Some(c.status.as_str())))
            .collect(),
        None => match doc.raw["health_checks"].as_object() {
            Some(raw) => raw
                .iter()
                .map(|(name, c)| (name.as_str(), c["status"].as_str()))
                .collect(),
            None => return Verdict::fail("/health has no health_checks object"),
        },
    };
    let listed: Vec<String> = checks
        .iter()
        .map(|(name, status)| format!("{name} {}", status.unwrap_or("?")))
        .collect();
    let mut problems = Vec::new();
    if checks.is_empty() {
        problems.push("no check at all".to_owned());
    }
    for (name, status) in &checks {
        if !status.is_some_and(|s| STATUSES.contains(&s)) {
            problems.push(format!("{name} has no healthy/degraded/unhealthy status"));
        }
    }
    let has = |wanted: &str| checks.iter().any(|(name, _)| *name == wanted);
    if stack_has_redis && !has("redis") {
        problems.push("no `redis` check although the stack runs Redis".into());
    }
    if !checks.iter().any(|(name, _)| name.contains("system")) {
        problems.push("no system-resources check (CPU, memory)".into());
    }
    let detail = format!("health_checks: {}", listed.join(", "));
    if problems.is_empty() {
        Verdict::pass(detail)
    } else {
        Verdict::fail(format!("{detail}; {}", problems.join("; ")))
    }
}

async fn llm_health(ctx: &Ctx) -> anyhow::Result<Verdict> {
    anyhow::ensure!(!ctx.instances.is_empty(), "no llm-service instance known");
    let mut seen = Vec::new();
    let mut ok = true;
    for instance in &ctx.instances {
        match ctx.llm.health(&instance.url).await {
            Ok(doc) => {
                // As for the gateway, `overall_status` alone is graded: read raw when the
                // body is not llm-service's type.
                let overall = match doc.get() {
                    Some(health) => health.overall_status.as_str(),
                    None => doc.raw["overall_status"].as_str().unwrap_or("absent"),
                };
                let status = doc.status;
                ok &= status == 200 && STATUSES.contains(&overall);
                seen.push(format!("{} HTTP {status} {overall}", instance.id));
            }
            Err(error) => {
                ok = false;
                seen.push(format!("{}: {error:#}", instance.id));
            }
        }
    }
    Ok(Verdict::check(ok, seen.join(", ")))
}

/// Stops Redis: `/health` must read degraded with 200 and `/generate` keep being served by
/// the instances (a fallback answer is not that; one in [`PROBES`] is tolerated, for the
/// simulated failures); started again, `/health` must read healthy.
async fn redis_outage(ctx: &Ctx) {
    let started = Instant::now();
    let has_redis = ctx
        .status()
        .await
        .is_some_and(|status| find(&status, REDIS).is_some());
    if !has_redis {
        let skip = ctx
            .stack()
            .err()
            .unwrap_or_else(|| Verdict::skip("no Redis in this stack"));
        ctx.record(CATEGORY, REDIS_DOWN, started, skip.clone());
        ctx.record(CATEGORY, REDIS_BACK, started, skip);
        return;
    }
    let (down, was_stopped) = redis_down(ctx).await;
    ctx.record(CATEGORY, REDIS_DOWN, started, down);
    let started = Instant::now();
    let back = if was_stopped {
        redis_back(ctx).await
    } else {
        Verdict::fail("not reached: Redis could not be stopped")
    };
    ctx.record(CATEGORY, REDIS_BACK, started, back);
    ctx.restore(CATEGORY, "Redis outage").await;
}

/// The verdict, and whether Redis was stopped at all.
async fn redis_down(ctx: &Ctx) -> (Verdict, bool) {
    if let Err(error) = ctx.stop(REDIS).await {
        return (Verdict::fail(format!("{error:#}")), false);
    }
    let stopped = Instant::now();
    let degraded = ctx
        .wait_health(HealthStatus::Degraded, ctx.settings.change_timeout)
        .await;
    let (status, overall) = match &degraded.value {
        Ok(doc) => (doc.status.to_string(), health::overall(doc).to_owned()),
        Err(error) => ("none".into(), format!("{error:#}")),
    };
    let answers = traffic::concurrent(
        &ctx.gateway,
        PROBES,
        PROBES,
        &format!("Redis outage probe {}", nonce()),
    )
    .await;
    let served = Summary::of(&answers);
    let verdict = Verdict::check(
        degraded.ok && status == "200" && served.kept_serving(),
        format!(
            "/health HTTP {status} {overall} {} after the stop; /generate: {}, {}, {} by the instances ({})",
            format_duration(stopped.elapsed()),
            served.describe(),
            served.fallback_note(),
            served.by_instances(),
            served.distribution()
        ),
    );
    (verdict, true)
}

async fn redis_back(ctx: &Ctx) -> Verdict {
    let started = Instant::now();
    if let Err(error) = ctx.start(REDIS).await {
        return Verdict::fail(format!("{error:#}"));
    }
    let healthy = ctx
        .wait_health(HealthStatus::Healthy, ctx.settings.change_timeout)
        .await;
    let overall = match &healthy.value {
        Ok(doc) => health::overall(doc).to_owned(),
        Err(error) => format!("{error:#}"),
    };
    Verdict::check(
        healthy.ok,
        format!(
            "/health {overall} {} after starting Redis (limit {})",
            format_duration(started.elapsed()),
            format_duration(ctx.settings.change_timeout)
        ),
    )
}

#[cfg(test)]
mod tests {
    use llm_api::breaker::BreakerState;
    use serde_json::json;

    use super::*;
    use crate::suite::report::Outcome;
    use crate::suite::tests::wire;

    fn health(checks: &[(&str, bool)]) -> Doc<GatewayHealth> {
        let breaker = wire::breaker(BreakerState::Closed, 0);
        let body = wire::health(HealthStatus::Healthy, breaker, Vec::new(), checks);
        Doc::new(200, serde_json::to_value(body).unwrap())
    }

    #[test]
    fn the_gateway_s_checks_are_read_through_the_type() {
        let all = health(&[("redis", true), ("system_resources", false)]);
        let verdict = dependencies_verdict(&all, true);
        assert_eq!(verdict.outcome, Outcome::Pass, "{}", verdict.detail);
        assert_eq!(
            verdict.detail,
            "health_checks: redis healthy, system_resources unhealthy"
        );
        let no_redis = dependencies_verdict(&health(&[("system_resources", true)]), true);
        assert_eq!(no_redis.outcome, Outcome::Fail);
        assert!(
            no_redis
                .detail
                .ends_with("no `redis` check although the stack runs Redis"),
            "{}",
            no_redis.detail
        );
        let without = dependencies_verdict(&health(&[("system_resources", true)]), false);
        assert_eq!(without.outcome, Outcome::Pass, "no Redis in the stack");
    }

    #[test]
    fn every_check_without_a_valid_status_is_named() {
        let mut body = health(&[("redis", true), ("system_resources", true)]).raw;
        body["health_checks"]["redis"]["status"] = json!("ok");
        body["health_checks"]["system_resources"]["status"] = json!(1);
        let doc: Doc<GatewayHealth> = Doc::new(200, body);
        assert!(doc.get().is_none(), "not the gateway's type");
        let verdict = dependencies_verdict(&doc, true);
        assert_eq!(verdict.outcome, Outcome::Fail);
        assert_eq!(
            verdict.detail,
            "health_checks: redis ok, system_resources ?; \
             redis has no healthy/degraded/unhealthy status; \
             system_resources has no healthy/degraded/unhealthy status"
        );
        let none = dependencies_verdict(&Doc::new(200, json!({"status": "ok"})), false);
        assert_eq!(none.detail, "/health has no health_checks object");
    }
}
