//! Per-hop selective retransmission (ARQ) for protected flows on lossy links.
//!
//! Between two adjacent relays, the upstream relay keeps a [`Sender`] and the downstream relay a
//! [`Receiver`] for each protected flow (the agent keys them by flow ID). The sender numbers the
//! flow's packets with a per-hop sequence number and keeps them in a bounded retransmit buffer;
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
//!   burst, which no later packet would reveal. The one limit is memory: both ends hold at most
//!   [`ArqSettings::buffer_packets`] packets, so a sender running that far ahead of the receiver
//!   evicts its oldest packet (check [`Sender::is_full`] before sending), and a receiver whose
//!   reorder window overflows skips the oldest gap (counted as given up).
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
//! sequence number). Sequence numbers compare in serial-number arithmetic (RFC 1982), so the
//! flow may run through the u32 wrap. ARQ does not authenticate: a forged NACK makes the sender
//! resend (rate-limited) or free its buffer early, a forged data packet can skip the receiver's
//! window ahead.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

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

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Settings and wire formats
// ---------------------------------------------------------------------------------------------

/// What the receiving hop promises the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// The per-hop ARQ header in front of each protected data packet (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Per-hop sequence number.
    pub seq: u32,
    /// Microseconds since the packet's first send on this hop (0 on the original).
    pub age_us: u32,
}

impl Header {
    /// The 8 wire bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0; HEADER_LEN];
        b[..4].copy_from_slice(&self.seq.to_be_bytes());
        b[4..].copy_from_slice(&self.age_us.to_be_bytes());
        b
    }

    /// The header at the start of `b` and the payload after it.
    pub fn decode(b: &[u8]) -> Result<(Self, &[u8]), ArqError> {
        let (Some(head), Some(payload)) = (b.first_chunk::<HEADER_LEN>(), b.get(HEADER_LEN..))
        else {
            return Err(ArqError::Truncated { need: HEADER_LEN, have: b.len() });
        };
        let seq = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let age_us = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        Ok((Self { seq, age_us }, payload))
    }
}

/// A NACK body: cumulative ack plus the missing sequence numbers as `(first, bitmap)` ranges
/// (see the module docs for the wire layout and the rules ranges follow).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nack {
    /// The receiver will never ask for a sequence number before this one again (Reliable mode:
    /// it has received all of them).
    pub cum_ack: u32,
    /// `(first missing seq, bitmap)`: bit `i` set when `first + i` is missing.
    pub ranges: Vec<(u32, u64)>,
}

impl Nack {
    /// The wire bytes. At most [`MAX_NACK_RANGES`] ranges are written (a [`Receiver`] never
    /// makes more); ranges are written as given, so only a NACK following the range rules
    /// decodes again.
    pub fn encode(&self) -> Vec<u8> {
        let ranges = &self.ranges[..self.ranges.len().min(MAX_NACK_RANGES)];
        let mut b = Vec::with_capacity(NACK_FIXED_LEN + ranges.len() * NACK_RANGE_LEN);
        b.extend_from_slice(&self.cum_ack.to_be_bytes());
        b.extend_from_slice(&(ranges.len() as u16).to_be_bytes());
        for &(first, bitmap) in ranges {
            b.extend_from_slice(&first.to_be_bytes());
            b.extend_from_slice(&bitmap.to_be_bytes());
        }
        b
    }

    /// Parses and validates a NACK body: exact length, at most [`MAX_NACK_RANGES`] ranges, and
    /// every range starting at a missing sequence number, in order, within 2^31 of `cum_ack`.
    pub fn decode(b: &[u8]) -> Result<Self, ArqError> {
        let Some(fixed) = b.first_chunk::<NACK_FIXED_LEN>() else {
            return Err(ArqError::Truncated { need: NACK_FIXED_LEN, have: b.len() });
        };
        let cum_ack = u32::from_be_bytes([fixed[0], fixed[1], fixed[2], fixed[3]]);
        let count = usize::from(u16::from_be_bytes([fixed[4], fixed[5]]));
        if count > MAX_NACK_RANGES {
            return Err(ArqError::TooManyRanges(count));
        }
        let expected = NACK_FIXED_LEN + count * NACK_RANGE_LEN;
        if b.len() < expected {
            return Err(ArqError::Truncated { need: expected, have: b.len() });
        }
        if b.len() > expected {
            return Err(ArqError::Oversized { len: b.len(), expected });
        }
        let mut ranges = Vec::with_capacity(count);
        // Offset from cum_ack the next range may start at, so ranges neither overlap nor wrap.
        let mut min_offset = 0u64;
        for (index, chunk) in b[NACK_FIXED_LEN..].chunks_exact(NACK_RANGE_LEN).enumerate() {
            let mut first = [0; 4];
            let mut bitmap = [0; 8];
            first.copy_from_slice(&chunk[..4]);
            bitmap.copy_from_slice(&chunk[4..]);
            let (first, bitmap) = (u32::from_be_bytes(first), u64::from_be_bytes(bitmap));
            let offset = u64::from(first.wrapping_sub(cum_ack));
            if bitmap & 1 == 0 || offset < min_offset || offset + 63 >= u64::from(HALF) {
                return Err(ArqError::BadRange { index, first, bitmap });
            }
            min_offset = offset + 64;
            ranges.push((first, bitmap));
        }
        Ok(Self { cum_ack, ranges })
    }
}

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

/// Nanoseconds in `d`, saturating: timer arithmetic below is saturating u64, never a panic.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Turns the caller's `Instant`s into u64 nanoseconds since the first one seen, so timer sums
/// saturate instead of overflowing `Instant` (an instant before the first one counts as it).
#[derive(Default)]
struct Clock(Option<Instant>);

impl Clock {
    fn ns(&mut self, now: Instant) -> u64 {
        nanos(now.saturating_duration_since(*self.0.get_or_insert(now)))
    }
}

/// Timers of one hop in nanoseconds (see the module docs).
#[derive(Clone, Copy)]
struct Timers {
    rtt: u64,
    /// Also the one-way delay estimate and the sender's minimum gap between resends.
    half_rtt: u64,
    retry: u64,
    ack_interval: u64,
    budget: u64,
    reorder: u64,
}

impl Timers {
    fn new(s: &ArqSettings) -> Self {
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
    fn in_time(&self, age: u64) -> bool {
        age.saturating_add(self.half_rtt) <= self.budget
    }
}

/// `ns` in whole microseconds, rounded up so the receiver never thinks a packet younger than it
/// is.
fn age_us(ns: u64) -> u32 {
    u32::try_from(ns.div_ceil(1000)).unwrap_or(u32::MAX)
}

// ---------------------------------------------------------------------------------------------
// Sender
// ---------------------------------------------------------------------------------------------

/// Counters of a [`Sender`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Original packets registered with [`Sender::sent`].
    pub sent: u64,
    /// Copies resent (for NACKs and tail probes).
    pub resent: u64,
    /// Packets evicted unacknowledged because the buffer was full.
    pub dropped_full: u64,
    /// Deadline mode: packets dropped because a resend could no longer arrive in time.
    pub expired: u64,
    /// Packets in the buffer now.
    pub buffered: usize,
}

/// The upstream end of a protected hop: numbers packets and resends what is asked for.
pub struct Sender {
    mode: Mode,
    timers: Timers,
    window: usize,
    clock: Clock,
    /// Sequence number of `buffer[0]`; the next new packet gets `base + buffer.len()`.
    base: u32,
    /// Consecutive sequence numbers, oldest first.
    buffer: VecDeque<Entry>,
    /// Tail probes sent since the last NACK arrived (exponential backoff).
    probes: u32,
    stats: SenderStats,
}

struct Entry {
    payload: Vec<u8>,
    first_sent: u64,
    last_sent: u64,
}

impl Sender {
    /// A sender whose first packet gets `s.first_seq`.
    pub fn new(s: ArqSettings) -> Self {
        Self {
            mode: s.mode,
            timers: Timers::new(&s),
            window: s.window(),
            clock: Clock::default(),
            base: s.first_seq,
            buffer: VecDeque::new(),
            probes: 0,
            stats: SenderStats::default(),
        }
    }

    /// Registers a packet sent now and returns the hop header to put in front of it. If the
    /// buffer is full (after expiring), the oldest packet is evicted and counted.
    pub fn sent(&mut self, payload: &[u8], now: Instant) -> Header {
        let now = self.clock.ns(now);
        self.expire_ns(now);
        if self.buffer.len() >= self.window {
            self.buffer.pop_front();
            self.base = self.base.wrapping_add(1);
            self.stats.dropped_full += 1;
        }
        let seq = self.base.wrapping_add(self.buffer.len() as u32);
        self.buffer.push_back(Entry { payload: payload.to_vec(), first_sent: now, last_sent: now });
        self.stats.sent += 1;
        Header { seq, age_us: 0 }
    }

    /// Whether the next [`Sender::sent`] would evict an unacknowledged packet. Reliable flows
    /// should hold new packets back while it is true.
    pub fn is_full(&self) -> bool {
        self.buffer.len() >= self.window
    }

    /// Frees what `nack` acknowledges and returns the copies to resend now, each with its hop
    /// header: the sequence numbers it asks for that are still buffered, not resent within the
    /// last RTT/2 and (Deadline mode) able to arrive in time.
    pub fn on_nack(&mut self, nack: &Nack, now: Instant) -> Vec<(Header, Vec<u8>)> {
        let now = self.clock.ns(now);
        self.probes = 0;
        // A cum_ack behind the buffer or past the newest packet frees nothing.
        let acked = nack.cum_ack.wrapping_sub(self.base) as usize;
        if acked <= self.buffer.len() {
            self.buffer.drain(..acked);
            self.base = nack.cum_ack;
        }
        let mut out = Vec::new();
        for &(first, bitmap) in &nack.ranges {
            let mut bits = bitmap;
            while bits != 0 {
                let seq = first.wrapping_add(bits.trailing_zeros());
                bits &= bits - 1;
                let Some(entry) = self.buffer.get_mut(seq.wrapping_sub(self.base) as usize) else {
                    continue;
                };
                let age = now.saturating_sub(entry.first_sent);
                if now.saturating_sub(entry.last_sent) < self.timers.half_rtt
                    || (self.mode == Mode::Deadline && !self.timers.in_time(age))
                {
                    continue;
                }
                entry.last_sent = now;
                self.stats.resent += 1;
                out.push((Header { seq, age_us: age_us(age) }, entry.payload.clone()));
            }
        }
        out
    }

    /// Deadline mode: drops the packets a resend could no longer bring in time. (Reliable mode
    /// frees only what a NACK's cumulative ack covers, as the NACK arrives.)
    pub fn expire(&mut self, now: Instant) {
        let now = self.clock.ns(now);
        self.expire_ns(now);
    }

    fn expire_ns(&mut self, now: u64) {
        if self.mode != Mode::Deadline {
            return;
        }
        // First sends are in sequence order, so the expired packets are a prefix.
        while let Some(entry) = self.buffer.front() {
            if self.timers.in_time(now.saturating_sub(entry.first_sent)) {
                break;
            }
            self.buffer.pop_front();
            self.base = self.base.wrapping_add(1);
            self.stats.expired += 1;
        }
    }

    /// Reliable mode: a copy of the newest packet to send now if it went unacknowledged for
    /// `2 × RTT` (doubling per probe without a NACK in reply). Only a later packet reveals a
    /// loss to the receiver, so without this the last packets before a pause could stay lost.
    pub fn poll_probe(&mut self, now: Instant) -> Option<(Header, Vec<u8>)> {
        let now = self.clock.ns(now);
        if self.mode != Mode::Reliable {
            return None;
        }
        let seq = self.base.wrapping_add(self.buffer.len() as u32).wrapping_sub(1);
        let entry = self.buffer.back_mut()?;
        let pto = self.timers.rtt.saturating_mul(2 << self.probes.min(MAX_PROBE_BACKOFF));
        if now.saturating_sub(entry.last_sent) < pto {
            return None;
        }
        entry.last_sent = now;
        self.probes += 1;
        self.stats.resent += 1;
        let header = Header { seq, age_us: age_us(now.saturating_sub(entry.first_sent)) };
        Some((header, entry.payload.clone()))
    }

    /// Counters since creation, and the current buffer occupancy.
    pub fn stats(&self) -> SenderStats {
        SenderStats { buffered: self.buffer.len(), ..self.stats }
    }
}

// ---------------------------------------------------------------------------------------------
// Receiver
// ---------------------------------------------------------------------------------------------

/// Counters of a [`Receiver`]. Every arrival counts once in `received` and, unless Reliable
/// mode is still holding it, once more in `delivered`, `duplicates` or `late`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Data packets that arrived (originals, resends, duplicates).
    pub received: u64,
    /// Arrivals of a sequence number already received (or already skipped).
    pub duplicates: u64,
    /// Packets handed on.
    pub delivered: u64,
    /// Deadline mode: arrivals after their deadline, not handed on.
    pub late: u64,
    /// Packets that arrived after being NACKed, in time.
    pub recovered: u64,
    /// Sequence numbers abandoned while missing: deadline passed, or the window overflowed.
    pub given_up: u64,
    /// NACKs (including pure acks) returned by [`Receiver::poll_nack`].
    pub nacks: u64,
}

/// The downstream end of a protected hop: hands packets on, tracks gaps and asks for them.
pub struct Receiver {
    mode: Mode,
    timers: Timers,
    window: usize,
    max_ranges: usize,
    clock: Clock,
    /// Oldest sequence number still tracked (the cumulative ack); `slots[i]` is `base + i`, up
    /// to the newest sequence number seen.
    base: u32,
    slots: VecDeque<Slot>,
    /// `Slot::Missing` entries in `slots`.
    missing: usize,
    /// No gap is due for asking or giving up before this time (ns), so polls skip the scan.
    next_check: u64,
    /// Reliable mode: the cumulative ack last sent, when, and whether a duplicate arrived since
    /// (the sender is resending what we already have: our ack was probably lost).
    acked: u32,
    last_nack: Option<u64>,
    duplicate_seen: bool,
    stats: ReceiverStats,
}

enum Slot {
    Missing(Gap),
    /// Reliable mode: received, waiting for an earlier gap to fill.
    Held(Vec<u8>),
    /// Received (or, Deadline mode, given up).
    Done,
}

struct Gap {
    /// When to ask (again) next.
    next_ask: u64,
    /// Asked for at least once (an arrival then counts as recovered).
    asked: bool,
    /// Deadline mode: when to give up (an upper bound: the deadline of the packet that revealed
    /// the gap, sent after the missing one).
    deadline: u64,
}

impl Receiver {
    /// A receiver expecting `s.first_seq` first.
    pub fn new(s: ArqSettings) -> Self {
        Self {
            mode: s.mode,
            timers: Timers::new(&s),
            window: s.window(),
            max_ranges: s.max_nack_ranges.clamp(1, MAX_NACK_RANGES),
            clock: Clock::default(),
            base: s.first_seq,
            slots: VecDeque::new(),
            missing: 0,
            next_check: 0,
            acked: s.first_seq,
            last_nack: None,
            duplicate_seen: false,
            stats: ReceiverStats::default(),
        }
    }

    /// A data packet (original or resend) with hop header `header` arrived now. Returns the
    /// packets to hand on now, in order: Deadline mode, this one if it is new and in time;
    /// Reliable mode, every packet now deliverable in sequence.
    pub fn on_packet(&mut self, header: Header, payload: &[u8], now: Instant) -> Vec<Vec<u8>> {
        let now = self.clock.ns(now);
        self.stats.received += 1;
        let age = u64::from(header.age_us) * 1000;
        let late = self.mode == Mode::Deadline && !self.timers.in_time(age);
        // Deadline of any gap this packet reveals: its own (the missing ones were sent before).
        let deadline = match self.mode {
            Mode::Deadline => now.saturating_add(
                self.timers.budget.saturating_sub(age.saturating_add(self.timers.half_rtt)),
            ),
            Mode::Reliable => u64::MAX,
        };
        let offset = header.seq.wrapping_sub(self.base);
        if offset >= HALF {
            return self.stale(late);
        }
        let mut out = Vec::new();
        let mut offset = offset as usize;
        if offset >= self.slots.len() {
            offset = self.extend(offset, now, deadline, &mut out);
        }
        let Slot::Missing(gap) = &self.slots[offset] else {
            return self.stale(late);
        };
        let asked = gap.asked;
        self.missing -= 1;
        if late {
            self.stats.late += 1;
            self.slots[offset] = Slot::Done;
        } else {
            self.stats.recovered += u64::from(asked);
            match self.mode {
                Mode::Deadline => {
                    self.slots[offset] = Slot::Done;
                    self.stats.delivered += 1;
                    out.push(payload.to_vec());
                }
                Mode::Reliable => self.slots[offset] = Slot::Held(payload.to_vec()),
            }
        }
        self.advance(&mut out);
        out
    }

    /// An arrival for a sequence number already received or abandoned.
    fn stale(&mut self, late: bool) -> Vec<Vec<u8>> {
        if late {
            self.stats.late += 1;
        } else {
            self.stats.duplicates += 1;
            self.duplicate_seen = true;
        }
        Vec::new()
    }

    /// Tracks every sequence number up to `base + offset` (new gaps and the arrival itself as
    /// missing), first skipping the oldest ones if the window would overflow. Returns the
    /// arrival's offset after the skip.
    fn extend(
        &mut self,
        mut offset: usize,
        now: u64,
        deadline: u64,
        out: &mut Vec<Vec<u8>>,
    ) -> usize {
        if offset >= self.window {
            let excess = offset + 1 - self.window;
            let tracked = excess.min(self.slots.len());
            for slot in self.slots.drain(..tracked) {
                match slot {
                    Slot::Missing(_) => {
                        self.missing -= 1;
                        self.stats.given_up += 1;
                    }
                    Slot::Held(payload) => {
                        self.stats.delivered += 1;
                        out.push(payload);
                    }
                    Slot::Done => {}
                }
            }
            // Sequence numbers jumped over without ever being tracked.
            self.stats.given_up += (excess - tracked) as u64;
            self.base = self.base.wrapping_add(excess as u32);
            offset -= excess;
        }
        let next_ask = now.saturating_add(self.timers.reorder);
        if offset > self.slots.len() {
            self.next_check = self.next_check.min(next_ask);
        }
        self.missing += offset + 1 - self.slots.len();
        let gap = || Slot::Missing(Gap { next_ask, asked: false, deadline });
        self.slots.resize_with(offset + 1, gap);
        offset
    }

    /// Releases the received (and given-up) prefix of the window, handing held packets on.
    fn advance(&mut self, out: &mut Vec<Vec<u8>>) {
        while matches!(self.slots.front(), Some(Slot::Done | Slot::Held(_))) {
            if let Some(Slot::Held(payload)) = self.slots.pop_front() {
                self.stats.delivered += 1;
                out.push(payload);
            }
            self.base = self.base.wrapping_add(1);
        }
    }

    /// The NACK to send now, if any: the gaps due for a (re-)ask, at most
    /// [`ArqSettings::max_nack_ranges`] ranges (call again while it returns one: the rest stay
    /// due), or in Reliable mode a pure ack when one is due. Deadline mode gives up gaps whose
    /// deadline passed here, so poll at least every few milliseconds.
    pub fn poll_nack(&mut self, now: Instant) -> Option<Nack> {
        let now = self.clock.ns(now);
        let mut ranges = Vec::new();
        if self.missing > 0 && now >= self.next_check {
            self.scan(now, &mut ranges);
            // Only given-up slots can become releasable here; held packets wait for an arrival.
            self.advance(&mut Vec::new());
        }
        if ranges.is_empty() && !self.ack_due(now) {
            return None;
        }
        self.acked = self.base;
        self.last_nack = Some(now);
        self.duplicate_seen = false;
        self.stats.nacks += 1;
        Some(Nack { cum_ack: self.base, ranges })
    }

    /// Gives up expired gaps, collects the due ones into `ranges` and sets `next_check`.
    fn scan(&mut self, now: u64, ranges: &mut Vec<(u32, u64)>) {
        let mut next_check = u64::MAX;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Slot::Missing(gap) = slot else { continue };
            if self.mode == Mode::Deadline {
                if now > gap.deadline {
                    *slot = Slot::Done;
                    self.missing -= 1;
                    self.stats.given_up += 1;
                    continue;
                }
                next_check = next_check.min(gap.deadline.saturating_add(1));
                // A resend asked for now would arrive after the deadline: just wait it out.
                if gap.deadline - now < self.timers.rtt {
                    continue;
                }
            }
            if now < gap.next_ask {
                next_check = next_check.min(gap.next_ask);
                continue;
            }
            let seq = self.base.wrapping_add(i as u32);
            if !add_to_ranges(ranges, seq, self.max_ranges) {
                // This NACK is full; the rest are due at the next poll.
                next_check = now;
                break;
            }
            gap.asked = true;
            gap.next_ask = now.saturating_add(self.timers.retry);
            next_check = next_check.min(gap.next_ask);
        }
        self.next_check = next_check;
    }

    fn ack_due(&self, now: u64) -> bool {
        if self.mode != Mode::Reliable || (self.base == self.acked && !self.duplicate_seen) {
            return false;
        }
        let waited =
            self.last_nack.is_none_or(|at| now >= at.saturating_add(self.timers.ack_interval));
        waited || self.base.wrapping_sub(self.acked) as usize >= self.window / 4
    }

    /// Counters since creation.
    pub fn stats(&self) -> ReceiverStats {
        self.stats
    }
}

/// Adds `seq` (ascending across calls) to the last range if it fits its bitmap, else starts a
/// new range if fewer than `max` exist. False when the NACK is full.
fn add_to_ranges(ranges: &mut Vec<(u32, u64)>, seq: u32, max: usize) -> bool {
    if let Some((first, bitmap)) = ranges.last_mut() {
        let bit = seq.wrapping_sub(*first);
        if bit < 64 {
            *bitmap |= 1 << bit;
            return true;
        }
    }
    if ranges.len() >= max {
        return false;
    }
    ranges.push((seq, 1));
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prng::XorShift;

    /// Loss process of one direction of the simulated link.
    #[derive(Clone, Copy, Debug)]
    enum Loss {
        Bernoulli(f64),
        /// Gilbert–Elliott: per-packet chances to enter and leave the bad state, and the loss
        /// rate in each state.
        Bursty {
            to_bad: f64,
            to_good: f64,
            good: f64,
            bad: f64,
        },
    }

    /// One direction of a link: delay `delay_ms` plus uniform jitter up to `jitter_ms` (so
    /// packets reorder when it is not 0), random loss.
    struct Link {
        delay_ms: u64,
        jitter_ms: u64,
        loss: Loss,
        bad: bool,
        rng: XorShift,
        queue: VecDeque<(u64, Vec<u8>)>,
    }

    impl Link {
        fn new(delay_ms: u64, jitter_ms: u64, loss: Loss, seed: u64) -> Self {
            let (bad, rng, queue) = (false, XorShift::new(seed), VecDeque::new());
            Self { delay_ms, jitter_ms, loss, bad, rng, queue }
        }

        fn send(&mut self, tick: u64, bytes: Vec<u8>) {
            let lost = match self.loss {
                Loss::Bernoulli(p) => self.rng.chance(p),
                Loss::Bursty { to_bad, to_good, good, bad } => {
                    let flip = if self.bad { to_good } else { to_bad };
                    self.bad ^= self.rng.chance(flip);
                    self.rng.chance(if self.bad { bad } else { good })
                }
            };
            if !lost {
                let at = tick + self.delay_ms + self.rng.below(self.jitter_ms + 1);
                let pos = self.queue.partition_point(|&(t, _)| t <= at);
                self.queue.insert(pos, (at, bytes));
            }
        }

        fn recv(&mut self, tick: u64) -> Option<Vec<u8>> {
            if self.queue.front()?.0 > tick {
                return None;
            }
            self.queue.pop_front().map(|(_, bytes)| bytes)
        }
    }

    /// One-way delay of the simulated link; RTT is twice this.
    const DELAY_MS: u64 = 10;

    struct Run {
        mode: Mode,
        first_seq: u32,
        packets: u64,
        data_loss: Loss,
        nack_loss: Loss,
        seed: u64,
        /// False: NACKs never reach the sender (the no-ARQ baseline).
        arq: bool,
        jitter_ms: u64,
        reorder: Duration,
    }

    impl Run {
        fn new(mode: Mode, loss: f64) -> Self {
            Self {
                mode,
                first_seq: 0,
                packets: 10_000,
                data_loss: Loss::Bernoulli(loss),
                nack_loss: Loss::Bernoulli(loss),
                seed: 1,
                arq: true,
                jitter_ms: 0,
                reorder: Duration::ZERO,
            }
        }
    }

    #[derive(Default)]
    struct Outcome {
        /// Packet indices in delivery order.
        delivered: Vec<u64>,
        tx: SenderStats,
        rx: ReceiverStats,
        max_buffered: usize,
        first_seq: u32,
        last_seq: u32,
    }

    impl Outcome {
        fn ratio(&self, packets: u64) -> f64 {
            self.delivered.len() as f64 / packets as f64
        }
    }

    /// Sends one packet per millisecond of virtual time through a lossy link both ways, polls
    /// both ends every millisecond, and checks on the way: no packet delivered twice; Deadline
    /// mode, none after its deadline (plus the jitter, which the receiver cannot see), every
    /// packet handed on the moment it arrives, and without jitter every original at once (with
    /// it, a resend may overtake its original); the sender buffer within its bound.
    fn simulate(run: &Run) -> Outcome {
        let mut settings = ArqSettings::for_rtt(run.mode, Duration::from_millis(2 * DELAY_MS));
        settings.first_seq = run.first_seq;
        settings.reorder = run.reorder;
        let budget_ms = settings.deadline.as_millis() as u64;
        let mut tx = Sender::new(settings);
        let mut rx = Receiver::new(settings);
        let mut data = Link::new(DELAY_MS, run.jitter_ms, run.data_loss, run.seed);
        let mut nacks = Link::new(DELAY_MS, run.jitter_ms, run.nack_loss, !run.seed);
        let frame = |h: Header, payload: &[u8]| [&h.encode()[..], payload].concat();
        let t0 = Instant::now();
        let mut out = Outcome::default();
        let mut seen = vec![false; run.packets as usize];
        for tick in 0..run.packets + 120_000 {
            let now = t0 + Duration::from_millis(tick);
            if tick < run.packets {
                // Packet index ‖ send tick ‖ filler.
                let payload = [tick.to_le_bytes(), tick.to_le_bytes(), [0xab; 8]].concat();
                let h = tx.sent(&payload, now);
                if tick == 0 {
                    out.first_seq = h.seq;
                }
                out.last_seq = h.seq;
                data.send(tick, frame(h, &payload));
            }
            while let Some(bytes) = data.recv(tick) {
                let (h, payload) = Header::decode(&bytes).unwrap();
                let got = rx.on_packet(h, payload, now);
                if run.mode == Mode::Deadline {
                    // Handed on as it arrives, or not at all; an original (never late on this
                    // link, never duplicated on a FIFO link) always, whatever gap precedes it.
                    assert!(got.is_empty() || got == [payload], "tick {tick}");
                    if h.age_us == 0 && run.jitter_ms == 0 {
                        assert_eq!(got, [payload], "original seq {} held back", h.seq);
                    }
                }
                for p in got {
                    let index = u64::from_le_bytes(p[..8].try_into().unwrap());
                    let sent = u64::from_le_bytes(p[8..16].try_into().unwrap());
                    assert!(!seen[index as usize], "packet {index} delivered twice");
                    seen[index as usize] = true;
                    if run.mode == Mode::Deadline {
                        let due = sent + budget_ms + run.jitter_ms;
                        assert!(tick <= due, "packet {index} delivered at {tick}");
                    }
                    out.delivered.push(index);
                }
            }
            while let Some(bytes) = nacks.recv(tick) {
                let nack = Nack::decode(&bytes).unwrap();
                if run.arq {
                    for (h, payload) in tx.on_nack(&nack, now) {
                        data.send(tick, frame(h, &payload));
                    }
                }
            }
            if let Some(nack) = rx.poll_nack(now) {
                nacks.send(tick, nack.encode());
            }
            tx.expire(now);
            if let Some((h, payload)) = tx.poll_probe(now) {
                data.send(tick, frame(h, &payload));
            }
            let buffered = tx.stats().buffered;
            assert!(buffered <= settings.buffer_packets);
            out.max_buffered = out.max_buffered.max(buffered);
            let finished = match run.mode {
                Mode::Reliable => out.delivered.len() as u64 == run.packets && buffered == 0,
                Mode::Deadline => tick >= run.packets + budget_ms + 2 * DELAY_MS,
            };
            if tick >= run.packets && finished {
                break;
            }
        }
        out.tx = tx.stats();
        out.rx = rx.stats();
        out
    }

    fn report(name: &str, run: &Run, o: &Outcome) {
        println!(
            "{name}: delivered {}/{} ({:.3} %), resent {}, NACKs {}, recovered {}, late {}, \
             given up {}, duplicates {}, expired {}, max buffered {}",
            o.delivered.len(),
            run.packets,
            100.0 * o.ratio(run.packets),
            o.tx.resent,
            o.rx.nacks,
            o.rx.recovered,
            o.rx.late,
            o.rx.given_up,
            o.rx.duplicates,
            o.tx.expired,
            o.max_buffered,
        );
    }

    const BURSTS: Loss = Loss::Bursty { to_bad: 0.01, to_good: 0.2, good: 0.01, bad: 0.5 };

    fn assert_reliable(run: &Run) -> Outcome {
        let o = simulate(run);
        let expected: Vec<u64> = (0..run.packets).collect();
        assert!(o.delivered == expected, "{:?}: not every packet once and in order", run.data_loss);
        assert_eq!(o.rx.delivered, run.packets);
        assert_eq!(o.rx.received, o.rx.delivered + o.rx.duplicates);
        assert_eq!((o.rx.given_up, o.rx.late, o.tx.dropped_full, o.tx.buffered), (0, 0, 0, 0));
        o
    }

    #[test]
    fn reliable_mode_delivers_everything_once_in_order() {
        for loss in [0.05, 0.2] {
            let run = Run::new(Mode::Reliable, loss);
            let o = assert_reliable(&run);
            report(&format!("reliable, {}% loss both ways", loss * 100.0), &run, &o);
            assert!(o.rx.recovered > 0);
        }
        let run = Run { data_loss: BURSTS, nack_loss: BURSTS, ..Run::new(Mode::Reliable, 0.0) };
        report("reliable, Gilbert-Elliott bursts both ways", &run, &assert_reliable(&run));
    }

    #[test]
    fn deadline_mode_repairs_in_time_and_never_late() {
        let run = Run::new(Mode::Deadline, 0.05);
        let with = simulate(&run);
        let without = simulate(&Run { arq: false, ..Run::new(Mode::Deadline, 0.05) });
        report("deadline, 5% loss both ways, ARQ", &run, &with);
        report("deadline, 5% loss both ways, no ARQ", &run, &without);
        assert!((0.94..0.96).contains(&without.ratio(run.packets)));
        assert!(with.ratio(run.packets) >= 0.995, "{}", with.ratio(run.packets));
        // Arrival order: only originals and in-time repairs are handed on, at once.
        assert_eq!(with.rx.received, with.rx.delivered + with.rx.duplicates + with.rx.late);
        assert_eq!(with.rx.delivered, with.delivered.len() as u64);
        assert!(with.rx.given_up > 0 && with.tx.expired > 0);

        for (name, loss) in [("20% loss", Loss::Bernoulli(0.2)), ("bursts", BURSTS)] {
            let run = Run { data_loss: loss, nack_loss: loss, ..Run::new(Mode::Deadline, 0.0) };
            report(&format!("deadline, {name} both ways, ARQ"), &run, &simulate(&run));
        }
    }

    #[test]
    fn sequence_numbers_wrap() {
        for mode in [Mode::Reliable, Mode::Deadline] {
            let run = Run { first_seq: u32::MAX - 500, seed: 7, ..Run::new(mode, 0.05) };
            let o = if mode == Mode::Reliable { assert_reliable(&run) } else { simulate(&run) };
            report(&format!("{mode:?}, 5% loss, wrapping"), &run, &o);
            assert_eq!(o.first_seq, u32::MAX - 500);
            assert_eq!(o.last_seq, run.first_seq.wrapping_add(run.packets as u32 - 1));
            assert!(o.last_seq < o.first_seq);
            assert!(o.ratio(run.packets) >= 0.995);
        }
    }

    #[test]
    fn jitter_and_reordering() {
        // Up to 8 ms of jitter each way reorders packets: asked for at once, many gaps are
        // just late originals, so resends are spurious (duplicates); allowing 8 ms of reordering
        // avoids most of them. Either way delivery stays exactly once, and in order in Reliable
        // mode. Deadline mode estimates the one-way delay as RTT/2, so a delivery can trail the
        // true deadline by at most the jitter.
        for mode in [Mode::Reliable, Mode::Deadline] {
            let mut duplicates = Vec::new();
            for reorder in [0, 8] {
                let reorder = Duration::from_millis(reorder);
                let run = Run { jitter_ms: 8, seed: 3, reorder, ..Run::new(mode, 0.05) };
                let o = if mode == Mode::Reliable { assert_reliable(&run) } else { simulate(&run) };
                report(&format!("{mode:?}, 5% loss, 0-8 ms jitter, {reorder:?}"), &run, &o);
                assert!(o.ratio(run.packets) >= 0.99);
                duplicates.push(o.rx.duplicates);
            }
            assert!(duplicates[1] * 5 < duplicates[0], "{duplicates:?}");
        }
    }

    /// A valid NACK: ranges in order from cum_ack, at least 64 apart, bit 0 set.
    fn random_nack(rng: &mut XorShift) -> Nack {
        let cum_ack = rng.next_u64() as u32;
        let mut first = cum_ack.wrapping_add(rng.below(1000) as u32);
        let ranges = (0..rng.below(MAX_NACK_RANGES as u64 + 1))
            .map(|_| {
                let range = (first, rng.next_u64() | 1);
                first = first.wrapping_add(64 + rng.below(5000) as u32);
                range
            })
            .collect();
        Nack { cum_ack, ranges }
    }

    #[test]
    fn nack_round_trips_and_garbage_never_panics() {
        let mut rng = XorShift::new(0xac);
        for _ in 0..2000 {
            let nack = random_nack(&mut rng);
            let bytes = nack.encode();
            assert_eq!(bytes.len(), NACK_FIXED_LEN + nack.ranges.len() * NACK_RANGE_LEN);
            assert_eq!(Nack::decode(&bytes), Ok(nack));
        }
        let (mut ok, mut err) = (0, 0);
        for _ in 0..2000 {
            // Pure noise, or a valid NACK truncated, extended or with a byte flipped.
            let mut bytes = random_nack(&mut rng).encode();
            match rng.below(4) {
                0 => {
                    let len = rng.below(800) as usize;
                    bytes = rng.bytes(len);
                }
                1 => bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize),
                2 => {
                    let len = 1 + rng.below(20) as usize;
                    bytes.extend(rng.bytes(len));
                }
                _ => {
                    let at = rng.below(bytes.len() as u64) as usize;
                    bytes[at] ^= 1 << rng.below(8);
                }
            }
            let result = std::panic::catch_unwind(|| Nack::decode(&bytes));
            match result.expect("decode panicked") {
                Ok(nack) => {
                    ok += 1;
                    assert_eq!(nack.encode(), bytes);
                }
                Err(_) => err += 1,
            }
        }
        assert!(ok > 100 && err > 100, "{ok} ok, {err} errors");
    }

    #[test]
    fn bad_messages_are_errors() {
        let nack = |cum_ack, ranges: &[(u32, u64)]| Nack { cum_ack, ranges: ranges.to_vec() };
        assert_eq!(Nack::decode(&[0; 5]), Err(ArqError::Truncated { need: 6, have: 5 }));
        let mut two = nack(10, &[(10, 1), (74, 3)]).encode();
        assert_eq!(Nack::decode(&two[..29]), Err(ArqError::Truncated { need: 30, have: 29 }));
        two.push(0);
        assert_eq!(Nack::decode(&two), Err(ArqError::Oversized { len: 31, expected: 30 }));
        let mut many = nack(0, &[]).encode();
        many[4..6].copy_from_slice(&65u16.to_be_bytes());
        assert_eq!(Nack::decode(&many), Err(ArqError::TooManyRanges(65)));
        let bad = |index, first, bitmap| Err(ArqError::BadRange { index, first, bitmap });
        // Bit 0 clear; behind cum_ack; overlapping; reaching 2^31 past cum_ack.
        assert_eq!(Nack::decode(&nack(10, &[(10, 2)]).encode()), bad(0, 10, 2));
        assert_eq!(Nack::decode(&nack(10, &[(9, 1)]).encode()), bad(0, 9, 1));
        assert_eq!(Nack::decode(&nack(10, &[(10, 1), (73, 1)]).encode()), bad(1, 73, 1));
        let far = 10 + HALF - 63;
        assert_eq!(Nack::decode(&nack(10, &[(far, 1)]).encode()), bad(0, far, 1));
        // Valid across the wrap, and a pure ack.
        let wrapping = nack(u32::MAX - 3, &[(u32::MAX, 5), (63, 1)]);
        assert_eq!(Nack::decode(&wrapping.encode()), Ok(wrapping));
        assert_eq!(Nack::decode(&nack(7, &[]).encode()), Ok(nack(7, &[])));
        // Encode writes at most MAX_NACK_RANGES ranges.
        let long = Nack { cum_ack: 0, ranges: (0..100).map(|i| (i * 64, 1)).collect() };
        assert_eq!(Nack::decode(&long.encode()).unwrap().ranges, long.ranges[..64]);

        let h = Header { seq: 0xdead_beef, age_us: 12_345 };
        let packet = [&h.encode()[..], b"payload"].concat();
        assert_eq!(Header::decode(&packet), Ok((h, &b"payload"[..])));
        assert_eq!(Header::decode(&packet[..8]), Ok((h, &[][..])));
        assert_eq!(Header::decode(&packet[..7]), Err(ArqError::Truncated { need: 8, have: 7 }));
        assert!(ArqError::TooManyRanges(65).to_string().contains("more than the 64"));
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn settings(mode: Mode) -> ArqSettings {
        ArqSettings::for_rtt(mode, Duration::from_millis(20))
    }

    fn header(seq: u32) -> Header {
        Header { seq, age_us: 0 }
    }

    #[test]
    fn receiver_asks_compactly_and_re_asks_every_retry() {
        let t0 = Instant::now();
        let mut rx = Receiver::new(ArqSettings { max_nack_ranges: 2, ..settings(Mode::Reliable) });
        for seq in [0, 2, 3, 70, 200] {
            rx.on_packet(header(seq), &[seq as u8], t0);
        }
        // Gaps 1, 4..=69, 71..=199: three ranges, two per NACK, asked for at once.
        let all_but = |first: u32, last: u32, except: &[u32]| {
            (first..=last).filter(|s| !except.contains(s)).fold(0u64, |b, s| b | 1 << (s - first))
        };
        let first = rx.poll_nack(t0).unwrap();
        assert_eq!(first.cum_ack, 1);
        assert_eq!(first.ranges, [(1, all_but(1, 64, &[2, 3])), (65, all_but(65, 128, &[70]))]);
        let second = rx.poll_nack(t0).unwrap();
        assert_eq!(second.ranges, [(129, u64::MAX), (193, 0x7f)]);
        assert_eq!(rx.poll_nack(t0), None);
        // Nothing again before the retry interval (22 ms at 20 ms RTT), everything after it.
        assert_eq!(rx.poll_nack(ms(t0, 21)), None);
        rx.on_packet(header(1), &[1], ms(t0, 21));
        let again = rx.poll_nack(ms(t0, 22)).unwrap();
        assert_eq!(again.cum_ack, 4);
        assert_eq!(again.ranges[0], (4, all_but(4, 67, &[])));
        assert_eq!(rx.stats().recovered, 1);
        assert_eq!(rx.stats().delivered, 4);
        let stats = rx.stats();
        assert_eq!((stats.received, stats.nacks), (6, 3));
    }

    #[test]
    fn deadline_receiver_stops_asking_in_time_and_drops_late_packets() {
        let t0 = Instant::now();
        // RTT 20 ms, deadline 55 ms: a gap revealed by a fresh packet is due 45 ms after its
        // arrival (55 − RTT/2), asked for until 20 ms before that, given up after it.
        let mut rx = Receiver::new(settings(Mode::Deadline));
        assert_eq!(rx.on_packet(header(0), b"a", t0), [b"a"]);
        assert_eq!(rx.on_packet(header(2), b"c", t0), [b"c"]);
        assert_eq!(rx.poll_nack(t0).unwrap().ranges, [(1, 1)]);
        assert_eq!(rx.poll_nack(ms(t0, 22)).unwrap().ranges, [(1, 1)]);
        assert_eq!(rx.poll_nack(ms(t0, 44)), None);
        assert_eq!(rx.poll_nack(ms(t0, 45)), None);
        assert_eq!(rx.stats().given_up, 0);
        let nack = rx.poll_nack(ms(t0, 46));
        assert_eq!(rx.stats().given_up, 1);
        // The give-up moves the cumulative ack, but Deadline mode sends no pure acks.
        assert_eq!(nack, None);
        // The repair arriving now is late, a duplicate of 2 is a duplicate.
        assert_eq!(rx.on_packet(Header { seq: 1, age_us: 46_000 }, b"b", ms(t0, 46)).len(), 0);
        assert_eq!(rx.on_packet(header(2), b"c", ms(t0, 46)).len(), 0);
        // A repair 45 ms old has 0 ms left after RTT/2: delivered; 45.001 ms: late.
        rx.on_packet(header(5), b"f", ms(t0, 50));
        let age = |us| Header { seq: 3, age_us: us };
        assert_eq!(rx.on_packet(age(45_001), b"d", ms(t0, 50)).len(), 0);
        assert_eq!(rx.on_packet(Header { seq: 4, age_us: 45_000 }, b"e", ms(t0, 50)), [b"e"]);
        let stats = rx.stats();
        assert_eq!((stats.late, stats.duplicates, stats.delivered), (2, 1, 4));
        assert_eq!(stats.received, stats.late + stats.duplicates + stats.delivered);
    }

    #[test]
    fn sender_resends_rate_limited_and_only_in_time() {
        let t0 = Instant::now();
        let mut tx = Sender::new(settings(Mode::Deadline));
        for i in 0..3u8 {
            assert_eq!(tx.sent(&[i], ms(t0, u64::from(i))), header(u32::from(i)));
        }
        let nack = Nack { cum_ack: 0, ranges: vec![(0, 0b101), (1, 1)] };
        // Not within RTT/2 of the original send.
        assert!(tx.on_nack(&nack, ms(t0, 9)).is_empty());
        let resent = tx.on_nack(&nack, ms(t0, 12));
        let h = |seq, age_ms: u32| Header { seq, age_us: age_ms * 1000 };
        assert_eq!(resent, [(h(0, 12), vec![0]), (h(2, 10), vec![2]), (h(1, 11), vec![1])]);
        assert!(tx.on_nack(&nack, ms(t0, 21)).is_empty());
        // At 46 ms a resend of seq 0 (46 ms old) would arrive after 55 ms; 1 and 2 still make it.
        let in_time = tx.on_nack(&nack, ms(t0, 46));
        assert_eq!(in_time.iter().map(|(h, _)| h.seq).collect::<Vec<_>>(), [2, 1]);
        tx.expire(ms(t0, 46));
        assert_eq!(tx.stats().expired, 1);
        assert_eq!(tx.stats().buffered, 2);
        // Unknown and acknowledged sequence numbers are ignored; cum_ack frees the buffer.
        let ack = Nack { cum_ack: 2, ranges: vec![(1, 1), (100, 1)] };
        assert!(tx.on_nack(&ack, ms(t0, 80)).is_empty());
        assert_eq!(tx.stats().buffered, 1);
        // A cum_ack past the newest packet is bogus and frees nothing.
        tx.on_nack(&Nack { cum_ack: 9, ranges: vec![] }, ms(t0, 80));
        let stats = tx.stats();
        assert_eq!((stats.sent, stats.resent, stats.buffered), (3, 5, 1));
    }

    #[test]
    fn reliable_tail_loss_is_probed_with_backoff() {
        let t0 = Instant::now();
        let mut tx = Sender::new(settings(Mode::Reliable));
        let mut rx = Receiver::new(settings(Mode::Reliable));
        let (h0, h1) = (tx.sent(b"x", t0), tx.sent(b"y", t0));
        assert_eq!(rx.on_packet(h0, b"x", ms(t0, 10)), [b"x"]);
        // Packet 1 is lost and nothing follows: the receiver cannot know. Its ack of 0 is lost
        // too. The sender probes with packet 1 after 2 RTT, then after 4, 8 RTT.
        assert_eq!(rx.poll_nack(ms(t0, 10)).map(|n| n.cum_ack), Some(1));
        assert_eq!(tx.poll_probe(ms(t0, 39)), None);
        assert_eq!(
            tx.poll_probe(ms(t0, 40)),
            Some((Header { seq: 1, age_us: 40_000 }, b"y".into()))
        );
        assert_eq!(tx.poll_probe(ms(t0, 119)), None);
        let (probe, payload) = tx.poll_probe(ms(t0, 120)).unwrap();
        assert_eq!(probe.seq, h1.seq);
        assert_eq!(tx.poll_probe(ms(t0, 279)), None);
        assert_eq!(rx.on_packet(probe, &payload, ms(t0, 130)), [b"y"]);
        // The receiver acks after RTT/4 since its last NACK; that frees the sender.
        let ack = rx.poll_nack(ms(t0, 130)).unwrap();
        assert_eq!(ack, Nack { cum_ack: 2, ranges: vec![] });
        tx.on_nack(&ack, ms(t0, 140));
        assert_eq!(tx.stats().buffered, 0);
        assert_eq!(tx.poll_probe(ms(t0, 1000)), None);
        // A duplicate means the sender missed our ack: ack again though nothing moved.
        assert_eq!(rx.on_packet(probe, &payload, ms(t0, 140)).len(), 0);
        assert_eq!(rx.poll_nack(ms(t0, 140)), Some(Nack { cum_ack: 2, ranges: vec![] }));
        assert_eq!(rx.poll_nack(ms(t0, 200)), None);
        // No probes in Deadline mode: nothing acknowledges there.
        let mut tx = Sender::new(settings(Mode::Deadline));
        tx.sent(b"x", t0);
        assert_eq!(tx.poll_probe(ms(t0, 50)), None);
    }

    #[test]
    fn buffers_are_bounded() {
        let t0 = Instant::now();
        for mode in [Mode::Deadline, Mode::Reliable] {
            let s = ArqSettings { buffer_packets: 16, ..settings(mode) };
            let mut tx = Sender::new(s);
            for i in 0..1000u32 {
                assert_eq!(tx.sent(&i.to_le_bytes(), t0).seq, i);
                assert!(tx.stats().buffered <= 16);
            }
            assert!(tx.is_full());
            assert_eq!(tx.stats().dropped_full, 1000 - 16);
            // The evicted ones are gone; the buffered ones are still there.
            let nack = Nack { cum_ack: 0, ranges: vec![(980, 1 | 1 << 19)] };
            let resent = tx.on_nack(&nack, ms(t0, 30));
            assert_eq!(
                resent,
                [(Header { seq: 999, age_us: 30_000 }, 999u32.to_le_bytes().into())]
            );
        }
        // Deadline mode expires before evicting: a paced flow never overflows.
        let mut tx = Sender::new(ArqSettings { buffer_packets: 50, ..settings(Mode::Deadline) });
        for i in 0..1000 {
            tx.sent(b"p", ms(t0, i));
        }
        // At 999 ms the packets of the last 45 ms (age + RTT/2 <= 55 ms) are kept.
        assert_eq!(
            (tx.stats().dropped_full, tx.stats().expired, tx.stats().buffered),
            (0, 954, 46)
        );

        // Reliable receiver: a gap that never fills is skipped once the window overflows, and
        // the held packets go on in order.
        let mut rx = Receiver::new(ArqSettings { buffer_packets: 8, ..settings(Mode::Reliable) });
        let mut delivered = Vec::new();
        for seq in 1..=20u32 {
            delivered.extend(rx.on_packet(header(seq), &[seq as u8], t0));
            assert!(rx.slots.len() <= 8);
            if seq == 7 {
                // 0 missing, 1..=7 held: the window is full.
                assert!(delivered.is_empty());
            }
        }
        assert_eq!(delivered, (1..=20u8).map(|s| vec![s]).collect::<Vec<_>>());
        assert_eq!(rx.stats().given_up, 1);
        // A far jump keeps the window at 8 and counts what it skips.
        rx.on_packet(header(1_000_000), b"j", t0);
        assert_eq!(rx.slots.len(), 8);
        assert_eq!(rx.missing, 7);
        assert_eq!(rx.stats().given_up, 1 + (1_000_000 - 21 - 7));
        assert_eq!(rx.stats().delivered, 20);
    }

    #[test]
    fn random_inputs_never_panic_and_stay_bounded() {
        let t0 = Instant::now();
        let mut rng = XorShift::new(0xbad);
        for mode in [Mode::Deadline, Mode::Reliable] {
            let s = ArqSettings { buffer_packets: 64, first_seq: u32::MAX - 5, ..settings(mode) };
            let mut tx = Sender::new(s);
            let mut rx = Receiver::new(s);
            let mut now = t0;
            for _ in 0..20_000 {
                now += Duration::from_micros(rng.below(3000));
                // Mostly near the window, sometimes anywhere; ages anything.
                let seq = match rng.below(8) {
                    0 => rng.next_u64() as u32,
                    _ => rx.base.wrapping_add(rng.below(100) as u32).wrapping_sub(20),
                };
                let age_us = if rng.chance(0.5) { 0 } else { rng.next_u64() as u32 };
                rx.on_packet(Header { seq, age_us }, b"p", now);
                assert!(rx.slots.len() <= 64);
                let missing = rx.slots.iter().filter(|s| matches!(s, Slot::Missing(_))).count();
                assert_eq!(rx.missing, missing);
                if let Some(nack) = rx.poll_nack(now) {
                    assert!(nack.ranges.len() <= 16);
                    assert_eq!(Nack::decode(&nack.encode()), Ok(nack.clone()));
                    tx.on_nack(&nack, now);
                }
                tx.sent(b"q", now);
                let junk = Nack {
                    cum_ack: rng.next_u64() as u32,
                    ranges: vec![(rng.next_u64() as u32, rng.next_u64())],
                };
                tx.on_nack(&junk, now);
                tx.expire(now);
                tx.poll_probe(now);
                assert!(tx.stats().buffered <= 64);
            }
        }
        // Extreme settings are clamped, not trusted.
        let s = ArqSettings {
            rtt: Duration::ZERO,
            deadline: Duration::MAX,
            buffer_packets: 0,
            max_nack_ranges: usize::MAX,
            ..settings(Mode::Deadline)
        };
        let (mut tx, mut rx) = (Sender::new(s), Receiver::new(s));
        tx.sent(b"a", t0);
        tx.sent(b"b", t0);
        assert_eq!(tx.stats().buffered, 1);
        rx.on_packet(header(5), b"x", t0);
        assert_eq!(rx.slots.len(), 0);
        let huge = ArqSettings::for_rtt(Mode::Deadline, Duration::MAX);
        Receiver::new(huge).on_packet(Header { seq: 0, age_us: u32::MAX }, b"x", t0);
    }
}
