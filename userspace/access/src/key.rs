//! Ed25519 keys: an operator's, which signs tokens, and each subject's (client or edge),
//! which signs its registrations and replies. Public keys have a prefixed text form
//! (`wecan-pk:` + base64url) so a key is recognisable at a glance in configs and command
//! lines, and a seed or token pasted where a public key belongs is caught by name.

use std::{fmt, str::FromStr};

use ring::{
    rand::SecureRandom,
    signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey},
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::b64;

/// Length of a seed (the secret a signing key is made from).
pub const SEED_LEN: usize = 32;
/// Length of a public key.
pub const PUBLIC_LEN: usize = 32;
/// Length of a signature.
pub const SIGNATURE_LEN: usize = 64;
/// What a public key's text form starts with.
pub const PUBLIC_PREFIX: &str = "wecan-pk:";

/// An Ed25519 signing key. Its `Debug` form shows the public key, never the seed.
pub struct SigningKey {
    seed: [u8; SEED_LEN],
    pair: Ed25519KeyPair,
}

/// The key an operator signs tokens with.
pub type OperatorKey = SigningKey;

impl SigningKey {
    pub fn from_seed(seed: [u8; SEED_LEN]) -> Self {
        // Infallible: ring's only check on a seed is its length, which the type fixes.
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).expect("32-byte Ed25519 seed");
        Self { seed, pair }
    }

    /// A new random key.
    pub fn generate(rng: &dyn SecureRandom) -> Result<Self, KeyError> {
        let mut seed = [0u8; SEED_LEN];
        rng.fill(&mut seed).map_err(|_| KeyError::NoRandomness)?;
        Ok(Self::from_seed(seed))
    }

    pub fn seed(&self) -> &[u8; SEED_LEN] {
        &self.seed
    }

    /// The seed as base64url, the form key and credentials files hold.
    pub fn seed_text(&self) -> String {
        b64::encode(&self.seed)
    }

    /// A key from its seed's text form ([`SigningKey::seed_text`]).
    pub fn from_seed_text(text: &str) -> Result<Self, KeyError> {
        if text.starts_with(PUBLIC_PREFIX) {
            return Err(KeyError::SeedIsPublic);
        }
        match b64::decode_array::<SEED_LEN>(text) {
            Ok(seed) => Ok(Self::from_seed(seed)),
            Err(None) => Err(KeyError::SeedEncoding),
            Err(Some(n)) => Err(KeyError::SeedLength(n)),
        }
    }

    pub fn public(&self) -> PublicKey {
        let mut k = [0u8; PUBLIC_LEN];
        k.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(k)
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut s = [0u8; SIGNATURE_LEN];
        s.copy_from_slice(self.pair.sign(msg).as_ref());
        s
    }
}

impl Clone for SigningKey {
    fn clone(&self) -> Self {
        Self::from_seed(self.seed)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.public())
    }
}

/// An Ed25519 public key. Text form: `wecan-pk:` followed by 43 base64url characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; PUBLIC_LEN]);

impl PublicKey {
    /// Whether `sig` is this key's signature of `msg`.
    pub fn verifies(&self, msg: &[u8], sig: &[u8; SIGNATURE_LEN]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0).verify(msg, sig).is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", b64::encode(&self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        let Some(rest) = s.strip_prefix(PUBLIC_PREFIX) else {
            return Err(KeyError::PublicPrefix);
        };
        match b64::decode_array::<PUBLIC_LEN>(rest) {
            Ok(k) => Ok(Self(k)),
            Err(None) => Err(KeyError::PublicEncoding),
            Err(Some(n)) => Err(KeyError::PublicLength(n)),
        }
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A key that cannot be made or read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyError {
    NoRandomness,
    PublicPrefix,
    PublicEncoding,
    PublicLength(usize),
    SeedIsPublic,
    SeedEncoding,
    SeedLength(usize),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRandomness => f.write_str("the system has no randomness to make a key from"),
            Self::PublicPrefix => write!(
                f,
                "a public key starts with {PUBLIC_PREFIX:?}; copy it whole, as `wecan token keygen` printed it"
            ),
            Self::PublicEncoding => write!(
                f,
                "a public key is {PUBLIC_PREFIX:?} followed by 43 base64url characters (A-Z a-z 0-9 - _); this one has others"
            ),
            Self::PublicLength(n) => write!(
                f,
                "a public key is {PUBLIC_LEN} bytes; this one is {n}: it was cut or has extra characters"
            ),
            Self::SeedIsPublic => f.write_str(
                "this is a public key, not a seed; give the seed file `wecan token keygen` wrote",
            ),
            Self::SeedEncoding => f.write_str(
                "a seed is 43 base64url characters (A-Z a-z 0-9 - _); this one has others",
            ),
            Self::SeedLength(n) => write!(
                f,
                "a seed is {SEED_LEN} bytes; this one is {n}: it was cut or has extra characters"
            ),
        }
    }
}

impl std::error::Error for KeyError {}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;

    use super::*;

    #[test]
    fn sign_verify_and_text_forms() {
        let k = SigningKey::generate(&SystemRandom::new()).unwrap();
        let sig = k.sign(b"hello");
        assert!(k.public().verifies(b"hello", &sig));
        assert!(!k.public().verifies(b"hellO", &sig));
        let other = SigningKey::from_seed([7; 32]);
        assert!(!other.public().verifies(b"hello", &sig));

        let text = k.public().to_string();
        assert!(text.starts_with("wecan-pk:") && text.len() == 9 + 43, "{text}");
        assert_eq!(text.parse::<PublicKey>(), Ok(k.public()));
        let again = SigningKey::from_seed_text(&k.seed_text()).unwrap();
        assert_eq!(again.public(), k.public());
        assert_eq!(again.seed(), k.seed());
        assert!(!format!("{k:?}").contains(&k.seed_text()));
        let json = serde_json::to_string(&k.public()).unwrap();
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), k.public());
    }

    #[test]
    fn bad_text_says_what_is_wrong() {
        let k = SigningKey::from_seed([1; 32]);
        let pk = k.public().to_string();
        let b64 = &pk[PUBLIC_PREFIX.len()..];
        assert_eq!(b64.parse::<PublicKey>(), Err(KeyError::PublicPrefix));
        assert_eq!(format!("{pk}!").parse::<PublicKey>(), Err(KeyError::PublicEncoding));
        assert_eq!(pk[..pk.len() - 3].parse::<PublicKey>(), Err(KeyError::PublicLength(30)));
        assert_eq!("".parse::<PublicKey>(), Err(KeyError::PublicPrefix));
        assert_eq!("wecan-pk:".parse::<PublicKey>(), Err(KeyError::PublicLength(0)));
        assert_eq!(SigningKey::from_seed_text(&pk).unwrap_err(), KeyError::SeedIsPublic);
        assert_eq!(SigningKey::from_seed_text("a b").unwrap_err(), KeyError::SeedEncoding);
        assert_eq!(SigningKey::from_seed_text("AAAA").unwrap_err(), KeyError::SeedLength(3));
        assert!(KeyError::PublicPrefix.to_string().contains("wecan-pk:"));
        assert!(serde_json::from_str::<PublicKey>("\"x\"").is_err());
    }
}
