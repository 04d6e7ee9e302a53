//! Counting outcomes.

use wecan_common::stats::Stat;

use crate::maps::STATS;

/// Adds one packet of `len` bytes to the counter of `outcome`.
#[inline(always)]
pub fn count(outcome: Stat, len: usize) {
    if let Some(c) = STATS.get_ptr_mut(outcome as u32) {
        // SAFETY: per-CPU slot, so no other writer; the pointer comes from the map lookup.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += len as u64;
        }
    }
}
