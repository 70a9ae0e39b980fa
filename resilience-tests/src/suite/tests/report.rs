//! Scoring, the last line, the printed lines and the JSON report.

use std::time::Duration;

use serde_json::json;

use crate::suite::report::{Category, CheckResult, Counts, Outcome, Report, Score, Verdict};

fn result(category: Category, outcome: Outcome) -> CheckResult {
    CheckResult {
        name: format!("{} check", category.label()),
        category,
        verdict: Verdict {
            outcome,
            detail: "seen".into(),
        },
        duration: Duration::from_millis(1500),
    }
}

#[test]
fn the_last_line_names_skipped_checks_only_when_there_are_some() {
    let mut counts = Counts {
        passed: 30,
        failed: 2,
        skipped: 0,
    };
    assert_eq!(counts.summary_line(), "30 passed, 2 failed");
    counts.skipped = 3;
    assert_eq!(counts.summary_line(), "30 passed, 2 failed, 3 skipped");
}

#[test]
fn each_category_earns_its_points_times_the_share_passed_skips_aside() {
    use Category::*;
    use Outcome::*;
    let results = vec![
        result(Basic, Pass),
        result(Basic, Pass),
        result(Basic, Pass),
        result(Basic, Fail),
        result(Basic, Skip),
        result(CircuitBreaker, Pass),
        result(ServiceDiscovery, Fail),
        result(Fallback, Skip),
        result(Health, Pass),
        result(Performance, Fail),
        result(Chaos, Pass),
    ];
    let score = Score::of(&results);
    let earned = |category| {
        score
            .categories
            .iter()
            .find(|c| c.category == category)
            .map(|c| c.earned)
    };
    assert_eq!(
        earned(Basic),
        Some(18.75),
        "25 × 3/4: the skip is not counted"
    );
    assert_eq!(earned(CircuitBreaker), Some(20.0));
    assert_eq!(earned(ServiceDiscovery), Some(0.0));
    assert_eq!(earned(Fallback), Some(0.0), "only skipped: not graded");
    assert_eq!(earned(Health), Some(15.0));
    assert_eq!(earned(Performance), Some(0.0), "extras earn nothing");
    assert!((score.total - 53.75).abs() < 1e-9, "{}", score.total);
    let lines = score.lines();
    assert_eq!(
        lines.last().map(String::as_str),
        Some("Total                53.8/100")
    );
    assert!(lines.iter().any(|l| l.contains("not graded")), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Performance") && l.contains("extra")),
        "{lines:?}"
    );
}

#[test]
fn every_rubric_category_is_scored_even_without_checks() {
    let score = Score::of(&[]);
    let rubric: Vec<_> = score.categories.iter().map(|c| c.category).collect();
    assert_eq!(
        rubric,
        [
            Category::Basic,
            Category::CircuitBreaker,
            Category::ServiceDiscovery,
            Category::Fallback,
            Category::Health
        ]
    );
    let points: u32 = rubric.iter().filter_map(|c| c.points()).sum();
    assert_eq!(points, 100);
    assert_eq!(score.total, 0.0);
}

#[test]
fn the_json_report_lists_every_check_with_its_outcome_and_the_score() {
    let mut report = Report::new(false);
    report.record(result(Category::Basic, Outcome::Pass));
    report.record(result(Category::Health, Outcome::Fail));
    report.record(result(Category::Performance, Outcome::Skip));
    let json = report.to_json(json!({"gateway": "http://gw"}));
    assert_eq!(json["gateway"], "http://gw");
    let checks = json["checks"].as_array().cloned().unwrap_or_default();
    assert_eq!(checks.len(), 3);
    assert_eq!(checks[0]["name"], "Basic functionality check");
    assert_eq!(checks[0]["category"], "basic");
    assert_eq!(checks[0]["outcome"], "pass");
    assert_eq!(checks[0]["detail"], "seen");
    assert_eq!(checks[0]["duration_ms"], 1500);
    assert_eq!(checks[1]["outcome"], "fail");
    assert_eq!(checks[2]["outcome"], "skip");
    assert_eq!(json["summary"]["line"], "1 passed, 1 failed, 1 skipped");
    assert_eq!(json["score"]["total"], 25.0);
    assert_eq!(json["score"]["out_of"], 100);
}

#[test]
fn a_line_shows_the_icon_the_detail_and_the_duration() {
    let pass = result(Category::Basic, Outcome::Pass);
    assert_eq!(pass.line(), "✅ Basic functionality check — seen (1.5 s)");
    let skip = CheckResult {
        duration: Duration::from_millis(3),
        ..result(Category::Basic, Outcome::Skip)
    };
    assert_eq!(
        skip.line(),
        "⏭️ Basic functionality check — skipped: seen (3 ms)"
    );
    assert!(
        result(Category::Basic, Outcome::Fail)
            .line()
            .starts_with("❌ ")
    );
}

#[test]
fn headings_give_points_or_say_extra() {
    assert_eq!(
        Category::CircuitBreaker.heading(),
        "── Circuit breaker (20 points) ──"
    );
    assert_eq!(
        Category::Chaos.heading(),
        "── Chaos scenarios (extra, not in the 100 points) ──"
    );
}
