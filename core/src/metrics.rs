//! Lock-free counters and a fixed-bucket histogram, rendered in the Prometheus text format.
//!
//! Every process keeps its own registry struct of these, built once and shared by `Arc`; a
//! scrape renders them. Fixed buckets keep recording to two atomic adds on the hot path.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Relaxed);
    }
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Relaxed);
    }
    pub fn set(&self, v: i64) {
        self.0.store(v, Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

/// A histogram over fixed upper bounds (`le`), in the unit the bounds are given in.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in thousandths of the unit, so it stays an integer atomic.
    sum_milli: AtomicU64,
}

/// Seconds, from 1 ms to 10 s: publish→push latency and the like.
pub const LATENCY_SECONDS: &[f64] = &[0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0];
/// Counts, from 1 to 10,000: replay sizes, batch sizes.
pub const SIZES: &[f64] = &[1.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0];

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_milli: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_milli.fetch_add((v.max(0.0) * 1000.0) as u64, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }
}

/// Writes metrics in the Prometheus text exposition format.
#[derive(Debug, Default)]
pub struct Render(String);

impl Render {
    pub fn counter(&mut self, name: &str, help: &str, labels: &str, v: u64) -> &mut Self {
        self.head(name, help, "counter");
        let _ = writeln!(self.0, "{name}{} {v}", braces(labels));
        self
    }

    /// Several series of one counter, each with its labels (`reason="expired"`).
    pub fn counters<'a>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> &mut Self {
        self.head(name, help, "counter");
        for (labels, v) in series {
            let _ = writeln!(self.0, "{name}{} {v}", braces(labels));
        }
        self
    }

    pub fn gauge(&mut self, name: &str, help: &str, v: i64) -> &mut Self {
        self.head(name, help, "gauge");
        let _ = writeln!(self.0, "{name} {v}");
        self
    }

    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) -> &mut Self {
        self.head(name, help, "histogram");
        let mut cumulative = 0;
        for (bound, bucket) in h.bounds.iter().zip(&h.buckets) {
            cumulative += bucket.load(Relaxed);
            let _ = writeln!(self.0, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = h.count();
        let _ = writeln!(self.0, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(self.0, "{name}_sum {}", h.sum_milli.load(Relaxed) as f64 / 1000.0);
        let _ = writeln!(self.0, "{name}_count {count}");
        self
    }

    /// Several series of one histogram, each with its labels (`stage="stored"`).
    pub fn histograms<'a>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (&'a str, &'a Histogram)>,
    ) -> &mut Self {
        self.head(name, help, "histogram");
        for (labels, h) in series {
            let sep = if labels.is_empty() { "" } else { "," };
            let mut cumulative = 0;
            for (bound, bucket) in h.bounds.iter().zip(&h.buckets) {
                cumulative += bucket.load(Relaxed);
                let _ = writeln!(self.0, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
            }
            let count = h.count();
            let _ = writeln!(self.0, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
            let _ = writeln!(self.0, "{name}_sum{} {}", braces(labels), h.sum_milli.load(Relaxed) as f64 / 1000.0);
            let _ = writeln!(self.0, "{name}_count{} {count}", braces(labels));
        }
        self
    }

    pub fn finish(self) -> String {
        self.0
    }

    fn head(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
}

fn braces(labels: &str) -> String {
    if labels.is_empty() { String::new() } else { format!("{{{labels}}}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_renders_cumulative_buckets() {
        let h = Histogram::new(&[1.0, 2.0]);
        h.observe(0.5);
        h.observe(1.5);
        h.observe(9.0);
        let mut r = Render::default();
        r.histogram("x", "help", &h);
        let text = r.finish();
        assert!(text.contains("x_bucket{le=\"1\"} 1\n"), "{text}");
        assert!(text.contains("x_bucket{le=\"2\"} 2\n"), "{text}");
        assert!(text.contains("x_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("x_sum 11\n"), "{text}");
    }

    #[test]
    fn labelled_histograms_carry_their_labels_on_every_line() {
        let h = Histogram::new(&[1.0]);
        h.observe(0.5);
        let mut r = Render::default();
        r.histograms("y", "help", [("stage=\"a\"", &h)]);
        let text = r.finish();
        assert!(text.contains("y_bucket{stage=\"a\",le=\"1\"} 1\n"), "{text}");
        assert!(text.contains("y_bucket{stage=\"a\",le=\"+Inf\"} 1\n"), "{text}");
        assert!(text.contains("y_count{stage=\"a\"} 1\n"), "{text}");
    }
}
