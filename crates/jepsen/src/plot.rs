//! The run's timeline as an SVG, Jepsen style: successful operations per
//! 100 ms as bars, fault windows shaded and labelled. Written by hand (it
//! is a few rectangles) rather than pulling in a plotting stack.

use crate::history::{Op, Type};
use std::fmt::Write as _;

const BUCKET_NS: u64 = 100_000_000;
const W: f64 = 1000.0;
const H: f64 = 260.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 30.0;
const LEFT: f64 = 50.0;

/// `windows`: (fault name, start ns, end ns); `end_ns`: length of the run.
pub fn timeline_svg(ops: &[Op], windows: &[(&str, u64, u64)], end_ns: u64) -> String {
    let buckets = (end_ns / BUCKET_NS + 1) as usize;
    let mut ok = vec![0u32; buckets];
    for op in ops {
        if let Some((Type::Ok, done, _)) = &op.end {
            if let Some(b) = ok.get_mut((*done / BUCKET_NS) as usize) {
                *b += 1;
            }
        }
    }
    let max = ok.iter().copied().max().unwrap_or(0).max(1) as f64;
    let plot_w = W - LEFT - 10.0;
    let plot_h = H - TOP - BOTTOM;
    let x = |ns: u64| LEFT + plot_w * ns as f64 / end_ns.max(1) as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    for (name, start, end) in windows {
        let (x0, x1) = (x(*start), x(*end));
        let _ = writeln!(
            s,
            r##"<rect x="{x0:.1}" y="{TOP}" width="{:.1}" height="{plot_h}" fill="#f4a6a6" opacity="0.5"/><text x="{x0:.1}" y="{:.1}">{name}</text>"##,
            (x1 - x0).max(1.0),
            TOP - 6.0
        );
    }
    let bw = plot_w / buckets as f64;
    for (i, n) in ok.iter().enumerate() {
        let h = plot_h * *n as f64 / max;
        let _ = writeln!(
            s,
            r##"<rect x="{:.2}" y="{:.2}" width="{:.2}" height="{h:.2}" fill="#3a6ea5"/>"##,
            LEFT + bw * i as f64,
            TOP + plot_h - h,
            bw.max(0.5)
        );
    }
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" y1="{0}" x2="{1}" y2="{0}" stroke="black"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{0}" stroke="black"/>"#,
        TOP + plot_h,
        W - 10.0
    );
    let _ = writeln!(
        s,
        r#"<text x="4" y="{:.1}">{max}</text><text x="4" y="{:.1}">0</text><text x="{LEFT}" y="{:.1}">successful ops per 100 ms; shaded: faults; run length {:.1} s</text>"#,
        TOP + 10.0,
        TOP + plot_h,
        H - 8.0,
        end_ns as f64 / 1e9
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::F;

    fn op(done_ns: u64, ty: Type) -> Op {
        Op {
            f: F::Write,
            key: "k".into(),
            value: None,
            invoke_ns: done_ns.saturating_sub(1),
            end: Some((ty, done_ns, None)),
        }
    }

    #[test]
    fn bars_count_successes_per_bucket_and_faults_are_shaded() {
        let ops = vec![
            op(50_000_000, Type::Ok),
            op(60_000_000, Type::Ok),
            op(150_000_000, Type::Info),
        ];
        let svg = timeline_svg(&ops, &[("kill", 100_000_000, 200_000_000)], 300_000_000);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains(">kill</text>"));
        // Bucket 0 holds both successes and is the tallest bar (full height).
        assert!(svg.contains(r##"height="200.00" fill="#3a6ea5""##), "{svg}");
        assert!(svg.contains(">2</text>"), "max label");
    }
}
