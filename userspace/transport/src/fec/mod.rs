//! Per-hop forward error correction (FEC) for groups of packets on lossy links.
//!
//! A group is `k` data packets of variable length (at most [`MAX_PACKET`] bytes each) protected
//! by `m` parity shards; any `k` of the `k + m` shards recover every data packet byte-exact.
//!
//! Shard layout: each data packet is framed as a *virtual* shard `len (u16 LE) ‖ bytes ‖ zeros`
//! ([`frame_into`]), padded to the group's shard length `2 + longest packet`. Data packets
//! travel unframed and unpadded; only the parity shards have the full shard length, and the
//! decoder frames received data packets on the fly (their zero padding contributes nothing, so
//! it is never materialised).
//!
//! The code ([`cauchy`]) is a systematic Cauchy code over GF(2^8) (polynomial 0x11d) whose
//! parity matrix is scaled so that parity row 0 and data column 0 are all ones: parity 0 is the
//! plain XOR of the data, and a group that lost exactly one data packet is repaired by XOR
//! alone. Multiplication by a constant ([`gf`]) uses split 4-bit tables, 32 bytes per `VPSHUFB`
//! step on AVX2 (detected at run time) and a scalar table walk elsewhere (an SSSE3/NEON kernel
//! over the same nibble tables is the next step for such hosts). Decoding inverts only the
//! `e × e` matrix of the `e` lost data packets, so it costs `e · k` multiply-accumulates of one
//! shard.
//!
//! Why not reed-solomon-simd (O(n log n) over GF(2^16)): every decode pays a fixed transform
//! that costs more than rebuilding a per-hop group here, and a lossy link decodes most groups.
//! `cargo xtask bench` measures both side by side (the FEC codec and backend tables of
//! `BENCHMARKS.md`).
//!
//! FEC detects inconsistent input where it can ([`FecError::Corrupt`]) but does not
//! authenticate: a corrupted shard of a plausible shape rebuilds wrong bytes silently.

mod cauchy;
mod gf;

use std::fmt;

use cauchy::Cauchy;

/// Largest data packet a group can carry (bytes).
pub const MAX_PACKET: usize = 1500;

/// Largest `k + m`: shard indices fit one byte on the wire, and the Cauchy construction needs
/// `k + m` distinct elements of GF(2^8).
pub const MAX_SHARDS: usize = 255;

/// Bytes of the little-endian length prefix framing each data packet inside a shard.
pub const PREFIX: usize = 2;

/// "Not received" in [`Codec`]'s per-index slot table.
const ABSENT: usize = usize::MAX;

/// Why a group could not be encoded or decoded. Bad input is always reported, never a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FecError {
    /// `k` or `m` out of range: need `k >= 1`, `m >= 1`, `k + m <= MAX_SHARDS`.
    BadParams { k: usize, m: usize },
    /// A data packet is longer than the group can carry (`MAX_PACKET` on encode, the parity
    /// shard length minus the 2-byte prefix on decode).
    ShardTooLong { len: usize, max: usize },
    /// A parity shard has a length other than the one the group's parity shards have.
    WrongShardLen { index: usize, len: usize, expected: usize },
    /// A shard index is not below `k + m`.
    IndexOutOfRange { index: usize, total: usize },
    /// Fewer distinct shards than the `k` needed to rebuild the lost data packets.
    TooFewShards { have: usize, need: usize },
    /// The same shard index was given twice.
    Duplicate(usize),
    /// `encode` was given a number of data packets other than `k`.
    WrongPacketCount { have: usize, need: usize },
    /// A rebuilt data packet is inconsistent (length prefix past the shard, or non-zero
    /// padding): some received shard was corrupted or truncated.
    Corrupt { index: usize },
}

impl fmt::Display for FecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadParams { k, m } => write!(
                f,
                "bad FEC parameters k={k}, m={m}: need k >= 1, m >= 1 and k + m <= {MAX_SHARDS}"
            ),
            Self::ShardTooLong { len, max } => write!(
                f,
                "data packet of {len} bytes exceeds the {max} bytes this group carries: send it \
                 outside FEC groups, or check it was not corrupted in transit"
            ),
            Self::WrongShardLen { index, len, expected } => write!(
                f,
                "parity shard {index} is {len} bytes, expected {expected}: pass parity shards \
                 exactly as encode returned them (one group's parity shards share one length)"
            ),
            Self::IndexOutOfRange { index, total } => write!(
                f,
                "shard index {index} is out of range: the group has {total} shards \
                 (data 0..k, parity k..k+m)"
            ),
            Self::TooFewShards { have, need } => write!(
                f,
                "only {have} distinct shards of the {need} needed to rebuild the group: wait \
                 for more shards or give the group up"
            ),
            Self::Duplicate(index) => {
                write!(f, "shard index {index} given twice: pass each received shard once")
            }
            Self::WrongPacketCount { have, need } => write!(
                f,
                "encode got {have} data packets but the codec takes exactly k = {need}: fill \
                 the group or use a codec made for this k"
            ),
            Self::Corrupt { index } => write!(
                f,
                "rebuilt data packet {index} is inconsistent (length prefix past the shard or \
                 non-zero padding): a received shard was corrupted or truncated; drop the group"
            ),
        }
    }
}

impl std::error::Error for FecError {}

/// Encoder and decoder for groups of `k` data packets and `m` parity shards. The caller
/// carries the group id and each shard's index on the wire.
///
/// All state (matrix, decode scratch) is allocated once in
/// [`Codec::new`] and reused for every group; use [`Codec::encode_into`] and
/// [`Codec::decode_into`] to reuse the output buffers too.
pub struct Codec {
    k: usize,
    m: usize,
    cauchy: Cauchy,
    /// For each shard index, its position in the `received` slice being decoded, or `ABSENT`.
    slot: Vec<usize>,
    xor_repairs: u64,
}

impl Codec {
    /// A codec for `k` data packets and `m` parity shards. Needs `1 <= k`, `1 <= m`,
    /// `k + m <= MAX_SHARDS`.
    pub fn new(k: usize, m: usize) -> Result<Self, FecError> {
        if k == 0 || m == 0 || k + m > MAX_SHARDS {
            return Err(FecError::BadParams { k, m });
        }
        Ok(Self { k, m, cauchy: Cauchy::new(k, m), slot: vec![ABSENT; k + m], xor_repairs: 0 })
    }

    /// Data packets per group.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Parity shards per group.
    pub fn m(&self) -> usize {
        self.m
    }

    /// Length of every parity shard of a group whose longest data packet is `longest` bytes.
    pub fn shard_len(&self, longest: usize) -> usize {
        PREFIX + longest
    }

    /// How many groups were repaired by the XOR fast path (one data packet lost, parity 0
    /// received) since this codec was made.
    pub fn xor_repairs(&self) -> u64 {
        self.xor_repairs
    }

    /// The `m` parity shards for `data` (exactly `k` packets, each at most [`MAX_PACKET`]
    /// bytes). All have length [`Codec::shard_len`] of the longest packet.
    pub fn encode(&mut self, data: &[&[u8]]) -> Result<Vec<Vec<u8>>, FecError> {
        let mut parity = Vec::new();
        self.encode_into(data, &mut parity)?;
        Ok(parity)
    }

    /// Like [`Codec::encode`], writing into `parity` (resized to `m` shards; their capacity is
    /// reused).
    pub fn encode_into(
        &mut self,
        data: &[&[u8]],
        parity: &mut Vec<Vec<u8>>,
    ) -> Result<(), FecError> {
        if data.len() != self.k {
            return Err(FecError::WrongPacketCount { have: data.len(), need: self.k });
        }
        let longest = data.iter().map(|p| p.len()).max().unwrap_or(0);
        if longest > MAX_PACKET {
            return Err(FecError::ShardTooLong { len: longest, max: MAX_PACKET });
        }
        let len = self.shard_len(longest);
        parity.resize_with(self.m, Vec::new);
        for shard in parity.iter_mut() {
            shard.clear();
            shard.resize(len, 0);
        }
        self.cauchy.encode(data, parity);
        Ok(())
    }

    /// Recovers all `k` data packets, in order, from any `k` distinct shards. `received` holds
    /// `(index, bytes)`: index `< k` for a data packet (its original bytes), `k..k + m` for a
    /// parity shard (as `encode` returned it). Extra shards beyond `k` are allowed.
    pub fn decode(&mut self, received: &[(usize, &[u8])]) -> Result<Vec<Vec<u8>>, FecError> {
        let mut out = Vec::new();
        self.decode_into(received, &mut out)?;
        Ok(out)
    }

    /// Like [`Codec::decode`], writing into `out` (resized to `k` packets; their capacity is
    /// reused). On error, `out` holds unspecified contents.
    pub fn decode_into(
        &mut self,
        received: &[(usize, &[u8])],
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FecError> {
        let (k, total) = (self.k, self.k + self.m);
        self.slot.fill(ABSENT);
        let mut parity_len = None;
        for (pos, &(index, bytes)) in received.iter().enumerate() {
            if index >= total {
                return Err(FecError::IndexOutOfRange { index, total });
            }
            if self.slot[index] != ABSENT {
                return Err(FecError::Duplicate(index));
            }
            self.slot[index] = pos;
            let len = bytes.len();
            if index < k {
                if len > MAX_PACKET {
                    return Err(FecError::ShardTooLong { len, max: MAX_PACKET });
                }
            } else if let Some(expected) = parity_len {
                if len != expected {
                    return Err(FecError::WrongShardLen { index, len, expected });
                }
            } else {
                // The first parity shard sets the group's shard length; it must be one that
                // encode can produce.
                let max = self.shard_len(MAX_PACKET);
                if len > max {
                    return Err(FecError::ShardTooLong { len, max });
                }
                let expected = self.shard_len(len.saturating_sub(PREFIX));
                if len != expected {
                    return Err(FecError::WrongShardLen { index, len, expected });
                }
                parity_len = Some(len);
            }
        }
        if let Some(len) = parity_len {
            let max = len - PREFIX;
            for &(index, bytes) in received {
                if index < k && bytes.len() > max {
                    return Err(FecError::ShardTooLong { len: bytes.len(), max });
                }
            }
        }

        out.resize_with(k, Vec::new);
        let mut missing = 0;
        for (i, packet) in out.iter_mut().enumerate() {
            packet.clear();
            match self.slot[i] {
                ABSENT => missing += 1,
                pos => packet.extend_from_slice(received[pos].1),
            }
        }
        if missing == 0 {
            return Ok(());
        }
        let have = self.slot.iter().filter(|&&s| s != ABSENT).count();
        // Some data packet is missing and enough shards arrived, so a parity shard did too.
        let Some(len) = parity_len.filter(|_| have >= k) else {
            return Err(FecError::TooFewShards { have, need: k });
        };
        for (packet, &s) in out.iter_mut().zip(&self.slot) {
            if s == ABSENT {
                packet.resize(len, 0);
            }
        }
        if self.cauchy.reconstruct(received, &self.slot, out) {
            self.xor_repairs += 1;
        }
        for (index, (packet, &s)) in out.iter_mut().zip(&self.slot).enumerate() {
            if s == ABSENT {
                unframe(packet).ok_or(FecError::Corrupt { index })?;
            }
        }
        Ok(())
    }
}

/// Turns a rebuilt shard back into its packet; `None` if the shard is inconsistent.
fn unframe(shard: &mut Vec<u8>) -> Option<()> {
    let len = usize::from(u16::from_le_bytes([shard[0], shard[1]]));
    let end = PREFIX.checked_add(len).filter(|&end| end <= shard.len())?;
    if shard[end..].iter().any(|&b| b != 0) {
        return None;
    }
    shard.copy_within(PREFIX..end, 0);
    shard.truncate(len);
    Some(())
}

/// The length prefix of a data packet (at most `MAX_PACKET`, validated by the callers).
fn prefix(packet: &[u8]) -> [u8; PREFIX] {
    (packet.len() as u16).to_le_bytes()
}

/// `frame = prefix ‖ packet ‖ zeros`: a data packet as the shard the code works on (`frame`
/// is the group's shard length, at least `PREFIX + packet.len()`; `packet` at most
/// [`MAX_PACKET`] bytes).
pub fn frame_into(frame: &mut [u8], packet: &[u8]) {
    let (head, body) = frame.split_at_mut(PREFIX);
    head.copy_from_slice(&prefix(packet));
    body[..packet.len()].copy_from_slice(packet);
    body[packet.len()..].fill(0);
}

#[cfg(test)]
mod tests;
