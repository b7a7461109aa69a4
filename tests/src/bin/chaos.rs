//! `scripts/chaos`: the reliability suite on a 3-node NATS cluster; prints one row per
//! scenario (see `herald_tests::chaos`). Arguments: scenario names (default: all), `--smoke`
//! for the small load.

use herald_tests::chaos::{self, Fault, Load, Report};

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> anyhow::Result<()> {
    // Logs to stderr (errors only unless HERALD_TEST_LOG says otherwise): stdout is the table.
    let filter = std::env::var("HERALD_TEST_LOG").unwrap_or_else(|_| "error".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut load = if args.iter().any(|a| a == "--smoke") { Load::smoke() } else { Load::full() };
    // `--rate=N` and `--users=N` override the load's.
    for a in &args {
        if let Some(v) = a.strip_prefix("--rate=") {
            load.rate = v.parse()?;
        } else if let Some(v) = a.strip_prefix("--users=") {
            load.users = v.parse()?;
        }
    }
    let mut faults: Vec<Fault> = Vec::new();
    for a in args.iter().filter(|a| !a.starts_with("--")) {
        faults.push(Fault::parse(a).ok_or_else(|| anyhow::anyhow!("unknown scenario {a:?}; one of {:?}", Fault::ALL))?);
    }
    if faults.is_empty() {
        faults = Fault::ALL.to_vec();
    }
    println!(
        "load: {} users with one device each, {} notifications/s, bound {:.0} s after the ack or the healing",
        load.users,
        load.rate,
        load.bound.as_secs_f64()
    );
    println!("{}", Report::header());
    let mut failed = false;
    let mut notes = Vec::new();
    for f in faults {
        match chaos::run(f, &load).await {
            Ok(r) => {
                println!("{}", r.row());
                failed |= !r.ok();
                if !r.examples.is_empty() || r.unacked > 0 || r.resets > 0 {
                    notes.push(format!(
                        "{}: {} publishes without ack, {} resets; lost: {:?}",
                        r.scenario, r.unacked, r.resets, r.examples
                    ));
                }
            }
            Err(e) => {
                println!("| {:<26} | failed to run: {e:#}", f.name());
                failed = true;
            }
        }
    }
    println!(
        "(ns): lost because never stored in HERALD_USER (the functions); (u): requests the functions still \
         held or had to retry when the run ended (late, not given up); (c): second copies stored"
    );
    for n in notes {
        println!("{n}");
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}
