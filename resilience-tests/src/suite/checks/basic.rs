//! Rubric 1, basic functionality (25 points): the gateway answers on its port, at least two
//! llm-services are up, `/generate` answers in the lab's shape, and the infrastructure
//! (Redis; Prometheus, PostgreSQL and Grafana where the stack has them) is operational.

use std::time::Instant;

use llm_api::envelope::GenerateData;
use llm_api::gateway::HealthStatus;
use llm_api::generate::GenerateRequest;
use serde_json::Value;
use stack_control::{LLM_SERVICE_1, LLM_SERVICE_2, REDIS, ServiceStatus};

use crate::suite::client::{Answer, truncate};
use crate::suite::context::Ctx;
use crate::suite::report::{Category, Verdict, format_duration};
use crate::suite::stack::{GRAFANA_SERVICE, PROMETHEUS_SERVICE, find, is_up, optional_service};

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
    // Any JSON answer will do: this check is about the port; the others grade the body.
    let doc = ctx.gateway.health().await?;
    Ok(Verdict::pass(format!(
        "{} answered /health with HTTP {} in {}",
        ctx.gateway.base(),
        doc.status,
        format_duration(started.elapsed())
    )))
}

async fn llm_up(ctx: &Ctx, status: Option<&[ServiceStatus]>) -> anyhow::Result<Verdict> {
    let doc = ctx.gateway.health().await?;
    let available = doc
        .typed("GET /health")?
        .service_discovery
        .available_services;
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
    let body = GenerateRequest {
        max_tokens: Some(50),
        model: Some("gpt-3.5-turbo".into()),
        ..GenerateRequest::new("Hello world")
    };
    let answer = ctx.gateway.post_generate(&body, None).await;
    Ok(generate_verdict(&answer))
}

/// A 200 in the gateway's envelope with a non-empty `response`.
fn generate_verdict(answer: &Answer) -> Verdict {
    let problems = match answer.data() {
        Some(data) => data_problems(data),
        // A 200 `success` that is not the gateway's envelope: the raw body is graded field
        // by field, so that the detail names every field of the wrong type, not the first.
        None if answer.status == Some(200) && answer.body["status"] == "success" => {
            envelope_problems(&answer.body["data"])
        }
        None => return Verdict::fail(answer.describe()),
    };
    if !problems.is_empty() {
        return Verdict::fail(format!(
            "{}: {}",
            problems.join(", "),
            truncate(&answer.body.to_string(), 200)
        ));
    }
    let Some(data) = answer.data() else {
        return Verdict::fail(format!(
            "not the gateway's /generate envelope: {}",
            answer.describe()
        ));
    };
    Verdict::pass(format!(
        "served by {} ({}), {} tokens, fallback_used {}",
        data.served_by, data.model_used, data.tokens_used, data.fallback_used
    ))
}

/// What the types leave to check in a success's `data`: a non-empty `response`.
fn data_problems(data: &GenerateData) -> Vec<String> {
    if data.response.is_empty() {
        vec!["response is not a non-empty string".to_owned()]
    } else {
        Vec::new()
    }
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
    let doc = ctx.gateway.health().await?;
    let checks = &doc.typed("GET /health")?.health_checks;
    let in_stack = status.and_then(|s| find(s, REDIS));
    match (checks.get("redis").map(|c| c.status), in_stack) {
        (Some(check), _) => Ok(Verdict::check(
            check == HealthStatus::Healthy,
            format!(
                "/health health_checks.redis: {}{}",
                check.as_str(),
                in_stack.map_or(String::new(), |s| format!(
                    "; controller: {}",
                    s.state.as_str()
                ))
            ),
        )),
        (None, Some(s)) => Ok(Verdict::fail(format!(
            "the stack runs Redis ({}) but /health has no `redis` check",
            s.state.as_str()
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
    let doc = ctx.gateway.health().await?;
    let check = doc
        .typed("GET /health")?
        .health_checks
        .iter()
        .find(|(name, _)| name.contains("postgres") || name.contains("database"))
        .map(|(name, c)| (name.clone(), c.status));
    let listed = status.and_then(|s| find(s, "postgres").or_else(|| find(s, "postgresql")));
    Ok(match (check, listed) {
        (Some((name, state)), _) => Verdict::check(
            state == HealthStatus::Healthy,
            format!("/health health_checks.{name}: {}", state.as_str()),
        ),
        (None, Some(s)) => Verdict::check(
            is_up(s.state),
            format!("controller: {} {}", s.name, s.state.as_str()),
        ),
        (None, None) => Verdict::skip(
            "nothing to check: the stack lists no PostgreSQL service and the gateway's /health \
             has no database check",
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use llm_api::ErrorBody;
    use serde_json::json;

    use super::*;
    use crate::suite::report::Outcome;
    use crate::suite::tests::wire;

    fn answer(status: u16, body: Value) -> Answer {
        Answer::new(Some(status), body, Duration::from_millis(5))
    }

    #[test]
    fn a_gateway_envelope_passes_and_names_who_served_it() {
        let served = wire::answer(200, &wire::success("llm_service_2", None), Duration::ZERO);
        let verdict = generate_verdict(&served);
        assert_eq!(verdict.outcome, Outcome::Pass, "{}", verdict.detail);
        assert_eq!(
            verdict.detail,
            "served by llm_service_2 (sim), 2 tokens, fallback_used false"
        );
        let mut empty = wire::success("llm_service_2", None);
        empty.data.response.clear();
        let verdict = generate_verdict(&wire::answer(200, &empty, Duration::ZERO));
        assert_eq!(verdict.outcome, Outcome::Fail);
        assert!(
            verdict
                .detail
                .starts_with("response is not a non-empty string"),
            "{}",
            verdict.detail
        );
    }

    #[test]
    fn a_success_of_another_shape_is_graded_field_by_field() {
        let mut body = serde_json::to_value(wire::success("llm_service_1", None)).unwrap();
        body["data"]["tokens_used"] = json!("2");
        body["data"]["fallback_used"] = json!("no");
        body["data"]["fallback_type"] = json!("backup");
        let verdict = generate_verdict(&answer(200, body));
        assert_eq!(verdict.outcome, Outcome::Fail);
        assert!(
            verdict.detail.starts_with(
                "tokens_used is not an integer, fallback_used is not a boolean, \
                 fallback_type is not null, secondary, cache or template: "
            ),
            "{}",
            verdict.detail
        );
    }

    #[test]
    fn an_error_or_an_unreadable_success_fails_with_the_body() {
        let error = ErrorBody::new("upstream_error", "no tier answered", None);
        let failed = generate_verdict(&wire::answer(503, &error, Duration::ZERO));
        assert_eq!(failed.outcome, Outcome::Fail);
        assert!(failed.detail.starts_with("HTTP 503 "), "{}", failed.detail);

        let mut body = serde_json::to_value(wire::success("llm_service_1", None)).unwrap();
        body["data"]["fallback_reason"] = json!("bad luck");
        let odd = generate_verdict(&answer(200, body));
        assert_eq!(odd.outcome, Outcome::Fail);
        assert!(
            odd.detail
                .starts_with("not the gateway's /generate envelope: HTTP 200"),
            "{}",
            odd.detail
        );
    }
}
