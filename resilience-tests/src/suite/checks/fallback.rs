//! Rubric 4, fallback (20 points), down the gateway's tiers one at a time:
//! - with both primaries stopped (the lab's `docker-compose stop llm_service_1
//!   llm_service_2`), the secondary tier answers: `served_by` a secondary instance (the lab's
//!   llm_service_3), `fallback_type` `secondary` — skipped when the stack has no secondary;
//! - with the secondary stopped too, a common prompt is answered from the response cache and
//!   a novel one from the template, each in under a second;
//! - the gateway logs one WARN line per fallback answer with the request id (read through the
//!   controller: the log file of a local service, `docker compose logs` or `podman logs`);
//! - once the services are back, they serve again.

use std::time::{Duration, Instant};

use llm_api::envelope::FallbackType;
use llm_api::gateway::GatewayHealth;
use llm_api::generate::GenerateRequest;
use stack_control::{API_GATEWAY, ControlError, LLM_SERVICE_1, LLM_SERVICE_2};

use super::nonce;
use crate::suite::client::{Answer, health, reason_name, tier_name, truncate};
use crate::suite::context::{Ctx, SECONDARY_TIER};
use crate::suite::doc::Doc;
use crate::suite::report::{Category, Verdict, format_duration};

/// Check names.
pub const SECONDARY: &str = "secondary tier answers while the primaries are down";
/// See [`SECONDARY`].
pub const CACHED: &str = "cached answer for a common prompt (What is AI?) in < 1 s";
/// See [`CACHED`].
pub const TEMPLATE: &str = "template answer for a novel prompt in < 1 s";
/// See [`CACHED`].
pub const LOGGED: &str = "fallback logged: a WARN line with the request id";
/// See [`CACHED`].
pub const RECOVERED: &str = "the instances serve again once restarted";
/// Every check of the group.
pub const NAMES: &[&str] = &[SECONDARY, CACHED, TEMPLATE, LOGGED, RECOVERED];
/// The lab's primaries, stopped first.
const PRIMARIES: [&str; 2] = [LLM_SERVICE_1, LLM_SERVICE_2];
/// Requests sent at most for a secondary answer: the simulated failures (10 %) may fail one,
/// and then the cache or the template answers it.
pub const SECONDARY_TRIES: usize = 3;

const CATEGORY: Category = Category::Fallback;
/// The lab's SLA for a fallback answer.
pub const FALLBACK_SLA: Duration = Duration::from_secs(1);
/// The prompt the lab's fallback test sends; the gateway's cache is seeded with it.
pub const COMMON_PROMPT: &str = "What is AI?";

/// Runs the group: stops the primaries, then the secondaries, checks each tier, restores,
/// checks the recovery.
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

/// Stops `services`; every failure, joined.
async fn stop_all(ctx: &Ctx, services: &[&str]) -> Result<(), String> {
    let mut problems = Vec::new();
    for service in services {
        if let Err(error) = ctx.stop(service).await {
            problems.push(format!("{error:#}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

async fn scenario(ctx: &Ctx) {
    let started = Instant::now();
    let run = nonce();
    // The secondary instances (by id, their compose name) the gateway had at steady state.
    let secondaries: Vec<String> = ctx.secondaries().iter().map(|i| i.id.clone()).collect();
    if let Err(why) = stop_all(ctx, &PRIMARIES).await {
        let secondary = if secondaries.is_empty() {
            no_secondary()
        } else {
            Verdict::fail(why.clone())
        };
        ctx.record(CATEGORY, SECONDARY, started, secondary);
        for name in [CACHED, TEMPLATE, LOGGED] {
            ctx.record(CATEGORY, name, started, Verdict::fail(why.clone()));
        }
        return;
    }

    // The primaries gone: the secondary tier answers.
    let mut logged_answers: Vec<(Answer, String)> = Vec::new();
    if secondaries.is_empty() {
        ctx.record(CATEGORY, SECONDARY, started, no_secondary());
    } else {
        let (verdict, answered) = secondary(ctx, &secondaries, &run).await;
        ctx.record(CATEGORY, SECONDARY, started, verdict);
        logged_answers.extend(answered);
        let started = Instant::now();
        let ids: Vec<&str> = secondaries.iter().map(String::as_str).collect();
        if let Err(why) = stop_all(ctx, &ids).await {
            for name in [CACHED, TEMPLATE, LOGGED] {
                ctx.record(CATEGORY, name, started, Verdict::fail(why.clone()));
            }
            return;
        }
    }

    // Every instance gone from the pool: the cache and the template answer at once.
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
    let mut expected = vec![(&cached, cache_id.as_str()), (&novel, template_id.as_str())];
    expected.extend(logged_answers.iter().map(|(a, id)| (a, id.as_str())));
    let verdict = logged(ctx, &expected).await;
    ctx.record(CATEGORY, LOGGED, started, verdict);
}

/// The skip of a stack without a secondary tier.
fn no_secondary() -> Verdict {
    Verdict::skip(
        "no secondary-tier instance in the gateway's /health at steady state (the lab's \
         llm_service_3 runs with Redis only)",
    )
}

/// Waits until the gateway has no primary left to route to, then asks until a secondary
/// answers (at most [`SECONDARY_TRIES`] requests); the verdict, and the secondary answer
/// with its request id for the WARN-line check.
async fn secondary(
    ctx: &Ctx,
    secondaries: &[String],
    run: &str,
) -> (Verdict, Option<(Answer, String)>) {
    let gone = ctx
        .poll(
            ctx.settings.change_timeout,
            || async { ctx.gateway.health().await.ok() },
            |doc| doc.as_ref().is_some_and(only_secondaries_available),
        )
        .await;
    let pool = if gone.ok {
        format!(
            "only the secondary tier available after {}",
            format_duration(gone.took)
        )
    } else {
        format!(
            "primaries still available after {}",
            format_duration(gone.took)
        )
    };
    let mut answers = Vec::new();
    let mut ids = Vec::new();
    for n in 1..=SECONDARY_TRIES {
        let id = format!("suite-fallback-secondary-{run}-{n}");
        let answer = ctx
            .gateway
            .post_generate(
                &GenerateRequest {
                    max_tokens: Some(50),
                    ..GenerateRequest::new(format!(
                        "Explain graceful degradation, secondary tier, run {run} try {n}"
                    ))
                },
                Some(&id),
            )
            .await;
        let done = is_secondary_answer(&answer, secondaries);
        answers.push(answer);
        ids.push(id);
        if done {
            break;
        }
    }
    let verdict = secondary_verdict(&answers, secondaries, &pool);
    let answered = answers
        .iter()
        .zip(ids)
        .find(|(a, _)| is_secondary_answer(a, secondaries))
        .map(|(a, id)| (a.clone(), id));
    (verdict, answered)
}

/// `/health` lists no healthy primary and at least one healthy secondary.
fn only_secondaries_available(doc: &Doc<GatewayHealth>) -> bool {
    doc.get().is_some_and(|h| {
        let healthy = || h.service_discovery.services.iter().filter(|s| s.healthy);
        healthy().all(|s| s.tier == SECONDARY_TIER) && healthy().next().is_some()
    })
}

/// A 200 from the secondary tier, served by one of `secondaries`.
fn is_secondary_answer(answer: &Answer, secondaries: &[String]) -> bool {
    answer.fallback_used()
        && answer.fallback_type() == Some(FallbackType::Secondary)
        && answer
            .served_by()
            .is_some_and(|by| secondaries.iter().any(|s| s == by))
}

/// One of `answers` (the tries, in order) came from the secondary tier, served by one of
/// `secondaries`; the detail says which try, who served it and why the primary did not, or
/// what every try got instead. `pool` says what `/health` read before the first try.
pub fn secondary_verdict(answers: &[Answer], secondaries: &[String], pool: &str) -> Verdict {
    if let Some((n, answer)) = answers
        .iter()
        .enumerate()
        .find(|(_, a)| is_secondary_answer(a, secondaries))
    {
        return Verdict::pass(format!(
            "served by {}, fallback_type secondary, reason {}, in {} (try {} of at most \
             {SECONDARY_TRIES}; {pool})",
            answer.served_by().unwrap_or("?"),
            reason_name(answer.fallback_reason()),
            format_duration(answer.elapsed),
            n + 1
        ));
    }
    let seen: Vec<String> = answers
        .iter()
        .map(|a| {
            if !a.is_success() {
                return a.describe();
            }
            let by = a.served_by().unwrap_or("?");
            if a.fallback_used() {
                format!("{} answer served by {by}", tier_name(a.fallback_type()))
            } else {
                format!("served by {by} without fallback")
            }
        })
        .collect();
    Verdict::fail(format!(
        "no answer from the secondary tier ({}) in {} tries: {} ({pool})",
        secondaries.join(", "),
        answers.len(),
        truncate(&seen.join("; "), 300)
    ))
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
    use llm_api::ErrorBody;
    use llm_api::envelope::FallbackReason;
    use llm_api::gateway::HealthStatus;

    use super::*;
    use crate::suite::report::Outcome;
    use crate::suite::tests::wire;

    const POOL: &str = "only the secondary tier available after 1.0 s";

    fn llm_service_3() -> Vec<String> {
        vec!["llm_service_3".to_owned()]
    }

    fn answer(body: &impl serde::Serialize) -> Answer {
        wire::answer(200, body, Duration::from_millis(1200))
    }

    fn from(tier: FallbackType, by: &str) -> Answer {
        let reason = FallbackReason::NoServicesAvailable;
        answer(&wire::success(by, Some((tier, reason))))
    }

    #[test]
    fn a_secondary_answer_from_the_secondary_instance_passes_and_says_which_try() {
        let tries = [
            from(FallbackType::Template, wire::FALLBACK_MANAGER),
            from(FallbackType::Secondary, "llm_service_3"),
        ];
        let verdict = secondary_verdict(&tries, &llm_service_3(), POOL);
        assert_eq!(verdict.outcome, Outcome::Pass, "{}", verdict.detail);
        assert_eq!(
            verdict.detail,
            "served by llm_service_3, fallback_type secondary, reason no_services_available, \
             in 1.2 s (try 2 of at most 3; only the secondary tier available after 1.0 s)"
        );
    }

    #[test]
    fn anything_else_fails_naming_what_each_try_got() {
        let error = ErrorBody::new("upstream_error", "no tier answered", None);
        let tries = [
            // A primary still answering: the primaries were not down.
            answer(&wire::success("llm_service_1", None)),
            // The secondary tier claimed by another instance.
            from(FallbackType::Secondary, "llm_service_2"),
            wire::answer(503, &error, Duration::from_millis(5)),
        ];
        let verdict = secondary_verdict(&tries, &llm_service_3(), POOL);
        assert_eq!(verdict.outcome, Outcome::Fail);
        assert!(
            verdict.detail.starts_with(
                "no answer from the secondary tier (llm_service_3) in 3 tries: served by \
                 llm_service_1 without fallback; secondary answer served by llm_service_2; \
                 HTTP 503 "
            ) && verdict.detail.ends_with(&format!("({POOL})")),
            "{}",
            verdict.detail
        );
        let cached = [from(FallbackType::Cache, "llm_service_3")];
        let verdict = secondary_verdict(&cached, &llm_service_3(), POOL);
        assert_eq!(
            verdict.outcome,
            Outcome::Fail,
            "the cache tier is not the secondary"
        );
        let none = secondary_verdict(&[], &llm_service_3(), POOL);
        assert_eq!(none.outcome, Outcome::Fail);
    }

    #[test]
    fn the_primaries_are_gone_when_only_secondaries_are_healthy() {
        let doc = |services| {
            let breaker = wire::breaker(llm_api::breaker::BreakerState::Closed, 0);
            let body = wire::health(HealthStatus::Healthy, breaker, services, &[]);
            Doc::new(200, serde_json::to_value(body).unwrap())
        };
        let url = || "http://127.0.0.1:1".to_owned();
        let mut secondary = wire::service("llm_service_3", url(), true);
        secondary.tier = SECONDARY_TIER.into();
        let primary = |healthy| wire::service("llm_service_1", url(), healthy);
        assert!(only_secondaries_available(&doc(vec![
            primary(false),
            secondary.clone()
        ])));
        assert!(!only_secondaries_available(&doc(vec![
            primary(true),
            secondary.clone()
        ])));
        let mut down = secondary;
        down.healthy = false;
        assert!(
            !only_secondaries_available(&doc(vec![primary(false), down])),
            "no tier left at all"
        );
    }

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
