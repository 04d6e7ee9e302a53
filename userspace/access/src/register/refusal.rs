//! Why an edge refuses a registration: one reason per check, so operators count and debug
//! from the reasons (the agent keeps a counter per [`Refusal::name`]) and a client is told
//! what to fix. The first twelve come from the registration's bytes alone, in the order
//! [`crate::register::verify_register`] checks them; the last four are the edge's stateful
//! checks (revocation list, replay cache, rate limit, address pool), which its caller runs.

use std::fmt;

/// Why a registration was refused. The discriminant is the wire byte of a Refused reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Refusal {
    /// The payload is not a registration.
    Malformed = 1,
    /// The token does not parse.
    BadToken = 2,
    /// The token's operator is not trusted by this edge.
    UnknownIssuer = 3,
    /// The token's signature does not verify.
    BadSignature = 4,
    /// The token has expired.
    Expired = 5,
    /// The token is issued in the future.
    NotYetValid = 6,
    /// The token is not a client's.
    WrongRole = 7,
    /// The token does not allow attaching.
    NotAllowed = 8,
    /// The requested name is not the token's.
    WrongName = 9,
    /// The registration is meant for another edge.
    WrongEdge = 10,
    /// The registration is not signed by the token's key.
    BadClientSignature = 11,
    /// The registration's timestamp is too far from the edge's clock.
    StaleTimestamp = 12,
    /// The token is on the edge's revocation list.
    Revoked = 13,
    /// The registration's nonce was seen before.
    Replayed = 14,
    /// Too many registrations.
    RateLimited = 15,
    /// No overlay address is free.
    Full = 16,
}

impl Refusal {
    pub const ALL: [Self; 16] = [
        Self::Malformed,
        Self::BadToken,
        Self::UnknownIssuer,
        Self::BadSignature,
        Self::Expired,
        Self::NotYetValid,
        Self::WrongRole,
        Self::NotAllowed,
        Self::WrongName,
        Self::WrongEdge,
        Self::BadClientSignature,
        Self::StaleTimestamp,
        Self::Revoked,
        Self::Replayed,
        Self::RateLimited,
        Self::Full,
    ];

    /// The reason in snake_case, for counters and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::BadToken => "bad_token",
            Self::UnknownIssuer => "unknown_issuer",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongRole => "wrong_role",
            Self::NotAllowed => "not_allowed",
            Self::WrongName => "wrong_name",
            Self::WrongEdge => "wrong_edge",
            Self::BadClientSignature => "bad_client_signature",
            Self::StaleTimestamp => "stale_timestamp",
            Self::Revoked => "revoked",
            Self::Replayed => "replayed",
            Self::RateLimited => "rate_limited",
            Self::Full => "full",
        }
    }

    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The reason of wire byte `b`; `None` for a byte no edge of this version sends.
    pub const fn from_u8(b: u8) -> Option<Self> {
        if b == 0 || b as usize > Self::ALL.len() {
            return None;
        }
        Some(Self::ALL[b as usize - 1])
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "the registration is malformed (not this protocol version?)",
            Self::BadToken => "the token is not a valid token; check the creds file's `token`",
            Self::UnknownIssuer => "the edge does not trust the operator that issued the token",
            Self::BadSignature => "the token's signature does not verify (altered or forged)",
            Self::Expired => "the token has expired; get a new one from the operator",
            Self::NotYetValid => "the token is issued in the future; a clock is wrong (check NTP)",
            Self::WrongRole => "the token is an edge's, not a client's",
            Self::NotAllowed => "the token does not allow the attach operation",
            Self::WrongName => "the requested name is not the name in the token",
            Self::WrongEdge => "the registration is addressed to another edge",
            Self::BadClientSignature => {
                "the registration is not signed by the token's key (seed and token do not match)"
            }
            Self::StaleTimestamp => {
                "the registration's time is more than 30 s from the edge's clock (check NTP)"
            }
            Self::Revoked => "the token has been revoked by the operator",
            Self::Replayed => "the registration was already received (a replay)",
            Self::RateLimited => "too many registrations; try again later",
            Self::Full => "the edge has no overlay address free; try another edge",
        })
    }
}

impl std::error::Error for Refusal {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_names_are_one_to_one() {
        for (i, r) in Refusal::ALL.into_iter().enumerate() {
            assert_eq!(r.as_u8() as usize, i + 1);
            assert_eq!(Refusal::from_u8(r.as_u8()), Some(r));
            assert!(r.name().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert!(!r.to_string().is_empty());
        }
        assert_eq!(Refusal::from_u8(0), None);
        assert_eq!(Refusal::from_u8(17), None);
        assert_eq!(Refusal::from_u8(255), None);
        let mut names: Vec<_> = Refusal::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Refusal::ALL.len());
    }
}
