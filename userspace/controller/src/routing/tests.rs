use std::collections::BTreeMap;

use rand::{Rng, RngCore, SeedableRng, rngs::SmallRng};

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

fn random_metrics(rng: &mut SmallRng) -> LinkMetrics {
    let loss = if rng.random::<f64>() < 0.05 {
        rng.random_range(0.5..1.0)
    } else {
        rng.random_range(0.0..0.2)
    };
    metrics(rng.random_range(100.0..50_000.0), loss, rng.random_range(0.0..2_000.0))
}

/// 3–7 nodes with scattered, non-sorted ids, random density, ~25 % non-transit nodes and
/// ~5 % unusable links.
fn random_graph(rng: &mut SmallRng) -> Graph {
    let n = 3 + (rng.next_u64() % 5) as u32;
    let density = rng.random_range(0.15..1.0);
    let mut g = Graph::new();
    for i in 0..n {
        g.add_node(1000 - 7 * i, rng.random::<f64>() < 0.75);
    }
    let ids = g.nodes().to_vec();
    for &a in &ids {
        for &b in &ids {
            if a != b && rng.random::<f64>() < density {
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
    let mut rng = SmallRng::seed_from_u64(7);
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
    let mut rng = SmallRng::seed_from_u64(99);
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
    let mut rng = SmallRng::seed_from_u64(3);
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
    let mut rng = SmallRng::seed_from_u64(11);
    let mut g = parallel_paths();
    let mut sticky = Router::new(Hysteresis::default());
    let mut eager = Router::new(Hysteresis { relative: 0.0, absolute_us: 0.0 });
    let mut eager_changes = 0;
    for round in 0..100 {
        // Every link of every branch jitters by +-5 % around 50 ms.
        for r in R {
            link_both(&mut g, S, r, &flat(50_000.0 * rng.random_range(0.95..1.05)));
            link_both(&mut g, r, D, &flat(50_000.0 * rng.random_range(0.95..1.05)));
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
    let mut rng = SmallRng::seed_from_u64(5);
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
                    if rng.random::<f64>() < 0.2 {
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
    assert_eq!(routes[&(a, b)], RouteChoice { next_hop: b, backup: Some(c), cost_us: 10_000.0 });
    // A->C: best via B (20 ms); D (22 ms) beats the direct diagonal (40 ms).
    assert_eq!(routes[&(a, c)], RouteChoice { next_hop: b, backup: Some(d), cost_us: 20_000.0 });

    // A client cannot forward: with D a client, the diagonal is A->C's only alternate.
    g.add_node(d, false);
    let routes = Router::new(Hysteresis::default()).compute(&g);
    assert_eq!(routes[&(a, c)].backup, Some(c));
    assert_eq!(routes[&(a, d)].next_hop, d);
    assert!(!routes.contains_key(&(d, a)));
}

#[test]
fn backups_are_loop_free_alternates() {
    let mut rng = SmallRng::seed_from_u64(21);
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
                    .filter(|&&nb| nb != r.next_hop && (nb == d || g.is_transit(nb) == Some(true)))
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

// --- memory ------------------------------------------------------------------------------

#[test]
fn memory_accounting_covers_the_matrices() {
    let mut g = Graph::new();
    for id in 0..30 {
        g.add_node(id, true);
    }
    for a in 0..30 {
        for b in (0..30).filter(|&b| b != a) {
            g.set_link(a, b, &flat(1_000.0 + f64::from(a * 30 + b))).unwrap();
        }
    }
    let paths = Paths::compute(&g);
    let mut router = Router::new(Hysteresis::default());
    router.compute(&g);
    let bytes = g.approx_bytes() + paths.approx_bytes() + router.approx_bytes();
    // Graph (stride 32) + Paths + Router matrices, at least.
    assert!(bytes >= 32 * 32 * 4 + 30 * 30 * 12, "{bytes}");
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
