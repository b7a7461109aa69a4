//! What Herald's processes say about a scenario on their `/metrics` pages, read before and after
//! it: DynamoDB write requests per recipient (`herald_store_requests_total{op}` over
//! `herald_functions_recipients_total`) and the per-stage latency split, each stage measured from
//! the request's acceptance (`herald_functions_stage_seconds{stage}`,
//! `herald_gateway_stage_seconds{stage}`). A metric a process does not export yet is `None`
//! (printed "n/a"), never a zero.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The store operations that write.
const WRITE_OPS: &[&str] = &["put", "transact_write", "batch_write", "update", "delete"];

/// The stages, in pipeline order: (metric, stage label, what it means).
pub const STAGES: &[(&str, &str, &str)] = &[
    ("herald_functions_stage_seconds", "fetched", "accepted -> fetched by the runner"),
    ("herald_functions_stage_seconds", "stored", "accepted -> stored"),
    ("herald_functions_stage_seconds", "published", "accepted -> per-user publish acked"),
    ("herald_gateway_stage_seconds", "received", "accepted -> received by a gateway"),
    ("herald_gateway_stage_seconds", "written", "accepted -> written to the socket"),
];

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Every sample of one or more `/metrics` pages (several processes' pages are summed).
#[derive(Debug, Clone, Default)]
pub struct Scrape(Vec<Sample>);

impl Scrape {
    /// Reads `/metrics` from every `host:port`; a process that does not answer adds nothing.
    pub async fn read(addrs: &[String]) -> Self {
        let mut all = Scrape::default();
        for addr in addrs {
            if let Ok((200, body)) = herald_servers::http_get(&format!("http://{addr}/metrics")).await {
                all.0.extend(Scrape::parse(&body).0);
            }
        }
        all
    }

    /// Parses the Prometheus text format (`name{a="b",…} value`), skipping comments.
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (head, value) = l.rsplit_once(' ')?;
                let value: f64 = value.trim().parse().ok()?;
                let (name, labels) = match head.split_once('{') {
                    None => (head.trim(), BTreeMap::new()),
                    Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)),
                };
                Some(Sample { name: name.to_owned(), labels, value })
            })
            .collect();
        Scrape(samples)
    }

    /// The sum of `name`'s samples whose labels pass `keep`; `None` if there is none.
    fn sum(&self, name: &str, keep: impl Fn(&BTreeMap<String, String>) -> bool) -> Option<f64> {
        let mut found = None;
        for s in self.0.iter().filter(|s| s.name == name && keep(&s.labels)) {
            *found.get_or_insert(0.0) += s.value;
        }
        found
    }

    /// `name`'s samples summed by the value of `label` (e.g. a counter's reasons).
    pub fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for s in self.0.iter().filter(|s| s.name == name) {
            let key = s.labels.get(label).cloned().unwrap_or_default();
            *out.entry(key).or_insert(0.0) += s.value;
        }
        out
    }

    /// The sum of every sample of `name` (`None`: not exported).
    pub fn total(&self, name: &str) -> Option<f64> {
        self.sum(name, |_| true)
    }

    /// A stage histogram's cumulative buckets (`le`, count), summed over processes.
    fn buckets(&self, metric: &str, stage: &str) -> Vec<(f64, f64)> {
        let mut by_le: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for s in self
            .0
            .iter()
            .filter(|s| s.name == format!("{metric}_bucket") && s.labels.get("stage").is_some_and(|v| v == stage))
        {
            let Some(le) = s.labels.get("le").and_then(|v| v.parse::<f64>().ok()) else { continue };
            by_le.entry(le.to_bits()).or_insert((le, 0.0)).1 += s.value;
        }
        let mut v: Vec<(f64, f64)> = by_le.into_values().collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v
    }
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while let Some((key, after)) = rest.split_once("=\"") {
        let Some(end) = after.find('"') else { break };
        out.insert(key.trim_start_matches(',').trim().to_owned(), after[..end].to_owned());
        rest = &after[end + 1..];
    }
    out
}

/// DynamoDB write requests per recipient between two scrapes of the runners.
pub fn writes_per_recipient(before: &Scrape, after: &Scrape) -> Option<f64> {
    let is_write = |l: &BTreeMap<String, String>| l.get("op").is_some_and(|op| WRITE_OPS.contains(&op.as_str()));
    let writes = after.sum("herald_store_requests_total", is_write)?
        - before.sum("herald_store_requests_total", is_write).unwrap_or(0.0);
    let recipients = after.sum("herald_functions_recipients_total", |_| true)?
        - before.sum("herald_functions_recipients_total", |_| true).unwrap_or(0.0);
    (recipients > 0.0).then(|| writes / recipients)
}

/// One stage of the split over a scenario: how many passed it, and when (ms after acceptance).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stage {
    pub stage: String,
    pub what: String,
    /// `None`: the process does not export this stage.
    pub count: Option<u64>,
    pub mean_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The per-stage split between two scrapes (of every runner and gateway).
pub fn stages(before: &Scrape, after: &Scrape) -> Vec<Stage> {
    STAGES
        .iter()
        .map(|&(metric, stage, what)| {
            let mut s = Stage { stage: stage.to_owned(), what: what.to_owned(), ..Stage::default() };
            let of = |x: &Scrape, suffix: &str| {
                x.sum(&format!("{metric}_{suffix}"), |l| l.get("stage").is_some_and(|v| v == stage))
            };
            let (Some(count), Some(sum)) = (of(after, "count"), of(after, "sum")) else { return s };
            let count = count - of(before, "count").unwrap_or(0.0);
            let sum = sum - of(before, "sum").unwrap_or(0.0);
            s.count = Some(count as u64);
            if count > 0.0 {
                s.mean_ms = Some(sum / count * 1000.0);
                let (b, a) = (before.buckets(metric, stage), after.buckets(metric, stage));
                let delta: Vec<(f64, f64)> =
                    a.iter().map(|&(le, n)| (le, n - b.iter().find(|x| x.0 == le).map_or(0.0, |x| x.1))).collect();
                s.p50_ms = quantile(&delta, count, 0.5).map(|v| v * 1000.0);
                s.p99_ms = quantile(&delta, count, 0.99).map(|v| v * 1000.0);
            }
            s
        })
        .collect()
}

/// The `q` quantile of a cumulative histogram, interpolated within its bucket as Prometheus's
/// `histogram_quantile` does; past the last finite bound it is that bound (a lower limit).
fn quantile(cumulative: &[(f64, f64)], count: f64, q: f64) -> Option<f64> {
    let target = q * count;
    let mut prev = (0.0, 0.0);
    for &(le, n) in cumulative {
        if n >= target {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let width = n - prev.1;
            let frac = if width > 0.0 { (target - prev.1) / width } else { 1.0 };
            return Some(prev.0 + (le - prev.0) * frac);
        }
        prev = (le, n);
    }
    cumulative.iter().rev().find(|b| b.0.is_finite()).map(|b| b.0)
}

/// "n/a" for what was not measured.
pub fn show(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.digits$}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"# HELP herald_store_requests_total Store requests.
# TYPE herald_store_requests_total counter
herald_store_requests_total{op="transact_write"} 10
herald_store_requests_total{op="query"} 4
herald_functions_recipients_total 10
herald_functions_stage_seconds_bucket{stage="stored",le="0.001"} 0
herald_functions_stage_seconds_bucket{stage="stored",le="0.01"} 10
herald_functions_stage_seconds_bucket{stage="stored",le="+Inf"} 10
herald_functions_stage_seconds_sum{stage="stored"} 0.05
herald_functions_stage_seconds_count{stage="stored"} 10
"#;
    const AFTER: &str = r#"herald_store_requests_total{op="transact_write"} 90
herald_store_requests_total{op="batch_write"} 10
herald_store_requests_total{op="query"} 400
herald_functions_recipients_total 110
herald_functions_stage_seconds_bucket{stage="stored",le="0.001"} 0
herald_functions_stage_seconds_bucket{stage="stored",le="0.01"} 60
herald_functions_stage_seconds_bucket{stage="stored",le="+Inf"} 110
herald_functions_stage_seconds_sum{stage="stored"} 2.05
herald_functions_stage_seconds_count{stage="stored"} 110
"#;

    #[test]
    fn writes_per_recipient_counts_only_writes_in_the_interval() {
        let (b, a) = (Scrape::parse(BEFORE), Scrape::parse(AFTER));
        // (80 + 10) writes for 100 recipients; the 396 queries do not count.
        assert_eq!(writes_per_recipient(&b, &a), Some(0.9));
        assert_eq!(writes_per_recipient(&Scrape::default(), &Scrape::parse("herald_functions_x 1")), None);
    }

    #[test]
    fn stage_split_from_bucket_deltas_and_absent_metrics_are_none() {
        let split = stages(&Scrape::parse(BEFORE), &Scrape::parse(AFTER));
        let stored = split.iter().find(|s| s.stage == "stored").unwrap();
        assert_eq!(stored.count, Some(100));
        assert!((stored.mean_ms.unwrap() - 20.0).abs() < 1e-6);
        // 50 of 100 in (1 ms, 10 ms], 50 above: p50 is the top of the 10 ms bucket, p99 past it.
        assert!((stored.p50_ms.unwrap() - 10.0).abs() < 1e-6);
        assert_eq!(stored.p99_ms, Some(10.0));
        let written = split.iter().find(|s| s.stage == "written").unwrap();
        assert_eq!((written.count, written.p50_ms), (None, None));
    }

    #[test]
    fn counters_by_label_sum_over_processes() {
        let page = "herald_gateway_refused_total{reason=\"rate_limited\"} 3\nherald_gateway_refused_total{reason=\"full\"} 1\n";
        let two = Scrape::parse(&format!("{page}{page}"));
        let by = two.by_label("herald_gateway_refused_total", "reason");
        assert_eq!(by.get("rate_limited"), Some(&6.0));
        assert_eq!(by.get("full"), Some(&2.0));
        assert_eq!(two.total("herald_gateway_refused_total"), Some(8.0));
        assert_eq!(two.total("absent"), None);
    }

    #[test]
    fn quantile_interpolates_within_a_bucket() {
        let h = [(0.01, 0.0), (0.02, 100.0), (f64::INFINITY, 100.0)];
        assert!((quantile(&h, 100.0, 0.5).unwrap() - 0.015).abs() < 1e-9);
    }
}
