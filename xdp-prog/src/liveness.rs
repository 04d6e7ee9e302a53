//! Whether this relay's agent is alive: its heartbeat lease (`HEARTBEAT`) has not run out.

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use wecan_common::stats::Stat;

use crate::maps::HEARTBEAT;

/// `Ok` while the agent's lease runs, else `DropAgentDown`.
#[inline(always)]
pub fn agent_alive() -> Result<(), Stat> {
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    match HEARTBEAT.get(0) {
        Some(h) if now < h.alive_until_ns => Ok(()),
        _ => Err(Stat::DropAgentDown),
    }
}
