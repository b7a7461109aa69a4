//! The NATS users and permissions of `infra/nats/permissions.conf`, on a real nats-server: each
//! role is refused what it must not do, and Herald still delivers with every process logged in
//! as its own role.

use std::time::Duration;

use async_nats::{Event, ServerError};
use herald_core::subject;
use herald_tests::servers::NatsRole;
use herald_tests::stack::{next_event, notification_ids};
use herald_tests::{Stack, StackOptions};
use tokio::sync::mpsc;

fn secured() -> StackOptions {
    StackOptions { nats_permissions: true, ..Default::default() }
}

/// A client logged in as `role`, and the server errors it receives.
async fn login(stack: &Stack, role: NatsRole) -> anyhow::Result<(async_nats::Client, mpsc::UnboundedReceiver<String>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = herald_core::nats::options(&stack.nats.url_as(role))
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                if let Event::ServerError(ServerError::Other(text)) = e {
                    let _ = tx.send(text);
                }
            }
        })
        .connect(stack.nats.url_as(role))
        .await?;
    Ok((client, rx))
}

/// Waits for the server's permissions violation naming `what` (e.g. `Subscription to "x"`).
async fn refused(errors: &mut mpsc::UnboundedReceiver<String>, what: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = tokio::time::timeout_at(deadline, errors.recv())
            .await
            .map_err(|_| anyhow::anyhow!("no permissions violation for {what} within 10 s"))?
            .ok_or_else(|| anyhow::anyhow!("connection gone"))?;
        if text.to_lowercase().contains("permissions violation") && text.contains(what) {
            return Ok(());
        }
    }
}

#[tokio::test]
async fn herald_delivers_with_every_process_under_its_own_user() -> anyhow::Result<()> {
    let stack = Stack::start(secured()).await?;
    let mut c = stack.connect("perm-user", None).await?;
    for i in 0..3 {
        stack.publish(&format!("perm-{i}"), &["perm-user"]).await?;
    }
    let mut got = Vec::new();
    while got.len() < 3 {
        got.push(next_event(&mut c).await?);
    }
    assert_eq!(notification_ids(&got), ["perm-0", "perm-1", "perm-2"]);

    // Replay (Direct Get under the gateway's user) works too.
    drop(c);
    let mut again = stack.connect("perm-user", Some("0")).await?;
    let mut replayed = Vec::new();
    while notification_ids(&replayed).len() < 3 {
        replayed.push(next_event(&mut again).await?);
    }
    assert_eq!(notification_ids(&replayed), ["perm-0", "perm-1", "perm-2"]);

    // An invalid request becomes a dead letter (the functions publish `herald.dlq.>`).
    stack.publisher.publish_raw("perm", "bad-1", "not json".into()).await?;
    let dlq = stack.js.get_stream(subject::DLQ_STREAM).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while dlq.get_info().await?.state.messages < 1 {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no dead letter within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[tokio::test]
async fn a_gateway_logs_in_with_an_nkey_on_every_connection_including_the_live_one() -> anyhow::Result<()> {
    let pair = nkeys::KeyPair::new_user();
    let dir = tempfile::tempdir()?;
    let seed_file = dir.path().join("gateway.nk");
    std::fs::write(&seed_file, format!("{}\n", pair.seed()?))?;
    let stack = Stack::start(StackOptions {
        // The gateway's permissions, for a user known only by its public key.
        extra_nats_users: format!("    {{ nkey: {}, permissions: $HERALD_GATEWAY }}\n", pair.public_key()),
        gateway_nkey_seed_file: Some(seed_file),
        ..secured()
    })
    .await?;
    // The gateway has no password to fall back on, and it is ready (the stack waited for its
    // /readyz) only once both its async-nats connection and its live connection are logged in.
    // Live delivery, then a replay (Direct Get on async-nats):
    let mut c = stack.connect("nkey-user", None).await?;
    stack.publish("nkey-0", &["nkey-user"]).await?;
    assert_eq!(notification_ids(&[next_event(&mut c).await?]), ["nkey-0"]);
    drop(c);
    let mut again = stack.connect("nkey-user", Some("0")).await?;
    assert_eq!(notification_ids(&[next_event(&mut again).await?]), ["nkey-0"]);
    Ok(())
}

#[tokio::test]
async fn a_creator_can_only_publish_requests() -> anyhow::Result<()> {
    let stack = Stack::start(secured()).await?;
    let (creator, mut errors) = login(&stack, NatsRole::Creator).await?;

    // Cannot read anyone's live notifications: the subscription is refused and receives nothing
    // while a notification is pushed.
    let mut spy = creator.subscribe("herald.live.>").await?;
    refused(&mut errors, "Subscription to \"herald.live.>\"").await?;
    let mut c = stack.connect("victim", None).await?;
    stack.publish("secret-1", &["victim"]).await?;
    assert_eq!(notification_ids(&[next_event(&mut c).await?]), ["secret-1"]);
    let spied = tokio::time::timeout(Duration::from_secs(1), futures::StreamExt::next(&mut spy)).await;
    assert!(!matches!(spied, Ok(Some(_))), "a creator read a live notification");

    // Cannot Direct-Get a user's history.
    let api = format!("$JS.API.DIRECT.GET.{}", subject::USER_STREAM);
    let body = format!(r#"{{"last_by_subj":"{}"}}"#, subject::user_subject("victim"));
    let answer = tokio::time::timeout(Duration::from_secs(5), creator.request(api.clone(), body.into())).await;
    assert!(!matches!(answer, Ok(Ok(ref m)) if m.status.is_none()), "a creator read HERALD_USER: {answer:?}");
    refused(&mut errors, &format!("Publish to \"{api}\"")).await?;

    // Cannot publish past validation straight to a user.
    let forged = subject::user_subject("victim");
    creator.publish(forged.clone(), "forged".into()).await?;
    creator.flush().await?;
    refused(&mut errors, &format!("Publish to \"{forged}\"")).await?;
    assert_eq!(stack.stream_count("victim").await?, 1, "only the real notification is stored");

    // Cannot revoke anyone.
    creator.publish("$KV.HERALD_REVOKED.user.eA", "{}".into()).await?;
    creator.flush().await?;
    refused(&mut errors, "Publish to \"$KV.HERALD_REVOKED.user.eA\"").await?;
    Ok(())
}

#[tokio::test]
async fn only_the_admin_writes_revocations_and_a_gateway_cannot_publish() -> anyhow::Result<()> {
    let stack = Stack::start(secured()).await?;
    let (gateway, mut errors) = login(&stack, NatsRole::Gateway).await?;
    let key = format!("$KV.HERALD_REVOKED.user.{}", subject::token("someone"));
    gateway.publish(key.clone(), r#"{"at":1}"#.into()).await?;
    gateway.flush().await?;
    refused(&mut errors, &format!("Publish to \"{key}\"")).await?;
    gateway.publish("herald.in.test", "{}".into()).await?;
    gateway.flush().await?;
    refused(&mut errors, "Publish to \"herald.in.test\"").await?;
    gateway.publish(subject::user_subject("someone"), "x".into()).await?;
    gateway.flush().await?;
    refused(&mut errors, "Publish to \"herald.user.").await?;

    let (functions, mut errors) = login(&stack, NatsRole::Functions).await?;
    let _sub = functions.subscribe("herald.live.>").await?;
    refused(&mut errors, "Subscription to \"herald.live.>\"").await?;

    // The admin user may write the bucket, and the gateway (logged in as `gateway`) sees it:
    // a revoked user's open session closes with 4001.
    let mut c = stack.connect("someone", None).await?;
    let admin = herald_core::nats::options(&stack.nats.url_as(NatsRole::Admin))
        .custom_inbox_prefix(subject::ADMIN_INBOX_PREFIX)
        .connect(stack.nats.url_as(NatsRole::Admin))
        .await?;
    let kv = async_nats::jetstream::new(admin).get_key_value("HERALD_REVOKED").await?;
    let at = herald_client::token::now_secs() + 5;
    kv.put(format!("user.{}", subject::token("someone")), format!(r#"{{"at":{at}}}"#).into()).await?;
    loop {
        match next_event(&mut c).await? {
            herald_client::Event::Closed { code, .. } => {
                assert_eq!(code, Some(4001));
                break;
            }
            _ => continue,
        }
    }
    Ok(())
}

/// Every configuration `infra/nats/` ships parses (`nats-server -t`), with the variables its
/// deployment sets, and the cluster one also as deploy.sh ships it (include inlined).
#[test]
fn every_shipped_nats_configuration_is_valid() -> anyhow::Result<()> {
    let root = herald_tests::servers::repo_root();
    let bin = std::env::var_os("HERALD_NATS_SERVER").map_or(root.join(".tools/py/bin/nats-server"), Into::into);
    let dir = tempfile::tempdir()?;
    // The node certificate, made as a node makes it at boot (the files must exist).
    let certs = herald_tests::cluster::Certs::make()?;
    let (cert, key, ca) = (certs.node("server.pem"), certs.node("server-key.pem"), certs.node("ca.pem"));
    let env = [
        ("NATS_TLS_CERT", cert.to_str().unwrap()),
        ("NATS_TLS_KEY", key.to_str().unwrap()),
        ("NATS_TLS_CA", ca.to_str().unwrap()),
        ("NATS_SERVER_NAME", "herald-nats-a"),
        ("NATS_AZ_TAG", "az:eu-west-1a"),
        ("NATS_ROUTE_A", "nats-route://10.0.1.10:6222"),
        ("NATS_ROUTE_B", "nats-route://10.0.2.10:6222"),
        ("NATS_ROUTE_C", "nats-route://10.0.3.10:6222"),
        ("NATS_CLIENT_ADVERTISE", "10.0.1.10:4222"),
        ("NATS_CLUSTER_ADVERTISE", "10.0.1.10:6222"),
        ("NATS_STORE_DIR", dir.path().to_str().unwrap()),
        ("NATS_JS_MAX_FILE", "10G"),
        ("NATS_JS_MAX_MEM", "1G"),
        ("HERALD_NATS_CREATOR_PASSWORD", "c"),
        ("HERALD_NATS_FUNCTIONS_PASSWORD", "f"),
        ("HERALD_NATS_GATEWAY_PASSWORD", "g"),
        ("HERALD_NATS_ADMIN_PASSWORD", "a"),
    ];
    let conf = std::fs::read_to_string(root.join("infra/nats/cluster.conf"))?;
    let perms = std::fs::read_to_string(root.join("infra/nats/permissions.conf"))?;
    anyhow::ensure!(conf.contains("include \"permissions.conf\""), "deploy.sh inlines this include");
    let shipped = dir.path().join("shipped.conf");
    std::fs::write(&shipped, conf.replace("include \"permissions.conf\"", &perms))?;
    for file in [
        root.join("infra/nats/local.conf"),
        root.join("infra/nats/secure-local.conf"),
        root.join("infra/nats/cluster.conf"),
        shipped,
    ] {
        let out = std::process::Command::new(&bin).arg("-c").arg(&file).arg("-t").envs(env).output()?;
        let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        anyhow::ensure!(out.status.success(), "{}: {text}", file.display());
    }
    Ok(())
}
