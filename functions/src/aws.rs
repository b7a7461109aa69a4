//! The AWS SDK configuration every client of ours is built from, once per process (it lives in
//! `herald-store`; the Lambda bridge builds its Lambda client from it too).

pub use herald_store::client::sdk_config;
