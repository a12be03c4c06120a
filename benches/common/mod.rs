//! What the benchmark harnesses share: one run's figures (rate, p50, p99) and their
//! medians over runs, and how figures and the machine are written in docs/performance.md.
#![allow(dead_code)] // each bench uses its own subset

use std::process::Command;
use std::time::Duration;

/// One run's result.
#[derive(Clone, Copy, Default)]
pub struct Run {
    pub rate: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub errors: usize,
    pub count: usize,
}

pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

pub fn summarize(mut lat: Vec<Duration>, errors: usize, elapsed: Duration) -> Run {
    lat.sort_unstable();
    Run {
        rate: lat.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(&lat, 0.50),
        p99: pct(&lat, 0.99),
        errors,
        count: lat.len(),
    }
}

/// Median of each column over the runs.
pub fn median(runs: &[Run]) -> Run {
    fn med<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    }
    Run {
        rate: med(runs.iter().map(|r| r.rate).collect()),
        p50: med(runs.iter().map(|r| r.p50).collect()),
        p99: med(runs.iter().map(|r| r.p99).collect()),
        errors: runs.iter().map(|r| r.errors).sum(),
        count: runs.iter().map(|r| r.count).sum(),
    }
}

pub fn ms(d: Duration) -> String {
    let m = d.as_secs_f64() * 1000.0;
    if m < 10.0 {
        format!("{m:.2} ms")
    } else {
        format!("{m:.1} ms")
    }
}

pub fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{} cores (nproc), {cpu}", sh("nproc", &[]))
}
