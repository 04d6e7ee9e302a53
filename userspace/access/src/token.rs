//! Operator-signed tokens, in the manner of NATS JWTs: an operator signs claims about a
//! subject (its role, name, permissions, key, lifetime) once, offline, and any edge or client
//! that trusts the operator's public key verifies them offline too. No controller is asked
//! at attach time, so attaching works while the controller is down.
//!
//! Text form: `wecan1.<base64url(claims JSON)>.<base64url(Ed25519 signature)>`, the signature
//! over the bytes of `wecan1.<claims part>`. What is signed is the text as sent, never a
//! re-serialisation, so no canonical JSON is needed; the version prefix is signed too, so a
//! later format cannot be confused with this one. Unknown claim fields are refused for the
//! same reason: a field this version does not understand must not be silently ignored.
//!
//! [`Token::parse`] checks structure only; [`Token::verify`] checks trust, signature and time.

use std::fmt;

use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};

use crate::{
    b64,
    key::{PublicKey, SIGNATURE_LEN, SigningKey},
    name::{NameError, check_name},
};

/// What every token starts with, followed by a dot.
pub const TOKEN_PREFIX: &str = "wecan1";
/// Longest token text, in bytes: it must fit a registration in one relay packet.
pub const MAX_TOKEN_LEN: usize = 1024;
/// How far in the future a token's `iat` may be, for clocks that are a little apart.
pub const MAX_FUTURE_IAT_S: u64 = 60;
/// Length of a token ID in hex digits (128 random bits).
pub const ID_HEX_LEN: usize = 32;

/// What a token's subject is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Attaches to an edge.
    Client,
    /// An edge relay: proves itself to the clients attaching to it.
    Edge,
}

impl Role {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Edge => "edge",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a token's subject may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Attach to an edge.
    Attach,
    /// Send through the network.
    Send,
    /// Receive from the network.
    Receive,
}

impl Op {
    pub const ALL: [Self; 3] = [Self::Attach, Self::Send, Self::Receive];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Attach => "attach",
            Self::Send => "send",
            Self::Receive => "receive",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not an [`Op`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownOp(pub String);

impl fmt::Display for UnknownOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown operation {:?}; use attach, send or receive", self.0)
    }
}

impl std::error::Error for UnknownOp {}

impl std::str::FromStr for Op {
    type Err = UnknownOp;

    fn from_str(s: &str) -> Result<Self, UnknownOp> {
        Self::ALL.into_iter().find(|o| o.name() == s).ok_or_else(|| UnknownOp(s.to_string()))
    }
}

/// What the operator says about the subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    pub role: Role,
    /// The subject's name ([`check_name`]).
    pub name: String,
    /// What the subject may do.
    pub ops: Vec<Op>,
    /// Random, unique per token: what a revocation list names.
    pub id: String,
    /// Issued at, unix seconds.
    pub iat: u64,
    /// Expires at, unix seconds (the token is valid while `now < exp`).
    pub exp: u64,
    /// The subject's public key: it signs the subject's registrations and replies.
    pub key: PublicKey,
    /// The operator's public key, which signed the token.
    pub iss: PublicKey,
}

impl Claims {
    /// Claims valid from `now_s` for `ttl_s` seconds, with a fresh random ID.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        role: Role,
        name: &str,
        ops: Vec<Op>,
        key: PublicKey,
        iss: PublicKey,
        now_s: u64,
        ttl_s: u64,
        rng: &dyn SecureRandom,
    ) -> Result<Self, TokenError> {
        let mut id = [0u8; ID_HEX_LEN / 2];
        rng.fill(&mut id).map_err(|_| TokenError::NoRandomness)?;
        let claims = Self {
            role,
            name: name.to_string(),
            ops,
            id: id.iter().map(|b| format!("{b:02x}")).collect(),
            iat: now_s,
            exp: now_s.checked_add(ttl_s).ok_or(TokenError::BadLifetime)?,
            key,
            iss,
        };
        claims.check()?;
        Ok(claims)
    }

    pub fn allows(&self, op: Op) -> bool {
        self.ops.contains(&op)
    }

    /// The rules claims obey whether being issued or parsed.
    fn check(&self) -> Result<(), TokenError> {
        check_name(&self.name).map_err(TokenError::Name)?;
        let hex = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
        if self.id.len() != ID_HEX_LEN || !self.id.bytes().all(hex) {
            return Err(TokenError::BadId);
        }
        if self.exp <= self.iat {
            return Err(TokenError::BadLifetime);
        }
        for (i, op) in self.ops.iter().enumerate() {
            if self.ops[..i].contains(op) {
                return Err(TokenError::DuplicateOp(*op));
            }
        }
        Ok(())
    }
}

/// The token text of `claims`, signed by `operator` (which must be `claims.iss`).
pub fn issue(operator: &SigningKey, claims: &Claims) -> Result<String, TokenError> {
    if claims.iss != operator.public() {
        return Err(TokenError::IssuerMismatch);
    }
    claims.check()?;
    let json = serde_json::to_vec(claims).map_err(|e| TokenError::ClaimsJson(e.to_string()))?;
    let signed = format!("{TOKEN_PREFIX}.{}", b64::encode(&json));
    let text = format!("{signed}.{}", b64::encode(&operator.sign(signed.as_bytes())));
    if text.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong(text.len()));
    }
    Ok(text)
}

/// A token whose structure is sound; its claims are not to be believed before
/// [`Token::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    text: String,
    /// Length of `wecan1.<claims part>`, the signed prefix of `text`.
    signed_len: usize,
    claims: Claims,
    sig: [u8; SIGNATURE_LEN],
}

impl Token {
    /// A token from its text: prefix, parts, encodings, claims JSON and claim rules. Trust,
    /// signature and time are [`Token::verify`]'s.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        if text.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong(text.len()));
        }
        let mut parts = text.split('.');
        if parts.next() != Some(TOKEN_PREFIX) {
            return Err(TokenError::NotAToken);
        }
        let (Some(claims_part), Some(sig_part), None) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Structure);
        };
        let json = b64::decode(claims_part).ok_or(TokenError::ClaimsEncoding)?;
        let sig = match b64::decode_array::<SIGNATURE_LEN>(sig_part) {
            Ok(s) => s,
            Err(None) => return Err(TokenError::SignatureEncoding),
            Err(Some(n)) => return Err(TokenError::SignatureLength(n)),
        };
        let claims: Claims =
            serde_json::from_slice(&json).map_err(|e| TokenError::ClaimsJson(e.to_string()))?;
        claims.check()?;
        let signed_len = TOKEN_PREFIX.len() + 1 + claims_part.len();
        Ok(Self { text: text.to_string(), signed_len, claims, sig })
    }

    /// The claims if the token is signed by one of `trusted` and valid at `now_s` (unix
    /// seconds). Checks, in order: issuer, signature, expiry, issue time.
    pub fn verify(&self, trusted: &[PublicKey], now_s: u64) -> Result<&Claims, TokenError> {
        let c = &self.claims;
        if !trusted.contains(&c.iss) {
            return Err(TokenError::UnknownIssuer(c.iss));
        }
        if !c.iss.verifies(&self.text.as_bytes()[..self.signed_len], &self.sig) {
            return Err(TokenError::BadSignature);
        }
        if now_s >= c.exp {
            return Err(TokenError::Expired { exp: c.exp, now: now_s });
        }
        if c.iat > now_s.saturating_add(MAX_FUTURE_IAT_S) {
            return Err(TokenError::NotYetValid { iat: c.iat, now: now_s });
        }
        Ok(c)
    }

    /// The claims as written, not verified: for display and for choosing which checks to
    /// run, never for trusting.
    pub fn unverified_claims(&self) -> &Claims {
        &self.claims
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Token {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, TokenError> {
        Self::parse(s)
    }
}

/// Why a token cannot be issued, read or trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    TooLong(usize),
    NotAToken,
    Structure,
    ClaimsEncoding,
    SignatureEncoding,
    SignatureLength(usize),
    ClaimsJson(String),
    Name(NameError),
    BadId,
    BadLifetime,
    DuplicateOp(Op),
    IssuerMismatch,
    NoRandomness,
    UnknownIssuer(PublicKey),
    BadSignature,
    Expired { exp: u64, now: u64 },
    NotYetValid { iat: u64, now: u64 },
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong(n) => write!(
                f,
                "the token is {n} bytes, more than {MAX_TOKEN_LEN}; it is not one `wecan token issue` made (or the name is too long)"
            ),
            Self::NotAToken => write!(
                f,
                "a token starts with \"{TOKEN_PREFIX}.\"; copy the whole token (or the creds file's `token`)"
            ),
            Self::Structure => write!(
                f,
                "a token is three parts separated by dots ({TOKEN_PREFIX}.<claims>.<signature>); this one was cut or joined"
            ),
            Self::ClaimsEncoding => {
                f.write_str("the token's claims part is not base64url; the token was damaged")
            }
            Self::SignatureEncoding => {
                f.write_str("the token's signature part is not base64url; the token was damaged")
            }
            Self::SignatureLength(n) => write!(
                f,
                "the token's signature is {n} bytes, not {SIGNATURE_LEN}; the token was cut or damaged"
            ),
            Self::ClaimsJson(e) => write!(f, "the token's claims are not valid: {e}"),
            Self::Name(e) => write!(f, "the token's name: {e}"),
            Self::BadId => write!(f, "the token's id is not {ID_HEX_LEN} lowercase hex digits"),
            Self::BadLifetime => f.write_str(
                "the token's lifetime is empty or overflows (exp must be after iat); issue it with a positive --ttl",
            ),
            Self::DuplicateOp(op) => write!(f, "the token lists operation {op} twice"),
            Self::IssuerMismatch => f.write_str(
                "the claims name another issuer (iss) than the operator key signing them",
            ),
            Self::NoRandomness => f.write_str("the system has no randomness for a token ID"),
            Self::UnknownIssuer(iss) => write!(
                f,
                "the token is signed by operator {iss}, which is not trusted here; add it to `operators` or get a token from a trusted operator"
            ),
            Self::BadSignature => f.write_str(
                "the token's signature does not verify: it was altered or forged; get a new token from the operator",
            ),
            Self::Expired { exp, now } => write!(
                f,
                "the token expired {} s ago (exp {exp}, now {now}); issue a new one",
                now.saturating_sub(*exp)
            ),
            Self::NotYetValid { iat, now } => write!(
                f,
                "the token is issued {} s in the future (iat {iat}, now {now}); a clock is wrong, check NTP on both sides",
                iat.saturating_sub(*now)
            ),
        }
    }
}

impl std::error::Error for TokenError {}

#[cfg(test)]
mod tests;
