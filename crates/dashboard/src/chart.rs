//! The sync history chart: objects synced (bars, left axis) and duration (line, right axis)
//! per run, oldest on the left, as inline SVG drawn on the server — no chart library, no
//! JavaScript.
//!
//! The SVG scales with its `viewBox`: about half size on a 375 px phone, a little over full
//! size on a desktop. So that its words stay legible at both, the text size is set by the
//! stylesheet per screen width (in the chart's own units), the margins leave room for the
//! larger one, and at most [`MAX_RUN_LABELS`] runs are named under the bars.

use maud::{html, Markup};

/// One run on the chart.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Point {
    /// Label under the bar (the run id).
    pub label: String,
    /// Objects synced.
    pub objects: u64,
    /// Duration in seconds, when the run has ended.
    pub seconds: Option<f64>,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 240.0;
/// Room for the objects axis' values (five characters at the phone's text size).
const PAD_LEFT: f64 = 76.0;
/// Room for the duration axis' values (`0.05 s` at the phone's text size).
const PAD_RIGHT: f64 = 100.0;
const PAD_TOP: f64 = 18.0;
/// Room for the run labels.
const PAD_BOTTOM: f64 = 40.0;
/// Runs named under the bars at most: more would overlap on a phone.
const MAX_RUN_LABELS: usize = 6;

/// The smallest round number (1, 2, 4, 6 or 8 times a power of ten) at or above `x`: the
/// top of an axis, so that it and its half read as round values. `1` for nothing to show.
fn axis_top(x: f64) -> f64 {
    if !(x > 0.0 && x.is_finite()) {
        return 1.0;
    }
    let unit = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        .into_iter()
        .map(|m| m * unit)
        .find(|top| *top >= x * (1.0 - 1e-9))
        .unwrap_or(10.0 * unit)
}

/// A number in at most five characters, without trailing zeros: `0.05`, `950`, `1.2k`,
/// `35k`, `1.5M`.
fn compact(x: f64) -> String {
    let (value, suffix) = match x.abs() {
        a if a >= 1e9 => (x / 1e9, "G"),
        a if a >= 1e6 => (x / 1e6, "M"),
        a if a >= 1e3 => (x / 1e3, "k"),
        _ => (x, ""),
    };
    let decimals = match value.abs() {
        a if a >= 10.0 => 0,
        a if a >= 1.0 => 1,
        _ => 2,
    };
    let text = format!("{value:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text}{suffix}")
}

/// A duration as people read it: `0.04 s`, `12.5 s`, `3m 05s`.
fn duration_text(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{seconds:.2} s")
    } else if seconds < 60.0 {
        format!("{seconds:.1} s")
    } else {
        let whole = seconds.round() as u64;
        format!("{}m {:02}s", whole / 60, whole % 60)
    }
}

/// An axis value in seconds, short: `0 s`, `0.5 s`, `40 s`, `4m`, `1.5h`.
fn seconds_tick(seconds: f64) -> String {
    match seconds {
        s if s >= 3600.0 => format!("{}h", compact(s / 3600.0)),
        s if s >= 120.0 => format!("{}m", compact(s / 60.0)),
        s => format!("{} s", compact(s)),
    }
}

/// The chart of `points` (oldest first); nothing when there are none.
pub(crate) fn history(points: &[Point]) -> Markup {
    if points.is_empty() {
        return html! {};
    }
    let most_objects = points.iter().map(|p| p.objects).max().unwrap_or(0);
    let longest = points.iter().filter_map(|p| p.seconds).reduce(f64::max);
    let objects_top = axis_top(most_objects as f64);
    // Shorter runs all sit near the bottom: the axis never goes below a tenth of a second.
    let seconds_top = axis_top(longest.unwrap_or(0.0).max(0.1));
    let plot_w = WIDTH - PAD_LEFT - PAD_RIGHT;
    let plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM;
    let bottom = PAD_TOP + plot_h;
    let slot = plot_w / points.len() as f64;
    let bar_w = (slot * 0.6).clamp(1.0, 48.0);
    let x_mid = |i: usize| PAD_LEFT + slot * (i as f64 + 0.5);
    let y_of = |share: f64| bottom - plot_h * share;
    // Every `step`-th run is named, counting back from the latest (always named).
    let step = points.len().div_ceil(MAX_RUN_LABELS);
    let named = |i: usize| (points.len() - 1 - i) % step == 0;
    let line: Vec<(f64, f64)> = points
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.seconds.map(|s| (x_mid(i), y_of(s / seconds_top))))
        .collect();
    let polyline: Vec<String> = line.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    // Objects are whole: no half-way value when the top is 1.
    let object_ticks: Vec<f64> = if objects_top >= 2.0 {
        vec![0.0, objects_top / 2.0, objects_top]
    } else {
        vec![0.0, objects_top]
    };
    let longest_text = longest.map_or_else(|| "none ended yet".to_string(), duration_text);
    let summary = format!(
        "{} runs; most objects in one run: {most_objects}; longest run: {longest_text}",
        points.len(),
    );
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label=(summary) {
                title { "Objects synced and duration per run: " (summary) }
                @for v in &object_ticks {
                    @let y = format!("{:.1}", y_of(v / objects_top));
                    line x1=(PAD_LEFT) y1=(y) x2=(WIDTH - PAD_RIGHT) y2=(y) class=(if *v == 0.0 { "axis" } else { "grid" }) {}
                    text x=(PAD_LEFT - 8.0) y=(y) dy="0.35em" text-anchor="end" class="y-label objects" { (compact(*v)) }
                }
                @if longest.is_some() {
                    @for share in [0.0, 0.5, 1.0] {
                        text x=(WIDTH - PAD_RIGHT + 8.0) y=(format!("{:.1}", y_of(share))) dy="0.35em" text-anchor="start" class="y-label seconds" {
                            (seconds_tick(seconds_top * share))
                        }
                    }
                }
                @for (i, p) in points.iter().enumerate() {
                    @let h = plot_h * p.objects as f64 / objects_top;
                    rect class="bar" x=(format!("{:.1}", x_mid(i) - bar_w / 2.0)) y=(format!("{:.1}", bottom - h))
                        width=(format!("{bar_w:.1}")) height=(format!("{h:.1}")) {
                        title { "run " (p.label) ": " (p.objects) " objects"
                            @if let Some(s) = p.seconds { ", " (duration_text(s)) } }
                    }
                    @if named(i) {
                        text x=(format!("{:.1}", x_mid(i))) y=(HEIGHT - 8.0) text-anchor="middle" class="x-label" { (p.label) }
                    }
                }
                @if polyline.len() > 1 {
                    polyline class="duration" fill="none" points=(polyline.join(" ")) {}
                }
                @for (x, y) in &line {
                    circle class="duration" cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="4" {}
                }
            }
            figcaption {
                span.key { span.key-bar aria-hidden="true" { "■" } " objects per run (left axis; most " (most_objects) ")" }
                " "
                span.key { span.key-line aria-hidden="true" { "●" } " duration (right axis; longest " (longest_text) ")" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(label: &str, objects: u64, seconds: Option<f64>) -> Point {
        Point {
            label: label.into(),
            objects,
            seconds,
        }
    }

    #[test]
    fn draws_one_bar_per_run_and_a_duration_line() {
        let points = vec![
            point("1", 10, Some(2.0)),
            point("2", 40, Some(8.0)),
            point("3", 0, None),
        ];
        let svg = history(&points).into_string();
        assert_eq!(svg.matches("<rect").count(), 3, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 2, "{svg}");
        assert!(svg.contains("<polyline"), "{svg}");
        // 40 objects on an axis up to 40: the tallest bar fills the plot height; the empty
        // run has none.
        assert!(svg.contains("height=\"182.0\""), "{svg}");
        assert!(svg.contains("height=\"0.0\""), "{svg}");
        assert!(history(&[]).into_string().is_empty());
    }

    #[test]
    fn both_axes_carry_round_values() {
        let svg = history(&[point("1", 1234, Some(3.2)), point("2", 20, Some(0.4))]).into_string();
        for objects in [">0<", ">1k<", ">2k<"] {
            assert!(svg.contains(objects), "objects axis {objects}: {svg}");
        }
        for seconds in [">0 s<", ">2 s<", ">4 s<"] {
            assert!(svg.contains(seconds), "duration axis {seconds}: {svg}");
        }
        assert_eq!(axis_top(0.0), 1.0);
        assert_eq!(axis_top(1.0), 1.0);
        assert_eq!(axis_top(20.0), 20.0);
        assert_eq!(axis_top(21.0), 40.0);
        assert_eq!(axis_top(0.04), 0.04);
        assert_eq!(axis_top(950.0), 1000.0);
        assert_eq!(compact(1500.0), "1.5k");
        assert_eq!(compact(35_000.0), "35k");
        assert_eq!(compact(2_000_000.0), "2M");
        assert_eq!(compact(0.0), "0");
        assert_eq!(compact(0.05), "0.05");
        assert_eq!(compact(950.0), "950");
        assert_eq!(seconds_tick(0.5), "0.5 s");
        assert_eq!(seconds_tick(480.0), "8m");
    }

    #[test]
    fn the_caption_says_the_real_longest_duration() {
        let html = history(&[point("1", 20, Some(0.04))]).into_string();
        assert!(html.contains("longest 0.04 s)"), "{html}");
        assert!(!html.contains("1 s)"), "{html}");
        let html = history(&[point("1", 20, Some(185.0))]).into_string();
        assert!(html.contains("longest 3m 05s)"), "{html}");
        let html = history(&[point("1", 20, None)]).into_string();
        assert!(html.contains("longest none ended yet)"), "{html}");
    }

    #[test]
    fn at_most_a_few_runs_are_named_and_the_latest_always() {
        let points: Vec<Point> = (1..=100)
            .map(|i| point(&i.to_string(), i, Some(1.0)))
            .collect();
        let svg = history(&points).into_string();
        let named = svg.matches("class=\"x-label\"").count();
        assert!(
            (2..=MAX_RUN_LABELS).contains(&named),
            "{named} labels: {svg}"
        );
        assert!(svg.contains("class=\"x-label\">100<"), "{svg}");
        let few = history(&points[..3]).into_string();
        assert_eq!(few.matches("class=\"x-label\"").count(), 3, "{few}");
    }
}
