//! Rubric 1, basic functionality (25 points): the gateway answers on its port, at least two
//! llm-services are up, `/generate` answers in the lab's shape, and the infrastructure
//! (Redis; Prometheus, PostgreSQL and Grafana where the stack has them) is operational.

use std::time::Instant;

use serde_json::{Value, json};
use stack_control::{LLM_SERVICE_1, LLM_SERVICE_2, REDIS, ServiceStatus};

use crate::suite::client::{health, truncate};
use crate::suite::context::Ctx;
use crate::suite::report::{Category, Verdict, format_duration};
use crate::suite::stack::{
    GRAFANA_SERVICE, PROMETHEUS_SERVICE, find, is_up, optional_service, state_name,
};

/// Check names.
pub const PORT: &str = "gateway answers on its port";
/// See [`PORT`].
pub const LLM_UP: &str = "at least 2 llm services up";
/// See [`PORT`].
pub const GENERATE: &str = "/generate answers success in the lab's shape";
/// See [`PORT`].
pub const REDIS_OK: &str = "infrastructure: Redis healthy";
/// See [`PORT`].
pub const PROMETHEUS_OK: &str = "infrastructure: Prometheus reachable";
/// See [`PORT`].
pub const POSTGRES_OK: &str = "infrastructure: PostgreSQL operational";
/// See [`PORT`].
pub const GRAFANA_OK: &str = "infrastructure: Grafana reachable";
/// Every check of the group.
pub const NAMES: &[&str] = &[
    PORT,
    LLM_UP,
    GENERATE,
    REDIS_OK,
    PROMETHEUS_OK,
    POSTGRES_OK,
    GRAFANA_OK,
];

const CATEGORY: Category = Category::Basic;

/// Runs the group (nothing destructive).
pub async fn run(ctx: &Ctx) {
    if !ctx.begin(CATEGORY, NAMES) {
        return;
    }
    let status = ctx.status().await;
    let status = status.as_deref();
    ctx.check(CATEGORY, PORT, gateway_port(ctx)).await;
    ctx.check(CATEGORY, LLM_UP, llm_up(ctx, status)).await;
    ctx.check(CATEGORY, GENERATE, generate(ctx)).await;
    ctx.check(CATEGORY, REDIS_OK, redis(ctx, status)).await;
    ctx.check(CATEGORY, PROMETHEUS_OK, prometheus(ctx, status))
        .await;
    ctx.check(CATEGORY, POSTGRES_OK, postgres(ctx, status))
        .await;
    ctx.check(CATEGORY, GRAFANA_OK, grafana(ctx, status)).await;
}

async fn gateway_port(ctx: &Ctx) -> anyhow::Result<Verdict> {
    let started = Instant::now();
    let (status, _) = ctx.gateway.health().await?;
    Ok(Verdict::pass(format!(
        "{} answered /health with HTTP {status} in {}",
        ctx.gateway.base(),
        format_duration(started.elapsed())
    )))
}

async fn llm_up(ctx: &Ctx, status: Option<&[ServiceStatus]>) -> anyhow::Result<Verdict> {
    let (_, body) = ctx.gateway.health().await?;
    let available = health::available(&body).unwrap_or(0);
    let mut detail = format!("/health: {available} available");
    let mut ok = available >= 2;
    if let Some(status) = status {
        let up: Vec<&str> = [LLM_SERVICE_1, LLM_SERVICE_2]
            .into_iter()
            .filter(|name| find(status, name).is_some_and(|s| is_up(s.state)))
            .collect();
        detail.push_str(&format!("; controller: {} up", up.join(", ")));
        if up.is_empty() {
            detail.push_str(" (none)");
        }
        ok &= up.len() == 2;
    } else {
        detail.push_str(&format!("; controller: none ({})", ctx.no_stack));
    }
    Ok(Verdict::check(ok, detail))
}

async fn generate(ctx: &Ctx) -> anyhow::Result<Verdict> {
    // The seed's own request.
    let body = json!({"prompt": "Hello world", "model": "gpt-3.5-turbo", "max_tokens": 50});
    let answer = ctx.gateway.post_generate(&body, None).await;
    if !answer.is_success() {
        return Ok(Verdict::fail(answer.describe()));
    }
    let problems = envelope_problems(answer.data());
    if !problems.is_empty() {
        return Ok(Verdict::fail(format!(
            "{}: {}",
            problems.join(", "),
            truncate(&answer.body.to_string(), 200)
        )));
    }
    Ok(Verdict::pass(format!(
        "served by {} ({}), {} tokens, fallback_used {}",
        answer.served_by().unwrap_or("?"),
        answer.data()["model_used"].as_str().unwrap_or("?"),
        answer.data()["tokens_used"],
        answer.fallback_used()
    )))
}

/// What is wrong with a success's `data` against the lab's contract: the fields of the
/// `/generate` envelope (README.md, "The gateway") with their types — integer `tokens_used`
/// and `response_time_ms`, boolean `fallback_used`, `fallback_type` null or a tier name.
pub fn envelope_problems(data: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut want = |ok: bool, what: &str| {
        if !ok {
            problems.push(what.to_owned());
        }
    };
    want(
        data["response"].as_str().is_some_and(|r| !r.is_empty()),
        "response is not a non-empty string",
    );
    want(data["model_used"].is_string(), "model_used is not a string");
    want(
        data["tokens_used"].is_u64(),
        "tokens_used is not an integer",
    );
    want(
        data["response_time_ms"].is_u64(),
        "response_time_ms is not an integer",
    );
    want(data["served_by"].is_string(), "served_by is not a string");
    want(
        data["fallback_used"].is_boolean(),
        "fallback_used is not a boolean",
    );
    want(
        data["fallback_type"].is_null()
            || matches!(
                data["fallback_type"].as_str(),
                Some("secondary" | "cache" | "template")
            ),
        "fallback_type is not null, secondary, cache or template",
    );
    want(data["request_id"].is_string(), "request_id is not a string");
    problems
}

async fn redis(ctx: &Ctx, status: Option<&[ServiceStatus]>) -> anyhow::Result<Verdict> {
    let (_, body) = ctx.gateway.health().await?;
    let in_stack = status.and_then(|s| find(s, REDIS));
    match (health::check_status(&body, "redis"), in_stack) {
        (Some(check), _) => Ok(Verdict::check(
            check == "healthy",
            format!(
                "/health health_checks.redis: {check}{}",
                in_stack.map_or(String::new(), |s| format!(
                    "; controller: {}",
                    state_name(s.state)
                ))
            ),
        )),
        (None, Some(s)) => Ok(Verdict::fail(format!(
            "the stack runs Redis ({}) but /health has no `redis` check",
            state_name(s.state)
        ))),
        (None, None) => Ok(Verdict::skip(
            "no Redis in this stack (/health has no `redis` check)",
        )),
    }
}

async fn prometheus(ctx: &Ctx, status: Option<&[ServiceStatus]>) -> anyhow::Result<Verdict> {
    let url = &ctx.settings.prometheus_url;
    Ok(optional_service(&ctx.http, status, &PROMETHEUS_SERVICE, url).await)
}

async fn grafana(ctx: &Ctx, status: Option<&[ServiceStatus]>) -> anyhow::Result<Verdict> {
    let url = &ctx.settings.grafana_url;
    Ok(optional_service(&ctx.http, status, &GRAFANA_SERVICE, url).await)
}

async fn postgres(ctx: &Ctx, status: Option<&[ServiceStatus]>) -> anyhow::Result<Verdict> {
    let (_, body) = ctx.gateway.health().await?;
    let check = body["health_checks"].as_object().and_then(|checks| {
        checks
            .iter()
            .find(|(name, _)| name.contains("postgres") || name.contains("database"))
            .map(|(name, c)| (name.clone(), c["status"].as_str().unwrap_or("?").to_owned()))
    });
    let listed = status.and_then(|s| find(s, "postgres").or_else(|| find(s, "postgresql")));
    Ok(match (check, listed) {
        (Some((name, state)), _) => Verdict::check(
            state == "healthy",
            format!("/health health_checks.{name}: {state}"),
        ),
        (None, Some(s)) => Verdict::check(
            is_up(s.state),
            format!("controller: {} {}", s.name, state_name(s.state)),
        ),
        (None, None) => Verdict::skip(
            "nothing to check: the stack lists no PostgreSQL service and the gateway's /health \
             has no database check",
        ),
    })
}
