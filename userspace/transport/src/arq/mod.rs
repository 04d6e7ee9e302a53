//! Per-hop selective retransmission (ARQ) for protected flows on lossy links.
//!
//! Between two adjacent relays, the upstream relay keeps a [`Sender`] and the downstream relay a
//! [`Receiver`] for each protected stream (`crate::hop` has one deadline stream per link and one
//! reliable stream per flow). The sender numbers the
//! stream's packets with a per-hop sequence number and keeps them in a bounded retransmit buffer;
//! the receiver finds gaps by sequence number and asks for them with NACKs; the sender resends
//! what is asked for. Nothing here reads a clock or spawns a thread: every call takes `now`, so
//! the agent drives it from its event loop and the tests from a virtual clock.
//!
//! Two modes ([`Mode`]):
//! - **Deadline** (real-time flows): each packet is useful only until its first send plus the
//!   budget [`ArqSettings::deadline`] (default `2.5 × RTT + 5 ms`: the original plus two repair
//!   attempts). The receiver hands every new packet on the moment it arrives, in arrival order,
//!   and never waits for a gap; ARQ only fills holes later. It never hands on a packet past its
//!   deadline (counted as late), and asks only for packets whose repair can still arrive in
//!   time. The sender drops entries that could no longer arrive in time and never resends them.
//! - **Reliable**: the receiver delivers in sequence order, holding packets behind a gap until
//!   it is filled, and asks again every retry interval until it is; a cumulative ack in every
//!   NACK lets the sender free its buffer, and a tail probe recovers losses at the end of a
//!   burst, which no later packet would reveal. Both ends hold at most
//!   [`ArqSettings::buffer_packets`] packets: a sender that far ahead of the receiver's acks
//!   refuses the next packet ([`BufferFull`]; nothing unacknowledged is ever evicted), and the
//!   caller holds it back until an ack frees room. The receiver's window is as large, so it
//!   never overflows behind an honest sender of the same settings; should it (a sender with a
//!   larger buffer, or forged sequence numbers), it skips the oldest gap, counted as given up.
//!   Deadline mode has no such back-pressure: a full buffer evicts its oldest packet, counted.
//!
//! # Wire
//!
//! Both go after the relay header (`wecan_common::wire`), which the caller adds. All fields are
//! big-endian.
//!
//! A protected **data packet** starts with the 8-byte hop [`Header`]: `seq` (u32, per hop,
//! wrapping) and `age_us` (u32), the microseconds since the packet's first send on this hop when
//! this copy left the sender (0 on the original, saturating). Relays' clocks are not
//! synchronised, so a first-send timestamp from the sender's clock means nothing to the
//! receiver; an age needs no common clock. The receiver places the first send at
//! `arrival − age − RTT/2`, so its deadline errs only by the one-way delay's deviation from
//! `RTT/2`.
//!
//! A **NACK** body ([`Nack`]) is `cum_ack` (u32: the receiver will never ask for a sequence
//! number before it again; in Reliable mode it has received every one before it), `count`
//! (u16, at most [`MAX_NACK_RANGES`]), then `count` ranges of 12 bytes: `first` (u32, a missing
//! sequence number) and `bitmap` (u64: bit `i` set when `first + i` is missing; bit 0 always
//! set). Ranges come in increasing order from `cum_ack`, each starting at least 64 past the
//! previous one. A NACK without ranges is a pure ack (Reliable mode only).
//!
//! # Timers (from [`ArqSettings::rtt`], at least 1 ms)
//!
//! - The receiver asks for a gap at the first poll after it appears (or after
//!   [`ArqSettings::reorder`], if set), then again every
//!   `RTT + min(RTT/4, 2 ms)` (the repair is due one RTT after the ask; the slack absorbs jitter
//!   and polling without pushing the second attempt past the default deadline).
//! - The sender resends one sequence number at most once per `RTT/2`, however often it is asked.
//! - Reliable mode: the receiver sends a pure ack when its cumulative ack moved (or a duplicate
//!   suggests its last ack was lost) and `RTT/4` passed since its last NACK, or at once when the
//!   ack moved by a quarter of the window; the sender probes with its newest packet when that
//!   packet went `2 × RTT` without being acknowledged, backing off exponentially while no NACK
//!   comes back.
//!
//! # Driving it
//!
//! Upstream: [`Sender::sent`] for each packet (prepend the returned header), [`Sender::on_nack`]
//! for each NACK (send what it returns), and every millisecond or so [`Sender::expire`] and
//! [`Sender::poll_probe`]. Downstream: [`Receiver::on_packet`] for each packet (forward what it
//! returns) and every millisecond or so [`Receiver::poll_nack`] (send the NACK upstream).
//!
//! Both ends of a hop must use the same [`ArqSettings`] (RTT, deadline, buffer size, first
//! sequence number). The timers may follow a changing RTT ([`Sender::set_timers`],
//! [`Receiver::set_timers`]); each end then uses its own measurement, and the deadline's two
//! judges (sender: worth resending? receiver: in time?) differ by what the two measurements
//! do, which shifts where a repair on the edge of the deadline is tried or accepted, nothing
//! else. Sequence numbers compare in serial-number arithmetic (RFC 1982), so the
//! flow may run through the u32 wrap. ARQ does not authenticate: a forged NACK makes the sender
//! resend (rate-limited) or free its buffer early, a forged data packet can skip the receiver's
//! window ahead.
//!
//! Modules: `wire` (header and NACK encoding), `timers` (the timers every end derives from the
//! RTT), `sender` and `receiver`.

mod receiver;
mod sender;
mod timers;
mod wire;

use std::{fmt, time::Duration};

use serde::{Deserialize, Serialize};

pub use receiver::{Receiver, ReceiverStats};
pub use sender::{Sender, SenderStats};
pub use wire::{Header, Nack};

/// Length of the per-hop ARQ [`Header`] on the wire.
pub const HEADER_LEN: usize = 8;

/// Most ranges one NACK may carry: 64 × 64 sequence numbers in `6 + 64 × 12 = 774` bytes.
pub const MAX_NACK_RANGES: usize = 64;

/// Largest sender buffer and receiver window (packets); larger settings are clamped. Keeps any
/// one input from making either end allocate more than this many slots.
pub const MAX_WINDOW: usize = 1 << 16;

/// Bytes of a NACK before its ranges: `cum_ack` (4) and `count` (2).
const NACK_FIXED_LEN: usize = 6;

/// Bytes of one NACK range: `first` (4) and `bitmap` (8).
const NACK_RANGE_LEN: usize = 12;

/// Floor for the RTT every timer derives from, so a zero RTT cannot make them spin.
const MIN_RTT: Duration = Duration::from_millis(1);

/// Most slack added to the RTT for the receiver's retry interval.
const RETRY_SLACK: Duration = Duration::from_millis(2);

/// The sender's tail probe interval doubles per unanswered probe up to `2^MAX_PROBE_BACKOFF`.
const MAX_PROBE_BACKOFF: u32 = 6;

/// Serial-number arithmetic: a difference of `HALF` or more means "behind".
const HALF: u32 = 1 << 31;

/// Why a hop header or NACK could not be decoded. Bad input is always reported, never a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArqError {
    /// The input ends before the `need` bytes its fixed part or its range count require.
    Truncated { need: usize, have: usize },
    /// A NACK declares more ranges than [`MAX_NACK_RANGES`].
    TooManyRanges(usize),
    /// A NACK has bytes after its last range.
    Oversized { len: usize, expected: usize },
    /// A NACK range breaks the rules a [`Receiver`] always follows (see [`Nack`]).
    BadRange { index: usize, first: u32, bitmap: u64 },
}

impl fmt::Display for ArqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { need, have } => write!(
                f,
                "ARQ message truncated: need {need} bytes, have {have}; the packet was cut in \
                 transit or is not an ARQ message"
            ),
            Self::TooManyRanges(count) => write!(
                f,
                "NACK declares {count} ranges, more than the {MAX_NACK_RANGES} allowed: the peer \
                 is not speaking this NACK format"
            ),
            Self::Oversized { len, expected } => write!(
                f,
                "NACK is {len} bytes but its range count makes it {expected}: trailing bytes \
                 after the last range"
            ),
            Self::BadRange { index, first, bitmap } => write!(
                f,
                "NACK range {index} (first {first}, bitmap {bitmap:#018x}) is invalid: a range \
                 must start at a missing sequence number (bit 0 set), at or after cum_ack, at \
                 least 64 past the previous range, and within 2^31 of cum_ack"
            ),
        }
    }
}

impl std::error::Error for ArqError {}

/// [`Sender::sent`] in Reliable mode with the buffer full: the packet was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferFull;

impl fmt::Display for BufferFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the retransmit buffer is full of unacknowledged packets")
    }
}

impl std::error::Error for BufferFull {}

/// What the receiving hop promises the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Hand packets on in arrival order, never after their deadline; repair only in time.
    Deadline,
    /// Hand packets on in sequence order, each exactly once; repair until delivered.
    Reliable,
}

/// Parameters of one protected hop; both ends must use the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArqSettings {
    pub mode: Mode,
    /// Round-trip time of the link (the probe's mean RTT); every timer derives from it.
    pub rtt: Duration,
    /// Deadline mode: how long after its first send on this hop a packet is still useful.
    pub deadline: Duration,
    /// Sender buffer bound and receiver window, in packets (clamped to `1..=MAX_WINDOW`).
    pub buffer_packets: usize,
    /// Most ranges per NACK the receiver sends (clamped to `1..=MAX_NACK_RANGES`).
    pub max_nack_ranges: usize,
    /// Sequence number of the flow's first packet on this hop.
    pub first_seq: u32,
    /// How long a gap may be mere reordering before the receiver first asks for it. 0 (the
    /// default) asks at once; on a link that reorders, about its jitter saves spurious resends
    /// but delays every repair by as much.
    pub reorder: Duration,
}

impl ArqSettings {
    /// Defaults for a link of round-trip time `rtt`: deadline `2.5 × rtt + 5 ms`, 4,096 packets
    /// of buffer, 16 ranges (up to 1,024 sequence numbers) per NACK, first sequence number 0,
    /// no reordering allowance.
    pub fn for_rtt(mode: Mode, rtt: Duration) -> Self {
        let deadline = (rtt.saturating_mul(5) / 2).saturating_add(Duration::from_millis(5));
        Self {
            mode,
            rtt,
            deadline,
            buffer_packets: 4096,
            max_nack_ranges: 16,
            first_seq: 0,
            reorder: Duration::ZERO,
        }
    }

    fn window(&self) -> usize {
        self.buffer_packets.clamp(1, MAX_WINDOW)
    }
}

#[cfg(test)]
mod tests;
