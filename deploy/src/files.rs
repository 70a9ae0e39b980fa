//! The PromQL expressions in Grafana dashboards and Prometheus rule files.

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
    let file: Value = yaml_serde::from_str(rules_yaml).map_err(|e| e.to_string())?;
    let mut found = Vec::new();
    for group in file["groups"].as_array().into_iter().flatten() {
        let group_name = group["name"].as_str().unwrap_or("unnamed group");
        for rule in group["rules"].as_array().into_iter().flatten() {
            let name = rule["alert"].as_str().or(rule["record"].as_str());
            let expr = rule["expr"]
                .as_str()
                .ok_or_else(|| format!("{group_name}: a rule without an expr"))?;
            found.push(Query {
                place: format!("{group_name} / {}", name.unwrap_or("unnamed rule")),
                expr: expr.to_owned(),
            });
        }
    }
    Ok(found)
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
}
