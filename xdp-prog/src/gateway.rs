//! The access gateway's door: control packets (registrations) from senders this relay does
//! not know go to the agent only within a per-source rate (`GATEWAY_LIMIT`), so a flood
//! from one address costs a map lookup per packet here and nothing in the agent, which
//! verifies signatures.

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use wecan_common::{
    maps::{FAMILY_V4, FAMILY_V6, GatewayBucket, GatewaySource, RelayConfig},
    stats::Stat,
};

use crate::{maps::GATEWAY_LIMIT, parse::Ip};

/// `Gateway` (pass it up) while `ip`'s source is within `cfg.gateway_rate` (non-zero: this
/// relay is an edge), else `DropRateLimited`.
#[inline(always)]
pub fn admit(ip: &Ip, cfg: &RelayConfig) -> Stat {
    let mut key = GatewaySource { addr: [0; 16], family: FAMILY_V4, _pad: [0; 3] };
    // SAFETY: the parser checked the headers.
    match *ip {
        Ip::V4(h) => key.addr[..4].copy_from_slice(unsafe { &(*h).src_addr }),
        Ip::V6(h) => {
            key.addr = unsafe { (*h).src_addr };
            key.family = FAMILY_V6;
        }
    }
    let interval = 1_000_000_000 / u64::from(cfg.gateway_rate);
    let tolerance = interval * u64::from(cfg.gateway_burst);
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    match GATEWAY_LIMIT.get_ptr_mut(&key) {
        Some(b) => {
            // SAFETY: a live map value. Racing CPUs may each let one packet through on the
            // same arrival time: the rate holds to within the number of CPUs.
            let tat = unsafe { (*b).tat_ns }.max(now);
            if tat - now > tolerance {
                return Stat::DropRateLimited;
            }
            unsafe { (*b).tat_ns = tat + interval };
        }
        None => {
            let fresh = GatewayBucket { tat_ns: now + interval };
            // A full LRU map evicts its least recently used source.
            if GATEWAY_LIMIT.insert(&key, &fresh, 0).is_err() {
                return Stat::DropRateLimited;
            }
        }
    }
    Stat::Gateway
}
