//! Herald's serverless-style functions and `herald-functions`, the runner that hosts them on a
//! JetStream durable pull consumer.
//!
//! A function is a plain async handler over an event with its dependencies behind the traits in
//! [`ports`], so it unit-tests without servers and runs the same under the runner or on Lambda.

pub mod aws;
pub mod batch;
pub mod bridge;
pub mod coalesce;
pub mod config;
pub mod deadletters;
pub mod deliver;
pub mod dynamo;
pub mod http;
pub mod lambda;
pub mod metrics;
pub mod nats;
pub mod order;
pub mod ports;
pub mod pull;
pub mod redrive;
pub mod runner;
pub mod settle;
pub mod streams;
pub mod sweep;

pub use config::Config;
pub use runner::{RunError, run};
