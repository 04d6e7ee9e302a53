//! Time in the ARQ ends: the caller's `Instant`s as saturating nanoseconds, and the timers of a
//! hop derived from its RTT.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{ArqSettings, MIN_RTT, RETRY_SLACK};

/// Nanoseconds in `d`, saturating: timer arithmetic below is saturating u64, never a panic.
pub(super) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Turns the caller's `Instant`s into u64 nanoseconds since the first one seen, so timer sums
/// saturate instead of overflowing `Instant` (an instant before the first one counts as it).
#[derive(Default, Serialize, Deserialize)]
pub(super) struct Clock(#[serde(with = "crate::carry::optional_time")] Option<Instant>);

impl Clock {
    pub(super) fn ns(&mut self, now: Instant) -> u64 {
        nanos(now.saturating_duration_since(*self.0.get_or_insert(now)))
    }
}

/// Timers of one hop in nanoseconds (see the module docs).
#[derive(Clone, Copy, Serialize, Deserialize)]
pub(super) struct Timers {
    pub(super) rtt: u64,
    /// Also the one-way delay estimate and the sender's minimum gap between resends.
    pub(super) half_rtt: u64,
    pub(super) retry: u64,
    pub(super) ack_interval: u64,
    pub(super) budget: u64,
    pub(super) reorder: u64,
}

impl Timers {
    pub(super) fn new(s: &ArqSettings) -> Self {
        let rtt = s.rtt.max(MIN_RTT);
        let retry = rtt.saturating_add((rtt / 4).min(RETRY_SLACK));
        Self {
            rtt: nanos(rtt),
            half_rtt: nanos(rtt / 2),
            retry: nanos(retry),
            ack_interval: nanos(rtt / 4),
            budget: nanos(s.deadline),
            reorder: nanos(s.reorder),
        }
    }

    /// Deadline mode: whether a copy that is `age` ns old when it leaves the sender arrives in
    /// time. Sender and receiver judge by this same sum.
    pub(super) fn in_time(&self, age: u64) -> bool {
        age.saturating_add(self.half_rtt) <= self.budget
    }
}

/// `ns` in whole microseconds, rounded up so the receiver never thinks a packet younger than it
/// is.
pub(super) fn age_us(ns: u64) -> u32 {
    u32::try_from(ns.div_ceil(1000)).unwrap_or(u32::MAX)
}
