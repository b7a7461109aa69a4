//! A small run of the reliability suite (`scripts/chaos` runs all of it): on the 3-node
//! cluster, the stream leader killed and restarted under traffic, and devices connecting
//! exactly while a notification is published; nothing acknowledged may be lost, duplicated or
//! reordered.

use std::time::Duration;

use herald_tests::chaos::{self, Fault, Load};

fn small() -> Load {
    Load {
        users: 60,
        rate: 30.0,
        before: Duration::from_secs(2),
        after: Duration::from_secs(3),
        race_rounds: 60,
        bound: Duration::from_secs(2),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_stream_leader_the_gateways_lose_and_duplicate_nothing() -> anyhow::Result<()> {
    let r = chaos::run(Fault::KillStreamLeader, &small()).await?;
    println!("{}\n{}\n{:?}", chaos::Report::header(), r.row(), r.examples);
    assert!(r.published > 100, "traffic flowed: {r:?}");
    // The whole promise: every acknowledged notification stored once and on its device once,
    // in order (the checker waits for the requests the functions still hold through the
    // election).
    assert!(r.ok(), "{r:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_while_a_notification_is_published_never_misses_it() -> anyhow::Result<()> {
    let r = chaos::run(Fault::SubscribeRace, &small()).await?;
    println!("{}\n{}", chaos::Report::header(), r.row());
    assert!(r.published >= 50, "{r:?}");
    assert!(r.ok(), "{r:?}");
    Ok(())
}
