//! Aggregation over rounds: the median with the smallest and largest value, ratios and
//! differences of medians (pure).

use serde::Serialize;

/// A figure over rounds: its median, smallest and largest value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// The median (the mean of the two middle values for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`, ignoring values that are not finite; `None` when none is left.
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let (first, last) = (sorted.first()?, sorted.last()?);
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            f64::midpoint(sorted[n / 2 - 1], sorted[n / 2])
        };
        Some(Self {
            median,
            min: *first,
            max: *last,
        })
    }

    /// `median [min–max]`, each with `decimals` decimals.
    pub fn show(&self, decimals: usize) -> String {
        format!(
            "{:.d$} [{:.d$}–{:.d$}]",
            self.median,
            self.min,
            self.max,
            d = decimals
        )
    }
}

/// `numerator / denominator`; `None` when either is missing or the denominator is not
/// positive.
pub fn ratio(numerator: Option<f64>, denominator: Option<f64>) -> Option<f64> {
    match (numerator, denominator) {
        (Some(n), Some(d)) if d > 0.0 && n.is_finite() => Some(n / d),
        _ => None,
    }
}

/// `value - base`; `None` when either is missing.
pub fn added(value: Option<f64>, base: Option<f64>) -> Option<f64> {
    Some(value? - base?)
}

/// Growth from `first` to `last` in percent of `first`; `None` when `first` is zero.
pub fn growth_pct(first: f64, last: f64) -> Option<f64> {
    (first > 0.0).then(|| (last - first) / first * 100.0)
}
