//! Herald's shared model: what a creator publishes, what a recipient receives, how ids map to
//! NATS subjects, and the typed configuration every deployable reads once at start.

pub mod config;
pub mod cursor;
pub mod metrics;
pub mod nats;
pub mod nats_auth;
pub mod nats_tls;
pub mod notification;
pub mod request;
pub mod secret;
pub mod signal;
pub mod state;
pub mod subject;

pub use cursor::{BadCursor, Cursor};
pub use notification::{Notification, user_msg_id};
pub use request::{InvalidRequest, MAX_ID_BYTES, MAX_REQUEST_BYTES, NotificationRequest, Recipients, ValidRequest};
