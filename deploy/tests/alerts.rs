//! The alert rules as an on-call engineer meets them: every alert says how bad it is, whose it
//! is and where its runbook is, and that runbook section exists; every rule is unit-tested by
//! the `promtool test rules` files `deploy/validate` runs, every alert both firing and not;
//! the dashboard query that folds breaker states across replicas is the one those files test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

use std::collections::{BTreeMap, BTreeSet};

use deploy_check::files::{Rule, RuleKind, dashboard_queries, markdown_anchors, rule_tests, rules};
use deploy_check::promql::{combines_across, selectors};
use support::{read, root};

/// The rule file and its unit-test files (relative to `config/`).
const RULES: &str = "config/alert.rules.yml";
const RULE_TESTS: [&str; 2] = ["alert.rules.test.yml", "alert.rules.days.test.yml"];
/// Where the runbooks are, as `runbook_url` gives it.
const RUNBOOKS: &str = "docs/runbooks.md";
const SEVERITIES: [&str; 3] = ["critical", "warning", "info"];

fn all_rules() -> Vec<Rule> {
    let found = rules(&read(RULES)).unwrap();
    assert!(found.len() >= 20, "only {} rules in {RULES}", found.len());
    found
}

fn alerts() -> Vec<Rule> {
    all_rules()
        .into_iter()
        .filter(|r| r.kind == RuleKind::Alert)
        .collect()
}

#[test]
fn every_alert_has_severity_team_and_a_runbook_section() {
    let runbooks = read(RUNBOOKS);
    let anchors = markdown_anchors(&runbooks);
    let mut wrong = Vec::new();
    let alerts = alerts();
    for alert in &alerts {
        let name = &alert.name;
        match alert.labels.get("severity").map(String::as_str) {
            Some(severity) if SEVERITIES.contains(&severity) => {}
            other => wrong.push(format!(
                "{name}: severity {other:?}, not one of {SEVERITIES:?}"
            )),
        }
        if alert.labels.get("team").is_none_or(|t| t.trim().is_empty()) {
            wrong.push(format!("{name}: no team label"));
        }
        let expected = format!("{RUNBOOKS}#{}", name.to_lowercase());
        match alert.labels.get("runbook_url") {
            Some(url) if *url == expected => {
                if !anchors.contains(&name.to_lowercase()) {
                    wrong.push(format!("{name}: {RUNBOOKS} has no section `## {name}`"));
                }
            }
            other => wrong.push(format!("{name}: runbook_url {other:?}, not {expected:?}")),
        }
    }
    // The other way round: a section named like an alert (one CamelCase word) is one.
    let names: BTreeSet<String> = alerts.iter().map(|a| a.name.clone()).collect();
    for heading in runbooks.lines().filter_map(|l| l.strip_prefix("## ")) {
        let one_word = !heading.contains(' ') && heading.starts_with(char::is_uppercase);
        if one_word && !names.contains(heading) {
            wrong.push(format!(
                "{RUNBOOKS}: section `## {heading}` but no alert {heading}"
            ));
        }
    }
    // The runbook's links to its own sections land.
    for link in runbooks.split("](#").skip(1) {
        let anchor = link.split(')').next().unwrap_or_default();
        if !anchors.contains(anchor) {
            wrong.push(format!("{RUNBOOKS}: a link to #{anchor}, no such section"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_slo_alerts_are_multiwindow_multi_burn_rate() {
    let alerts = alerts();
    // (name suffix, burn rate, long window, short window, severity): the SRE workbook's table.
    let table = [
        ("FastBurn", "14.4", "1h", "5m", "critical"),
        ("MediumBurn", "6", "6h", "30m", "critical"),
        ("SlowBurn", "1", "3d", "6h", "warning"),
    ];
    for (sli, budget) in [("Availability", "0.005"), ("Latency", "0.01")] {
        let recorded = format!("job:slo_{}:ratio_rate", sli.to_lowercase());
        for (suffix, burn, long, short, severity) in table {
            let name = format!("Gateway{sli}{suffix}");
            let alert = alerts
                .iter()
                .find(|a| a.name == name)
                .unwrap_or_else(|| panic!("no alert {name} in {RULES}"));
            let expr: String = alert.expr.split_whitespace().collect();
            for window in [long, short] {
                let condition = format!("(1-{recorded}{window})>({burn}*{budget})");
                assert!(
                    expr.contains(&condition),
                    "{name}: no `{condition}` in {}",
                    alert.expr
                );
            }
            assert!(expr.contains(")and("), "{name}: both windows, with `and`");
            assert_eq!(alert.labels["severity"], severity, "{name}");
        }
    }
}

#[test]
fn every_rule_is_unit_tested_and_every_alert_both_ways() {
    let validate = read("deploy/validate");
    let mut cases: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut read_by_tests = BTreeSet::new();
    for file in RULE_TESTS {
        assert!(
            validate.contains(file),
            "deploy/validate does not run promtool test rules on config/{file}"
        );
        let tests = rule_tests(&read(&format!("config/{file}"))).unwrap();
        assert_eq!(tests.rule_files, ["alert.rules.yml"], "config/{file}");
        for (alert, firing) in tests.alert_cases {
            let (fires, quiet) = cases.entry(alert).or_default();
            if firing {
                *fires += 1;
            } else {
                *quiet += 1;
            }
        }
        for expr in tests.exprs {
            let names = selectors(&expr).unwrap_or_else(|e| panic!("config/{file}: {e}"));
            read_by_tests.extend(names.into_keys());
        }
    }
    let mut missing = Vec::new();
    for rule in all_rules() {
        match rule.kind {
            RuleKind::Alert => match cases.get(&rule.name) {
                Some((fires, quiet)) if *fires > 0 && *quiet > 0 => {}
                other => missing.push(format!(
                    "alert {}: (firing, not firing) cases: {other:?}",
                    rule.name
                )),
            },
            RuleKind::Record => {
                if !read_by_tests.contains(&rule.name) {
                    missing.push(format!(
                        "recording rule {}: no promql_expr_test reads it",
                        rule.name
                    ));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "rules without promtool tests in config/{RULE_TESTS:?}:\n{}",
        missing.join("\n")
    );
}

/// The lab encodes breaker states 0 closed, 1 open, 2 half-open, which does not order them by
/// severity: a dashboard query that folds several replicas' states into one (max, min…)
/// must be one `config/alert.rules.test.yml` tests (OPEN must win over HALF_OPEN).
#[test]
fn dashboard_queries_folding_breaker_states_are_unit_tested() {
    let tested: BTreeSet<String> = rule_tests(&read("config/alert.rules.test.yml"))
        .unwrap()
        .exprs
        .iter()
        .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let dir = root().join("config/grafana/dashboards");
    let mut folding = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for query in dashboard_queries(&dashboard) {
            let folds = combines_across(&query.expr, "circuit_breaker_state", "instance")
                .unwrap_or_else(|e| panic!("{}: {e}", query.place));
            if folds {
                folding += 1;
                let expr = query.expr.split_whitespace().collect::<Vec<_>>().join(" ");
                assert!(
                    tested.contains(&expr),
                    "{}: `{expr}` folds breaker states across replicas; add a \
                     promql_expr_test of exactly this expression to \
                     config/alert.rules.test.yml (OPEN on one replica, HALF_OPEN on another \
                     must read OPEN)",
                    query.place
                );
            }
        }
    }
    assert!(
        folding >= 1,
        "the breaker timeline of the dashboards folds replicas; found no such query"
    );
}
