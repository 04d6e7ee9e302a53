//! Admission and route lookup: the sender must be a configured peer (and a client may speak
//! only for itself), then the destination node is looked up (per-flow override first, then
//! per destination).

use wecan_common::{
    maps::{FlowKey, PeerKind, PeerValue, RouteKey, RouteValue},
    stats::Stat,
    wire::RelayHeader,
};

use crate::{
    maps::{FLOW_ROUTES, PEERS_V4, PEERS_V6, ROUTES_0, ROUTES_1},
    parse::Ip,
};

/// Refuses packets whose outer source address is not a configured peer; returns the peer.
#[inline(always)]
pub fn admit(ip: &Ip) -> Result<&'static PeerValue, Stat> {
    // SAFETY: the headers were bounds-checked by the parser.
    let peer = match *ip {
        Ip::V4(h) => PEERS_V4.get_ptr(unsafe { (*h).src_addr }),
        Ip::V6(h) => PEERS_V6.get_ptr(unsafe { (*h).src_addr }),
    };
    match peer {
        // SAFETY: a map value pointer stays valid for the whole program run.
        Some(p) => Ok(unsafe { &*p }),
        None => Err(Stat::DropUnknownPeer),
    }
}

/// Refuses a client's packet that claims another node as its overlay source.
#[inline(always)]
pub fn check_source(peer: &PeerValue, hdr: &RelayHeader) -> Result<(), Stat> {
    if peer.kind == PeerKind::Client as u8 && hdr.src_node() != peer.node_id {
        return Err(Stat::DropSpoofedSource);
    }
    Ok(())
}

/// The route for this packet's flow or destination, from the live route `table`.
#[inline(always)]
pub fn lookup(hdr: &RelayHeader, table: u8) -> Result<&'static RouteValue, Stat> {
    let dst_node = hdr.dst_node();
    let flow = FlowKey { dst_node, flow_id: hdr.flow_id() };
    let key = RouteKey { dst_node };
    let found = FLOW_ROUTES
        .get_ptr(flow)
        .or_else(|| if table == 0 { ROUTES_0.get_ptr(key) } else { ROUTES_1.get_ptr(key) });
    match found {
        // SAFETY: a map value pointer stays valid for the whole program run.
        Some(route) => Ok(unsafe { &*route }),
        None => Err(Stat::DropNoRoute),
    }
}
