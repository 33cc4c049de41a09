//! The sync history chart: objects synced (bars) and duration (line) per run, oldest on the
//! left, as inline SVG drawn on the server — no chart library, no JavaScript.

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
const HEIGHT: f64 = 180.0;
const PAD_LEFT: f64 = 8.0;
const PAD_RIGHT: f64 = 8.0;
const PAD_TOP: f64 = 16.0;
const PAD_BOTTOM: f64 = 22.0;

/// The chart of `points` (oldest first); nothing when there are none.
pub(crate) fn history(points: &[Point]) -> Markup {
    if points.is_empty() {
        return html! {};
    }
    let max_objects = points.iter().map(|p| p.objects).max().unwrap_or(0).max(1) as f64;
    let max_seconds = points
        .iter()
        .filter_map(|p| p.seconds)
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let plot_w = WIDTH - PAD_LEFT - PAD_RIGHT;
    let plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM;
    let slot = plot_w / points.len() as f64;
    let bar_w = (slot * 0.6).clamp(1.0, 48.0);
    let x_mid = |i: usize| PAD_LEFT + slot * (i as f64 + 0.5);
    let line: Vec<String> = points
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            p.seconds.map(|s| {
                format!(
                    "{:.1},{:.1}",
                    x_mid(i),
                    PAD_TOP + plot_h - plot_h * s / max_seconds
                )
            })
        })
        .collect();
    let summary = format!(
        "{} runs; most objects in one run: {}; longest run: {:.0} s",
        points.len(),
        max_objects as u64,
        max_seconds
    );
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label=(summary) {
                title { "Objects synced and duration per run: " (summary) }
                line x1=(PAD_LEFT) y1=(PAD_TOP + plot_h) x2=(WIDTH - PAD_RIGHT) y2=(PAD_TOP + plot_h) class="axis" {}
                @for (i, p) in points.iter().enumerate() {
                    @let h = plot_h * p.objects as f64 / max_objects;
                    rect class="bar" x=(format!("{:.1}", x_mid(i) - bar_w / 2.0)) y=(format!("{:.1}", PAD_TOP + plot_h - h))
                        width=(format!("{bar_w:.1}")) height=(format!("{h:.1}")) {
                        title { "run " (p.label) ": " (p.objects) " objects"
                            @if let Some(s) = p.seconds { ", " (format!("{s:.1}")) " s" } }
                    }
                    @if points.len() <= 24 {
                        text x=(format!("{:.1}", x_mid(i))) y=(HEIGHT - 6.0) text-anchor="middle" class="tick" { (p.label) }
                    }
                }
                @if line.len() > 1 {
                    polyline class="duration" fill="none" points=(line.join(" ")) {}
                }
                @for pt in &line {
                    @if let Some((x, y)) = pt.split_once(',') {
                        circle class="duration" cx=(x) cy=(y) r="3" {}
                    }
                }
            }
            figcaption {
                span.key-bar { "■" } " objects (max " (max_objects as u64) ")  "
                span.key-line { "●" } " duration (max " (format!("{max_seconds:.0}")) " s)"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_one_bar_per_run_and_a_duration_line() {
        let points = vec![
            Point {
                label: "1".into(),
                objects: 10,
                seconds: Some(2.0),
            },
            Point {
                label: "2".into(),
                objects: 40,
                seconds: Some(8.0),
            },
            Point {
                label: "3".into(),
                objects: 0,
                seconds: None,
            },
        ];
        let svg = history(&points).into_string();
        assert_eq!(svg.matches("<rect").count(), 3, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 2, "{svg}");
        assert!(svg.contains("<polyline"), "{svg}");
        // The tallest bar fills the plot height; the empty run has none.
        assert!(svg.contains("height=\"142.0\""), "{svg}");
        assert!(svg.contains("height=\"0.0\""), "{svg}");
        assert!(history(&[]).into_string().is_empty());
    }
}
