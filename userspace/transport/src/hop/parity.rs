//! How much parity a link's measured loss calls for.

/// Weight of a new loss sample in the sender's smoothed loss estimate.
pub(super) const LOSS_GAIN: f64 = 0.1;

/// Probability a group may be left unrecoverable: with ARQ behind the FEC, ARQ repairs the
/// rest more cheaply than more parity would; without it, FEC alone must deliver.
pub(super) fn target(with_arq: bool) -> f64 {
    if with_arq { 1e-2 } else { 1e-4 }
}

/// Smallest `m` in `min..=max` for which a group of `k + m` shards, each lost with probability
/// `p`, loses more than `m` with probability at most `target`; `max` if none does.
pub fn parity_for(p: f64, k: usize, min: usize, max: usize, target: f64) -> usize {
    let p = p.clamp(0.0, 1.0);
    (min..=max)
        .find(|&m| {
            let n = k + m;
            // P(X <= m) for X ~ Binomial(n, p), by the term recurrence.
            let mut term = (1.0 - p).powi(n as i32);
            let mut cdf = term;
            for i in 0..m {
                if p >= 1.0 {
                    break;
                }
                term *= (n - i) as f64 / (i + 1) as f64 * p / (1.0 - p);
                cdf += term;
            }
            1.0 - cdf <= target
        })
        .unwrap_or(max)
}
