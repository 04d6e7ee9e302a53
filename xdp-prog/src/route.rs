//! Admission and route lookup: the sender must be a configured peer or a client attached
//! here (and a client may speak only for itself), then the destination node is looked up
//! (per-flow override first, then per destination, then the edge a client address names).

use wecan_common::{
    maps::{ClientValue, FlowKey, PeerKind, PeerValue, RelayConfig, RouteKey, RouteValue},
    stats::Stat,
    wire::{PacketKind, RelayHeader, overlay},
};

use crate::{
    clients, gateway,
    maps::{FLOW_ROUTES, PEERS_V4, PEERS_V6, ROUTES_0, ROUTES_1},
    parse::Ip,
};

/// Who sent a packet, as this relay knows it.
pub enum Sender {
    /// An allowlisted peer (relay or static client), by its outer source address.
    Peer(&'static PeerValue),
    /// A client attached through this edge, by the overlay address it claims (its tag,
    /// verified next, proves the claim).
    Client(*mut ClientValue),
    /// Anyone, probing this edge within its source's rate: a client choosing among candidate
    /// edges measures their RTT before it holds any key.
    Stranger,
}

impl Sender {
    /// The entry whose keys verify the packet; none for a stranger.
    #[inline(always)]
    pub fn peer(&self) -> Option<&'static PeerValue> {
        match *self {
            Self::Peer(p) => Some(p),
            // SAFETY: a map value pointer stays valid for the whole program run.
            Self::Client(c) => Some(unsafe { &(*c).peer }),
            Self::Stranger => None,
        }
    }
}

/// Refuses packets from senders that are neither a configured peer nor a client attached
/// here. A control packet from an unknown sender is a registration: it goes to the agent
/// within the gateway's rate (`Err(Stat::Gateway)`, a pass outcome); a probe for this relay,
/// within the same rate, is a [`Sender::Stranger`]'s.
#[inline(always)]
pub fn admit(ip: &Ip, hdr: &RelayHeader, cfg: &RelayConfig) -> Result<Sender, Stat> {
    // SAFETY: the headers were bounds-checked by the parser.
    let peer = match *ip {
        Ip::V4(h) => PEERS_V4.get_ptr(unsafe { (*h).src_addr }),
        Ip::V6(h) => PEERS_V6.get_ptr(unsafe { (*h).src_addr }),
    };
    if let Some(p) = peer {
        // SAFETY: a map value pointer stays valid for the whole program run.
        return Ok(Sender::Peer(unsafe { &*p }));
    }
    if let Some(c) = clients::claimed(hdr, cfg) {
        // Admission by claim is safe only with a tag to prove it.
        // SAFETY: as above.
        if unsafe { (*c).peer.no_auth() } {
            return Err(Stat::DropUntagged);
        }
        return Ok(Sender::Client(c));
    }
    // Only an edge's gateway talks to strangers.
    if cfg.gateway_rate == 0 {
        return Err(Stat::DropUnknownPeer);
    }
    if hdr.kind == PacketKind::Control as u8 {
        return Err(gateway::admit(ip, cfg));
    }
    if hdr.kind == PacketKind::Probe as u8 && hdr.dst_node() == cfg.node_id {
        return match gateway::admit(ip, cfg) {
            Stat::Gateway => Ok(Sender::Stranger),
            refused => Err(refused),
        };
    }
    Err(Stat::DropUnknownPeer)
}

/// Refuses a client's packet that claims another node as its overlay source.
#[inline(always)]
pub fn check_source(peer: &PeerValue, hdr: &RelayHeader) -> Result<(), Stat> {
    if peer.kind == PeerKind::Client as u8 && hdr.src_node() != peer.node_id {
        return Err(Stat::DropSpoofedSource);
    }
    Ok(())
}

/// Where a packet goes next: its route, and the entry of a client attached here if it goes
/// to one (whose keys seal it; for any other next hop they come from the peer allowlist).
pub struct Next {
    pub route: &'static RouteValue,
    pub client: Option<&'static PeerValue>,
}

/// The route for this packet's flow or destination, from the live route `table`; a client
/// address the tables do not hold goes to its edge, or, at that edge, to the client.
#[inline(always)]
pub fn lookup(hdr: &RelayHeader, cfg: &RelayConfig) -> Result<Next, Stat> {
    let dst_node = hdr.dst_node();
    let flow = FlowKey { dst_node, flow_id: hdr.flow_id() };
    let table = |dst_node| {
        let key = RouteKey { dst_node };
        if cfg.table == 0 { ROUTES_0.get_ptr(key) } else { ROUTES_1.get_ptr(key) }
    };
    let found = FLOW_ROUTES.get_ptr(flow).or_else(|| table(dst_node));
    // SAFETY (all derefs): a map value pointer stays valid for the whole program run.
    if let Some(route) = found {
        return Ok(Next { route: unsafe { &*route }, client: None });
    }
    match overlay::edge_of(dst_node) {
        Some(edge) if edge == cfg.node_id => match clients::addressed(dst_node) {
            Some(c) => {
                Ok(Next { route: unsafe { &(*c).route }, client: Some(unsafe { &(*c).peer }) })
            }
            None => Err(Stat::DropNoRoute),
        },
        Some(edge) => match table(edge) {
            Some(route) => Ok(Next { route: unsafe { &*route }, client: None }),
            None => Err(Stat::DropNoRoute),
        },
        None => Err(Stat::DropNoRoute),
    }
}
