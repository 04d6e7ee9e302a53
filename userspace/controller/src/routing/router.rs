//! Route selection: best next hops with hysteresis, forwarding loops among kept routes broken,
//! and a loop-free alternate per route.

use std::collections::BTreeMap;

use super::{Graph, NONE, Paths, blend_f32, blend_u32, lane_mask};

/// The loop-free-alternate inequality is checked as `dist(N,dst) < LFA_SLACK * (dist(N,src) +
/// dist(src,dst))`. Distances are f32 sums accumulated in different orders, so a neighbour whose
/// best path runs back through src (exact equality) could pass a bare `<` by rounding; a relative
/// margin of 2^-12 covers the rounding of paths thousands of hops long and rejects only
/// alternates that are within 0.025 % of looping back anyway.
const LFA_SLACK: f32 = 1.0 - 1.0 / 4096.0;

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

    /// Approximate heap bytes held (for sizing the controller).
    pub fn approx_bytes(&self) -> usize {
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
