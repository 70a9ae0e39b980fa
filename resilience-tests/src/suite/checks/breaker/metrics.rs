//! The step that reads the breaker in `/metrics`: its state, its failures, the fallback
//! counters beside it.

use llm_api::breaker::BreakerView;
use llm_api::stats::GatewayMetrics;
use serde_json::Value;

use crate::suite::context::Ctx;
use crate::suite::doc::Doc;
use crate::suite::report::Verdict;

pub(super) async fn metrics(ctx: &Ctx) -> anyhow::Result<Verdict> {
    let metrics = ctx.gateway.metrics().await?;
    Ok(metrics_verdict(&metrics))
}

/// The state, a failure count above 0 and the fallback counters: read from the gateway's
/// `/metrics` type, or — for a body that is not it — from the raw body under the names
/// other breakers give them ([`raw_failure_count`]), so that a gateway is graded on the
/// readings the rubric asks for, not on the rest of the document.
fn metrics_verdict(metrics: &Doc<GatewayMetrics>) -> Verdict {
    if let Some(typed) = metrics.get() {
        let breaker: &BreakerView = &typed.circuit_breaker;
        let failures = breaker.counters.failures;
        return Verdict::check(
            failures > 0,
            format!(
                "circuit_breaker.state {}, failures {failures}, transitions {}, {} instance breaker(s)",
                breaker.state.as_str(),
                breaker.counters.transitions,
                typed.circuit_breakers.len()
            ),
        );
    }
    let raw = &metrics.raw;
    let breaker = &raw["circuit_breaker"];
    let state = breaker["state"].as_str();
    let failures = raw_failure_count(breaker);
    let instances = raw["circuit_breakers"]
        .as_object()
        .map_or(0, serde_json::Map::len);
    let detail = format!(
        "circuit_breaker.state {}, failures {}, transitions {}, {instances} instance breaker(s) \
         (not the gateway's /metrics type: {})",
        state.unwrap_or("absent"),
        failures.map_or("absent".into(), |f| f.to_string()),
        breaker["counters"]["transitions"],
        metrics.parsed.as_ref().err().map_or("", String::as_str)
    );
    let ok = matches!(state, Some("CLOSED" | "OPEN" | "HALF_OPEN"))
        && failures.is_some_and(|f| f > 0)
        && raw["fallback"].is_object();
    Verdict::check(ok, detail)
}

/// A raw breaker's failure count under any of the usual names.
fn raw_failure_count(breaker: &Value) -> Option<u64> {
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
    use llm_api::breaker::BreakerState;
    use serde_json::json;

    use super::*;
    use crate::suite::report::Outcome;
    use crate::suite::tests::wire;

    #[test]
    fn a_raw_failure_count_is_read_under_any_usual_name() {
        let snapshot = json!({"state": "CLOSED", "counters": {"failures": 7, "transitions": 3}});
        assert_eq!(raw_failure_count(&snapshot), Some(7));
        assert_eq!(raw_failure_count(&json!({"failure_count": 2})), Some(2));
        assert_eq!(
            raw_failure_count(&json!({"window": {"failures": 4}})),
            Some(4)
        );
        assert_eq!(raw_failure_count(&json!({"state": "CLOSED"})), None);
    }

    fn doc(body: Value) -> Doc<GatewayMetrics> {
        Doc::new(200, body)
    }

    #[test]
    fn the_gateway_s_metrics_are_read_through_the_type() {
        let failed = wire::metrics(wire::breaker(BreakerState::Open, 6));
        let verdict = metrics_verdict(&doc(serde_json::to_value(&failed).unwrap()));
        assert_eq!(verdict.outcome, Outcome::Pass, "{}", verdict.detail);
        assert!(
            verdict
                .detail
                .starts_with("circuit_breaker.state OPEN, failures 6, transitions 1, 2 instance"),
            "{}",
            verdict.detail
        );
        let fresh = wire::metrics(wire::breaker(BreakerState::Closed, 0));
        let verdict = metrics_verdict(&doc(serde_json::to_value(&fresh).unwrap()));
        assert_eq!(verdict.outcome, Outcome::Fail, "no failure counted");
    }

    #[test]
    fn another_gateway_s_metrics_are_graded_on_the_raw_readings() {
        let other =
            json!({"circuit_breaker": {"state": "OPEN", "failure_count": 3}, "fallback": {}});
        let verdict = metrics_verdict(&doc(other));
        assert_eq!(verdict.outcome, Outcome::Pass, "{}", verdict.detail);
        assert!(
            verdict
                .detail
                .starts_with("circuit_breaker.state OPEN, failures 3")
                && verdict
                    .detail
                    .contains("not the gateway's /metrics type: missing field"),
            "{}",
            verdict.detail
        );
        let no_fallback = json!({"circuit_breaker": {"state": "OPEN", "failures": 3}});
        assert_eq!(metrics_verdict(&doc(no_fallback)).outcome, Outcome::Fail);
        let bad_state =
            json!({"circuit_breaker": {"state": "AJAR", "failures": 3}, "fallback": {}});
        assert_eq!(metrics_verdict(&doc(bad_state)).outcome, Outcome::Fail);
    }
}
