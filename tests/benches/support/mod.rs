//! Shared by the bench binaries: summary statistics, number formatting, markdown tables, a
//! description of the machine, and horizontal bar charts drawn with plotters.

#![allow(
    dead_code,
    reason = "each bench binary compiles this module and uses a different part of it"
)]

use std::path::PathBuf;
use std::process::Command;

use plotters::prelude::*;

/// Where both benches write their reports: `tests/benches/results/`.
pub(crate) fn results_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/results");
    std::fs::create_dir_all(&dir).expect("cannot create tests/benches/results");
    dir
}

/// Median, minimum and maximum of a few rounds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Spread {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Spread {
    pub(crate) fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = values.into_iter().collect();
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Self {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }

    /// `median (min–max)` with `fmt` applied to each.
    pub(crate) fn show(&self, fmt: fn(f64) -> String) -> String {
        format!("{} ({}–{})", fmt(self.median), fmt(self.min), fmt(self.max))
    }
}

/// The `p`-th percentile (0–100) of sorted values.
pub(crate) fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `12.3k`, `1.25M`: operations or requests per second.
pub(crate) fn rate(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{:.2}M", v / 1e6),
        v if v >= 1e4 => format!("{:.1}k", v / 1e3),
        v if v >= 1e3 => format!("{:.2}k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

/// A duration given in nanoseconds: `85 ns`, `71.2 µs`, `3.40 ms`.
pub(crate) fn nanos(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{:.2} ms", v / 1e6),
        v if v >= 1e4 => format!("{:.1} µs", v / 1e3),
        v if v >= 1e3 => format!("{:.2} µs", v / 1e3),
        v => format!("{v:.0} ns"),
    }
}

/// `0.97x`.
pub(crate) fn ratio(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.1}x")
    } else {
        format!("{v:.2}x")
    }
}

/// A markdown table.
#[derive(Debug)]
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn render(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut out = line(&self.header);
        out.push_str(&line(&vec!["---".to_owned(); self.header.len()]));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// One line about the machine, for the reports: CPU, cores, memory, kernel, Redis version.
pub(crate) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches(" kB").parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let output = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let redis = output("redis-server", &["--version"]);
    let redis = redis
        .split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .unwrap_or("?");
    format!(
        "{cpu}, {cores} cores, {mem_gib:.0} GiB, Linux {}, Redis {redis}, {}",
        output("uname", &["-r"]),
        output("rustc", &["--version"]),
    )
}

/// CPU time in clock ticks (1/100 s on Linux) from a `/proc/<pid>/stat` line: utime + stime.
pub(crate) fn ticks(stat: &str) -> u64 {
    stat_fields(stat, [11, 12])
}

/// Fields of a `/proc/<pid>/stat` line, counted from the state (field 3) as 0.
fn stat_fields(stat: &str, which: [usize; 2]) -> u64 {
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    which
        .iter()
        .filter_map(|&i| f.get(i)?.parse::<u64>().ok())
        .sum()
}

/// CPU ticks of a process.
pub(crate) fn proc_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(0, |s| ticks(&s))
}

/// CPU ticks of this process's reaped children (cutime + cstime).
pub(crate) fn children_ticks() -> u64 {
    std::fs::read_to_string("/proc/self/stat").map_or(0, |s| stat_fields(&s, [13, 14]))
}

/// Ticks of the whole machine from `/proc/stat`: (busy, stolen). Busy is user, nice, system,
/// irq and softirq; stolen is time the hypervisor gave to other guests while we wanted it.
pub(crate) fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let field = |i: usize| f.get(i).copied().unwrap_or(0);
    ([0, 1, 2, 5, 6].into_iter().map(field).sum(), field(7))
}

/// One bar of a [`Panel`]: a value relative to the panel's reference, with its spread.
#[derive(Debug, Clone)]
pub(crate) struct Bar {
    /// Which series (color) it belongs to, an index into [`Chart::series`].
    pub(crate) series: usize,
    pub(crate) value: Spread,
    /// Printed after the bar, e.g. `0.97x · 248k ops/s`.
    pub(crate) label: String,
}

/// A group of bars sharing a row label.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) label: String,
    pub(crate) bars: Vec<Bar>,
}

/// One chart section: a title, an x-axis caption and rows.
#[derive(Debug, Clone)]
pub(crate) struct Panel {
    pub(crate) title: String,
    pub(crate) axis: String,
    pub(crate) rows: Vec<Row>,
    /// Draws a dashed line at this value (e.g. 1.0 for "the limit").
    pub(crate) reference: Option<f64>,
}

/// A horizontal bar chart of one or more panels, written as SVG.
#[derive(Debug, Clone)]
pub(crate) struct Chart {
    pub(crate) title: String,
    pub(crate) series: Vec<String>,
    pub(crate) panels: Vec<Panel>,
}

const COLORS: [RGBColor; 4] = [
    RGBColor(0x9e, 0xc5, 0xe8),
    RGBColor(0x1f, 0x5f, 0xa8),
    RGBColor(0xf2, 0xa1, 0x5a),
    RGBColor(0x4c, 0xa0, 0x6a),
];

impl Chart {
    /// Draws the chart into `path`. Bars are scaled per panel; each shows its median, with a
    /// whisker from the minimum to the maximum round.
    pub(crate) fn write_svg(&self, path: &std::path::Path) {
        const WIDTH: i32 = 1000;
        const LEFT: i32 = 250;
        const RIGHT: i32 = 230;
        const BAR: i32 = 16;
        const GAP: i32 = 10;
        const PANEL_HEAD: i32 = 40;
        const PANEL_FOOT: i32 = 40;
        let row_height = |r: &Row| r.bars.len() as i32 * BAR + GAP;
        let height = 70
            + self
                .panels
                .iter()
                .map(|p| PANEL_HEAD + PANEL_FOOT + p.rows.iter().map(row_height).sum::<i32>())
                .sum::<i32>();
        let root = SVGBackend::new(path, (WIDTH as u32, height as u32)).into_drawing_area();
        root.fill(&WHITE).expect("svg");
        let font = |size: i32| ("sans-serif", size).into_font();
        let text = |s: &str, pos: (i32, i32), size: i32| {
            root.draw(&Text::new(s.to_owned(), pos, font(size)))
                .expect("svg");
        };
        text(&self.title, (LEFT.min(20), 12), 20);
        // Legend.
        let mut x = LEFT.min(20);
        for (i, name) in self.series.iter().enumerate() {
            root.draw(&Rectangle::new(
                [(x, 44), (x + 14, 56)],
                COLORS[i % COLORS.len()].filled(),
            ))
            .expect("svg");
            text(name, (x + 20, 43), 14);
            x += 30 + 8 * name.chars().count() as i32;
        }
        let mut y = 70;
        let plot_width = WIDTH - LEFT - RIGHT;
        for panel in &self.panels {
            text(&panel.title, (LEFT.min(20), y + 10), 16);
            y += PANEL_HEAD;
            let top = y;
            // Scaled to the medians, so that one wild round does not squash the chart; a
            // whisker that runs off the scale ends without a cap.
            let max = 1.25
                * panel
                    .rows
                    .iter()
                    .flat_map(|r| r.bars.iter().map(|b| b.value.median))
                    .chain(panel.reference)
                    .fold(f64::MIN_POSITIVE, f64::max);
            let scale = |v: f64| LEFT + (v.min(max) / max * f64::from(plot_width)).round() as i32;
            for row in &panel.rows {
                let h = row_height(row) - GAP;
                text(&row.label, (10, y + h / 2 - 7), 13);
                for bar in &row.bars {
                    let color = COLORS[bar.series % COLORS.len()];
                    root.draw(&Rectangle::new(
                        [(LEFT, y + 1), (scale(bar.value.median), y + BAR - 1)],
                        color.filled(),
                    ))
                    .expect("svg");
                    let mid = y + BAR / 2;
                    let whisker = BLACK.mix(0.6).stroke_width(1);
                    root.draw(&PathElement::new(
                        vec![(scale(bar.value.min), mid), (scale(bar.value.max), mid)],
                        whisker,
                    ))
                    .expect("svg");
                    for end in [bar.value.min, bar.value.max]
                        .into_iter()
                        .filter(|&e| e <= max)
                    {
                        root.draw(&PathElement::new(
                            vec![(scale(end), mid - 4), (scale(end), mid + 4)],
                            whisker,
                        ))
                        .expect("svg");
                    }
                    let after = scale(bar.value.median.max(bar.value.max)) + 6;
                    text(&bar.label, (after, y + 1), 12);
                    y += BAR;
                }
                y += GAP;
            }
            // Axis with a few ticks.
            let axis = BLACK.stroke_width(1);
            root.draw(&PathElement::new(vec![(LEFT, top), (LEFT, y)], axis))
                .expect("svg");
            root.draw(&PathElement::new(
                vec![(LEFT, y), (LEFT + plot_width, y)],
                axis,
            ))
            .expect("svg");
            for i in 0..=4 {
                let v = max * f64::from(i) / 4.0;
                let x = scale(v);
                root.draw(&PathElement::new(vec![(x, y), (x, y + 4)], axis))
                    .expect("svg");
                let tick = if max <= 20.0 {
                    format!("{v:.2}")
                } else {
                    rate(v)
                };
                text(&tick, (x - 12, y + 6), 11);
            }
            if let Some(r) = panel.reference {
                let x = scale(r);
                root.draw(&PathElement::new(
                    vec![(x, top - 4), (x, y)],
                    RED.mix(0.7).stroke_width(1),
                ))
                .expect("svg");
            }
            text(&panel.axis, (LEFT, y + 20), 12);
            y += PANEL_FOOT;
        }
        root.present().expect("cannot write the svg chart");
    }
}
