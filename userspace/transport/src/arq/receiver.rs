//! The downstream end: finds gaps, hands packets on (in arrival order before their deadline,
//! or in sequence order), and asks for what is missing.

use std::{collections::VecDeque, time::Instant};

use serde::{Deserialize, Serialize};

use super::{
    ArqSettings, HALF, Header, MAX_NACK_RANGES, Mode, Nack,
    timers::{Clock, Timers},
};

/// Counters of a [`Receiver`]. Every arrival counts once in `received` and, unless Reliable
/// mode is still holding it, once more in `delivered`, `duplicates` or `late`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Reliable mode: packets held behind a gap now.
    pub held: usize,
}

/// The downstream end of a protected hop: hands packets on, tracks gaps and asks for them.
#[derive(Serialize, Deserialize)]
pub struct Receiver {
    mode: Mode,
    timers: Timers,
    window: usize,
    max_ranges: usize,
    clock: Clock,
    /// Oldest sequence number still tracked (the cumulative ack); `slots[i]` is `base + i`, up
    /// to the newest sequence number seen.
    pub(super) base: u32,
    pub(super) slots: VecDeque<Slot>,
    /// `Slot::Missing` entries in `slots`.
    pub(super) missing: usize,
    /// No gap is due for asking or giving up before this time (ns), so polls skip the scan.
    next_check: u64,
    /// Reliable mode: the cumulative ack last sent, when, and whether a duplicate arrived since
    /// (the sender is resending what we already have: our ack was probably lost).
    acked: u32,
    last_nack: Option<u64>,
    duplicate_seen: bool,
    stats: ReceiverStats,
}

#[derive(Serialize, Deserialize)]
pub(super) enum Slot {
    Missing(Gap),
    /// Reliable mode: received, waiting for an earlier gap to fill.
    Held(Vec<u8>),
    /// Received (or, Deadline mode, given up).
    Done,
}

#[derive(Serialize, Deserialize)]
pub(super) struct Gap {
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
                Mode::Reliable => {
                    self.slots[offset] = Slot::Held(payload.to_vec());
                    self.stats.held += 1;
                }
            }
        }
        self.advance(&mut out);
        out
    }

    /// Reliable mode: whether an arrival of `seq` would be held behind a gap rather than handed
    /// on at once or dropped as a duplicate. A caller bounding what its receivers hold may
    /// leave such an arrival out: it is then missing, and asked for again, like a lost one.
    pub fn would_hold(&self, seq: u32) -> bool {
        let offset = seq.wrapping_sub(self.base);
        self.mode == Mode::Reliable
            && offset != 0
            && offset < HALF
            && self.slots.get(offset as usize).is_none_or(|s| matches!(s, Slot::Missing(_)))
    }

    /// Takes the timers of `s` (RTT, deadline, reorder allowance) for what happens from now
    /// on, as the link's measured RTT moves; gaps already scheduled keep their times, and the
    /// window and sequence numbers stay.
    pub fn set_timers(&mut self, s: &ArqSettings) {
        self.timers = Timers::new(s);
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
                        self.stats.held -= 1;
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
                self.stats.held -= 1;
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
