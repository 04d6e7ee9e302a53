//! Route computation for the wecan controller.
//!
//! The controller keeps a dense graph of measured link quality between nodes and derives, for
//! every (relay, destination) pair, the next hop to use, a loop-free backup next hop for local
//! fast reroute, and the expected cost of the route.
//!
//! Layout of this module:
//! - here: [`LinkMetrics`] and [`link_cost`] turn measurements into microseconds, and the
//!   branch-free row-kernel helpers the other parts share;
//! - [`graph`]: [`Graph`], a dense `n x n` matrix of `f32` costs;
//! - [`paths`]: [`Paths`], all-pairs shortest paths (Floyd–Warshall, transit nodes only as hops);
//! - [`router`]: [`Router`], route selection with [`Hysteresis`] and loop-free alternates.
//!
//! Everything is dense and index based: node ids are mapped to `0..n` once, and the hot loops run
//! over contiguous `f32` / `u32` rows so LLVM can vectorise them.

use std::fmt;

/// Links losing this fraction of packets or more are not used at all: past this point
/// retransmission repair dominates and the cost model stops being meaningful.
pub const MAX_USABLE_LOSS: f64 = 0.5;

/// "No node" in the index matrices; a graph never holds `u32::MAX` nodes.
const NONE: u32 = u32::MAX;

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

pub mod graph;
pub mod paths;
pub mod router;

pub use graph::Graph;
pub use paths::Paths;
pub use router::{Hysteresis, RouteChoice, Router};

#[cfg(test)]
mod tests;
