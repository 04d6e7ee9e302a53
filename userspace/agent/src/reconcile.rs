//! Turning intent (the config file, controller pushes, link state, CLI commands) into
//! map entries.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
};

use anyhow::{Context, Result};
use log::{info, warn};
use wecan_common::maps::{
    RelayConfig, RouteAction, RouteOrigin, RouteValue, config_flags::PROBE_REPLY_IN_XDP,
    route_flags::ON_BACKUP,
};

use wecan_api::{PushedRoute, RoutesReply};
use wecan_datapath::{
    maps::{Maps, RouteSel, addr_bytes},
    netlink,
};
use wecan_transport::hop::ProtectMode;

use crate::config::{Config, ProbeReply};

/// A forwarding route to `next:port`. The outer source address is the one the kernel
/// would use toward `next` (netlink `RTM_GETROUTE`).
pub fn route_to(
    action: RouteAction,
    next: IpAddr,
    port: u16,
    next_node: u32,
    origin: RouteOrigin,
) -> Result<RouteValue> {
    let via = netlink::route_get(next).with_context(|| format!("next hop {next}"))?;
    let (family, next_addr) = addr_bytes(next);
    let (_, src_addr) = addr_bytes(via.src);
    Ok(RouteValue {
        action: action as u8,
        family,
        origin: origin as u8,
        _pad: 0,
        next_port: port,
        _pad2: 0,
        next_node,
        generation: 0,
        backup_node: 0,
        flags: 0,
        next_addr,
        src_addr,
    })
}

/// Makes the maps match `cfg`: peers, per-flow overrides, the route table (static routes
/// and the local route; routes from the CLI or the controller are kept), then the relay
/// config, which switches the datapath on once everything else is in place.
pub fn apply_config(maps: &mut Maps, cfg: &Config, table: &RouteTable) -> Result<()> {
    for (addr, _) in maps.peers()? {
        if !cfg.peers.iter().any(|p| p.addr == addr) {
            maps.remove_peer(addr)?;
        }
    }
    let peers: Vec<_> = cfg.peers.iter().map(|p| (p.addr, p.value(cfg.node_id))).collect();
    maps.add_peers(&peers)?;
    let mut flows = Vec::new();
    for (i, r) in cfg.routes.iter().enumerate() {
        let Some(flow) = r.flow else { continue };
        let value = match r.via.and_then(|via| cfg.peer(via)) {
            Some(peer) => route_to(
                r.action,
                peer.addr,
                cfg.peer_port(peer),
                peer.node_id,
                RouteOrigin::Static,
            )
            .with_context(|| format!("routes[{i}]"))?,
            None => RouteValue::local(RouteOrigin::Static),
        };
        flows.push(RouteSel::Flow { dst: r.dst, flow });
        maps.set_route(RouteSel::Flow { dst: r.dst, flow }, value)?;
    }
    for (sel, v) in maps.routes()? {
        if matches!(sel, RouteSel::Flow { .. })
            && v.origin == RouteOrigin::Static as u8
            && !flows.contains(&sel)
        {
            maps.remove_route(sel)?;
        }
    }

    enable_fib_lookups()?;
    let flags = match cfg.probe_reply {
        ProbeReply::Xdp => PROBE_REPLY_IN_XDP,
        ProbeReply::Agent => 0,
    };
    // The table flip reads the config, which a fresh map holds as all zero (table 0,
    // disabled); enabling comes last.
    table.apply(maps)?;
    let live = maps.config()?.table;
    maps.set_config(RelayConfig {
        node_id: cfg.node_id,
        port: cfg.port,
        enabled: 1,
        flags,
        table: live,
        _pad: 0,
        fib_cache_ms: cfg.fib_cache_ms,
        gateway_rate: cfg.access.as_ref().map_or(0, |a| a.source_rate),
        gateway_burst: cfg.access.as_ref().map_or(0, |a| a.source_burst),
    })?;
    info!(
        "node {}: {} peers, {} static routes, relay port {}",
        cfg.node_id,
        cfg.peers.len(),
        cfg.routes.len(),
        cfg.port
    );
    Ok(())
}

/// The kernel answers `bpf_fib_lookup` only for interfaces with IP forwarding on. The
/// relay looks routes up as from `lo` (see `xdp-prog/src/forward.rs`), so forwarding is
/// switched on for `lo` alone; the NICs keep their setting and the kernel forwards nothing.
pub fn enable_fib_lookups() -> Result<()> {
    for path in ["/proc/sys/net/ipv4/conf/lo/forwarding", "/proc/sys/net/ipv6/conf/lo/forwarding"] {
        std::fs::write(path, "1").with_context(|| format!("cannot enable {path}"))?;
    }
    Ok(())
}

/// The per-destination routes the agent wants in the datapath, from every source, in
/// order of precedence: operator (CLI) over controller over static config; and for
/// controller routes whose primary link is down, the precomputed backup (local fast
/// reroute, without waiting for the controller).
pub struct RouteTable {
    node_id: u32,
    /// (destination, action, next hop node) from the config file.
    statics: Vec<(u32, RouteAction, Option<u32>)>,
    /// Address, port and link protection of every peer, by node.
    peers: BTreeMap<u32, (IpAddr, u16, ProtectMode)>,
    pushed: Option<RoutesReply>,
    down: BTreeSet<u32>,
}

impl RouteTable {
    pub fn new(cfg: &Config) -> Self {
        Self {
            node_id: cfg.node_id,
            statics: cfg
                .routes
                .iter()
                .filter(|r| r.flow.is_none())
                .map(|r| (r.dst, r.action, r.via))
                .collect(),
            peers: cfg
                .peers
                .iter()
                .map(|p| (p.node_id, (p.addr, cfg.peer_port(p), p.protect.mode)))
                .collect(),
            pushed: None,
            down: BTreeSet::new(),
        }
    }

    /// Generation of the controller routes in use (0: none yet).
    pub fn generation(&self) -> u64 {
        self.pushed.as_ref().map_or(0, |p| p.generation)
    }

    pub fn set_pushed(&mut self, routes: RoutesReply) {
        self.pushed = Some(routes);
    }

    /// Takes over the controller routes in force in the datapath (an agent restarted while
    /// the controller is unreachable keeps them until the controller speaks again).
    pub fn adopt(&mut self, maps: &Maps) -> Result<()> {
        let mut routes = Vec::new();
        let mut generation = 0;
        for (sel, v) in maps.routes()? {
            let RouteSel::Dst(dst) = sel else { continue };
            if v.origin != RouteOrigin::Controller as u8 {
                continue;
            }
            generation = generation.max(u64::from(v.generation));
            let other = (v.backup_node != 0).then_some(v.backup_node);
            let (next_hop, backup) = if v.flags & ON_BACKUP != 0 {
                (v.backup_node, Some(v.next_node))
            } else {
                (v.next_node, other)
            };
            routes.push(PushedRoute { dst, next_hop, backup, cost_us: 0.0 });
        }
        if !routes.is_empty() {
            info!("took over {} controller routes (generation {generation})", routes.len());
            self.pushed = Some(RoutesReply { node: self.node_id, generation, routes });
        }
        Ok(())
    }

    /// Records a link state change; returns whether it changes anything.
    pub fn set_link(&mut self, peer: u32, up: bool) -> bool {
        if up { self.down.remove(&peer) } else { self.down.insert(peer) }
    }

    /// Writes the table into the datapath atomically (see `Maps::replace_table`).
    pub fn apply(&self, maps: &mut Maps) -> Result<()> {
        let table = self.build(maps)?;
        maps.replace_table(&table)
    }

    fn build(&self, maps: &Maps) -> Result<BTreeMap<u32, RouteValue>> {
        // One netlink query per next hop, not per route.
        let mut cache: HashMap<u32, Option<RouteValue>> = HashMap::new();
        let mut via = |node: u32, action: RouteAction, origin: RouteOrigin| {
            let template = cache.entry(node).or_insert_with(|| {
                let (addr, port, _) = *self.peers.get(&node)?;
                route_to(RouteAction::Forward, addr, port, node, origin)
                    .map_err(|e| warn!("route via node {node}: {e:#}"))
                    .ok()
            });
            let protect = self.peers.get(&node).map_or(ProtectMode::None, |p| p.2);
            template.map(|mut v| {
                v.action = action as u8;
                v.origin = origin as u8;
                // A protected link's routes go through the agent, which protects the hop.
                if protect != ProtectMode::None && action == RouteAction::Forward {
                    v.action = RouteAction::SlowPath as u8;
                    v.flags = protect.route_flags();
                }
                v
            })
        };
        let mut t = BTreeMap::new();
        for &(dst, action, next) in &self.statics {
            let v = match next {
                Some(n) => via(n, action, RouteOrigin::Static),
                None => Some(RouteValue::local(RouteOrigin::Static)),
            };
            t.extend(v.map(|v| (dst, v)));
        }
        if let Some(p) = &self.pushed {
            for r in p.routes.iter().filter(|r| r.dst != self.node_id) {
                // The primary unless its link is down (or the kernel has no route to it any
                // more), else the backup.
                let usable = |n: &u32| !self.down.contains(n);
                let candidates = [Some(r.next_hop).filter(usable), r.backup.filter(usable)];
                let picked = candidates.iter().flatten().find_map(|&hop| {
                    via(hop, RouteAction::Forward, RouteOrigin::Controller).map(|v| (hop, v))
                });
                if let Some((hop, mut v)) = picked {
                    let on_backup = hop != r.next_hop;
                    v.generation = p.generation as u32;
                    v.backup_node = if on_backup { r.next_hop } else { r.backup.unwrap_or(0) };
                    if on_backup {
                        v.flags |= ON_BACKUP;
                    }
                    t.insert(r.dst, v);
                }
            }
        }
        for (sel, v) in maps.routes()? {
            if let RouteSel::Dst(dst) = sel
                && v.origin == RouteOrigin::Cli as u8
            {
                t.insert(dst, v);
            }
        }
        t.insert(self.node_id, RouteValue::local(RouteOrigin::Static));
        Ok(t)
    }
}
