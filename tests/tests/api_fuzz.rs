//! The HTTP API fuzzed from its own OpenAPI document (`/v1/openapi.json`) by schemathesis
//! (PyPI, pinned by `scripts/install-tools --test`), through a real gateway on the real store:
//! no answer may be a 5xx, and every answer must be one the document declares (status, content
//! type, body schema). Once with a user's token (the inbox and preferences), once with a
//! service token that may publish and manage teams; each token is refused where it does not
//! belong, which the document declares too.

use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use herald_tests::servers::{repo_root, tool};
use herald_tests::{Stack, StackOptions};

/// Cases per operation and phase: enough to reach every parameter's edge cases, small enough
/// for CI (about a minute for both runs).
const EXAMPLES: &str = "25";

fn schemathesis(base: &str, token: &str, report: &std::path::Path) -> anyhow::Result<()> {
    let st = tool("HERALD_SCHEMATHESIS", ".tools/schemathesis/bin/st")?;
    let lib = st.parent().and_then(|b| b.parent()).context("st lives in <dir>/bin")?.to_path_buf();
    let out = Command::new(&st)
        .env("PYTHONPATH", &lib)
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(repo_root())
        .args(["run", &format!("{base}/v1/openapi.json"), "--url", base])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing", "--max-examples", EXAMPLES, "--seed", "7"])
        .args(["--workers", "2", "--request-timeout", "10", "--no-color"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .arg("--report-dir")
        .arg(report)
        .stdin(Stdio::null())
        .output()
        .context("running schemathesis")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("schemathesis found problems:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

#[tokio::test]
async fn the_http_api_answers_every_generated_request_as_its_document_says() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions {
        // Fuzzing sends hundreds of requests a second for one user: the limits are not what is
        // tested here (429 is declared, but it would hide every other answer).
        env: vec![
            ("HERALD_API_USER_PER_SEC".into(), "100000".into()),
            ("HERALD_API_USER_BURST".into(), "100000".into()),
        ],
        ..Default::default()
    })
    .await?;
    let base = format!("http://{}", stack.gateway_addr(0));
    // The documented example id exists, so that read / unread / archive are exercised past 404.
    stack.publish("order-8812-shipped", &["fuzzed-user"]).await?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while stack.stored("fuzzed-user", "order-8812-shipped").await? == 0 {
        anyhow::ensure!(std::time::Instant::now() < deadline, "the seeded notification was not stored");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let report = tempfile::tempdir()?;
    let user = stack.token("fuzzed-user");
    let service = stack.service_token("fuzzer", "publish admin");
    let (base2, dir) = (base.clone(), report.path().to_owned());
    tokio::task::spawn_blocking(move || schemathesis(&base2, &user, &dir.join("user"))).await??;
    let dir = report.path().to_owned();
    tokio::task::spawn_blocking(move || schemathesis(&base, &service, &dir.join("service"))).await??;
    Ok(())
}
