//! Herald's Rust SDK: an idempotent [`Publisher`] for creators, a cursor-keeping WebSocket
//! [`Connection`] for clients, and [`token`] for minting development tokens.

pub mod connection;
pub mod publisher;
pub mod token;

pub use connection::{Connection, ConnectionError, Event};
pub use herald_core::{NotificationRequest, Recipients};
pub use publisher::{PublishError, Published, Publisher};
