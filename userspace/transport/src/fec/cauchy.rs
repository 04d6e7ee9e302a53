//! The systematic Cauchy code behind [`super::Codec`]: the parity matrix, encoding, and
//! rebuilding lost data shards.

use super::{
    ABSENT, PREFIX,
    gf::{Kernel, gf_inv, gf_mul, mul_acc},
    prefix,
};

/// Systematic Cauchy code: parity `p` = Σ_j `matrix[p][j]` · shard_j over GF(2^8).
pub(super) struct Cauchy {
    k: usize,
    m: usize,
    /// `m × k`, row-major. Every square submatrix is invertible (Cauchy, then scaled by rows
    /// and columns), so any `k` shards determine the data.
    matrix: Vec<u8>,
    pub(super) kernel: Kernel,
    // Decode scratch, reused across groups.
    lost: Vec<usize>,
    rows: Vec<usize>,
    inverse: Vec<u8>,
    work: Vec<u8>,
}

impl Cauchy {
    pub(super) fn new(k: usize, m: usize) -> Self {
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

    pub(super) fn encode(&self, data: &[&[u8]], parity: &mut [Vec<u8>]) {
        for (row, shard) in self.matrix.chunks_exact(self.k).zip(parity) {
            for (&c, packet) in row.iter().zip(data) {
                acc_packet(self.kernel, shard, c, packet);
            }
        }
    }

    /// Rebuilds the lost data shards into the zeroed, shard-long `out` entries of the lost
    /// packets (`slot[i] == ABSENT`). The caller checked that at least `k` shards arrived.
    /// Returns whether the XOR fast path did it.
    pub(super) fn reconstruct(
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
