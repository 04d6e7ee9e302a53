//! Hop authentication in the datapath ([`wecan_common::auth`]): [`verify`] the tag of the link
//! a packet came in on before anything else looks at it, and [`seal`] it for the link it
//! leaves on.

use core::intrinsics::{AtomicOrdering::Relaxed, atomic_cxchg};

use wecan_common::{
    auth::{self, LANE_AGENT, WINDOW_WORDS, WindowWords},
    csum::Update,
    maps::{FAMILY_V4, PeerValue, RouteValue},
    stats::Stat,
    wire::RelayHeader,
};

use crate::maps::{LINK_AUTH, PEERS_V4, PEERS_V6};

/// Header fields a hop sets for the link it sends on.
pub struct Seal {
    pub key_id: u8,
    pub auth_seq: [u8; 8],
    pub tag: [u8; 8],
}

/// The header as SipHash reads it: the four little-endian words of bytes 0..32, which the
/// tag covers, and the tag.
#[derive(Clone, Copy)]
pub struct Words {
    pub m: [u64; 4],
    pub tag: u64,
}

/// Loads the header's words: five 64-bit loads in assembly. Rust's unaligned reads become
/// byte loads on BPF (a relay header after Ethernet, IPv4 and UDP sits at offset 42), and
/// LLVM's allows-misaligned-mem-access also misaligns stack stores, which the verifier
/// refuses; misaligned packet loads it accepts on the architectures that do them cheaply.
#[inline(always)]
pub fn words(hdr: &RelayHeader) -> Words {
    let p = hdr as *const RelayHeader;
    let (a, b, c, d, tag): (u64, u64, u64, u64, u64);
    // SAFETY: the parser checked that the whole 40-byte header lies within the packet.
    unsafe {
        core::arch::asm!(
            "{a} = *(u64 *)({p} + 0)",
            "{b} = *(u64 *)({p} + 8)",
            "{c} = *(u64 *)({p} + 16)",
            "{d} = *(u64 *)({p} + 24)",
            "{t} = *(u64 *)({p} + 32)",
            p = in(reg) p,
            a = out(reg) a,
            b = out(reg) b,
            c = out(reg) c,
            d = out(reg) d,
            t = out(reg) tag,
            options(nostack, readonly, preserves_flags),
        );
    }
    Words { m: [a, b, c, d], tag }
}

/// Checks the packet's tag with `peer`'s key, cheapest check first (key ID, then the MAC,
/// then the replay window, which only verified packets may advance).
#[inline(always)]
pub fn verify(peer: &PeerValue, hdr: &RelayHeader, w: &Words) -> Result<(), Stat> {
    if peer.no_auth() {
        return Ok(());
    }
    if hdr.key_id == 0 {
        return Err(Stat::DropUntagged);
    }
    let Some(keys) = peer.key(hdr.key_id) else {
        return Err(Stat::DropUnknownKey);
    };
    if auth::siphash_32(&keys.rx, w.m) != w.tag {
        return Err(Stat::DropBadTag);
    }
    let Some(state) = LINK_AUTH.get_ptr_mut(peer.auth_slot) else {
        return Err(Stat::DropReplay);
    };
    let seq = hdr.auth_seq();
    // SAFETY: a map value pointer stays valid for the whole program run.
    let window = MapWindow(unsafe { &mut (*state).rx[(seq >> 63) as usize & 1] });
    if auth::replay_accept(&window, seq) { Ok(()) } else { Err(Stat::DropReplay) }
}

/// A replay window in map memory, shared by every CPU: only ever accessed atomically.
struct MapWindow(*mut [u64; WINDOW_WORDS]);

impl WindowWords for MapWindow {
    #[inline(always)]
    fn load(&self, i: usize) -> u64 {
        // SAFETY: an aligned u64 of a live map value; `i` < WINDOW_WORDS at every call site.
        unsafe { core::ptr::read_volatile((*self.0).as_ptr().add(i)) }
    }

    #[inline(always)]
    fn cas(&self, i: usize, cur: u64, new: u64) -> Result<(), u64> {
        // SAFETY: as in `load`.
        let (seen, ok) = unsafe {
            atomic_cxchg::<u64, { Relaxed }, { Relaxed }>((*self.0).as_mut_ptr().add(i), cur, new)
        };
        if ok { Ok(()) } else { Err(seen) }
    }
}

/// The peer entry of `route`'s next hop (the link the packet leaves on).
#[inline(always)]
pub fn next_peer(route: &RouteValue) -> Result<&'static PeerValue, Stat> {
    let a = &route.next_addr;
    let p = if route.family == FAMILY_V4 {
        PEERS_V4.get_ptr(&[a[0], a[1], a[2], a[3]])
    } else {
        PEERS_V6.get_ptr(a)
    };
    match p {
        // SAFETY: a map value pointer stays valid for the whole program run.
        Some(p) => Ok(unsafe { &*p }),
        None => Err(Stat::DropNoNextKey),
    }
}

/// No seal: key ID 0, the rest of the header as it came.
#[inline(always)]
pub fn untagged(hdr: &RelayHeader) -> Seal {
    Seal { key_id: 0, auth_seq: hdr.auth_seq, tag: hdr.tag }
}

/// The seal of a packet for `peer` whose header words will be `m` once sent (key ID and
/// authentication sequence number are filled in here). An unauthenticated link gets key ID
/// 0 and keeps the rest.
#[inline(always)]
pub fn seal(peer: &PeerValue, hdr: &RelayHeader, mut m: [u64; 4]) -> Result<Seal, Stat> {
    if peer.no_auth() {
        return Ok(untagged(hdr));
    }
    let Some(keys) = peer.send_key() else {
        return Err(Stat::DropNoNextKey);
    };
    let Some(state) = LINK_AUTH.get_ptr_mut(peer.auth_slot) else {
        return Err(Stat::DropNoNextKey);
    };
    // SAFETY: as in `verify`; the counter is only ever accessed atomically.
    let seq = unsafe { fetch_add(&mut (*state).tx_seq) } & !LANE_AGENT;
    // Byte 6 (key ID) is bits 48..56 of word 0; bytes 24..32 (big-endian seq) are word 3.
    m[0] = (m[0] & !(0xff << 48)) | (u64::from(keys.id) << 48);
    m[3] = seq.swap_bytes();
    let tag = auth::siphash_32(&keys.tx, m);
    Ok(Seal { key_id: keys.id, auth_seq: seq.to_be_bytes(), tag: tag.to_le_bytes() })
}

/// Adds 1 to `*counter` atomically and returns its value before. In assembly: LLVM 22's BPF
/// backend lowers a relaxed `atomicrmw add` whose result is used to the non-fetching `lock
/// +=` (the result register keeps the addend), so every packet would get the same number.
///
/// # Safety
/// `counter` points at map memory only ever accessed atomically.
#[inline(always)]
unsafe fn fetch_add(counter: *mut u64) -> u64 {
    let mut v: u64 = 1;
    // SAFETY: per the contract; BPF_ATOMIC | BPF_FETCH | BPF_ADD on an aligned u64 (ISA v3).
    unsafe {
        core::arch::asm!(
            "{v} = atomic_fetch_add((u64 *)({p} + 0), {v})",
            v = inout(reg) v,
            p = in(reg) counter,
            options(nostack),
        );
    }
    v
}

/// Writes `seal` into the header and accounts for it in the running UDP checksum update.
///
/// # Safety
/// `relay` points at a relay header within the packet.
#[inline(always)]
pub unsafe fn apply(relay: *mut RelayHeader, seal: &Seal, csum: Update) -> Update {
    // SAFETY: per the contract.
    unsafe {
        // Bytes 6..8 are [key ID, reserved]: one checksum word.
        let old_key = [(*relay).key_id, (*relay).reserved];
        let new_key = [seal.key_id, (*relay).reserved];
        let c = csum
            .replace(&old_key, &new_key)
            .replace(&(*relay).auth_seq, &seal.auth_seq)
            .replace(&(*relay).tag, &seal.tag);
        (*relay).key_id = seal.key_id;
        (*relay).auth_seq = seal.auth_seq;
        (*relay).tag = seal.tag;
        c
    }
}
