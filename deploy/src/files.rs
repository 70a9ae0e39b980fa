//! The PromQL expressions in Grafana dashboards and Prometheus rule files.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;

/// One expression and where it was found (`dashboard / panel`, `group / alert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Where: the dashboard and panel titles, or the rule group and rule name.
    pub place: String,
    /// The PromQL.
    pub expr: String,
}

/// Every target `expr` of a Grafana dashboard (panels inside rows included) and every
/// `label_values(metric, label)` template variable's metric, as a selector.
pub fn dashboard_queries(dashboard: &Value) -> Vec<Query> {
    let title = dashboard["title"].as_str().unwrap_or("untitled dashboard");
    let mut found = Vec::new();
    collect_panels(title, &dashboard["panels"], &mut found);
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let query = match &variable["query"] {
            Value::String(query) => query.as_str(),
            other => other["query"].as_str().unwrap_or(""),
        };
        if let Some(metric) = label_values_metric(query) {
            found.push(Query {
                place: format!("{title} / variable {}", variable["name"]),
                expr: metric,
            });
        }
    }
    found
}

fn collect_panels(title: &str, panels: &Value, found: &mut Vec<Query>) {
    for panel in panels.as_array().into_iter().flatten() {
        let panel_title = panel["title"].as_str().unwrap_or("untitled panel");
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                found.push(Query {
                    place: format!("{title} / {panel_title}"),
                    expr: expr.to_owned(),
                });
            }
        }
        collect_panels(title, &panel["panels"], found);
    }
}

/// `label_values(metric{…}, label)` → `metric{…}`; `None` for other variable queries.
fn label_values_metric(query: &str) -> Option<String> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (metric, _label) = inner.rsplit_once(',')?;
    Some(metric.trim().to_owned())
}

/// Every document of a YAML stream (`---`-separated), as JSON values.
pub fn yaml_documents(text: &str) -> Result<Vec<Value>, String> {
    yaml_serde::Deserializer::from_str(text)
        .map(|document| Value::deserialize(document).map_err(|e| e.to_string()))
        .filter(|document| !matches!(document, Ok(Value::Null)))
        .collect()
}

/// Every alerting and recording rule's `expr` in a Prometheus rule file.
pub fn rule_queries(rules_yaml: &str) -> Result<Vec<Query>, String> {
    Ok(rules(rules_yaml)?
        .into_iter()
        .map(|rule| Query {
            place: format!("{} / {}", rule.group, rule.name),
            expr: rule.expr,
        })
        .collect())
}

/// An alerting or a recording rule of a Prometheus rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Its group's name.
    pub group: String,
    /// `alert` (an alerting rule) or `record` (a recording rule).
    pub kind: RuleKind,
    /// The alert's name, or the series a recording rule writes.
    pub name: String,
    /// The PromQL.
    pub expr: String,
    /// The labels it adds (`severity`, `team`, `runbook_url`…).
    pub labels: BTreeMap<String, String>,
}

/// Whether a rule alerts or records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// `alert: Name`.
    Alert,
    /// `record: level:metric:operations`.
    Record,
}

/// Every rule of a Prometheus rule file, in order. A rule without `expr`, or with neither
/// `alert` nor `record`, is an error naming its group.
pub fn rules(rules_yaml: &str) -> Result<Vec<Rule>, String> {
    let file: Value = yaml_serde::from_str(rules_yaml).map_err(|e| e.to_string())?;
    let mut found = Vec::new();
    for group in file["groups"].as_array().into_iter().flatten() {
        let group_name = group["name"].as_str().unwrap_or("unnamed group");
        for rule in group["rules"].as_array().into_iter().flatten() {
            let (kind, name) = match (rule["alert"].as_str(), rule["record"].as_str()) {
                (Some(name), None) => (RuleKind::Alert, name),
                (None, Some(name)) => (RuleKind::Record, name),
                _ => {
                    return Err(format!(
                        "{group_name}: a rule needs exactly one of alert and record"
                    ));
                }
            };
            let expr = rule["expr"]
                .as_str()
                .ok_or_else(|| format!("{group_name} / {name}: a rule without an expr"))?;
            let labels = rule["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(key, value)| {
                    let text = match value {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    (key.clone(), text)
                })
                .collect();
            found.push(Rule {
                group: group_name.to_owned(),
                kind,
                name: name.to_owned(),
                expr: expr.to_owned(),
                labels,
            });
        }
    }
    Ok(found)
}

/// What a `promtool test rules` file tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleTests {
    /// The rule files it loads (relative to the test file).
    pub rule_files: Vec<String>,
    /// Each `alert_rule_test` case: the alert's name and whether alerts are expected
    /// (`exp_alerts` not empty) at its `eval_time`.
    pub alert_cases: Vec<(String, bool)>,
    /// Each `promql_expr_test`'s expression.
    pub exprs: Vec<String>,
}

/// The cases of a `promtool test rules` file.
pub fn rule_tests(test_yaml: &str) -> Result<RuleTests, String> {
    let file: Value = yaml_serde::from_str(test_yaml).map_err(|e| e.to_string())?;
    let mut found = RuleTests {
        rule_files: file["rule_files"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        ..RuleTests::default()
    };
    for test in file["tests"].as_array().into_iter().flatten() {
        for case in test["alert_rule_test"].as_array().into_iter().flatten() {
            let name = case["alertname"]
                .as_str()
                .ok_or_else(|| format!("{}: a case without alertname", test["name"]))?;
            let firing = case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty());
            found.alert_cases.push((name.to_owned(), firing));
        }
        for case in test["promql_expr_test"].as_array().into_iter().flatten() {
            let expr = case["expr"]
                .as_str()
                .ok_or_else(|| format!("{}: a promql_expr_test without expr", test["name"]))?;
            found.exprs.push(expr.to_owned());
        }
    }
    Ok(found)
}

/// The anchors of a Markdown document's headings, as GitHub makes them: the heading's text
/// in lower case, spaces turned into `-`, punctuation but `-` and `_` dropped (a repeated
/// heading's `-1`, `-2` suffixes are not made).
pub fn markdown_anchors(markdown: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut anchors = BTreeSet::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        let Some(text) = line
            .strip_prefix('#')
            .map(|rest| rest.trim_start_matches('#'))
            .filter(|rest| rest.starts_with(' '))
        else {
            continue;
        };
        if in_code {
            continue;
        }
        let anchor: String = text
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        anchors.insert(anchor);
    }
    anchors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashboards_give_every_target_and_label_values_variable() {
        let dashboard = serde_json::json!({
            "title": "D",
            "panels": [
                {"title": "A", "targets": [{"expr": "up"}, {"expr": "in_flight_requests"}]},
                {"title": "Row", "type": "row", "panels": [
                    {"title": "B", "targets": [{"expr": "available_instances"}]}
                ]},
                {"title": "Text", "type": "text"}
            ],
            "templating": {"list": [
                {"name": "instance", "query": {"query": "label_values(up{job=\"gateway\"}, instance)"}},
                {"name": "fixed", "query": "a,b"}
            ]}
        });
        let queries = dashboard_queries(&dashboard);
        let exprs: Vec<_> = queries.iter().map(|q| q.expr.as_str()).collect();
        assert_eq!(
            exprs,
            [
                "up",
                "in_flight_requests",
                "available_instances",
                "up{job=\"gateway\"}"
            ]
        );
        assert_eq!(queries[2].place, "D / B");
    }

    #[test]
    fn yaml_streams_give_every_document() {
        let docs = yaml_documents("---\na: 1\n---\nb: [x]\n").unwrap();
        assert_eq!(
            docs,
            [serde_json::json!({"a": 1}), serde_json::json!({"b": ["x"]})]
        );
        assert!(yaml_documents("a: [").is_err());
    }

    #[test]
    fn rule_files_give_every_rule() {
        let rules = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n      - record: r\n        expr: sum(up)\n";
        let queries = rule_queries(rules).unwrap();
        assert_eq!(
            queries,
            [
                Query {
                    place: "g / A".into(),
                    expr: "up == 0".into()
                },
                Query {
                    place: "g / r".into(),
                    expr: "sum(up)".into()
                },
            ]
        );
        assert!(rule_queries("groups:\n  - name: g\n    rules:\n      - alert: A\n").is_err());
    }

    #[test]
    fn rules_give_kind_name_and_labels() {
        let text = "groups:\n  - name: g\n    rules:\n      - record: job:r:rate5m\n        expr: sum(up)\n      - alert: A\n        expr: up == 0\n        labels:\n          severity: critical\n          priority: 1\n";
        let found = rules(text).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(
            (
                found[0].kind,
                found[0].name.as_str(),
                found[0].group.as_str()
            ),
            (RuleKind::Record, "job:r:rate5m", "g")
        );
        assert!(found[0].labels.is_empty());
        assert_eq!(found[1].kind, RuleKind::Alert);
        assert_eq!(found[1].labels["severity"], "critical");
        assert_eq!(found[1].labels["priority"], "1");
        let both = "groups:\n  - name: g\n    rules:\n      - alert: A\n        record: r\n        expr: up\n";
        assert!(rules(both).unwrap_err().contains("exactly one"));
    }

    #[test]
    fn rule_tests_give_alert_cases_and_expressions() {
        let text = r#"
rule_files: [alert.rules.yml]
tests:
  - name: t
    alert_rule_test:
      - eval_time: 1m
        alertname: A
        exp_alerts: []
      - eval_time: 2m
        alertname: A
        exp_alerts:
          - exp_labels: {severity: critical}
      - eval_time: 2m
        alertname: B
    promql_expr_test:
      - expr: job:r:rate5m
        eval_time: 1m
        exp_samples: []
"#;
        let found = rule_tests(text).unwrap();
        assert_eq!(found.rule_files, ["alert.rules.yml"]);
        assert_eq!(
            found.alert_cases,
            [("A".into(), false), ("A".into(), true), ("B".into(), false)]
        );
        assert_eq!(found.exprs, ["job:r:rate5m"]);
    }

    #[test]
    fn markdown_anchors_as_github_makes_them() {
        let text = "# Runbooks: what to do\n\n## HighErrorRate\n### The SLOs (99.5 %) and `burn`\n\
                    ```sh\n# not a heading\n```\n#hashtag\n## snake_case-and-dash\n";
        let anchors: Vec<_> = markdown_anchors(text).into_iter().collect();
        assert_eq!(
            anchors,
            [
                "higherrorrate",
                "runbooks-what-to-do",
                "snake_case-and-dash",
                "the-slos-995--and-burn"
            ]
        );
    }
}
