//! Keys and values of the BPF maps, shared by the XDP program (reader) and the agent/CLI
//! (writers). The maps themselves are declared once, in `xdp-prog/src/maps.rs`.
//!
//! Node IDs and ports in map keys/values are in host byte order; addresses are byte
//! arrays in network order (IPv4 in the first 4 bytes of a 16-byte slot).

/// Map names, as pinned under the agent's bpffs directory.
pub mod names {
    pub const CONFIG: &str = "WECAN_CONFIG";
    pub const PEERS_V4: &str = "WECAN_PEERS_V4";
    pub const PEERS_V6: &str = "WECAN_PEERS_V6";
    /// The two route tables (see [`super::RelayConfig::table`]).
    pub const ROUTES: [&str; 2] = ["WECAN_ROUTES_0", "WECAN_ROUTES_1"];
    pub const FLOW_ROUTES: &str = "WECAN_FLOW_ROUTES";
    pub const TX_PORTS: &str = "WECAN_TX_PORTS";
    pub const STATS: &str = "WECAN_STATS";
    pub const LINKS: &str = "WECAN_LINKS";
    pub const LINK_AUTH: &str = "WECAN_LINK_AUTH";
    pub const HEARTBEAT: &str = "WECAN_HEARTBEAT";
    pub const CLIENTS: &str = "WECAN_CLIENTS";
    pub const GATEWAY_LIMIT: &str = "WECAN_GATEWAY_LIMIT";
    /// Every pinned map, for cleanup.
    pub const ALL: [&str; 13] = [
        CONFIG,
        PEERS_V4,
        PEERS_V6,
        ROUTES[0],
        ROUTES[1],
        FLOW_ROUTES,
        TX_PORTS,
        STATS,
        LINKS,
        LINK_AUTH,
        HEARTBEAT,
        CLIENTS,
        GATEWAY_LIMIT,
    ];
}

/// Name of the relay XDP program inside the object file.
pub const RELAY_PROGRAM: &str = "wecan_relay";

/// Interface the relay's FIB lookups run from: `lo`, whose ifindex is 1 in every network
/// namespace. The agent turns IP forwarding on for `lo` only (see `xdp-prog/src/forward.rs`).
pub const LOOKUP_IFINDEX: u32 = 1;

/// Capacity of the route maps.
pub const MAX_ROUTES: u32 = 65_536;
/// Capacity of the per-flow override map.
pub const MAX_FLOW_ROUTES: u32 = 65_536;
/// Capacity of each peer allowlist.
pub const MAX_PEERS: u32 = 4_096;
/// `LINK_AUTH` slots of peers: one per peer of either family.
pub const PEER_AUTH_SLOTS: u32 = 2 * MAX_PEERS;
/// Clients an edge's access gateway holds at once (`CLIENTS`).
pub const MAX_CLIENTS: u32 = 16_384;
/// Capacity of `LINK_AUTH`: the peers' slots, then one per client slot
/// ([`client_auth_slot`]).
pub const MAX_AUTH_SLOTS: u32 = PEER_AUTH_SLOTS + MAX_CLIENTS;
/// Sources the gateway's rate limit tracks at once (`GATEWAY_LIMIT`, least recently used
/// evicted).
pub const MAX_GATEWAY_SOURCES: u32 = 65_536;

/// The `LINK_AUTH` slot of the client at address slot `slot` (1..=[`MAX_CLIENTS`]).
pub const fn client_auth_slot(slot: u16) -> Option<u32> {
    if slot == 0 || slot as u32 > MAX_CLIENTS {
        return None;
    }
    Some(PEER_AUTH_SLOTS + slot as u32 - 1)
}
/// Capacity of the link table.
pub const MAX_LINKS: u32 = 4_096;
/// Capacity of the egress-port devmap.
pub const MAX_TX_PORTS: u32 = 64;

/// Single entry (index 0) of the `CONFIG` array: who this relay is.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayConfig {
    pub node_id: u32,
    /// UDP port relay packets are addressed to.
    pub port: u16,
    /// 1 once userspace has written the config; the program passes everything before that.
    pub enabled: u8,
    /// [`config_flags`] bits.
    pub flags: u8,
    /// Which of the two route tables is live (0 or 1). The agent rewrites the other one and
    /// then flips this byte, so a route push is applied atomically, as a whole.
    pub table: u8,
    pub _pad: u8,
    /// Milliseconds a `bpf_fib_lookup` result is reused per next hop and CPU (the `FIB_CACHE`
    /// map); 0 looks up every packet.
    pub fib_cache_ms: u16,
    /// Control packets per second one unknown source may send to the access gateway (0:
    /// none, the relay is not an edge), and how many more it may send at once.
    pub gateway_rate: u16,
    pub gateway_burst: u16,
}

/// Single entry (index 0) of the `HEARTBEAT` array: the agent's lease on its relay.
///
/// XDP answers probes only while the lease runs: a dead agent stops vouching for its links,
/// so its peers see them go down and reroute around it instead of sending it traffic only
/// the agent could handle (protected routes, neighbour misses, fragments). Packets for the
/// agent still go up while the peers reroute: a busy agent late on its heartbeat is not
/// dead, and its socket may still take them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Heartbeat {
    /// `CLOCK_MONOTONIC` ns until which the agent is alive (0: no agent yet). The datapath
    /// reads the coarse clock, which lags by at most a tick, so it errs towards alive.
    pub alive_until_ns: u64,
}

/// Bits of [`RelayConfig::flags`].
pub mod config_flags {
    /// Answer probes addressed to this relay in XDP (XDP_TX), so measured RTT is not
    /// inflated by userspace scheduling. Without it the agent answers them.
    pub const PROBE_REPLY_IN_XDP: u8 = 0x01;
}

/// Value of the peer allowlists (keyed by the peer's IPv4 / IPv6 address): only packets
/// whose outer source address is a peer, tagged with a key of that peer's link, are relayed.
/// A relay is never an open relay.
///
/// The agent trusts this entry, never a packet's claimed source node, for who sent a hop
/// message: only a relay peer's address may, and only under its own node ID.
///
/// Written whole by userspace (a hash map update replaces the element atomically, so a
/// packet sees the old keys or the new ones); the per-link state that the datapath writes
/// lives in `LINK_AUTH` at `auth_slot`, so no update can roll it back.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerValue {
    pub node_id: u32,
    /// A [`PeerKind`].
    pub kind: u8,
    /// [`peer_flags`] bits.
    pub flags: u8,
    /// Which of `keys` (0 or 1) tags what this node sends to the peer.
    pub send: u8,
    pub _pad: u8,
    /// Index of this link's [`LinkAuth`] in `LINK_AUTH`.
    pub auth_slot: u32,
    pub _pad2: u32,
    /// The link's current and previous key: packets tagged with either are accepted, so keys
    /// rotate without loss. An ID of 0 is an empty slot.
    pub keys: [HopKeys; 2],
}

impl PeerValue {
    /// A peer without keys: nothing from it verifies until keys are set.
    pub const fn new(node_id: u32, kind: PeerKind) -> Self {
        Self {
            node_id,
            kind: kind as u8,
            flags: 0,
            send: 0,
            _pad: 0,
            auth_slot: 0,
            _pad2: 0,
            keys: [HopKeys::EMPTY; 2],
        }
    }

    /// The entry's kind; `None` for a value no writer of this version produces.
    pub const fn kind(&self) -> Option<PeerKind> {
        PeerKind::from_u8(self.kind)
    }

    /// Whether packets on this link go untagged.
    pub const fn no_auth(&self) -> bool {
        self.flags & peer_flags::NO_AUTH != 0
    }

    /// The keys with ID `id` (never the empty slot).
    #[inline(always)]
    pub fn key(&self, id: u8) -> Option<&HopKeys> {
        if id == 0 {
            None
        } else if self.keys[0].id == id {
            Some(&self.keys[0])
        } else if self.keys[1].id == id {
            Some(&self.keys[1])
        } else {
            None
        }
    }

    /// The keys that tag what this node sends; `None` if that slot is empty.
    #[inline(always)]
    pub fn send_key(&self) -> Option<&HopKeys> {
        let k = if self.send == 0 { &self.keys[0] } else { &self.keys[1] };
        if k.id == 0 { None } else { Some(k) }
    }
}

/// Bits of [`PeerValue::flags`].
pub mod peer_flags {
    /// The link is not authenticated: packets from the peer are not checked and packets to
    /// it go out untagged (key ID 0). Only for links inside one trusted network, and for the
    /// benchmark's baseline.
    pub const NO_AUTH: u8 = 0x01;
}

/// One key of a link, both directions: each direction has its own SipHash key, so a packet
/// can never be reflected back to its sender as the peer's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HopKeys {
    /// The key ID packets carry (1..=255; 0: empty slot).
    pub id: u8,
    pub _pad: [u8; 7],
    /// Verifies what the peer sends.
    pub rx: crate::auth::Key,
    /// Tags what this node sends to the peer.
    pub tx: crate::auth::Key,
}

impl HopKeys {
    pub const EMPTY: Self = Self { id: 0, _pad: [0; 7], rx: [0; 2], tx: [0; 2] };
}

/// Value of `LINK_AUTH` (an array indexed by [`PeerValue::auth_slot`]): the state of a
/// link's authentication that changes per packet. Initialised by userspace when it adds the
/// peer (send counter at the wall clock in ns); written by the datapath afterwards.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkAuth {
    /// Next authentication sequence number the datapath sends to the peer (its lane: the
    /// top bit clear, see [`crate::auth::LANE_AGENT`]).
    pub tx_seq: u64,
    /// Replay windows of what the peer sends, per lane (datapath, agent).
    pub rx: [[u64; crate::auth::WINDOW_WORDS]; 2],
}

impl LinkAuth {
    /// A link whose first packet is sent with sequence number `start` and from which
    /// nothing was received yet.
    pub const fn new(start: u64) -> Self {
        Self { tx_seq: start & !crate::auth::LANE_AGENT, rx: [[0; crate::auth::WINDOW_WORDS]; 2] }
    }
}

/// What a peer is to this relay.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerKind {
    /// Another relay: probed, a possible next hop, and the only kind that speaks the
    /// per-hop protection protocol.
    Relay = 1,
    /// A client attached to this relay: an end point, never probed or used as transit.
    Client = 2,
}

impl PeerKind {
    pub const ALL: [Self; 2] = [Self::Relay, Self::Client];

    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Relay),
            2 => Some(Self::Client),
            _ => None,
        }
    }

    /// The name operators write in configs and on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Relay => "relay",
            Self::Client => "client",
        }
    }
}

/// A peer kind name that is not one of [`PeerKind::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownPeerKind;

impl core::fmt::Display for UnknownPeerKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("unknown peer kind; use relay or client")
    }
}

impl core::str::FromStr for PeerKind {
    type Err = UnknownPeerKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.name() == s).ok_or(UnknownPeerKind)
    }
}

/// Value of `CLIENTS` (keyed by the client's overlay address, `wire::overlay`): a client
/// attached through this edge's access gateway. Written whole by the agent when the client
/// registers, removed when it times out; between the two the datapath alone writes it.
///
/// A client is admitted by the address it claims as source, checked by its tag: there is
/// no per-address allowlist entry, so many clients behind one NAT address are told apart,
/// and a client whose address changes (NAT rebinding, a new network) is followed as soon as
/// an authenticated packet arrives from the new one, WireGuard-style. A replayed old
/// packet cannot move it: the replay window accepts each sequence number once.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientValue {
    /// node_id = the overlay address, kind [`PeerKind::Client`], the link's keys (always
    /// authenticated) and its `LINK_AUTH` slot ([`client_auth_slot`]).
    pub peer: PeerValue,
    /// How to reach the client: forward to the address and port it last sent from, with
    /// this edge's address it sent to as the source.
    pub route: RouteValue,
    /// `bpf_ktime_get_coarse_ns` time of its last authenticated packet, kept to within
    /// [`CLIENT_SEEN_GRANULARITY_NS`] (one write per client per interval, not per packet);
    /// the agent removes clients silent for longer than their timeout.
    pub last_seen_ns: u64,
}

/// How stale [`ClientValue::last_seen_ns`] may be.
pub const CLIENT_SEEN_GRANULARITY_NS: u64 = 100_000_000;

/// Key of `GATEWAY_LIMIT`: an unknown sender's address (IPv4 in the first four bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatewaySource {
    pub addr: [u8; 16],
    pub family: u8,
    pub _pad: [u8; 3],
}

/// Value of `GATEWAY_LIMIT`: the source's theoretical arrival time (GCRA, the generic cell
/// rate algorithm of ATM): a packet is allowed while that time is at most the burst ahead of
/// now, and each allowed packet moves it on by one interval.
/// Written and read by the datapath only.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatewayBucket {
    pub tat_ns: u64,
}

/// Key of `ROUTES`: destination node.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    pub dst_node: u32,
}

/// Key of `FLOW_ROUTES`, the per-flow overrides consulted before `ROUTES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub dst_node: u32,
    pub flow_id: u32,
}

/// What a relay does with a packet whose route it found.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteAction {
    /// Rewrite toward the next hop and send it out in XDP.
    Forward = 1,
    /// Hand to the agent (kernel stack to its UDP socket), which forwards with protection.
    SlowPath = 2,
    /// This node is the destination: deliver to the local stack.
    Local = 3,
}

impl RouteAction {
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Forward),
            2 => Some(Self::SlowPath),
            3 => Some(Self::Local),
            _ => None,
        }
    }

    pub const ALL: [Self; 3] = [Self::Forward, Self::SlowPath, Self::Local];

    /// The name operators write in configs and on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Forward => "forward",
            Self::SlowPath => "slow-path",
            Self::Local => "local",
        }
    }
}

/// A route action name that is not one of [`RouteAction::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownAction;

impl core::fmt::Display for UnknownAction {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("unknown route action; use forward, slow-path or local")
    }
}

impl core::str::FromStr for RouteAction {
    type Err = UnknownAction;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|a| a.name() == s).ok_or(UnknownAction)
    }
}

/// Who installed a route.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteOrigin {
    /// From the agent's config file.
    Static = 1,
    /// Added by an operator with the CLI.
    Cli = 2,
    /// Pushed by the controller.
    Controller = 3,
}

impl RouteOrigin {
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Static),
            2 => Some(Self::Cli),
            3 => Some(Self::Controller),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::Cli => "cli",
            Self::Controller => "controller",
        }
    }
}

/// Bits of [`RouteValue::flags`].
pub mod route_flags {
    /// The primary next hop's link is down: this entry points at the backup.
    pub const ON_BACKUP: u32 = 0x01;
    /// Protect this route's packets on the hop to the next relay with FEC. Any protection
    /// bit comes with [`super::RouteAction::SlowPath`]: XDP hands the packets to the agent,
    /// which protects them (`wecan_transport::hop`).
    pub const PROTECT_FEC: u32 = 0x02;
    /// Protect them with selective retransmission (ARQ).
    pub const PROTECT_ARQ: u32 = 0x04;
}

/// Address family tags used in [`RouteValue::family`].
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// Value of `ROUTES` and `FLOW_ROUTES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteValue {
    /// A [`RouteAction`].
    pub action: u8,
    /// [`FAMILY_V4`] or [`FAMILY_V6`]: family of `next_addr` and `src_addr`.
    pub family: u8,
    /// A [`RouteOrigin`].
    pub origin: u8,
    pub _pad: u8,
    /// UDP port of the next hop.
    pub next_port: u16,
    pub _pad2: u16,
    /// Node ID of the next hop (informational for the datapath).
    pub next_node: u32,
    /// Route generation (controller push counter; 0 for static routes).
    pub generation: u32,
    /// The controller's other next hop for this destination, 0 if none: the precomputed
    /// backup (loop-free alternate) while on the primary, the primary while
    /// [`route_flags::ON_BACKUP`].
    pub backup_node: u32,
    /// [`route_flags`] bits.
    pub flags: u32,
    /// Next hop's address.
    pub next_addr: [u8; 16],
    /// Our own address toward the next hop: becomes the outer source address.
    pub src_addr: [u8; 16],
}

impl RouteValue {
    /// A route that delivers to the local stack.
    pub const fn local(origin: RouteOrigin) -> Self {
        Self {
            action: RouteAction::Local as u8,
            family: 0,
            origin: origin as u8,
            _pad: 0,
            next_port: 0,
            _pad2: 0,
            next_node: 0,
            generation: 0,
            backup_node: 0,
            flags: 0,
            next_addr: [0; 16],
            src_addr: [0; 16],
        }
    }
}

/// Slots of the relay's per-CPU FIB cache, which is direct-mapped by next-hop address: a
/// relay forwards to its handful of peers and attached clients.
pub const FIB_CACHE_SLOTS: u32 = 256;
const _: () = assert!(FIB_CACHE_SLOTS.is_power_of_two());
/// Default of [`RelayConfig::fib_cache_ms`]: a route or neighbour change reaches the
/// datapath within 10 ms, while the lookup (half of the relay's per-packet cost, more on
/// IPv6) runs once per next hop and CPU in that time.
pub const DEFAULT_FIB_CACHE_MS: u16 = 10;

/// Value of the `FIB_CACHE` per-CPU array: the egress `bpf_fib_lookup` resolved for one next
/// hop. Written and read by the datapath only.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FibCacheEntry {
    /// `bpf_ktime_get_coarse_ns` time of the lookup.
    pub resolved_ns: u64,
    /// The route fields the lookup was made for (see [`RouteValue`]); family 0: empty.
    pub next_addr: [u8; 16],
    pub src_addr: [u8; 16],
    pub family: u8,
    pub _pad: u8,
    /// Longest IP packet the lookup's MTU check passed; a longer one is looked up afresh.
    pub max_len: u16,
    pub ifindex: u32,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    pub _pad2: [u8; 4],
}

/// Value of `LINKS` (keyed by peer node ID): the agent's probe statistics of one link.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkValue {
    /// Mean RTT over the probe window (ns).
    pub rtt_ns: u64,
    /// Smoothed RTT variation (ns).
    pub jitter_ns: u64,
    /// CLOCK_MONOTONIC time of the last reply (ns); 0 if none yet.
    pub last_reply_ns: u64,
    pub sent: u64,
    pub received: u64,
    /// Lost fraction of the decided probes in the window, in parts per million.
    pub loss_ppm: u32,
    /// 1 if the link is up.
    pub up: u8,
    pub _pad: [u8; 3],
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are repr(C), Copy, and contain only integers and byte arrays
    // with explicit padding fields, so every bit pattern is valid.
    unsafe impl aya::Pod for RelayConfig {}
    unsafe impl aya::Pod for PeerValue {}
    unsafe impl aya::Pod for LinkAuth {}
    unsafe impl aya::Pod for Heartbeat {}
    unsafe impl aya::Pod for RouteKey {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for RouteValue {}
    unsafe impl aya::Pod for LinkValue {}
    unsafe impl aya::Pod for ClientValue {}
    unsafe impl aya::Pod for GatewaySource {}
    unsafe impl aya::Pod for GatewayBucket {}
    unsafe impl aya::Pod for crate::stats::Counter {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<RelayConfig>(), 16);
        assert_eq!(size_of::<ClientValue>(), 160);
        assert_eq!(offset_of!(ClientValue, route), 96);
        assert_eq!(size_of::<GatewaySource>(), 20);
        assert_eq!(size_of::<PeerValue>(), 96);
        assert_eq!(offset_of!(PeerValue, keys), 16);
        assert_eq!(size_of::<HopKeys>(), 40);
        assert_eq!(size_of::<LinkAuth>(), 280);
        assert_eq!(size_of::<RouteKey>(), 4);
        assert_eq!(size_of::<FlowKey>(), 8);
        assert_eq!(size_of::<RouteValue>(), 56);
        assert_eq!(size_of::<LinkValue>(), 48);
        assert_eq!(size_of::<FibCacheEntry>(), 64);
        assert_eq!(offset_of!(FibCacheEntry, next_addr), 8);
        assert_eq!(offset_of!(FibCacheEntry, ifindex), 44);
        assert_eq!(offset_of!(RouteValue, next_port), 4);
        assert_eq!(offset_of!(RouteValue, next_node), 8);
        assert_eq!(offset_of!(RouteValue, next_addr), 24);
        assert_eq!(offset_of!(RouteValue, src_addr), 40);
    }

    #[test]
    fn client_slots_follow_the_peers() {
        assert_eq!(client_auth_slot(1), Some(PEER_AUTH_SLOTS));
        assert_eq!(client_auth_slot(MAX_CLIENTS as u16), Some(MAX_AUTH_SLOTS - 1));
        assert_eq!(client_auth_slot(0), None);
        assert_eq!(client_auth_slot(MAX_CLIENTS as u16 + 1), None);
    }

    #[test]
    fn enums_roundtrip() {
        for a in [RouteAction::Forward, RouteAction::SlowPath, RouteAction::Local] {
            assert_eq!(RouteAction::from_u8(a as u8), Some(a));
        }
        for o in [RouteOrigin::Static, RouteOrigin::Cli, RouteOrigin::Controller] {
            assert_eq!(RouteOrigin::from_u8(o as u8), Some(o));
        }
        for k in PeerKind::ALL {
            assert_eq!(PeerKind::from_u8(k as u8), Some(k));
        }
        assert_eq!(PeerKind::from_u8(0), None);
        assert_eq!(RouteAction::from_u8(0), None);
        assert_eq!(RouteOrigin::from_u8(9), None);
    }
}
