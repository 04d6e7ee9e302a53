//! The edge's side of the handshake: verify a registration from its bytes alone, offline,
//! against the operators this edge trusts, then accept it (allocating is the caller's) or
//! refuse it. The checks run cheapest and least specific first and stop at the first
//! failure, each with its own [`Refusal`], so counters say exactly why clients were turned
//! away. The caller adds its stateful checks between [`verify_register`] and [`accept`]:
//! revocation of `claims.id`, the nonce against its replay cache (nonces need be kept only
//! for the ±[`MAX_SKEW_MS`] window the timestamp check allows), rate limits, addresses.

use std::fmt;

use ring::rand::SystemRandom;
use wecan_common::maps::HopKeys;
use wecan_transport::auth::link_keys;

use super::{
    kdf::Ephemeral,
    msg::{Accepted, EPH_LEN, Msg, NONCE_LEN, Refused},
    refusal::Refusal,
};
use crate::{
    creds::Creds,
    key::PublicKey,
    token::{Claims, Op, Role, Token, TokenError},
};

/// How far a registration's timestamp may be from the edge's clock.
pub const MAX_SKEW_MS: u64 = 30_000;

/// A registration that passed every check its bytes allow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The client's verified claims (its name is the name it registered).
    pub claims: Claims,
    pub eph_pub: [u8; EPH_LEN],
    pub nonce: [u8; NONCE_LEN],
    pub ts_ms: u64,
}

/// Verifies the registration in `payload` (a Control payload) for this edge, `edge_node`,
/// at `now_ms` (unix milliseconds).
pub fn verify_register(
    payload: &[u8],
    trusted: &[PublicKey],
    edge_node: u32,
    now_ms: u64,
) -> Result<Verified, Refusal> {
    let Ok(Msg::Register(reg)) = Msg::decode(payload) else {
        return Err(Refusal::Malformed);
    };
    let token = Token::parse(&reg.token).map_err(|_| Refusal::BadToken)?;
    let claims = token.verify(trusted, now_ms / 1000).map_err(|e| match e {
        TokenError::UnknownIssuer(_) => Refusal::UnknownIssuer,
        TokenError::BadSignature => Refusal::BadSignature,
        TokenError::Expired { .. } => Refusal::Expired,
        TokenError::NotYetValid { .. } => Refusal::NotYetValid,
        _ => Refusal::BadToken,
    })?;
    if claims.role != Role::Client {
        return Err(Refusal::WrongRole);
    }
    if !claims.allows(Op::Attach) {
        return Err(Refusal::NotAllowed);
    }
    if reg.name != claims.name {
        return Err(Refusal::WrongName);
    }
    if reg.edge_node != edge_node {
        return Err(Refusal::WrongEdge);
    }
    if !claims.key.verifies(&reg.transcript(), &reg.sig) {
        return Err(Refusal::BadClientSignature);
    }
    if reg.ts_ms.abs_diff(now_ms) > MAX_SKEW_MS {
        return Err(Refusal::StaleTimestamp);
    }
    Ok(Verified {
        claims: claims.clone(),
        eph_pub: reg.eph_pub,
        nonce: reg.nonce,
        ts_ms: reg.ts_ms,
    })
}

/// Accepts `v`: the Accepted payload, signed with the edge's own credentials `edge` (role
/// edge), giving the client `overlay_addr` and the link key `key_id`, and the link's hop
/// keys as this edge holds them (`tx` tags what it sends to the client).
pub fn accept(
    v: &Verified,
    edge: &Creds,
    edge_node: u32,
    overlay_addr: u32,
    key_id: u8,
    keepalive_ms: u32,
    timeout_ms: u32,
) -> Result<(Vec<u8>, HopKeys), AcceptError> {
    if edge.claims().role != Role::Edge {
        return Err(AcceptError::NotEdgeCreds(edge.claims().role));
    }
    if edge_node == 0 || overlay_addr == 0 || overlay_addr == edge_node {
        return Err(AcceptError::BadAddress);
    }
    if key_id == 0 {
        return Err(AcceptError::BadKeyId);
    }
    if keepalive_ms == 0 || timeout_ms <= keepalive_ms {
        return Err(AcceptError::BadTimers);
    }
    let eph = Ephemeral::generate(&SystemRandom::new()).map_err(|_| AcceptError::NoRandomness)?;
    let mut a = Accepted {
        nonce: v.nonce,
        edge_node,
        overlay_addr,
        key_id,
        keepalive_ms,
        timeout_ms,
        eph_pub: eph.public,
        edge_token: edge.token().to_string(),
        sig: [0; 64],
    };
    a.sig = edge.signing_key().sign(&a.transcript(&v.eph_pub));
    let edge_eph = eph.public;
    let secret = eph
        .agree(&v.eph_pub, &v.eph_pub, &edge_eph, &v.nonce)
        .map_err(|_| AcceptError::BadClientKey)?;
    Ok((a.encode(), link_keys(&secret, key_id, edge_node, overlay_addr)))
}

/// The Refused payload answering the registration of `nonce` (see
/// [`super::msg::register_nonce`] for one that did not decode).
pub fn refuse(nonce: [u8; NONCE_LEN], reason: Refusal) -> Vec<u8> {
    Refused { nonce, reason }.encode()
}

/// Why an edge could not accept a verified registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcceptError {
    /// The edge's credentials are not an edge's.
    NotEdgeCreds(Role),
    /// Node 0, or the client's address is the edge's.
    BadAddress,
    /// Key ID 0 (untagged).
    BadKeyId,
    /// Keepalive 0 or not below the timeout.
    BadTimers,
    NoRandomness,
    /// The client's ephemeral key is unusable (low order): refuse it as
    /// [`Refusal::Malformed`].
    BadClientKey,
}

impl fmt::Display for AcceptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotEdgeCreds(role) => write!(
                f,
                "the edge's credentials are a {role}'s; issue them with `wecan token issue --edge`"
            ),
            Self::BadAddress => f.write_str(
                "node 0 is reserved and a client's overlay address must differ from the edge's node ID",
            ),
            Self::BadKeyId => f.write_str("key ID 0 means untagged; use 1..=255"),
            Self::BadTimers => f.write_str("keepalive must be above 0 and below the timeout"),
            Self::NoRandomness => f.write_str("the system has no randomness for the key exchange"),
            Self::BadClientKey => f.write_str("the client's ephemeral key is unusable (low order)"),
        }
    }
}

impl std::error::Error for AcceptError {}
