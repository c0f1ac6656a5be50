//! The HTML report: one self-contained file with a summary table and SVG charts drawn here
//! (throughput over time, latency percentiles over time, the latency distribution, broker CPU
//! and memory); no scripts, no external assets.

use std::fmt::Write as _;

use crate::result::{fmt_num, Phase, RunResult, MB};

const WIDTH: f64 = 580.0;
const HEIGHT: f64 = 320.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 44.0;

pub struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub points: Vec<(f64, f64)>,
}

#[derive(Clone, Copy, PartialEq)]
pub enum Scale {
    Linear,
    Log,
}

pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub y_scale: Scale,
    /// Fixed x ticks `(value, label)`; automatic when empty.
    pub x_ticks: Vec<(f64, String)>,
    /// x ranges drawn grey with a label (the warm-up, the backlog drain).
    pub shade: Vec<(f64, f64, &'a str)>,
    pub series: Vec<Series<'a>>,
}

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Smallest of 1, 2, 2.5, 5, 10 times a power of ten that is >= `v`.
pub fn nice_ceil(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if step * magnitude >= v * (1.0 - 1e-12) {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

/// Ticks from 0 in nice steps, at most 6 of them past 0, the last at or above `max`.
fn linear_ticks(max: f64) -> Vec<f64> {
    let step = nice_ceil(max / 5.0);
    let steps = (max / step).ceil().clamp(1.0, 6.0) as u32;
    (0..=steps).map(|i| step * f64::from(i)).collect()
}

/// `fmt_num` without trailing zeros: `1`, `2.5`, `0.001`.
fn trim(text: String) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

pub fn tick_label(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e6 {
        format!("{}M", trim(fmt_num(v / 1e6)))
    } else if v.abs() >= 1e4 {
        format!("{}k", trim(fmt_num(v / 1e3)))
    } else {
        trim(fmt_num(v))
    }
}

/// An SVG line chart; series with no points are left out of the plot but kept in the legend.
pub fn line_chart(chart: &Chart<'_>) -> String {
    let mut svg = String::new();
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let all: Vec<(f64, f64)> = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        svg,
        r##"<rect width="100%" height="100%" fill="#fff"/><text x="{}" y="18" font-size="14" font-weight="bold" text-anchor="middle">{}</text>"##,
        WIDTH / 2.0,
        escape(chart.title)
    );
    if all.is_empty() {
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#888">no data</text></svg>"##,
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
        return svg;
    }
    // x range.
    let (x_min, x_max, x_ticks) = if chart.x_ticks.is_empty() {
        let max = all.iter().map(|p| p.0).fold(0.0f64, f64::max);
        let ticks = linear_ticks(max);
        let top = *ticks.last().unwrap_or(&1.0);
        (
            0.0,
            top,
            ticks
                .into_iter()
                .map(|t| (t, tick_label(t)))
                .collect::<Vec<_>>(),
        )
    } else {
        let min = chart
            .x_ticks
            .iter()
            .map(|t| t.0)
            .fold(f64::INFINITY, f64::min);
        let max = chart
            .x_ticks
            .iter()
            .map(|t| t.0)
            .fold(f64::NEG_INFINITY, f64::max);
        (min, max, chart.x_ticks.clone())
    };
    // y range and transform.
    let y_max_raw = all.iter().map(|p| p.1).fold(0.0f64, f64::max);
    let (y_ticks, y_lo, y_hi): (Vec<(f64, String)>, f64, f64) = match chart.y_scale {
        Scale::Linear => {
            let ticks = linear_ticks(y_max_raw.max(1e-9));
            let hi = *ticks.last().unwrap_or(&1.0);
            (
                ticks.into_iter().map(|t| (t, tick_label(t))).collect(),
                0.0,
                hi,
            )
        }
        Scale::Log => {
            let positive_min = all
                .iter()
                .map(|p| p.1)
                .filter(|v| *v > 0.0)
                .fold(f64::INFINITY, f64::min);
            let lo = if positive_min.is_finite() {
                positive_min.log10().floor()
            } else {
                -3.0
            };
            let hi = (y_max_raw.max(10f64.powf(lo) * 10.0))
                .log10()
                .ceil()
                .max(lo + 1.0);
            let mut ticks = Vec::new();
            let mut e = lo;
            while e <= hi + 1e-9 {
                ticks.push((e, tick_label(10f64.powf(e))));
                e += 1.0;
            }
            (ticks, lo, hi)
        }
    };
    let y_of = |v: f64| -> f64 {
        let t = match chart.y_scale {
            Scale::Linear => v,
            Scale::Log => v.max(10f64.powf(y_lo)).log10(),
        };
        TOP + plot_h - (t - y_lo) / (y_hi - y_lo).max(1e-12) * plot_h
    };
    let y_of_tick = |t: f64| TOP + plot_h - (t - y_lo) / (y_hi - y_lo).max(1e-12) * plot_h;
    let x_of = |v: f64| LEFT + (v - x_min) / (x_max - x_min).max(1e-12) * plot_w;
    for &(a, b, label) in &chart.shade {
        let (xa, xb) = (x_of(a.max(x_min)), x_of(b.min(x_max)));
        if xb > xa {
            let _ = write!(
                svg,
                r##"<rect x="{xa:.1}" y="{TOP}" width="{:.1}" height="{plot_h}" fill="#eee"/><text x="{:.1}" y="{:.1}" fill="#999" text-anchor="middle">{}</text>"##,
                xb - xa,
                (xa + xb) / 2.0,
                TOP + plot_h - 6.0,
                escape(label)
            );
        }
    }
    // Grid and axes.
    for (t, label) in &y_ticks {
        let y = y_of_tick(*t);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            escape(label)
        );
    }
    for (t, label) in &x_ticks {
        let x = x_of(*t);
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 16.0,
            escape(label)
        );
    }
    let _ = write!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"##,
        LEFT + plot_w / 2.0,
        HEIGHT - 8.0,
        escape(chart.x_label),
        TOP + plot_h / 2.0,
        escape(chart.y_label)
    );
    // Lines, then the legend.
    for series in &chart.series {
        let points: Vec<String> = series
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", x_of(x), y_of(y)))
            .collect();
        if points.is_empty() {
            continue;
        }
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.8" points="{}"/>"#,
            series.color,
            points.join(" ")
        );
        if points.len() <= 40 {
            for p in &points {
                let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = write!(
                    svg,
                    r#"<circle cx="{x}" cy="{y}" r="2" fill="{}"/>"#,
                    series.color
                );
            }
        }
    }
    let mut legend_x = LEFT + 8.0;
    for series in &chart.series {
        let _ = write!(
            svg,
            r#"<rect x="{legend_x:.1}" y="{:.1}" width="12" height="3" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            TOP + 10.0,
            series.color,
            legend_x + 16.0,
            TOP + 14.0,
            escape(series.name)
        );
        legend_x += 22.0 + 6.5 * series.name.len() as f64;
    }
    svg.push_str("</svg>");
    svg
}

/// x position of a percentile on the distribution chart: log10(1 / (1 - p)), with "max" one
/// decade past 99.99.
pub fn percentile_x(p: f64) -> f64 {
    if p >= 100.0 {
        5.0
    } else {
        (1.0 / (1.0 - p / 100.0)).log10().min(4.5)
    }
}

const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// The whole report for one result.
pub fn html(result: &RunResult, commands: Option<&str>) -> String {
    let mut out = String::new();
    let title = format!("magnetar-perf: {}", result.workload.name);
    let _ = write!(
        out,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>\
         body{{font-family:sans-serif;margin:24px;color:#222;max-width:1220px}}\
         table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
         th{{background:#f4f4f4}}td:first-child,th:first-child{{text-align:left}}\
         .charts{{display:flex;flex-wrap:wrap;gap:12px}}.charts svg{{border:1px solid #ddd}}\
         .meta{{font-size:13px;color:#444}}pre{{background:#f7f7f7;padding:8px;font-size:12px;overflow-x:auto}}\
         </style></head><body><h1>{}</h1>",
        escape(&title),
        escape(&title)
    );
    let _ = write!(
        out,
        "<p class=\"meta\">started {} &middot; broker {} &middot; driver {} &middot; warm-up {} s, test {} s, interval {} s &middot; {} topic(s) &times; {} partition(s), {} B messages, {} producer(s), {} consumer(s), producer rate {}</p>",
        escape(&result.started_at),
        escape(&result.bootstrap_servers),
        escape(&result.driver.name),
        fmt_num(result.warmup_s),
        fmt_num(result.test_s),
        fmt_num(result.interval_s),
        result.workload.topics,
        result.workload.partitions_per_topic,
        result.workload.message_size,
        result.workload.producer_count(),
        result.workload.consumer_count(),
        if result.workload.producer_rate == 0.0 {
            "max".to_string()
        } else {
            format!("{} msg/s", result.workload.producer_rate)
        }
    );

    // Summary table.
    let s = &result.summary;
    out.push_str("<h2>Summary (measured phases)</h2><table><tr><th></th><th>msg/s</th><th>MB/s</th><th>messages</th><th>errors</th></tr>");
    for (name, t) in [("publish", &s.publish), ("consume", &s.consume)] {
        let _ = write!(
            out,
            "<tr><td>{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            fmt_num(t.msg_per_s),
            fmt_num(t.mb_per_s),
            t.messages,
            t.errors
        );
    }
    out.push_str("</table><p></p><table><tr><th>latency (ms)</th><th>count</th><th>mean</th><th>p50</th><th>p75</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th></tr>");
    for (name, p) in [
        ("publish (send to ack)", &s.publish_latency),
        ("end-to-end (send to receive)", &s.e2e_latency),
        ("end-to-end from intended send time", &s.e2e_from_intended),
        ("send delay (intended to actual send)", &s.send_delay),
    ] {
        if p.count == 0 {
            let _ = write!(
                out,
                "<tr><td>{name}</td><td>0</td><td colspan=\"7\">-</td></tr>"
            );
            continue;
        }
        let _ = write!(
            out,
            "<tr><td>{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            p.count,
            fmt_num(p.mean_ms),
            fmt_num(p.p50_ms),
            fmt_num(p.p75_ms),
            fmt_num(p.p95_ms),
            fmt_num(p.p99_ms),
            fmt_num(p.p99_9_ms),
            fmt_num(p.max_ms)
        );
    }
    out.push_str("</table>");
    if let Some(b) = &result.broker {
        let _ = write!(
            out,
            "<p>Broker (pid {}): {} CPU s in the measured phases ({}% of one core on average), {} CPU s in all; peak RSS sampled {} MB, kernel high-water mark {} MB.</p>",
            b.pid.map_or("-".to_string(), |p| p.to_string()),
            fmt_num(b.cpu_s),
            fmt_num(b.cpu_pct),
            fmt_num(b.cpu_s_total),
            fmt_num(b.peak_rss_bytes as f64 / MB),
            fmt_num(b.vm_hwm_bytes as f64 / MB)
        );
    }
    let t = &result.tool_process;
    let _ = write!(
        out,
        "<p>This tool: {} CPU s in the measured phases ({}% of one core), peak RSS {} MB.</p>",
        fmt_num(t.cpu_s),
        fmt_num(t.cpu_pct),
        fmt_num(t.peak_rss_bytes as f64 / MB)
    );
    if let Some(b) = &result.backlog {
        let _ = write!(
            out,
            "<h2>Backlog</h2><p>{} messages ({} MB) built in {} s; drained by fresh consumers in {} s ({}): {} msg/s, {} MB/s per subscription.</p>",
            b.messages,
            fmt_num(b.bytes as f64 / MB),
            fmt_num(b.build_s),
            fmt_num(b.drain_s),
            if b.drained { "complete" } else { "NOT complete within the time limit" },
            fmt_num(b.drain_msg_per_s),
            fmt_num(b.drain_mb_per_s)
        );
    }
    if !result.notes.is_empty() {
        out.push_str("<h2>Notes</h2><ul>");
        for note in &result.notes {
            let _ = write!(out, "<li>{}</li>", escape(note));
        }
        out.push_str("</ul>");
    }

    // Charts.
    let mut shade = Vec::new();
    for (phase, label) in [(Phase::Warmup, "warm-up"), (Phase::Drain, "drain")] {
        let of_phase = result.intervals.iter().filter(|i| i.phase == phase);
        let start = of_phase
            .clone()
            .map(|i| i.end_s - i.duration_s)
            .fold(f64::INFINITY, f64::min);
        let end = of_phase.map(|i| i.end_s).fold(0.0, f64::max);
        if end > start {
            shade.push((start, end, label));
        }
    }
    // Every time chart spans the whole run, so they line up.
    let run_end = result.intervals.iter().map(|i| i.end_s).fold(0.0, f64::max);
    let time_ticks: Vec<(f64, String)> = linear_ticks(run_end.max(1.0))
        .into_iter()
        .map(|t| (t, tick_label(t)))
        .collect();
    let series_of = |f: &dyn Fn(&crate::result::Interval) -> Option<f64>| -> Vec<(f64, f64)> {
        result
            .intervals
            .iter()
            .filter_map(|i| f(i).map(|v| (i.end_s, v)))
            .collect()
    };
    out.push_str("<h2>Charts</h2><div class=\"charts\">");
    out.push_str(&line_chart(&Chart {
        title: "Throughput",
        x_label: "time (s)",
        y_label: "messages per second",
        y_scale: Scale::Linear,
        x_ticks: time_ticks.clone(),
        shade: shade.clone(),
        series: vec![
            Series {
                name: "publish",
                color: COLORS[0],
                points: series_of(&|i| Some(i.publish.msg_per_s)),
            },
            Series {
                name: "consume",
                color: COLORS[1],
                points: series_of(&|i| Some(i.consume.msg_per_s)),
            },
        ],
    }));
    let lat_chart =
        |title: &'static str, pick: fn(&crate::result::Interval) -> &crate::stats::Percentiles| {
            let get = |f: fn(&crate::stats::Percentiles) -> f64| {
                series_of(&|i| {
                    let p = pick(i);
                    (p.count > 0).then(|| f(p))
                })
            };
            line_chart(&Chart {
                title,
                x_label: "time (s)",
                y_label: "latency (ms, log)",
                y_scale: Scale::Log,
                x_ticks: time_ticks.clone(),
                shade: shade.clone(),
                series: vec![
                    Series {
                        name: "p50",
                        color: COLORS[0],
                        points: get(|p| p.p50_ms),
                    },
                    Series {
                        name: "p99",
                        color: COLORS[1],
                        points: get(|p| p.p99_ms),
                    },
                    Series {
                        name: "p99.9",
                        color: COLORS[2],
                        points: get(|p| p.p99_9_ms),
                    },
                    Series {
                        name: "max",
                        color: COLORS[3],
                        points: get(|p| p.max_ms),
                    },
                ],
            })
        };
    out.push_str(&lat_chart("Publish latency per interval", |i| {
        &i.publish_latency
    }));
    out.push_str(&lat_chart("End-to-end latency per interval", |i| {
        &i.e2e_latency
    }));
    let x_ticks: Vec<(f64, String)> = [
        (0.0, "0%"),
        (1.0, "90%"),
        (2.0, "99%"),
        (3.0, "99.9%"),
        (4.0, "99.99%"),
        (5.0, "max"),
    ]
    .iter()
    .map(|(x, l)| (*x, l.to_string()))
    .collect();
    let dist = |points: &[(f64, f64)]| -> Vec<(f64, f64)> {
        points.iter().map(|&(p, v)| (percentile_x(p), v)).collect()
    };
    out.push_str(&line_chart(&Chart {
        title: "Latency distribution (whole run)",
        x_label: "percentile",
        y_label: "latency (ms, log)",
        y_scale: Scale::Log,
        x_ticks,
        shade: vec![],
        series: vec![
            Series {
                name: "publish",
                color: COLORS[0],
                points: dist(&s.distributions.publish_latency),
            },
            Series {
                name: "end-to-end",
                color: COLORS[1],
                points: dist(&s.distributions.e2e_latency),
            },
            Series {
                name: "e2e from intended",
                color: COLORS[3],
                points: dist(&s.distributions.e2e_from_intended),
            },
            Series {
                name: "send delay",
                color: COLORS[2],
                points: dist(&s.distributions.send_delay),
            },
        ],
    }));
    if result.broker.is_some() {
        out.push_str(&line_chart(&Chart {
            title: "Broker CPU",
            x_label: "time (s)",
            y_label: "% of one core",
            y_scale: Scale::Linear,
            x_ticks: time_ticks.clone(),
            shade: shade.clone(),
            series: vec![Series {
                name: "broker CPU %",
                color: COLORS[0],
                points: series_of(&|i| i.broker_cpu_pct),
            }],
        }));
        out.push_str(&line_chart(&Chart {
            title: "Broker resident memory",
            x_label: "time (s)",
            y_label: "MB",
            y_scale: Scale::Linear,
            x_ticks: time_ticks.clone(),
            shade: shade.clone(),
            series: vec![Series {
                name: "broker RSS MB",
                color: COLORS[1],
                points: series_of(&|i| i.broker_rss_bytes.map(|b| b as f64 / MB)),
            }],
        }));
    }
    out.push_str("</div>");

    // Settings.
    let _ = write!(
        out,
        "<h2>Workload</h2><pre>{}</pre><h2>Driver</h2><pre>{}</pre>",
        escape(&serde_norway::to_string(&result.workload).unwrap_or_default()),
        escape(&serde_norway::to_string(&result.driver).unwrap_or_default())
    );
    if let Some(commands) = commands {
        let _ = write!(out, "<h2>Command</h2><pre>{}</pre>", escape(commands));
    }
    let _ = writeln!(
        out,
        "<p class=\"meta\">{} {} &middot; topics {} &middot; MB = 2<sup>20</sup> bytes</p></body></html>",
        escape(&result.tool),
        escape(&result.version),
        escape(&result.topics.join(", "))
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_numbers() {
        assert_eq!(nice_ceil(0.0), 1.0);
        assert_eq!(nice_ceil(7.0), 10.0);
        assert_eq!(nice_ceil(42_000.0), 50_000.0);
        assert_eq!(nice_ceil(2.2), 2.5);
        assert_eq!(nice_ceil(100.0), 100.0);
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick_label(1.0), "1");
        assert_eq!(tick_label(2.5), "2.5");
        assert_eq!(tick_label(800.0), "800");
        assert_eq!(tick_label(0.001), "0.001");
        assert_eq!(tick_label(50_000.0), "50k");
        assert_eq!(tick_label(2_000_000.0), "2M");
    }

    #[test]
    fn linear_ticks_end_close_to_the_maximum() {
        assert_eq!(linear_ticks(35.0), vec![0.0, 10.0, 20.0, 30.0, 40.0]);
        assert_eq!(*linear_ticks(212_000.0).last().unwrap(), 250_000.0);
        assert_eq!(linear_ticks(1.0).len(), 6);
    }

    #[test]
    fn percentile_axis() {
        assert_eq!(percentile_x(0.0), 0.0);
        assert!((percentile_x(99.0) - 2.0).abs() < 1e-9);
        assert!((percentile_x(99.9) - 3.0).abs() < 1e-6);
        assert_eq!(percentile_x(100.0), 5.0);
    }

    #[test]
    fn chart_is_valid_svg_and_escapes() {
        let svg = line_chart(&Chart {
            title: "a < b",
            x_label: "x",
            y_label: "y",
            y_scale: Scale::Log,
            x_ticks: vec![],
            shade: vec![(0.0, 1.0, "warm-up")],
            series: vec![Series {
                name: "s",
                color: "#000",
                points: vec![(0.5, 0.01), (2.0, 30.0)],
            }],
        });
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("a &lt; b") && svg.contains("<polyline"));
        let empty = line_chart(&Chart {
            title: "t",
            x_label: "x",
            y_label: "y",
            y_scale: Scale::Linear,
            x_ticks: vec![],
            shade: vec![],
            series: vec![],
        });
        assert!(empty.contains("no data"));
    }

    #[test]
    fn report_renders_a_result() {
        let r = crate::result::tests::sample_result(1000.0, 4.0);
        let page = html(&r, Some("magnetar-perf run ..."));
        assert!(page.contains("<h1>magnetar-perf: t</h1>"));
        assert!(page.contains("Latency distribution"));
        assert!(page.contains("Broker CPU"));
        assert!(page.trim_end().ends_with("</html>"));
    }
}
