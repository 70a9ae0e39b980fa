//! Line charts as inline SVG, so that `report.html` needs nothing from the network.
//!
//! One `<polyline>` per line with one `x,y` pair per point; gaps (seconds without a value)
//! are joined over. Axes start at 0; the y axis ends at the next round step (1, 1.2, 1.5,
//! 2, 2.5, 3, 4, 5, 6 or 8 × 10^k) at or above the highest value.

use std::fmt::Write as _;

use super::html::escape;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 24.0;
const BOTTOM: f64 = 36.0;
/// Horizontal grid lines above the x axis.
const GRID_LINES: u32 = 4;
/// Round axis ends, times a power of ten.
const STEPS: [f64; 11] = [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0];
/// Room for one legend entry.
const LEGEND_WIDTH: f64 = 120.0;

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Line<'a> {
    /// Its legend.
    pub name: &'a str,
    /// A CSS colour.
    pub color: &'a str,
    /// `(x, y)` points, x ascending; `None` values are left out.
    pub points: Vec<(f64, Option<f64>)>,
}

/// A chart of `lines` over x in `[0, x_max]` (seconds), its y axis labelled in `unit`.
pub fn chart(unit: &str, x_max: f64, lines: &[Line<'_>]) -> String {
    let x_max = if x_max > 0.0 { x_max } else { 1.0 };
    let highest = lines
        .iter()
        .flat_map(|line| line.points.iter().filter_map(|(_, y)| *y))
        .fold(0.0_f64, f64::max);
    let y_max = nice_ceiling(highest);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let px = |x: f64| LEFT + x / x_max * plot_w;
    let py = |y: f64| TOP + plot_h - y / y_max * plot_h;

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" class="chart">"#
    );
    for step in 0..=GRID_LINES {
        let value = y_max * f64::from(step) / f64::from(GRID_LINES);
        let y = py(value);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end" class="tick">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            escape(&label(value)),
        );
    }
    for value in [0.0, x_max / 2.0, x_max] {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="tick">{}</text>"#,
            px(value),
            HEIGHT - BOTTOM + 16.0,
            escape(&format!("{} s", label(value))),
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{LEFT}" y="{:.1}" class="tick">{}</text>"#,
        TOP - 8.0,
        escape(unit)
    );
    for (index, line) in (0_u32..).zip(lines) {
        let color = escape(line.color);
        let points: Vec<String> = line
            .points
            .iter()
            .filter_map(|(x, y)| y.map(|y| format!("{:.1},{:.1}", px(*x), py(y))))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
            points.join(" ")
        );
        if let [only] = points.as_slice()
            && let Some((cx, cy)) = only.split_once(',')
        {
            let _ = write!(svg, r#"<circle cx="{cx}" cy="{cy}" r="3" fill="{color}"/>"#);
        }
        let legend_x = WIDTH - RIGHT - LEGEND_WIDTH * (lines.len() as f64 - f64::from(index));
        let _ = write!(
            svg,
            r#"<rect x="{legend_x:.1}" y="{:.1}" width="12" height="4" fill="{color}"/><text x="{:.1}" y="{:.1}" class="tick">{}</text>"#,
            TOP - 12.0,
            legend_x + 16.0,
            TOP - 8.0,
            escape(line.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The smallest round step at or above `value` (1 for nothing to show).
fn nice_ceiling(value: f64) -> f64 {
    if value.is_nan() || value <= 0.0 {
        return 1.0;
    }
    let magnitude = 10_f64.powf(value.log10().floor());
    STEPS
        .into_iter()
        .map(|step| step * magnitude)
        .find(|candidate| *candidate >= value)
        .unwrap_or(10.0 * magnitude)
}

/// An axis label: integers without decimals, others with up to two.
fn label(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.2}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn polylines(svg: &str) -> Vec<usize> {
        svg.split("points=\"")
            .skip(1)
            .map(|rest| {
                let points = &rest[..rest.find('"').unwrap()];
                points.split_whitespace().count()
            })
            .collect()
    }

    #[test]
    fn one_point_per_value_and_one_polyline_per_line() {
        let p50 = Line {
            name: "p50",
            color: "#1f77b4",
            points: vec![(0.5, Some(10.0)), (1.5, None), (2.5, Some(30.0))],
        };
        let p95 = Line {
            name: "p95",
            color: "#d62728",
            points: (0..5).map(|i| (f64::from(i) + 0.5, Some(40.0))).collect(),
        };
        let svg = chart("ms", 5.0, &[p50, p95]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(polylines(&svg), [2, 5]);
    }

    #[test]
    fn values_fit_inside_the_plot() {
        let line = Line {
            name: "requests",
            color: "black",
            points: vec![(0.0, Some(0.0)), (10.0, Some(37.0))],
        };
        let svg = chart("req/s", 10.0, &[line]);
        let start = svg.find("points=\"").unwrap() + 8;
        let points = &svg[start..start + svg[start..].find('"').unwrap()];
        for pair in points.split_whitespace() {
            let (x, y) = pair.split_once(',').unwrap();
            let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
            assert!((LEFT..=WIDTH - RIGHT).contains(&x), "{x}");
            assert!((TOP..=HEIGHT - BOTTOM).contains(&y), "{y}");
        }
        assert!(svg.contains(">40</text>"), "37 rounds up to a 40 axis");
    }

    #[test]
    fn nice_ceilings() {
        for (value, ceiling) in [
            (0.0, 1.0),
            (37.0, 40.0),
            (100.0, 100.0),
            (101.0, 120.0),
            (2748.0, 3000.0),
            (0.013, 0.015),
        ] {
            let got = nice_ceiling(value);
            assert!((got - ceiling).abs() < ceiling * 1e-9, "{value} → {got}");
        }
    }

    #[test]
    fn legends_are_escaped() {
        let line = Line {
            name: "<script>",
            color: "red\"",
            points: vec![],
        };
        let svg = chart("ms", 1.0, &[line]);
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains("red&quot;"));
    }
}
