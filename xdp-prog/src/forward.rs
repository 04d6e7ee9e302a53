//! Egress resolution and emission, after xdp-forward: `bpf_fib_lookup` for the egress
//! interface and MACs, then XDP_TX (same interface) or `bpf_redirect_map` (devmap).
//!
//! A successful lookup is kept per CPU for `RelayConfig::fib_cache_ms` and reused for packets to
//! the same next hop that are no longer than one the lookup's MTU check passed. Failures are
//! never cached: a missing neighbour goes to the kernel on every packet until it resolves.

use core::mem::{size_of, zeroed};

use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_FIB_LKUP_RET_BLACKHOLE, BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH,
        BPF_FIB_LKUP_RET_PROHIBIT, BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LKUP_RET_UNREACHABLE,
        BPF_FIB_LOOKUP_DIRECT, bpf_fib_lookup as FibParams,
    },
    helpers::{bpf_fib_lookup, bpf_ktime_get_coarse_ns},
    programs::XdpContext,
};
use network_types::{ip::IpProto, udp::UdpHdr};
use wecan_common::{
    maps::{FAMILY_V4, FIB_CACHE_SLOTS, FibCacheEntry, LOOKUP_IFINDEX, RouteValue},
    stats::Stat,
};

use crate::maps::{FIB_CACHE, TX_PORTS};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Where a forwarded packet leaves: interface and the MACs for its Ethernet header.
pub struct Egress {
    pub ifindex: u32,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
}

/// Resolves egress for `route`: from this CPU's FIB cache if resolved less than `cache_ms`
/// ago, else with the kernel FIB and neighbour table ([`lookup`]), whose success is cached.
#[inline(always)]
pub fn resolve(
    ctx: &XdpContext,
    route: &RouteValue,
    ip_len: u16,
    cache_ms: u16,
) -> Result<Egress, Stat> {
    if cache_ms == 0 {
        return lookup(ctx, route, ip_len);
    }
    let ttl_ns = u64::from(cache_ms) * 1_000_000;
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let slot = FIB_CACHE.get_ptr_mut(fib_slot(&route.next_addr));
    let fresh = |e: &FibCacheEntry| now.wrapping_sub(e.resolved_ns) < ttl_ns;
    if let Some(e) = slot {
        // SAFETY: per-CPU slot from a successful lookup: no other writer.
        let e = unsafe { &*e };
        if fresh(e) && ip_len <= e.max_len && same_next_hop(e, route) {
            return Ok(Egress { ifindex: e.ifindex, smac: e.smac, dmac: e.dmac });
        }
    }
    let egress = lookup(ctx, route, ip_len)?;
    if let Some(e) = slot {
        // SAFETY: as above.
        let e = unsafe { &mut *e };
        // A fresh entry for the same next hop failed only the length check: widen it.
        let max_len =
            if fresh(e) && same_next_hop(e, route) { e.max_len.max(ip_len) } else { ip_len };
        *e = FibCacheEntry {
            resolved_ns: now,
            next_addr: route.next_addr,
            src_addr: route.src_addr,
            family: route.family,
            _pad: 0,
            max_len,
            ifindex: egress.ifindex,
            smac: egress.smac,
            dmac: egress.dmac,
            _pad2: [0; 4],
        };
    }
    Ok(egress)
}

/// Resolves egress for `route` with the kernel FIB and neighbour table.
///
/// The lookup runs as if the packet came from `lo` ([`LOOKUP_IFINDEX`]): the relay
/// originates the next overlay hop from its own address, so it needs a route, not IP
/// forwarding, which stays off on the NICs (the kernel refuses FIB lookups from an
/// interface whose forwarding flag is off, and the agent turns it on for `lo` only).
#[inline(always)]
fn lookup(ctx: &XdpContext, route: &RouteValue, ip_len: u16) -> Result<Egress, Stat> {
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

/// The cache slot of a next-hop address: its bytes folded (for IPv4 the host byte varies most).
#[inline(always)]
fn fib_slot(addr: &[u8; 16]) -> u32 {
    let w = words(addr);
    let x = w[0] ^ w[1] ^ w[2] ^ w[3];
    (x ^ (x >> 8) ^ (x >> 16) ^ (x >> 24)) & (FIB_CACHE_SLOTS - 1)
}

/// Whether cache entry `e` was resolved for `route`'s next hop (the lookup's inputs).
#[inline(always)]
fn same_next_hop(e: &FibCacheEntry, route: &RouteValue) -> bool {
    e.family == route.family
        && words(&e.next_addr) == words(&route.next_addr)
        && words(&e.src_addr) == words(&route.src_addr)
}

#[inline(always)]
fn first4(a: &[u8; 16]) -> [u8; 4] {
    [a[0], a[1], a[2], a[3]]
}

/// An address slot as four words, compared and hashed without a byte loop.
#[inline(always)]
pub fn words(a: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
        u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
        u32::from_ne_bytes([a[8], a[9], a[10], a[11]]),
        u32::from_ne_bytes([a[12], a[13], a[14], a[15]]),
    ]
}
