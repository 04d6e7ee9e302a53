//! Route computation for the wecan controller.
//!
//! The controller keeps a dense graph of measured link quality between nodes and derives, for
//! every (relay, destination) pair, the next hop to use, a loop-free backup next hop for local
//! fast reroute, and the expected cost of the route.
//!
//! Layout of this module:
//! - link cost: [`LinkMetrics`] and [`link_cost`] turn measurements into microseconds;
//! - graph: [`Graph`], a dense `n x n` matrix of `f32` costs;
//! - paths: [`Paths`], all-pairs shortest paths (Floyd–Warshall, transit nodes only as hops);
//! - router: [`Router`], route selection with [`Hysteresis`] and loop-free alternates;
//! - bench: [`bench_full_mesh`] for sizing the controller.
//!
//! Everything is dense and index based: node ids are mapped to `0..n` once, and the hot loops run
//! over contiguous `f32` / `u32` rows so LLVM can vectorise them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use crate::prng::XorShift;

/// Links losing this fraction of packets or more are not used at all: past this point
/// retransmission repair dominates and the cost model stops being meaningful.
pub const MAX_USABLE_LOSS: f64 = 0.5;

/// "No node" in the index matrices; a graph never holds `u32::MAX` nodes.
const NONE: u32 = u32::MAX;

/// The loop-free-alternate inequality is checked as `dist(N,dst) < LFA_SLACK * (dist(N,src) +
/// dist(src,dst))`. Distances are f32 sums accumulated in different orders, so a neighbour whose
/// best path runs back through src (exact equality) could pass a bare `<` by rounding; a relative
/// margin of 2^-12 covers the rounding of paths thousands of hops long and rejects only
/// alternates that are within 0.025 % of looping back anyway.
const LFA_SLACK: f32 = 1.0 - 1.0 / 4096.0;

// ---------------------------------------------------------------------------------------------
// Link cost
// ---------------------------------------------------------------------------------------------

/// Measured quality of one directed link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkMetrics {
    /// Round-trip time in microseconds.
    pub rtt_us: f64,
    /// Packet loss ratio, `0.0..=1.0`.
    pub loss: f64,
    /// Delay variation in microseconds.
    pub jitter_us: f64,
}

/// Link cost in microseconds: the expected one-way delivery time of a packet when losses are
/// repaired by retransmission, `rtt/2 + jitter + loss/(1-loss) * rtt`.
///
/// Each loss costs about one extra round trip (NACK and resend), and `loss/(1-loss)` is the
/// expected number of losses before a successful delivery. Returns `None` (link unusable) if
/// `loss >= MAX_USABLE_LOSS`, if any input is NaN, negative or infinite, or if the cost overflows.
pub fn link_cost(m: &LinkMetrics) -> Option<f64> {
    let valid = |x: f64| x.is_finite() && x >= 0.0;
    if !(valid(m.rtt_us) && valid(m.loss) && valid(m.jitter_us)) || m.loss >= MAX_USABLE_LOSS {
        return None;
    }
    let cost = m.rtt_us / 2.0 + m.jitter_us + m.loss / (1.0 - m.loss) * m.rtt_us;
    cost.is_finite().then_some(cost)
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Errors from building the graph.
#[derive(Debug, Clone, PartialEq)]
pub enum RoutingError {
    /// The node id was never added with [`Graph::add_node`].
    UnknownNode(u32),
    /// A link from a node to itself was requested.
    SelfLink(u32),
}

impl fmt::Display for RoutingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownNode(id) => write!(f, "unknown node {id}: add it to the graph first"),
            Self::SelfLink(id) => {
                write!(f, "self link on node {id}: a link must join two different nodes")
            }
        }
    }
}

impl std::error::Error for RoutingError {}

// ---------------------------------------------------------------------------------------------
// Graph
// ---------------------------------------------------------------------------------------------

/// Dense link-cost graph: an `n x n` matrix of `f32` costs in microseconds, where
/// `f32::INFINITY` means "no usable link".
///
/// Nodes are kept in insertion order; the matrix row stride grows by doubling so that adding
/// `n` nodes one by one costs `O(n^2)` copying in total rather than `O(n^3)`.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    ids: Vec<u32>,
    index: HashMap<u32, usize>,
    transit: Vec<bool>,
    stride: usize,
    cost: Vec<f32>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds node `id`. `transit = false` marks clients/endpoints: they can be a source or a
    /// destination but are never an intermediate hop. Adding an existing id only updates its
    /// transit flag (its links are kept).
    pub fn add_node(&mut self, id: u32, transit: bool) {
        if let Some(&i) = self.index.get(&id) {
            self.transit[i] = transit;
            return;
        }
        let i = self.ids.len();
        if i == self.stride {
            self.grow();
        }
        self.ids.push(id);
        self.transit.push(transit);
        self.index.insert(id, i);
    }

    fn grow(&mut self) {
        let stride = (self.stride * 2).max(8);
        let mut cost = vec![f32::INFINITY; stride * stride];
        if self.stride > 0 {
            for (old, new) in self.cost.chunks_exact(self.stride).zip(cost.chunks_exact_mut(stride))
            {
                new[..self.stride].copy_from_slice(old);
            }
        }
        self.stride = stride;
        self.cost = cost;
    }

    fn index_of(&self, id: u32) -> Result<usize, RoutingError> {
        self.index.get(&id).copied().ok_or(RoutingError::UnknownNode(id))
    }

    /// Sets the directed link `a -> b` from measured metrics. An unusable link (see
    /// [`link_cost`], or a cost too large for `f32`) is stored as "no link".
    pub fn set_link(&mut self, a: u32, b: u32, m: &LinkMetrics) -> Result<(), RoutingError> {
        let (ia, ib) = (self.index_of(a)?, self.index_of(b)?);
        if ia == ib {
            return Err(RoutingError::SelfLink(a));
        }
        self.set_link_idx(ia, ib, m);
        Ok(())
    }

    fn set_link_idx(&mut self, ia: usize, ib: usize, m: &LinkMetrics) {
        // `as f32` saturates to infinity, which is exactly "no link".
        self.cost[ia * self.stride + ib] = link_cost(m).map_or(f32::INFINITY, |c| c as f32);
    }

    /// Removes the directed link `a -> b`; unknown nodes or absent links are ignored.
    pub fn remove_link(&mut self, a: u32, b: u32) {
        if let (Ok(ia), Ok(ib)) = (self.index_of(a), self.index_of(b)) {
            self.cost[ia * self.stride + ib] = f32::INFINITY;
        }
    }

    /// Cost in microseconds of the directed link `a -> b`, `None` if there is no usable link.
    pub fn cost(&self, a: u32, b: u32) -> Option<f64> {
        let (ia, ib) = (self.index_of(a).ok()?, self.index_of(b).ok()?);
        let c = self.link(ia, ib);
        c.is_finite().then_some(f64::from(c))
    }

    /// Whether `id` may be an intermediate hop; `None` for an unknown node.
    pub fn is_transit(&self, id: u32) -> Option<bool> {
        self.index.get(&id).map(|&i| self.transit[i])
    }

    /// Node ids in insertion order.
    pub fn nodes(&self) -> &[u32] {
        &self.ids
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True if the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn link(&self, i: usize, j: usize) -> f32 {
        self.cost[i * self.stride + j]
    }

    /// Outgoing link costs of node index `i`, one per node (the diagonal is infinite).
    fn row(&self, i: usize) -> &[f32] {
        &self.cost[i * self.stride..][..self.ids.len()]
    }

    fn approx_bytes(&self) -> usize {
        self.cost.capacity() * 4
            + self.ids.capacity() * 4
            + self.transit.capacity()
            + self.index.capacity() * (4 + 8 + 1)
    }
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

/// All-pairs shortest paths over a [`Graph`], where only transit nodes may be intermediate hops.
#[derive(Clone, Debug)]
pub struct Paths {
    ids: Vec<u32>,
    index: HashMap<u32, usize>,
    n: usize,
    /// `dist[i * n + j]`: cost of the best path `i -> j`, infinite if unreachable.
    dist: Vec<f32>,
    /// `next[i * n + j]`: index of the first hop on that path, `NONE` if unreachable or `i == j`.
    next: Vec<u32>,
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

    fn pair(&self, from: u32, to: u32) -> Option<(usize, usize)> {
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

    fn approx_bytes(&self) -> usize {
        self.dist.capacity() * 4
            + self.next.capacity() * 4
            + self.ids.capacity() * 4
            + self.index.capacity() * (4 + 8 + 1)
    }
}

/// Defines `$name` to run `$body` compiled a second time with AVX2 when the CPU has it (picked
/// at run time), else as built: the row kernels below are plain Rust loops that LLVM vectorises
/// twice as wide with AVX2.
macro_rules! with_avx2 {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $body:ident) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
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

/// All ones if `c`, else zero.
///
/// The row updates select with masks rather than `if c { a } else { *p }`: LLVM rewrites that
/// `if` into a conditional store, which SSE2 can only do lane by lane (about 1.8x slower).
#[inline(always)]
fn lane_mask(c: bool) -> u32 {
    0u32.wrapping_sub(u32::from(c))
}

#[inline(always)]
fn blend_u32(mask: u32, a: u32, b: u32) -> u32 {
    (a & mask) | (b & !mask)
}

#[inline(always)]
fn blend_f32(mask: u32, a: f32, b: f32) -> f32 {
    f32::from_bits(blend_u32(mask, a.to_bits(), b.to_bits()))
}

// ---------------------------------------------------------------------------------------------
// Router
// ---------------------------------------------------------------------------------------------

/// Hysteresis thresholds: a route in force is replaced by a better one only if the new cost is
/// lower by more than `relative` (fraction, meant to be in `0.0..1.0`) AND by more than
/// `absolute_us` microseconds. Zero for both switches to any strictly better route.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hysteresis {
    /// Required relative improvement, e.g. 0.10 for 10 %.
    pub relative: f64,
    /// Required absolute improvement in microseconds.
    pub absolute_us: f64,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Self { relative: 0.10, absolute_us: 1000.0 }
    }
}

impl Hysteresis {
    /// Whether a route of cost `best` is enough of an improvement over the route in force,
    /// of cost `current`, to switch to it.
    pub fn improves(&self, current: f64, best: f64) -> bool {
        best < current * (1.0 - self.relative) && current - best > self.absolute_us
    }
}

/// The route chosen for one (source relay, destination) pair.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RouteChoice {
    /// Node to forward to.
    pub next_hop: u32,
    /// Loop-free alternate to use at once if the link to `next_hop` dies.
    pub backup: Option<u32>,
    /// Expected cost of the route through `next_hop`, in microseconds.
    pub cost_us: f64,
}

/// What the previous computation had for a pair, in terms of the current graph's indices.
#[derive(Clone, Copy, PartialEq)]
enum Prev {
    /// No route was in force.
    Absent,
    /// A route was in force but its next hop is no longer in the graph.
    Gone,
    /// A route via this node index was in force.
    Hop(u32),
}

/// Keeps the routes currently in force, so recomputation can apply hysteresis.
///
/// State is keyed by node id, so the graph handed to [`Router::compute`] may be rebuilt between
/// calls (nodes added, reordered or dropped).
#[derive(Clone, Debug)]
pub struct Router {
    h: Hysteresis,
    /// Node ids of the last computed graph, in its index order.
    ids: Vec<u32>,
    /// `chosen[s * ids.len() + d]`: next-hop index in force, `NONE` if none.
    chosen: Vec<u32>,
    routes: usize,
    changes: usize,
}

impl Router {
    /// A router with no routes in force.
    pub fn new(h: Hysteresis) -> Self {
        Self { h, ids: Vec::new(), chosen: Vec::new(), routes: 0, changes: 0 }
    }

    /// Number of routes whose next hop changed in the last [`Router::compute`]: routes that
    /// appeared, disappeared or moved to another next hop (on the first call, every route).
    pub fn last_changes(&self) -> usize {
        self.changes
    }

    /// Computes routes for every (src, dst) pair with `src` a transit node, `src != dst` and
    /// `dst` reachable.
    ///
    /// Hysteresis: a route in force via `cur` is kept while `cur` is still a usable neighbour
    /// that can forward (transit, or `dst` itself) with a finite cost
    /// `c_cur = cost(src,cur) + dist(cur,dst)`, unless the best cost `c_best` satisfies
    /// [`Hysteresis::improves`]. Otherwise the best next hop is used at once.
    ///
    /// Kept routes are not shortest paths, so several of them can point at each other and form
    /// a forwarding loop; such loops are detected per destination and broken by moving the
    /// kept routes on the loop back to their best next hop (best next hops form a tree).
    ///
    /// Backup (loop-free alternate, RFC 5286): among neighbours `N != next_hop` of `src` with a
    /// usable link that can forward (`N == dst` or transit) and
    /// `dist(N,dst) < dist(N,src) + dist(src,dst)`, the one minimising
    /// `cost(src,N) + dist(N,dst)`; ties go to the earliest node in graph order.
    pub fn compute(&mut self, g: &Graph) -> BTreeMap<(u32, u32), RouteChoice> {
        let paths = Paths::compute(g);
        let n = g.len();
        let prev = PrevMap::new(self, g);

        // Pass 1: best next hop, or the one in force if hysteresis says keep it.
        let mut chosen = vec![NONE; n * n];
        let mut has_kept = vec![false; n];
        for s in (0..n).filter(|&s| g.transit[s]) {
            let (opt_s, chosen_s) = (&paths.next[s * n..][..n], &mut chosen[s * n..][..n]);
            for (d, (c, &best)) in chosen_s.iter_mut().zip(opt_s).enumerate() {
                if best == NONE {
                    continue;
                }
                *c = best;
                if let Prev::Hop(cur) = prev.get(s, d)
                    && cur != best
                    && let Some(c_cur) = via_cost(g, &paths, s, cur as usize, d)
                    && !self.h.improves(c_cur, f64::from(paths.dist[s * n + d]))
                {
                    *c = cur;
                    has_kept[d] = true;
                }
            }
        }

        // Pass 2: break forwarding loops made of kept routes.
        let mut walk = LoopBreaker::new(n);
        for d in (0..n).filter(|&d| has_kept[d]) {
            walk.fix_destination(g, &paths.next, &mut chosen, d);
        }

        // Pass 3: count changes against the routes previously in force.
        let mut changes = 0;
        let mut seen_old = 0;
        let mut routes = 0;
        for s in (0..n).filter(|&s| g.transit[s]) {
            for (d, &now) in chosen[s * n..][..n].iter().enumerate() {
                let old = prev.get(s, d);
                seen_old += usize::from(old != Prev::Absent);
                routes += usize::from(now != NONE);
                changes += usize::from(match old {
                    Prev::Absent => now != NONE,
                    Prev::Gone => true,
                    Prev::Hop(h) => h != now,
                });
            }
        }
        // Old routes whose source or destination left the graph (or stopped being a relay).
        changes += self.routes.saturating_sub(seen_old);

        // Pass 4: backups and output, in (src id, dst id) order so the map is bulk-built.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_unstable_by_key(|&i| g.ids[i]);
        let mut out = Vec::with_capacity(routes);
        let mut backups = Backups::new(n);
        for &s in order.iter().filter(|&&s| g.transit[s]) {
            let chosen_s = &chosen[s * n..][..n];
            backups.compute(g, &paths, chosen_s, s);
            for &d in &order {
                let nh = chosen_s[d];
                if nh == NONE {
                    continue;
                }
                let cost_us = if nh == paths.next[s * n + d] {
                    f64::from(paths.dist[s * n + d])
                } else {
                    // Kept routes always have a finite cost (checked in pass 1).
                    via_cost(g, &paths, s, nh as usize, d).unwrap_or(f64::INFINITY)
                };
                // The LFA inequality holds for shortest paths, but kept routes are not
                // shortest: the backup's route in force must not lead back through `s`.
                let b = match backups.best_node[d] {
                    b if b != NONE && reaches_without(&chosen, n, b as usize, d, s) => b,
                    _ => NONE,
                };
                out.push((
                    (g.ids[s], g.ids[d]),
                    RouteChoice {
                        next_hop: g.ids[nh as usize],
                        backup: (b != NONE).then(|| g.ids[b as usize]),
                        cost_us,
                    },
                ));
            }
        }

        self.ids = g.ids.clone();
        self.chosen = chosen;
        self.routes = routes;
        self.changes = changes;
        out.into_iter().collect()
    }

    fn approx_bytes(&self) -> usize {
        self.chosen.capacity() * 4 + self.ids.capacity() * 4
    }
}

/// Whether the routes in force, followed from `from`, reach `d` without passing `s`.
fn reaches_without(chosen: &[u32], n: usize, from: usize, d: usize, s: usize) -> bool {
    let mut at = from;
    for _ in 0..n {
        if at == d {
            return true;
        }
        if at == s {
            return false;
        }
        match chosen[at * n + d] {
            NONE => return false,
            next => at = next as usize,
        }
    }
    false
}

/// Cost of reaching `d` from `s` through neighbour `c`, if `c` is a usable neighbour that can
/// forward to `d`.
fn via_cost(g: &Graph, p: &Paths, s: usize, c: usize, d: usize) -> Option<f64> {
    let link = g.link(s, c);
    if !link.is_finite() || (c != d && !g.transit[c]) {
        return None;
    }
    let rest = if c == d { 0.0 } else { p.dist[c * p.n + d] };
    let total = f64::from(link) + f64::from(rest);
    total.is_finite().then_some(total)
}

/// The previous router state translated to the indices of the current graph.
struct PrevMap<'a> {
    old_n: usize,
    chosen: &'a [u32],
    old_to_new: Vec<u32>,
    new_to_old: Vec<u32>,
}

impl<'a> PrevMap<'a> {
    fn new(r: &'a Router, g: &Graph) -> Self {
        let old_to_new: Vec<u32> =
            r.ids.iter().map(|id| g.index.get(id).map_or(NONE, |&i| i as u32)).collect();
        let mut new_to_old = vec![NONE; g.len()];
        for (o, &i) in old_to_new.iter().enumerate() {
            if i != NONE {
                new_to_old[i as usize] = o as u32;
            }
        }
        Self { old_n: r.ids.len(), chosen: &r.chosen, old_to_new, new_to_old }
    }

    fn get(&self, s: usize, d: usize) -> Prev {
        let (os, od) = (self.new_to_old[s], self.new_to_old[d]);
        if os == NONE || od == NONE {
            return Prev::Absent;
        }
        match self.chosen[os as usize * self.old_n + od as usize] {
            NONE => Prev::Absent,
            h => match self.old_to_new[h as usize] {
                NONE => Prev::Gone,
                i => Prev::Hop(i),
            },
        }
    }
}

/// Walks the next-hop chains towards one destination to find and break loops.
struct LoopBreaker {
    /// Per node: `UNSEEN`, `DONE` (chain reaches the destination) or on the current walk.
    mark: Vec<u8>,
    walk: Vec<usize>,
}

const UNSEEN: u8 = 0;
const ON_WALK: u8 = 1;
const DONE: u8 = 2;

impl LoopBreaker {
    fn new(n: usize) -> Self {
        Self { mark: vec![UNSEEN; n], walk: Vec::with_capacity(n) }
    }

    /// Each node is settled once unless a loop is found; a loop always contains a kept route
    /// (best next hops form a tree), and resetting it to the best next hop is permanent, so the
    /// number of restarts is bounded by the number of kept routes.
    fn fix_destination(&mut self, g: &Graph, opt: &[u32], chosen: &mut [u32], d: usize) {
        let n = g.len();
        self.mark.fill(UNSEEN);
        self.mark[d] = DONE;
        for s in 0..n {
            'restart: loop {
                self.walk.clear();
                let mut x = s;
                loop {
                    match self.mark[x] {
                        DONE => break,
                        ON_WALK => {
                            let start = self.walk.iter().position(|&w| w == x).unwrap_or(0);
                            let mut reset = false;
                            for &w in &self.walk[start..] {
                                if chosen[w * n + d] != opt[w * n + d] {
                                    chosen[w * n + d] = opt[w * n + d];
                                    reset = true;
                                }
                            }
                            for &w in &self.walk {
                                self.mark[w] = UNSEEN;
                            }
                            if reset {
                                continue 'restart;
                            }
                            // Unreachable for consistent tables; settle rather than spin.
                            break;
                        }
                        _ => {}
                    }
                    let h = chosen[x * n + d];
                    if h == NONE {
                        // No route from here (e.g. `s` is not a relay): nothing to forward.
                        break;
                    }
                    self.mark[x] = ON_WALK;
                    self.walk.push(x);
                    x = h as usize;
                }
                for &w in &self.walk {
                    self.mark[w] = DONE;
                }
                break;
            }
        }
    }
}

/// Per-source scratch for the loop-free-alternate search.
struct Backups {
    best_cost: Vec<f32>,
    best_node: Vec<u32>,
}

impl Backups {
    fn new(n: usize) -> Self {
        Self { best_cost: vec![f32::INFINITY; n], best_node: vec![NONE; n] }
    }

    /// Fills `best_node[d]` with the backup for `(s, d)` for every `d`. Neighbours are the outer
    /// loop so the inner loop walks the contiguous row `dist[N][..]` branch-free: O(degree * n)
    /// per source.
    fn compute(&mut self, g: &Graph, p: &Paths, chosen_s: &[u32], s: usize) {
        let n = p.n;
        self.best_cost.fill(f32::INFINITY);
        self.best_node.fill(NONE);
        let dist_s = &p.dist[s * n..][..n];
        for (nb, &c_sn) in g.row(s).iter().enumerate() {
            if !c_sn.is_finite() {
                continue;
            }
            let nb_u = nb as u32;
            let d_ns = p.dist[nb * n + s];
            if g.transit[nb] {
                let dist_n = &p.dist[nb * n..][..n];
                let (best_cost, best_node) = (&mut self.best_cost, &mut self.best_node);
                lfa_row(best_cost, best_node, dist_n, dist_s, chosen_s, c_sn, d_ns, nb_u);
            } else {
                // A non-transit neighbour can only be the backup for reaching itself
                // (dist(N,N) = 0, so the LFA inequality needs no slack here).
                let ok =
                    0.0 < d_ns + dist_s[nb] && chosen_s[nb] != nb_u && c_sn < self.best_cost[nb];
                if ok {
                    self.best_cost[nb] = c_sn;
                    self.best_node[nb] = nb_u;
                }
            }
        }
    }
}

with_avx2! {
    /// Offers neighbour `nb` (link cost `c_sn`, distance `d_ns` back to the source) as backup
    /// for every destination at once; branch-free like [`relax_row`] so it vectorises.
    fn lfa_row(
        best_cost: &mut [f32],
        best_node: &mut [u32],
        dist_n: &[f32],
        dist_s: &[f32],
        chosen_s: &[u32],
        c_sn: f32,
        d_ns: f32,
        nb: u32,
    ) => lfa_row_body
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn lfa_row_body(
    best_cost: &mut [f32],
    best_node: &mut [u32],
    dist_n: &[f32],
    dist_s: &[f32],
    chosen_s: &[u32],
    c_sn: f32,
    d_ns: f32,
    nb: u32,
) {
    for ((((bc, bn), &dnd), &dsd), &ch) in
        best_cost.iter_mut().zip(best_node.iter_mut()).zip(dist_n).zip(dist_s).zip(chosen_s)
    {
        let cand = c_sn + dnd;
        let ok = lane_mask((dnd < LFA_SLACK * (d_ns + dsd)) & (ch != nb) & (cand < *bc));
        *bc = blend_f32(ok, cand, *bc);
        *bn = blend_u32(ok, nb, *bn);
    }
}

// ---------------------------------------------------------------------------------------------
// Bench
// ---------------------------------------------------------------------------------------------

/// Builds a deterministic random full mesh of `n` relays (every ordered pair linked, RTT
/// 1–100 ms, loss 0–5 %, jitter 0–5 ms), times one [`Paths::compute`] and one
/// [`Router::compute`] (which includes its own path computation), and returns
/// `(paths time, router time, approximate bytes held by Graph + Paths + Router)`.
pub fn bench_full_mesh(n: usize, seed: u64) -> (Duration, Duration, usize) {
    let mut rng = XorShift::new(seed);
    let mut g = Graph::new();
    for id in 0..n {
        g.add_node(id as u32, true);
    }
    for a in 0..n {
        for b in (0..n).filter(|&b| b != a) {
            let m = LinkMetrics {
                rtt_us: rng.range(1_000.0, 100_000.0),
                loss: rng.range(0.0, 0.05),
                jitter_us: rng.range(0.0, 5_000.0),
            };
            g.set_link_idx(a, b, &m);
        }
    }
    let t = Instant::now();
    let paths = Paths::compute(&g);
    let paths_time = t.elapsed();
    let mut router = Router::new(Hysteresis::default());
    let t = Instant::now();
    let routes = router.compute(&g);
    let router_time = t.elapsed();
    std::hint::black_box(routes.len());
    (paths_time, router_time, g.approx_bytes() + paths.approx_bytes() + router.approx_bytes())
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(rtt_us: f64, loss: f64, jitter_us: f64) -> LinkMetrics {
        LinkMetrics { rtt_us, loss, jitter_us }
    }

    /// Metrics whose link cost is exactly `cost_us` (loss-free, no jitter).
    fn flat(cost_us: f64) -> LinkMetrics {
        metrics(cost_us * 2.0, 0.0, 0.0)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-3 * a.abs().max(b.abs()).max(1.0)
    }

    fn link_both(g: &mut Graph, a: u32, b: u32, m: &LinkMetrics) {
        g.set_link(a, b, m).unwrap();
        g.set_link(b, a, m).unwrap();
    }

    fn random_metrics(rng: &mut XorShift) -> LinkMetrics {
        let loss = if rng.unit() < 0.05 { rng.range(0.5, 1.0) } else { rng.range(0.0, 0.2) };
        metrics(rng.range(100.0, 50_000.0), loss, rng.range(0.0, 2_000.0))
    }

    /// 3–7 nodes with scattered, non-sorted ids, random density, ~25 % non-transit nodes and
    /// ~5 % unusable links.
    fn random_graph(rng: &mut XorShift) -> Graph {
        let n = 3 + (rng.next_u64() % 5) as u32;
        let density = rng.range(0.15, 1.0);
        let mut g = Graph::new();
        for i in 0..n {
            g.add_node(1000 - 7 * i, rng.unit() < 0.75);
        }
        let ids = g.nodes().to_vec();
        for &a in &ids {
            for &b in &ids {
                if a != b && rng.unit() < density {
                    g.set_link(a, b, &random_metrics(rng)).unwrap();
                }
            }
        }
        g
    }

    /// Minimum cost over all simple paths `s -> t` whose intermediate nodes are transit.
    fn brute_force(g: &Graph, s: u32, t: u32) -> Option<f64> {
        fn dfs(g: &Graph, at: u32, t: u32, seen: &mut Vec<u32>, acc: f64, best: &mut f64) {
            for &v in g.nodes() {
                let Some(c) = g.cost(at, v) else { continue };
                if v == t {
                    *best = best.min(acc + c);
                } else if g.is_transit(v) == Some(true) && !seen.contains(&v) {
                    seen.push(v);
                    dfs(g, v, t, seen, acc + c, best);
                    seen.pop();
                }
            }
        }
        if s == t {
            return Some(0.0);
        }
        let mut best = f64::INFINITY;
        dfs(g, s, t, &mut vec![s], 0.0, &mut best);
        best.is_finite().then_some(best)
    }

    fn path_cost(g: &Graph, path: &[u32]) -> Option<f64> {
        path.windows(2).map(|w| g.cost(w[0], w[1])).sum()
    }

    fn relays(g: &Graph) -> Vec<u32> {
        g.nodes().iter().copied().filter(|&id| g.is_transit(id) == Some(true)).collect()
    }

    // --- link cost -----------------------------------------------------------------------------

    #[test]
    fn link_cost_formula() {
        assert_eq!(link_cost(&metrics(10_000.0, 0.0, 0.0)), Some(5_000.0));
        assert_eq!(link_cost(&metrics(10_000.0, 0.0, 300.0)), Some(5_300.0));
        // loss 20 %: 0.25 expected retransmissions, each one RTT.
        let c = link_cost(&metrics(10_000.0, 0.2, 500.0)).unwrap();
        assert!((c - (5_000.0 + 500.0 + 2_500.0)).abs() < 1e-9);
        assert_eq!(link_cost(&metrics(0.0, 0.0, 0.0)), Some(0.0));
        let just_usable = link_cost(&metrics(1_000.0, 0.499, 0.0)).unwrap();
        assert!(just_usable > 1_000.0 && just_usable < 1_500.0);
    }

    #[test]
    fn link_cost_unusable() {
        for m in [
            metrics(1_000.0, 0.5, 0.0),
            metrics(1_000.0, 1.0, 0.0),
            metrics(1_000.0, 1.5, 0.0),
            metrics(f64::NAN, 0.0, 0.0),
            metrics(1_000.0, f64::NAN, 0.0),
            metrics(1_000.0, 0.0, f64::NAN),
            metrics(-1.0, 0.0, 0.0),
            metrics(1_000.0, -0.1, 0.0),
            metrics(1_000.0, 0.0, -5.0),
            metrics(f64::INFINITY, 0.0, 0.0),
            metrics(1_000.0, 0.0, f64::INFINITY),
            metrics(f64::MAX, 0.4, f64::MAX),
        ] {
            assert_eq!(link_cost(&m), None, "{m:?}");
        }
    }

    #[test]
    fn unusable_link_is_no_link() {
        let mut g = Graph::new();
        g.add_node(1, true);
        g.add_node(2, true);
        g.set_link(1, 2, &flat(100.0)).unwrap();
        assert_eq!(g.cost(1, 2), Some(100.0));
        g.set_link(1, 2, &metrics(100.0, 0.7, 0.0)).unwrap();
        assert_eq!(g.cost(1, 2), None);
        g.set_link(1, 2, &flat(1e300)).unwrap();
        assert_eq!(g.cost(1, 2), None, "costs beyond f32 range are unusable");
        assert_eq!(Paths::compute(&g).dist(1, 2), None);
    }

    // --- graph ---------------------------------------------------------------------------------

    #[test]
    fn graph_growth_keeps_links_and_flags() {
        let mut g = Graph::new();
        assert!(g.is_empty());
        for id in 0..40 {
            g.add_node(id * 3, id % 2 == 0);
            if id > 0 {
                g.set_link(id * 3, (id - 1) * 3, &flat(f64::from(id))).unwrap();
            }
        }
        assert_eq!(g.len(), 40);
        for id in 1..40 {
            assert_eq!(g.cost(id * 3, (id - 1) * 3), Some(f64::from(id)));
            assert_eq!(g.cost((id - 1) * 3, id * 3), None);
        }
        g.add_node(3, true);
        assert_eq!(g.len(), 40, "re-adding only updates the flag");
        assert_eq!(g.is_transit(3), Some(true));
        assert_eq!(g.cost(3, 0), Some(1.0));
        g.remove_link(3, 0);
        assert_eq!(g.cost(3, 0), None);
        g.remove_link(3, 12345); // unknown: ignored
        assert_eq!(g.nodes()[..3], [0, 3, 6]);
    }

    #[test]
    fn errors_name_the_node() {
        let mut g = Graph::new();
        g.add_node(1, true);
        let m = flat(10.0);
        assert_eq!(g.set_link(1, 42, &m), Err(RoutingError::UnknownNode(42)));
        assert_eq!(g.set_link(7, 1, &m), Err(RoutingError::UnknownNode(7)));
        assert_eq!(g.set_link(1, 1, &m), Err(RoutingError::SelfLink(1)));
        let unknown = RoutingError::UnknownNode(42).to_string();
        assert!(unknown.contains("unknown node 42"), "{unknown}");
        let self_link = RoutingError::SelfLink(1).to_string();
        assert!(self_link.contains("self link") && self_link.contains("node 1"), "{self_link}");
        let boxed: Box<dyn std::error::Error> = Box::new(RoutingError::SelfLink(3));
        assert!(boxed.to_string().contains('3'));
    }

    // --- paths ---------------------------------------------------------------------------------

    #[test]
    fn paths_match_brute_force() {
        let mut rng = XorShift::new(7);
        let mut multi_hop = 0;
        for round in 0..400 {
            let g = random_graph(&mut rng);
            let p = Paths::compute(&g);
            for &s in g.nodes() {
                for &t in g.nodes() {
                    let want = brute_force(&g, s, t);
                    let got = p.dist(s, t);
                    match (want, got) {
                        (None, None) => {
                            assert_eq!(p.path(s, t), None);
                            assert_eq!(p.next_hop(s, t), None);
                        }
                        (Some(w), Some(d)) => {
                            assert!(close(w, d), "round {round} {s}->{t}: brute {w} vs {d}");
                            let path = p.path(s, t).unwrap();
                            assert_eq!((path[0], *path.last().unwrap()), (s, t));
                            let mut seen = path.clone();
                            seen.sort_unstable();
                            seen.dedup();
                            assert_eq!(seen.len(), path.len(), "path repeats a node: {path:?}");
                            for &mid in path.iter().skip(1).take(path.len().saturating_sub(2)) {
                                assert_eq!(g.is_transit(mid), Some(true), "{path:?}");
                            }
                            let c = path_cost(&g, &path).expect("path uses missing link");
                            assert!(close(c, d), "round {round} {path:?}: {c} vs {d}");
                            assert_eq!(p.next_hop(s, t), path.get(1).copied());
                            multi_hop += usize::from(path.len() > 2);
                        }
                        _ => panic!("round {round} {s}->{t}: brute {want:?} vs paths {got:?}"),
                    }
                }
            }
        }
        assert!(multi_hop > 1000, "too few multi-hop paths exercised: {multi_hop}");
    }

    #[test]
    fn paths_edge_cases() {
        let p = Paths::compute(&Graph::new());
        assert_eq!(p.dist(1, 2), None);
        let mut g = Graph::new();
        g.add_node(5, false);
        let p = Paths::compute(&g);
        assert_eq!(p.dist(5, 5), Some(0.0));
        assert_eq!(p.path(5, 5), Some(vec![5]));
        assert_eq!(p.next_hop(5, 5), None);
        assert_eq!(p.dist(5, 6), None);
        assert_eq!(p.path(6, 5), None);
    }

    #[test]
    fn non_transit_nodes_are_never_intermediate() {
        // A - X - B with X a client: A cannot reach B through X, only through the slow relay R.
        let mut g = Graph::new();
        for (id, transit) in [(1, true), (2, false), (3, true), (4, true)] {
            g.add_node(id, transit);
        }
        link_both(&mut g, 1, 2, &flat(10.0));
        link_both(&mut g, 2, 3, &flat(10.0));
        let p = Paths::compute(&g);
        assert_eq!(p.dist(1, 3), None);
        assert_eq!(p.dist(1, 2), Some(10.0), "a client is still a destination");
        link_both(&mut g, 1, 4, &flat(500.0));
        link_both(&mut g, 4, 3, &flat(500.0));
        let p = Paths::compute(&g);
        assert_eq!(p.path(1, 3), Some(vec![1, 4, 3]));
        let routes = Router::new(Hysteresis::default()).compute(&g);
        assert_eq!(routes[&(1, 3)].next_hop, 4);
        assert!(!routes.keys().any(|&(s, _)| s == 2), "clients are not sources of routes");

        // Randomised: no path, next hop or backup ever transits a client.
        let mut rng = XorShift::new(99);
        for _ in 0..300 {
            let g = random_graph(&mut rng);
            let p = Paths::compute(&g);
            for &s in g.nodes() {
                for &t in g.nodes() {
                    if let Some(path) = p.path(s, t) {
                        assert!(
                            path.len() < 3
                                || path[1..path.len() - 1]
                                    .iter()
                                    .all(|&v| g.is_transit(v) == Some(true))
                        );
                    }
                }
            }
            for (&(s, d), r) in &Router::new(Hysteresis::default()).compute(&g) {
                assert_eq!(g.is_transit(s), Some(true));
                for hop in std::iter::once(r.next_hop).chain(r.backup) {
                    assert!(hop == d || g.is_transit(hop) == Some(true), "{s}->{d} via {hop}");
                }
            }
        }
    }

    // --- router --------------------------------------------------------------------------------

    #[test]
    fn fresh_router_picks_optimal_routes() {
        let mut rng = XorShift::new(3);
        for _ in 0..300 {
            let g = random_graph(&mut rng);
            let p = Paths::compute(&g);
            let mut r = Router::new(Hysteresis::default());
            let routes = r.compute(&g);
            assert_eq!(r.last_changes(), routes.len(), "first compute: every route is new");
            for &s in &relays(&g) {
                for &d in g.nodes().iter().filter(|&&d| d != s) {
                    let Some(best) = p.dist(s, d) else {
                        assert!(!routes.contains_key(&(s, d)));
                        continue;
                    };
                    let route = routes[&(s, d)];
                    let link = g.cost(s, route.next_hop).expect("next hop is a neighbour");
                    let rest = p.dist(route.next_hop, d).unwrap();
                    assert!(close(link + rest, best), "{s}->{d}: {} vs {best}", link + rest);
                    assert!(close(route.cost_us, best));
                }
            }
            let again = r.compute(&g);
            assert_eq!(r.last_changes(), 0);
            assert_eq!(again, routes);
        }
    }

    /// S -> {R1, R2, R3} -> D, with D a client (so the relays can only reach each other via S).
    const S: u32 = 1;
    const D: u32 = 9;
    const R: [u32; 3] = [11, 12, 13];

    fn parallel_paths() -> Graph {
        let mut g = Graph::new();
        g.add_node(S, true);
        g.add_node(D, false);
        for r in R {
            g.add_node(r, true);
        }
        g
    }

    /// Sets both links of the branch through relay `r` so the branch costs `total_us`.
    fn set_branch(g: &mut Graph, r: u32, total_us: f64) {
        link_both(g, S, r, &flat(total_us / 2.0));
        link_both(g, r, D, &flat(total_us / 2.0));
    }

    #[test]
    fn hysteresis_ignores_jitter_around_equal_costs() {
        let mut rng = XorShift::new(11);
        let mut g = parallel_paths();
        let mut sticky = Router::new(Hysteresis::default());
        let mut eager = Router::new(Hysteresis { relative: 0.0, absolute_us: 0.0 });
        let mut eager_changes = 0;
        for round in 0..100 {
            // Every link of every branch jitters by +-5 % around 50 ms.
            for r in R {
                link_both(&mut g, S, r, &flat(50_000.0 * rng.range(0.95, 1.05)));
                link_both(&mut g, r, D, &flat(50_000.0 * rng.range(0.95, 1.05)));
            }
            let routes = sticky.compute(&g);
            assert!(routes.contains_key(&(S, D)));
            eager.compute(&g);
            if round > 0 {
                assert_eq!(sticky.last_changes(), 0, "round {round}");
                eager_changes += eager.last_changes();
            }
        }
        assert!(eager_changes > 10, "the jitter must really move the optimum: {eager_changes}");
    }

    #[test]
    fn hysteresis_needs_relative_and_absolute_improvement() {
        let mut g = parallel_paths();
        for r in R {
            set_branch(&mut g, r, 100_000.0);
        }
        let mut router = Router::new(Hysteresis::default());
        let cur = router.compute(&g)[&(S, D)].next_hop;
        let other = R.into_iter().find(|&r| r != cur).unwrap();

        // 5 ms better but only 5 %: keep.
        set_branch(&mut g, other, 95_000.0);
        let routes = router.compute(&g);
        assert_eq!(routes[&(S, D)].next_hop, cur);
        assert_eq!(routes[&(S, D)].cost_us, 100_000.0, "cost of the route in force");
        assert_eq!(router.last_changes(), 0);

        // 20 % and 20 ms better: switch, and only that route changes.
        set_branch(&mut g, other, 80_000.0);
        let routes = router.compute(&g);
        assert_eq!(routes[&(S, D)].next_hop, other);
        assert_eq!(routes[&(S, D)].cost_us, 80_000.0);
        assert_eq!(router.last_changes(), 1);

        // The next hop dies: switch at once even though the alternative is worse.
        g.remove_link(S, other);
        let routes = router.compute(&g);
        assert_ne!(routes[&(S, D)].next_hop, other);
        assert_eq!(routes[&(S, D)].cost_us, 100_000.0);
        // S->D moved, and S, R_x, R_y lost their routes to `other` (all entered via S->other).
        assert!(!routes.keys().any(|&(_, d)| d == other));
        assert_eq!(router.last_changes(), 4);

        // Small scale: 20 % better but only 0.4 ms: keep.
        let mut g = parallel_paths();
        for r in R {
            set_branch(&mut g, r, 2_000.0);
        }
        let mut router = Router::new(Hysteresis::default());
        let cur = router.compute(&g)[&(S, D)].next_hop;
        let other = R.into_iter().find(|&r| r != cur).unwrap();
        set_branch(&mut g, other, 1_600.0);
        assert_eq!(router.compute(&g)[&(S, D)].next_hop, cur);
        assert_eq!(router.last_changes(), 0);
    }

    /// Follows the routes in force from `s` towards `d`; true if `d` is reached.
    fn delivers(routes: &BTreeMap<(u32, u32), RouteChoice>, s: u32, d: u32, n: usize) -> bool {
        let mut at = s;
        for _ in 0..n {
            if at == d {
                return true;
            }
            match routes.get(&(at, d)) {
                Some(r) => at = r.next_hop,
                None => return false,
            }
        }
        at == d
    }

    #[test]
    fn kept_routes_never_form_loops() {
        // S and C both reach D; the S-C link is cheap. First D is far from S, so S goes via C.
        let (s, c, d) = (1, 2, 3);
        let mut g = Graph::new();
        for id in [s, c, d] {
            g.add_node(id, true);
        }
        link_both(&mut g, s, c, &flat(500.0));
        link_both(&mut g, s, d, &flat(200_000.0));
        link_both(&mut g, c, d, &flat(100_000.0));
        let mut router = Router::new(Hysteresis::default());
        assert_eq!(router.compute(&g)[&(s, d)].next_hop, c);
        // Now C's direct link degrades: C moves to S, while S's cost via C (through S itself,
        // 101 ms) is within the hysteresis band of its best (100 ms). Keeping it would loop.
        link_both(&mut g, s, d, &flat(100_000.0));
        link_both(&mut g, c, d, &flat(200_000.0));
        let routes = router.compute(&g);
        assert_eq!(routes[&(c, d)].next_hop, s);
        assert_eq!(routes[&(s, d)].next_hop, d);
        assert!(delivers(&routes, s, d, 3) && delivers(&routes, c, d, 3));

        // Randomised: perturb random graphs repeatedly under strong hysteresis.
        let mut rng = XorShift::new(5);
        for _ in 0..200 {
            let mut g = random_graph(&mut rng);
            let mut router = Router::new(Hysteresis { relative: 0.3, absolute_us: 500.0 });
            let ids = g.nodes().to_vec();
            for _ in 0..15 {
                let routes = router.compute(&g);
                let p = Paths::compute(&g);
                for (&(s, d), r) in &routes {
                    assert!(delivers(&routes, s, d, ids.len()), "{s}->{d} loops");
                    assert!(g.cost(s, r.next_hop).is_some(), "next hop must be a live link");
                    assert!(r.cost_us >= p.dist(s, d).unwrap() * (1.0 - 1e-3));
                }
                for _ in 0..3 {
                    let a = ids[(rng.next_u64() % ids.len() as u64) as usize];
                    let b = ids[(rng.next_u64() % ids.len() as u64) as usize];
                    if a != b {
                        if rng.unit() < 0.2 {
                            g.remove_link(a, b);
                        } else {
                            g.set_link(a, b, &random_metrics(&mut rng)).unwrap();
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn router_follows_a_rebuilt_graph() {
        let mut g = parallel_paths();
        for r in R {
            set_branch(&mut g, r, 100_000.0);
        }
        let mut router = Router::new(Hysteresis::default());
        let before = router.compute(&g);
        let cur = before[&(S, D)].next_hop;
        // Same topology, nodes added in another order, one unused relay dropped.
        let mut g2 = Graph::new();
        let other = R.into_iter().find(|&r| r != cur).unwrap();
        let kept = [cur, other];
        for &r in kept.iter().rev() {
            g2.add_node(r, true);
        }
        g2.add_node(D, false);
        g2.add_node(S, true);
        for &r in &kept {
            link_both(&mut g2, S, r, &flat(50_000.0 * if r == cur { 1.0 } else { 0.97 }));
            link_both(&mut g2, r, D, &flat(50_000.0));
        }
        let after = router.compute(&g2);
        assert_eq!(after[&(S, D)].next_hop, cur, "hysteresis state survives the rebuild");
        let dropped = before.keys().filter(|k| !after.contains_key(k)).count();
        let moved = after
            .iter()
            .filter(|(k, r)| before.get(k).is_none_or(|b| b.next_hop != r.next_hop))
            .count();
        assert_eq!(router.last_changes(), dropped + moved);
    }

    // --- backups -------------------------------------------------------------------------------

    #[test]
    fn backup_square_with_diagonal() {
        // A-B-C-D-A square (10 ms per side, D-C 12 ms) with an expensive A-C diagonal (40 ms).
        let (a, b, c, d) = (1, 2, 3, 4);
        let mut g = Graph::new();
        for id in [a, b, c, d] {
            g.add_node(id, true);
        }
        link_both(&mut g, a, b, &flat(10_000.0));
        link_both(&mut g, b, c, &flat(10_000.0));
        link_both(&mut g, c, d, &flat(12_000.0));
        link_both(&mut g, d, a, &flat(10_000.0));
        link_both(&mut g, a, c, &flat(40_000.0));
        let routes = Router::new(Hysteresis::default()).compute(&g);
        // A->B: via D would be cheaper (30 ms) but D's best path to B runs back through A, so
        // only the diagonal (C, 50 ms) is loop-free.
        assert_eq!(
            routes[&(a, b)],
            RouteChoice { next_hop: b, backup: Some(c), cost_us: 10_000.0 }
        );
        // A->C: best via B (20 ms); D (22 ms) beats the direct diagonal (40 ms).
        assert_eq!(
            routes[&(a, c)],
            RouteChoice { next_hop: b, backup: Some(d), cost_us: 20_000.0 }
        );

        // A client cannot forward: with D a client, the diagonal is A->C's only alternate.
        g.add_node(d, false);
        let routes = Router::new(Hysteresis::default()).compute(&g);
        assert_eq!(routes[&(a, c)].backup, Some(c));
        assert_eq!(routes[&(a, d)].next_hop, d);
        assert!(!routes.contains_key(&(d, a)));
    }

    #[test]
    fn backups_are_loop_free_alternates() {
        let mut rng = XorShift::new(21);
        let mut with_backup = 0;
        for _ in 0..300 {
            let g = random_graph(&mut rng);
            let p = Paths::compute(&g);
            let routes = Router::new(Hysteresis::default()).compute(&g);
            for (&(s, d), r) in &routes {
                let dist = |x: u32, y: u32| p.dist(x, y).unwrap_or(f64::INFINITY);
                // Brute-force the cheapest alternate twice: once counting only clear LFAs and
                // once also admitting near-ties, which the router may reject (LFA_SLACK).
                let tol = |x: f64| 1e-3 * x.max(1.0);
                let cheapest = |margin: f64| {
                    g.nodes()
                        .iter()
                        .filter(|&&nb| {
                            nb != r.next_hop && (nb == d || g.is_transit(nb) == Some(true))
                        })
                        .filter_map(|&nb| Some((nb, g.cost(s, nb)?)))
                        .filter(|&(nb, _)| {
                            let bound = dist(nb, s) + dist(s, d);
                            dist(nb, d) < bound + margin * tol(bound)
                        })
                        .map(|(nb, c)| c + dist(nb, d))
                        .fold(f64::INFINITY, f64::min)
                };
                let (clear, loose) = (cheapest(-1.0), cheapest(1.0));
                let Some(bk) = r.backup else {
                    assert!(clear.is_infinite(), "{s}->{d}: missing backup of cost {clear}");
                    continue;
                };
                with_backup += 1;
                assert_ne!(bk, r.next_hop);
                assert!(bk == d || g.is_transit(bk) == Some(true));
                let c = g.cost(s, bk).expect("backup is a neighbour");
                let bound = dist(bk, s) + dist(s, d);
                assert!(dist(bk, d) < bound, "{s}->{d} via {bk} not LFA");
                let cost = c + dist(bk, d);
                assert!(cost >= loose * (1.0 - 1e-5), "{s}->{d}: cheaper than any LFA");
                assert!(cost <= clear * (1.0 + 1e-5), "{s}->{d}: not the cheapest alternate");

                // Fast reroute: with the primary link gone, the backup still delivers to d
                // without coming back through s.
                let mut broken = g.clone();
                broken.remove_link(s, r.next_hop);
                let q = Paths::compute(&broken);
                assert!(q.dist(bk, d).is_some());
                assert_ne!(q.next_hop(bk, d), Some(s));
                assert!(!q.path(bk, d).unwrap().contains(&s), "{s}->{d}: backup {bk} loops");
            }
        }
        assert!(with_backup > 1000, "too few backups exercised: {with_backup}");
    }

    // --- bench ---------------------------------------------------------------------------------

    #[test]
    fn bench_runs_and_prng_is_seeded() {
        let (_, _, bytes) = bench_full_mesh(30, 1);
        // Graph (stride 32) + Paths + Router matrices, at least.
        assert!(bytes >= 32 * 32 * 4 + 30 * 30 * 12, "{bytes}");
        let mut a = XorShift::new(0);
        let mut b = XorShift::new(0);
        assert!((0..10).all(|_| a.next_u64() == b.next_u64()));
        assert_ne!(XorShift::new(0).next_u64(), 0);
    }

    #[test]
    fn backup_is_not_a_neighbour_whose_kept_route_leads_back() {
        // 1 — 4 direct; 2 — 4 and 2 — 1. First 2 reaches 4 best through 1; then 2 — 4 gets a
        // little cheaper, within hysteresis, so 2 keeps its route through 1. By shortest
        // distances 2 is a loop-free alternate for 1 → 4, but with the routes in force it
        // would hand the traffic straight back.
        let mut g = Graph::new();
        for id in [1, 2, 4] {
            g.add_node(id, true);
        }
        let set = |g: &mut Graph, a: u32, b: u32, c: f64| {
            g.set_link(a, b, &flat(c)).unwrap();
            g.set_link(b, a, &flat(c)).unwrap();
        };
        set(&mut g, 1, 4, 100.0);
        set(&mut g, 1, 2, 100.0);
        set(&mut g, 2, 4, 300.0);
        let mut r = Router::new(Hysteresis::default());
        let first = r.compute(&g);
        assert_eq!(first[&(2, 4)].next_hop, 1);
        set(&mut g, 2, 4, 150.0);
        let second = r.compute(&g);
        assert_eq!(second[&(2, 4)].next_hop, 1, "kept by hysteresis");
        assert_eq!(second[&(1, 4)].next_hop, 4);
        assert_eq!(second[&(1, 4)].backup, None);
    }
}
