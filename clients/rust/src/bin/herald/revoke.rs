//! `herald revoke`: revokes a user's tokens, or one token, through the admin API.

use herald_client::{Admin, Revoke};

use crate::args::RevokeArgs;

pub async fn run(a: RevokeArgs) -> anyhow::Result<()> {
    let target = match (a.user, a.jti) {
        (Some(u), None) => Revoke::User(u),
        (None, Some(j)) => Revoke::Token(j),
        _ => anyhow::bail!("give exactly one of --user or --jti"),
    };
    let entry = Admin::new(&a.gateway.url, a.gateway.token)?.revoke(&target, &a.reason).await?;
    println!("{entry}");
    Ok(())
}
