//! Hop authentication, shared by the XDP program and userspace so both accept exactly the
//! same packets: the SipHash-2-4 tag over the relay header ([`tag`]) and the replay window
//! ([`replay_accept`]).
//!
//! Every relay packet carries, in its header ([`crate::wire`]), the ID of the key that tagged
//! it, a per-link authentication sequence number and an 8-byte tag: SipHash-2-4 (the kernel
//! BPF selftests' MAC, plain BPF, no kfunc) keyed with the sending direction's key of that
//! link, over header bytes 0..32 (everything but the tag itself). Each hop verifies with the
//! key of the link the packet came in on and tags again with the key of the link it goes out
//! on.
//!
//! A sender's sequence numbers come in two lanes, each monotonic, each with its own window at
//! the receiver: the datapath's ([`LANE_AGENT`] clear) and the agent's or client's
//! ([`LANE_AGENT`] set). Both start at the wall clock in nanoseconds, so a restarted sender
//! starts ahead of everything the receiver has seen.

#[cfg(not(target_arch = "bpf"))]
use core::sync::atomic::{AtomicU64, Ordering};

/// Header bytes the tag covers: everything before the tag.
pub const TAGGED_LEN: usize = 32;

/// Set in the sequence numbers userspace senders (agent, client) use; clear in the
/// datapath's. The two lanes have separate replay windows.
pub const LANE_AGENT: u64 = 1 << 63;

/// Slots of a replay window. Each holds one block of [`BLOCK_BITS`] consecutive sequence
/// numbers as `block << 16 | bitmap` (the block's low 48 bits); a sequence number goes to
/// slot `block % REPLAY_SLOTS`. After the slots, the window's last word holds the newest
/// block accepted, in full.
pub const REPLAY_SLOTS: usize = 16;
/// Words of one lane's window: the slots, then the newest block.
pub const WINDOW_WORDS: usize = REPLAY_SLOTS + 1;
const TOP: usize = REPLAY_SLOTS;
/// Sequence numbers per slot (the bitmap width).
pub const BLOCK_BITS: u64 = 16;
/// The window: how far behind the newest a packet may arrive and still be accepted
/// (at least `(REPLAY_SLOTS - 1) * BLOCK_BITS`).
pub const REPLAY_WINDOW: u64 = (REPLAY_SLOTS as u64 - 1) * BLOCK_BITS;
const BLOCK_MASK: u64 = (1 << 48) - 1;
/// Compare-and-swap attempts on a window word before a packet is refused (each failure
/// means another writer made progress).
pub const REPLAY_RETRIES: usize = 4;

/// A 128-bit SipHash key as two little-endian words (`k0`, `k1` of the reference code).
pub type Key = [u64; 2];

#[inline(always)]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// SipHash-2-4 of the 32-byte message given as four little-endian words.
#[inline(always)]
pub fn siphash_32(key: &Key, m: [u64; 4]) -> u64 {
    let mut v = [
        key[0] ^ 0x736f_6d65_7073_6575,
        key[1] ^ 0x646f_7261_6e64_6f6d,
        key[0] ^ 0x6c79_6765_6e65_7261,
        key[1] ^ 0x7465_6462_7974_6573,
    ];
    // Four full blocks, then the final block: only the length byte (32) in its top byte.
    let last = (TAGGED_LEN as u64) << 56;
    for w in [m[0], m[1], m[2], m[3], last] {
        v[3] ^= w;
        round(&mut v);
        round(&mut v);
        v[0] ^= w;
    }
    v[2] ^= 0xff;
    round(&mut v);
    round(&mut v);
    round(&mut v);
    round(&mut v);
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// The tag of a header whose first [`TAGGED_LEN`] bytes are `tagged`.
#[inline(always)]
pub fn tag(key: &Key, tagged: &[u8; TAGGED_LEN]) -> u64 {
    let w = |i: usize| {
        u64::from_le_bytes([
            tagged[i],
            tagged[i + 1],
            tagged[i + 2],
            tagged[i + 3],
            tagged[i + 4],
            tagged[i + 5],
            tagged[i + 6],
            tagged[i + 7],
        ])
    };
    siphash_32(key, [w(0), w(8), w(16), w(24)])
}

/// The words of one lane's replay window, wherever they live: atomics in userspace, map
/// memory shared by every CPU in the datapath.
pub trait WindowWords {
    fn load(&self, i: usize) -> u64;
    /// Compare-and-swap of word `i` from `cur` to `new`; the word's value on failure.
    fn cas(&self, i: usize, cur: u64, new: u64) -> Result<(), u64>;
}

/// Records `seq` in `window` (one lane of one link) and says whether it is new: never
/// accepted before and not older than the window. Lock-free: every word changes only by
/// compare-and-swap, and the newest block is raised before the slot is written, so a writer
/// that lost a race sees why on its retry. Only packets whose tag verified may be recorded,
/// or a forger could advance the window.
#[inline(always)]
pub fn replay_accept(window: &impl WindowWords, seq: u64) -> bool {
    let block = (seq & !LANE_AGENT) / BLOCK_BITS;
    let old = |top: u64| block + (REPLAY_SLOTS as u64 - 1) <= top;
    let mut top = window.load(TOP);
    for _ in 0..REPLAY_RETRIES {
        if old(top) {
            return false;
        }
        if block <= top {
            break;
        }
        match window.cas(TOP, top, block) {
            Ok(()) => break,
            Err(now) => top = now,
        }
    }
    let slot = (block % REPLAY_SLOTS as u64) as usize;
    let mine = (block & BLOCK_MASK) << 16;
    let bit = 1u64 << (seq % BLOCK_BITS);
    let mut cur = window.load(slot);
    for _ in 0..REPLAY_RETRIES {
        let top = window.load(TOP);
        if old(top) {
            return false;
        }
        // 0 is an empty slot: every occupied one has a bit set.
        let next = if cur != 0 && cur & !0xffff == mine {
            if cur & bit != 0 {
                return false;
            }
            cur | bit
        } else {
            // Another block's slot may be taken only from an older block. The slot holds
            // the low bits of a block at most `top`: the newest such is the one it means.
            let held = top.wrapping_sub(top.wrapping_sub(cur >> 16) & BLOCK_MASK);
            if cur != 0 && held > block {
                return false;
            }
            mine | bit
        };
        match window.cas(slot, cur, next) {
            Ok(()) => return true,
            Err(now) => cur = now,
        }
    }
    false
}

#[cfg(not(target_arch = "bpf"))]
impl WindowWords for [AtomicU64; WINDOW_WORDS] {
    fn load(&self, i: usize) -> u64 {
        self[i].load(Ordering::Relaxed)
    }

    fn cas(&self, i: usize, cur: u64, new: u64) -> Result<(), u64> {
        self[i].compare_exchange(cur, new, Ordering::Relaxed, Ordering::Relaxed).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference implementation's test vector: key 00..0f, message 00..1f
    /// (`vectors_sip64[32]` in github.com/veorq/SipHash).
    #[test]
    fn matches_the_reference_vector() {
        let key = [
            u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]),
            u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]),
        ];
        let msg: [u8; 32] = core::array::from_fn(|i| i as u8);
        let want = [0xce, 0x7c, 0xf2, 0x72, 0x2f, 0x51, 0x27, 0x71];
        assert_eq!(tag(&key, &msg).to_le_bytes(), want);
    }

    fn window() -> [AtomicU64; WINDOW_WORDS] {
        core::array::from_fn(|_| AtomicU64::new(0))
    }

    #[test]
    fn a_sequence_number_is_accepted_once() {
        let w = window();
        let base = 1_764_000_000_000_000_000u64;
        for s in base..base + 1000 {
            assert!(replay_accept(&w, s));
            assert!(!replay_accept(&w, s), "replay of {s}");
        }
        // Reordered within the window: accepted once.
        let w = window();
        for s in (base..base + REPLAY_WINDOW).rev() {
            assert!(replay_accept(&w, s));
        }
        for s in base..base + REPLAY_WINDOW {
            assert!(!replay_accept(&w, s));
        }
    }

    #[test]
    fn older_than_the_window_is_refused() {
        let w = window();
        let base = 77 << 20;
        assert!(replay_accept(&w, base + 10 * REPLAY_WINDOW));
        // Everything that maps to the slot of a newer block is refused.
        assert!(!replay_accept(&w, base + 10 * REPLAY_WINDOW - REPLAY_SLOTS as u64 * BLOCK_BITS));
        // Sequence numbers just behind the newest are still fine.
        assert!(replay_accept(&w, base + 10 * REPLAY_WINDOW - 1));
        // A sender restarted after a long silence (its clock far ahead) is accepted, and
        // what it sent before is not again.
        let later = base + (1 << 56);
        assert!(replay_accept(&w, later));
        assert!(replay_accept(&w, later + 1));
        assert!(!replay_accept(&w, base + 10 * REPLAY_WINDOW - 1));
        assert!(!replay_accept(&w, later));
    }

    /// Sequence numbers 2^52 apart (where the slots' 48 block bits repeat) are never taken
    /// for each other's replays' acceptance: none is accepted twice (found by the
    /// `wire_header` fuzzer). The later one may be refused: a sender silent for 2^52 ns
    /// (52 days) whose clock lands on exactly such a number loses that one packet.
    #[test]
    fn far_apart_sequence_numbers_are_never_accepted_twice() {
        let w = window();
        let a = 6_760_896_999_196_416u64;
        let far = a + (1 << 52);
        let mut seen = [0u32; 4];
        for (i, s) in [a, far, a, far, a + 1, far + 1, a].into_iter().enumerate() {
            if replay_accept(&w, s) {
                seen[[0, 1, 0, 1, 2, 3, 0][i]] += 1;
            }
        }
        assert_eq!(seen[0], 1, "{seen:?}");
        assert!(seen.iter().all(|&n| n <= 1), "{seen:?}");
        assert_eq!(seen[2], 0, "older than the window once `far` is in: {seen:?}");
    }
}
