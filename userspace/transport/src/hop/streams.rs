//! The sending end's reliable streams: one per flow, each with its ARQ sender and a bounded
//! backlog of packets waiting for room in its window (see *Streams* in the module docs).

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use wecan_common::wire::RelayHeader;

use super::{
    ProtectMode, RELIABLE_BACKLOG, RELIABLE_BUDGET, RELIABLE_STREAMS, RELIABLE_WINDOW,
    arq_settings, tx::Refusal,
};
use crate::arq::{self, Mode};

/// Bounds of a link's reliable streams; the defaults are the constants of the module docs.
/// Tests lower them; they never exceed the defaults, which are the receiver's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Limits {
    pub(super) streams: usize,
    pub(super) window: usize,
    pub(super) backlog: usize,
    pub(super) budget: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            streams: RELIABLE_STREAMS,
            window: RELIABLE_WINDOW,
            backlog: RELIABLE_BACKLOG,
            budget: RELIABLE_BUDGET,
        }
    }
}

impl Limits {
    fn clamped(self) -> Self {
        let d = Self::default();
        Self {
            streams: self.streams.clamp(1, d.streams),
            window: self.window.clamp(1, d.window),
            backlog: self.backlog.min(d.backlog),
            budget: self.budget.min(d.budget),
        }
    }
}

/// What a flow is: what its source names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(super) struct FlowKey {
    src: u32,
    dst: u32,
    flow: u32,
}

impl FlowKey {
    pub(super) fn of(h: &RelayHeader) -> Self {
        Self { src: h.src_node(), dst: h.dst_node(), flow: h.flow_id() }
    }
}

#[derive(Serialize, Deserialize)]
struct Stream {
    flow: FlowKey,
    arq: arq::Sender,
    /// Packets (with their route's protection) waiting for room in the window, oldest first.
    backlog: VecDeque<(ProtectMode, Vec<u8>)>,
    /// The link's offer count when the flow last offered a packet: a new flow takes the least
    /// recently used stream.
    used: u64,
}

impl Stream {
    fn packets(&self) -> usize {
        self.arq.stats().buffered + self.backlog.len()
    }
}

/// Copies to resend, each with its ARQ header.
type Resends = Vec<(arq::Header, Vec<u8>)>;

/// A backlog packet to send now as a unit of stream `index`.
pub(super) struct Ready {
    pub(super) index: usize,
    pub(super) mode: ProtectMode,
    pub(super) header: arq::Header,
    pub(super) packet: Vec<u8>,
}

/// The reliable streams of one sending link end.
#[derive(Serialize, Deserialize)]
pub(super) struct Streams {
    /// Stream `i` is stream `i + 1` on the wire; made on first use, never removed.
    streams: Vec<Stream>,
    by_flow: HashMap<FlowKey, usize>,
    /// Packets in all windows and backlogs.
    packets: usize,
    /// Packets offered so far (the clock of `Stream::used`).
    offers: u64,
    limits: Limits,
}

impl Streams {
    pub(super) fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    pub(super) fn with_limits(limits: Limits) -> Self {
        let limits = limits.clamped();
        Self { streams: Vec::new(), by_flow: HashMap::new(), packets: 0, offers: 0, limits }
    }

    /// Offers a packet of `flow`: `Ok(Some((stream index, ARQ header)))` to send now,
    /// `Ok(None)` queued in the backlog.
    pub(super) fn offer(
        &mut self,
        flow: FlowKey,
        mode: ProtectMode,
        pkt: &[u8],
        rtt: Duration,
        now: Instant,
    ) -> Result<Option<(usize, arq::Header)>, Refusal> {
        self.offers += 1;
        let index = self.stream_for(flow, rtt).ok_or(Refusal::NoStream)?;
        if self.packets >= self.limits.budget {
            return Err(Refusal::Full);
        }
        let s = &mut self.streams[index];
        s.used = self.offers;
        // Never ahead of the backlog (acks drain it at once, so it waits only on a full window).
        if s.backlog.is_empty()
            && let Ok(header) = s.arq.sent(pkt, now)
        {
            self.packets += 1;
            return Ok(Some((index, header)));
        }
        if s.backlog.len() >= self.limits.backlog {
            return Err(Refusal::Full);
        }
        s.backlog.push_back((mode, pkt.to_vec()));
        self.packets += 1;
        Ok(None)
    }

    /// The stream of `flow`: its own, a new one, or the least recently used one with nothing
    /// unacknowledged (none: every stream is busy).
    fn stream_for(&mut self, flow: FlowKey, rtt: Duration) -> Option<usize> {
        if let Some(&i) = self.by_flow.get(&flow) {
            return Some(i);
        }
        let i = if self.streams.len() < self.limits.streams {
            let mut settings = arq_settings(Mode::Reliable, rtt);
            settings.buffer_packets = self.limits.window;
            let arq = arq::Sender::new(settings);
            self.streams.push(Stream { flow, arq, backlog: VecDeque::new(), used: self.offers });
            self.streams.len() - 1
        } else {
            let (i, s) = self
                .streams
                .iter_mut()
                .enumerate()
                .filter(|(_, s)| s.packets() == 0)
                .min_by_key(|(_, s)| s.used)?;
            self.by_flow.remove(&s.flow);
            s.flow = flow;
            i
        };
        self.by_flow.insert(flow, i);
        Some(i)
    }

    /// A NACK for stream `index`: the resends it asks for, then the backlog packets the
    /// window has room for now. `None` for a stream never made (a NACK from a previous epoch
    /// or a confused peer).
    pub(super) fn on_nack(
        &mut self,
        index: usize,
        nack: &arq::Nack,
        now: Instant,
    ) -> Option<(Resends, Vec<Ready>)> {
        let s = self.streams.get_mut(index)?;
        let before = s.arq.stats().buffered;
        let resends = s.arq.on_nack(nack, now);
        self.packets -= before - s.arq.stats().buffered;
        let mut ready = Vec::new();
        while let Some((mode, packet)) = s.backlog.pop_front() {
            match s.arq.sent(&packet, now) {
                Ok(header) => ready.push(Ready { index, mode, header, packet }),
                Err(arq::BufferFull) => {
                    s.backlog.push_front((mode, packet));
                    break;
                }
            }
        }
        Some((resends, ready))
    }

    /// Tail probes due now, by stream.
    pub(super) fn probes(&mut self, now: Instant) -> Vec<(usize, arq::Header, Vec<u8>)> {
        let probes = self.streams.iter_mut().enumerate();
        probes.filter_map(|(i, s)| s.arq.poll_probe(now).map(|(h, p)| (i, h, p))).collect()
    }

    /// New timers for a link of round-trip time `rtt`.
    pub(super) fn set_rtt(&mut self, rtt: Duration) {
        let settings = arq_settings(Mode::Reliable, rtt);
        for s in &mut self.streams {
            s.arq.set_timers(&settings);
        }
    }

    /// Streams made, and packets waiting in backlogs.
    pub(super) fn occupancy(&self) -> (usize, usize) {
        (self.streams.len(), self.streams.iter().map(|s| s.backlog.len()).sum())
    }
}
