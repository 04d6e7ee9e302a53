//! wecan relay datapath. Reads top to bottom:
//!
//! parse → validate header → admit sender (a peer, a client attached here, a registration
//! for the gateway, or a stranger's probe, answered untagged) → verify its tag → check a client's claimed source (and
//! follow a client that moved) → (answer probe, if the agent is alive) → route → next hop's
//! key → resolve egress (FIB) → seal → rewrite → emit
//!
//! Every step returns `Result<_, Stat>`; the final `Stat` is counted and decides the XDP
//! verdict, in one place ([`wecan_relay`]).
#![no_std]
#![no_main]
// Atomic compare-and-swap and fetch-add on map memory: the bpf target's `core` offers
// neither on `AtomicU64` (see `auth.rs`).
#![feature(core_intrinsics, asm_experimental_arch)]
#![allow(internal_features)]

mod auth;
mod clients;
mod forward;
mod gateway;
mod liveness;
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

use crate::{
    maps::CONFIG,
    parse::Ip,
    route::{Next, Sender},
};

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
    let hdr = parse::relay_header(&pkt)?;
    let sender = route::admit(&pkt.ip, hdr, &cfg)?;
    let words = auth::words(hdr);
    let Some(peer) = sender.peer() else {
        // A stranger's probe: answered untagged, only while the agent can serve what follows.
        liveness::agent_alive()?;
        probe::reply(&pkt, &auth::untagged(hdr));
        return Ok(Stat::ProbeReplyOpen);
    };
    auth::verify(peer, hdr, &words)?;
    route::check_source(peer, hdr)?;
    if let Sender::Client(c) = sender {
        clients::follow(c, &pkt);
    }
    if hdr.kind == PacketKind::Probe as u8
        && hdr.dst_node() == cfg.node_id
        && cfg.flags & PROBE_REPLY_IN_XDP != 0
    {
        // A probe answered for a dead agent would keep its peers sending it traffic.
        liveness::agent_alive()?;
        let seal = auth::seal(peer, hdr, probe::reply_words(words.m))?;
        probe::reply(&pkt, &seal);
        return Ok(Stat::ProbeReply);
    }
    let Next { route, client } = route::lookup(hdr, &cfg)?;

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

    let next = match client {
        Some(c) => c,
        None => auth::next_peer(route)?,
    };

    let ip_len = forward::ip_len(pkt.udp, ip_hdr_len);
    let egress = forward::resolve(ctx, route, ip_len, cfg.fib_cache_ms)?;
    // The next hop sees the hop limit this relay sends: byte 5, bits 40..48 of word 0.
    let mut m = words.m;
    m[0] -= 1 << 40;
    let seal = auth::seal(next, hdr, m)?;
    rewrite::apply(&pkt, route, &egress, cfg.port, &seal);
    forward::emit(ctx, &egress)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
