//! Hop authentication for userspace senders and receivers (agent, client): link keys from a
//! shared secret, sealing what goes out on a link, verifying what comes in. The tag and the
//! replay window are `wecan_common::auth`'s, exactly as the datapath computes them.
//!
//! Both ends of a link configure the same 32-byte secret under a key ID (1..=255). Each
//! direction's SipHash key is derived from it with HKDF-SHA256 over the key ID and the two
//! node IDs in sending order, so the two directions never share a key and neither does any
//! other link: a secret that leaks compromises one link, and the controller never sees it.

use core::sync::atomic::{AtomicU64, Ordering};
use std::{fmt, str::FromStr};

use wecan_common::{
    auth::{self, Key, LANE_AGENT, TAGGED_LEN, WINDOW_WORDS},
    maps::{HopKeys, PeerValue},
    wire::HEADER_LEN,
};

/// Length of a link secret.
pub const SECRET_LEN: usize = 32;

/// A link's shared secret. Its `Debug` form never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; SECRET_LEN]);

impl Secret {
    pub const fn new(bytes: [u8; SECRET_LEN]) -> Self {
        Self(bytes)
    }

    /// The secret as 64 hex digits, the form configs and the CLI take.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A secret that is not 64 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadSecret;

impl fmt::Display for BadSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a link secret is {} hex digits ({SECRET_LEN} bytes); make one with `wecan key generate`",
            2 * SECRET_LEN
        )
    }
}

impl std::error::Error for BadSecret {}

impl FromStr for Secret {
    type Err = BadSecret;

    fn from_str(s: &str) -> Result<Self, BadSecret> {
        let s = s.as_bytes();
        if s.len() != 2 * SECRET_LEN {
            return Err(BadSecret);
        }
        let digit = |c: u8| (c as char).to_digit(16).ok_or(BadSecret);
        let mut out = [0u8; SECRET_LEN];
        for (i, b) in out.iter_mut().enumerate() {
            *b = (digit(s[2 * i])? << 4 | digit(s[2 * i + 1])?) as u8;
        }
        Ok(Self(out))
    }
}

/// The SipHash key of direction `from` → `to` of the link keyed by `secret` under `id`.
pub fn derive(secret: &Secret, id: u8, from: u32, to: u32) -> Key {
    struct Len16;
    impl ring::hkdf::KeyType for Len16 {
        fn len(&self) -> usize {
            16
        }
    }
    let prk =
        ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"wecan hop key v2").extract(&secret.0);
    let mut info = [0u8; 9];
    info[0] = id;
    info[1..5].copy_from_slice(&from.to_be_bytes());
    info[5..9].copy_from_slice(&to.to_be_bytes());
    let mut okm = [0u8; 16];
    // Infallible: 16 bytes is far below HKDF-SHA256's 8160-byte limit.
    prk.expand(&[&info], Len16).and_then(|o| o.fill(&mut okm)).expect("HKDF output length");
    let (k0, k1) = okm.split_at(8);
    [
        u64::from_le_bytes(k0.try_into().expect("8 bytes")),
        u64::from_le_bytes(k1.try_into().expect("8 bytes")),
    ]
}

/// Both directions of key `id` of the link between `me` and `peer`, as `me` holds them.
pub fn link_keys(secret: &Secret, id: u8, me: u32, peer: u32) -> HopKeys {
    HopKeys { id, _pad: [0; 7], rx: derive(secret, id, peer, me), tx: derive(secret, id, me, peer) }
}

/// Why a received packet's authentication failed, in the order the checks run (the same
/// reasons, and order, as the datapath's drop counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Untagged,
    UnknownKey,
    BadTag,
    Replay,
}

impl Refusal {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Untagged => "untagged",
            Self::UnknownKey => "unknown_key",
            Self::BadTag => "bad_tag",
            Self::Replay => "replay",
        }
    }
}

/// The replay windows of one link's two lanes, as a receiver in userspace keeps them.
pub struct Windows([[AtomicU64; WINDOW_WORDS]; 2]);

impl Default for Windows {
    fn default() -> Self {
        Self(core::array::from_fn(|_| core::array::from_fn(|_| AtomicU64::new(0))))
    }
}

impl Windows {
    /// The windows' words, for handing them to another process.
    pub fn words(&self) -> [[u64; WINDOW_WORDS]; 2] {
        self.0.each_ref().map(|w| w.each_ref().map(|a| a.load(Ordering::Relaxed)))
    }

    /// Windows holding `words` (from [`Windows::words`]).
    pub fn from_words(words: [[u64; WINDOW_WORDS]; 2]) -> Self {
        Self(words.map(|w| w.map(AtomicU64::new)))
    }
}

/// Verifies the relay packet `pkt` (at least a header long) as received from `peer`, and
/// records it in the link's `windows`.
pub fn verify(pkt: &[u8], peer: &PeerValue, windows: &Windows) -> Result<(), Refusal> {
    if peer.no_auth() {
        return Ok(());
    }
    let Some(head) = pkt.first_chunk::<HEADER_LEN>() else { return Err(Refusal::Untagged) };
    let key_id = head[6];
    if key_id == 0 {
        return Err(Refusal::Untagged);
    }
    let keys = peer.key(key_id).ok_or(Refusal::UnknownKey)?;
    let (tagged, rest) = head.split_first_chunk::<TAGGED_LEN>().expect("header holds the tag");
    if auth::tag(&keys.rx, tagged).to_le_bytes() != rest[..8] {
        return Err(Refusal::BadTag);
    }
    let seq = u64::from_be_bytes(tagged[24..32].try_into().expect("8 bytes"));
    if !auth::replay_accept(&windows.0[(seq >> 63) as usize], seq) {
        return Err(Refusal::Replay);
    }
    Ok(())
}

/// A link with no key to send with: nothing may be sent on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoSendKey;

/// The sending end of one link in userspace: the agent lane's sequence numbers.
#[derive(Clone, Debug)]
pub struct Sealer {
    next: u64,
}

impl Sealer {
    /// A sender whose first sequence number is `start_ns` (the wall clock, so a restarted
    /// sender starts ahead of everything the receiver has seen) in the agent lane.
    pub fn new(start_ns: u64) -> Self {
        Self { next: start_ns | LANE_AGENT }
    }

    /// Seals the relay packet `pkt` for `peer`: key ID, sequence number and tag. An
    /// unauthenticated link gets key ID 0.
    pub fn seal(&mut self, pkt: &mut [u8], peer: &PeerValue) -> Result<(), NoSendKey> {
        let Some(head) = pkt.first_chunk_mut::<HEADER_LEN>() else { return Err(NoSendKey) };
        if peer.no_auth() {
            head[6] = 0;
            return Ok(());
        }
        let keys = peer.send_key().ok_or(NoSendKey)?;
        let seq = self.next;
        self.next = self.next.wrapping_add(1) | LANE_AGENT;
        head[6] = keys.id;
        head[24..32].copy_from_slice(&seq.to_be_bytes());
        let tagged: &[u8; TAGGED_LEN] = head[..TAGGED_LEN].try_into().expect("32 bytes");
        let tag = auth::tag(&keys.tx, tagged);
        head[TAGGED_LEN..HEADER_LEN].copy_from_slice(&tag.to_le_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use wecan_common::{
        maps::PeerKind,
        wire::{PacketKind, RelayHeader},
    };

    use super::*;

    fn secret(b: u8) -> Secret {
        Secret::new([b; SECRET_LEN])
    }

    /// Node 1's and node 2's entries for each other, keyed by `secret` under ID 5.
    fn pair(s: &Secret) -> (PeerValue, PeerValue) {
        let mut of2 = PeerValue::new(2, PeerKind::Relay);
        of2.keys[0] = link_keys(s, 5, 1, 2);
        let mut of1 = PeerValue::new(1, PeerKind::Relay);
        of1.keys[0] = link_keys(s, 5, 2, 1);
        (of2, of1)
    }

    fn packet() -> Vec<u8> {
        let mut p = RelayHeader::new(PacketKind::Data, 1, 9, 3, 4).to_bytes().to_vec();
        p.extend_from_slice(b"payload");
        p
    }

    #[test]
    fn secrets_parse_from_hex_only() {
        let s: Secret = "ab".repeat(32).parse().unwrap();
        assert_eq!(s, secret(0xab));
        assert_eq!(s.to_hex(), "ab".repeat(32));
        assert_eq!(format!("{s:?}"), "Secret(..)");
        assert_eq!("ab".repeat(31).parse::<Secret>(), Err(BadSecret));
        assert_eq!("zz".repeat(32).parse::<Secret>(), Err(BadSecret));
        assert!(BadSecret.to_string().contains("wecan key generate"));
    }

    #[test]
    fn directions_and_links_have_their_own_keys() {
        let s = secret(1);
        let k = link_keys(&s, 1, 1, 2);
        assert_ne!(k.rx, k.tx);
        assert_eq!(k.tx, link_keys(&s, 1, 2, 1).rx);
        assert_ne!(k.tx, link_keys(&s, 2, 1, 2).tx, "key IDs differ");
        assert_ne!(k.tx, link_keys(&s, 1, 1, 3).tx, "links differ");
        assert_ne!(k.tx, link_keys(&secret(2), 1, 1, 2).tx, "secrets differ");
    }

    #[test]
    fn sealed_packets_verify_once_at_the_peer() {
        let s = secret(7);
        let (of2, of1) = pair(&s);
        let mut tx = Sealer::new(1_764_000_000_000_000_000);
        let rx = Windows::default();
        let mut p = packet();
        tx.seal(&mut p, &of2).unwrap();
        assert_eq!(p[6], 5);
        assert_eq!(RelayHeader::decode(&p).unwrap().1, b"payload");
        assert_eq!(verify(&p, &of1, &rx), Ok(()));
        assert_eq!(verify(&p, &of1, &rx), Err(Refusal::Replay));
        // Reflected to its sender: the other direction's key does not verify it.
        assert_eq!(verify(&p, &of2, &Windows::default()), Err(Refusal::BadTag));
        // Any change of a tagged field breaks the tag.
        for at in [3, 5, 8, 12, 16, 20, 31, 32] {
            let mut q = packet();
            tx.seal(&mut q, &of2).unwrap();
            q[at] ^= 1;
            assert_ne!(verify(&q, &of1, &rx), Ok(()), "byte {at}");
        }
    }

    #[test]
    fn refusals_name_the_first_failed_check() {
        let (of2, of1) = pair(&secret(7));
        let rx = Windows::default();
        assert_eq!(verify(&packet(), &of1, &rx), Err(Refusal::Untagged));
        let mut p = packet();
        Sealer::new(1).seal(&mut p, &of2).unwrap();
        p[6] = 6;
        assert_eq!(verify(&p, &of1, &rx), Err(Refusal::UnknownKey));
        let mut unkeyed = of1;
        unkeyed.flags = wecan_common::maps::peer_flags::NO_AUTH;
        assert_eq!(verify(&packet(), &unkeyed, &rx), Ok(()));
        let mut p = packet();
        assert_eq!(
            Sealer::new(1).seal(&mut p, &PeerValue::new(2, PeerKind::Relay)),
            Err(NoSendKey)
        );
        assert_eq!(Sealer::new(1).seal(&mut p[..10], &of2), Err(NoSendKey));
    }
}
