//! Cursors: where a notification sits in its user's delivery order, the same on the WebSocket,
//! in the inbox API and in the store.
//!
//! A cursor is the `HERALD_USER` stream sequence of the user's copy, qualified by the stream's
//! *epoch* (its creation time in Unix seconds). Without the epoch, a cursor kept by a client
//! across a recreation of the stream would name an unrelated notification; with it, a stale
//! cursor is recognised and answered with `reset`. Because a recreated stream is always created
//! later, `(epoch, seq)` keeps growing in delivery order across recreations, so the store can sort
//! the inbox by it.
//!
//! On the wire a cursor is the decimal form of `epoch × 10^20 + seq` (clients treat it as an
//! opaque string). Cursors minted before epochs existed are plain sequence numbers (below
//! 10^20); they parse with `epoch: None`, and `"0"` means "before the user's first
//! notification".

use std::fmt;
use std::str::FromStr;

/// `seq` occupies the low 20 decimal digits (`u64::MAX` has 20).
const SEQ_SPAN: u128 = 100_000_000_000_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cursor {
    /// The stream's creation time (Unix seconds); `None` for a legacy cursor.
    pub epoch: Option<u64>,
    /// The `HERALD_USER` stream sequence; 0 means before the first notification.
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a cursor: {0:?}")]
pub struct BadCursor(pub String);

impl Cursor {
    pub fn new(epoch: u64, seq: u64) -> Self {
        Cursor { epoch: Some(epoch), seq }
    }

    /// The number that orders cursors in the store (a DynamoDB `N` holds 38 digits; this has at
    /// most 40 only for epochs beyond the year 5138).
    pub fn sort_key(self) -> u128 {
        u128::from(self.epoch.unwrap_or(0)) * SEQ_SPAN + u128::from(self.seq)
    }

    pub fn from_sort_key(n: u128) -> Self {
        let epoch = (n / SEQ_SPAN) as u64;
        Cursor { epoch: (epoch > 0).then_some(epoch), seq: (n % SEQ_SPAN) as u64 }
    }

    /// Whether this cursor can be used against a stream of `epoch`: a legacy cursor (no epoch)
    /// is taken as the current stream's, since it was minted before epochs existed.
    pub fn belongs_to(self, epoch: u64) -> bool {
        self.epoch.is_none_or(|e| e == epoch)
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.sort_key())
    }
}

impl FromStr for Cursor {
    type Err = BadCursor;

    fn from_str(s: &str) -> Result<Self, BadCursor> {
        // Digits only: `u128::from_str` would also take a leading `+`.
        if s.is_empty() || s.len() > 39 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadCursor(s.chars().take(64).collect()));
        }
        s.parse::<u128>().map(Cursor::from_sort_key).map_err(|_| BadCursor(s.chars().take(64).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_orders_across_epochs() {
        let a = Cursor::new(1_796_000_000, 42);
        assert_eq!(a.to_string(), "179600000000000000000000000042");
        assert_eq!(a.to_string().parse::<Cursor>(), Ok(a));
        let later_stream = Cursor::new(1_796_000_100, 1);
        assert!(later_stream.sort_key() > a.sort_key());
        assert!(later_stream > a);
        let max = Cursor::new(u32::MAX as u64, u64::MAX);
        assert_eq!(max.to_string().parse::<Cursor>(), Ok(max));
    }

    #[test]
    fn legacy_cursors_have_no_epoch_and_bad_ones_are_refused() {
        assert_eq!("259".parse::<Cursor>(), Ok(Cursor { epoch: None, seq: 259 }));
        assert_eq!("0".parse::<Cursor>(), Ok(Cursor { epoch: None, seq: 0 }));
        assert!(Cursor { epoch: None, seq: 5 }.belongs_to(7));
        assert!(!Cursor::new(6, 5).belongs_to(7));
        for bad in ["", "+1", "-1", "1e3", " 1", "x", &"9".repeat(40)] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad:?}");
        }
    }
}
