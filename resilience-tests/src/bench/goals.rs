//! The goals and their verdicts, from the aggregated figures (pure).

use serde::Serialize;

use super::report::{
    Memory, Ratios, RedisSource, Scenario, ScenarioError, Soak, StreamAdded, Summary, Target,
};

/// A goal's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Met.
    Pass,
    /// Missed, or its scenario failed.
    Fail,
    /// Its scenario (or load) was not run.
    NotRun,
}

/// One goal of the issue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Goal {
    /// What it asks.
    pub goal: String,
    /// Its verdict.
    pub verdict: Verdict,
    /// What was measured (or why nothing was).
    pub measured: String,
}

/// Everything the goals are judged on.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The scenarios that were run.
    pub ran: &'a [Scenario],
    /// The scenarios that failed.
    pub failed: &'a [ScenarioError],
    /// The summaries.
    pub summaries: &'a [Summary],
    /// The ratios.
    pub ratios: &'a [Ratios],
    /// The stream scenario's added TTFT.
    pub stream_added: &'a [StreamAdded],
    /// The memory scenario.
    pub memory: Option<&'a Memory>,
    /// The soak run, when one ran.
    pub soak: Option<&'a Soak>,
    /// The identity scenario's Redis, when it got that far.
    pub identity_redis: Option<&'a RedisSource>,
}

/// The concurrency of the throughput and CPU goals.
const GOAL_CONCURRENCY: u32 = 50;

/// The least share of the baseline's requests/s the gateway keeps with authentication and
/// the in-memory limiter on (issue 18: within 10 %).
const IDENTITY_MIN_RPS_RATIO: f64 = 0.9;
/// Issue 19: the history and the access log cost at most 10 % of requests/s.
const PERSISTENCE_MIN_RPS_RATIO: f64 = 0.9;

/// The goal, judged: not run when `scenario` was not, failed when it failed, else by
/// `measured` (`None`: the load it needs was not run, with the reason).
fn judge(
    inputs: &Inputs<'_>,
    scenario: Scenario,
    goal: &str,
    measured: Result<(bool, String), String>,
) -> Goal {
    let (verdict, measured) = if !inputs.ran.contains(&scenario) {
        (
            Verdict::NotRun,
            format!("not run (scenario {})", scenario.name()),
        )
    } else if let Some(e) = inputs.failed.iter().find(|e| e.scenario == scenario) {
        (Verdict::Fail, format!("the scenario failed: {}", e.error))
    } else {
        match measured {
            Ok((true, text)) => (Verdict::Pass, text),
            Ok((false, text)) => (Verdict::Fail, text),
            Err(why) => (Verdict::NotRun, why),
        }
    };
    Goal {
        goal: goal.to_owned(),
        verdict,
        measured,
    }
}

/// The ratios of `scenario` at `concurrency` (`None`: the fixed rate).
fn ratios_at<'a>(
    inputs: &Inputs<'a>,
    scenario: Scenario,
    concurrency: Option<u32>,
) -> Option<&'a Ratios> {
    inputs
        .ratios
        .iter()
        .find(|r| r.scenario == scenario && r.concurrency == concurrency)
}

/// The median p99 of `scenario`'s gateway at `concurrency`.
fn gateway_p99(inputs: &Inputs<'_>, scenario: Scenario, concurrency: Option<u32>) -> Option<f64> {
    inputs
        .summaries
        .iter()
        .find(|s| {
            s.scenario == scenario && s.concurrency == concurrency && s.target == Target::Gateway
        })
        .and_then(|s| s.p99_us)
        .map(|s| s.median)
}

/// `limit` reached or not, with the figure: "measured ≤ limit" (or `>`).
fn at_most(value: f64, limit: f64, unit: &str, what: &str) -> (bool, String) {
    let ok = value <= limit;
    let op = if ok { "≤" } else { ">" };
    (ok, format!("{what} {value:.2}{unit} {op} {limit}{unit}"))
}

/// Issue 18's goal: req/s with an API key and the in-memory limiter ≥ 0.9× the same gateway
/// without, at c=50; the Redis limiter's ratio is told beside it, for information.
fn identity_goal(inputs: &Inputs<'_>) -> Goal {
    let redis_info = |r: &Ratios| match inputs.identity_redis {
        Some(source @ RedisSource::NotRun { .. }) => format!("gateway+redis {}", source.describe()),
        _ => r.redis_over_gateway_rps.map_or_else(
            || "gateway+redis/gateway: no reading".to_owned(),
            |x| format!("gateway+redis/gateway {x:.2}× (information, no goal)"),
        ),
    };
    let measured = ratios_at(inputs, Scenario::Identity, Some(GOAL_CONCURRENCY))
        .ok_or_else(|| format!("not run (c={GOAL_CONCURRENCY} is not in --concurrency)"))
        .and_then(|r| {
            r.auth_over_gateway_rps
                .map(|x| {
                    let ok = x >= IDENTITY_MIN_RPS_RATIO;
                    let op = if ok { "≥" } else { "<" };
                    (
                        ok,
                        format!(
                            "gateway+auth/gateway {x:.2}× {op} {IDENTITY_MIN_RPS_RATIO}×; {}",
                            redis_info(r)
                        ),
                    )
                })
                .ok_or_else(|| "no req/s reading".to_owned())
        });
    judge(
        inputs,
        Scenario::Identity,
        "identity, c=50: requests/s with auth and the in-memory limiter ≥ 0.9× without",
        measured,
    )
}

/// Issue 19's goal: req/s with the history (SQLite) and the access log on ≥ 0.9× the same
/// gateway with both off, at c=50; the database-down figures are told beside it.
fn persistence_goal(inputs: &Inputs<'_>) -> Goal {
    let measured = ratios_at(inputs, Scenario::Persistence, Some(GOAL_CONCURRENCY))
        .ok_or_else(|| format!("not run (c={GOAL_CONCURRENCY} is not in --concurrency)"))
        .and_then(|r| {
            r.gateway_over_quiet_rps
                .map(|x| {
                    let ok = x >= PERSISTENCE_MIN_RPS_RATIO;
                    let op = if ok { "≥" } else { "<" };
                    let down = r.db_down_over_gateway_rps.map_or_else(
                        || "database down: no reading".to_owned(),
                        |d| format!("database down {d:.2}× of gateway (information, no goal)"),
                    );
                    (
                        ok,
                        format!(
                            "gateway/gateway-quiet {x:.2}× {op} {PERSISTENCE_MIN_RPS_RATIO}×; {down}"
                        ),
                    )
                })
                .ok_or_else(|| "no req/s reading".to_owned())
        });
    judge(
        inputs,
        Scenario::Persistence,
        "persistence, c=50: requests/s with the history and the access log ≥ 0.9× without",
        measured,
    )
}

/// Every goal of the issue, judged.
pub fn goals(inputs: &Inputs<'_>) -> Vec<Goal> {
    let c50 = ratios_at(inputs, Scenario::Answer, Some(GOAL_CONCURRENCY));
    let not_c50 = || format!("not run (c={GOAL_CONCURRENCY} is not in --concurrency)");
    let mut goals = vec![
        judge(
            inputs,
            Scenario::Answer,
            "answer, c=50: gateway CPU per request ≤ 2× the hop's",
            c50.ok_or_else(not_c50).and_then(|r| {
                r.gateway_over_hop_cpu
                    .map(|x| at_most(x, 2.0, "×", "gateway/hop"))
                    .ok_or_else(|| "no CPU reading".to_owned())
            }),
        ),
        judge(
            inputs,
            Scenario::Answer,
            "answer, c=50: gateway req/s ≥ 0.6× the hop's",
            c50.ok_or_else(not_c50).and_then(|r| {
                r.gateway_over_hop_rps
                    .map(|x| {
                        let ok = x >= 0.6;
                        (
                            ok,
                            format!("gateway/hop {x:.2}× {} 0.6×", if ok { "≥" } else { "<" }),
                        )
                    })
                    .ok_or_else(|| "no req/s reading".to_owned())
            }),
        ),
        judge(
            inputs,
            Scenario::Answer,
            "answer, c=1: gateway added p50 ≤ 2× the hop's added p50",
            ratios_at(inputs, Scenario::Answer, Some(1))
                .ok_or_else(|| "not run (c=1 is not in --concurrency)".to_owned())
                .and_then(|r| match (r.gateway_added_p50_us, r.hop_added_p50_us) {
                    (Some(g), Some(h)) => Ok((
                        g <= 2.0 * h.max(0.0),
                        format!(
                            "gateway +{g:.0} µs, hop +{h:.0} µs (limit +{:.0} µs)",
                            2.0 * h.max(0.0)
                        ),
                    )),
                    _ => Err("no latency reading".to_owned()),
                }),
        ),
        judge(
            inputs,
            Scenario::Answer,
            "answer, fixed rate: gateway added p99 ≤ 0.5 ms",
            ratios_at(inputs, Scenario::Answer, None)
                .and_then(|r| r.gateway_added_p99_us)
                .map(|us| at_most(us / 1000.0, 0.5, " ms", "added p99"))
                .ok_or_else(|| "no fixed-rate reading".to_owned()),
        ),
    ];
    goals.push(identity_goal(inputs));
    goals.push(persistence_goal(inputs));
    let memory = |pick: fn(&Memory) -> Option<f64>| {
        inputs
            .memory
            .and_then(pick)
            .ok_or_else(|| "no RSS reading".to_owned())
    };
    goals.push(judge(
        inputs,
        Scenario::Memory,
        "memory: gateway RSS idle ≤ 32 MiB",
        memory(|m| m.gateway_idle_mib).map(|mib| at_most(mib, 32.0, " MiB", "RSS")),
    ));
    goals.push(judge(
        inputs,
        Scenario::Memory,
        "memory: gateway RSS holding 1,000 idle connections ≤ 64 MiB",
        memory(|m| m.gateway_held_mib).map(|mib| at_most(mib, 64.0, " MiB", "RSS")),
    ));
    let soak_goal = |verdict, measured: String| Goal {
        goal: "soak: gateway RSS growth ≤ 5 %".to_owned(),
        verdict,
        measured,
    };
    goals.push(
        match inputs
            .soak
            .map(|soak| soak.growth.as_ref().and_then(|g| g.pct))
        {
            None => soak_goal(Verdict::NotRun, "not run (--soak 0)".to_owned()),
            Some(None) => soak_goal(Verdict::Fail, "fewer than two RSS readings".to_owned()),
            Some(Some(pct)) => {
                let (ok, text) = at_most(pct, 5.0, " %", "growth");
                soak_goal(if ok { Verdict::Pass } else { Verdict::Fail }, text)
            }
        },
    );
    for scenario in [Scenario::FallbackCache, Scenario::FallbackTemplate] {
        let measured = match (
            gateway_p99(inputs, scenario, Some(1)),
            gateway_p99(inputs, scenario, None),
        ) {
            (Some(c1), Some(rate)) => {
                let worst = c1.max(rate);
                Ok((
                    worst <= 1000.0,
                    format!(
                        "p99 {:.3} ms at c=1, {:.3} ms at the fixed rate (limit 1 ms)",
                        c1 / 1000.0,
                        rate / 1000.0
                    ),
                ))
            }
            _ => Err("not run (needs c=1 and the fixed-rate run)".to_owned()),
        };
        goals.push(judge(
            inputs,
            scenario,
            &format!(
                "{}: p99 ≤ 1 ms at c=1 and at the fixed rate",
                scenario.name()
            ),
            measured,
        ));
    }
    goals.push(judge(
        inputs,
        Scenario::Stream,
        "stream: gateway added TTFT ≤ 1 ms (median, c=1, vs direct)",
        inputs
            .stream_added
            .iter()
            .find(|a| a.concurrency == 1)
            .and_then(|a| a.vs_direct_p50_us)
            .map(|us| at_most(us / 1000.0, 1.0, " ms", "added TTFT"))
            .ok_or_else(|| "no TTFT reading".to_owned()),
    ));
    goals
}
