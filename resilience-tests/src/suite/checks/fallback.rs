//! Rubric 4, fallback (20 points): with both llm-services stopped (the lab's `docker-compose
//! stop llm_service_1 llm_service_2`), a common prompt is answered from the response cache
//! and a novel one from the template, each in under a second; the gateway logs one WARN
//! line per fallback answer with the request id (read through the controller: the log file
//! of a local service, `docker compose logs` or `podman logs`); once the services are back,
//! they serve again.

use std::time::{Duration, Instant};

use llm_api::envelope::FallbackType;
use llm_api::generate::GenerateRequest;
use stack_control::{API_GATEWAY, ControlError, LLM_SERVICE_1, LLM_SERVICE_2};

use super::nonce;
use crate::suite::client::{Answer, health, reason_name, tier_name, truncate};
use crate::suite::context::Ctx;
use crate::suite::report::{Category, Verdict, format_duration};

/// Check names.
pub const CACHED: &str = "cached answer for a common prompt (What is AI?) in < 1 s";
/// See [`CACHED`].
pub const TEMPLATE: &str = "template answer for a novel prompt in < 1 s";
/// See [`CACHED`].
pub const LOGGED: &str = "fallback logged: a WARN line with the request id";
/// See [`CACHED`].
pub const RECOVERED: &str = "the instances serve again once restarted";
/// Every check of the group.
pub const NAMES: &[&str] = &[CACHED, TEMPLATE, LOGGED, RECOVERED];

const CATEGORY: Category = Category::Fallback;
/// The lab's SLA for a fallback answer.
pub const FALLBACK_SLA: Duration = Duration::from_secs(1);
/// The prompt the lab's fallback test sends; the gateway's cache is seeded with it.
pub const COMMON_PROMPT: &str = "What is AI?";

/// Runs the group: stops both llm-services, checks, restores, checks the recovery.
pub async fn run(ctx: &Ctx) {
    if !ctx.begin(CATEGORY, NAMES) {
        return;
    }
    let started = Instant::now();
    if let Err(skip) = ctx.stack() {
        for name in NAMES {
            ctx.record(CATEGORY, name, started, skip.clone());
        }
        return;
    }
    scenario(ctx).await;
    ctx.restore(CATEGORY, "fallback").await;
    ctx.step(CATEGORY, RECOVERED, recovered(ctx)).await;
}

async fn scenario(ctx: &Ctx) {
    let started = Instant::now();
    let mut stop_problems = Vec::new();
    for service in [LLM_SERVICE_1, LLM_SERVICE_2] {
        if let Err(error) = ctx.stop(service).await {
            stop_problems.push(format!("{error:#}"));
        }
    }
    if !stop_problems.is_empty() {
        let why = stop_problems.join("; ");
        for name in [CACHED, TEMPLATE, LOGGED] {
            ctx.record(CATEGORY, name, started, Verdict::fail(why.clone()));
        }
        return;
    }
    // Both gone from the pool: the fallback tiers answer at once.
    let emptied = ctx
        .poll(
            ctx.settings.change_timeout,
            || async {
                let doc = ctx.gateway.health().await.ok()?;
                health::available(&doc)
            },
            |n| *n == Some(0),
        )
        .await;
    let pool = if emptied.ok {
        format!("pool empty after {}", format_duration(emptied.took))
    } else {
        format!(
            "available_services still {:?} after {}",
            emptied.value,
            format_duration(emptied.took)
        )
    };

    let run = nonce();
    let cache_id = format!("suite-fallback-cache-{run}");
    let started = Instant::now();
    let cached = ctx
        .gateway
        .post_generate(
            &GenerateRequest {
                max_tokens: Some(100),
                ..GenerateRequest::new(COMMON_PROMPT)
            },
            Some(&cache_id),
        )
        .await;
    ctx.record(
        CATEGORY,
        CACHED,
        started,
        fallback_verdict(ctx, &cached, FallbackType::Cache, &pool),
    );

    let template_id = format!("suite-fallback-template-{run}");
    let started = Instant::now();
    let novel = ctx
        .gateway
        .post_generate(
            &GenerateRequest {
                max_tokens: Some(100),
                ..GenerateRequest::new(format!(
                    "Compose a limerick about quaternion drift, run {run}"
                ))
            },
            Some(&template_id),
        )
        .await;
    ctx.record(
        CATEGORY,
        TEMPLATE,
        started,
        fallback_verdict(ctx, &novel, FallbackType::Template, &pool),
    );

    let started = Instant::now();
    let expected = [(&cached, cache_id.as_str()), (&novel, template_id.as_str())];
    let verdict = logged(ctx, &expected).await;
    ctx.record(CATEGORY, LOGGED, started, verdict);
}

/// A 200 from the expected tier within the SLA.
fn fallback_verdict(ctx: &Ctx, answer: &Answer, tier: FallbackType, pool: &str) -> Verdict {
    if !answer.is_success() {
        return Verdict::fail(format!("{} ({pool})", answer.describe()));
    }
    if answer.fallback_used() {
        ctx.note_fallback_time(answer.elapsed);
    }
    let got = answer.fallback_type();
    let detail = format!(
        "fallback_used {}, fallback_type {}, reason {}, in {} ({pool})",
        answer.fallback_used(),
        tier_name(got),
        reason_name(answer.fallback_reason()),
        format_duration(answer.elapsed)
    );
    Verdict::check(
        answer.fallback_used() && got == Some(tier) && answer.elapsed < FALLBACK_SLA,
        detail,
    )
}

/// Looks in the gateway's log for a WARN line naming `fallback`, the tier and the request id
/// of each answer (the ids are new for each run, so the whole log is searched). Skipped when
/// the controller keeps no log; a log that cannot be read is a failure.
async fn logged(ctx: &Ctx, expected: &[(&Answer, &str)]) -> Verdict {
    let polled = ctx
        .poll(
            Duration::from_secs(3),
            || async { missing_lines(ctx, expected).await },
            |missing| match missing {
                Ok(missing) => missing.is_empty(),
                Err(error) => matches!(error, ControlError::Unsupported(_)),
            },
        )
        .await;
    match polled.value {
        Ok(missing) if missing.is_empty() => Verdict::pass(format!(
            "{} WARN fallback line(s) with their request ids in the gateway's log",
            expected.len()
        )),
        Ok(missing) => Verdict::fail(format!(
            "no WARN line with `fallback`, the tier and the request id for {} in the \
             gateway's log",
            missing.join(", ")
        )),
        Err(ControlError::Unsupported(why)) => {
            Verdict::skip(format!("the gateway's log cannot be read: {why}"))
        }
        Err(error) => Verdict::fail(format!("cannot read the gateway's log: {error}")),
    }
}

/// The request ids (with their tier) that have no WARN fallback line yet.
async fn missing_lines(
    ctx: &Ctx,
    expected: &[(&Answer, &str)],
) -> Result<Vec<String>, ControlError> {
    let Some(stack) = &ctx.stack else {
        return Err(ControlError::NoStack("no controller".to_owned()));
    };
    let text = stack.controller.logs(API_GATEWAY).await?;
    Ok(expected
        .iter()
        .filter(|(answer, id)| {
            let tier = answer
                .fallback_type()
                .map_or("fallback", FallbackType::as_str);
            !text.lines().any(|line| is_fallback_line(line, id, tier))
        })
        .map(|(answer, id)| {
            let tier = answer.fallback_type().map_or("?", FallbackType::as_str);
            format!("{id} ({tier})")
        })
        .collect())
}

/// A WARN line naming `fallback`, the tier and the request id (pretty or JSON logs).
pub fn is_fallback_line(line: &str, request_id: &str, tier: &str) -> bool {
    let lower = line.to_lowercase();
    line.contains(request_id)
        && lower.contains("warn")
        && lower.contains("fallback")
        && line.contains(tier)
}

/// After the restore: a request is served by an instance again (a few tries: the
/// simulated failures may send one to a fallback).
async fn recovered(ctx: &Ctx) -> anyhow::Result<Verdict> {
    let mut last = None;
    for n in 0..3 {
        let answer = ctx
            .gateway
            .generate(&format!("after the fallback check {n} {}", nonce()), 30)
            .await;
        if answer.is_success() && !answer.fallback_used() {
            return Ok(Verdict::pass(format!(
                "served by {} in {}",
                answer.served_by().unwrap_or("?"),
                format_duration(answer.elapsed)
            )));
        }
        last = Some(answer);
    }
    Ok(Verdict::fail(last.map_or("no answer".into(), |a| {
        truncate(&a.describe(), 200)
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fallback_line_names_warn_fallback_the_tier_and_the_request_id() {
        let pretty = "2025-01-01T00:00:00Z  WARN gateway::routes::generate: fallback answer served request_id=suite-1 tier=cache reason=no_services_available";
        assert!(is_fallback_line(pretty, "suite-1", "cache"));
        let json = r#"{"level":"WARN","fields":{"message":"fallback answer served","request_id":"suite-2","tier":"template"}}"#;
        assert!(is_fallback_line(json, "suite-2", "template"));
        assert!(!is_fallback_line(pretty, "suite-2", "cache"), "another id");
        assert!(
            !is_fallback_line(pretty, "suite-1", "template"),
            "another tier"
        );
        let info = pretty.replace("WARN", "INFO");
        assert!(!is_fallback_line(&info, "suite-1", "cache"), "not a WARN");
    }
}
