//! wecan relay datapath. Reads top to bottom:
//!
//! parse → admit sender → validate header → check a client's claimed source → (answer probe)
//! → route → resolve egress (FIB)
//! → rewrite → emit
//!
//! Every step returns `Result<_, Stat>`; the final `Stat` is counted and decides the XDP
//! verdict, in one place ([`wecan_relay`]).
#![no_std]
#![no_main]

mod forward;
mod maps;
mod parse;
mod probe;
mod rewrite;
mod route;
mod stats;

use aya_ebpf::{macros::xdp, programs::XdpContext};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};
use wecan_common::{
    maps::{FAMILY_V4, FAMILY_V6, RouteAction, config_flags::PROBE_REPLY_IN_XDP},
    stats::Stat,
    wire::PacketKind,
};

use crate::{maps::CONFIG, parse::Ip};

#[xdp]
pub fn wecan_relay(ctx: XdpContext) -> u32 {
    let outcome = match relay(&ctx) {
        Ok(s) | Err(s) => s,
    };
    stats::count(outcome, ctx.data_end() - ctx.data());
    outcome.verdict()
}

#[inline(always)]
fn relay(ctx: &XdpContext) -> Result<Stat, Stat> {
    let cfg = match CONFIG.get(0) {
        Some(c) if c.enabled != 0 => *c,
        _ => return Err(Stat::NotConfigured),
    };
    let pkt = parse::packet(ctx, cfg.port)?;
    let peer = route::admit(&pkt.ip)?;
    let hdr = parse::relay_header(&pkt)?;
    route::check_source(peer, hdr)?;
    if hdr.kind == PacketKind::Probe as u8
        && hdr.dst_node() == cfg.node_id
        && cfg.flags & PROBE_REPLY_IN_XDP != 0
    {
        probe::reply(&pkt);
        return Ok(Stat::ProbeReply);
    }
    let route = route::lookup(hdr, cfg.table)?;

    match RouteAction::from_u8(route.action) {
        Some(RouteAction::Local) => return Ok(Stat::Local),
        Some(RouteAction::SlowPath) => return Ok(Stat::SlowPath),
        Some(RouteAction::Forward) => {}
        None => return Err(Stat::DropBadRoute),
    }
    if hdr.hop_limit == 0 {
        return Err(Stat::DropHopLimit);
    }
    let ip_hdr_len = match (&pkt.ip, route.family) {
        (Ip::V4(_), FAMILY_V4) => Ipv4Hdr::LEN,
        (Ip::V6(_), FAMILY_V6) => Ipv6Hdr::LEN,
        // Changing address family means resizing headers: not done in XDP.
        _ => return Err(Stat::DropBadRoute),
    };

    let ip_len = forward::ip_len(pkt.udp, ip_hdr_len);
    let egress = forward::resolve(ctx, route, ip_len, cfg.fib_cache_ms)?;
    rewrite::apply(&pkt, route, &egress, cfg.port);
    forward::emit(ctx, &egress)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
