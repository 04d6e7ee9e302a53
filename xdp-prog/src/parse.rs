//! Header parsing: Ethernet (+ one VLAN tag) → IPv4/IPv6 → UDP to the relay port →
//! relay header. Every access is bounds-checked against `data_end`; each way a packet can
//! fail is its own [`Stat`].

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use network_types::{
    eth::{EthHdr, EtherType},
    ip::{IpProto, Ipv4Hdr, Ipv6Hdr},
    udp::UdpHdr,
    vlan::VlanHdr,
};
use wecan_common::{
    stats::Stat,
    wire::{HEADER_LEN, RelayHeader, WireError},
};

/// The outer IP header of a relay packet.
pub enum Ip {
    V4(*mut Ipv4Hdr),
    V6(*mut Ipv6Hdr),
}

/// A relay packet whose headers are all within the packet.
pub struct Packet {
    pub eth: *mut EthHdr,
    pub ip: Ip,
    pub udp: *mut UdpHdr,
    pub relay: *mut RelayHeader,
}

/// A pointer to a `T` at `offset`, if all of it lies within the packet.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*mut T, Stat> {
    let start = ctx.data();
    if start + offset + size_of::<T>() > ctx.data_end() {
        return Err(Stat::DropTruncated);
    }
    Ok((start + offset) as *mut T)
}

/// Parses the packet in `ctx`. Non-relay traffic comes back as `Err(Stat::NotRelay)` (or
/// another pass outcome) so the kernel gets it untouched.
#[inline(always)]
pub fn packet(ctx: &XdpContext, relay_port: u16) -> Result<Packet, Stat> {
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    let mut off = EthHdr::LEN;
    // SAFETY (all derefs below): each pointer was bounds-checked by `ptr_at`.
    let mut ether_type = unsafe { (*eth).ether_type };
    if ether_type == EtherType::Ieee8021q as u16 || ether_type == EtherType::Ieee8021ad as u16 {
        let vlan: *mut VlanHdr = ptr_at(ctx, off)?;
        ether_type = unsafe { (*vlan).ether_type };
        off += VlanHdr::LEN;
    }

    let (ip, udp_off, ip_payload_len) = if ether_type == EtherType::Ipv4 as u16 {
        let ip: *mut Ipv4Hdr = ptr_at(ctx, off)?;
        let (vihl, frags, proto, tot_len) =
            unsafe { ((*ip).vihl, (*ip).frags, (*ip).proto, (*ip).tot_len()) };
        if vihl >> 4 != 4 || vihl & 0xf < 5 {
            return Err(Stat::DropMalformed);
        }
        if proto != IpProto::Udp as u8 {
            return Err(Stat::NotRelay);
        }
        // More-fragments flag or a fragment offset: the kernel reassembles.
        if u16::from_be_bytes(frags) & 0x3fff != 0 {
            return Err(Stat::Fragment);
        }
        if vihl & 0xf != 5 {
            return Err(Stat::IpOptions);
        }
        if (tot_len as usize) < Ipv4Hdr::LEN {
            return Err(Stat::DropMalformed);
        }
        (Ip::V4(ip), off + Ipv4Hdr::LEN, tot_len as usize - Ipv4Hdr::LEN)
    } else if ether_type == EtherType::Ipv6 as u16 {
        let ip: *mut Ipv6Hdr = ptr_at(ctx, off)?;
        let (vcf0, next, payload_len) =
            unsafe { ((*ip).vcf[0], (*ip).next_hdr, (*ip).payload_len()) };
        if vcf0 >> 4 != 6 {
            return Err(Stat::DropMalformed);
        }
        // Extension headers are left to the kernel.
        if next != IpProto::Udp as u8 {
            return Err(Stat::NotRelay);
        }
        (Ip::V6(ip), off + Ipv6Hdr::LEN, payload_len as usize)
    } else {
        return Err(Stat::NotRelay);
    };

    let udp: *mut UdpHdr = ptr_at(ctx, udp_off)?;
    let (dport, udp_len) = unsafe { ((*udp).dst_port(), (*udp).len() as usize) };
    if dport != relay_port {
        return Err(Stat::NotRelay);
    }
    let relay: *mut RelayHeader = ptr_at(ctx, udp_off + UdpHdr::LEN)?;
    // The relay header must be inside the datagram, and the datagram inside the IP payload
    // and the packet.
    if udp_len < UdpHdr::LEN + HEADER_LEN || udp_len > ip_payload_len {
        return Err(Stat::DropMalformed);
    }
    if ctx.data() + udp_off + udp_len > ctx.data_end() {
        return Err(Stat::DropTruncated);
    }
    Ok(Packet { eth, ip, udp, relay })
}

/// Validates the relay header (magic, version, kind, reserved bytes).
#[inline(always)]
pub fn relay_header(pkt: &Packet) -> Result<&RelayHeader, Stat> {
    // SAFETY: bounds-checked in `packet`.
    let hdr = unsafe { &*pkt.relay };
    match hdr.validate() {
        Ok(_) => Ok(hdr),
        Err(WireError::BadMagic) => Err(Stat::DropBadMagic),
        Err(WireError::BadVersion(_)) => Err(Stat::DropBadVersion),
        Err(_) => Err(Stat::DropBadHeader),
    }
}
