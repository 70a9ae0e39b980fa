//! What the binaries say about themselves: the metrics and labels in a Prometheus text
//! exposition, and the environment variables their `--help` lists.

use std::collections::{BTreeMap, BTreeSet};

/// Each metric with at least one sample in a text exposition, with the label names its
/// series carry (histograms appear as their `_bucket`, `_sum` and `_count` series, as
/// PromQL reads them).
pub fn exported_labels(exposition: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let Some(name) = line.split(['{', ' ']).next().filter(|n| !n.is_empty()) else {
            continue;
        };
        let labels = found.entry(name.to_owned()).or_default();
        if let Some((_, rest)) = line.split_once('{') {
            // `label="value"` pairs; values are quoted (with `\"` escapes), so a comma,
            // `=` or `}` inside one is skipped by walking quote to quote.
            let mut in_quotes = false;
            let mut escaped = false;
            let mut current = String::new();
            for c in rest.chars() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' if in_quotes => escaped = true,
                    '"' => in_quotes = !in_quotes,
                    '=' if !in_quotes => {
                        labels.insert(current.trim_matches([',', ' ']).to_owned());
                        current.clear();
                    }
                    '}' if !in_quotes => break,
                    _ if !in_quotes => current.push(c),
                    _ => {}
                }
            }
        }
    }
    found
}

/// The variables a clap `--help` names with `[env: NAME=…]` (however the help is wrapped:
/// clap follows the terminal's width, and `COLUMNS`).
pub fn env_names(help: &str) -> BTreeSet<String> {
    let flowed = help.split_whitespace().collect::<Vec<_>>().join(" ");
    flowed
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_an_exposition() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n\
                    b_bucket{le=\"+Inf\"} 1\nb_sum 0.5\nc 7\n\n";
        let names: Vec<_> = exported_labels(text).into_keys().collect();
        assert_eq!(names, ["a_total", "b_bucket", "b_sum", "c"]);
    }

    #[test]
    fn labels_in_an_exposition() {
        let text = "a_total{x=\"1,y=2\",z=\"\\\"q=\\\"\",w=\"}\"} 3\nb 1\n";
        let found = exported_labels(text);
        let labels: Vec<_> = found["a_total"].iter().map(String::as_str).collect();
        assert_eq!(labels, ["w", "x", "z"]);
        assert!(found["b"].is_empty());
    }

    #[test]
    fn names_in_a_help() {
        let help = "  --port <PORT>  Port [env: PORT=] [default: 8000]\n  \
                    --redis-url <REDIS_URL>  Redis [env: REDIS_URL=redis://x]\n  \
                    --token <T>  [env: CHAOS_TOKEN]\n";
        let names: Vec<_> = env_names(help).into_iter().collect();
        assert_eq!(names, ["CHAOS_TOKEN", "PORT", "REDIS_URL"]);
        let wrapped = "  --x <X>  Failed\n           [env:\n           LONG_NAME=]\n";
        assert!(env_names(wrapped).contains("LONG_NAME"));
    }
}
