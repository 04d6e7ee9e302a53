//! Per-hop forward error correction (FEC) for groups of packets on lossy links.
//!
//! A group is `k` data packets of variable length (at most [`MAX_PACKET`] bytes each) protected
//! by `m` parity shards; any `k` of the `k + m` shards recover every data packet byte-exact.
//!
//! Shard layout: each data packet is framed as a *virtual* shard `len (u16 LE) ‖ bytes ‖ zeros`,
//! padded to the group's shard length `2 + longest packet` (rounded up to even for the
//! reed-solomon-simd backend, which needs even shard sizes). Data packets travel unframed and
//! unpadded; only the parity shards have the full shard length, and the decoder frames received
//! data packets on the fly (their zero padding contributes nothing, so it is never materialised).
//!
//! Backends ([`Backend`]):
//! - [`Backend::Cauchy`]: a systematic Cauchy code over GF(2^8) (polynomial 0x11d). The parity
//!   matrix is scaled so that parity row 0 and data column 0 are all ones: parity 0 is the plain
//!   XOR of the data, and a group that lost exactly one data packet is repaired by XOR alone.
//!   Multiplication by a constant uses split 4-bit tables, 32 bytes per `VPSHUFB` step on AVX2
//!   (detected at run time) and a scalar table walk elsewhere. Decoding inverts only the `e × e`
//!   matrix of the `e` lost data packets, so it costs `e · k` multiply-accumulates of one shard.
//! - [`Backend::ReedSolomon`]: reed-solomon-simd (O(n log n) over GF(2^16)). Its encoder
//!   beats Cauchy's from `k + m` ≈ 20 up, but every decode pays a fixed ~130 µs transform, so
//!   [`Codec::new`] uses Cauchy for every `(k, m)` (measurements at [`Backend::for_params`]);
//!   this backend stays available through [`Codec::with_backend`].
//!
//! Without AVX2 the Cauchy kernels fall back to scalar table lookups: at k=10, 1,200-byte
//! packets, decode ≈ 1.3 GiB/s and encode 2.8 (m=2) to 0.7 (m=5) GiB/s. An SSSE3/NEON kernel
//! (same nibble tables) is the next step for such hosts.
//!
//! FEC detects inconsistent input where it can ([`FecError::Corrupt`]) but does not
//! authenticate: a corrupted shard of a plausible shape rebuilds wrong bytes silently.
//!
//! Layout of this module: errors, [`Codec`] (framing and validation shared by both backends),
//! the Cauchy backend and its GF(2^8) kernels, the reed-solomon-simd backend, [`bench()`], tests.

use std::fmt;
use std::time::{Duration, Instant};

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

use crate::prng::XorShift;

/// Largest data packet a group can carry (bytes).
pub const MAX_PACKET: usize = 1500;

/// Largest `k + m`: shard indices fit one byte on the wire, and the Cauchy construction needs
/// `k + m` distinct elements of GF(2^8).
pub const MAX_SHARDS: usize = 255;

/// Bytes of the little-endian length prefix framing each data packet inside a shard.
const PREFIX: usize = 2;

/// "Not received" in [`Codec`]'s per-index slot table.
const ABSENT: usize = usize::MAX;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Codec
// ---------------------------------------------------------------------------------------------

/// Which erasure code a [`Codec`] runs. Both give the same guarantees (any `k` of `k + m`
/// shards recover the group) but produce different parity: both ends of a link must agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Systematic Cauchy code over GF(2^8) with an XOR parity 0 (this module).
    Cauchy,
    /// reed-solomon-simd (GF(2^16), FFT based).
    ReedSolomon,
}

impl Backend {
    /// The backend [`Codec::new`] uses for `(k, m)`: always Cauchy, from [`bench_backends`]
    /// runs at 1,200-byte packets on an AVX2 host (`cargo xtask bench`, `BENCHMARKS.md`).
    ///
    /// - Decode: Cauchy rebuilds 1–2 lost packets at 13–34 GiB/s of group data for any `k, m`;
    ///   reed-solomon-simd spends at least ~130 µs per decode (0.03–0.7 GiB/s, k = 4..200).
    /// - Encode (both behind `Codec`'s framing): about even up to `k + m` ≈ 15 (k=10, m=4: 10
    ///   vs 9.4 GiB/s; 11.8 for bare reed-solomon-simd) and Cauchy stays above 2 GiB/s up to
    ///   `k + m` = 70; reed-solomon-simd's O(n log n) encoder wins beyond (k=20, m=10: 4.2 vs
    ///   5.7; k=64, m=64: 0.65 vs 4.2).
    ///
    /// A link runs at the slower of its encoder and decoder, and on a lossy link most large
    /// groups need a decode, so Cauchy's bound is the higher one everywhere measured, or about
    /// even at the extreme (k=200, m=55 with 27 packets lost: 0.6–0.8 GiB/s each across runs),
    /// far beyond per-hop group sizes.
    pub fn for_params(_k: usize, _m: usize) -> Self {
        Self::Cauchy
    }
}

/// Encoder and decoder for groups of `k` data packets and `m` parity shards. The caller
/// carries the group id and each shard's index on the wire.
///
/// All state (matrices, the reed-solomon-simd work space, scratch) is allocated once in
/// [`Codec::new`] and reused for every group; use [`Codec::encode_into`] and
/// [`Codec::decode_into`] to reuse the output buffers too.
pub struct Codec {
    k: usize,
    m: usize,
    engine: Engine,
    /// For each shard index, its position in the `received` slice being decoded, or `ABSENT`.
    slot: Vec<usize>,
    xor_repairs: u64,
}

enum Engine {
    Cauchy(Cauchy),
    ReedSolomon(Rs),
}

impl Codec {
    /// A codec for `k` data packets and `m` parity shards, with the backend
    /// [`Backend::for_params`] picks. Needs `1 <= k`, `1 <= m`, `k + m <= MAX_SHARDS`.
    pub fn new(k: usize, m: usize) -> Result<Self, FecError> {
        Self::with_backend(k, m, Backend::for_params(k, m))
    }

    /// A codec forced onto `backend` (both ends of a link must use the same one).
    pub fn with_backend(k: usize, m: usize, backend: Backend) -> Result<Self, FecError> {
        if k == 0 || m == 0 || k + m > MAX_SHARDS {
            return Err(FecError::BadParams { k, m });
        }
        let engine = match backend {
            Backend::Cauchy => Engine::Cauchy(Cauchy::new(k, m)),
            Backend::ReedSolomon => Engine::ReedSolomon(Rs::new(k, m)?),
        };
        Ok(Self { k, m, engine, slot: vec![ABSENT; k + m], xor_repairs: 0 })
    }

    /// Data packets per group.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Parity shards per group.
    pub fn m(&self) -> usize {
        self.m
    }

    /// The backend this codec runs.
    pub fn backend(&self) -> Backend {
        match self.engine {
            Engine::Cauchy(_) => Backend::Cauchy,
            Engine::ReedSolomon(_) => Backend::ReedSolomon,
        }
    }

    /// Length of every parity shard of a group whose longest data packet is `longest` bytes:
    /// `2 + longest`, rounded up to even for [`Backend::ReedSolomon`].
    pub fn shard_len(&self, longest: usize) -> usize {
        let len = PREFIX + longest;
        match self.engine {
            Engine::Cauchy(_) => len,
            Engine::ReedSolomon(_) => len + (len & 1),
        }
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
        match &mut self.engine {
            Engine::Cauchy(c) => c.encode(data, parity),
            Engine::ReedSolomon(rs) => rs.encode(data, len, parity),
        }
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
        match &mut self.engine {
            Engine::Cauchy(c) => {
                if c.reconstruct(received, &self.slot, out) {
                    self.xor_repairs += 1;
                }
            }
            Engine::ReedSolomon(rs) => rs.reconstruct(received, &self.slot, len, out),
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

// ---------------------------------------------------------------------------------------------
// Cauchy backend
// ---------------------------------------------------------------------------------------------

/// Systematic Cauchy code: parity `p` = Σ_j `matrix[p][j]` · shard_j over GF(2^8).
struct Cauchy {
    k: usize,
    m: usize,
    /// `m × k`, row-major. Every square submatrix is invertible (Cauchy, then scaled by rows
    /// and columns), so any `k` shards determine the data.
    matrix: Vec<u8>,
    kernel: Kernel,
    // Decode scratch, reused across groups.
    lost: Vec<usize>,
    rows: Vec<usize>,
    inverse: Vec<u8>,
    work: Vec<u8>,
}

impl Cauchy {
    fn new(k: usize, m: usize) -> Self {
        // Rows x_i = k + i, columns y_j = j: k + m <= 255 distinct elements, never x_i = y_j.
        let cauchy = |i: usize, j: usize| gf_inv(((k + i) ^ j) as u8);
        let mut matrix = vec![0; m * k];
        for i in 0..m {
            // Scale row i by c[0][0] / c[i][0] and column j by 1 / c[0][j]: row 0 and column 0
            // become all ones, and scaling keeps every square submatrix invertible.
            let row_scale = gf_mul(cauchy(0, 0), gf_inv(cauchy(i, 0)));
            for j in 0..k {
                matrix[i * k + j] = gf_mul(gf_mul(cauchy(i, j), row_scale), gf_inv(cauchy(0, j)));
            }
        }
        Self {
            k,
            m,
            matrix,
            kernel: Kernel::detect(),
            lost: Vec::with_capacity(k),
            rows: Vec::with_capacity(m),
            inverse: Vec::with_capacity(m * m),
            work: Vec::with_capacity(m * m),
        }
    }

    fn encode(&self, data: &[&[u8]], parity: &mut [Vec<u8>]) {
        for (row, shard) in self.matrix.chunks_exact(self.k).zip(parity) {
            for (&c, packet) in row.iter().zip(data) {
                acc_packet(self.kernel, shard, c, packet);
            }
        }
    }

    /// Rebuilds the lost data shards into the zeroed, shard-long `out` entries of the lost
    /// packets (`slot[i] == ABSENT`). The caller checked that at least `k` shards arrived.
    /// Returns whether the XOR fast path did it.
    fn reconstruct(
        &mut self,
        received: &[(usize, &[u8])],
        slot: &[usize],
        out: &mut [Vec<u8>],
    ) -> bool {
        let Self {
            k,
            m,
            ref matrix,
            kernel,
            ref mut lost,
            ref mut rows,
            ref mut inverse,
            ref mut work,
        } = *self;
        let packet = |i: usize| received[slot[i]].1;
        let known = || (0..k).filter(|&j| slot[j] != ABSENT);
        lost.clear();
        lost.extend((0..k).filter(|&i| slot[i] == ABSENT));
        let e = lost.len();
        // The first e parity shards received; parity 0 (pure XOR) first when it is there.
        rows.clear();
        rows.extend((0..m).filter(|&p| slot[k + p] != ABSENT).take(e));

        if e == 1 && rows[0] == 0 {
            // One data packet lost and the XOR parity received: d_i = p_0 ^ Σ_{j≠i} d_j.
            let shard = &mut out[lost[0]];
            shard.copy_from_slice(packet(k));
            for j in known() {
                acc_packet(kernel, shard, 1, packet(j));
            }
            return true;
        }

        // p_r ^ Σ_known C[r][j]·d_j = Σ_lost C[r][i]·d_i for each used parity row r: invert the
        // e × e matrix A[a][b] = C[rows[a]][lost[b]], then d_lost = A⁻¹ · (p - known part).
        work.clear();
        for &r in rows.iter() {
            work.extend(lost.iter().map(|&i| matrix[r * k + i]));
        }
        invert(work, e, inverse);
        for (inv_row, &i) in inverse.chunks_exact(e).zip(lost.iter()) {
            let shard = &mut out[i];
            for (&c, &r) in inv_row.iter().zip(rows.iter()) {
                mul_acc(kernel, shard, c, packet(k + r));
            }
            // d_i's coefficient for known d_j folds A⁻¹ and C: Σ_a A⁻¹[b][a]·C[rows[a]][j].
            for j in known() {
                let c = inv_row
                    .iter()
                    .zip(rows.iter())
                    .fold(0, |acc, (&x, &r)| acc ^ gf_mul(x, matrix[r * k + j]));
                acc_packet(kernel, shard, c, packet(j));
            }
        }
        false
    }
}

/// Writes the inverse of the `e × e` row-major `matrix` into `inverse` by Gauss–Jordan
/// elimination; `matrix` is destroyed.
///
/// # Panics
/// If the matrix is singular, which no square submatrix of a Cauchy matrix is.
fn invert(matrix: &mut [u8], e: usize, inverse: &mut Vec<u8>) {
    inverse.clear();
    inverse.resize(e * e, 0);
    for i in 0..e {
        inverse[i * e + i] = 1;
    }
    for col in 0..e {
        let pivot = (col..e)
            .find(|&r| matrix[r * e + col] != 0)
            .expect("square submatrices of a Cauchy matrix are invertible");
        for c in 0..e {
            matrix.swap(pivot * e + c, col * e + c);
            inverse.swap(pivot * e + c, col * e + c);
        }
        let scale = gf_inv(matrix[col * e + col]);
        for c in 0..e {
            matrix[col * e + c] = gf_mul(matrix[col * e + c], scale);
            inverse[col * e + c] = gf_mul(inverse[col * e + c], scale);
        }
        for r in (0..e).filter(|&r| r != col) {
            let f = matrix[r * e + col];
            if f != 0 {
                for c in 0..e {
                    matrix[r * e + c] ^= gf_mul(f, matrix[col * e + c]);
                    inverse[r * e + c] ^= gf_mul(f, inverse[col * e + c]);
                }
            }
        }
    }
}

/// `shard ^= c · frame(packet)`: the prefix and the bytes; the zero padding adds nothing.
fn acc_packet(kernel: Kernel, shard: &mut [u8], c: u8, packet: &[u8]) {
    let (head, body) = shard.split_at_mut(PREFIX);
    mul_acc(kernel, head, c, &prefix(packet));
    mul_acc(kernel, body, c, packet);
}

// ---------------------------------------------------------------------------------------------
// GF(2^8) arithmetic and kernels
// ---------------------------------------------------------------------------------------------

/// GF(2^8) with the polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11d), generator 2.
struct Gf {
    /// `exp[i] = 2^i`, doubled so `exp[log a + log b]` needs no reduction.
    exp: [u8; 510],
    log: [u8; 256],
    /// `nibbles[c] = [c · x, c · (x << 4)]` for `x` in `0..16`: `c · b` is
    /// `nibbles[c][0][b & 15] ^ nibbles[c][1][b >> 4]`, the form `VPSHUFB` looks up.
    nibbles: [[[u8; 16]; 2]; 256],
}

static GF: Gf = Gf::new();

impl Gf {
    const fn new() -> Self {
        let mut gf = Self { exp: [0; 510], log: [0; 256], nibbles: [[[0; 16]; 2]; 256] };
        let mut x: u16 = 1;
        let mut i = 0;
        while i < 255 {
            gf.exp[i] = x as u8;
            gf.exp[i + 255] = x as u8;
            gf.log[x as usize] = i as u8;
            x <<= 1;
            if x & 0x100 != 0 {
                x ^= 0x11d;
            }
            i += 1;
        }
        let mut c = 0;
        while c < 256 {
            let mut n = 0;
            while n < 16 {
                gf.nibbles[c][0][n] = slow_mul(c as u8, n as u8);
                gf.nibbles[c][1][n] = slow_mul(c as u8, (n << 4) as u8);
                n += 1;
            }
            c += 1;
        }
        gf
    }
}

/// Shift-and-add multiplication, for building tables at compile time.
const fn slow_mul(mut a: u8, mut b: u8) -> u8 {
    let mut product = 0;
    while b != 0 {
        if b & 1 != 0 {
            product ^= a;
        }
        a = (a << 1) ^ if a & 0x80 != 0 { 0x1d } else { 0 };
        b >>= 1;
    }
    product
}

fn gf_mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        return 0;
    }
    GF.exp[usize::from(GF.log[usize::from(a)]) + usize::from(GF.log[usize::from(b)])]
}

/// Multiplicative inverse of a non-zero element.
fn gf_inv(a: u8) -> u8 {
    debug_assert_ne!(a, 0);
    GF.exp[255 - usize::from(GF.log[usize::from(a)])]
}

/// Which multiply-accumulate implementation the CPU can run; detected once per codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Kernel {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Self::Avx2;
        }
        Self::Scalar
    }
}

/// `out[..src.len()] ^= c · src` over GF(2^8); `out` is at least as long as `src`.
fn mul_acc(kernel: Kernel, out: &mut [u8], c: u8, src: &[u8]) {
    let out = &mut out[..src.len()];
    let nibbles = &GF.nibbles[usize::from(c)];
    match (kernel, c) {
        (_, 0) => {}
        (Kernel::Scalar, 1) => out.iter_mut().zip(src).for_each(|(o, s)| *o ^= s),
        (Kernel::Scalar, _) => {
            for (o, &s) in out.iter_mut().zip(src) {
                *o ^= nibbles[0][usize::from(s & 15)] ^ nibbles[1][usize::from(s >> 4)];
            }
        }
        // SAFETY: `Kernel::Avx2` is only chosen when the CPU has AVX2 (`Kernel::detect`).
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx2, 1) => unsafe { avx2::xor(out, src) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx2, _) => unsafe { avx2::mul_acc(out, src, nibbles) },
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256i, _mm_loadu_si128, _mm256_and_si256, _mm256_broadcastsi128_si256,
        _mm256_loadu_si256, _mm256_set1_epi8, _mm256_shuffle_epi8, _mm256_srli_epi64,
        _mm256_storeu_si256, _mm256_xor_si256,
    };

    /// `out ^= src`; plain code, vectorised by the compiler to 32-byte AVX2 operations.
    #[target_feature(enable = "avx2")]
    pub(super) fn xor(out: &mut [u8], src: &[u8]) {
        out.iter_mut().zip(src).for_each(|(o, s)| *o ^= s);
    }

    /// `out ^= c · src` (`out.len() == src.len()`), 32 bytes per step: split each byte into
    /// nibbles and look both up in `c`'s 16-entry tables with `VPSHUFB`.
    #[target_feature(enable = "avx2")]
    pub(super) fn mul_acc(out: &mut [u8], src: &[u8], nibbles: &[[u8; 16]; 2]) {
        // SAFETY: each table is 16 bytes; unaligned loads are allowed.
        let (lo, hi) = unsafe {
            (
                _mm_loadu_si128(nibbles[0].as_ptr().cast()),
                _mm_loadu_si128(nibbles[1].as_ptr().cast()),
            )
        };
        let (lo, hi) = (_mm256_broadcastsi128_si256(lo), _mm256_broadcastsi128_si256(hi));
        let mask = _mm256_set1_epi8(0x0f);
        let mut outs = out.chunks_exact_mut(32);
        let mut srcs = src.chunks_exact(32);
        for (o, s) in (&mut outs).zip(&mut srcs) {
            let (o, s) = (o.as_mut_ptr().cast::<__m256i>(), s.as_ptr().cast::<__m256i>());
            // SAFETY: both chunks are exactly 32 bytes; loadu/storeu need no alignment.
            unsafe {
                let s = _mm256_loadu_si256(s);
                let l = _mm256_shuffle_epi8(lo, _mm256_and_si256(s, mask));
                let h = _mm256_shuffle_epi8(hi, _mm256_and_si256(_mm256_srli_epi64::<4>(s), mask));
                let p = _mm256_xor_si256(l, h);
                _mm256_storeu_si256(o, _mm256_xor_si256(_mm256_loadu_si256(o), p));
            }
        }
        for (o, &s) in outs.into_remainder().iter_mut().zip(srcs.remainder()) {
            *o ^= nibbles[0][usize::from(s & 15)] ^ nibbles[1][usize::from(s >> 4)];
        }
    }
}

// ---------------------------------------------------------------------------------------------
// reed-solomon-simd backend
// ---------------------------------------------------------------------------------------------

/// Codec inputs are validated before they reach reed-solomon-simd, so its errors cannot occur.
const VALIDATED: &str = "inputs validated by Codec";

struct Rs {
    k: usize,
    m: usize,
    encoder: ReedSolomonEncoder,
    decoder: ReedSolomonDecoder,
    /// `k` framed, padded data shards: reed-solomon-simd takes only full-length shards.
    frames: Vec<u8>,
}

impl Rs {
    fn new(k: usize, m: usize) -> Result<Self, FecError> {
        // Size the work space for the longest shard once so `reset` never reallocates.
        let max = PREFIX + MAX_PACKET + (MAX_PACKET & 1);
        let bad = |_| FecError::BadParams { k, m };
        Ok(Self {
            k,
            m,
            encoder: ReedSolomonEncoder::new(k, m, max).map_err(bad)?,
            decoder: ReedSolomonDecoder::new(k, m, max).map_err(bad)?,
            frames: vec![0; k * max],
        })
    }

    fn encode(&mut self, data: &[&[u8]], len: usize, parity: &mut [Vec<u8>]) {
        self.encoder.reset(self.k, self.m, len).expect(VALIDATED);
        for (frame, packet) in self.frames.chunks_exact_mut(len).zip(data) {
            frame_into(frame, packet);
            self.encoder.add_original_shard(&*frame).expect(VALIDATED);
        }
        let result = self.encoder.encode().expect(VALIDATED);
        for (shard, recovery) in parity.iter_mut().zip(result.recovery_iter()) {
            shard.copy_from_slice(recovery);
        }
    }

    fn reconstruct(
        &mut self,
        received: &[(usize, &[u8])],
        slot: &[usize],
        len: usize,
        out: &mut [Vec<u8>],
    ) {
        let k = self.k;
        self.decoder.reset(k, self.m, len).expect(VALIDATED);
        for (i, frame) in self.frames.chunks_exact_mut(len).take(k).enumerate() {
            if slot[i] != ABSENT {
                frame_into(frame, received[slot[i]].1);
                self.decoder.add_original_shard(i, &*frame).expect(VALIDATED);
            }
        }
        for (p, &s) in slot[k..].iter().enumerate() {
            if s != ABSENT {
                self.decoder.add_recovery_shard(p, received[s].1).expect(VALIDATED);
            }
        }
        let result = self.decoder.decode().expect(VALIDATED);
        for (i, shard) in out.iter_mut().enumerate().filter(|&(i, _)| slot[i] == ABSENT) {
            shard.copy_from_slice(result.restored_original(i).expect(VALIDATED));
        }
    }
}

/// `frame = prefix ‖ packet ‖ zeros`.
fn frame_into(frame: &mut [u8], packet: &[u8]) {
    let (head, body) = frame.split_at_mut(PREFIX);
    head.copy_from_slice(&prefix(packet));
    body[..packet.len()].copy_from_slice(packet);
    body[packet.len()..].fill(0);
}

// ---------------------------------------------------------------------------------------------
// Benchmark
// ---------------------------------------------------------------------------------------------

const GIB: f64 = (1u64 << 30) as f64;

/// Side-by-side throughput of [`Codec::new`]`(k, m)` and plain reed-solomon-simd on groups of
/// `k` packets of `packet` bytes: `(encode_ours, decode_ours, encode_rs, decode_rs)` in GiB/s
/// of original data, each measured for at least `min_time` with encoder and decoder reused.
/// Each decode rebuilds the first `lost` data packets (clamped to `k` and `m`) from the first
/// `lost` parity shards.
///
/// # Panics
/// If `(k, m)` is not valid for [`Codec::new`] or `packet > MAX_PACKET`.
pub fn bench(
    k: usize,
    m: usize,
    packet: usize,
    lost: usize,
    min_time: Duration,
) -> (f64, f64, f64, f64) {
    let mut codec = Codec::new(k, m).expect("bench: invalid k, m");
    let (encode, decode) = bench_codec(&mut codec, packet, lost, min_time);
    let (encode_rs, decode_rs) = bench_plain_rs(k, m, packet, lost, min_time);
    (encode, decode, encode_rs, decode_rs)
}

/// Both backends behind [`Codec`] on the same groups, as [`bench()`] measures them:
/// `[(encode, decode) of Cauchy, (encode, decode) of reed-solomon-simd]` in GiB/s; the
/// figures behind [`Backend::for_params`].
///
/// # Panics
/// As [`bench()`].
pub fn bench_backends(
    k: usize,
    m: usize,
    packet: usize,
    lost: usize,
    min_time: Duration,
) -> [(f64, f64); 2] {
    [Backend::Cauchy, Backend::ReedSolomon].map(|b| {
        let mut codec = Codec::with_backend(k, m, b).expect("bench: invalid k, m");
        bench_codec(&mut codec, packet, lost, min_time)
    })
}

/// `(encode, decode)` GiB/s of `codec`, as described for [`bench()`].
fn bench_codec(codec: &mut Codec, packet: usize, lost: usize, min_time: Duration) -> (f64, f64) {
    let (k, m) = (codec.k(), codec.m());
    let lost = lost.min(k).min(m);
    let data = random_packets(k, packet, 1);
    let data: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    let bytes = (k * packet) as f64;
    let mut parity = Vec::new();
    let encode = throughput(bytes, min_time, || {
        codec.encode_into(&data, &mut parity).expect("bench: encode");
        std::hint::black_box(&parity);
    });
    let received: Vec<(usize, &[u8])> = (lost..k)
        .map(|i| (i, data[i]))
        .chain(parity[..lost].iter().enumerate().map(|(p, s)| (k + p, s.as_slice())))
        .collect();
    let mut out = Vec::new();
    let decode = throughput(bytes, min_time, || {
        codec.decode_into(&received, &mut out).expect("bench: decode");
        std::hint::black_box(&out);
    });
    (encode, decode)
}

/// `(encode, decode)` GiB/s of reed-solomon-simd used directly on `packet`-byte shards (rounded
/// up to even, as it requires).
fn bench_plain_rs(
    k: usize,
    m: usize,
    packet: usize,
    lost: usize,
    min_time: Duration,
) -> (f64, f64) {
    let lost = lost.min(k).min(m);
    let len = (packet + (packet & 1)).max(2);
    let data = random_packets(k, len, 2);
    let bytes = (k * packet) as f64;
    let mut encoder = ReedSolomonEncoder::new(k, m, len).expect("bench: encoder");
    let encode = throughput(bytes, min_time, || {
        for shard in &data {
            encoder.add_original_shard(shard).expect("bench: add original");
        }
        std::hint::black_box(encoder.encode().expect("bench: encode").recovery(0));
    });
    for shard in &data {
        encoder.add_original_shard(shard).expect("bench: add original");
    }
    let recovery: Vec<Vec<u8>> =
        encoder.encode().expect("bench: encode").recovery_iter().map(<[u8]>::to_vec).collect();
    let mut decoder = ReedSolomonDecoder::new(k, m, len).expect("bench: decoder");
    let decode = throughput(bytes, min_time, || {
        for (i, shard) in data.iter().enumerate().skip(lost) {
            decoder.add_original_shard(i, shard).expect("bench: add original");
        }
        for (p, shard) in recovery.iter().enumerate().take(lost) {
            decoder.add_recovery_shard(p, shard).expect("bench: add recovery");
        }
        let result = decoder.decode().expect("bench: decode");
        for i in 0..lost {
            std::hint::black_box(result.restored_original(i));
        }
    });
    (encode, decode)
}

/// GiB/s of `run`, which processes `bytes` per call, measured over at least `min_time`.
fn throughput(bytes: f64, min_time: Duration, mut run: impl FnMut()) -> f64 {
    run(); // Warm caches and work space.
    let start = Instant::now();
    let mut runs = 0u64;
    loop {
        run();
        runs += 1;
        let elapsed = start.elapsed();
        if elapsed >= min_time {
            return runs as f64 * bytes / elapsed.as_secs_f64() / GIB;
        }
    }
}

/// `count` packets of `len` pseudo-random bytes.
fn random_packets(count: usize, len: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = XorShift::new(seed);
    (0..count).map(|_| rng.bytes(len)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKENDS: [Backend; 2] = [Backend::Cauchy, Backend::ReedSolomon];

    /// A group of `k` packets with random lengths, always including the extremes 0 and
    /// `MAX_PACKET` when `k` allows.
    fn group(rng: &mut XorShift, k: usize, max: usize) -> Vec<Vec<u8>> {
        (0..k)
            .map(|i| match i {
                0 => rng.bytes(max),
                1 => Vec::new(),
                _ => {
                    let len = (rng.next_u64() % (max as u64 + 1)) as usize;
                    rng.bytes(len)
                }
            })
            .collect()
    }

    fn refs(packets: &[Vec<u8>]) -> Vec<&[u8]> {
        packets.iter().map(Vec::as_slice).collect()
    }

    /// All shards of a group: data packets then parity shards, by index.
    fn shards<'a>(data: &'a [Vec<u8>], parity: &'a [Vec<u8>]) -> Vec<(usize, &'a [u8])> {
        data.iter().chain(parity).map(Vec::as_slice).enumerate().collect()
    }

    /// Decodes `data` with the shards whose index is in `lost` removed, in shuffled order.
    fn decode_without(
        codec: &mut Codec,
        rng: &mut XorShift,
        all: &[(usize, &[u8])],
        lost: &[usize],
    ) -> Result<Vec<Vec<u8>>, FecError> {
        let mut received: Vec<_> = all.iter().filter(|(i, _)| !lost.contains(i)).copied().collect();
        for i in (1..received.len()).rev() {
            received.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        codec.decode(&received)
    }

    /// `count` distinct indices below `total`.
    fn random_subset(rng: &mut XorShift, total: usize, count: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..total).collect();
        for i in 0..count {
            all.swap(i, i + (rng.next_u64() % (total - i) as u64) as usize);
        }
        all.truncate(count);
        all
    }

    /// Calls `f` with every `count`-subset of `0..total` (lexicographic).
    fn for_each_subset(total: usize, count: usize, f: &mut impl FnMut(&[usize])) {
        let mut idx: Vec<usize> = (0..count).collect();
        loop {
            f(&idx);
            let Some(i) = (0..count).rev().find(|&i| idx[i] != i + total - count) else {
                return;
            };
            idx[i] += 1;
            for j in i + 1..count {
                idx[j] = idx[j - 1] + 1;
            }
        }
    }

    fn binomial(n: usize, r: usize) -> usize {
        (0..r).fold(1, |acc, i| acc * (n - i) / (i + 1))
    }

    /// Round trip for `(k, m)` on `backend`: every loss pattern of `m` shards when there are
    /// few, random ones otherwise, plus random patterns losing fewer.
    fn round_trip(backend: Backend, k: usize, m: usize, seed: u64) {
        let mut rng = XorShift::new(seed);
        let mut codec = Codec::with_backend(k, m, backend).unwrap();
        // Full-size groups, small ones, and all-empty ones (2-byte shards).
        for max in [MAX_PACKET, MAX_PACKET, 40, 0] {
            let data = group(&mut rng, k, max);
            let parity = codec.encode(&refs(&data)).unwrap();
            let longest = data.iter().map(Vec::len).max().unwrap();
            assert!(parity.iter().all(|p| p.len() == codec.shard_len(longest)));
            let all = shards(&data, &parity);
            let mut shuffle = XorShift::new(rng.next_u64());
            let mut check = |lost: &[usize]| {
                let got = decode_without(&mut codec, &mut shuffle, &all, lost);
                assert_eq!(got.as_ref(), Ok(&data), "{backend:?} k={k} m={m} lost {lost:?}");
            };
            if k + m <= 8 {
                for_each_subset(k + m, m, &mut check);
            } else {
                for _ in 0..40 {
                    check(&random_subset(&mut rng, k + m, m));
                }
            }
            for _ in 0..20 {
                let count = (rng.next_u64() % (m as u64 + 1)) as usize;
                check(&random_subset(&mut rng, k + m, count));
            }
        }
    }

    #[test]
    fn round_trips_any_m_losses_on_both_backends() {
        for backend in BACKENDS {
            for k in [1, 2, 5, 10, 20] {
                for m in [1, 2, 4, 10] {
                    round_trip(backend, k, m, (k * 100 + m) as u64);
                }
            }
        }
    }

    #[test]
    fn exhaustive_loss_patterns_on_small_packets() {
        // Every m-subset of lost shards for mid-sized groups: each one inverts a different
        // square submatrix of the Cauchy matrix (or, with fewer than m data lost, a smaller one).
        for (k, m) in [(10, 4), (8, 5), (20, 3)] {
            let mut rng = XorShift::new(7);
            let mut codec = Codec::new(k, m).unwrap();
            let data = group(&mut rng, k, 9);
            let parity = codec.encode(&refs(&data)).unwrap();
            let all = shards(&data, &parity);
            let mut patterns = 0;
            for_each_subset(k + m, m, &mut |lost| {
                patterns += 1;
                assert_eq!(decode_without(&mut codec, &mut rng, &all, lost).unwrap(), data);
            });
            assert_eq!(patterns, binomial(k + m, m));
        }
    }

    #[test]
    fn large_groups_round_trip() {
        for backend in BACKENDS {
            for (k, m) in [(200, 55), (100, 100), (254, 1), (1, 254)] {
                let mut rng = XorShift::new(k as u64);
                let mut codec = Codec::with_backend(k, m, backend).unwrap();
                let data = group(&mut rng, k, 64);
                let parity = codec.encode(&refs(&data)).unwrap();
                let all = shards(&data, &parity);
                let lost = random_subset(&mut rng, k + m, m);
                assert_eq!(decode_without(&mut codec, &mut rng, &all, &lost).unwrap(), data);
            }
        }
    }

    #[test]
    fn backends_agree_and_parity_zero_is_xor() {
        let mut rng = XorShift::new(11);
        let (k, m) = (10, 4);
        let data = group(&mut rng, k, 1200);
        let mut cauchy = Codec::with_backend(k, m, Backend::Cauchy).unwrap();
        let mut rs = Codec::with_backend(k, m, Backend::ReedSolomon).unwrap();
        let parity_c = cauchy.encode(&refs(&data)).unwrap();
        let parity_r = rs.encode(&refs(&data)).unwrap();
        let lost = [0, 3, 7, 9];
        let from_c = decode_without(&mut cauchy, &mut rng, &shards(&data, &parity_c), &lost);
        let from_r = decode_without(&mut rs, &mut rng, &shards(&data, &parity_r), &lost);
        assert_eq!(from_c, from_r);
        assert_eq!(from_c.unwrap(), data);
        // Parity 0 is the XOR of the framed data shards.
        let mut xor = vec![0; parity_c[0].len()];
        for packet in &data {
            xor[..PREFIX].iter_mut().zip(prefix(packet)).for_each(|(x, p)| *x ^= p);
            xor[PREFIX..].iter_mut().zip(packet).for_each(|(x, p)| *x ^= p);
        }
        assert_eq!(xor, parity_c[0]);
        // Odd longest packet: reed-solomon-simd shards are rounded up to even, Cauchy's not.
        let odd = [vec![1u8; 3]];
        let one = refs(&odd);
        assert_eq!(
            Codec::with_backend(1, 1, Backend::Cauchy).unwrap().encode(&one).unwrap()[0].len(),
            5
        );
        assert_eq!(
            Codec::with_backend(1, 1, Backend::ReedSolomon).unwrap().encode(&one).unwrap()[0].len(),
            6
        );
    }

    #[test]
    fn xor_fast_path_repairs_single_losses() {
        let mut rng = XorShift::new(5);
        let (k, m) = (10, 3);
        let mut codec = Codec::new(k, m).unwrap();
        let data = group(&mut rng, k, 1200);
        let parity = codec.encode(&refs(&data)).unwrap();
        let all = shards(&data, &parity);
        for i in 0..k {
            // One data packet and two unneeded parity shards lost: parity 0 rebuilds it.
            assert_eq!(
                decode_without(&mut codec, &mut rng, &all, &[i, k + 1, k + 2]).unwrap(),
                data
            );
            assert_eq!(codec.xor_repairs(), i as u64 + 1);
        }
        // Parity 0 lost too, or two data packets lost: the general path.
        assert_eq!(decode_without(&mut codec, &mut rng, &all, &[4, k]).unwrap(), data);
        assert_eq!(decode_without(&mut codec, &mut rng, &all, &[4, 5]).unwrap(), data);
        // No loss: nothing to repair.
        assert_eq!(decode_without(&mut codec, &mut rng, &all, &[]).unwrap(), data);
        assert_eq!(codec.xor_repairs(), k as u64);
    }

    #[test]
    fn simd_and_scalar_kernels_match_the_field() {
        let mut rng = XorShift::new(3);
        let src = rng.bytes(300);
        let base = rng.bytes(300);
        let kernels = [Kernel::Scalar, Kernel::detect()];
        for c in 0..=255u8 {
            for (start, len) in [(0, 0), (1, 31), (0, 32), (3, 33), (5, 95), (0, 300)] {
                let src = &src[start..start + len.min(300 - start)];
                let expected: Vec<u8> =
                    base.iter().zip(src).map(|(&b, &s)| b ^ slow_mul(c, s)).collect();
                for kernel in kernels {
                    let mut out = base[..src.len()].to_vec();
                    mul_acc(kernel, &mut out, c, src);
                    assert_eq!(out, expected, "{kernel:?} c={c} len={}", src.len());
                }
            }
            for b in 0..=255u8 {
                assert_eq!(gf_mul(c, b), slow_mul(c, b));
            }
            if c != 0 {
                assert_eq!(gf_mul(c, gf_inv(c)), 1);
            }
        }
    }

    #[test]
    fn scalar_kernel_round_trips() {
        let mut rng = XorShift::new(9);
        let (k, m) = (10, 4);
        let mut codec = Codec::new(k, m).unwrap();
        let Engine::Cauchy(cauchy) = &mut codec.engine else { panic!("Cauchy expected") };
        cauchy.kernel = Kernel::Scalar;
        let data = group(&mut rng, k, MAX_PACKET);
        let parity = codec.encode(&refs(&data)).unwrap();
        let mut simd = Codec::new(k, m).unwrap();
        assert_eq!(simd.encode(&refs(&data)).unwrap(), parity);
        let all = shards(&data, &parity);
        for lost in [[0, 1, 2, 3], [0, 5, 11, 13], [2, 10, 11, 12]] {
            assert_eq!(decode_without(&mut codec, &mut rng, &all, &lost).unwrap(), data);
        }
    }

    #[test]
    fn too_few_shards_is_an_error() {
        for backend in BACKENDS {
            for (k, m) in [(1, 1), (5, 2), (10, 4), (20, 10)] {
                let mut rng = XorShift::new(1);
                let mut codec = Codec::with_backend(k, m, backend).unwrap();
                let data = group(&mut rng, k, 100);
                let parity = codec.encode(&refs(&data)).unwrap();
                let all = shards(&data, &parity);
                for _ in 0..20 {
                    let mut lost = random_subset(&mut rng, k + m, m + 1);
                    if lost.iter().all(|&i| i >= k) {
                        lost[0] = 0; // At least one data packet must be missing.
                    }
                    let got = decode_without(&mut codec, &mut rng, &all, &lost);
                    assert_eq!(got, Err(FecError::TooFewShards { have: k - 1, need: k }));
                }
            }
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert_eq!(Codec::new(0, 1).err(), Some(FecError::BadParams { k: 0, m: 1 }));
        assert_eq!(Codec::new(1, 0).err(), Some(FecError::BadParams { k: 1, m: 0 }));
        assert_eq!(Codec::new(200, 56).err(), Some(FecError::BadParams { k: 200, m: 56 }));
        for backend in BACKENDS {
            let (k, m) = (4, 2);
            let mut codec = Codec::with_backend(k, m, backend).unwrap();
            let data: Vec<Vec<u8>> = (0..k).map(|i| vec![i as u8 + 1; 100 * (i + 1)]).collect();
            let parity = codec.encode(&refs(&data)).unwrap();
            let len = parity[0].len();
            let d = |i: usize| (i, data[i].as_slice());
            let p = |i: usize| (k + i, parity[i].as_slice());

            let too_long = vec![0; MAX_PACKET + 3];
            let mut wrong_count = refs(&data);
            assert_eq!(
                codec.encode(&wrong_count[..3]),
                Err(FecError::WrongPacketCount { have: 3, need: 4 })
            );
            wrong_count[2] = &too_long[1..];
            assert_eq!(
                codec.encode(&wrong_count),
                Err(FecError::ShardTooLong { len: MAX_PACKET + 2, max: MAX_PACKET })
            );

            assert_eq!(
                codec.decode(&[d(0), d(1), d(2), (6, &parity[0])]),
                Err(FecError::IndexOutOfRange { index: 6, total: 6 })
            );
            assert_eq!(codec.decode(&[d(0), d(1), p(0), d(1)]), Err(FecError::Duplicate(1)));
            let short = &parity[1][..len - 2];
            assert_eq!(
                codec.decode(&[d(0), d(1), p(0), (5, short)]),
                Err(FecError::WrongShardLen { index: 5, len: len - 2, expected: len })
            );
            // A lone parity shard of a length encode never makes.
            assert!(matches!(
                codec.decode(&[d(0), d(1), (4, &too_long[..1]), d(2)]),
                Err(FecError::WrongShardLen { index: 4, len: 1, .. })
            ));
            assert_eq!(
                codec.decode(&[d(0), d(1), (4, &too_long), d(2)]),
                Err(FecError::ShardTooLong {
                    len: MAX_PACKET + 3,
                    max: codec.shard_len(MAX_PACKET)
                })
            );
            // A data packet longer than the parity shards can hold.
            let longer = vec![1; len - 1];
            assert_eq!(
                codec.decode(&[d(0), (1, &longer), p(0), d(2)]),
                Err(FecError::ShardTooLong { len: len - 1, max: len - PREFIX })
            );
            // A data packet truncated in transit: lengths no longer add up.
            let truncated = &data[1][..50];
            for with in [[p(0), p(1)], [p(1), p(0)]] {
                let got = codec.decode(&[d(0), (1, truncated), d(2), with[0]]);
                assert_eq!(got, Err(FecError::Corrupt { index: 3 }), "{backend:?}");
                let got = codec.decode(&[d(0), (1, truncated), with[0], with[1]]);
                assert!(matches!(got, Err(FecError::Corrupt { .. })), "{backend:?} {got:?}");
            }
            // Every error explains itself.
            assert!(FecError::Duplicate(1).to_string().contains("given twice"));
        }
    }

    #[test]
    fn garbage_never_panics() {
        for backend in BACKENDS {
            let mut rng = XorShift::new(0xfec);
            let (k, m) = (6, 3);
            let mut codec = Codec::with_backend(k, m, backend).unwrap();
            let data = group(&mut rng, k, 300);
            let parity = codec.encode(&refs(&data)).unwrap();
            let (mut ok, mut err) = (0, 0);
            for _ in 0..2000 {
                // Mostly real shards (some resized, flipped or replaced by noise), sometimes an
                // index out of range or twice, in random numbers.
                let count = (rng.next_u64() % (k + m + 1) as u64) as usize;
                let mut indices = random_subset(&mut rng, k + m, count);
                match rng.next_u64() % 8 {
                    0 => indices.push(k + m + (rng.next_u64() % 3) as usize),
                    1 if count > 0 => indices.push(indices[0]),
                    _ => {}
                }
                let owned: Vec<(usize, Vec<u8>)> = indices
                    .into_iter()
                    .map(|index| {
                        let mut bytes = match index {
                            i if i < k => data[i].clone(),
                            i if i < k + m => parity[i - k].clone(),
                            _ => Vec::new(),
                        };
                        match rng.next_u64() % 16 {
                            0 => {
                                let len = (rng.next_u64() % 1600) as usize;
                                bytes = rng.bytes(len);
                            }
                            1 => bytes.truncate((rng.next_u64() % 400) as usize),
                            2 if !bytes.is_empty() => {
                                let at = (rng.next_u64() % bytes.len() as u64) as usize;
                                bytes[at] ^= 1 + (rng.next_u64() % 255) as u8;
                            }
                            _ => {}
                        }
                        (index, bytes)
                    })
                    .collect();
                let received: Vec<(usize, &[u8])> =
                    owned.iter().map(|(i, b)| (*i, b.as_slice())).collect();
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    codec.decode(&received)
                }));
                match result.expect("decode panicked") {
                    Ok(packets) => {
                        ok += 1;
                        assert_eq!(packets.len(), k);
                    }
                    Err(_) => err += 1,
                }
            }
            // Both outcomes are exercised, not just the error paths.
            assert!(ok > 50 && err > 50, "{backend:?}: {ok} ok, {err} errors");
        }
    }
}
