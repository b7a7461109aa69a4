//! `herald token`: development tokens, signed HS256 with the secret the gateway verifies.

use anyhow::Context;
use herald_client::token;

use crate::args::TokenArgs;

pub fn run(a: TokenArgs) -> anyhow::Result<()> {
    let t = match &a.scope {
        Some(scope) => {
            let secret = a.service_secret.as_ref().or(a.secret.as_ref()).context(
                "set HERALD_SERVICE_JWT_SECRET (or HERALD_JWT_SECRET, or --service-secret) to sign a service token",
            )?;
            token::service_token(secret, &a.audience, &a.user, scope, a.ttl)
        }
        None => {
            let secret = a.secret.as_ref().context("set HERALD_JWT_SECRET (or --secret) to sign a user token")?;
            token::user_token(secret, &a.audience, &a.user, a.ttl)
        }
    };
    println!("{t}");
    Ok(())
}
