//! The metric names a PromQL expression reads, found by Prometheus' grammar (the
//! `promql-parser` crate), so `sum by (le)`, label values and function names never pass
//! for metrics.

use std::collections::{BTreeMap, BTreeSet};

use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr, LabelModifier, VectorSelector};
use promql_parser::util::{ExprVisitor, walk_expr};

/// Grafana's interval variables, replaced by a duration before parsing.
const GRAFANA_INTERVALS: [&str; 4] = [
    "$__rate_interval",
    "$__interval",
    "$__range",
    "${__rate_interval}",
];

/// Every metric `expr` selects (`rate(x_bucket[5m])` reads `x_bucket`), with the label
/// names its matchers test (`x{status=~"5.."}` → `x: {status}`). Grafana's interval
/// variables are allowed. An expression that does not parse, or a selector without a metric
/// name, is an error naming it.
pub fn selectors(expr: &str) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    let mut text = expr.to_owned();
    for variable in GRAFANA_INTERVALS {
        text = text.replace(variable, "1m");
    }
    let parsed = parser::parse(&text).map_err(|e| format!("{expr:?} is not PromQL: {e}"))?;
    let mut names = Names::default();
    walk_expr(&mut names, &parsed)?;
    Ok(names.found)
}

/// Whether `expr` combines series of `metric` that differ in `label` into one: an
/// aggregation (`max`, `sum`, `avg`…) over a subexpression reading `metric` that does not
/// keep `label` (no `by` naming it, or a `without` naming it). `max by (service)
/// (circuit_breaker_state)` combines across `instance`; `max by (instance, service) (…)`
/// does not.
pub fn combines_across(expr: &str, metric: &str, label: &str) -> Result<bool, String> {
    let mut text = expr.to_owned();
    for variable in GRAFANA_INTERVALS {
        text = text.replace(variable, "1m");
    }
    let parsed = parser::parse(&text).map_err(|e| format!("{expr:?} is not PromQL: {e}"))?;
    let mut finder = Combining {
        metric,
        label,
        found: false,
    };
    walk_expr(&mut finder, &parsed)?;
    Ok(finder.found)
}

struct Combining<'a> {
    metric: &'a str,
    label: &'a str,
    found: bool,
}

impl ExprVisitor for Combining<'_> {
    type Error = String;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
        if let Expr::Aggregate(aggregate) = expr {
            let keeps = match &aggregate.modifier {
                Some(LabelModifier::Include(by)) => by.labels.iter().any(|l| l == self.label),
                Some(LabelModifier::Exclude(without)) => {
                    !without.labels.iter().any(|l| l == self.label)
                }
                None => false,
            };
            if !keeps {
                let mut names = Names::default();
                walk_expr(&mut names, &aggregate.expr)?;
                self.found |= names.found.contains_key(self.metric);
            }
        }
        Ok(!self.found)
    }
}

#[derive(Default)]
struct Names {
    found: BTreeMap<String, BTreeSet<String>>,
}

impl Names {
    fn selector(&mut self, selector: &VectorSelector) -> Result<(), String> {
        let by_label = selector
            .matchers
            .matchers
            .iter()
            .find(|m| m.name == "__name__" && matches!(m.op, MatchOp::Equal))
            .map(|m| m.value.clone());
        match selector.name.clone().or(by_label) {
            Some(name) => {
                let labels = selector
                    .matchers
                    .matchers
                    .iter()
                    .chain(selector.matchers.or_matchers.iter().flatten())
                    .map(|m| m.name.clone())
                    .filter(|label| label != "__name__");
                self.found.entry(name).or_default().extend(labels);
                Ok(())
            }
            None => Err(format!(
                "a selector without a metric name ({selector}) cannot be checked"
            )),
        }
    }
}

impl ExprVisitor for Names {
    type Error = String;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
        match expr {
            Expr::VectorSelector(selector) => self.selector(selector)?,
            Expr::MatrixSelector(matrix) => self.selector(&matrix.vs)?,
            _ => {}
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        selectors(expr).unwrap().into_keys().collect()
    }

    #[test]
    fn finds_the_metrics_and_nothing_else() {
        assert_eq!(
            names(
                "histogram_quantile(0.95, sum by (le, service) \
                 (rate(llm_request_duration_seconds_bucket{service!=\"gateway\"}[$__rate_interval])))"
            ),
            ["llm_request_duration_seconds_bucket"]
        );
        assert_eq!(
            names(
                "sum(rate(llm_requests_total{status_code=~\"5..\"}[5m])) \
                 / ignoring(x) sum(rate(llm_requests_total[5m])) > 0.05 and on() up == 1"
            ),
            ["llm_requests_total", "up"]
        );
        assert_eq!(
            names("{__name__=\"in_flight_requests\"}"),
            ["in_flight_requests"]
        );
        assert_eq!(
            names("max_over_time(available_instances[10m:1m]) == 0"),
            ["available_instances"]
        );
        assert!(names("vector(1) + 2").is_empty());
    }

    #[test]
    fn gives_the_labels_each_selector_tests() {
        let found = selectors(
            "sum(rate(a_total{code=~\"5..\", job=\"g\"}[5m])) / sum(rate(a_total[5m])) + b",
        )
        .unwrap();
        let labels: Vec<_> = found["a_total"].iter().map(String::as_str).collect();
        assert_eq!(labels, ["code", "job"]);
        assert!(found["b"].is_empty());
    }

    #[test]
    fn finds_aggregations_that_combine_across_a_label() {
        let across = |expr| combines_across(expr, "circuit_breaker_state", "instance").unwrap();
        assert!(across("max by (service) (circuit_breaker_state)"));
        assert!(across("max(circuit_breaker_state)"));
        assert!(across(
            "max without (instance) (circuit_breaker_state{service=\"llm-service\"})"
        ));
        assert!(across(
            "sum by (job) (rate(up[5m])) + max by (service) (circuit_breaker_state == 1)"
        ));
        assert!(!across(
            "max by (instance) (circuit_breaker_state{service=\"llm-service\"})"
        ));
        assert!(!across("max without (job) (circuit_breaker_state)"));
        assert!(!across("circuit_breaker_state > 0"));
        assert!(!across("max by (service) (available_instances)"));
        assert!(combines_across("max(", "x", "y").is_err());
    }

    #[test]
    fn refuses_what_it_cannot_check() {
        assert!(
            selectors("sum(rate(x[5m])")
                .unwrap_err()
                .contains("not PromQL")
        );
        assert!(
            selectors("{job=\"gateway\"}")
                .unwrap_err()
                .contains("without a metric name")
        );
    }
}
