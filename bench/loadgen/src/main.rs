//! `herald-loadgen`: Herald's benchmark suite, the one home of its benchmarks. `bench [flags]`
//! starts each system on loopback, runs the scenarios against it with a fleet of worker
//! processes, and writes the results (JSON, a table, a plot); `worker` is one of those processes;
//! `memory [--connections N]` breaks one gateway's RSS per idle connection down by stage;
//! `plot <json> <png>` redraws a plot. `scripts/bench` builds and runs it; docs/benchmarks.md
//! has the flags and the figures.

mod config;
mod conn;
mod fleet;
mod hostile;
mod inbox;
mod memory;
mod opsmetrics;
mod plot;
mod procstat;
mod protocol;
mod publish;
mod report;
mod results;
mod scenarios;
mod systems;
mod tally;
mod wire;
mod worker;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::{BenchConfig, Scenario};
use crate::results::{Machine, Results, SystemResults};
use crate::systems::{Sut, SutConfig};

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("worker") => worker::run().await.map(|()| ExitCode::SUCCESS),
        Some("memory") => memory::run(&args[1..]).await.map(|()| ExitCode::SUCCESS),
        Some("plot") => {
            let (json, png) = (args.get(1).context("plot <results.json> <out.png>")?, args.get(2).context("out.png")?);
            let results: Results = serde_json::from_str(&std::fs::read_to_string(json)?)?;
            plot::draw(&results, Path::new(png))?;
            Ok(ExitCode::SUCCESS)
        }
        Some("bench") => bench(&args[1..]).await,
        _ => bench(&args).await,
    }
}

async fn bench(args: &[String]) -> anyhow::Result<ExitCode> {
    let cfg = BenchConfig::from_args(args)?;
    let mut results = Results {
        unix_time: wire::now_us() / 1_000_000,
        command: format!("scripts/bench {}", args.join(" ")).trim().to_owned(),
        smoke: cfg.smoke,
        machine: Machine::probe(),
        config: serde_json::to_value(&cfg)?,
        systems: Vec::new(),
    };
    let sut_config = SutConfig {
        gateways: cfg.fleet_size(),
        secret: cfg.secret.clone(),
        audience: cfg.audience.clone(),
        big_team_size: cfg.members,
        runners: cfg.runners,
    };
    eprintln!("machine: {}", results.machine.describe());
    // The 1-minute load average, sampled through the run: other work on the box shows here.
    let load_max = std::sync::Arc::new(std::sync::Mutex::new(0.0f64));
    let sampler = {
        let load_max = load_max.clone();
        tokio::spawn(async move {
            loop {
                if let Some(&l) = crate::results::loadavg().first() {
                    let mut m = load_max.lock().expect("load lock");
                    *m = m.max(l);
                }
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
        })
    };
    // The storm kills a gateway, so it runs last; idle runs first, on fresh gateways.
    let mut scenarios = cfg.scenarios.clone();
    scenarios.sort_by_key(|s| *s as u8);
    for &system in &cfg.systems {
        eprintln!("== {}", system.label());
        let mut r = SystemResults::new(system);
        match Sut::start(system, &sut_config).await {
            Err(e) => r.errors.push(format!("starting: {e:#}")),
            Ok(mut sut) => {
                for &scenario in &scenarios {
                    let outcome = match scenario {
                        Scenario::Idle => scenarios::idle::run(&cfg, &sut).await.map(|v| r.idle = Some(v)),
                        Scenario::Latency => scenarios::latency::run(&cfg, &sut).await.map(|v| r.latency = v),
                        Scenario::Maxrate | Scenario::Throughput if sut.herald.is_none() => Ok(()),
                        Scenario::Maxrate => scenarios::maxrate::run(&cfg, &sut).await.map(|v| r.maxrate = Some(v)),
                        Scenario::Throughput => {
                            scenarios::throughput::run(&cfg, &sut).await.map(|v| r.throughput = Some(v))
                        }
                        Scenario::Fanout => scenarios::fanout::run(&cfg, &sut).await.map(|v| r.fanout = Some(v)),
                        // The Socket.IO baseline has no hostile-load counterpart: Herald alone.
                        Scenario::Hostile if sut.herald.is_none() => Ok(()),
                        Scenario::Hostile => scenarios::hostile::run(&cfg, &mut sut).await.map(|v| r.hostile = Some(v)),
                        Scenario::Storm => scenarios::storm::run(&cfg, &mut sut).await.map(|v| r.storm = Some(v)),
                    };
                    if let Err(e) = outcome {
                        eprintln!("{} {scenario:?} failed: {e:#}", system.label());
                        r.errors.push(format!("{scenario:?}: {e:#}"));
                    }
                }
            }
        }
        results.systems.push(r);
    }

    sampler.abort();
    results.machine.load_end = crate::results::loadavg();
    results.machine.load_max_1m = *load_max.lock().expect("load lock");

    std::fs::create_dir_all(&cfg.out)?;
    let stem = if cfg.smoke { "smoke".to_owned() } else { results.unix_time.to_string() };
    let json = serde_json::to_string_pretty(&results)?;
    std::fs::write(cfg.out.join(format!("{stem}.json")), &json)?;
    let png = cfg.out.join(if cfg.smoke { "smoke.png" } else { "latest.png" });
    if !cfg.smoke {
        std::fs::write(cfg.out.join("latest.json"), &json)?;
    }
    if let Err(e) = plot::draw(&results, &png) {
        eprintln!("plot: {e:#}");
    }

    println!(
        "\nmachine: {}; highest 1-min load average during the run {:.2}",
        results.machine.describe(),
        results.machine.load_max_1m
    );
    println!("{}", report::table(&results));
    println!("{}", report::pipeline(&results));
    if let Some(h) = results.of(wire::System::Herald).and_then(|h| h.hostile.as_ref()) {
        println!("{}", report::hostile(h));
    }
    println!("Herald against the goals:\n{}", report::goals(&results));
    println!("results: {}  plot: {}", cfg.out.join(format!("{stem}.json")).display(), png.display());
    let failures = report::failures(&results);
    if failures.is_empty() {
        println!("bench: ok");
        Ok(ExitCode::SUCCESS)
    } else {
        for f in &failures {
            println!("bench: FAILED: {f}");
        }
        Ok(ExitCode::FAILURE)
    }
}
