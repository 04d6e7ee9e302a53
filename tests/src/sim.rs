//! A chain of relays joined by lossy links, in virtual time, running the real [`LinkTx`] and
//! [`LinkRx`]: delivery, added latency and overhead of each protection mode at a given loss,
//! reproducibly (seeded) and in milliseconds of CPU. `tests/tests/simulation.rs` and `cargo xtask bench`
//! use it; the netns tests run the same code in agents over real links.
//!
//! Relay 0 receives the flow and relay `hops` delivers it; every link drops each packet (both
//! directions: data, parity, resends, NACKs) with probability `loss` and delays it by `delay`.
//! Each relay polls its timers every millisecond, like the agent.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    time::{Duration, Instant},
};

use serde::Serialize;
use wecan_common::wire::{PacketKind, RelayHeader, flags};

use rand::{Rng, SeedableRng, rngs::SmallRng};
use wecan_client as client;
use wecan_transport::hop::{FecSettings, LinkRx, LinkTx, ProtectMode};

/// Agent timer granularity.
const TICK: Duration = Duration::from_millis(1);
/// How long the chain keeps running after the last packet entered it.
const DRAIN: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub hops: usize,
    pub loss: f64,
    /// One-way delay of every link.
    pub delay: Duration,
    pub packets: u32,
    pub rate_pps: u32,
    /// Bytes of each original packet (relay header included).
    pub size: usize,
    pub mode: ProtectMode,
    /// Reliable flow (in-order, retry until delivered) instead of a real-time one.
    pub reliable: bool,
    /// FEC group and parity bounds (equal bounds: fixed parity).
    pub fec: FecSettings,
    pub seed: u64,
}

impl SimConfig {
    /// `packets` 1,200-byte packets at 10,000/s over `hops` links with 5 ms delay.
    pub fn new(hops: usize, loss: f64, mode: ProtectMode, packets: u32) -> Self {
        Self {
            hops,
            loss,
            delay: Duration::from_millis(5),
            packets,
            rate_pps: 10_000,
            size: 1200,
            mode,
            reliable: false,
            fec: FecSettings::default(),
            seed: 1,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SimResult {
    pub sent: u64,
    /// Distinct original packets delivered at the end of the chain.
    pub delivered: u64,
    pub duplicates: u64,
    /// Every packet arrived after all those with lower sequence numbers.
    pub in_order: bool,
    pub delivery: f64,
    /// Latency beyond the links' delay (p50, p99), microseconds.
    pub added_p50_us: f64,
    pub added_p99_us: f64,
    /// Extra bytes on the wire (headers, parity, resends, NACKs) per payload byte, over all
    /// hops.
    pub overhead: f64,
}

enum Event {
    Inject(u32),
    /// A packet arriving at relay `to` from its neighbour `from`.
    Arrive {
        to: usize,
        from: usize,
        pkt: Vec<u8>,
    },
    Tick,
}

struct Chain {
    cfg: SimConfig,
    t0: Instant,
    rng: SmallRng,
    /// (time, event index): the index also orders events due at the same time.
    queue: BinaryHeap<Reverse<(u64, usize)>>,
    events: Vec<Option<Event>>,
    tx: Vec<LinkTx>,
    rx: Vec<LinkRx>,
    /// Per original sequence number: when it entered, when it was delivered.
    entered: Vec<u64>,
    delivered: Vec<Option<u64>>,
    last_seq: Option<u32>,
    res: SimResult,
    wire_bytes: u64,
}

/// Runs the chain until every packet is delivered or given up.
pub fn run(cfg: &SimConfig) -> SimResult {
    let n = cfg.packets as usize;
    let mut c = Chain {
        t0: Instant::now(),
        rng: SmallRng::seed_from_u64(cfg.seed),
        queue: BinaryHeap::new(),
        events: Vec::new(),
        tx: (0..cfg.hops)
            .map(|i| LinkTx::new(i as u32 + 1, i as u32 + 2, cfg.fec, 2 * cfg.delay, 1))
            .collect(),
        rx: (0..cfg.hops).map(|i| LinkRx::new(i as u32 + 2, i as u32 + 1, 2 * cfg.delay)).collect(),
        entered: vec![0; n],
        delivered: vec![None; n],
        last_seq: None,
        res: SimResult { in_order: true, ..SimResult::default() },
        wire_bytes: 0,
        cfg: cfg.clone(),
    };
    let gap = 1e9 / f64::from(cfg.rate_pps.max(1));
    for i in 0..cfg.packets {
        c.at((f64::from(i) * gap) as u64, Event::Inject(i));
    }
    let end = (f64::from(cfg.packets) * gap) as u64 + nanos(DRAIN);
    c.at(0, Event::Tick);
    while let Some(Reverse((t, id))) = c.queue.pop() {
        if t > end {
            break;
        }
        let ev = c.events[id].take().expect("each event runs once");
        c.handle(t, ev, end);
    }
    c.finish()
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos() as u64
}

impl Chain {
    fn at(&mut self, t: u64, ev: Event) {
        let id = self.events.len();
        self.events.push(Some(ev));
        self.queue.push(Reverse((t, id)));
    }

    fn now(&self, t: u64) -> Instant {
        self.t0 + Duration::from_nanos(t)
    }

    /// Puts `pkts` on the link from relay `from` to its neighbour `to`.
    fn transmit(&mut self, t: u64, from: usize, to: usize, pkts: Vec<Vec<u8>>) {
        for pkt in pkts {
            if self.cfg.mode != ProtectMode::None {
                self.wire_bytes += pkt.len() as u64;
            }
            if self.rng.random::<f64>() >= self.cfg.loss {
                self.at(t + nanos(self.cfg.delay), Event::Arrive { to, from, pkt });
            }
        }
    }

    /// Relay `at` hands an original packet on: to the next link, or out of the chain.
    fn forward(&mut self, t: u64, at: usize, pkt: Vec<u8>) {
        if at == self.cfg.hops {
            self.deliver(t, &pkt);
            return;
        }
        let mut out = Vec::new();
        if self.cfg.mode == ProtectMode::None {
            out.push(pkt);
        } else {
            let now = self.now(t);
            // A refusal is a packet lost to the chain; `delivery` shows it.
            let _ = self.tx[at].send(self.cfg.mode, &pkt, now, &mut out);
        }
        self.transmit(t, at, at + 1, out);
    }

    fn handle(&mut self, t: u64, ev: Event, end: u64) {
        let now = self.now(t);
        match ev {
            Event::Inject(seq) => {
                let mut hdr = RelayHeader::new(PacketKind::Data, 100, 200, 1, seq);
                if self.cfg.reliable {
                    hdr.flags |= flags::RELIABLE;
                }
                self.entered[seq as usize] = t;
                self.res.sent += 1;
                self.forward(t, 0, client::datagram(&hdr, self.cfg.size));
            }
            Event::Arrive { to, from, pkt } => {
                if self.cfg.mode == ProtectMode::None {
                    self.forward(t, to, pkt);
                    return;
                }
                let Ok((hdr, body)) = RelayHeader::decode(&pkt) else { return };
                let mut out = Vec::new();
                if hdr.kind == PacketKind::Nack as u8 {
                    // Relay `to` sent on this link: its sender takes the NACK.
                    let _ = self.tx[to].on_nack(body, now, &mut out);
                    self.transmit(t, to, from, out);
                } else {
                    let _ = self.rx[from].on_packet(hdr.kind, body, now, &mut out);
                    for p in out {
                        self.forward(t, to, p);
                    }
                }
            }
            Event::Tick => {
                for i in 0..self.cfg.hops {
                    let mut out = Vec::new();
                    self.tx[i].poll(now, &mut out);
                    self.transmit(t, i, i + 1, out);
                    let mut back = Vec::new();
                    self.rx[i].poll(now, &mut back);
                    self.transmit(t, i + 1, i, back);
                }
                let done = self.res.delivered == self.res.sent && t > 0;
                if !done && t + nanos(TICK) <= end {
                    self.at(t + nanos(TICK), Event::Tick);
                }
            }
        }
    }

    fn deliver(&mut self, t: u64, pkt: &[u8]) {
        let Ok((hdr, _)) = RelayHeader::decode(pkt) else { return };
        let seq = hdr.seq();
        let Some(slot) = self.delivered.get_mut(seq as usize) else { return };
        if slot.is_some() {
            self.res.duplicates += 1;
            return;
        }
        *slot = Some(t);
        self.res.delivered += 1;
        if self.last_seq.is_some_and(|l| seq < l) {
            self.res.in_order = false;
        }
        self.last_seq = Some(self.last_seq.map_or(seq, |l| l.max(seq)));
    }

    fn finish(mut self) -> SimResult {
        let base = nanos(self.cfg.delay) * self.cfg.hops as u64;
        let mut added: Vec<u64> = self
            .delivered
            .iter()
            .zip(&self.entered)
            .filter_map(|(d, e)| d.map(|d| (d - e).saturating_sub(base)))
            .collect();
        added.sort_unstable();
        let pct = |q: f64| {
            added
                .get(((added.len() as f64 - 1.0) * q).round() as usize)
                .map_or(0.0, |&ns| ns as f64 / 1e3)
        };
        self.res.added_p50_us = pct(0.5);
        self.res.added_p99_us = pct(0.99);
        self.res.delivery = self.res.delivered as f64 / self.res.sent.max(1) as f64;
        let payload = self.res.sent * self.cfg.size as u64 * self.cfg.hops as u64;
        self.res.overhead = if self.cfg.mode == ProtectMode::None {
            0.0
        } else {
            self.wire_bytes.saturating_sub(payload) as f64 / payload.max(1) as f64
        };
        self.res
    }
}
