//! Every BPF map of the relay program, declared once. All but the FIB cache (private to the
//! datapath) are pinned by name under the agent's bpffs directory, so the CLI can read them
//! and a restarted agent can take them over. Key/value types live in `wecan_common::maps`.

use aya_ebpf::{
    macros::map,
    maps::{Array, DevMapHash, HashMap, LruHashMap, PerCpuArray},
};
use wecan_common::{
    maps::{
        ClientValue, FIB_CACHE_SLOTS, FibCacheEntry, FlowKey, GatewayBucket, GatewaySource,
        Heartbeat, LinkAuth, LinkValue, MAX_AUTH_SLOTS, MAX_CLIENTS, MAX_FLOW_ROUTES,
        MAX_GATEWAY_SOURCES, MAX_LINKS, MAX_PEERS, MAX_ROUTES, MAX_TX_PORTS, PeerValue,
        RelayConfig, RouteKey, RouteValue,
    },
    stats::{Counter, Stat},
};

/// Who this relay is (node ID, relay port). Written by the agent at start; read per packet.
#[map(name = "WECAN_CONFIG")]
pub static CONFIG: Array<RelayConfig> = Array::pinned(1, 0);

/// The agent's lease (`Heartbeat`). Written by the agent every few milliseconds; read per
/// probe for this relay, which XDP answers only while the lease runs.
#[map(name = "WECAN_HEARTBEAT")]
pub static HEARTBEAT: Array<Heartbeat> = Array::pinned(1, 0);

/// Allowed IPv4 senders (peers and attached clients) with their link keys. Written by the
/// agent from its config and by the CLI (key rotation); read per packet to refuse open
/// relaying, to verify a packet's tag and to seal it for the next hop.
#[map(name = "WECAN_PEERS_V4")]
pub static PEERS_V4: HashMap<[u8; 4], PeerValue> = HashMap::pinned(MAX_PEERS, 0);

/// Allowed IPv6 senders; as `PEERS_V4`.
#[map(name = "WECAN_PEERS_V6")]
pub static PEERS_V6: HashMap<[u8; 16], PeerValue> = HashMap::pinned(MAX_PEERS, 0);

/// Route per destination node, double-buffered: `CONFIG.table` says which of the two is
/// live. Written by the agent (the whole inactive table, then the flip) and the CLI (one
/// entry in both); read per packet after `FLOW_ROUTES` misses.
#[map(name = "WECAN_ROUTES_0")]
pub static ROUTES_0: HashMap<RouteKey, RouteValue> = HashMap::pinned(MAX_ROUTES, 0);

/// The other route table; see `ROUTES_0`.
#[map(name = "WECAN_ROUTES_1")]
pub static ROUTES_1: HashMap<RouteKey, RouteValue> = HashMap::pinned(MAX_ROUTES, 0);

/// Per-link authentication state (send counter, replay windows), indexed by
/// `PeerValue::auth_slot`: the peers' slots, then the clients'. Initialised by the agent/CLI
/// when a peer is added and by the access gateway when a client registers; then written
/// per packet by the datapath only (atomically: every CPU shares a link's state).
#[map(name = "WECAN_LINK_AUTH")]
pub static LINK_AUTH: Array<LinkAuth> = Array::pinned(MAX_AUTH_SLOTS, 0);

/// Clients attached through this edge, by overlay address (`ClientValue`). Written whole by
/// the agent's access gateway (registration, expiry); read per packet from or to a client,
/// and written in place by the datapath (last seen, the address it moved to).
#[map(name = "WECAN_CLIENTS")]
pub static CLIENTS: HashMap<u32, ClientValue> = HashMap::pinned(MAX_CLIENTS, 0);

/// Rate of control packets per unknown source (`gateway::admit`). Written and read by the
/// datapath only; pinned so that an agent upgrade keeps the limits running.
#[map(name = "WECAN_GATEWAY_LIMIT")]
pub static GATEWAY_LIMIT: LruHashMap<GatewaySource, GatewayBucket> =
    LruHashMap::pinned(MAX_GATEWAY_SOURCES, 0);

/// Per-flow route overrides. Written by the agent/CLI; read per packet before the route
/// tables.
#[map(name = "WECAN_FLOW_ROUTES")]
pub static FLOW_ROUTES: HashMap<FlowKey, RouteValue> = HashMap::pinned(MAX_FLOW_ROUTES, 0);

/// Interfaces the relay may redirect to, keyed by ifindex. Written by the agent for every
/// interface it attaches to; read by `bpf_redirect_map`.
#[map(name = "WECAN_TX_PORTS")]
pub static TX_PORTS: DevMapHash = DevMapHash::pinned(MAX_TX_PORTS, 0);

/// Egress per next hop as `bpf_fib_lookup` last resolved it, per CPU, slot chosen by
/// next-hop address (`forward::resolve`). Written and read by the datapath only.
#[map(name = "WECAN_FIB_CACHE")]
pub static FIB_CACHE: PerCpuArray<FibCacheEntry> =
    PerCpuArray::with_max_entries(FIB_CACHE_SLOTS, 0);

/// Per-CPU packet/byte counter per outcome (`Stat` index). Written per packet; read and
/// summed by the CLI and agent.
#[map(name = "WECAN_STATS")]
pub static STATS: PerCpuArray<Counter> = PerCpuArray::pinned(Stat::COUNT, 0);

/// Probe statistics per peer node. Written by the agent's prober; read by the CLI
/// (`wecan links`). The datapath does not read it: it lives here so that every pinned map
/// of a relay is declared in one place.
#[map(name = "WECAN_LINKS")]
pub static LINKS: HashMap<u32, LinkValue> = HashMap::pinned(MAX_LINKS, 0);
