//! The harness for Herald's integration tests: real servers on free ports.
//!
//! [`NatsServer`] and [`LocalDynamo`] (dynoxide, in the `herald-servers` crate the benchmarks
//! share) start the pinned binaries that `scripts/test` installs and kill them on drop; [`Stack`]
//! adds a functions runner and gateways, in this process, each on a port the OS picked, and stops
//! them on drop.

pub mod chaos;
pub mod cluster;
pub mod http;
pub mod lambda_emulator;
pub mod procs;
pub mod raw;
pub mod stack;

/// The server processes, shared with the benchmarks (`herald-servers`).
pub use herald_servers as servers;

pub use servers::{LocalDynamo, NatsServer};
pub use stack::{Stack, StackOptions};

/// Installs a compact log subscriber once (`HERALD_TEST_LOG=debug` to see more).
pub fn init_logging() {
    let filter = std::env::var("HERALD_TEST_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}
