//! Answering link probes in XDP: the probe is turned around into a probe reply on the
//! spot (XDP_TX), so the prober's RTT does not include userspace scheduling here.
//!
//! Swapping source and destination (MACs, addresses, ports, node IDs) leaves every
//! checksum unchanged; only the kind byte and the seal for the way back change the UDP
//! checksum.

use wecan_common::{csum::Update, wire::PacketKind};

use crate::{
    auth::{self, Seal},
    parse::{Ip, Packet},
};

/// Header words 0..32 of the reply to a probe whose words are `m`, before its seal.
#[inline(always)]
pub fn reply_words(mut m: [u64; 4]) -> [u64; 4] {
    // Byte 3 (kind) is bits 24..32 of word 0; word 1 is [source node, destination node].
    m[0] = (m[0] & !(0xff << 24)) | ((PacketKind::ProbeReply as u64) << 24);
    m[1] = m[1].rotate_left(32);
    m
}

/// Rewrites the probe in `pkt` into its reply, in place, sealed with `seal`.
#[inline(always)]
pub fn reply(pkt: &Packet, seal: &Seal) {
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
        let c = auth::apply(relay, seal, Update::new(check).replace(&old, &new));
        // An IPv4 UDP checksum of zero means "none" and stays so.
        if check != 0 {
            (*udp).check = c.finish_udp().to_be_bytes();
        }
    }
}
