//! Typed access to the relay's maps (the types themselves live in `wecan_common::maps`; the
//! maps are declared in `xdp-prog/src/maps.rs`). Userspace writes every map but `STATS`.

use std::{collections::BTreeMap, net::IpAddr, path::Path};

use anyhow::{Context, Result, anyhow};
use aya::{
    Ebpf,
    maps::{Array, DevMapHash, HashMap, Map, MapData, PerCpuArray},
};
use wecan_common::{
    maps::{
        ClientValue, FAMILY_V4, FAMILY_V6, FlowKey, Heartbeat, LinkAuth, LinkValue,
        PEER_AUTH_SLOTS, PeerValue, RelayConfig, RouteKey, RouteValue, names,
    },
    stats::{Counter, Stat},
    wire::overlay,
};

/// Which route map entry: per destination, or a per-flow override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteSel {
    Dst(u32),
    Flow { dst: u32, flow: u32 },
}

impl RouteSel {
    pub fn new(dst: u32, flow: Option<u32>) -> Self {
        match flow {
            Some(flow) => Self::Flow { dst, flow },
            None => Self::Dst(dst),
        }
    }
    pub fn dst(self) -> u32 {
        match self {
            Self::Dst(d) | Self::Flow { dst: d, .. } => d,
        }
    }
    pub fn flow(self) -> Option<u32> {
        match self {
            Self::Dst(_) => None,
            Self::Flow { flow, .. } => Some(flow),
        }
    }
}

/// A 16-byte address slot as the maps store it (IPv4 in the first four bytes).
pub fn addr_bytes(addr: IpAddr) -> (u8, [u8; 16]) {
    let mut out = [0u8; 16];
    match addr {
        IpAddr::V4(a) => {
            out[..4].copy_from_slice(&a.octets());
            (FAMILY_V4, out)
        }
        IpAddr::V6(a) => (FAMILY_V6, a.octets()),
    }
}

/// The address in a 16-byte slot of the given family.
pub fn addr_from(family: u8, bytes: &[u8; 16]) -> Option<IpAddr> {
    match family {
        FAMILY_V4 => Some(IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])),
        FAMILY_V6 => Some(IpAddr::from(*bytes)),
        _ => None,
    }
}

/// Typed handles on every relay map. Userspace is the only writer of all but `STATS`.
pub struct Maps {
    config: Array<MapData, RelayConfig>,
    peers_v4: HashMap<MapData, [u8; 4], PeerValue>,
    peers_v6: HashMap<MapData, [u8; 16], PeerValue>,
    /// The double-buffered route tables; `config.table` selects the live one.
    routes: [HashMap<MapData, RouteKey, RouteValue>; 2],
    flow_routes: HashMap<MapData, FlowKey, RouteValue>,
    tx_ports: DevMapHash<MapData>,
    stats: PerCpuArray<MapData, Counter>,
    links: HashMap<MapData, u32, LinkValue>,
    link_auth: Array<MapData, LinkAuth>,
    heartbeat: Array<MapData, Heartbeat>,
    clients: HashMap<MapData, u32, ClientValue>,
}

fn typed<T>(name: &str, map: Map) -> Result<T>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    T::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
}

impl Maps {
    /// Opens the maps pinned in `pin_dir` (for the CLI and for taking over).
    pub fn open_pinned(pin_dir: &Path) -> Result<Self> {
        let open = |name: &str| -> Result<Map> {
            let path = pin_dir.join(name);
            let data = MapData::from_pin(&path).with_context(|| {
                format!(
                    "cannot open pinned map {}; is a relay loaded with this pin directory (`wecan-agent run|load`, or --pin-dir)?",
                    path.display()
                )
            })?;
            Map::from_map_data(data).with_context(|| format!("map {name}"))
        };
        Self::from_fn(open)
    }

    /// Takes the maps out of a freshly loaded object.
    pub(crate) fn from_ebpf(ebpf: &mut Ebpf) -> Result<Self> {
        Self::from_fn(|name| {
            ebpf.take_map(name).ok_or_else(|| anyhow!("the relay object has no map {name}"))
        })
    }

    fn from_fn(mut get: impl FnMut(&str) -> Result<Map>) -> Result<Self> {
        Ok(Self {
            config: typed(names::CONFIG, get(names::CONFIG)?)?,
            peers_v4: typed(names::PEERS_V4, get(names::PEERS_V4)?)?,
            peers_v6: typed(names::PEERS_V6, get(names::PEERS_V6)?)?,
            routes: [
                typed(names::ROUTES[0], get(names::ROUTES[0])?)?,
                typed(names::ROUTES[1], get(names::ROUTES[1])?)?,
            ],
            flow_routes: typed(names::FLOW_ROUTES, get(names::FLOW_ROUTES)?)?,
            tx_ports: typed(names::TX_PORTS, get(names::TX_PORTS)?)?,
            stats: typed(names::STATS, get(names::STATS)?)?,
            links: typed(names::LINKS, get(names::LINKS)?)?,
            link_auth: typed(names::LINK_AUTH, get(names::LINK_AUTH)?)?,
            heartbeat: typed(names::HEARTBEAT, get(names::HEARTBEAT)?)?,
            clients: typed(names::CLIENTS, get(names::CLIENTS)?)?,
        })
    }

    pub fn config(&self) -> Result<RelayConfig> {
        Ok(self.config.get(&0, 0)?)
    }

    pub fn set_config(&mut self, cfg: RelayConfig) -> Result<()> {
        Ok(self.config.set(0, cfg, 0)?)
    }

    /// Extends the agent's lease to `alive_until_ns` (`CLOCK_MONOTONIC`); see [`Heartbeat`].
    pub fn beat(&mut self, alive_until_ns: u64) -> Result<()> {
        Ok(self.heartbeat.set(0, Heartbeat { alive_until_ns }, 0)?)
    }

    /// The agent's lease as last written.
    pub fn heartbeat(&self) -> Result<Heartbeat> {
        Ok(self.heartbeat.get(&0, 0)?)
    }

    /// Adds peer `addr`, or replaces its entry (node, kind, keys) in one atomic update. A
    /// new peer gets a free `LINK_AUTH` slot, reset, its send counter at the wall clock; a
    /// replaced one keeps its slot, so its counter and replay windows carry on.
    pub fn add_peer(&mut self, addr: IpAddr, value: PeerValue) -> Result<()> {
        self.add_peers(&[(addr, value)])
    }

    /// [`Maps::add_peer`] for many peers, reading the slots in use once.
    pub fn add_peers(&mut self, peers: &[(IpAddr, PeerValue)]) -> Result<()> {
        let mut used: std::collections::BTreeSet<u32> =
            self.peers()?.iter().map(|(_, v)| v.auth_slot).collect();
        for &(addr, mut value) in peers {
            value.auth_slot = match self.peer(addr) {
                Some(old) => old.auth_slot,
                None => {
                    let slot =
                        (0..PEER_AUTH_SLOTS).find(|s| !used.contains(s)).ok_or_else(|| {
                            anyhow!("all {PEER_AUTH_SLOTS} link authentication slots are in use")
                        })?;
                    used.insert(slot);
                    self.link_auth.set(slot, LinkAuth::new(wall_ns()), 0)?;
                    slot
                }
            };
            match addr {
                IpAddr::V4(a) => self.peers_v4.insert(a.octets(), value, 0)?,
                IpAddr::V6(a) => self.peers_v6.insert(a.octets(), value, 0)?,
            }
        }
        Ok(())
    }

    pub fn remove_peer(&mut self, addr: IpAddr) -> Result<()> {
        let r = match addr {
            IpAddr::V4(a) => self.peers_v4.remove(&a.octets()),
            IpAddr::V6(a) => self.peers_v6.remove(&a.octets()),
        };
        r.with_context(|| format!("{addr} is not a peer"))
    }

    /// The allowlist entry of sender `addr`, if it is one.
    pub fn peer(&self, addr: IpAddr) -> Option<PeerValue> {
        match addr {
            IpAddr::V4(a) => self.peers_v4.get(&a.octets(), 0).ok(),
            IpAddr::V6(a) => self.peers_v6.get(&a.octets(), 0).ok(),
        }
    }

    /// All peers, sorted by node ID then address.
    pub fn peers(&self) -> Result<Vec<(IpAddr, PeerValue)>> {
        let mut out = Vec::new();
        for kv in self.peers_v4.iter() {
            let (k, v) = kv?;
            out.push((IpAddr::from(k), v));
        }
        for kv in self.peers_v6.iter() {
            let (k, v) = kv?;
            out.push((IpAddr::from(k), v));
        }
        out.sort_by_key(|(a, v)| (v.node_id, *a));
        Ok(out)
    }

    /// Attaches a client (replacing an entry at its address): its link state is reset, the
    /// send counter at the wall clock, before the datapath can see the entry.
    pub fn add_client(&mut self, value: ClientValue) -> Result<()> {
        let addr = value.peer.node_id;
        self.link_auth
            .set(value.peer.auth_slot, LinkAuth::new(wall_ns()), 0)
            .with_context(|| format!("link state of client {addr:#x}"))?;
        self.clients.insert(addr, value, 0).with_context(|| format!("client {addr:#x}"))
    }

    pub fn remove_client(&mut self, addr: u32) -> Result<()> {
        self.clients.remove(&addr).with_context(|| format!("client {addr:#x} is not attached"))
    }

    /// The entry of client `addr` attached here, if it is.
    pub fn client(&self, addr: u32) -> Option<ClientValue> {
        self.clients.get(&addr, 0).ok()
    }

    /// Every client attached here, by address.
    pub fn clients(&self) -> Result<Vec<ClientValue>> {
        let mut out =
            self.clients.iter().map(|kv| kv.map(|(_, v)| v)).collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|c| c.peer.node_id);
        Ok(out)
    }

    /// The live route table (0 or 1).
    fn live(&self) -> usize {
        self.config().map_or(0, |c| usize::from(c.table & 1))
    }

    /// Adds or replaces one entry in place: in both route tables (or the flow map), each
    /// write atomic for that entry. For operator changes; whole pushes use `replace_table`.
    pub fn set_route(&mut self, sel: RouteSel, value: RouteValue) -> Result<()> {
        match sel {
            RouteSel::Dst(dst) => {
                for t in &mut self.routes {
                    t.insert(RouteKey { dst_node: dst }, value, 0)?;
                }
            }
            RouteSel::Flow { dst, flow } => {
                self.flow_routes.insert(FlowKey { dst_node: dst, flow_id: flow }, value, 0)?
            }
        }
        Ok(())
    }

    pub fn remove_route(&mut self, sel: RouteSel) -> Result<()> {
        let missing = || format!("no route for {}", describe(sel));
        match sel {
            RouteSel::Dst(dst) => {
                let key = RouteKey { dst_node: dst };
                let live = self.live();
                self.routes[live].remove(&key).with_context(missing)?;
                let _ = self.routes[1 - live].remove(&key);
                Ok(())
            }
            RouteSel::Flow { dst, flow } => self
                .flow_routes
                .remove(&FlowKey { dst_node: dst, flow_id: flow })
                .with_context(missing),
        }
    }

    /// Makes the per-destination routes exactly `table`, atomically: the inactive table is
    /// rewritten, then the config flips to it in one map update.
    pub fn replace_table(&mut self, table: &BTreeMap<u32, RouteValue>) -> Result<()> {
        let mut cfg = self.config()?;
        let next = 1 - usize::from(cfg.table & 1);
        let t = &mut self.routes[next];
        for (&dst, v) in table {
            t.insert(RouteKey { dst_node: dst }, *v, 0)?;
        }
        let stale: Vec<RouteKey> =
            t.keys().filter_map(Result::ok).filter(|k| !table.contains_key(&k.dst_node)).collect();
        for k in stale {
            t.remove(&k)?;
        }
        cfg.table = next as u8;
        self.set_config(cfg)
    }

    /// The exact entry for `sel` in the live table (or the flow map), if any.
    pub fn route(&self, sel: RouteSel) -> Result<Option<RouteValue>> {
        let r = match sel {
            RouteSel::Dst(dst) => self.routes[self.live()].get(&RouteKey { dst_node: dst }, 0),
            RouteSel::Flow { dst, flow } => {
                self.flow_routes.get(&FlowKey { dst_node: dst, flow_id: flow }, 0)
            }
        };
        match r {
            Ok(v) => Ok(Some(v)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The route the datapath would use for (dst, flow): flow override, then destination,
    /// then for a client address the client attached here or the route to its edge.
    pub fn lookup(&self, dst: u32, flow: u32) -> Result<Option<(RouteSel, RouteValue)>> {
        for sel in [RouteSel::Flow { dst, flow }, RouteSel::Dst(dst)] {
            if let Some(v) = self.route(sel)? {
                return Ok(Some((sel, v)));
            }
        }
        let Some(edge) = overlay::edge_of(dst) else { return Ok(None) };
        if edge == self.config()?.node_id {
            return Ok(self.client(dst).map(|c| (RouteSel::Dst(dst), c.route)));
        }
        Ok(self.route(RouteSel::Dst(edge))?.map(|v| (RouteSel::Dst(edge), v)))
    }

    /// All live routes, sorted by destination, per-destination entry first.
    pub fn routes(&self) -> Result<Vec<(RouteSel, RouteValue)>> {
        let mut out = Vec::new();
        for kv in self.routes[self.live()].iter() {
            let (k, v) = kv?;
            out.push((RouteSel::Dst(k.dst_node), v));
        }
        for kv in self.flow_routes.iter() {
            let (k, v) = kv?;
            out.push((RouteSel::Flow { dst: k.dst_node, flow: k.flow_id }, v));
        }
        out.sort_by_key(|(s, _)| (s.dst(), s.flow()));
        Ok(out)
    }

    /// Allows XDP_REDIRECT to this interface.
    pub fn add_tx_port(&mut self, ifindex: u32) -> Result<()> {
        self.tx_ports
            .insert(ifindex, ifindex, None, 0)
            .with_context(|| format!("devmap insert of ifindex {ifindex}"))
    }

    pub fn remove_tx_port(&mut self, ifindex: u32) -> Result<()> {
        Ok(self.tx_ports.remove(ifindex)?)
    }

    /// Publishes the probe statistics of the link to `peer`.
    pub fn set_link(&mut self, peer: u32, value: LinkValue) -> Result<()> {
        Ok(self.links.insert(peer, value, 0)?)
    }

    /// Probe statistics of every link, by peer node.
    pub fn links(&self) -> Result<Vec<(u32, LinkValue)>> {
        let mut out = self.links.iter().collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|(peer, _)| *peer);
        Ok(out)
    }

    /// Counters summed over CPUs, in `Stat` order.
    pub fn stats(&self) -> Result<Vec<(Stat, Counter)>> {
        Stat::ALL
            .iter()
            .map(|&s| {
                let per_cpu = self.stats.get(&(s as u32), 0)?;
                let sum = per_cpu.iter().fold(Counter::default(), |acc, c| Counter {
                    packets: acc.packets + c.packets,
                    bytes: acc.bytes + c.bytes,
                });
                Ok((s, sum))
            })
            .collect()
    }
}

fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// "dst 3" or "dst 3 flow 7", for messages.
pub fn describe(sel: RouteSel) -> String {
    match sel {
        RouteSel::Dst(d) => format!("dst {d}"),
        RouteSel::Flow { dst, flow } => format!("dst {dst} flow {flow}"),
    }
}
