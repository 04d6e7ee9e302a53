//! Egress resolution and emission, after xdp-forward: `bpf_fib_lookup` for the egress
//! interface and MACs, then XDP_TX (same interface) or `bpf_redirect_map` (devmap).

use core::mem::{size_of, zeroed};

use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_FIB_LKUP_RET_BLACKHOLE, BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH,
        BPF_FIB_LKUP_RET_PROHIBIT, BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LKUP_RET_UNREACHABLE,
        BPF_FIB_LOOKUP_DIRECT, bpf_fib_lookup as FibParams,
    },
    helpers::bpf_fib_lookup,
    programs::XdpContext,
};
use network_types::{ip::IpProto, udp::UdpHdr};
use wecan_common::{
    maps::{FAMILY_V4, LOOKUP_IFINDEX, RouteValue},
    stats::Stat,
};

use crate::maps::TX_PORTS;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Where a forwarded packet leaves: interface and the MACs for its Ethernet header.
pub struct Egress {
    pub ifindex: u32,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
}

/// Resolves egress for `route` with the kernel FIB and neighbour table.
///
/// The lookup runs as if the packet came from `lo` ([`LOOKUP_IFINDEX`]): the relay
/// originates the next overlay hop from its own address, so it needs a route, not IP
/// forwarding, which stays off on the NICs (the kernel refuses FIB lookups from an
/// interface whose forwarding flag is off, and the agent turns it on for `lo` only).
#[inline(always)]
pub fn resolve(ctx: &XdpContext, route: &RouteValue, ip_len: u16) -> Result<Egress, Stat> {
    // SAFETY: plain-old-data struct for the helper; all-zero is its documented default.
    let mut p: FibParams = unsafe { zeroed() };
    p.l4_protocol = IpProto::Udp as u8;
    p.sport = 0;
    p.dport = route.next_port.to_be();
    p.__bindgen_anon_1.tot_len = ip_len;
    p.ifindex = LOOKUP_IFINDEX;
    if route.family == FAMILY_V4 {
        p.family = AF_INET;
        p.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(first4(&route.src_addr));
        p.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(first4(&route.next_addr));
    } else {
        p.family = AF_INET6;
        p.__bindgen_anon_3.ipv6_src = words(&route.src_addr);
        p.__bindgen_anon_4.ipv6_dst = words(&route.next_addr);
    }
    // DIRECT: the main table, skipping policy-routing rules (xdp-forward's fast mode).
    let (len, flags) = (size_of::<FibParams>() as i32, BPF_FIB_LOOKUP_DIRECT);
    // SAFETY: valid context and a params struct of the size we pass.
    let rc = unsafe { bpf_fib_lookup(ctx.as_ptr(), &mut p, len, flags) };
    match rc as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => Ok(Egress { ifindex: p.ifindex, smac: p.smac, dmac: p.dmac }),
        BPF_FIB_LKUP_RET_NO_NEIGH => Err(Stat::NoNeighbour),
        BPF_FIB_LKUP_RET_BLACKHOLE | BPF_FIB_LKUP_RET_UNREACHABLE | BPF_FIB_LKUP_RET_PROHIBIT => {
            Err(Stat::DropUnreachable)
        }
        BPF_FIB_LKUP_RET_FRAG_NEEDED => Err(Stat::DropMtu),
        // Not forwardable here (e.g. no route, unsupported tunnel): the kernel stack decides.
        _ => Err(Stat::FibPass),
    }
}

/// Sends the (already rewritten) packet out of `egress`.
#[inline(always)]
pub fn emit(ctx: &XdpContext, egress: &Egress) -> Result<Stat, Stat> {
    // SAFETY: reading a field of the live xdp_md.
    let ingress = unsafe { (*ctx.ctx).ingress_ifindex };
    if egress.ifindex == ingress {
        return Ok(Stat::Tx);
    }
    match TX_PORTS.redirect(egress.ifindex, 0) {
        Ok(_) => Ok(Stat::Redirect),
        Err(_) => Err(Stat::DropNoTxPort),
    }
}

/// Length of the IP packet for the FIB MTU check: UDP datagram plus the IP header.
#[inline(always)]
pub fn ip_len(udp: *const UdpHdr, ip_hdr_len: usize) -> u16 {
    // SAFETY: bounds-checked by the parser.
    (unsafe { (*udp).len() } as usize + ip_hdr_len) as u16
}

#[inline(always)]
fn first4(a: &[u8; 16]) -> [u8; 4] {
    [a[0], a[1], a[2], a[3]]
}

#[inline(always)]
fn words(a: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
        u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
        u32::from_ne_bytes([a[8], a[9], a[10], a[11]]),
        u32::from_ne_bytes([a[12], a[13], a[14], a[15]]),
    ]
}
