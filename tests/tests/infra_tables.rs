//! The AWS templates against the code that uses their tables: every table and index herald-store
//! creates locally exists in `infra/aws/tables.yaml` with the same keys, and every DynamoDB call
//! herald-store makes is allowed by the functions' and the gateway's IAM policies, on every
//! table. (The store's data model once moved on and the templates did not: the first write in
//! the cloud would have been refused.)

use std::collections::BTreeSet;

use herald_core::config::{DynamoConfig, Vars};
use herald_store::tables::{BY_CURSOR, Tables};
use herald_tests::servers::repo_root;

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The IAM actions each call of the AWS SDK needs (a transaction needs those of its items).
fn iam_actions(call: &str) -> &'static [&'static str] {
    match call {
        "transact_write_items" => &["PutItem", "UpdateItem", "DeleteItem", "ConditionCheckItem"],
        "batch_get_item" => &["BatchGetItem"],
        "batch_write_item" => &["BatchWriteItem"],
        "delete_item" => &["DeleteItem"],
        "get_item" => &["GetItem"],
        "put_item" => &["PutItem"],
        "query" => &["Query"],
        "scan" => &["Scan"],
        "update_item" => &["UpdateItem"],
        // Table administration: local servers only (the cloud's tables are the template's).
        "describe_table" | "create_table" => &[],
        other => panic!("a DynamoDB call this test does not know: {other}; add what IAM needs for it"),
    }
}

/// The SDK calls made in `dir`'s sources (`.name()` on a DynamoDB client), by file.
fn calls_in(dir: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut stack = vec![repo_root().join(dir)];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for call in [
                    "transact_write_items",
                    "batch_get_item",
                    "batch_write_item",
                    "delete_item",
                    "get_item",
                    "put_item",
                    "query",
                    "scan",
                    "update_item",
                    "describe_table",
                    "create_table",
                    "transact_get_items",
                    "execute_statement",
                ] {
                    if text.contains(&format!(".{call}()")) {
                        found.push((path.display().to_string(), call.to_owned()));
                    }
                }
            }
        }
    }
    found
}

/// The `dynamodb:` actions and table resources of the policy statement that names `marker`.
fn policy(template: &str, marker: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let at = template.find(marker).unwrap_or_else(|| panic!("{marker} not found"));
    let rest = &template[at..];
    let end = rest.find("\n\n").unwrap_or(rest.len());
    let block = &rest[..end];
    let actions = block
        .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
        .filter_map(|w| w.strip_prefix("dynamodb:"))
        .map(str::to_owned)
        .collect();
    let tables =
        block.lines().filter_map(|l| l.split("table/${TablePrefix}").nth(1)).map(|t| t.trim().to_owned()).collect();
    (actions, tables)
}

#[test]
fn the_templates_tables_are_the_stores_and_the_policies_allow_every_call_it_makes() {
    // Names without the prefix, which the templates take as a parameter.
    let config = DynamoConfig::from_vars(&Vars::from_pairs([]));
    let t = Tables::new(&config);
    let names: Vec<&str> = [&t.notifications, &t.users, &t.preferences, &t.team_members]
        .map(|n| n.strip_prefix(config.table_prefix.as_str()).expect("prefixed"))
        .to_vec();
    let template = read("infra/aws/tables.yaml");
    for name in &names {
        assert!(template.contains(&format!("TableName: !Sub \"${{TablePrefix}}{name}\"")), "tables.yaml has no {name}");
    }
    assert!(template.contains(&format!("IndexName: {BY_CURSOR}")), "tables.yaml has no {BY_CURSOR} index");
    assert!(template.contains("{ AttributeName: cursor, AttributeType: N }"), "by_cursor's key is a number");
    assert!(
        !template.contains("TimeToLiveSpecification"),
        "DynamoDB's TTL would delete unread items behind the counts"
    );

    let mut want = names.clone();
    let index = format!("{}/index/{BY_CURSOR}", names[0]);
    want.push(&index);
    let calls = calls_in("store/src");
    assert!(calls.iter().any(|(_, c)| c == "transact_write_items"), "the scan of store/src found nothing: {calls:?}");
    for (file, marker, excluded) in [
        ("infra/aws/functions.yaml", "  DynamoDbAccess:", &[][..]),
        // The gateway never sweeps every user (only the functions do): no Scan.
        ("infra/aws/gateway.yaml", "PolicyName: herald-tables", &["Scan"][..]),
    ] {
        let (actions, resources) = policy(&read(file), marker);
        for t in &want {
            assert!(resources.contains(*t), "{file}'s policy does not cover {t}: {resources:?}");
        }
        for (src, call) in &calls {
            for a in iam_actions(call) {
                if excluded.contains(a) {
                    continue;
                }
                assert!(actions.contains(*a), "{file}'s policy lacks dynamodb:{a}, needed by {call} in {src}");
            }
        }
    }
}
