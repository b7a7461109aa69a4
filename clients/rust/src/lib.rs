//! Herald's Rust SDK: publishers for creators (over NATS, [`Publisher`], or HTTP,
//! [`HttpPublisher`]), a reconnecting [`Subscriber`] and the single [`Connection`] below it for
//! clients, the [`Inbox`] API, the [`Admin`] API, and [`token`] for minting development tokens.
//!
//! ```no_run
//! use herald_client::{NotificationRequest, Publisher, Recipients};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let publisher = Publisher::connect("nats://127.0.0.1:4222").await?;
//! let request = NotificationRequest {
//!     id: "order-8812-shipped".into(),
//!     recipients: Recipients { users: vec!["u-1".into()], teams: vec![] },
//!     kind: "order.shipped".into(),
//!     title: "Your order has shipped".into(),
//!     body: None,
//!     data: None,
//!     created_at: None,
//! };
//! // Safe to retry: the id makes every publish of it one notification.
//! let published = publisher.publish("billing", &request).await?;
//! assert!(published.sequence > 0);
//! # Ok(()) }
//! ```

pub mod admin;
pub mod backoff;
pub mod connection;
pub mod http;
pub mod http_publisher;
pub mod inbox;
pub mod publisher;
pub mod subscriber;
pub mod token;

pub use admin::{Admin, Revoke};
pub use connection::{Connection, ConnectionError, Event};
pub use herald_core::{NotificationRequest, Recipients};
pub use http::ApiError;
pub use http_publisher::{Accepted, HttpPublisher};
pub use inbox::{Inbox, InboxItem, InboxPage, ListOptions, Preferences, ReadState};
pub use publisher::{PublishError, Published, Publisher};
pub use subscriber::{Subscriber, SubscriberEvent};
