//! The link-cost graph the routes are computed on.

use std::collections::HashMap;

use super::{LinkMetrics, RoutingError, link_cost};

/// Dense link-cost graph: an `n x n` matrix of `f32` costs in microseconds, where
/// `f32::INFINITY` means "no usable link".
///
/// Nodes are kept in insertion order; the matrix row stride grows by doubling so that adding
/// `n` nodes one by one costs `O(n^2)` copying in total rather than `O(n^3)`.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub(super) ids: Vec<u32>,
    pub(super) index: HashMap<u32, usize>,
    pub(super) transit: Vec<bool>,
    pub(super) stride: usize,
    pub(super) cost: Vec<f32>,
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

    pub(super) fn index_of(&self, id: u32) -> Result<usize, RoutingError> {
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

    pub(super) fn set_link_idx(&mut self, ia: usize, ib: usize, m: &LinkMetrics) {
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

    pub(super) fn link(&self, i: usize, j: usize) -> f32 {
        self.cost[i * self.stride + j]
    }

    /// Outgoing link costs of node index `i`, one per node (the diagonal is infinite).
    pub(super) fn row(&self, i: usize) -> &[f32] {
        &self.cost[i * self.stride..][..self.ids.len()]
    }

    /// Approximate heap bytes held (for sizing the controller).
    pub fn approx_bytes(&self) -> usize {
        self.cost.capacity() * 4
            + self.ids.capacity() * 4
            + self.transit.capacity()
            + self.index.capacity() * (4 + 8 + 1)
    }
}
