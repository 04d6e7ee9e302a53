//! The attach key schedule: an X25519 exchange of ephemeral keys, then HKDF-SHA256 into the
//! link secret both ends derive their hop keys from (`wecan_transport::auth::link_keys`).
//! Ephemeral keys on both sides give forward secrecy: a token key that leaks later does not
//! reveal the hop keys of past attachments. The HKDF info binds the secret to both public
//! keys and the nonce, so it belongs to this one exchange.
//!
//! ```text
//! ecdh   = X25519(client eph, edge eph)
//! secret = HKDF-SHA256(salt = "wecan attach v1", ikm = ecdh,
//!                      info = client_eph_pub || edge_eph_pub || nonce), 32 bytes
//! ```

use ring::{
    agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519},
    error::Unspecified,
    hkdf::{HKDF_SHA256, Salt},
    rand::SecureRandom,
};
use wecan_transport::auth::{SECRET_LEN, Secret};

use super::msg::{EPH_LEN, NONCE_LEN};

/// HKDF salt of the attach secret.
pub const ATTACH_SALT: &[u8] = b"wecan attach v1";

/// One side's ephemeral X25519 key.
pub(crate) struct Ephemeral {
    private: EphemeralPrivateKey,
    pub(crate) public: [u8; EPH_LEN],
}

impl Ephemeral {
    pub(crate) fn generate(rng: &dyn SecureRandom) -> Result<Self, Unspecified> {
        let private = EphemeralPrivateKey::generate(&X25519, rng)?;
        let public = private.compute_public_key()?.as_ref().try_into().map_err(|_| Unspecified)?;
        Ok(Self { private, public })
    }

    /// The link secret, from this key and the peer's public key. Fails for a peer key ring
    /// refuses (a low-order point, whose shared secret would be all zeros).
    pub(crate) fn agree(
        self,
        peer: &[u8; EPH_LEN],
        client_eph: &[u8; EPH_LEN],
        edge_eph: &[u8; EPH_LEN],
        nonce: &[u8; NONCE_LEN],
    ) -> Result<Secret, Unspecified> {
        let peer = UnparsedPublicKey::new(&X25519, peer);
        agreement::agree_ephemeral(self.private, &peer, |ecdh| {
            let prk = Salt::new(HKDF_SHA256, ATTACH_SALT).extract(ecdh);
            let mut okm = [0u8; SECRET_LEN];
            // HKDF_SHA256 as the output key type: 32 bytes, the secret's length.
            prk.expand(&[client_eph, edge_eph, nonce], HKDF_SHA256)?.fill(&mut okm)?;
            Ok(Secret::new(okm))
        })?
    }
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;

    use super::*;

    #[test]
    fn both_sides_derive_one_secret_bound_to_the_exchange() {
        let rng = SystemRandom::new();
        let derive = |nonce: [u8; 16]| {
            let (c, e) = (Ephemeral::generate(&rng).unwrap(), Ephemeral::generate(&rng).unwrap());
            let (cp, ep) = (c.public, e.public);
            let at_client = c.agree(&ep, &cp, &ep, &nonce).unwrap();
            let at_edge = e.agree(&cp, &cp, &ep, &nonce).unwrap();
            (at_client, at_edge)
        };
        let (a, b) = derive([1; 16]);
        assert_eq!(a, b);
        let (c, _) = derive([1; 16]);
        assert_ne!(a, c, "fresh ephemerals, fresh secret");

        // Same keys, another nonce: another secret.
        let (c, e) = (Ephemeral::generate(&rng).unwrap(), Ephemeral::generate(&rng).unwrap());
        let (cp, ep) = (c.public, e.public);
        let s1 = c.agree(&ep, &cp, &ep, &[1; 16]).unwrap();
        let s2 = e.agree(&cp, &cp, &ep, &[2; 16]).unwrap();
        assert_ne!(s1, s2);
    }

    #[test]
    fn low_order_peer_key_is_refused() {
        let e = Ephemeral::generate(&SystemRandom::new()).unwrap();
        let p = e.public;
        assert!(e.agree(&[0; 32], &[0; 32], &p, &[0; 16]).is_err());
    }
}
