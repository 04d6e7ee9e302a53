//! A relay program loaded in its own network namespace, where the FIB has real routes and
//! static neighbours, so `bpf_fib_lookup` resolves egress exactly as on a relay; packets
//! are run through it with BPF_PROG_TEST_RUN. Used by the golden-packet tests and the
//! per-packet cost benchmark.
//!
//! ```text
//!   in0  10.1.0.1/24 fd01::1/64   neighbours .2 (peer), .3 (next hop on the same link);
//!                                 .4 is a client peer (node 4); .5 (next hop)
//!   out0 10.2.0.1/24 fd02::1/64   neighbours .2 (next hop on another link), .6 (next hop
//!                                 in the FIB cache slot of 10.1.0.5)
//! ```
//!
//! Every peer's link is keyed (key ID 1, a secret of its own); next hops are peers (node 9).
//! The fixture seals what it sends as the peers would, and checks what the relay sends on
//! with the next hop's key.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::atomic::{AtomicU32, Ordering},
};

use aya::programs::{TestRun, TestRunOptions};
use etherparse::PacketBuilder;
use wecan_agent::reconcile;
use wecan_common::{
    auth::{self, TAGGED_LEN},
    maps::{
        ClientValue, DEFAULT_FIB_CACHE_MS, PeerKind, PeerValue, RelayConfig, RouteAction,
        RouteOrigin, RouteValue, client_auth_slot, config_flags::PROBE_REPLY_IN_XDP,
    },
    stats::Stat,
    wire::{HEADER_LEN, PacketKind, RelayHeader, overlay},
};
use wecan_datapath::{maps::RouteSel, relay::Relay};
use wecan_transport::auth::{Sealer, Secret, link_keys};

use crate::net::{Netns, veth};

pub const PORT: u16 = 7300;
pub const ME: u32 = 1;
pub const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 1, 2];
pub const SAME_LINK_MAC: [u8; 6] = [2, 0, 0, 0, 1, 3];
pub const OTHER_LINK_MAC: [u8; 6] = [2, 0, 0, 0, 2, 2];

// Destination nodes and what their routes do.
pub const TX_V4: u32 = 10; // via 10.1.0.3: same interface → XDP_TX
pub const REDIRECT_V4: u32 = 20; // via 10.2.0.2: other interface → XDP_REDIRECT
pub const TX_V6: u32 = 16;
pub const REDIRECT_V6: u32 = 26;
pub const SLOW: u32 = 30;
pub const NO_NEIGH: u32 = 40; // via 10.1.0.9, no neighbour entry
pub const UNREACHABLE: u32 = 50; // via 10.9.0.5, an unreachable route
pub const FAMILY_MISMATCH: u32 = 60; // IPv6 next hop for an IPv4 packet
pub const UNKNOWN: u32 = 77;
pub const CLIENT: u32 = 4; // the client peer 10.1.0.4
pub const OVERRIDE_FLOW: u32 = 99; // (REDIRECT_V4, 99) is overridden to go via 10.1.0.3
pub const NO_NEXT_KEY: u32 = 70; // via 10.2.0.7, not a peer
pub const SLOT_TX: u32 = 11; // via 10.1.0.5: XDP_TX
pub const SLOT_REDIRECT: u32 = 21; // via 10.2.0.6, sharing 10.1.0.5's FIB cache slot
/// Node ID of every next hop.
pub const NEXT: u32 = 9;
/// Where the relay header starts in an untagged IPv4 / IPv6 frame.
pub const RELAY_V4: usize = 14 + 20 + 8;
pub const RELAY_V6: usize = 14 + 40 + 8;

/// Peers by address, with their node and kind; next hops (node [`NEXT`]) last.
const PEERS: [(&str, u32, PeerKind); 11] = [
    ("10.1.0.2", 2, PeerKind::Relay),
    ("fd01::2", 2, PeerKind::Relay),
    ("10.1.0.4", CLIENT, PeerKind::Client),
    ("10.1.0.3", NEXT, PeerKind::Relay),
    ("10.2.0.2", NEXT, PeerKind::Relay),
    ("fd01::3", NEXT, PeerKind::Relay),
    ("fd02::2", NEXT, PeerKind::Relay),
    ("10.1.0.9", NEXT, PeerKind::Relay),
    ("10.9.0.5", NEXT, PeerKind::Relay),
    ("10.1.0.5", NEXT, PeerKind::Relay),
    ("10.2.0.6", NEXT, PeerKind::Relay),
];

/// The secret of the link to the client at overlay address `addr` (made up per address).
pub fn client_secret(addr: u32) -> Secret {
    let mut b = [0x5c; 32];
    b[..4].copy_from_slice(&addr.to_be_bytes());
    Secret::new(b)
}

/// The secret of the link to peer `addr` under key `id` (made up per address and ID).
pub fn secret(addr: &str, id: u8) -> Secret {
    let mut b = [id; 32];
    for (i, c) in addr.bytes().enumerate() {
        b[i % 32] ^= c;
    }
    Secret::new(b)
}

pub struct Fixture {
    pub relay: Relay,
    pub in_if: u32,
    pub in_mac: [u8; 6],
    pub out_mac: [u8; 6],
    pin_dir: std::path::PathBuf,
    ns: Netns,
    /// Each peer's sending end toward this relay.
    sealers: HashMap<IpAddr, Sealer>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Ok(files) = std::fs::read_dir(&self.pin_dir) {
            for f in files.flatten() {
                let _ = std::fs::remove_file(f.path());
            }
        }
        let _ = std::fs::remove_dir(&self.pin_dir);
    }
}

/// The node of the peer at `addr` (2 for an address that is not a peer).
fn node_of(addr: &str) -> u32 {
    PEERS.iter().find(|p| p.0 == addr).map_or(2, |p| p.1)
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

impl Fixture {
    /// Builds the namespace and loads the relay; the calling thread enters the namespace.
    pub fn new() -> anyhow::Result<Self> {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let tag = format!("dp{}-{n}", std::process::id() % 100_000);
        let ns = Netns::new(&tag)?;
        veth(&ns, "in0", &ns, "in0p")?;
        veth(&ns, "out0", &ns, "out0p")?;
        for cmd in [
            "addr add 10.1.0.1/24 dev in0",
            "addr add fd01::1/64 dev in0 nodad",
            "addr add 10.2.0.1/24 dev out0",
            "addr add fd02::1/64 dev out0 nodad",
            "neigh add 10.1.0.2 lladdr 02:00:00:00:01:02 dev in0 nud permanent",
            "neigh add 10.1.0.3 lladdr 02:00:00:00:01:03 dev in0 nud permanent",
            "neigh add fd01::3 lladdr 02:00:00:00:01:03 dev in0 nud permanent",
            "neigh add 10.2.0.2 lladdr 02:00:00:00:02:02 dev out0 nud permanent",
            "neigh add fd02::2 lladdr 02:00:00:00:02:02 dev out0 nud permanent",
            "neigh add 10.1.0.5 lladdr 02:00:00:00:01:05 dev in0 nud permanent",
            "neigh add 10.2.0.6 lladdr 02:00:00:00:02:06 dev out0 nud permanent",
            "route add unreachable 10.9.0.0/24",
        ] {
            ns.ip(&cmd.split(' ').collect::<Vec<_>>())?;
        }
        ns.enter()?;
        let pin_dir = std::path::PathBuf::from(format!("/sys/fs/bpf/wecan-{tag}"));
        let mut relay = Relay::load(&pin_dir)?;
        let m = &mut relay.maps;
        for (addr, node, kind) in PEERS {
            let mut v = PeerValue::new(node, kind);
            v.keys[0] = link_keys(&secret(addr, 1), 1, ME, node);
            m.add_peer(ip(addr), v)?;
        }
        let fwd =
            |a: RouteAction, via: &str| reconcile::route_to(a, ip(via), PORT, 9, RouteOrigin::Cli);
        let routes = [
            (RouteSel::Dst(ME), RouteValue::local(RouteOrigin::Static)),
            (RouteSel::Dst(TX_V4), fwd(RouteAction::Forward, "10.1.0.3")?),
            (RouteSel::Dst(REDIRECT_V4), fwd(RouteAction::Forward, "10.2.0.2")?),
            (
                RouteSel::Flow { dst: REDIRECT_V4, flow: OVERRIDE_FLOW },
                fwd(RouteAction::Forward, "10.1.0.3")?,
            ),
            (RouteSel::Dst(TX_V6), fwd(RouteAction::Forward, "fd01::3")?),
            (RouteSel::Dst(REDIRECT_V6), fwd(RouteAction::Forward, "fd02::2")?),
            (RouteSel::Dst(SLOW), fwd(RouteAction::SlowPath, "10.2.0.2")?),
            (RouteSel::Dst(NO_NEIGH), fwd(RouteAction::Forward, "10.1.0.9")?),
            (RouteSel::Dst(FAMILY_MISMATCH), fwd(RouteAction::Forward, "fd02::2")?),
            (RouteSel::Dst(SLOT_TX), fwd(RouteAction::Forward, "10.1.0.5")?),
            (RouteSel::Dst(SLOT_REDIRECT), fwd(RouteAction::Forward, "10.2.0.6")?),
        ];
        for (sel, v) in routes {
            m.set_route(sel, v)?;
        }
        // The kernel will not resolve a source toward an unreachable route: write it by hand.
        let mut unreachable = fwd(RouteAction::Forward, "10.2.0.2")?;
        unreachable.next_addr[..4].copy_from_slice(&[10, 9, 0, 5]);
        m.set_route(RouteSel::Dst(UNREACHABLE), unreachable)?;
        m.set_route(RouteSel::Dst(NO_NEXT_KEY), fwd(RouteAction::Forward, "10.2.0.7")?)?;
        let out_if = ns.ifindex("out0")?;
        m.add_tx_port(out_if)?;
        reconcile::enable_fib_lookups()?;
        m.set_config(RelayConfig {
            node_id: ME,
            port: PORT,
            enabled: 1,
            flags: PROBE_REPLY_IN_XDP,
            table: 0,
            _pad: 0,
            fib_cache_ms: DEFAULT_FIB_CACHE_MS,
            gateway_rate: 0,
            gateway_burst: 0,
        })?;
        // The fixture stands in for a live agent ([`Self::set_agent_alive`] to change it).
        m.beat(u64::MAX)?;
        Ok(Self {
            in_if: ns.ifindex("in0")?,
            in_mac: ns.mac("in0")?,
            out_mac: ns.mac("out0")?,
            relay,
            pin_dir,
            ns,
            sealers: HashMap::new(),
        })
    }

    /// The entry peer `addr` holds for this relay (its end of the link).
    pub fn view_of_me(addr: &str, node: u32, id: u8) -> PeerValue {
        let mut v = PeerValue::new(ME, PeerKind::Relay);
        v.keys[0] = link_keys(&secret(addr, id), id, node, ME);
        v
    }

    /// Seals the relay packet `relay` as peer `from` sends it with key 1 (a fresh sequence
    /// number in its agent lane each time).
    pub fn seal(&mut self, from: &str, relay: &mut [u8]) {
        self.seal_with(from, 1, relay);
    }

    /// As [`Self::seal`], with key `id` of the link.
    pub fn seal_with(&mut self, from: &str, id: u8, relay: &mut [u8]) {
        let node = node_of(from);
        let sealer = self.sealers.entry(ip(from)).or_insert_with(|| Sealer::new(1 << 40));
        sealer.seal(relay, &Self::view_of_me(from, node, id)).unwrap();
    }

    /// `expected` (a relay packet as the relay must send it on, but unsealed) with the seal
    /// of `out[at..]`, after checking that seal is key 1 of the link to peer `next` and its
    /// tag verifies with that link's key.
    pub fn sealed_as(out: &[u8], at: usize, next: &str, expected: Vec<u8>) -> Vec<u8> {
        Self::sealed_with(out, at, next, 1, expected)
    }

    /// As [`Self::sealed_as`], for key `id`.
    pub fn sealed_with(
        out: &[u8],
        at: usize,
        next: &str,
        id: u8,
        mut expected: Vec<u8>,
    ) -> Vec<u8> {
        let head: &[u8; HEADER_LEN] = out[at..at + HEADER_LEN].try_into().unwrap();
        assert_eq!(head[6], id, "sealed with the next hop's key {id}");
        // What the peer at `next` verifies what this relay sends with.
        let rx = link_keys(&secret(next, id), id, node_of(next), ME).rx;
        let tagged: &[u8; TAGGED_LEN] = head[..TAGGED_LEN].try_into().unwrap();
        assert_eq!(auth::tag(&rx, tagged).to_le_bytes(), head[TAGGED_LEN..], "tag for {next}");
        expected[6] = head[6];
        expected[24..HEADER_LEN].copy_from_slice(&head[24..]);
        expected
    }

    /// A sealed relay packet from the peer 10.1.0.2 to us.
    pub fn from_peer(&mut self, dst: u32, flow: u32, hop_limit: u8) -> Vec<u8> {
        let mut p = relay_payload(dst, flow, hop_limit);
        self.seal("10.1.0.2", &mut p);
        v4(PEER_MAC, self.in_mac, [10, 1, 0, 2], [10, 1, 0, 1], 20, (40000, PORT), &p)
    }

    /// Runs one packet through the program as if received on in0; returns the verdict and
    /// the packet as the program left it.
    pub fn run(&mut self, pkt: &[u8]) -> (u32, Vec<u8>) {
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(pkt.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&self.in_if.to_ne_bytes());
        let mut out = vec![0u8; pkt.len() + 256];
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(pkt);
        opts.data_out = Some(&mut out);
        opts.ctx_in = Some(&ctx);
        let res = self.relay.program().unwrap().test_run(opts).unwrap();
        out.truncate(res.data_size_out as usize);
        (res.return_value, out)
    }

    /// Runs `ip ARGS…` in the fixture's namespace (to change routes or neighbours).
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<()> {
        self.ns.ip(args).map(drop)
    }

    /// Sets how long the program reuses FIB lookups (`RelayConfig::fib_cache_ms`).
    pub fn set_fib_cache_ms(&mut self, ms: u16) -> anyhow::Result<()> {
        let cfg = self.relay.maps.config()?;
        self.relay.maps.set_config(RelayConfig { fib_cache_ms: ms, ..cfg })
    }

    /// Attaches client slot `slot` of this edge as the gateway would, keyed with
    /// [`client_secret`]; it registered from `from:port`. Returns its overlay address.
    pub fn attach_client(&mut self, slot: u16, from: &str, port: u16) -> anyhow::Result<u32> {
        let addr = overlay::client(ME, slot).expect("a client address of this edge");
        let mut peer = PeerValue::new(addr, PeerKind::Client);
        peer.keys[0] = link_keys(&client_secret(addr), 1, ME, addr);
        peer.auth_slot = client_auth_slot(slot).expect("a client slot");
        let route =
            reconcile::route_to(RouteAction::Forward, ip(from), port, addr, RouteOrigin::Static)?;
        self.relay.maps.add_client(ClientValue { peer, route, last_seen_ns: 0 })?;
        Ok(addr)
    }

    /// Seals `relay` as client `addr` sends it (its own sequence of numbers).
    pub fn seal_as_client(&mut self, addr: u32, relay: &mut [u8]) {
        let mut me = PeerValue::new(ME, PeerKind::Relay);
        me.keys[0] = link_keys(&client_secret(addr), 1, addr, ME);
        let key = IpAddr::from(addr.to_be_bytes());
        self.sealers.entry(key).or_insert_with(|| Sealer::new(1 << 40)).seal(relay, &me).unwrap();
    }

    /// Makes this relay an edge whose gateway takes `rate` registrations per second from
    /// each unknown source, `burst` more at once.
    pub fn set_gateway(&mut self, rate: u16, burst: u16) -> anyhow::Result<()> {
        let cfg = self.relay.maps.config()?;
        self.relay.maps.set_config(RelayConfig { gateway_rate: rate, gateway_burst: burst, ..cfg })
    }

    /// Gives the relay a live agent (a lease without end) or a dead one (lapsed).
    pub fn set_agent_alive(&mut self, alive: bool) -> anyhow::Result<()> {
        self.relay.maps.beat(if alive { u64::MAX } else { 1 })
    }

    pub fn counter(&self, s: Stat) -> u64 {
        self.relay.maps.stats().unwrap()[s as usize].1.packets
    }

    /// Runs `pkt`, asserts the verdict and that exactly the counter of `outcome` moved.
    pub fn expect(&mut self, pkt: &[u8], verdict: u32, outcome: Stat) -> Vec<u8> {
        let before: Vec<u64> = Stat::ALL.iter().map(|&s| self.counter(s)).collect();
        let (v, out) = self.run(pkt);
        assert_eq!(v, verdict, "verdict for outcome {}", outcome.name());
        for (i, &s) in Stat::ALL.iter().enumerate() {
            let moved = self.counter(s) - before[i];
            assert_eq!(
                moved,
                u64::from(s == outcome),
                "counter {} (expected {} to move)",
                s.name(),
                outcome.name()
            );
        }
        out
    }
}

pub fn relay_payload(dst: u32, flow: u32, hop_limit: u8) -> Vec<u8> {
    let mut h = RelayHeader::new(PacketKind::Data, 2, dst, flow, 42);
    h.hop_limit = hop_limit;
    let mut p = h.to_bytes().to_vec();
    p.extend_from_slice(b"relayed payload, 32 bytes long..");
    p
}

/// An Ethernet/IPv4/UDP frame built (with checksums) by etherparse.
pub fn v4(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    ttl: u8,
    ports: (u16, u16),
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(smac, dmac)
        .ipv4(src, dst, ttl)
        .udp(ports.0, ports.1)
        .write(&mut out, payload)
        .unwrap();
    out
}

pub fn v6(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: &str,
    dst: &str,
    hops: u8,
    ports: (u16, u16),
    payload: &[u8],
) -> Vec<u8> {
    let (s, d): (std::net::Ipv6Addr, std::net::Ipv6Addr) =
        (src.parse().unwrap(), dst.parse().unwrap());
    let mut out = Vec::new();
    PacketBuilder::ethernet2(smac, dmac)
        .ipv6(s.octets(), d.octets(), hops)
        .udp(ports.0, ports.1)
        .write(&mut out, payload)
        .unwrap();
    out
}

/// What the relay must emit for a relay packet with `payload` forwarded to 10.1.0.3, on
/// the link it came in on, given its output `out` (whose seal is checked and taken).
pub fn v4_to_same_link(f: &Fixture, out: &[u8], payload: Vec<u8>) -> Vec<u8> {
    let payload = Fixture::sealed_as(out, RELAY_V4, "10.1.0.3", payload);
    v4(f.in_mac, SAME_LINK_MAC, [10, 1, 0, 1], [10, 1, 0, 3], 64, (PORT, PORT), &payload)
}

/// What the relay must emit for a relay packet with `payload` forwarded to 10.2.0.2, on
/// the other link, given its output `out`.
pub fn v4_to_other_link(f: &Fixture, out: &[u8], payload: Vec<u8>) -> Vec<u8> {
    let payload = Fixture::sealed_as(out, RELAY_V4, "10.2.0.2", payload);
    v4(f.out_mac, OTHER_LINK_MAC, [10, 2, 0, 1], [10, 2, 0, 2], 64, (PORT, PORT), &payload)
}
