//! A WebSocket client of CONTRACT §3 that keeps its cursor and drops what it has already seen.
//!
//! Cursors are opaque to applications; this SDK knows Herald's are decimal sequences and
//! compares them by length then text, so a copy across reconnects is dropped without parsing.

use futures::{SinkExt, StreamExt};
use herald_core::Notification;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// A frame from the server.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// `cursor`: where a first connection starts (resume from it if nothing arrives before a
    /// reconnect).
    Welcome {
        user: String,
        session: String,
        expires_at: u64,
        #[serde(default)]
        cursor: Option<String>,
    },
    Notification {
        cursor: String,
        replay: bool,
        notification: Notification,
    },
    Replayed {
        cursor: Option<String>,
        count: u64,
    },
    Reset {
        reason: String,
    },
    TokenExpiring {
        expires_at: u64,
    },
    /// `read: false` when the ids were marked unread; `ids: ["*"]` after read-all.
    Read {
        ids: Vec<String>,
        #[serde(default = "yes")]
        read: bool,
    },
    Unread {
        count: u64,
    },
    Reconnect {
        after_ms: u64,
        reason: String,
    },
    Error {
        code: String,
        message: String,
    },
    /// The server closed the connection (code and reason of its close frame).
    #[serde(skip)]
    Closed {
        code: Option<u16>,
        reason: String,
    },
    /// A frame type this SDK does not know yet (the contract only ever adds them).
    #[serde(other)]
    Unknown,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("a frame that is not valid JSON: {0}")]
    BadFrame(#[from] serde_json::Error),
}

pub struct Connection {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    cursor: Option<String>,
    closed: bool,
}

impl Connection {
    /// Connects and sends `hello` with the token (and the cursor to resume after).
    pub async fn connect(url: &str, token: &str, cursor: Option<&str>) -> Result<Self, ConnectionError> {
        let (ws, _) = connect_async(url).await?;
        let mut c = Connection { ws, cursor: cursor.map(str::to_owned), closed: false };
        c.send_json(&json!({"type": "hello", "token": token, "cursor": cursor})).await?;
        Ok(c)
    }

    /// Connects with the token in the `Authorization` header; `hello` carries only the cursor.
    pub async fn connect_with_header(url: &str, token: &str, cursor: Option<&str>) -> Result<Self, ConnectionError> {
        let mut request = url.into_client_request()?;
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().map_err(|_| {
                tokio_tungstenite::tungstenite::Error::Url(
                    tokio_tungstenite::tungstenite::error::UrlError::UnableToConnect("bad token header".into()),
                )
            })?,
        );
        let (ws, _) = connect_async(request).await?;
        let mut c = Connection { ws, cursor: cursor.map(str::to_owned), closed: false };
        c.send_json(&json!({"type": "hello", "cursor": cursor})).await?;
        Ok(c)
    }

    /// The cursor of the newest notification received: pass it to the next `connect`.
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// The next event; notifications already seen (by cursor) are skipped. After `Closed`,
    /// every call returns `Closed` again.
    pub async fn next(&mut self) -> Result<Event, ConnectionError> {
        loop {
            if self.closed {
                return Ok(Event::Closed { code: None, reason: "closed".into() });
            }
            let msg = match self.ws.next().await {
                None => {
                    self.closed = true;
                    return Ok(Event::Closed { code: None, reason: "connection ended".into() });
                }
                Some(Err(e)) => {
                    self.closed = true;
                    return Err(e.into());
                }
                Some(Ok(m)) => m,
            };
            match msg {
                Message::Text(t) => {
                    let event: Event = serde_json::from_str(t.as_str())?;
                    if let Event::Welcome { cursor: Some(start), .. } = &event
                        && self.cursor.is_none()
                    {
                        self.cursor = Some(start.clone());
                    }
                    if let Event::Notification { cursor, .. } = &event {
                        if self.cursor.as_deref().is_some_and(|seen| !newer(cursor, seen)) {
                            continue;
                        }
                        self.cursor = Some(cursor.clone());
                    }
                    return Ok(event);
                }
                Message::Close(frame) => {
                    self.closed = true;
                    let (code, reason) = match frame {
                        Some(CloseFrame { code, reason }) => (Some(u16::from(code)), reason.as_str().to_owned()),
                        None => (None, String::new()),
                    };
                    return Ok(Event::Closed { code, reason });
                }
                _ => {}
            }
        }
    }

    pub async fn refresh(&mut self, token: &str) -> Result<(), ConnectionError> {
        self.send_json(&json!({"type": "refresh", "token": token})).await
    }

    pub async fn ack(&mut self, cursor: &str) -> Result<(), ConnectionError> {
        self.send_json(&json!({"type": "ack", "cursor": cursor})).await
    }

    /// Sends any text frame as is (tests use it to break the protocol on purpose).
    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<(), ConnectionError> {
        self.ws.send(Message::Text(text.into().into())).await?;
        Ok(())
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    async fn send_json(&mut self, v: &serde_json::Value) -> Result<(), ConnectionError> {
        self.send_text(v.to_string()).await
    }
}

fn yes() -> bool {
    true
}

/// Whether cursor `a` comes after `b` (decimal sequences: longer is larger, else by text).
pub(crate) fn newer(a: &str, b: &str) -> bool {
    (a.len(), a) > (b.len(), b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_order() {
        assert!(newer("10", "9"));
        assert!(newer("100", "99"));
        assert!(!newer("9", "9"));
        assert!(!newer("8", "10"));
    }

    #[test]
    fn unknown_frames_do_not_break_the_client() {
        let e: Event = serde_json::from_str(r#"{"type":"brand_new","x":1}"#).unwrap();
        assert_eq!(e, Event::Unknown);
    }
}
