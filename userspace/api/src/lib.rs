//! The controller's HTTP+JSON API, one definition for both ends (the controller, and the
//! agents and the CLI that talk to it).
//!
//! ```text
//! POST /v1/nodes/{id}/report          Report          → Ack        an agent's links and clients
//! GET  /v1/nodes/{id}/routes?after=G&wait_ms=W        → RoutesReply long poll: returns when the
//!                                                                   node's routes are newer than G
//! GET  /v1/routes[?node=N]                            → [RoutesReply]
//! GET  /v1/topology                                   → Topology
//! GET  /v1/auth                                       → AuthReply  refused requests per reason
//! GET  /v1/edges                                      → [EdgeCandidate] every edge, with load
//! POST /v1/edges/select     SelectRequest             → SelectReply the edges for a client
//! GET  /healthz                                       → "ok"
//! ```
//! Only over TLS, and every call but `/healthz` carries `Authorization: Bearer TOKEN`: a
//! node's token may post its own reports and read its own routes; an operator's token may
//! read everything else and post nothing. Missing, malformed or unknown tokens get 401, a
//! valid token outside its rights 403. `POST /v1/edges/select` is the exception: a client
//! has no controller token, so it sends its edge-access credential (`wecan_access`) in the
//! body, checked against the operators the edges serve.
//!
//! Errors are `ErrorReply` with a 4xx/5xx status and a message naming what to fix.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

#[cfg(feature = "client")]
pub mod http;

/// What an agent tells the controller, every report interval and at once when a link
/// changes state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Clients attached to this relay (destinations only it can deliver to).
    #[serde(default)]
    pub clients: Vec<u32>,
    /// The agent's view of its links to relay peers.
    pub links: Vec<LinkReport>,
    /// On an edge: where clients reach it, whom it serves, and its load.
    #[serde(default)]
    pub edge: Option<EdgeReport>,
}

/// An edge's share of its report, what the scheduler ranks it by.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeReport {
    /// The operator whose credentials the edge holds (its public key, `wecan-pk:…`).
    pub operator: String,
    /// The operators whose clients it admits (its `[access] operators`).
    pub serves: Vec<String>,
    /// Its region label (`[access] region`), empty if none.
    pub region: String,
    /// Where clients send to reach it.
    pub addrs: Vec<SocketAddr>,
    /// Clients attached now, and at most.
    pub clients: u32,
    pub capacity: u32,
}

/// `POST /v1/edges/select`: which edges may this client attach to?
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectRequest {
    /// The client's token (`wecan1.…`); it proves which operator's client it is.
    pub token: String,
    /// A region to prefer among equals.
    #[serde(default)]
    pub region: Option<String>,
    /// At most this many candidates (default 4, at most 16).
    #[serde(default)]
    pub max: Option<usize>,
}

/// Candidate edges, best first: the client's own operator's, then partners' that admit its
/// operator; within each, the preferred region first, then the least loaded. Full edges and
/// edges that admit no client of this operator are left out. The client probes them and
/// attaches to the nearest of the best class: measurement, not geography, decides.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelectReply {
    pub edges: Vec<EdgeCandidate>,
}

/// `GET /v1/edges`: one edge as its last report described it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EdgeInfo {
    pub node: u32,
    /// Milliseconds since its last report.
    pub age_ms: u64,
    pub edge: EdgeReport,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EdgeCandidate {
    pub node: u32,
    /// The edge holds credentials of the client's own operator.
    pub same_operator: bool,
    pub region: String,
    pub addrs: Vec<SocketAddr>,
    /// Attached clients over capacity (0..=1).
    pub load: f64,
    pub clients: u32,
    pub capacity: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub generation: u64,
}

/// One route pushed to a relay.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PushedRoute {
    pub dst: u32,
    pub next_hop: u32,
    /// Loop-free alternate next hop, for local fast reroute when the primary link dies.
    pub backup: Option<u32>,
    /// Path cost (µs of expected delivery time).
    pub cost_us: f64,
}

/// A relay's complete route set at a generation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoutesReply {
    pub node: u32,
    /// Increases whenever this node's routes change.
    pub generation: u64,
    pub routes: Vec<PushedRoute>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopologyNode {
    pub id: u32,
    /// Relay (reports links) or client (attached to a relay).
    pub relay: bool,
    /// Milliseconds since its last report (relays).
    pub age_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopologyLink {
    pub from: u32,
    pub to: u32,
    pub up: bool,
    pub rtt_us: f64,
    pub loss: f64,
    pub jitter_us: f64,
    /// Cost used for routing; `None` when the link is not usable.
    pub cost_us: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    pub nodes: Vec<TopologyNode>,
    pub links: Vec<TopologyLink>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: String,
}

/// Requests the controller refused since it started, per reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusals {
    /// No `Authorization` header (401).
    pub missing_credentials: u64,
    /// An `Authorization` header that is not `Bearer TOKEN` (401).
    pub malformed_credentials: u64,
    /// A token the controller does not know (401).
    pub bad_credentials: u64,
    /// A node's token used for another node's report or routes (403).
    pub wrong_node: u64,
    /// A node's token on an operator call (403).
    pub not_operator: u64,
    /// An operator's token posting a report: operators only read (403).
    pub read_only: u64,
    /// A client credential asking for edges that does not verify (401).
    #[serde(default)]
    pub bad_client_token: u64,
    /// TLS handshakes that failed (e.g. a client that does not trust the controller's CA).
    pub tls_handshake: u64,
}

/// `GET /v1/auth`: who may call, and what was refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuthReply {
    /// Nodes with a token.
    pub nodes: usize,
    /// Operator tokens.
    pub operators: usize,
    pub refused: Refusals,
}

/// Statistics of one link, as reported to the operator and the controller.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkReport {
    pub peer: u32,
    pub up: bool,
    /// Mean RTT of the answered probes in the window (µs).
    pub rtt_us: f64,
    /// Lost fraction of the decided probes in the window (0..1).
    pub loss: f64,
    /// Smoothed RTT variation (µs).
    pub jitter_us: f64,
    /// Time since the last reply (ms); `None` if never answered.
    pub age_ms: Option<u64>,
    pub sent: u64,
    pub received: u64,
}
