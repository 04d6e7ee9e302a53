//! Small XDP programs for the test bed and benchmarks (not part of the relay):
//!
//! - `testkit_mac_swap_tx`: the benchmark baseline, the least a forwarder can do (swap
//!   Ethernet addresses, XDP_TX).
//! - `testkit_tx`: XDP_TX unchanged; with `BPF_PROG_TEST_RUN` live frames it is the traffic
//!   generator.
//! - `testkit_sink`: counts and drops; the receiving end of rate benchmarks.
//! - `testkit_pass`: XDP_PASS; makes a veth accept XDP_REDIRECT/XDP_TX frames from its peer.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::PerCpuArray,
    programs::XdpContext,
};

/// Packets seen by `testkit_sink` (index 0). Written by the sink; read by the benchmark.
#[map(name = "TESTKIT_SINK")]
static SINK: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

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
pub fn testkit_tx(_ctx: XdpContext) -> u32 {
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

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
