//! The end of a run: the side-by-side table with Herald / Socket.IO ratios, the goals, and the
//! verdict (Herald must lose and duplicate nothing, in every scenario).

use std::fmt::Write;

use crate::results::{Hostile, Results, SystemResults};
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
        let picks: [(&str, Pick); 7] = [
            ("p50 ms", |l| l.latency.p50_ms),
            ("p90 ms", |l| l.latency.p90_ms),
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
    add(&mut rows, "fanout: duplicated", |s| {
        s.fanout.as_ref().map(|f| f.notifications.iter().map(|n| n.loss.duplicated).sum::<u64>() as f64)
    });
    add(&mut rows, "fanout: one-user notification after it, ms", |s| {
        s.fanout.as_ref().and_then(|f| median(f.notifications.iter().filter_map(|n| n.probe_ms).collect()))
    });
    add(&mut rows, "storm: clients cut", |s| s.storm.as_ref().map(|t| t.clients as f64));
    add(&mut rows, "storm: all back ms", |s| s.storm.as_ref().and_then(|t| t.all_back_ms));
    add(&mut rows, "storm: all replayed ms", |s| s.storm.as_ref().and_then(|t| t.all_replayed_ms));
    add(&mut rows, "storm: lost", |s| s.storm.as_ref().map(|t| t.loss.lost as f64));
    add(&mut rows, "storm: duplicated", |s| s.storm.as_ref().map(|t| t.loss.duplicated as f64));
    add(&mut rows, "storm: p99 ms", |s| s.storm.as_ref().map(|t| t.latency.p99_ms));
    rows
}

/// Herald's pipeline figures (issue 8), each with lost and duplicated beside it.
pub fn pipeline(r: &Results) -> String {
    use crate::opsmetrics::show;
    let mut out = String::new();
    let Some(h) = r.of(System::Herald) else { return out };
    let loss = |l: &crate::results::Loss| format!("lost {} / dup {}", l.lost, l.duplicated);
    let _ = writeln!(out, "Herald pipeline:");
    for l in &h.latency {
        let _ = writeln!(
            out,
            "  latency @{}/s, {} users, {} notifications: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2} ms; {}",
            l.rate,
            l.users,
            l.sent.count,
            l.latency.p50_ms,
            l.latency.p90_ms,
            l.latency.p99_ms,
            l.latency.p999_ms,
            l.latency.max_ms,
            loss(&l.loss)
        );
        if let Some(p) = &l.pipeline {
            pipeline_lines(&mut out, p);
        }
    }
    if let Some(m) = &h.maxrate {
        let _ = writeln!(
            out,
            "  max sustained rate with p99 <= {} ms: {}",
            m.p99_bound_ms,
            m.sustained.map_or("none".into(), |v| format!("{v:.0}/s"))
        );
        for s in &m.steps {
            let _ = writeln!(
                out,
                "    step {:>6.0}/s: p50 {:.2}  p99 {:.2}  max {:.2} ms; {}",
                s.rate,
                s.latency.p50_ms,
                s.latency.p99_ms,
                s.latency.max_ms,
                loss(&s.loss)
            );
        }
    }
    if let Some(t) = &h.throughput {
        let _ = writeln!(
            out,
            "  throughput, {} runner(s): {} recipients: stored+published {} /s ({} s), pushed {:.0} /s ({:.2} s); {}",
            t.runners,
            t.pipeline.acked,
            show(t.stored_and_published_per_sec, 0),
            show(t.acked_secs, 2),
            t.pushed_per_sec,
            t.pushed_secs,
            loss(&t.loss)
        );
        pipeline_lines(&mut out, &t.pipeline);
    }
    if let Some(f) = &h.fanout {
        for (i, n) in f.notifications.iter().enumerate() {
            let _ = writeln!(
                out,
                "  team of {} #{i}: every member pushed {:.0} ms, all stored {} ms ({} items); {}; one-user notification right after: {} ms, {}",
                f.members,
                n.last_delivery_ms,
                show(n.all_stored_ms, 0),
                n.stored.map_or("n/a".into(), |v| v.to_string()),
                loss(&n.loss),
                show(n.probe_ms, 1),
                loss(&n.probe_loss)
            );
        }
    }
    out
}

/// The hostile scenario side by side: the good clients quiet and under attack, the goal, and
/// what the hostile sockets got.
pub fn hostile(h: &Hostile) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "hostile: {} good clients at {}/s over {} gateways; {} hostile sockets",
        h.good_clients, h.rate, h.gateways, h.hostile_connections
    );
    let _ = writeln!(out, "  {:<28} {:>12} {:>14}", "good clients", "quiet", "under attack");
    type Pick = fn(&crate::results::Rate) -> String;
    let rows: [(&str, Pick); 8] = [
        ("notifications acknowledged", |r| (r.sent.count - r.sent.unacked.len() as u64).to_string()),
        ("p50 ms", |r| format!("{:.2}", r.latency.p50_ms)),
        ("p90 ms", |r| format!("{:.2}", r.latency.p90_ms)),
        ("p99 ms", |r| format!("{:.2}", r.latency.p99_ms)),
        ("max ms", |r| format!("{:.2}", r.latency.max_ms)),
        ("lost / duplicated", |r| format!("{} / {}", r.loss.lost, r.loss.duplicated)),
        ("publish failures", |r| r.sent.failed.to_string()),
        ("sockets dropped", |r| r.drops.to_string()),
    ];
    for (name, pick) in rows {
        let _ = writeln!(out, "  {name:<28} {:>12} {:>14}", pick(&h.quiet), pick(&h.hostile));
    }
    let _ = writeln!(
        out,
        "  p99 under attack / p99 quiet: {:.2} (goal <= {}: {})",
        h.p99_ratio,
        h.goal_ratio,
        if h.goal_met { "met" } else { "MISSED" }
    );
    let _ = writeln!(
        out,
        "  hostile sockets open during the phase: min {}, mean {:.0}; {:.0} opened/s; ramp {:.1} s",
        h.in_play_min, h.in_play_mean, h.opens_per_sec, h.ramp_secs
    );
    let _ = writeln!(out, "  what the hostile sockets got, and how long each was open:");
    let _ = writeln!(out, "    {:<44} {:>8} {:>10} {:>10}", "kind outcome", "count", "mean ms", "max ms");
    for (k, o) in &h.outcomes {
        let _ = writeln!(out, "    {k:<44} {:>8} {:>10.0} {:>10.0}", o.count, o.mean_ms(), o.open_ms_max);
    }
    for (k, n) in h.still_open.iter().filter(|(_, n)| **n > 0) {
        let _ = writeln!(out, "    {:<44} {n:>8}", format!("{k} still open when the attack stopped"));
    }
    let counts = |m: &std::collections::BTreeMap<String, f64>| {
        if m.is_empty() {
            "none".to_owned()
        } else {
            m.iter().map(|(k, v)| format!("{k} {v:.0}")).collect::<Vec<_>>().join(", ")
        }
    };
    let _ = writeln!(out, "  gateways refused upgrades: {}", counts(&h.gateway_refused));
    let _ = writeln!(out, "  gateways refused tokens/handshakes: {}", counts(&h.gateway_auth_failures));
    let _ = writeln!(out, "  gateways closed for too many frames: {:.0}", h.gateway_rate_limited);
    let mib = |v: &[u64]| v.iter().map(|b| format!("{:.0}", *b as f64 / 1048576.0)).collect::<Vec<_>>().join(" / ");
    let _ = writeln!(
        out,
        "  gateway RSS MiB before / peak / after: [{}] / [{}] / [{}]; open files at peak [{}]; CPU under attack [{}] % of a core",
        mib(&h.rss_before),
        mib(&h.rss_peak),
        mib(&h.rss_after),
        h.open_files_peak.iter().map(u64::to_string).collect::<Vec<_>>().join(" / "),
        h.cpu_pct.iter().map(|c| format!("{c:.0}")).collect::<Vec<_>>().join(" / ")
    );
    let _ = writeln!(
        out,
        "  the hostile workers used {:.0} % of a core; 1-minute load average at the end {:.2}",
        h.attackers_cpu_pct, h.load_1m
    );
    if !h.gateway_exits.is_empty() {
        let _ = writeln!(out, "  GATEWAYS EXITED: {}", h.gateway_exits.join("; "));
    }
    out
}

fn pipeline_lines(out: &mut String, p: &crate::results::Pipeline) {
    use crate::opsmetrics::show;
    let _ = writeln!(
        out,
        "    stored {} of {} acknowledged; DynamoDB writes per recipient {}",
        p.stored.map_or("n/a".into(), |v| v.to_string()),
        p.acked,
        show(p.writes_per_recipient, 2)
    );
    for s in &p.stages {
        let _ = writeln!(
            out,
            "    {:<40} p50 {:>8}  p99 {:>8}  mean {:>8} ms",
            s.what,
            show(s.p50_ms, 2),
            show(s.p99_ms, 2),
            show(s.mean_ms, 2)
        );
    }
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

/// Herald against the goals (issues 5 and 8).
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
    line("max rate with p99 <= 50 ms (reported)", h.maxrate.as_ref().and_then(|m| m.sustained), |_| true, "/s");
    line(
        "recipient deliveries/s through the runners >= 5,000",
        h.throughput.as_ref().and_then(|t| t.stored_and_published_per_sec),
        |v| v >= 5000.0,
        "/s",
    );
    let first = h.fanout.as_ref().and_then(|f| f.notifications.first());
    line("team: every connected member pushed <= 1 s", first.map(|n| n.last_delivery_ms / 1000.0), |v| v <= 1.0, "s");
    line(
        "team: every member stored <= 3 s",
        first.and_then(|n| n.all_stored_ms.map(|v| v / 1000.0)),
        |v| v <= 3.0,
        "s",
    );
    line("one-user notification after a team <= 50 ms", first.and_then(|n| n.probe_ms), |v| v <= 50.0, "ms");
    let writes = h
        .throughput
        .as_ref()
        .and_then(|t| t.pipeline.writes_per_recipient)
        .or_else(|| h.latency.iter().find_map(|l| l.pipeline.as_ref()?.writes_per_recipient));
    line("DynamoDB write requests per recipient <= 1", writes, |v| v <= 1.0, "");
    line(
        "p99 beside hostile sockets <= 2x quiet p99 (reported)",
        h.hostile.as_ref().map(|x| x.p99_ratio),
        |v| v <= 2.0,
        "x",
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
        let steps = s.maxrate.iter().flat_map(|m| m.steps.iter().map(|r| ("maxrate step", r)));
        for (what, l) in s.latency.iter().map(|r| ("latency", r)).chain(steps) {
            if l.loss.lost + l.loss.duplicated + l.sent.failed > 0 {
                f.push(format!(
                    "{who} {what} @{}/s: lost {}, duplicated {}, publish failures {}",
                    l.rate, l.loss.lost, l.loss.duplicated, l.sent.failed
                ));
            }
            if let Some(p) = &l.pipeline
                && p.stored.is_some_and(|n| n != p.acked)
            {
                f.push(format!("{who} {what} @{}/s: {:?} items stored of {} acknowledged", l.rate, p.stored, p.acked));
            }
        }
        if let Some(t) = &s.throughput {
            if t.loss.lost + t.loss.duplicated + t.sent.failed > 0 {
                f.push(format!(
                    "{who} throughput: lost {}, duplicated {}, publish failures {}",
                    t.loss.lost, t.loss.duplicated, t.sent.failed
                ));
            }
            if t.pipeline.stored != Some(t.pipeline.acked) || t.acked_secs.is_none() {
                f.push(format!(
                    "{who} throughput: {:?} items stored of {} acknowledged; runners done: {}",
                    t.pipeline.stored,
                    t.pipeline.acked,
                    t.acked_secs.is_some()
                ));
            }
        }
        if let Some(fo) = &s.fanout {
            let (lost, dup) = fo.notifications.iter().fold((0, 0), |a, n| (a.0 + n.loss.lost, a.1 + n.loss.duplicated));
            if lost + dup > 0 {
                f.push(format!("{who} fanout: lost {lost}, duplicated {dup}"));
            }
            for (i, n) in fo.notifications.iter().enumerate() {
                if n.probe_loss.lost + n.probe_loss.duplicated > 0 {
                    f.push(format!(
                        "{who} fanout #{i}: the one-user notification: lost {}, duplicated {}",
                        n.probe_loss.lost, n.probe_loss.duplicated
                    ));
                }
                if n.stored.is_some_and(|v| v != fo.members) || n.all_stored_ms.is_none() {
                    f.push(format!(
                        "{who} fanout #{i}: {:?} of {} members' items stored; runners done: {}",
                        n.stored,
                        fo.members,
                        n.all_stored_ms.is_some()
                    ));
                }
            }
        }
        if let Some(h) = &s.hostile {
            for (what, l) in [("quiet", &h.quiet), ("under attack", &h.hostile)] {
                if l.loss.lost + l.loss.duplicated + l.sent.failed > 0 {
                    f.push(format!(
                        "{who} hostile, {what}: lost {}, duplicated {}, publish failures {}",
                        l.loss.lost, l.loss.duplicated, l.sent.failed
                    ));
                }
                if let Some(p) = &l.pipeline
                    && p.stored.is_some_and(|n| n != p.acked)
                {
                    f.push(format!("{who} hostile, {what}: {:?} items stored of {} acknowledged", p.stored, p.acked));
                }
            }
            f.extend(h.gateway_exits.iter().map(|e| format!("{who} hostile: {e}")));
        }
        if let Some(st) = &s.storm {
            if st.loss.lost + st.loss.duplicated + st.warmup.lost + st.warmup.duplicated > 0 {
                f.push(format!(
                    "{who} storm: lost {}, duplicated {} (warm-up: lost {}, duplicated {})",
                    st.loss.lost, st.loss.duplicated, st.warmup.lost, st.warmup.duplicated
                ));
            }
            if st.without_cursor + st.resets > 0 {
                f.push(format!(
                    "{who} storm: {} reconnections without a cursor, {} resets",
                    st.without_cursor, st.resets
                ));
            }
            if st.all_replayed_ms.is_none() {
                f.push(format!("{who} storm: only {} of {} clients replayed", st.replayed, st.clients));
            }
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Loss, Machine, Rate, Storm};

    fn results(system: SystemResults) -> Results {
        Results {
            unix_time: 0,
            command: String::new(),
            smoke: true,
            machine: Machine::probe(),
            config: serde_json::Value::Null,
            systems: vec![system],
        }
    }

    #[test]
    fn any_loss_copy_or_unfinished_replay_fails_the_run() {
        let mut h = SystemResults::new(System::Herald);
        h.latency.push(Rate { rate: 200.0, ..Rate::default() });
        h.storm = Some(Storm { clients: 10, replayed: 10, all_replayed_ms: Some(5.0), ..Storm::default() });
        assert!(failures(&results(h.clone())).is_empty());

        let mut lost = h.clone();
        lost.latency[0].loss = Loss { lost: 1, ..Loss::default() };
        assert_eq!(failures(&results(lost)).len(), 1);
        let mut dup = h.clone();
        dup.storm.as_mut().unwrap().loss.duplicated = 1;
        assert_eq!(failures(&results(dup)).len(), 1);
        let mut no_cursor = h.clone();
        no_cursor.storm.as_mut().unwrap().without_cursor = 1;
        assert_eq!(failures(&results(no_cursor)).len(), 1);

        let mut attacked = h.clone();
        attacked.hostile = Some(crate::results::Hostile::default());
        assert!(failures(&results(attacked.clone())).is_empty());
        attacked.hostile.as_mut().unwrap().hostile.loss.duplicated = 1;
        attacked.hostile.as_mut().unwrap().gateway_exits.push("gateway 0 exited: signal 9".into());
        assert_eq!(failures(&results(attacked)).len(), 2, "a copy under attack and a gateway that died both fail");

        // The baseline may lose what its design loses; only its scenarios' errors count.
        let mut s = h;
        s.system = System::SocketIo;
        s.storm.as_mut().unwrap().loss.lost = 100;
        assert!(failures(&results(s)).is_empty());
    }
}
