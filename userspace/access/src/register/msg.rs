//! The registration messages on the wire: the payload of a relay packet of kind Control is
//! `[message type][body]`. Hand-written, fixed-order, length-prefixed big-endian fields, so
//! the layout is exact, documented once here, and decoding any bytes is a bounds-checked
//! walk that ends in a value or an error, never a panic.
//!
//! ```text
//! Register (1), client → edge
//!   edge_node u32 | ts_ms u64 | nonce [16] | eph_pub [32]
//!   | name_len u8 | name | token_len u16 | token | sig [64]
//! Accepted (2), edge → client
//!   nonce [16] | edge_node u32 | overlay_addr u32 | key_id u8 | keepalive_ms u32
//!   | timeout_ms u32 | eph_pub [32] | token_len u16 | edge token | sig [64]
//! Refused (3), edge → client
//!   nonce [16] | reason u8
//! ```
//!
//! Signatures cover a domain-separated transcript: the domain string, then (Accepted only)
//! the client's ephemeral key, then the type byte and every field before `sig` exactly as
//! encoded. The encoding is canonical (decoding is strict and nothing is optional), so the
//! transcript rebuilt from decoded fields is the bytes that were signed.

use std::fmt;

use super::refusal::Refusal;
use crate::{key::SIGNATURE_LEN, name::MAX_NAME_LEN, token::MAX_TOKEN_LEN};

/// Type byte of [`Register`].
pub const REGISTER: u8 = 1;
/// Type byte of [`Accepted`].
pub const ACCEPTED: u8 = 2;
/// Type byte of [`Refused`].
pub const REFUSED: u8 = 3;
/// Length of a registration nonce.
pub const NONCE_LEN: usize = 16;
/// Length of an X25519 public key.
pub const EPH_LEN: usize = 32;
/// Longest message: a Register with the longest name and token.
pub const MAX_MSG_LEN: usize =
    1 + 4 + 8 + NONCE_LEN + EPH_LEN + 1 + MAX_NAME_LEN + 2 + MAX_TOKEN_LEN + SIGNATURE_LEN;

/// Domain of a Register's signature.
pub const REGISTER_DOMAIN: &[u8] = b"wecan register v1";
/// Domain of an Accepted's signature.
pub const ACCEPTED_DOMAIN: &[u8] = b"wecan accepted v1";

/// Offset of a Register's nonce in its payload (after the type byte, edge_node, ts_ms).
const REGISTER_NONCE_AT: usize = 1 + 4 + 8;

/// A client's request to attach, signed by its token's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Register {
    /// The client's token (text).
    pub token: String,
    /// The name the client wants to be reached by.
    pub name: String,
    /// The edge the registration is meant for.
    pub edge_node: u32,
    /// The client's X25519 ephemeral public key.
    pub eph_pub: [u8; EPH_LEN],
    /// The client's clock, unix milliseconds.
    pub ts_ms: u64,
    pub nonce: [u8; NONCE_LEN],
    /// By the token's subject key, over [`Register::transcript`].
    pub sig: [u8; SIGNATURE_LEN],
}

/// The edge's acceptance, signed by its token's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The registration's nonce, echoed.
    pub nonce: [u8; NONCE_LEN],
    pub edge_node: u32,
    /// The client's overlay address (its node ID).
    pub overlay_addr: u32,
    /// The key ID of the link's hop keys.
    pub key_id: u8,
    /// How often the client should send a keepalive.
    pub keepalive_ms: u32,
    /// After how long without traffic the edge forgets the client.
    pub timeout_ms: u32,
    /// The edge's X25519 ephemeral public key.
    pub eph_pub: [u8; EPH_LEN],
    /// The edge's token (text), role edge.
    pub edge_token: String,
    /// By the edge token's subject key, over [`Accepted::transcript`].
    pub sig: [u8; SIGNATURE_LEN],
}

/// The edge's refusal. Not authenticated: anyone on the path can forge one, so it is for
/// diagnostics only (a client may retry or try another edge, but must not trust the reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The registration's nonce, echoed (zeros if the edge could not read it).
    pub nonce: [u8; NONCE_LEN],
    pub reason: Refusal,
}

/// One registration message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    Register(Register),
    Accepted(Accepted),
    Refused(Refused),
}

impl Register {
    /// What [`Register::sig`] signs.
    pub fn transcript(&self) -> Vec<u8> {
        let mut w = Writer(REGISTER_DOMAIN.to_vec());
        self.fields(&mut w);
        w.0
    }

    fn fields(&self, w: &mut Writer) {
        w.u8(REGISTER);
        w.u32(self.edge_node);
        w.u64(self.ts_ms);
        w.bytes(&self.nonce);
        w.bytes(&self.eph_pub);
        w.str8(&self.name);
        w.str16(&self.token);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(MAX_MSG_LEN));
        self.fields(&mut w);
        w.bytes(&self.sig);
        w.0
    }
}

impl Accepted {
    /// What [`Accepted::sig`] signs: bound to the client's ephemeral key as well as to the
    /// registration's nonce, so it answers one registration only.
    pub fn transcript(&self, client_eph: &[u8; EPH_LEN]) -> Vec<u8> {
        let mut w = Writer(ACCEPTED_DOMAIN.to_vec());
        w.bytes(client_eph);
        self.fields(&mut w);
        w.0
    }

    fn fields(&self, w: &mut Writer) {
        w.u8(ACCEPTED);
        w.bytes(&self.nonce);
        w.u32(self.edge_node);
        w.u32(self.overlay_addr);
        w.u8(self.key_id);
        w.u32(self.keepalive_ms);
        w.u32(self.timeout_ms);
        w.bytes(&self.eph_pub);
        w.str16(&self.edge_token);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        self.fields(&mut w);
        w.bytes(&self.sig);
        w.0
    }
}

impl Refused {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(2 + NONCE_LEN));
        w.u8(REFUSED);
        w.bytes(&self.nonce);
        w.u8(self.reason.as_u8());
        w.0
    }
}

impl Msg {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Register(m) => m.encode(),
            Self::Accepted(m) => m.encode(),
            Self::Refused(m) => m.encode(),
        }
    }

    /// The message in a Control payload.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        if payload.len() > MAX_MSG_LEN {
            return Err(DecodeError::TooLong(payload.len()));
        }
        let (&ty, body) = payload.split_first().ok_or(DecodeError::Empty)?;
        let mut r = Reader(body);
        let msg = match ty {
            REGISTER => Self::Register(Register {
                edge_node: r.u32("edge_node")?,
                ts_ms: r.u64("ts_ms")?,
                nonce: r.array("nonce")?,
                eph_pub: r.array("eph_pub")?,
                name: r.str8("name", MAX_NAME_LEN)?,
                token: r.str16("token", MAX_TOKEN_LEN)?,
                sig: r.array("sig")?,
            }),
            ACCEPTED => Self::Accepted(Accepted {
                nonce: r.array("nonce")?,
                edge_node: r.u32("edge_node")?,
                overlay_addr: r.u32("overlay_addr")?,
                key_id: r.u8("key_id")?,
                keepalive_ms: r.u32("keepalive_ms")?,
                timeout_ms: r.u32("timeout_ms")?,
                eph_pub: r.array("eph_pub")?,
                edge_token: r.str16("edge_token", MAX_TOKEN_LEN)?,
                sig: r.array("sig")?,
            }),
            REFUSED => Self::Refused(Refused {
                nonce: r.array("nonce")?,
                reason: {
                    let b = r.u8("reason")?;
                    Refusal::from_u8(b).ok_or(DecodeError::UnknownReason(b))?
                },
            }),
            t => return Err(DecodeError::UnknownType(t)),
        };
        match r.0.len() {
            0 => Ok(msg),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}

/// The nonce of the Register in `payload`, read without decoding the rest: what an edge
/// echoes in a Refused when the registration is refused as malformed.
pub fn register_nonce(payload: &[u8]) -> Option<[u8; NONCE_LEN]> {
    match payload {
        [REGISTER, ..] => {
            payload.get(REGISTER_NONCE_AT..REGISTER_NONCE_AT + NONCE_LEN)?.try_into().ok()
        }
        _ => None,
    }
}

/// Why bytes are not a registration message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    Empty,
    TooLong(usize),
    UnknownType(u8),
    Truncated(&'static str),
    FieldTooLong { field: &'static str, len: usize, max: usize },
    NotUtf8(&'static str),
    UnknownReason(u8),
    Trailing(usize),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty message"),
            Self::TooLong(n) => write!(f, "message of {n} bytes, more than {MAX_MSG_LEN}"),
            Self::UnknownType(t) => {
                write!(f, "unknown message type {t} (1 register, 2 accepted, 3 refused)")
            }
            Self::Truncated(field) => write!(f, "message ends inside `{field}`"),
            Self::FieldTooLong { field, len, max } => {
                write!(f, "`{field}` is {len} bytes, more than {max}")
            }
            Self::NotUtf8(field) => write!(f, "`{field}` is not UTF-8"),
            Self::UnknownReason(b) => write!(f, "refused for unknown reason {b}"),
            Self::Trailing(n) => write!(f, "{n} bytes after the message's end"),
        }
    }
}

impl std::error::Error for DecodeError {}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    /// A string with a one-byte length. Callers keep strings within bounds (names are
    /// checked); a longer one is cut, and then fails to verify rather than to encode.
    fn str8(&mut self, s: &str) {
        let b = &s.as_bytes()[..s.len().min(u8::MAX as usize)];
        self.u8(b.len() as u8);
        self.bytes(b);
    }
    /// A string with a two-byte length (tokens: at most [`MAX_TOKEN_LEN`] once parsed).
    fn str16(&mut self, s: &str) {
        let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
        self.0.extend_from_slice(&(b.len() as u16).to_be_bytes());
        self.bytes(b);
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated(field));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }
    fn str_of(
        &mut self,
        len: usize,
        field: &'static str,
        max: usize,
    ) -> Result<String, DecodeError> {
        if len > max {
            return Err(DecodeError::FieldTooLong { field, len, max });
        }
        let b = self.take(len, field)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::NotUtf8(field))
    }
    fn str8(&mut self, field: &'static str, max: usize) -> Result<String, DecodeError> {
        let len = self.u8(field)?.into();
        self.str_of(len, field, max)
    }
    fn str16(&mut self, field: &'static str, max: usize) -> Result<String, DecodeError> {
        let len = u16::from_be_bytes(self.array(field)?).into();
        self.str_of(len, field, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register() -> Register {
        Register {
            token: "wecan1.abc.def".into(),
            name: "alice".into(),
            edge_node: 7,
            eph_pub: [3; 32],
            ts_ms: 1_700_000_000_000,
            nonce: [9; 16],
            sig: [5; 64],
        }
    }

    fn accepted() -> Accepted {
        Accepted {
            nonce: [9; 16],
            edge_node: 7,
            overlay_addr: 0x0a00_0001,
            key_id: 1,
            keepalive_ms: 5_000,
            timeout_ms: 30_000,
            eph_pub: [4; 32],
            edge_token: "wecan1.e.f".into(),
            sig: [6; 64],
        }
    }

    #[test]
    fn roundtrip_every_message() {
        let msgs = [
            Msg::Register(register()),
            Msg::Accepted(accepted()),
            Msg::Refused(Refused { nonce: [1; 16], reason: Refusal::Full }),
        ];
        for m in msgs {
            let bytes = m.encode();
            assert_eq!(Msg::decode(&bytes), Ok(m.clone()));
            // Every strict prefix is truncated, and a byte more is trailing.
            for n in 0..bytes.len() {
                assert!(Msg::decode(&bytes[..n]).is_err(), "{n} of {}", bytes.len());
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(Msg::decode(&longer), Err(DecodeError::Trailing(1)));
        }
    }

    #[test]
    fn layout_is_as_documented() {
        let r = register();
        let b = r.encode();
        assert_eq!(b.len(), 1 + 4 + 8 + 16 + 32 + 1 + 5 + 2 + 14 + 64);
        assert_eq!(b[0], REGISTER);
        assert_eq!(&b[1..5], &7u32.to_be_bytes());
        assert_eq!(&b[5..13], &r.ts_ms.to_be_bytes());
        assert_eq!(register_nonce(&b), Some([9; 16]));
        assert_eq!(&b[29..61], &[3; 32]);
        assert_eq!(b[61], 5);
        assert_eq!(&b[62..67], b"alice");
        assert_eq!(&b[67..69], &14u16.to_be_bytes());
        assert_eq!(&b[b.len() - 64..], &[5; 64]);
        assert_eq!(r.transcript(), [REGISTER_DOMAIN, &b[..b.len() - 64]].concat());

        let a = accepted();
        let b = a.encode();
        assert_eq!(b.len(), 1 + 16 + 4 + 4 + 1 + 4 + 4 + 32 + 2 + 10 + 64);
        assert_eq!(&b[..2], &[ACCEPTED, 9]);
        assert_eq!(&b[21..25], &0x0a00_0001u32.to_be_bytes());
        assert_eq!(
            a.transcript(&[8; 32]),
            [ACCEPTED_DOMAIN, &[8; 32], &b[..b.len() - 64]].concat()
        );

        let f = Refused { nonce: [2; 16], reason: Refusal::Expired }.encode();
        assert_eq!(f, [&[REFUSED][..], &[2; 16], &[5]].concat());
        assert_eq!(register_nonce(&f), None);
        assert_eq!(register_nonce(&[REGISTER; 20]), None);
    }

    #[test]
    fn bad_bytes_say_what_is_wrong() {
        assert_eq!(Msg::decode(&[]), Err(DecodeError::Empty));
        assert_eq!(Msg::decode(&[0]), Err(DecodeError::UnknownType(0)));
        assert_eq!(Msg::decode(&[4, 1, 2]), Err(DecodeError::UnknownType(4)));
        assert_eq!(Msg::decode(&[REGISTER, 0, 0]), Err(DecodeError::Truncated("edge_node")));
        let too_long = vec![REGISTER; MAX_MSG_LEN + 1];
        assert_eq!(Msg::decode(&too_long), Err(DecodeError::TooLong(MAX_MSG_LEN + 1)));
        let f = Refused { nonce: [2; 16], reason: Refusal::Expired }.encode();
        let mut bad = f.clone();
        bad[17] = 0;
        assert_eq!(Msg::decode(&bad), Err(DecodeError::UnknownReason(0)));
        bad[17] = 200;
        assert_eq!(Msg::decode(&bad), Err(DecodeError::UnknownReason(200)));

        let mut r = register();
        r.name = "a".repeat(65);
        assert_eq!(
            Msg::decode(&r.encode()),
            Err(DecodeError::FieldTooLong { field: "name", len: 65, max: 64 })
        );
        let mut b = register().encode();
        b[62] = 0xff; // inside the name
        assert_eq!(Msg::decode(&b), Err(DecodeError::NotUtf8("name")));
        let mut r = register();
        r.token = "t".repeat(MAX_TOKEN_LEN + 1);
        assert!(matches!(
            Msg::decode(&r.encode()),
            Err(DecodeError::FieldTooLong { field: "token", .. } | DecodeError::TooLong(_))
        ));
    }
}
