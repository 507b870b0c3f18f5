//! What a run reports: a summary table on stdout, a JSON file, and SVG
//! plots of the latency distribution and of convergence over time.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::Serialize;

use crate::stats::{Summary, summarize};

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub run: String,
    pub recorded_at: String,
    pub machine: Machine,
    pub params: serde_json::Value,
    /// (label, value) rows of the summary table.
    pub summary: Vec<(String, String)>,
    /// Everything measured, for tools.
    pub data: serde_json::Value,
    pub latency: Summary,
    #[serde(skip)]
    pub latencies: Vec<f64>,
    /// (seconds, replicas converged), sampled.
    pub convergence: Vec<(f64, usize)>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub hostname: String,
    pub cpus: usize,
    pub memory_gib: f64,
}

impl Machine {
    pub fn here() -> Self {
        let memory_kib: f64 = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))?
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0);
        Self {
            hostname: std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default(),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        }
    }
}

impl Report {
    pub fn new(scenario: &str, run: &str, params: serde_json::Value) -> Self {
        Self {
            scenario: scenario.into(),
            run: run.into(),
            recorded_at: k8s_openapi::jiff::Timestamp::now().to_string(),
            machine: Machine::here(),
            params,
            summary: Vec::new(),
            data: serde_json::json!({}),
            latency: Summary::default(),
            latencies: Vec::new(),
            convergence: Vec::new(),
        }
    }

    pub fn row(&mut self, label: &str, value: impl std::fmt::Display) {
        self.summary.push((label.to_string(), value.to_string()));
    }

    pub fn set(&mut self, key: &str, value: impl Serialize) {
        self.data[key] = serde_json::to_value(value).expect("serializable");
    }

    pub fn set_latencies(&mut self, latencies: Vec<f64>) {
        self.latency = summarize(&latencies);
        self.latencies = latencies;
    }

    /// The row for the latencies set with `set_latencies`.
    pub fn latency_row(&mut self) {
        let text = percentiles(&self.latency);
        self.row("latency p50 / p95 / p99 / max", text);
    }

    /// A row "<label> p50 / p95 / p99 / max" for `values` (with their count
    /// and what they are), and their summary in the data under `key`.
    pub fn summary_row(&mut self, label: &str, key: &str, values: &[f64], of: &str) {
        let s = summarize(values);
        let of = if of.is_empty() {
            String::new()
        } else {
            format!(" {of}")
        };
        self.row(
            &format!("{label} p50 / p95 / p99 / max"),
            format!("{} ({}{of})", percentiles(&s), s.count),
        );
        self.set(key, s);
    }

    /// Keeps at most ~500 points of the convergence curve.
    pub fn set_convergence(&mut self, points: Vec<(f64, usize)>) {
        let step = points.len().div_ceil(500).max(1);
        let last = points.last().copied();
        self.convergence = points.into_iter().step_by(step).collect();
        if let Some(last) = last
            && self.convergence.last() != Some(&last)
        {
            self.convergence.push(last);
        }
    }

    pub fn print(&self) {
        println!(
            "\n{} (run {}, {} CPUs)",
            self.scenario, self.run, self.machine.cpus
        );
        let width = self.summary.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        for (label, value) in &self.summary {
            println!("  {label:<width$}  {value}");
        }
    }

    /// Writes the JSON and the plots; returns their paths.
    pub fn write(&self, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let stem = format!("{}-{}", self.scenario, self.run);
        let json = dir.join(format!("{stem}.json"));
        std::fs::write(&json, serde_json::to_string_pretty(self)?)?;
        let mut written = vec![json];
        if !self.latencies.is_empty() {
            let path = dir.join(format!("{stem}-latency.svg"));
            latency_plot(
                &self.latencies,
                &path,
                &format!("{}: replication latency", self.scenario),
            )?;
            written.push(path);
        }
        if self.convergence.len() > 1 {
            let path = dir.join(format!("{stem}-convergence.svg"));
            convergence_plot(
                &self.convergence,
                &path,
                &format!("{}: replicas converged over time", self.scenario),
            )?;
            written.push(path);
        }
        Ok(written)
    }
}

fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plotting: {e:?}")
}

/// A histogram of latencies in 40 buckets.
fn latency_plot(latencies: &[f64], path: &Path, title: &str) -> anyhow::Result<()> {
    let max = latencies.iter().copied().fold(0.0, f64::max).max(1e-3);
    let buckets = 40usize;
    let width = max / buckets as f64;
    let mut counts = vec![0u32; buckets];
    for l in latencies {
        counts[((l / width) as usize).min(buckets - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1);
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max * 1.02, 0u32..top + top / 10 + 1)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("seconds from the source write to the replica observed")
        .y_desc("replicas")
        .draw()
        .map_err(plot_error)?;
    chart
        .draw_series(counts.iter().enumerate().map(|(i, c)| {
            let x0 = i as f64 * width;
            Rectangle::new([(x0, 0), (x0 + width * 0.95, *c)], BLUE.mix(0.6).filled())
        }))
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

fn convergence_plot(points: &[(f64, usize)], path: &Path, title: &str) -> anyhow::Result<()> {
    let max_t = points.last().map(|p| p.0).unwrap_or(1.0).max(1e-3);
    let max_n = points.iter().map(|p| p.1).max().unwrap_or(1);
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_t * 1.02, 0usize..max_n + max_n / 20 + 1)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("replicas holding the source's content")
        .draw()
        .map_err(plot_error)?;
    let mut line = vec![(0.0, 0usize)];
    line.extend_from_slice(points);
    chart
        .draw_series(LineSeries::new(line, RED.stroke_width(2)))
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

fn percentiles(s: &Summary) -> String {
    format!(
        "{:.3} / {:.3} / {:.3} / {:.3} s",
        s.p50, s.p95, s.p99, s.max
    )
}
