//! `report.html`: one self-contained page (inline CSS and SVG, no script, nothing fetched)
//! with the summary tables and charts of latency and throughput over time. Every
//! interpolated text goes through [`escape`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::report::Report;
use super::svg::{self, Line};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:960px;\
color:#222}h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}table{border-collapse:\
collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}.chart{width:100%;height:auto}\
.tick{font-size:11px;fill:#555}.bad{color:#b00}";

/// Escapes `text` for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The whole page for `report`.
pub fn render(report: &Report) -> String {
    let p = &report.parameters;
    let r = &report.results;
    let t = &r.totals;
    let l = &r.latency_ms;
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Load test {}</title><style>{STYLE}</style></head><body>\
         <h1>Load test of {}</h1>",
        escape(&report.started_at),
        escape(&p.url),
    );
    let load = match p.rps {
        Some(rps) => format!("open loop, {rps} req/s, at most {} in flight", p.concurrent),
        None => format!("closed loop, {} workers", p.concurrent),
    };
    let interrupted = if report.interrupted {
        " (interrupted)"
    } else {
        ""
    };
    let parameters = [
        ("Gateway", p.gateway.clone()),
        ("Endpoint", format!("{} ({})", p.endpoint, p.url)),
        ("Load", load),
        ("Duration", format!("{} s", p.duration_s)),
        ("Timeout per request", format!("{} s", p.timeout_s)),
        ("Prompt", p.prompt.clone()),
        ("Model", p.model.clone().unwrap_or_else(|| "-".to_owned())),
        ("Started", report.started_at.clone()),
        ("Ran", format!("{:.1} s{interrupted}", report.elapsed_s)),
    ];
    table(&mut page, "Parameters", &parameters);
    let totals = [
        ("Requests", t.requests.to_string()),
        ("Answered 2xx", t.answered_2xx.to_string()),
        ("Errors", t.errors.to_string()),
        ("Skipped (open loop)", t.skipped.to_string()),
        ("Availability", format!("{:.2} %", t.availability_pct)),
        ("Throughput", format!("{:.2} req/s", t.throughput_rps)),
    ];
    table(&mut page, "Totals", &totals);
    let latency = [
        ("mean", l.mean),
        ("p50", l.p50),
        ("p90", l.p90),
        ("p95", l.p95),
        ("p99", l.p99),
        ("p99.9", l.p99_9),
        ("max", l.max),
    ]
    .map(|(name, ms)| (name, format!("{ms:.1} ms")));
    table(&mut page, "Latency", &latency);
    count_table(&mut page, "Requests by status", &r.status_counts);
    count_table(&mut page, "2xx answers by fallback tier", &r.fallback_tiers);

    let x_max = r.series.len() as f64;
    let at = |second: u64| second as f64 + 0.5;
    let latency_lines = [
        Line {
            name: "p50",
            color: "#1f77b4",
            points: r.series.iter().map(|s| (at(s.second), s.p50_ms)).collect(),
        },
        Line {
            name: "p95",
            color: "#d62728",
            points: r.series.iter().map(|s| (at(s.second), s.p95_ms)).collect(),
        },
    ];
    let throughput_lines = [
        Line {
            name: "requests",
            color: "#2ca02c",
            points: r
                .series
                .iter()
                .map(|s| (at(s.second), Some(s.requests as f64)))
                .collect(),
        },
        Line {
            name: "errors",
            color: "#d62728",
            points: r
                .series
                .iter()
                .map(|s| (at(s.second), Some(s.errors as f64)))
                .collect(),
        },
    ];
    let _ = writeln!(
        page,
        "<h2>Latency over time (by request start)</h2>{}\
         <h2>Throughput over time (requests started per second)</h2>{}\
         </body></html>",
        svg::chart("ms", x_max, &latency_lines),
        svg::chart("req/s", x_max, &throughput_lines),
    );
    page
}

fn table(page: &mut String, title: &str, rows: &[(&str, String)]) {
    let _ = write!(page, "<h2>{}</h2><table>", escape(title));
    for (name, value) in rows {
        let _ = write!(
            page,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(name),
            escape(value)
        );
    }
    page.push_str("</table>");
}

fn count_table(page: &mut String, title: &str, counts: &BTreeMap<String, u64>) {
    let total: u64 = counts.values().sum();
    let _ = write!(page, "<h2>{}</h2><table>", escape(title));
    if counts.is_empty() {
        page.push_str("<tr><td>none</td></tr>");
    }
    for (key, count) in counts {
        let share = if total == 0 {
            0.0
        } else {
            *count as f64 * 100.0 / total as f64
        };
        let class = if key.starts_with("error:") || key.starts_with('5') {
            " class=\"bad\""
        } else {
            ""
        };
        let _ = write!(
            page,
            "<tr><th{class}>{}</th><td class=\"n\">{count}</td><td class=\"n\">{share:.1} %</td></tr>",
            escape(key)
        );
    }
    page.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::outcome::Outcome;
    use crate::load::report::Parameters;
    use crate::load::stats::{Recorder, Sample};
    use std::time::Duration;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn the_page_is_self_contained_and_escapes_the_prompt() {
        let mut recorder = Recorder::new().unwrap();
        for second in 0..3_u32 {
            let sample = Sample {
                start: Duration::from_secs(second.into()),
                latency: Duration::from_millis(20),
                outcome: Outcome::http(200, Some("none".to_owned())),
            };
            recorder.record(&sample, Duration::from_secs(3));
        }
        let report = Report {
            parameters: Parameters {
                gateway: "http://gw".to_owned(),
                url: "http://gw/generate".to_owned(),
                endpoint: "generate".to_owned(),
                mode: "closed_loop".to_owned(),
                concurrent: 2,
                rps: None,
                duration_s: 3,
                timeout_s: 30.0,
                prompt: "<script>alert(1)</script>".to_owned(),
                model: None,
                min_availability: None,
            },
            started_at: "2024-01-01T00:00:00Z".to_owned(),
            started_at_unix_ms: 0,
            elapsed_s: 3.0,
            interrupted: false,
            results: recorder.results(Duration::from_secs(3)),
        };
        let page = render(&report);
        assert!(!page.contains("<script"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!page.contains("src=") && !page.contains("href="));
        assert_eq!(page.matches("<svg").count(), 2);
        assert_eq!(page.matches("<polyline").count(), 4);
    }
}
