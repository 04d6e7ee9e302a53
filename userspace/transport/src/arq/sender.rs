//! The upstream end: numbers packets, keeps them for resending, answers NACKs, probes the
//! tail of a reliable stream.

use std::{collections::VecDeque, time::Instant};

use serde::{Deserialize, Serialize};

use super::{
    ArqSettings, BufferFull, Header, MAX_PROBE_BACKOFF, Mode, Nack,
    timers::{Clock, Timers, age_us},
};

/// Counters of a [`Sender`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderStats {
    /// Original packets registered with [`Sender::sent`].
    pub sent: u64,
    /// Copies resent (for NACKs and tail probes).
    pub resent: u64,
    /// Deadline mode: packets evicted before their deadline because the buffer was full
    /// (Reliable mode never evicts: [`Sender::sent`] refuses instead).
    pub dropped_full: u64,
    /// Deadline mode: packets dropped because a resend could no longer arrive in time.
    pub expired: u64,
    /// Packets in the buffer now.
    pub buffered: usize,
}

/// The upstream end of a protected hop: numbers packets and resends what is asked for.
#[derive(Serialize, Deserialize)]
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

#[derive(Serialize, Deserialize)]
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

    /// Registers a packet sent now and returns the hop header to put in front of it. With the
    /// buffer full (after expiring): Deadline mode evicts the oldest packet (counted in
    /// `dropped_full`: a real-time flow values its newest packets most); Reliable mode takes
    /// nothing and returns [`BufferFull`], as an unacknowledged packet is never given up: hold
    /// the packet back until [`Sender::is_full`] turns false (a NACK's ack frees room).
    pub fn sent(&mut self, payload: &[u8], now: Instant) -> Result<Header, BufferFull> {
        let now = self.clock.ns(now);
        self.expire_ns(now);
        if self.buffer.len() >= self.window {
            if self.mode == Mode::Reliable {
                return Err(BufferFull);
            }
            self.buffer.pop_front();
            self.base = self.base.wrapping_add(1);
            self.stats.dropped_full += 1;
        }
        let seq = self.base.wrapping_add(self.buffer.len() as u32);
        self.buffer.push_back(Entry { payload: payload.to_vec(), first_sent: now, last_sent: now });
        self.stats.sent += 1;
        Ok(Header { seq, age_us: 0 })
    }

    /// Whether the buffer is full: the next [`Sender::sent`] evicts (Deadline mode) or refuses
    /// (Reliable mode).
    pub fn is_full(&self) -> bool {
        self.buffer.len() >= self.window
    }

    /// Takes the timers of `s` (RTT, deadline, reorder allowance) for what happens from now
    /// on, as the link's measured RTT moves; the window and sequence numbers stay.
    pub fn set_timers(&mut self, s: &ArqSettings) {
        self.timers = Timers::new(s);
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
