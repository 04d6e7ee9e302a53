//! Turning intent (the config file, CLI commands) into map entries.

use std::net::IpAddr;

use anyhow::{Context, Result};
use log::info;
use wecan_common::maps::{
    RelayConfig, RouteAction, RouteOrigin, RouteValue, config_flags::PROBE_REPLY_IN_XDP,
};

use crate::{
    config::{Config, ProbeReply},
    datapath::{Maps, RouteSel, addr_bytes},
    netlink,
};

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
        next_addr,
        src_addr,
    })
}

/// Makes the maps match `cfg`: peers, static routes (routes added by the CLI or the
/// controller are kept), the local route for this node, then the relay config, which
/// switches the datapath on once the tables are complete.
pub fn apply_config(maps: &mut Maps, cfg: &Config) -> Result<()> {
    for (addr, _) in maps.peers()? {
        if !cfg.peers.iter().any(|p| p.addr == addr) {
            maps.remove_peer(addr)?;
        }
    }
    for p in &cfg.peers {
        maps.add_peer(p.addr, p.node_id)?;
    }

    let mut wanted = vec![(RouteSel::Dst(cfg.node_id), RouteValue::local(RouteOrigin::Static))];
    for (i, r) in cfg.routes.iter().enumerate() {
        let sel = RouteSel::new(r.dst, r.flow);
        let value = match r.via.and_then(|via| cfg.peer(via)) {
            Some(peer) => route_to(
                r.action.into(),
                peer.addr,
                cfg.peer_port(peer),
                peer.node_id,
                RouteOrigin::Static,
            )
            .with_context(|| format!("routes[{i}]"))?,
            None => RouteValue::local(RouteOrigin::Static),
        };
        wanted.push((sel, value));
    }
    for (sel, v) in maps.routes()? {
        let is_static = v.origin == RouteOrigin::Static as u8;
        if is_static && !wanted.iter().any(|(s, _)| *s == sel) {
            maps.remove_route(sel)?;
        }
    }
    for (sel, v) in &wanted {
        maps.set_route(*sel, *v)?;
    }

    enable_fib_lookups()?;
    let flags = match cfg.probe_reply {
        ProbeReply::Xdp => PROBE_REPLY_IN_XDP,
        ProbeReply::Agent => 0,
    };
    maps.set_config(RelayConfig { node_id: cfg.node_id, port: cfg.port, enabled: 1, flags })?;
    info!(
        "node {}: {} peers, {} routes, relay port {}",
        cfg.node_id,
        cfg.peers.len(),
        wanted.len(),
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
