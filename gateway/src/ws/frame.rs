//! RFC 6455 frames as a server reads and writes them: header parsing with every check a server
//! owes (masking, reserved bits, control-frame rules, the size limit before the payload is
//! read), and unmasked encoding.

use super::{CloseFrame, Error};

pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// A frame's header, read from the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub opcode: u8,
    pub mask: [u8; 4],
    /// Bytes of header before the payload.
    pub len: usize,
    pub payload: usize,
}

impl Header {
    /// The header at the front of `buf`, `None` while it is incomplete. A frame whose payload
    /// would pass `max_payload` is refused from its header: its payload is never buffered.
    pub fn parse(buf: &[u8], max_payload: usize) -> Result<Option<Header>, Error> {
        let [b0, b1, ..] = *buf else { return Ok(None) };
        if b0 & 0x70 != 0 {
            return Err(Error::Protocol("reserved bits set without an extension"));
        }
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0F;
        if !matches!(opcode, CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG) {
            return Err(Error::Protocol("unknown opcode"));
        }
        // A client masks every frame (RFC 6455 §5.1).
        if b1 & 0x80 == 0 {
            return Err(Error::Protocol("an unmasked client frame"));
        }
        let (payload, at) = match b1 & 0x7F {
            126 => match buf.get(2..4) {
                Some(b) => (u16::from_be_bytes([b[0], b[1]]) as u64, 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                // The most significant bit must be 0 (RFC 6455 §5.2).
                Some(b) if b[0] & 0x80 != 0 => return Err(Error::Protocol("a 64-bit length with its top bit set")),
                Some(b) => (u64::from_be_bytes(b.try_into().expect("eight bytes")), 10),
                None => return Ok(None),
            },
            n => (n as u64, 2),
        };
        if opcode >= CLOSE && (!fin || payload > 125) {
            return Err(Error::Protocol("a fragmented or oversized control frame"));
        }
        if payload > max_payload as u64 {
            return Err(Error::TooLarge { size: usize::try_from(payload).unwrap_or(usize::MAX), max: max_payload });
        }
        let Some(m) = buf.get(at..at + 4) else { return Ok(None) };
        let mask = [m[0], m[1], m[2], m[3]];
        Ok(Some(Header { fin, opcode, mask, len: at + 4, payload: payload as usize }))
    }
}

/// Unmasks a client's payload in place.
pub fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Appends one final, unmasked frame (a server never masks).
pub fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.reserve(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// Appends a close frame.
pub fn encode_close(out: &mut Vec<u8>, close: Option<&CloseFrame>) {
    let mut payload = Vec::new();
    if let Some(c) = close {
        payload.extend_from_slice(&c.code.to_be_bytes());
        // A control frame carries at most 125 bytes: the reason is cut at a character boundary.
        let mut end = c.reason.len().min(123);
        while !c.reason.is_char_boundary(end) {
            end -= 1;
        }
        payload.extend_from_slice(&c.reason.as_bytes()[..end]);
    }
    encode(out, CLOSE, &payload);
}

/// A close frame's payload: nothing, or a code and a UTF-8 reason.
pub fn parse_close(payload: &[u8]) -> Result<Option<CloseFrame>, Error> {
    match payload {
        [] => Ok(None),
        [_] => Err(Error::Protocol("a close frame with a one-byte payload")),
        [a, b, reason @ ..] => {
            let reason =
                std::str::from_utf8(reason).map_err(|_| Error::Protocol("a close reason that is not UTF-8"))?;
            Ok(Some(CloseFrame { code: u16::from_be_bytes([*a, *b]), reason: reason.into() }))
        }
    }
}

/// Whether a peer may send `code` (RFC 6455 §7.4): 1005, 1006 and 1015 are never on the wire.
pub fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A client's frame, as a client sends it: `first` is the whole first byte (FIN, RSV, opcode).
#[cfg(test)]
pub fn client(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::new();
    encode(&mut f, first & 0x0F, payload);
    f[0] = first;
    f[1] |= 0x80;
    let at = f.len() - payload.len();
    f.splice(at..at, mask);
    for (i, b) in f[at + 4..].iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_rfc_sample_frame() {
        // RFC 6455 §5.7: a masked "Hello".
        let f = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let h = Header::parse(&f, 125).unwrap().unwrap();
        assert_eq!((h.fin, h.opcode, h.len, h.payload), (true, TEXT, 6, 5));
        let mut body = f[6..].to_vec();
        unmask(&mut body, h.mask);
        assert_eq!(body, b"Hello");
    }

    #[test]
    fn reads_a_masked_text_frame_of_each_length_form() {
        for n in [0, 5, 125, 126, 300, 70_000] {
            let payload = vec![b'x'; n];
            let f = client(0x81, &payload, [1, 2, 3, 4]);
            let h = Header::parse(&f, 100_000).unwrap().unwrap();
            assert_eq!((h.fin, h.opcode, h.payload, h.len + n), (true, TEXT, n, f.len()));
            let mut body = f[h.len..].to_vec();
            unmask(&mut body, h.mask);
            assert_eq!(body, payload);
            // Every prefix short of the header is incomplete, not an error.
            for cut in 0..h.len {
                assert!(Header::parse(&f[..cut], 100_000).unwrap().is_none(), "cut at {cut} of {n}");
            }
        }
    }

    #[test]
    fn refuses_what_a_server_must_refuse() {
        let m = [9, 9, 9, 9];
        let bad = |f: &[u8]| Header::parse(f, 1000).unwrap_err();
        assert!(matches!(bad(&[0x81, 0x05, 0, 0, 0, 0, 0]), Error::Protocol(_)), "unmasked");
        for rsv in [0x40, 0x20, 0x10] {
            assert!(matches!(bad(&client(0x81 | rsv, b"x", m)), Error::Protocol(_)), "rsv {rsv:#x}");
        }
        assert!(matches!(bad(&client(0x8B, b"x", m)), Error::Protocol(_)), "opcode 0xB");
        assert!(matches!(bad(&client(0x88, &[3; 126], m)), Error::Protocol(_)), "a 126-byte close");
        assert!(matches!(bad(&[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0]), Error::Protocol(_)), "top bit");
        assert!(matches!(bad(&[0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0]), Error::TooLarge { .. }), "64-bit form");
        assert!(matches!(bad(&client(0x83, b"x", m)), Error::Protocol(_)), "opcode 3");
        assert!(matches!(bad(&client(0x09, b"x", m)), Error::Protocol(_)), "a fragmented ping");
        assert!(matches!(bad(&client(0x89, &[0; 126], m)), Error::Protocol(_)), "a 126-byte ping");
        // Refused from the header alone, before any of the payload is read.
        let big = client(0x81, &[0; 1001], m);
        assert!(matches!(bad(&big[..4]), Error::TooLarge { size: 1001, max: 1000 }));
    }

    #[test]
    fn encodes_unmasked_frames_a_client_can_read() {
        let mut out = Vec::new();
        encode(&mut out, TEXT, b"hi");
        assert_eq!(out, [0x81, 2, b'h', b'i']);
        out.clear();
        encode(&mut out, TEXT, &[0; 300]);
        assert_eq!(&out[..4], [0x81, 126, 1, 44]);
        out.clear();
        encode(&mut out, BINARY, &[0; 70_000]);
        assert_eq!(&out[..10], [0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    }

    #[test]
    fn close_frames_round_trip_and_stay_within_a_control_frame() {
        let mut out = Vec::new();
        let long = "é".repeat(100);
        encode_close(&mut out, Some(&CloseFrame { code: 4008, reason: long }));
        assert!(out.len() - 2 <= 125);
        let parsed = parse_close(&out[2..]).unwrap().unwrap();
        assert_eq!(parsed.code, 4008);
        assert_eq!(parsed.reason, "é".repeat(61));
        assert_eq!(parse_close(&[]).unwrap(), None);
        assert!(parse_close(&[3]).is_err());
        assert!(parse_close(&[3, 232, 0xFF]).is_err(), "reason not UTF-8");
        assert!(valid_close_code(1000) && valid_close_code(4029));
        assert!(!valid_close_code(1005) && !valid_close_code(999) && !valid_close_code(5000));
    }
}
