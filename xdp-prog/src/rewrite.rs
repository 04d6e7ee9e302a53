//! Rewrites a relay packet for its next hop: outer IP source/destination, UDP ports,
//! Ethernet addresses, the relay hop limit and the hop's seal, with incremental checksum
//! updates (IPv4 header; UDP, which is mandatory on IPv6).

use wecan_common::{csum::Update, maps::RouteValue};

use crate::{
    auth::{self, Seal},
    forward::Egress,
    parse::{Ip, Packet},
};

/// TTL / hop limit of the outer IP header: each overlay hop is a new IP path, originated
/// by this relay.
const OUTER_TTL: u8 = 64;

/// Applies the rewrite. The caller has checked that the hop limit is at least 1 and that
/// `route` has the packet's address family, and sealed the header for the next hop.
#[inline(always)]
pub fn apply(pkt: &Packet, route: &RouteValue, egress: &Egress, relay_port: u16, seal: &Seal) {
    // SAFETY (all derefs): every header pointer was bounds-checked by the parser.
    let relay = pkt.relay;
    let udp = pkt.udp;
    let (mut udp_csum, udp_csum_on) = unsafe {
        let c = u16::from_be_bytes((*udp).check);
        // An IPv4 UDP checksum of zero means "none"; it stays none.
        (Update::new(c), c != 0 || matches!(pkt.ip, Ip::V6(_)))
    };

    match pkt.ip {
        Ip::V4(ip) => unsafe {
            let new_src =
                [route.src_addr[0], route.src_addr[1], route.src_addr[2], route.src_addr[3]];
            let new_dst =
                [route.next_addr[0], route.next_addr[1], route.next_addr[2], route.next_addr[3]];
            let old_src = (*ip).src_addr;
            let old_dst = (*ip).dst_addr;
            let old_ttl = [(*ip).ttl, (*ip).proto];
            let new_ttl = [OUTER_TTL, (*ip).proto];
            let check = Update::new(u16::from_be_bytes((*ip).check))
                .replace(&old_src, &new_src)
                .replace(&old_dst, &new_dst)
                .replace(&old_ttl, &new_ttl)
                .finish();
            (*ip).src_addr = new_src;
            (*ip).dst_addr = new_dst;
            (*ip).ttl = OUTER_TTL;
            (*ip).check = check.to_be_bytes();
            udp_csum = udp_csum.replace(&old_src, &new_src).replace(&old_dst, &new_dst);
        },
        Ip::V6(ip) => unsafe {
            let old_src = (*ip).src_addr;
            let old_dst = (*ip).dst_addr;
            (*ip).src_addr = route.src_addr;
            (*ip).dst_addr = route.next_addr;
            (*ip).hop_limit = OUTER_TTL;
            udp_csum =
                udp_csum.replace(&old_src, &route.src_addr).replace(&old_dst, &route.next_addr);
        },
    }

    unsafe {
        let old_ports = [(*udp).src, (*udp).dst];
        let sport = relay_port.to_be_bytes();
        let dport = route.next_port.to_be_bytes();
        let old_ports = [old_ports[0][0], old_ports[0][1], old_ports[1][0], old_ports[1][1]];
        let new_ports = [sport[0], sport[1], dport[0], dport[1]];
        // Bytes 4..6 of the relay header are [flags, hop limit]: one checksum word.
        let old_word = [(*relay).flags, (*relay).hop_limit];
        let new_word = [(*relay).flags, (*relay).hop_limit - 1];
        (*udp).src = sport;
        (*udp).dst = dport;
        (*relay).hop_limit = new_word[1];
        let c = udp_csum.replace(&old_ports, &new_ports).replace(&old_word, &new_word);
        let c = auth::apply(relay, seal, c);
        if udp_csum_on {
            (*udp).check = c.finish_udp().to_be_bytes();
        }
        (*pkt.eth).src_addr = egress.smac;
        (*pkt.eth).dst_addr = egress.dmac;
    }
}
