//! Answering link probes in XDP: the probe is turned around into a probe reply on the
//! spot (XDP_TX), so the prober's RTT does not include userspace scheduling here.
//!
//! Swapping source and destination (MACs, addresses, ports, node IDs) leaves every
//! checksum unchanged; only the kind byte changes the UDP checksum.

use wecan_common::{csum::Update, wire::PacketKind};

use crate::parse::{Ip, Packet};

/// Rewrites the probe in `pkt` into its reply, in place.
#[inline(always)]
pub fn reply(pkt: &Packet) {
    // SAFETY (all derefs): every header pointer was bounds-checked by the parser.
    unsafe {
        let eth = pkt.eth;
        core::mem::swap(&mut (*eth).src_addr, &mut (*eth).dst_addr);
        match pkt.ip {
            Ip::V4(ip) => core::mem::swap(&mut (*ip).src_addr, &mut (*ip).dst_addr),
            Ip::V6(ip) => core::mem::swap(&mut (*ip).src_addr, &mut (*ip).dst_addr),
        }
        let udp = pkt.udp;
        core::mem::swap(&mut (*udp).src, &mut (*udp).dst);
        let relay = pkt.relay;
        core::mem::swap(&mut (*relay).src_node, &mut (*relay).dst_node);
        // Bytes 2..4 of the relay header are [version, kind]: one checksum word.
        let old = [(*relay).version, (*relay).kind];
        let new = [(*relay).version, PacketKind::ProbeReply as u8];
        (*relay).kind = new[1];
        let check = u16::from_be_bytes((*udp).check);
        // An IPv4 UDP checksum of zero means "none" and stays so.
        if check != 0 {
            (*udp).check = Update::new(check).replace(&old, &new).finish_udp().to_be_bytes();
        }
    }
}
