//! The AWS SDK configuration every client of ours is built from, once per process.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::Credentials;
use herald_core::config::DynamoConfig;

/// The default AWS chain in `region`; with a local `endpoint` (a local DynamoDB server, a Lambda
/// emulator) the endpoint and fixed test credentials instead, since a laptop has none and local
/// servers do not check them.
pub async fn sdk_config(region: &str, endpoint: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region.to_owned()));
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint).credentials_provider(Credentials::new(
            "local",
            "local",
            None,
            None,
            "herald-local",
        ));
    }
    loader.load().await
}

/// A DynamoDB client for `config`; build it once per process and clone it (clones share the
/// connection pool).
pub async fn client(config: &DynamoConfig) -> Client {
    Client::new(&sdk_config(&config.region, config.endpoint.as_deref()).await)
}
