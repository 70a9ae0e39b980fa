//! The lab's performance criteria (extra): P95 < 5 s and P99 < 10 s for normal requests,
//! fallback answers < 1 s, 10 RPS sustained, a 50 RPS burst (each rate checked as achieved:
//! at least 90 % of rate × duration requests sent), 20 concurrent requests without
//! degradation. Answers from a fallback tier are not normal requests: beyond a few (the
//! simulated failures), they fail the check.

use std::time::{Duration, Instant};

use super::fallback::FALLBACK_SLA;
use crate::suite::context::Ctx;
use crate::suite::report::{Category, Verdict, format_duration};
use crate::suite::traffic::{self, Sent, Summary, fallback_allowance, secs};

/// Check names.
pub const LATENCY: &str = "P95 < 5 s and P99 < 10 s over 100 requests";
/// See [`LATENCY`].
pub const FALLBACK_FAST: &str = "fallback answers < 1 s";
/// See [`LATENCY`].
pub const SUSTAINED: &str = "10 RPS sustained: ≥ 99% answered 200";
/// See [`LATENCY`].
pub const BURST: &str = "50 RPS burst: ≥ 99% answered 200";
/// See [`LATENCY`].
pub const CONCURRENT: &str = "20 concurrent requests without degradation";
/// Every check of the group.
pub const NAMES: &[&str] = &[LATENCY, FALLBACK_FAST, SUSTAINED, BURST, CONCURRENT];

const CATEGORY: Category = Category::Performance;
const P95_SLA: Duration = Duration::from_secs(5);
const P99_SLA: Duration = Duration::from_secs(10);
const MIN_OK_RATIO: f64 = 0.99;
/// The share of the requests a rate run must have sent: 90 % of the rate times the duration.
const MIN_RATE_RATIO: f64 = 0.9;

/// Runs the group (traffic only, nothing stopped).
pub async fn run(ctx: &Ctx) {
    if !ctx.begin(CATEGORY, NAMES) {
        return;
    }
    ctx.check(CATEGORY, LATENCY, latency(ctx)).await;
    ctx.check(CATEGORY, FALLBACK_FAST, fallback_fast(ctx)).await;
    ctx.check(CATEGORY, SUSTAINED, rate(ctx, 10, ctx.settings.sustained))
        .await;
    ctx.check(CATEGORY, BURST, rate(ctx, 50, ctx.settings.burst))
        .await;
    ctx.check(CATEGORY, CONCURRENT, concurrent(ctx)).await;
}

async fn latency(ctx: &Ctx) -> anyhow::Result<Verdict> {
    let answers = traffic::concurrent(&ctx.gateway, 100, 10, "Latency probe").await;
    let summary = Summary::of(&answers);
    // Fallback answers and errors are fast: too many of them and the percentiles are not
    // those of normal requests.
    let normal =
        summary.ok_ratio() >= MIN_OK_RATIO && summary.fallback <= fallback_allowance(summary.total);
    Ok(Verdict::check(
        summary.p95 < P95_SLA && summary.p99 < P99_SLA && normal,
        format!(
            "{} (concurrency 10); {}",
            summary.describe(),
            summary.fallback_note()
        ),
    ))
}

async fn fallback_fast(ctx: &Ctx) -> anyhow::Result<Verdict> {
    let times = ctx.fallback_times();
    let Some(slowest) = times.iter().max() else {
        return Ok(Verdict::skip(
            "no fallback answer measured (the fallback checks did not run)",
        ));
    };
    Ok(Verdict::check(
        *slowest < FALLBACK_SLA,
        format!(
            "slowest of {} fallback answer(s): {}",
            times.len(),
            format_duration(*slowest)
        ),
    ))
}

async fn rate(ctx: &Ctx, rps: u32, duration: Duration) -> anyhow::Result<Verdict> {
    let started = Instant::now();
    let sent = traffic::at_rate(&ctx.gateway, rps, duration, "Throughput probe").await;
    Ok(rate_verdict(rps, duration, &sent, started.elapsed()))
}

/// A run at `rps` for `duration`: the rate achieved (at least [`MIN_RATE_RATIO`] of the
/// requests it should have sent), at least [`MIN_OK_RATIO`] of them answered 200, and few
/// by a fallback tier. `took` is the whole run, the last answer included.
fn rate_verdict(rps: u32, duration: Duration, sent: &Sent, took: Duration) -> Verdict {
    let summary = Summary::of(&sent.answers);
    let wanted = f64::from(rps) * duration.as_secs_f64();
    let minimum = (MIN_RATE_RATIO * wanted).ceil();
    let rate_held = as_f64(summary.total) >= minimum;
    let answered = summary.total > 0 && summary.ok_ratio() >= MIN_OK_RATIO;
    let served = summary.fallback <= fallback_allowance(summary.total);
    let mut detail = format!(
        "{} requests in {} = {:.1} RPS (target {rps} RPS, at least {minimum:.0} requests); \
         {:.1}% answered 200, {} (all answered within {}): {}",
        summary.total,
        format_duration(sent.sending),
        sent.achieved_rps(),
        summary.ok_ratio() * 100.0,
        summary.fallback_note(),
        format_duration(took),
        summary.describe()
    );
    if !rate_held {
        detail.insert_str(0, "rate not achieved: ");
    }
    Verdict::check(rate_held && answered && served, detail)
}

async fn concurrent(ctx: &Ctx) -> anyhow::Result<Verdict> {
    let answers = traffic::concurrent(&ctx.gateway, 20, 20, "Concurrency probe").await;
    let summary = Summary::of(&answers);
    Ok(Verdict::check(
        summary.kept_serving() && summary.p95 < P95_SLA,
        format!(
            "{} (slowest {}); {}",
            summary.describe(),
            secs(summary.max),
            summary.fallback_note()
        ),
    ))
}

fn as_f64(n: usize) -> f64 {
    f64::from(u32::try_from(n).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use llm_api::ErrorBody;

    use super::*;
    use crate::suite::client::Answer;
    use crate::suite::report::Outcome;
    use crate::suite::tests::wire;

    fn answers(instances: usize, fallbacks: usize, failed: usize) -> Vec<Answer> {
        let elapsed = Duration::from_millis(100);
        let ok =
            |fallback: bool| wire::answer(200, &wire::served("llm_service_1", fallback), elapsed);
        let error = ErrorBody::new("upstream_error", "failed", None);
        let mut all = Vec::new();
        all.extend((0..instances).map(|_| ok(false)));
        all.extend((0..fallbacks).map(|_| ok(true)));
        all.extend((0..failed).map(|_| wire::answer(502, &error, elapsed)));
        all
    }

    fn sent(answers: Vec<Answer>, secs: u64) -> Sent {
        Sent {
            answers,
            sending: Duration::from_secs(secs),
        }
    }

    #[test]
    fn a_rate_run_that_did_not_send_enough_fails_and_says_the_rate() {
        let ten_s = Duration::from_secs(10);
        let took = Duration::from_secs(11);
        let held = rate_verdict(10, ten_s, &sent(answers(100, 0, 0), 10), took);
        assert_eq!(held.outcome, Outcome::Pass, "{}", held.detail);
        assert!(
            held.detail.starts_with("100 requests in 10.0 s = 10.0 RPS"),
            "{}",
            held.detail
        );

        let at_least = rate_verdict(10, ten_s, &sent(answers(90, 0, 0), 10), took);
        assert_eq!(
            at_least.outcome,
            Outcome::Pass,
            "90 % of 100: {}",
            at_least.detail
        );

        let slow = rate_verdict(10, ten_s, &sent(answers(60, 0, 0), 10), took);
        assert_eq!(slow.outcome, Outcome::Fail);
        assert!(
            slow.detail.starts_with("rate not achieved: 60 requests in 10.0 s = 6.0 RPS (target 10 RPS, at least 90 requests)"),
            "{}",
            slow.detail
        );
        let none = rate_verdict(50, ten_s, &sent(Vec::new(), 10), took);
        assert_eq!(none.outcome, Outcome::Fail);
    }

    #[test]
    fn a_rate_run_answered_by_fallback_fails() {
        let ten_s = Duration::from_secs(10);
        let took = Duration::from_secs(11);
        let few = rate_verdict(10, ten_s, &sent(answers(95, 5, 0), 10), took);
        assert_eq!(few.outcome, Outcome::Pass, "{}", few.detail);
        assert!(
            few.detail.contains("5 by fallback (at most 10 allowed)"),
            "{}",
            few.detail
        );
        let many = rate_verdict(10, ten_s, &sent(answers(60, 40, 0), 10), took);
        assert_eq!(many.outcome, Outcome::Fail, "{}", many.detail);
        let failing = rate_verdict(10, ten_s, &sent(answers(98, 0, 2), 10), took);
        assert_eq!(failing.outcome, Outcome::Fail, "98 % answered 200");
    }
}
