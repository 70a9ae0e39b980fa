//! Every metric the Grafana dashboards and the Prometheus alert rules read is exported by a
//! running gateway or llm-service (after the traffic that creates its series), with every
//! label their selectors test, or written by a recording rule of the rule file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

use std::collections::{BTreeMap, BTreeSet};

use deploy_check::binaries::exported_labels;
use deploy_check::files::{Query, RuleKind, dashboard_queries, rule_queries, rules};
use deploy_check::promql::selectors;
use serde_json::json;
use support::{Service, calm_llm_service, gateway_for, post, read, root};

/// Metrics Prometheus makes itself, for every scrape target.
const PROMETHEUS_OWN: [&str; 1] = ["up"];

/// The dashboards' and the rules' queries.
fn queries() -> Vec<Query> {
    let mut queries = Vec::new();
    let dir = root().join("config/grafana/dashboards");
    let mut dashboards: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    dashboards.sort();
    assert!(
        dashboards.len() >= 2,
        "the two dashboards are in {}",
        dir.display()
    );
    for path in dashboards {
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let found = dashboard_queries(&dashboard);
        assert!(
            found.len() >= 5,
            "{} has only {} queries",
            path.display(),
            found.len()
        );
        queries.extend(found);
    }
    let rules = rule_queries(&read("config/alert.rules.yml")).unwrap();
    for alert in [
        "CircuitBreakerOpen",
        "HighErrorRate",
        "ServiceDown",
        "LatencyBudgetBurn",
    ] {
        assert!(
            rules
                .iter()
                .any(|r| r.place.ends_with(&format!("/ {alert}"))),
            "the seed's alert {alert} is in config/alert.rules.yml"
        );
    }
    queries.extend(rules);
    queries
}

async fn scrape(service: &Service, path: &str) -> BTreeMap<String, BTreeSet<String>> {
    let text = reqwest::get(service.url(path))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    exported_labels(&text)
}

#[tokio::test]
async fn dashboards_and_alert_rules_read_only_exported_metrics() {
    let llm = calm_llm_service().await;
    let gateway = gateway_for(&llm, &[]).await;
    // The traffic that creates every series: an answer, a streamed answer, a refused
    // request, and a fault in place on the llm-service.
    let answer = post(gateway.url("/generate"), json!({"prompt": "What is AI?"})).await;
    assert_eq!(answer.status(), 200);
    let chat = json!({"model": "any", "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]});
    let stream = post(gateway.url("/v1/chat/completions"), chat).await;
    assert!(stream.text().await.unwrap().contains("[DONE]"));
    let refused = post(gateway.url("/generate"), json!({"prompt": ""})).await;
    assert_eq!(refused.status(), 422);
    let fault = json!({"kind": "latency", "ms": 1, "duration_s": 60});
    assert_eq!(post(llm.url("/chaos/faults"), fault).await.status(), 201);

    let gateway_series = scrape(&gateway, "/metrics?format=prometheus").await;
    let llm_series = scrape(&llm, "/metrics").await;
    assert!(
        gateway_series.contains_key("llm_requests_total"),
        "{gateway_series:?}"
    );
    assert!(
        llm_series.contains_key("http_requests_total"),
        "{llm_series:?}"
    );

    // The series the recording rules write: read by the alerts, exported by no binary.
    let recorded: BTreeSet<String> = rules(&read("config/alert.rules.yml"))
        .unwrap()
        .into_iter()
        .filter(|rule| rule.kind == RuleKind::Record)
        .map(|rule| rule.name)
        .collect();
    let mut missing = Vec::new();
    let mut read_names = BTreeSet::new();
    for query in queries() {
        let selectors = selectors(&query.expr).unwrap_or_else(|e| panic!("{}: {e}", query.place));
        assert!(
            !selectors.is_empty(),
            "{}: reads no metric: {}",
            query.place,
            query.expr
        );
        for (name, tested) in selectors {
            // The labels a series of this metric carries: its own, and the target labels
            // Prometheus adds to every scraped series.
            let mut labels: BTreeSet<String> = ["job", "instance"].map(str::to_owned).into();
            let exported = [&gateway_series, &llm_series]
                .iter()
                .filter_map(|series| series.get(&name))
                .inspect(|own| labels.extend(own.iter().cloned()))
                .count()
                > 0;
            if !exported && !PROMETHEUS_OWN.contains(&name.as_str()) && !recorded.contains(&name) {
                missing.push(format!("{}: metric {name}", query.place));
            } else if exported {
                for label in tested.difference(&labels) {
                    missing.push(format!("{}: {name} has no label {label}", query.place));
                }
            }
            read_names.insert(name);
        }
    }
    assert!(
        missing.is_empty(),
        "metrics or labels named in the dashboards or rules that neither the gateway nor \
         the llm-service exports:\n{}",
        missing.join("\n")
    );
    // The dashboards cover both services, breakers and resources.
    for name in [
        "circuit_breaker_state",
        "available_instances",
        "http_requests_total",
        "process_resident_memory_bytes",
    ] {
        assert!(
            read_names.contains(name),
            "no dashboard or rule reads {name}"
        );
    }
}
