//! Check results and what is made of them: one printed line per check (✅/❌/⏭️, a short
//! detail, the duration), the lab rubric's score, the JSON report and the last line
//! `N passed, N failed[, N skipped]`. Shared by `suite` and `validate`.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The assertion held.
    Pass,
    /// It did not (or the check could not be carried out).
    Fail,
    /// Not applicable to this stack (Prometheus absent, no controller…): neither passed nor
    /// failed, and out of the score.
    Skip,
}

impl Outcome {
    /// `pass`, `fail` or `skip`, as in the JSON report.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Skip => "skip",
        }
    }

    fn icon(self) -> &'static str {
        match self {
            Self::Pass => "✅",
            Self::Fail => "❌",
            Self::Skip => "⏭️",
        }
    }
}

/// The group a check belongs to: the lab rubric's five categories (with points), the extra
/// groups (reported, not scored), the suite's own setup and `validate`'s checklist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    /// Reaching steady state before grading.
    Setup,
    /// Rubric 1 (25 points).
    Basic,
    /// Rubric 2 (20 points).
    CircuitBreaker,
    /// Rubric 3 (20 points).
    ServiceDiscovery,
    /// Rubric 4 (20 points).
    Fallback,
    /// Rubric 5 (15 points).
    Health,
    /// Extra: restarts without failed requests.
    ZeroDowntime,
    /// Extra: the lab's three mandatory failure scenarios.
    Chaos,
    /// Extra: the lab's SLAs.
    Performance,
    /// `validate`'s final checklist.
    Checklist,
}

impl Category {
    /// Every category, in report order.
    pub const ALL: [Self; 10] = [
        Self::Setup,
        Self::Basic,
        Self::CircuitBreaker,
        Self::ServiceDiscovery,
        Self::Fallback,
        Self::Health,
        Self::ZeroDowntime,
        Self::Chaos,
        Self::Performance,
        Self::Checklist,
    ];

    /// The heading printed above its checks.
    pub fn label(self) -> &'static str {
        match self {
            Self::Setup => "Setup",
            Self::Basic => "Basic functionality",
            Self::CircuitBreaker => "Circuit breaker",
            Self::ServiceDiscovery => "Service discovery",
            Self::Fallback => "Fallback",
            Self::Health => "Health checks",
            Self::ZeroDowntime => "Zero downtime",
            Self::Chaos => "Chaos scenarios",
            Self::Performance => "Performance",
            Self::Checklist => "Checklist",
        }
    }

    /// Its key in the JSON report.
    pub fn key(self) -> &'static str {
        match self {
            Self::Setup => "setup",
            Self::Basic => "basic",
            Self::CircuitBreaker => "circuit_breaker",
            Self::ServiceDiscovery => "service_discovery",
            Self::Fallback => "fallback",
            Self::Health => "health",
            Self::ZeroDowntime => "zero_downtime",
            Self::Chaos => "chaos",
            Self::Performance => "performance",
            Self::Checklist => "checklist",
        }
    }

    /// Its weight in the rubric's 100 points; `None` for the groups outside it.
    pub fn points(self) -> Option<u32> {
        match self {
            Self::Basic => Some(25),
            Self::CircuitBreaker | Self::ServiceDiscovery | Self::Fallback => Some(20),
            Self::Health => Some(15),
            _ => None,
        }
    }

    /// The heading line: `── Circuit breaker (20 points) ──`.
    pub fn heading(self) -> String {
        match self.points() {
            Some(points) => format!("── {} ({points} points) ──", self.label()),
            None if self == Self::Setup || self == Self::Checklist => {
                format!("── {} ──", self.label())
            }
            None => format!("── {} (extra, not in the 100 points) ──", self.label()),
        }
    }
}

/// What a check concluded, before it is timed and named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Pass, fail or skip.
    pub outcome: Outcome,
    /// A short explanation: what was seen.
    pub detail: String,
}

impl Verdict {
    /// A pass, saying what was seen.
    pub fn pass(detail: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Pass,
            detail: detail.into(),
        }
    }

    /// A failure, saying what was seen instead.
    pub fn fail(detail: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Fail,
            detail: detail.into(),
        }
    }

    /// Not applicable here, saying why.
    pub fn skip(detail: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Skip,
            detail: detail.into(),
        }
    }

    /// A pass when `ok`, else a failure, with the same detail.
    pub fn check(ok: bool, detail: impl Into<String>) -> Self {
        if ok {
            Self::pass(detail)
        } else {
            Self::fail(detail)
        }
    }
}

/// One finished check.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    /// What it checks.
    pub name: String,
    /// Its group.
    pub category: Category,
    /// Pass, fail or skip, and why.
    pub verdict: Verdict,
    /// How long it took.
    pub duration: Duration,
}

impl CheckResult {
    /// The printed line: `✅ name — detail (1.2 s)`.
    pub fn line(&self) -> String {
        let detail = match self.verdict.outcome {
            Outcome::Skip => format!("skipped: {}", self.verdict.detail),
            _ => self.verdict.detail.clone(),
        };
        format!(
            "{} {} — {detail} ({})",
            self.verdict.outcome.icon(),
            self.name,
            format_duration(self.duration)
        )
    }
}

/// Passed, failed and skipped checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Checks that passed.
    pub passed: usize,
    /// Checks that failed.
    pub failed: usize,
    /// Checks that were skipped.
    pub skipped: usize,
}

impl Counts {
    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Pass => self.passed += 1,
            Outcome::Fail => self.failed += 1,
            Outcome::Skip => self.skipped += 1,
        }
    }

    /// The last line of the output: `N passed, N failed`, with `, N skipped` only when some
    /// were.
    pub fn summary_line(&self) -> String {
        let mut line = format!("{} passed, {} failed", self.passed, self.failed);
        if self.skipped > 0 {
            let _ = write!(line, ", {} skipped", self.skipped);
        }
        line
    }
}

/// One category's share of the score.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryScore {
    /// The category.
    pub category: Category,
    /// Its checks.
    pub counts: Counts,
    /// Its weight (`None` outside the rubric).
    pub points: Option<u32>,
    /// points × passed / (passed + failed); 0 when none of its checks was decided.
    pub earned: f64,
}

/// The rubric's score: each category's points × passed/(passed+failed), out of 100.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// Every category that has checks, and every rubric category, in report order.
    pub categories: Vec<CategoryScore>,
    /// The sum of the rubric categories' earned points.
    pub total: f64,
}

impl Score {
    /// Scores `results` against the rubric.
    pub fn of(results: &[CheckResult]) -> Self {
        let mut categories = Vec::new();
        for category in Category::ALL {
            let mut counts = Counts::default();
            for result in results.iter().filter(|r| r.category == category) {
                counts.add(result.verdict.outcome);
            }
            let has_checks = counts.passed + counts.failed + counts.skipped > 0;
            if !has_checks && category.points().is_none() {
                continue;
            }
            let decided = counts.passed + counts.failed;
            let earned = match category.points() {
                Some(points) if decided > 0 => {
                    f64::from(points) * count_f64(counts.passed) / count_f64(decided)
                }
                _ => 0.0,
            };
            categories.push(CategoryScore {
                category,
                counts,
                points: category.points(),
                earned,
            });
        }
        let total = categories.iter().map(|c| c.earned).sum();
        Self { categories, total }
    }

    /// The printed score: one line per category, then the total.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for c in &self.categories {
            if c.category == Category::Setup || c.category == Category::Checklist {
                continue;
            }
            let Counts {
                passed,
                failed,
                skipped,
            } = c.counts;
            let skipped = if skipped > 0 {
                format!(", {skipped} skipped")
            } else {
                String::new()
            };
            let line = match c.points {
                Some(points) if passed + failed == 0 => {
                    format!(
                        "{:<20} 0.0/{points}  (not graded: no check ran{skipped})",
                        c.category.label()
                    )
                }
                Some(points) => format!(
                    "{:<20} {:.1}/{points}  ({passed}/{} passed{skipped})",
                    c.category.label(),
                    c.earned,
                    passed + failed
                ),
                None => format!(
                    "{:<20} {passed}/{} passed{skipped} (extra, not scored)",
                    c.category.label(),
                    passed + failed
                ),
            };
            lines.push(line);
        }
        lines.push(format!("{:<20} {:.1}/100", "Total", self.total));
        lines
    }

    fn to_json(&self) -> Value {
        let categories: Vec<Value> = self
            .categories
            .iter()
            .map(|c| {
                json!({
                    "category": c.category.key(),
                    "label": c.category.label(),
                    "points": c.points,
                    "earned": round1(c.earned),
                    "passed": c.counts.passed,
                    "failed": c.counts.failed,
                    "skipped": c.counts.skipped,
                })
            })
            .collect();
        json!({"total": round1(self.total), "out_of": 100, "categories": categories})
    }
}

/// Every check of a run, in the order they finished; prints each as it is recorded when
/// `echo` is on.
#[derive(Debug, Default)]
pub struct Report {
    results: Vec<CheckResult>,
    echo: bool,
}

impl Report {
    /// An empty report that prints (`echo`) or stays quiet (tests).
    pub fn new(echo: bool) -> Self {
        Self {
            results: Vec::new(),
            echo,
        }
    }

    /// Prints a line when echoing (a heading, a note).
    pub fn note(&self, line: &str) {
        if self.echo {
            println!("{line}");
        }
    }

    /// Adds a finished check and prints its line.
    pub fn record(&mut self, result: CheckResult) {
        self.note(&result.line());
        self.results.push(result);
    }

    /// Every check so far.
    #[cfg(test)]
    pub fn results(&self) -> &[CheckResult] {
        &self.results
    }

    /// Passed, failed, skipped.
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for result in &self.results {
            counts.add(result.verdict.outcome);
        }
        counts
    }

    /// The rubric's score.
    pub fn score(&self) -> Score {
        Score::of(&self.results)
    }

    /// The JSON report: `meta` (gateway, controller, timing…) merged with every check, the
    /// score and the counts.
    pub fn to_json(&self, meta: Value) -> Value {
        let checks: Vec<Value> = self
            .results
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "category": r.category.key(),
                    "outcome": r.verdict.outcome.as_str(),
                    "detail": r.verdict.detail,
                    "duration_ms": u64::try_from(r.duration.as_millis()).unwrap_or(u64::MAX),
                })
            })
            .collect();
        let counts = self.counts();
        let mut report = match meta {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        report.insert("checks".into(), Value::Array(checks));
        report.insert("score".into(), self.score().to_json());
        report.insert(
            "summary".into(),
            json!({
                "passed": counts.passed,
                "failed": counts.failed,
                "skipped": counts.skipped,
                "line": counts.summary_line(),
            }),
        );
        Value::Object(report)
    }
}

/// `850 ms` below a second, `12.3 s` above.
pub fn format_duration(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

fn count_f64(n: usize) -> f64 {
    // Check counts are tiny: the conversion is exact.
    f64::from(u32::try_from(n).unwrap_or(u32::MAX))
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
