//! Clients attached through this edge's access gateway (`CLIENTS`): admitted by the overlay
//! address they claim, which their tag then proves, and followed to wherever their last
//! authenticated packet came from.

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use wecan_common::{
    maps::{CLIENT_SEEN_GRANULARITY_NS, ClientValue, FAMILY_V4, FAMILY_V6, RelayConfig},
    wire::{RelayHeader, overlay},
};

use crate::{
    forward::words,
    maps::CLIENTS,
    parse::{Ip, Packet},
};

/// The entry of the client of this edge that `hdr` claims to come from, if there is one.
#[inline(always)]
pub fn claimed(hdr: &RelayHeader, cfg: &RelayConfig) -> Option<*mut ClientValue> {
    let src = hdr.src_node();
    if overlay::edge_of(src) != Some(cfg.node_id) {
        return None;
    }
    CLIENTS.get_ptr_mut(src)
}

/// The entry of a client of this edge that `dst` addresses, if it is attached.
#[inline(always)]
pub fn addressed(dst: u32) -> Option<*mut ClientValue> {
    CLIENTS.get_ptr_mut(dst)
}

/// Records an authenticated packet from client `c`: when it was seen, and the address and
/// port it came from, which replies go to from now on (NAT rebinding, roaming).
///
/// The route fields are written in place while other CPUs may be forwarding to the client;
/// a packet sent in that instant may leave with a mix of old and new address, which happens
/// only while the client moves, when its old address is stale anyway.
#[inline(always)]
pub fn follow(c: *mut ClientValue, pkt: &Packet) {
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    // SAFETY (all derefs): the parser checked the headers; `c` is a live map value.
    let family = match pkt.ip {
        Ip::V4(h) => unsafe {
            src[..4].copy_from_slice(&(*h).src_addr);
            dst[..4].copy_from_slice(&(*h).dst_addr);
            FAMILY_V4
        },
        Ip::V6(h) => unsafe {
            src = (*h).src_addr;
            dst = (*h).dst_addr;
            FAMILY_V6
        },
    };
    unsafe {
        let port = (*pkt.udp).src_port();
        if now.wrapping_sub((*c).last_seen_ns) >= CLIENT_SEEN_GRANULARITY_NS {
            (*c).last_seen_ns = now;
        }
        let r = &mut (*c).route;
        if r.family != family
            || r.next_port != port
            || words(&r.next_addr) != words(&src)
            || words(&r.src_addr) != words(&dst)
        {
            r.next_addr = src;
            r.src_addr = dst;
            r.next_port = port;
            r.family = family;
        }
    }
}
