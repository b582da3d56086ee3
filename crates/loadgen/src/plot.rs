//! The report's two figures, drawn with plotters' SVG backend: throughput
//! (ops/s) and latency (p50 dashed, p99 solid) against the number of
//! clients on a log axis, one panel per workload, one colour per system.

use crate::report::thousands;
use crate::report::Results;
use anyhow::{anyhow, Result};
use plotters::coord::combinators::BindKeyPoints;
use plotters::prelude::*;

const PANEL_W: u32 = 560;
const H: u32 = 440;

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// Every label across workloads, so a system keeps its colour in every panel.
fn all_labels(res: &Results) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in res.workloads() {
        for l in res.labels(&w) {
            if !out.contains(&l) {
                out.push(l);
            }
        }
    }
    out
}

fn color_of(labels: &[String], label: &str) -> RGBColor {
    let i = labels.iter().position(|l| l == label).unwrap_or(0);
    COLORS[i % COLORS.len()]
}

/// The x range (padded) and the measured client counts as its ticks.
fn x_axis(res: &Results, w: &str) -> (f64, f64, Vec<f64>) {
    let c: Vec<f64> = res.clients(w).into_iter().map(|c| c as f64).collect();
    let lo = c.first().copied().unwrap_or(1.0);
    let hi = c.last().copied().unwrap_or(1.0);
    (lo / 1.5, hi * 1.5, c)
}

/// A latency in ms for an axis label: no trailing zeros.
fn ms_label(v: f64) -> String {
    let s = if v >= 10.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing the plot: {e}")
}

fn panels(res: &Results) -> Vec<String> {
    let w = res.workloads();
    if w.is_empty() {
        vec!["set".to_string()]
    } else {
        w
    }
}

/// ops/s against clients.
pub fn throughput_svg(res: &Results) -> Result<String> {
    let workloads = panels(res);
    let labels = all_labels(res);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (PANEL_W * workloads.len() as u32, H))
            .into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let areas = root.split_evenly((1, workloads.len()));
        for (area, w) in areas.iter().zip(&workloads) {
            let (x0, x1, ticks) = x_axis(res, w);
            let ymax = res
                .runs()
                .iter()
                .filter(|r| &r.workload == w)
                .map(|r| r.ops_per_sec)
                .fold(1.0f64, f64::max)
                * 1.1;
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{w}: throughput"), ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d((x0..x1).log_scale().with_key_points(ticks), 0f64..ymax)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc("clients (log scale)")
                .y_desc("ops/s")
                .light_line_style(WHITE)
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_label_formatter(&|y| thousands(*y))
                .draw()
                .map_err(err)?;
            for label in res.labels(w) {
                let c = color_of(&labels, &label);
                let pts: Vec<(f64, f64)> = res
                    .series(&label, w)
                    .iter()
                    .map(|r| (r.clients as f64, r.ops_per_sec))
                    .collect();
                chart
                    .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                    .map_err(err)?
                    .label(label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                    });
                chart
                    .draw_series(pts.iter().map(|p| Circle::new(*p, 3, c.filled())))
                    .map_err(err)?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// p50 (dashed) and p99 (solid) in ms against clients, log-log.
pub fn latency_svg(res: &Results) -> Result<String> {
    let workloads = panels(res);
    let labels = all_labels(res);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (PANEL_W * workloads.len() as u32, H))
            .into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let areas = root.split_evenly((1, workloads.len()));
        for (area, w) in areas.iter().zip(&workloads) {
            let (x0, x1, ticks) = x_axis(res, w);
            let vals: Vec<f64> = res
                .runs()
                .iter()
                .filter(|r| &r.workload == w)
                .flat_map(|r| [r.p50_us, r.p99_us])
                .filter(|v| *v > 0)
                .map(|v| v as f64 / 1000.0)
                .collect();
            let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = vals.iter().copied().fold(0.0f64, f64::max);
            let (y0, y1) = if vals.is_empty() {
                (0.01, 10.0)
            } else {
                (lo / 1.5, hi * 1.5)
            };
            let mut chart = ChartBuilder::on(area)
                .caption(
                    format!("{w}: latency (p50 dashed, p99 solid)"),
                    ("sans-serif", 20),
                )
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d(
                    (x0..x1).log_scale().with_key_points(ticks),
                    (y0..y1).log_scale(),
                )
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc("clients (log scale)")
                .y_desc("ms (log scale)")
                .light_line_style(WHITE)
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_label_formatter(&|y| ms_label(*y))
                .draw()
                .map_err(err)?;
            for label in res.labels(w) {
                let c = color_of(&labels, &label);
                let series = res.series(&label, w);
                let p50: Vec<(f64, f64)> = series
                    .iter()
                    .filter(|r| r.p50_us > 0)
                    .map(|r| (r.clients as f64, r.p50_us as f64 / 1000.0))
                    .collect();
                let p99: Vec<(f64, f64)> = series
                    .iter()
                    .filter(|r| r.p99_us > 0)
                    .map(|r| (r.clients as f64, r.p99_us as f64 / 1000.0))
                    .collect();
                chart
                    .draw_series(LineSeries::new(p99.clone(), c.stroke_width(2)))
                    .map_err(err)?
                    .label(label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                    });
                chart
                    .draw_series(DashedLineSeries::new(p50.clone(), 6, 4, c.stroke_width(2)))
                    .map_err(err)?;
                chart
                    .draw_series(
                        p99.iter()
                            .chain(&p50)
                            .map(|p| Circle::new(*p, 3, c.filled())),
                    )
                    .map_err(err)?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{parse_jsonl, tests::sample};

    #[test]
    fn throughput_plot_has_a_panel_per_workload_and_a_line_per_system() {
        let res = Results::new(parse_jsonl(&sample()).unwrap());
        let svg = throughput_svg(&res).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100]);
        assert!(svg.contains("set: throughput"));
        assert!(svg.contains("get: throughput"));
        for l in ["synod-local3", "etcd", "redis", "synod-split"] {
            assert!(svg.contains(l), "legend lacks {l}");
        }
        // 4 systems write, 2 read: one polyline each, plus 6 legend samples.
        assert_eq!(
            svg.matches("stroke-width=\"2\" points").count(),
            6 + 6,
            "{svg}"
        );
        // The x axis is labelled at the measured client counts.
        assert!(svg.contains("\n64\n</text>"), "{svg}");
    }

    #[test]
    fn latency_plot_draws_p50_and_p99() {
        let res = Results::new(parse_jsonl(&sample()).unwrap());
        let svg = latency_svg(&res).unwrap();
        assert!(svg.contains("set: latency"));
        assert!(svg.contains("get: latency"));
        // p99: one polyline per system plus its legend sample; p50 dashes
        // are many short segments of the same width.
        let wide = svg.matches("stroke-width=\"2\" points").count();
        assert!(wide > 6 + 6, "{wide}");
    }
}

#[cfg(test)]
mod label_tests {
    #[test]
    fn ms_labels_are_short() {
        assert_eq!(super::ms_label(20.0), "20");
        assert_eq!(super::ms_label(2.5), "2.5");
        assert_eq!(super::ms_label(3.0), "3");
        assert_eq!(super::ms_label(0.05), "0.05");
    }
}
