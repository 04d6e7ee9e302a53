//! All-pairs shortest paths over the graph (Floyd–Warshall, transit nodes only as hops).

use std::collections::HashMap;

use super::{Graph, NONE, blend_f32, blend_u32, lane_mask};

/// All-pairs shortest paths over a [`Graph`], where only transit nodes may be intermediate hops.
#[derive(Clone, Debug)]
pub struct Paths {
    pub(super) ids: Vec<u32>,
    pub(super) index: HashMap<u32, usize>,
    pub(super) n: usize,
    /// `dist[i * n + j]`: cost of the best path `i -> j`, infinite if unreachable.
    pub(super) dist: Vec<f32>,
    /// `next[i * n + j]`: index of the first hop on that path, `NONE` if unreachable or `i == j`.
    pub(super) next: Vec<u32>,
}

impl Paths {
    /// Floyd–Warshall over the dense matrix, restricted to transit nodes as intermediates `k`
    /// (restricting the intermediate set is exactly what FW's invariant is built on).
    pub fn compute(g: &Graph) -> Paths {
        let n = g.len();
        let mut dist = vec![f32::INFINITY; n * n];
        let mut next = vec![NONE; n * n];
        let mut row_k = vec![0.0f32; n];
        if n > 0 {
            for (i, (di, hi)) in dist.chunks_exact_mut(n).zip(next.chunks_exact_mut(n)).enumerate()
            {
                for (j, ((d, h), &c)) in di.iter_mut().zip(hi.iter_mut()).zip(g.row(i)).enumerate()
                {
                    if c.is_finite() {
                        *d = c;
                        *h = j as u32;
                    }
                }
                di[i] = 0.0;
            }
            for k in (0..n).filter(|&k| g.transit[k]) {
                // A copy of row k lets rows i be borrowed mutably; row k itself never improves
                // through k (d[k][k] = 0), so the copy stays exact during the pass.
                row_k.copy_from_slice(&dist[k * n..][..n]);
                for (i, (di, hi)) in
                    dist.chunks_exact_mut(n).zip(next.chunks_exact_mut(n)).enumerate()
                {
                    let dik = di[k];
                    if i != k && dik.is_finite() {
                        relax_row(di, hi, &row_k, dik, hi[k]);
                    }
                }
            }
        }
        Paths { ids: g.ids.clone(), index: g.index.clone(), n, dist, next }
    }

    pub(super) fn pair(&self, from: u32, to: u32) -> Option<(usize, usize)> {
        Some((*self.index.get(&from)?, *self.index.get(&to)?))
    }

    /// Cost of the best path in microseconds; `None` if unreachable or a node is unknown.
    pub fn dist(&self, from: u32, to: u32) -> Option<f64> {
        let (i, j) = self.pair(from, to)?;
        let d = self.dist[i * self.n + j];
        d.is_finite().then_some(f64::from(d))
    }

    /// First hop on a best path; `None` if unreachable, unknown, or `from == to`.
    pub fn next_hop(&self, from: u32, to: u32) -> Option<u32> {
        let (i, j) = self.pair(from, to)?;
        let h = self.next[i * self.n + j];
        (h != NONE).then(|| self.ids[h as usize])
    }

    /// Full node list of a best path, both ends included (`[from]` when `from == to`).
    #[cfg(test)]
    pub fn path(&self, from: u32, to: u32) -> Option<Vec<u32>> {
        let (mut i, j) = self.pair(from, to)?;
        if !self.dist[i * self.n + j].is_finite() {
            return None;
        }
        let mut out = vec![from];
        while i != j {
            let h = self.next[i * self.n + j];
            // The length bound only guards against a corrupt table; FW tables have no cycles.
            if h == NONE || out.len() > self.n {
                return None;
            }
            i = h as usize;
            out.push(self.ids[i]);
        }
        Some(out)
    }

    /// Approximate heap bytes held (for sizing the controller).
    pub fn approx_bytes(&self) -> usize {
        self.dist.capacity() * 4
            + self.next.capacity() * 4
            + self.ids.capacity() * 4
            + self.index.capacity() * (4 + 8 + 1)
    }
}

with_avx2! {
    /// One Floyd–Warshall row update: `d[i][j] = min(d[i][j], d[i][k] + d[k][j])`, carrying the
    /// first hop of `i -> k` along. Branch-free over equal-length slices so it vectorises.
    fn relax_row(di: &mut [f32], hi: &mut [u32], row_k: &[f32], dik: f32, hik: u32) => relax_row_body
}

#[inline(always)]
fn relax_row_body(di: &mut [f32], hi: &mut [u32], row_k: &[f32], dik: f32, hik: u32) {
    for ((d, h), &dkj) in di.iter_mut().zip(hi.iter_mut()).zip(row_k) {
        let v = dik + dkj;
        let better = lane_mask(v < *d);
        *d = blend_f32(better, v, *d);
        *h = blend_u32(better, hik, *h);
    }
}
