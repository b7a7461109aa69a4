//! The inbox over HTTP through a real gateway and the local DynamoDB-API server: pages stable
//! under concurrent inserts, an exact unread count, read / unread / archive / read-all (one
//! write whatever the inbox holds), ids of any shape, other users' notifications out of reach,
//! read state on every device of two gateways, preferences, and teams for admin services.

use std::collections::HashSet;
use std::time::Duration;

use herald_client::Event;
use herald_core::{Cursor, Notification};
use herald_store::{NewItem, Store};
use herald_tests::stack::{next_event, next_frame};
use herald_tests::{Stack, StackOptions};
use serde_json::{Value, json};

const EPOCH: u64 = 1_800_000_000;

fn note(id: &str) -> Notification {
    Notification {
        id: id.into(),
        kind: if id.ends_with('7') { "seven".into() } else { "test".into() },
        title: format!("title of {id}"),
        body: None,
        data: Some(json!({"n": id})),
        created_at: "2026-12-01T00:00:00Z".into(),
        read: false,
    }
}

fn store(stack: &Stack) -> Store {
    Store::new(
        stack.dynamo.clone(),
        &herald_core::config::DynamoConfig {
            endpoint: None,
            region: "us-east-1".into(),
            table_prefix: "herald_".into(),
        },
    )
}

/// Stores notifications `ids` for `user` with cursors `first..` as the functions would.
async fn seed(store: &Store, user: &str, ids: &[String], first_seq: u64) -> anyhow::Result<()> {
    let notes: Vec<Notification> = ids.iter().map(|i| note(i)).collect();
    let now = herald_client::token::now_secs() as i64 * 1000;
    let items: Vec<NewItem> = notes
        .iter()
        .enumerate()
        .map(|(k, n)| NewItem {
            user,
            notification: n,
            source: "test",
            accepted_at_ms: now,
            cursor: Cursor::new(EPOCH, first_seq + k as u64),
            muted: false,
        })
        .collect();
    // One transaction per copy: the store batches one notification's recipients, and a
    // transaction may touch a user's counters once. Sixteen at a time.
    for chunk in items.chunks(16) {
        futures::future::try_join_all(chunk.iter().map(|it| store.insert(std::slice::from_ref(it)))).await?;
    }
    Ok(())
}

/// Writes `n` unread items and the counters that go with them the fast way (BatchWriteItem,
/// 25 at a time): the rows [`seed`]'s transactions would make, for a large inbox.
async fn bulk_seed(store: &Store, user: &str, n: u64) -> anyhow::Result<()> {
    bulk_seed_expiring(store, user, n, herald_client::token::now_secs() + 86_400).await
}

/// [`bulk_seed`] with the items' `expires_at`.
async fn bulk_seed_expiring(store: &Store, user: &str, n: u64, expires: u64) -> anyhow::Result<()> {
    use aws_sdk_dynamodb::types::{AttributeValue as A, PutRequest, WriteRequest};
    let rows: Vec<WriteRequest> = (1..=n)
        .map(|k| {
            let put = PutRequest::builder()
                .item("user", A::S(user.into()))
                .item("nid", A::S(format!("m-{k:05}")))
                .item("cursor", A::N(Cursor::new(EPOCH, k).sort_key().to_string()))
                .item("kind", A::S("test".into()))
                .item("title", A::S("t".into()))
                .item("created_at", A::S("2026-12-01T00:00:00Z".into()))
                .item("read", A::Bool(false))
                .item("expires_at", A::N(expires.to_string()))
                .build()
                .expect("a complete item");
            WriteRequest::builder().put_request(put).build()
        })
        .collect();
    let table = store.tables().notifications.clone();
    for chunk in rows.chunks(25) {
        let mut pending = std::collections::HashMap::from([(table.clone(), chunk.to_vec())]);
        while !pending.is_empty() {
            let out = store.client().batch_write_item().set_request_items(Some(pending)).send().await?;
            pending = out.unprocessed_items.unwrap_or_default().into_iter().filter(|(_, v)| !v.is_empty()).collect();
        }
    }
    store
        .client()
        .put_item()
        .table_name(&store.tables().users)
        .item("user", A::S(user.into()))
        .item("unread", A::N(n.to_string()))
        .item("ins", A::N(n.to_string()))
        .send()
        .await?;
    Ok(())
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:05}")).collect()
}

/// Percent-encodes every byte outside the unreserved set.
fn enc(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn get(stack: &Stack, gw: usize, path: &str, token: &str) -> anyhow::Result<Value> {
    let r = stack.http(gw, "GET", path, Some(token), None).await?;
    anyhow::ensure!(r.status == 200, "GET {path}: {} {}", r.status, r.body);
    Ok(r.json())
}

async fn post(stack: &Stack, gw: usize, path: &str, token: &str) -> anyhow::Result<(u16, Value)> {
    let r = stack.http(gw, "POST", path, Some(token), None).await?;
    Ok((r.status, r.json()))
}

async fn unread(stack: &Stack, token: &str) -> anyhow::Result<u64> {
    Ok(get(stack, 0, "/v1/inbox/unread-count", token).await?["unread"].as_u64().unwrap_or(u64::MAX))
}

#[tokio::test]
async fn pages_have_no_gap_and_no_repeat_while_more_arrive() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions { start_runner: false, ..Default::default() }).await?;
    let store = store(&stack);
    let first = ids("p", 250);
    seed(&store, "pager", &first, 1).await?;
    let token = stack.token("pager");

    // 50 more arrive while the client pages through with 37 per page.
    let later = ids("q", 50);
    let inserting = {
        let store = store.clone();
        let later = later.clone();
        tokio::spawn(async move {
            for (k, id) in later.iter().enumerate() {
                seed(&store, "pager", std::slice::from_ref(id), 251 + k as u64).await?;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            anyhow::Ok(())
        })
    };
    let mut seen = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let path = match &before {
            None => "/v1/inbox?limit=37".to_owned(),
            Some(b) => format!("/v1/inbox?limit=37&before={b}"),
        };
        let page = get(&stack, 0, &path, &token).await?;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        assert!(items.len() <= 37);
        for it in &items {
            seen.push((
                it["cursor"].as_str().unwrap().parse::<u128>()?,
                it["notification"]["id"].as_str().unwrap().to_owned(),
            ));
        }
        match page["next"].as_str() {
            Some(n) => before = Some(n.to_owned()),
            None => break,
        }
    }
    inserting.await??;
    // Newest first, each once, and every one of the first 250 (those stored later are above the
    // first page, which the client gets live).
    assert!(seen.windows(2).all(|w| w[0].0 > w[1].0), "not newest first");
    let unique: HashSet<&String> = seen.iter().map(|(_, id)| id).collect();
    assert_eq!(unique.len(), seen.len(), "a repeat");
    for id in &first {
        assert!(unique.contains(id), "{id} missing");
    }
    let total = get(&stack, 0, "/v1/inbox?limit=100", &token).await?;
    assert_eq!(total["items"][0]["notification"]["id"], later[49].as_str(), "the newest comes first");
    assert_eq!(total["items"][0]["cursor"], Cursor::new(EPOCH, 300).to_string());

    // Limits and filters.
    for bad in ["limit=0", "limit=101", "limit=x", "before=abc", "unread=maybe"] {
        let r = stack.http(0, "GET", &format!("/v1/inbox?{bad}"), Some(&token), None).await?;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "bad_request");
    }
    let sevens = get(&stack, 0, "/v1/inbox?kind=seven&limit=100", &token).await?;
    assert_eq!(sevens["items"].as_array().unwrap().len(), 30, "ids ending in 7 have kind seven");
    Ok(())
}

#[tokio::test]
async fn the_unread_count_is_exact_through_reads_read_all_and_redeliveries() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions { start_runner: false, ..Default::default() }).await?;
    let store = store(&stack);
    let token = stack.token("counter");
    let hundred = ids("c", 100);
    seed(&store, "counter", &hundred, 1).await?;
    assert_eq!(unread(&stack, &token).await?, 100);
    for id in &hundred[..10] {
        let (status, body) = post(&stack, 0, &format!("/v1/inbox/{id}/read"), &token).await?;
        assert_eq!((status, &body["read"]), (200, &json!(true)), "{body}");
    }
    // Reading one again changes nothing.
    let (_, again) = post(&stack, 0, &format!("/v1/inbox/{}/read", hundred[0]), &token).await?;
    assert_eq!(again["unread"], 90);
    assert_eq!(unread(&stack, &token).await?, 90);
    let (status, body) = post(&stack, 0, "/v1/inbox/read-all", &token).await?;
    assert_eq!((status, body), (200, json!({"unread": 0})));
    assert_eq!(unread(&stack, &token).await?, 0);
    let five = ids("d", 5);
    seed(&store, "counter", &five, 101).await?;
    assert_eq!(unread(&stack, &token).await?, 5);
    // The same notifications delivered again: nothing changes.
    seed(&store, "counter", &five, 101).await?;
    seed(&store, "counter", &hundred[..3], 1).await?;
    assert_eq!(unread(&stack, &token).await?, 5);

    // Unread after read-all wins over the watermark; archive marks read and hides the item.
    let (_, u) = post(&stack, 0, &format!("/v1/inbox/{}/unread", hundred[50]), &token).await?;
    assert_eq!(u, json!({"id": hundred[50], "read": false, "unread": 6}));
    let only_unread = get(&stack, 0, "/v1/inbox?unread=true&limit=100", &token).await?;
    let listed: HashSet<&str> =
        only_unread["items"].as_array().unwrap().iter().map(|i| i["notification"]["id"].as_str().unwrap()).collect();
    let mut expected: HashSet<&str> = five.iter().map(String::as_str).collect();
    expected.insert(&hundred[50]);
    assert_eq!(listed, expected);
    let (_, a) = post(&stack, 0, &format!("/v1/inbox/{}/archive", five[0]), &token).await?;
    assert_eq!(a, json!({"id": five[0], "read": true, "unread": 5}));
    let page = get(&stack, 0, "/v1/inbox?limit=100", &token).await?;
    assert!(page["items"].as_array().unwrap().iter().all(|i| i["notification"]["id"] != five[0].as_str()));
    let archived = get(&stack, 0, "/v1/inbox?archived=true", &token).await?;
    assert_eq!(archived["items"].as_array().unwrap().len(), 1);
    assert_eq!(archived["items"][0]["notification"]["read"], true);
    assert_eq!(unread(&stack, &token).await?, 5);
    Ok(())
}

#[tokio::test]
async fn read_all_is_one_write_for_ten_thousand_notifications() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions { start_runner: false, ..Default::default() }).await?;
    let store = store(&stack);
    bulk_seed(&store, "many", 10_000).await?;
    let token = stack.token("many");
    assert_eq!(unread(&stack, &token).await?, 10_000);
    let requests = |metrics: &str, ops: &[&str]| -> u64 {
        metrics
            .lines()
            .filter(|l| ops.iter().any(|op| l.starts_with(&format!("herald_store_requests_total{{op=\"{op}\"}}"))))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    const WRITES: &[&str] = &["put", "transact_write", "batch_write", "update", "delete"];
    const ALL: &[&str] = &["put", "transact_write", "batch_write", "update", "delete", "get", "query", "batch_get"];
    let metrics_url = format!("http://{}/metrics", stack.admin_addrs[0]);
    let before = herald_tests::stack::http_get(&metrics_url).await?.1;
    let (status, _) = post(&stack, 0, "/v1/inbox/read-all", &token).await?;
    assert_eq!(status, 200);
    let after = herald_tests::stack::http_get(&metrics_url).await?.1;
    let writes = requests(&after, WRITES) - requests(&before, WRITES);
    let total = requests(&after, ALL) - requests(&before, ALL);
    println!("read-all of 10,000 notifications: {writes} write request(s), {total} store request(s) in all");
    assert_eq!(writes, 1, "read-all is one write");
    assert!(total <= 3, "{total} requests");
    assert_eq!(unread(&stack, &token).await?, 0);
    let page = get(&stack, 0, "/v1/inbox?limit=100&unread=true", &token).await?;
    assert_eq!(page["items"].as_array().unwrap().len(), 0);
    Ok(())
}

#[tokio::test]
async fn ids_of_any_shape_work_and_another_users_notification_is_out_of_reach() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions { start_runner: false, ..Default::default() }).await?;
    let store = store(&stack);
    let odd: Vec<String> = ["a/b", "what?", "#hash", "with space", "ünïcødé", "..", "a%2Fb", "read-all"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    seed(&store, "owner", &odd, 1).await?;
    let owner = stack.token("owner");
    for id in &odd {
        let (status, body) = post(&stack, 0, &format!("/v1/inbox/{}/read", enc(id)), &owner).await?;
        assert_eq!(status, 200, "{id}: {body}");
        assert_eq!(body["id"], id.as_str());
    }
    assert_eq!(unread(&stack, &owner).await?, 0);
    // Another user: every change is a 404, and nothing of the owner's moves.
    let other = stack.token("intruder");
    for action in ["read", "unread", "archive"] {
        let (status, body) = post(&stack, 0, &format!("/v1/inbox/{}/{action}", enc(&odd[0])), &other).await?;
        assert_eq!(status, 404, "{action}: {body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    assert_eq!(get(&stack, 0, "/v1/inbox", &other).await?["items"], json!([]));
    assert_eq!(unread(&stack, &owner).await?, 0);
    let (status, _) = post(&stack, 0, &format!("/v1/inbox/{}/unread", enc("no such id")), &owner).await?;
    assert_eq!(status, 404);

    // Service tokens are refused on user endpoints; nothing at all without a token.
    let svc = stack.service_token("svc", "publish admin");
    assert_eq!(stack.http(0, "GET", "/v1/inbox", Some(&svc), None).await?.status, 403);
    assert_eq!(stack.http(0, "GET", "/v1/inbox/unread-count", None, None).await?.status, 401);
    Ok(())
}

/// A copy is pushed before it is stored (a big team's copies seconds before), so a device can mark
/// read an id the inbox does not have yet: the client keeps trying the 404 for as long as it was
/// told, and the copy ends up stored read; without the wait, or past it, the 404 stands.
#[tokio::test]
async fn a_read_sent_before_the_copy_is_stored_waits_for_it_in_the_client() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions { start_runner: false, ..Default::default() }).await?;
    let store = store(&stack);
    let url = format!("http://{}", stack.gateway_addr(0));
    let token = stack.token("early");
    let patient = herald_client::Inbox::new(&url, token.clone())?.wait_for_store(Duration::from_secs(10));
    let marking = tokio::spawn(async move { patient.read("late").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!marking.is_finished(), "the read waits while the copy is not stored");
    seed(&store, "early", &["late".to_owned()], 1).await?;
    let state = marking.await??;
    assert!(state.read);
    assert_eq!(state.unread, 0);
    let page = get(&stack, 0, "/v1/inbox", &token).await?;
    assert_eq!(page["items"][0]["notification"]["id"], "late");
    assert_eq!(page["items"][0]["notification"]["read"], true);
    assert_eq!(unread(&stack, &token).await?, 0);

    let plain = herald_client::Inbox::new(&url, token.clone())?;
    let refused = plain.archive("never").await.expect_err("no such id");
    assert!(matches!(refused, herald_client::http::ApiError::Status { status: 404, .. }), "{refused}");
    let brief = plain.wait_for_store(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let refused = brief.unread("never").await.expect_err("no such id");
    assert!(matches!(refused, herald_client::http::ApiError::Status { status: 404, .. }), "{refused}");
    assert!(started.elapsed() >= Duration::from_millis(300), "the 404 came after the wait");
    Ok(())
}

#[tokio::test]
async fn two_devices_on_two_gateways_see_each_others_reads_live() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions { start_runner: false, gateways: 2, ..Default::default() }).await?;
    let store = store(&stack);
    let token = stack.token("two-devices");
    seed(&store, "two-devices", &ids("t", 3), 1).await?;
    let mut phone = stack.connect_to(0, "two-devices", None).await?;
    let mut laptop = stack.connect_to(1, "two-devices", None).await?;
    let (status, _) = post(&stack, 0, "/v1/inbox/t-00001/read", &token).await?;
    assert_eq!(status, 200);
    for device in [&mut phone, &mut laptop] {
        assert_eq!(next_frame(device).await?, Event::Read { ids: vec!["t-00001".into()], read: true });
        assert_eq!(next_frame(device).await?, Event::Unread { count: 2 });
    }
    let (status, _) = post(&stack, 1, "/v1/inbox/t-00001/unread", &token).await?;
    assert_eq!(status, 200);
    for device in [&mut phone, &mut laptop] {
        assert_eq!(next_frame(device).await?, Event::Read { ids: vec!["t-00001".into()], read: false });
        assert_eq!(next_frame(device).await?, Event::Unread { count: 3 });
    }
    post(&stack, 1, "/v1/inbox/read-all", &token).await?;
    for device in [&mut phone, &mut laptop] {
        assert_eq!(next_frame(device).await?, Event::Read { ids: vec!["*".into()], read: true });
        assert_eq!(next_frame(device).await?, Event::Unread { count: 0 });
    }
    // Another user's device hears nothing of it.
    let mut stranger = stack.connect_to(1, "stranger", None).await?;
    post(&stack, 0, "/v1/inbox/t-00002/unread", &token).await?;
    assert!(tokio::time::timeout(Duration::from_millis(500), next_event(&mut stranger)).await.is_err());
    Ok(())
}

/// Frames until `want` notification ids have arrived and the last `unread` says `count`.
async fn until_counted(c: &mut herald_client::Connection, want: usize, count: u64) -> anyhow::Result<Vec<Event>> {
    let mut seen = Vec::new();
    loop {
        let e = next_frame(c).await?;
        seen.push(e.clone());
        let notes = seen.iter().filter(|e| matches!(e, Event::Notification { .. })).count();
        if notes == want && e == (Event::Unread { count }) {
            return Ok(seen);
        }
    }
}

#[tokio::test]
async fn a_stored_notification_updates_the_badge_of_every_device_with_the_exact_count() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions { gateways: 2, ..Default::default() }).await?;
    let token = stack.token("badge");
    let mut phone = stack.connect_to(0, "badge", None).await?;
    let mut laptop = stack.connect_to(1, "badge", None).await?;
    stack.publish("b-1", &["badge"]).await?;
    stack.publish("b-2", &["badge"]).await?;
    for device in [&mut phone, &mut laptop] {
        until_counted(device, 2, 2).await?;
    }
    // A read then a new notification: the count a device ends on is the stored one.
    post(&stack, 0, "/v1/inbox/b-1/read", &token).await?;
    stack.publish("b-3", &["badge"]).await?;
    for device in [&mut phone, &mut laptop] {
        until_counted(device, 1, 2).await?;
    }
    assert_eq!(unread(&stack, &token).await?, 2);
    // A count that arrives late (published before the ones already sent, as a slow process
    // would) is passed over: the badge never goes back to an older count.
    let stale = herald_core::state::ReadEvent::count(99, 1);
    let subject = herald_core::subject::state_subject("badge");
    stack.client.publish(subject, serde_json::to_vec(&stale)?.into()).await?;
    stack.client.flush().await?;
    for device in [&mut phone, &mut laptop] {
        let late = tokio::time::timeout(Duration::from_millis(500), next_frame(device)).await;
        assert!(late.is_err(), "a stale count was sent: {late:?}");
    }
    // Another user's device hears none of it.
    let mut stranger = stack.connect_to(1, "stranger", None).await?;
    stack.publish("b-4", &["badge"]).await?;
    until_counted(&mut phone, 1, 3).await?;
    assert!(tokio::time::timeout(Duration::from_millis(500), next_frame(&mut stranger)).await.is_err());
    Ok(())
}

#[tokio::test]
async fn a_user_who_never_returns_has_expired_items_swept_and_the_count_stays_exact() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions {
        env: vec![("HERALD_SWEEP_INTERVAL_SECONDS".into(), "1".into())],
        ..Default::default()
    })
    .await?;
    expired_items_are_swept(&stack).await
}

/// A Lambda deployment has no runner: the bridge sweeps.
#[tokio::test]
async fn in_a_lambda_deployment_the_bridge_sweeps() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions { start_runner: false, ..Default::default() }).await?;
    // Nothing is published, so nothing is invoked: no Lambda needs to answer.
    let vars =
        stack.vars().with("HERALD_SWEEP_INTERVAL_SECONDS", "1").with("HERALD_LAMBDA_ENDPOINT", "http://127.0.0.1:9");
    let (_bridge, _) = herald_tests::procs::bridge(&vars).await?;
    expired_items_are_swept(&stack).await
}

async fn expired_items_are_swept(stack: &Stack) -> anyhow::Result<()> {
    let store = store(stack);
    // 250 unread items that expired yesterday (three transactions of 99 to remove), then three
    // fresh ones; and a user with nothing expired, untouched.
    bulk_seed_expiring(&store, "gone", 250, herald_client::token::now_secs() - 86_400).await?;
    seed(&store, "gone", &ids("fresh", 3), 251).await?;
    seed(&store, "present", &ids("p", 2), 1).await?;
    assert_eq!(store.counters("gone").await?.unread, 253);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while store.counters("gone").await?.unread != 3 {
        anyhow::ensure!(std::time::Instant::now() < deadline, "not swept within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let page = store.list("gone", 100, None, &Default::default()).await?;
    let left: Vec<String> = page.items.iter().map(|i| i.notification.id.clone()).collect();
    assert_eq!(left, vec!["fresh-00002", "fresh-00001", "fresh-00000"]);
    assert_eq!(store.counters("present").await?.unread, 2);
    assert_eq!(store.list("present", 100, None, &Default::default()).await?.items.len(), 2);
    Ok(())
}

#[tokio::test]
async fn preferences_and_teams_over_http() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions { start_runner: false, ..Default::default() }).await?;
    let user = stack.token("prefs");
    let r = stack.http(0, "GET", "/v1/preferences", Some(&user), None).await?;
    assert_eq!((r.status, r.json()), (200, json!({"muted_kinds": []})));
    let body = json!({"muted_kinds": ["b.kind", "a.kind", "b.kind"]});
    let r = stack.http(0, "PUT", "/v1/preferences", Some(&user), Some(&body)).await?;
    assert_eq!((r.status, r.json()), (200, json!({"muted_kinds": ["a.kind", "b.kind"]})));
    let r = stack.http(0, "GET", "/v1/preferences", Some(&user), None).await?;
    assert_eq!(r.json(), json!({"muted_kinds": ["a.kind", "b.kind"]}));
    let r = stack.http(0, "PUT", "/v1/preferences", Some(&user), Some(&json!({"muted": []}))).await?;
    assert_eq!(r.status, 400, "{}", r.body);

    // Teams: an admin service manages members; a user token or a publish-only token cannot.
    let admin = stack.service_token("ops", "admin");
    for u in ["u/1", "u 2", "ü3", "u4", "u5"] {
        let r = stack
            .http(0, "PUT", &format!("/v1/teams/{}/members/{}", enc("team.7"), enc(u)), Some(&admin), None)
            .await?;
        assert_eq!(r.status, 204, "{}", r.body);
    }
    let r = stack.http(0, "DELETE", &format!("/v1/teams/{}/members/u4", enc("team.7")), Some(&admin), None).await?;
    assert_eq!(r.status, 204);
    let mut members = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            None => format!("/v1/teams/{}/members?limit=2", enc("team.7")),
            Some(a) => format!("/v1/teams/{}/members?limit=2&after={}", enc("team.7"), enc(a)),
        };
        let page = stack.http(0, "GET", &path, Some(&admin), None).await?.json();
        members.extend(page["members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_owned()));
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
    }
    assert_eq!(members, ["u 2", "u/1", "u5", "ü3"]);
    for token in [stack.token("a-user"), stack.service_token("svc", "publish")] {
        let r = stack.http(0, "PUT", "/v1/teams/t/members/x", Some(&token), None).await?;
        assert_eq!(r.status, 403, "{}", r.body);
        let r = stack.http(0, "GET", "/v1/teams/t/members", Some(&token), None).await?;
        assert_eq!(r.status, 403, "{}", r.body);
    }
    let r = stack.http(0, "GET", "/v1/teams/t/members?limit=1001", Some(&admin), None).await?;
    assert_eq!(r.status, 400);
    Ok(())
}

#[tokio::test]
async fn after_reset_the_inbox_has_everything_still_stored_and_a_replay_carries_read_state() -> anyhow::Result<()> {
    // The replay buffer keeps 5 per user; the inbox keeps everything.
    let stack = Stack::start(StackOptions { user_max_per_subject: 5, ..Default::default() }).await?;
    let token = stack.token("away");
    let mut c = stack.connect("away", None).await?;
    stack.publish("first", &["away"]).await?;
    let cursor = match next_event(&mut c).await? {
        Event::Notification { cursor, .. } => cursor,
        other => anyhow::bail!("expected the first notification, got {other:?}"),
    };
    drop(c);
    let ids: Vec<String> = (0..20).map(|i| format!("away-{i:02}")).collect();
    for id in &ids {
        stack.publish(id, &["away"]).await?;
    }
    // Wait until all are stored (the functions write them after publishing).
    for _ in 0..100 {
        if unread(&stack, &token).await? == 21 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(unread(&stack, &token).await?, 21);
    let (status, _) = post(&stack, 0, "/v1/inbox/away-19/read", &token).await?;
    assert_eq!(status, 200);

    let mut c = herald_client::Connection::connect(&stack.ws_url(0), &token, Some(&cursor)).await?;
    let mut got_reset = false;
    for _ in 0..5 {
        if let Event::Reset { .. } = next_event(&mut c).await? {
            got_reset = true;
            break;
        }
    }
    assert!(got_reset, "the first cursor is older than the buffer keeps");
    let page = get(&stack, 0, "/v1/inbox?limit=100", &token).await?;
    let listed: Vec<&str> =
        page["items"].as_array().unwrap().iter().map(|i| i["notification"]["id"].as_str().unwrap()).collect();
    let mut expected: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    expected.push("first");
    assert_eq!(listed, expected, "everything, newest first");
    assert_eq!(page["items"][0]["notification"]["read"], true);

    // A reconnect from a cursor the buffer still has replays away-19 with read: true.
    let from = page["items"][2]["cursor"].as_str().unwrap().to_owned(); // away-17
    let mut c = herald_client::Connection::connect(&stack.ws_url(0), &token, Some(&from)).await?;
    let mut replayed = Vec::new();
    loop {
        match next_event(&mut c).await? {
            Event::Notification { notification, .. } => replayed.push((notification.id, notification.read)),
            Event::Replayed { .. } => break,
            _ => {}
        }
    }
    assert_eq!(replayed, vec![("away-18".to_owned(), false), ("away-19".to_owned(), true)]);
    Ok(())
}
