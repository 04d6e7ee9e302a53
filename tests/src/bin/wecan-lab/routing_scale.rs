//! Sizing the controller: route computation time and memory on random full meshes.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng, rngs::SmallRng};
use wecan_controller::routing::{Graph, Hysteresis, LinkMetrics, Paths, Router};

/// Builds a deterministic random full mesh of `n` relays (every ordered pair linked, RTT
/// 1–100 ms, loss 0–5 %, jitter 0–5 ms), times one `Paths::compute` and one `Router::compute`
/// (which includes its own path computation), and returns
/// `(paths time, router time, approximate bytes held by Graph + Paths + Router)`.
pub fn full_mesh(n: usize, seed: u64) -> (Duration, Duration, usize) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut g = Graph::new();
    for id in 0..n as u32 {
        g.add_node(id, true);
    }
    for a in 0..n as u32 {
        for b in (0..n as u32).filter(|&b| b != a) {
            let m = LinkMetrics {
                rtt_us: rng.random_range(1_000.0..100_000.0),
                loss: rng.random_range(0.0..0.05),
                jitter_us: rng.random_range(0.0..5_000.0),
            };
            g.set_link(a, b, &m).expect("both nodes were added");
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
