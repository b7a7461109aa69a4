//! The first frame: `hello`, authenticated by its token or the upgrade's header token.

use std::net::IpAddr;

use crate::ws::{Error as WsError, Message};
use futures::StreamExt;

use super::End;
use crate::auth::{AuthError, Claims};
use crate::protocol::{ClientFrame, close};
use crate::state::AppState;
use crate::upgrade::Ws;

/// Waits for `hello` and authenticates it (or the upgrade's header token).
pub(super) async fn handshake(
    socket: &mut Ws,
    state: &AppState,
    ip: IpAddr,
    header_claims: Option<Box<Claims>>,
) -> Result<(Claims, Option<String>), End> {
    let m = &state.metrics;
    let first = tokio::time::timeout(state.config.hello_timeout, next_text(socket, state, ip)).await;
    let text = match first {
        Err(_) => {
            m.auth_failure("hello_timeout");
            return Err(End::Close {
                code: close::UNAUTHENTICATED,
                error: "unauthenticated",
                message: "no hello in time".into(),
            });
        }
        Ok(t) => t?,
    };
    let (token, cursor) = match ClientFrame::parse(&text).map_err(End::protocol)? {
        ClientFrame::Hello { token, cursor } => (token, cursor),
        _ => return Err(End::protocol("the first frame must be hello")),
    };
    let claims = match (token, header_claims) {
        (Some(t), _) => state.verify_user(&t),
        (None, Some(c)) => Ok(*c),
        (None, None) => Err(AuthError::Missing),
    };
    let claims = claims.inspect_err(|e| m.auth_failure(e.code())).map_err(End::auth)?;
    m.handshakes.inc();
    Ok((claims, cursor))
}

/// The next text frame; pings are answered by the socket itself, and count toward the IP's
/// frame limit (a ping flood before `hello` is closed with 4029 too).
async fn next_text(socket: &mut Ws, state: &AppState, ip: IpAddr) -> Result<String, End> {
    loop {
        match socket.next().await {
            None | Some(Ok(Message::Close(_))) => return Err(End::Gone),
            Some(Err(e)) => return Err(read_error(e)),
            Some(Ok(Message::Text(t))) => return Ok(t),
            Some(Ok(Message::Binary(_))) => {
                return Err(End::protocol("binary frames are not part of the protocol"));
            }
            Some(Ok(Message::Pong(_))) => {}
            Some(Ok(Message::Ping(_))) => {
                if !state.frame_limit.allow(ip) {
                    state.metrics.rate_limited.inc();
                    return Err(End::Close {
                        code: close::TOO_SLOW,
                        error: "rate_limited",
                        message: "too many frames".into(),
                    });
                }
            }
        }
    }
}

/// A frame over the size limit or one that breaks RFC 6455 is a protocol error (4008, with the
/// reason); a failed read means the peer is gone.
pub(super) fn read_error(e: WsError) -> End {
    match e {
        WsError::TooLarge { .. } => End::protocol(format!("frame too large: {e}")),
        WsError::Protocol(_) => End::protocol(e.to_string()),
        WsError::Io(_) | WsError::Closed => End::Gone,
    }
}
