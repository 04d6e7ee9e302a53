//! GF(2^8) arithmetic and the multiply-accumulate kernels (scalar, AVX2) the code runs on.

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
pub(super) const fn slow_mul(mut a: u8, mut b: u8) -> u8 {
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

pub(super) fn gf_mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        return 0;
    }
    GF.exp[usize::from(GF.log[usize::from(a)]) + usize::from(GF.log[usize::from(b)])]
}

/// Multiplicative inverse of a non-zero element.
pub(super) fn gf_inv(a: u8) -> u8 {
    debug_assert_ne!(a, 0);
    GF.exp[255 - usize::from(GF.log[usize::from(a)])]
}

/// Which multiply-accumulate implementation the CPU can run; detected once per codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kernel {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Kernel {
    pub(super) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Self::Avx2;
        }
        Self::Scalar
    }
}

/// `out[..src.len()] ^= c · src` over GF(2^8); `out` is at least as long as `src`.
pub(super) fn mul_acc(kernel: Kernel, out: &mut [u8], c: u8, src: &[u8]) {
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
