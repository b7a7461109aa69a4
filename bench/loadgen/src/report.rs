//! The end of a run: the side-by-side table with Herald / Socket.IO ratios, the goals, and the
//! verdict (Herald must lose and duplicate nothing, in every scenario).

use std::fmt::Write;

use crate::results::{Results, SystemResults};
use crate::wire::System;

type Metric = fn(&SystemResults) -> Option<f64>;

type Row = (String, Box<dyn Fn(&SystemResults) -> Option<f64>>);

fn rows(r: &Results) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    let add = |rows: &mut Vec<Row>, name: &str, f: Metric| rows.push((name.to_owned(), Box::new(f)));
    add(&mut rows, "idle: connections held", |s| s.idle.as_ref().map(|i| i.connections as f64));
    add(&mut rows, "idle: RSS per connection (KiB)", |s| s.idle.as_ref().map(|i| i.rss_per_conn_mean / 1024.0));
    add(&mut rows, "idle: connects+auths/s (wall, whole box)", |s| s.idle.as_ref().map(|i| i.connects_per_sec));
    add(&mut rows, "idle: connects+auths per server CPU-s", |s| s.idle.as_ref().map(|i| i.connects_per_cpu_sec));
    add(&mut rows, "idle: CPU at rest per server (% core)", |s| s.idle.as_ref().map(|i| i.cpu_rest_pct_mean));
    let rates: Vec<f64> = r.systems.iter().flat_map(|s| s.latency.iter().map(|l| l.rate)).collect();
    let mut seen = Vec::new();
    for rate in rates {
        if seen.contains(&rate) {
            continue;
        }
        seen.push(rate);
        let at = move |s: &SystemResults| s.latency.iter().find(|l| l.rate == rate).cloned();
        type Pick = fn(&crate::results::Rate) -> f64;
        let picks: [(&str, Pick); 6] = [
            ("p50 ms", |l| l.latency.p50_ms),
            ("p99 ms", |l| l.latency.p99_ms),
            ("p99.9 ms", |l| l.latency.p999_ms),
            ("max ms", |l| l.latency.max_ms),
            ("lost", |l| l.loss.lost as f64),
            ("duplicated", |l| l.loss.duplicated as f64),
        ];
        for (name, pick) in picks {
            rows.push((format!("latency @{rate}/s: {name}"), Box::new(move |s| at(s).map(|l| pick(&l)))));
        }
    }
    add(&mut rows, "fanout: last delivery ms (median)", |s| {
        s.fanout.as_ref().and_then(|f| median(f.notifications.iter().map(|n| n.last_delivery_ms).collect()))
    });
    add(&mut rows, "fanout: deliveries/s (median)", |s| {
        s.fanout.as_ref().and_then(|f| median(f.notifications.iter().map(|n| n.deliveries_per_sec).collect()))
    });
    add(&mut rows, "fanout: lost", |s| {
        s.fanout.as_ref().map(|f| f.notifications.iter().map(|n| n.loss.lost).sum::<u64>() as f64)
    });
    add(&mut rows, "storm: clients cut", |s| s.storm.as_ref().map(|t| t.clients as f64));
    add(&mut rows, "storm: all back ms", |s| s.storm.as_ref().and_then(|t| t.all_back_ms));
    add(&mut rows, "storm: all replayed ms", |s| s.storm.as_ref().and_then(|t| t.all_replayed_ms));
    add(&mut rows, "storm: lost", |s| s.storm.as_ref().map(|t| t.loss.lost as f64));
    add(&mut rows, "storm: duplicated", |s| s.storm.as_ref().map(|t| t.loss.duplicated as f64));
    add(&mut rows, "storm: p99 ms", |s| s.storm.as_ref().map(|t| t.latency.p99_ms));
    rows
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

fn cell(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.abs() >= 100.0 || v == v.trunc() => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// The side-by-side table, as printed at the end of a run.
pub fn table(r: &Results) -> String {
    let h = r.of(System::Herald);
    let s = r.of(System::SocketIo);
    let mut out = String::new();
    let _ = writeln!(out, "{:<44} {:>12} {:>12} {:>10}", "metric", "Herald", "Socket.IO", "H / S.IO");
    for (name, f) in rows(r) {
        let hv = h.and_then(&f);
        let sv = s.and_then(&f);
        if hv.is_none() && sv.is_none() {
            continue;
        }
        let ratio = match (hv, sv) {
            (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
            _ => "-".into(),
        };
        let _ = writeln!(out, "{name:<44} {:>12} {:>12} {ratio:>10}", cell(hv), cell(sv));
    }
    out
}

/// Herald against the goals of issue 5.
pub fn goals(r: &Results) -> String {
    let mut out = String::new();
    let Some(h) = r.of(System::Herald) else { return out };
    let mut line = |goal: &str, v: Option<f64>, ok: fn(f64) -> bool, unit: &str| {
        let (shown, verdict) = match v {
            Some(v) => (format!("{v:.2} {unit}"), if ok(v) { "met" } else { "MISSED" }),
            None => ("not measured".into(), "-"),
        };
        let _ = writeln!(out, "  {goal:<52} {shown:>16}  {verdict}");
    };
    line(
        "RSS per idle connection <= 4 KiB",
        h.idle.as_ref().map(|i| i.rss_per_conn_mean / 1024.0),
        |v| v <= 4.0,
        "KiB",
    );
    line(
        "p99 publish->socket at 2,000/s <= 10 ms",
        h.latency.iter().find(|l| l.rate == 2000.0).map(|l| l.latency.p99_ms),
        |v| v <= 10.0,
        "ms",
    );
    line(
        "connects+auths per core-second >= 5,000",
        h.idle.as_ref().map(|i| i.connects_per_cpu_sec),
        |v| v >= 5000.0,
        "/s",
    );
    let storm_label = format!(
        "{}-client reconnect storm replayed <= 5 s",
        h.storm.as_ref().map_or("15,000".into(), |s| s.clients.to_string())
    );
    line(&storm_label, h.storm.as_ref().and_then(|s| s.all_replayed_ms.map(|ms| ms / 1000.0)), |v| v <= 5.0, "s");
    out
}

/// What makes the run fail: Herald losing, duplicating or failing anything, or a scenario of
/// either system not running at all.
pub fn failures(r: &Results) -> Vec<String> {
    let mut f = Vec::new();
    for s in &r.systems {
        let who = s.system.label();
        f.extend(s.errors.iter().map(|e| format!("{who}: {e}")));
        if s.system != System::Herald {
            continue;
        }
        if let Some(i) = &s.idle
            && i.failed > 0
        {
            f.push(format!("{who} idle: {} connections failed or dropped", i.failed));
        }
        for l in &s.latency {
            if l.loss.lost + l.loss.duplicated + l.sent.failed > 0 {
                f.push(format!(
                    "{who} latency @{}/s: lost {}, duplicated {}, publish failures {}",
                    l.rate, l.loss.lost, l.loss.duplicated, l.sent.failed
                ));
            }
        }
        if let Some(fo) = &s.fanout {
            let (lost, dup) = fo.notifications.iter().fold((0, 0), |a, n| (a.0 + n.loss.lost, a.1 + n.loss.duplicated));
            if lost + dup > 0 {
                f.push(format!("{who} fanout: lost {lost}, duplicated {dup}"));
            }
        }
        if let Some(st) = &s.storm {
            if st.loss.lost + st.loss.duplicated > 0 {
                f.push(format!("{who} storm: lost {}, duplicated {}", st.loss.lost, st.loss.duplicated));
            }
            if st.all_replayed_ms.is_none() {
                f.push(format!("{who} storm: only {} of {} clients replayed", st.replayed, st.clients));
            }
        }
    }
    f
}
