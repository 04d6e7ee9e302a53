//! The client's side of the handshake: build a signed registration, then check the edge's
//! reply and derive the link's hop keys. The client trusts an Accepted only if the edge
//! proves itself as the clients' edge: an edge token from an operator the client trusts,
//! a signature by that token's key over this registration's nonce and ephemeral key.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};
use wecan_common::maps::HopKeys;
use wecan_transport::auth::link_keys;

use super::{
    kdf::Ephemeral,
    msg::{DecodeError, EPH_LEN, Msg, NONCE_LEN, Register},
    refusal::Refusal,
};
use crate::{
    creds::Creds,
    key::PublicKey,
    name::{NameError, check_name},
    token::{Role, Token, TokenError},
};

/// A registration sent, waiting for the edge's reply.
pub struct Attach {
    eph: Ephemeral,
    nonce: [u8; NONCE_LEN],
    edge_node: u32,
    operators: Vec<PublicKey>,
}

/// What an Accepted gives the client: its overlay address and the keys of its link to the
/// edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    /// The client's node ID in the overlay.
    pub overlay_addr: u32,
    pub edge_node: u32,
    /// The link's hop keys as the client holds them (`tx` tags what it sends to the edge).
    pub keys: HopKeys,
    /// Send something at least this often, or the edge forgets the client after
    /// `timeout_ms`.
    pub keepalive_ms: u32,
    pub timeout_ms: u32,
    /// The name in the edge's token.
    pub edge_name: String,
}

impl Attach {
    /// A registration of `creds` under `name` for edge `edge_node`, signed at `now_ms` (unix
    /// milliseconds). Returns the pending attach and the Control payload to send.
    pub fn start(
        creds: &Creds,
        name: &str,
        edge_node: u32,
        now_ms: u64,
    ) -> Result<(Self, Vec<u8>), AttachError> {
        check_name(name).map_err(AttachError::BadName)?;
        if edge_node == 0 {
            return Err(AttachError::NoEdge);
        }
        let rng = SystemRandom::new();
        let eph = Ephemeral::generate(&rng).map_err(|_| AttachError::NoRandomness)?;
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce).map_err(|_| AttachError::NoRandomness)?;
        let mut reg = Register {
            token: creds.token().to_string(),
            name: name.to_string(),
            edge_node,
            eph_pub: eph.public,
            ts_ms: now_ms,
            nonce,
            sig: [0; 64],
        };
        reg.sig = creds.signing_key().sign(&reg.transcript());
        let pending = Self { eph, nonce, edge_node, operators: creds.operators().to_vec() };
        Ok((pending, reg.encode()))
    }

    /// The registration's nonce (a reply to it echoes it).
    pub fn nonce(&self) -> [u8; NONCE_LEN] {
        self.nonce
    }

    /// Checks the edge's reply (a Control payload) at `now_ms` and derives the link's keys.
    /// Checks, in order: message, nonce, edge node, edge token (trust, signature, time),
    /// its role, the reply's signature, the values, the key exchange.
    pub fn finish(self, reply: &[u8], now_ms: u64) -> Result<Attached, AttachError> {
        let a = match Msg::decode(reply).map_err(AttachError::Malformed)? {
            Msg::Refused(r) if r.nonce == self.nonce => return Err(AttachError::Refused(r.reason)),
            Msg::Refused(_) => return Err(AttachError::WrongNonce),
            Msg::Register(_) => return Err(AttachError::NotAReply),
            Msg::Accepted(a) => a,
        };
        if a.nonce != self.nonce {
            return Err(AttachError::WrongNonce);
        }
        if a.edge_node != self.edge_node {
            return Err(AttachError::WrongEdge { asked: self.edge_node, replied: a.edge_node });
        }
        let token = Token::parse(&a.edge_token).map_err(AttachError::EdgeToken)?;
        let claims =
            token.verify(&self.operators, now_ms / 1000).map_err(AttachError::EdgeToken)?;
        if claims.role != Role::Edge {
            return Err(AttachError::NotAnEdge(claims.role));
        }
        if !claims.key.verifies(&a.transcript(&self.eph.public), &a.sig) {
            return Err(AttachError::BadEdgeSignature);
        }
        if a.overlay_addr == 0 || a.overlay_addr == a.edge_node {
            return Err(AttachError::BadReply("overlay_addr is 0 or the edge's own node ID"));
        }
        if a.key_id == 0 {
            return Err(AttachError::BadReply("key_id is 0 (untagged)"));
        }
        if a.keepalive_ms == 0 || a.timeout_ms <= a.keepalive_ms {
            return Err(AttachError::BadReply("keepalive_ms is 0 or not below timeout_ms"));
        }
        let edge_name = claims.name.clone();
        let client_eph: [u8; EPH_LEN] = self.eph.public;
        let secret = self
            .eph
            .agree(&a.eph_pub, &client_eph, &a.eph_pub, &self.nonce)
            .map_err(|_| AttachError::KeyExchange)?;
        Ok(Attached {
            overlay_addr: a.overlay_addr,
            edge_node: a.edge_node,
            keys: link_keys(&secret, a.key_id, a.overlay_addr, a.edge_node),
            keepalive_ms: a.keepalive_ms,
            timeout_ms: a.timeout_ms,
            edge_name,
        })
    }
}

impl fmt::Debug for Attach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attach").field("edge_node", &self.edge_node).finish_non_exhaustive()
    }
}

/// Why attaching failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttachError {
    BadName(NameError),
    NoEdge,
    NoRandomness,
    /// The reply is not a registration message.
    Malformed(DecodeError),
    /// The reply is a Register.
    NotAReply,
    /// The reply answers another registration.
    WrongNonce,
    /// The edge refused. Refused replies are not authenticated: this is for diagnostics.
    Refused(Refusal),
    WrongEdge {
        asked: u32,
        replied: u32,
    },
    EdgeToken(TokenError),
    NotAnEdge(Role),
    BadEdgeSignature,
    BadReply(&'static str),
    KeyExchange,
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadName(e) => write!(f, "name: {e}"),
            Self::NoEdge => f.write_str("edge node: 0 is reserved; give the edge's node ID"),
            Self::NoRandomness => f.write_str("the system has no randomness for the key exchange"),
            Self::Malformed(e) => write!(f, "the edge's reply is malformed: {e}"),
            Self::NotAReply => f.write_str("the edge's reply is a registration, not a reply"),
            Self::WrongNonce => {
                f.write_str("the reply answers another registration (stale or forged)")
            }
            Self::Refused(r) => write!(f, "the edge refused (unauthenticated reason): {r}"),
            Self::WrongEdge { asked, replied } => {
                write!(f, "asked edge node {asked}, but node {replied} replied")
            }
            Self::EdgeToken(e) => write!(f, "the edge's token: {e}"),
            Self::NotAnEdge(role) => {
                write!(f, "the edge's token is a {role}'s, not an edge's: an impostor")
            }
            Self::BadEdgeSignature => {
                f.write_str("the reply is not signed by the edge token's key (altered or forged)")
            }
            Self::BadReply(what) => write!(f, "the edge's reply is unusable: {what}"),
            Self::KeyExchange => f.write_str("the edge's ephemeral key is unusable (low order)"),
        }
    }
}

impl std::error::Error for AttachError {}
