//! Small XDP programs for the test bed and benchmarks (not part of the relay):
//!
//! - `testkit_mac_swap_tx`: the benchmark baseline, the least a forwarder can do (swap
//!   Ethernet addresses, XDP_TX).
//! - `testkit_gen`: the traffic generator (with `BPF_PROG_TEST_RUN` live frames): writes
//!   the template headers over the frame, then XDP_TX. The kernel recycles frame pages
//!   within one call without restoring their data, so without the rewrite a forwarder that
//!   edits packets in place would be fed its own output.
//! - `testkit_sink`: counts and drops; the receiving end of rate benchmarks.
//! - `testkit_pass`: XDP_PASS; makes a veth accept XDP_REDIRECT/XDP_TX frames from its peer.
//! - `testkit_xsk`: hands every frame to the AF_XDP socket of its receive queue (the handoff
//!   benchmark's alternative to XDP_PASS up to a UDP socket).
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, PerCpuArray, XskMap},
    programs::XdpContext,
};

/// Packets seen by `testkit_sink` (index 0). Written by the sink; read by the benchmark.
#[map(name = "TESTKIT_SINK")]
static SINK: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Bytes of headers the generator restores: Ethernet, IPv4, UDP and the relay header.
const TEMPLATE_LEN: usize = 14 + 20 + 8 + wecan_common::wire::HEADER_LEN;

/// The generator's header template (index 0). Written by the benchmark; read by the
/// generator per frame.
#[map(name = "TESTKIT_TEMPLATE")]
static TEMPLATE: Array<[u8; TEMPLATE_LEN]> = Array::with_max_entries(1, 0);

/// The generator transmits one frame in every `GEN_EVERY[0]` it is run on (and drops the
/// rest at once), which sets the offered load without small, slow BPF_PROG_TEST_RUN calls.
/// Written by the benchmark; read by the generator.
#[map(name = "TESTKIT_GEN_EVERY")]
static GEN_EVERY: Array<u64> = Array::with_max_entries(1, 0);

/// Per-CPU generator state: index 0 frames seen, index 1 frames transmitted. Written by the
/// generator; index 1 read by the benchmark (the offered load).
#[map(name = "TESTKIT_GEN_COUNT")]
static GEN_COUNT: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

/// AF_XDP sockets by receive queue. Written by the benchmark; read by `testkit_xsk`.
#[map(name = "TESTKIT_XSKS")]
static XSKS: XskMap = XskMap::with_max_entries(4, 0);

#[xdp]
pub fn testkit_mac_swap_tx(ctx: XdpContext) -> u32 {
    let data = ctx.data();
    if data + 12 > ctx.data_end() {
        return xdp_action::XDP_DROP;
    }
    let eth = data as *mut [u8; 6];
    // SAFETY: the 12 bytes were bounds-checked above.
    unsafe {
        let dst = *eth;
        *eth = *eth.add(1);
        *eth.add(1) = dst;
    }
    xdp_action::XDP_TX
}

#[xdp]
pub fn testkit_gen(ctx: XdpContext) -> u32 {
    let data = ctx.data();
    if data + TEMPLATE_LEN > ctx.data_end() {
        return xdp_action::XDP_DROP;
    }
    let every = GEN_EVERY.get(0).copied().unwrap_or(1).max(1);
    let (Some(seen), Some(sent)) = (GEN_COUNT.get_ptr_mut(0), GEN_COUNT.get_ptr_mut(1)) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: per-CPU slots from successful lookups.
    unsafe {
        *seen += 1;
        if *seen % every != 0 {
            return xdp_action::XDP_DROP;
        }
        *sent += 1;
    }
    match TEMPLATE.get(0) {
        // SAFETY: TEMPLATE_LEN bytes were bounds-checked above.
        Some(t) => unsafe { *(data as *mut [u8; TEMPLATE_LEN]) = *t },
        None => return xdp_action::XDP_DROP,
    }
    xdp_action::XDP_TX
}

#[xdp]
pub fn testkit_sink(_ctx: XdpContext) -> u32 {
    if let Some(n) = SINK.get_ptr_mut(0) {
        // SAFETY: per-CPU slot from a successful lookup.
        unsafe { *n += 1 };
    }
    xdp_action::XDP_DROP
}

#[xdp]
pub fn testkit_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[xdp]
pub fn testkit_xsk(ctx: XdpContext) -> u32 {
    // SAFETY: reading the receive queue index from the kernel's xdp_md context.
    let queue = unsafe { (*ctx.ctx).rx_queue_index };
    XSKS.redirect(queue, 0).unwrap_or(xdp_action::XDP_DROP)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
