//! The receiving end of a protected link: rebuilds FEC groups, reorders or deadlines ARQ
//! streams, NACKs gaps, reports the link's loss, and follows a restarted sender's epoch.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use wecan_common::wire::PacketKind;

use super::{
    HopError, RELIABLE_BUDGET, StreamId, arq_settings, codec,
    wire::{HopHeader, hop_flags, hop_packet, parse_unit, stream_bytes},
};
use crate::{
    arq::{self, Mode},
    fec::{self, Codec},
};

/// FEC groups a receiver keeps at once; older ones are given up.
const MAX_GROUPS: usize = 4096;
/// How long a receiver waits for the shards of a group; then it counts the group's shards for
/// the loss report.
const GROUP_TTL: Duration = Duration::from_millis(300);
/// How often a receiver reports the shards it got.
const REPORT_EVERY: Duration = Duration::from_millis(100);
/// Copies of each NACK: they are small and rare, and a lost NACK costs a retry interval.
const NACK_COPIES: usize = 2;
/// How long the current sender epoch must be silent before another is followed: an agent
/// restarting (exit, start, config, maps) is silent longer, a live sender never is.
const EPOCH_SILENCE: Duration = Duration::from_millis(200);

/// Counters of a [`LinkRx`].
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RxStats {
    /// Hop packets accepted (data, parity).
    pub received: u64,
    /// Original packets handed on.
    pub delivered: u64,
    /// Data units rebuilt from parity.
    pub fec_repaired: u64,
    /// Data units of FEC groups that could not be rebuilt (too few shards before the group
    /// was given up), before ARQ.
    pub fec_unrepaired: u64,
    /// Resent packets that filled a gap.
    pub arq_repaired: u64,
    pub nacks_sent: u64,
    /// Copies of packets already handed on.
    pub duplicates: u64,
    /// Deadline stream: arrivals too late to be useful, not handed on.
    pub late: u64,
    /// Residual loss: packets given up for good (ARQ deadline or window, or FEC without ARQ).
    pub lost: u64,
    /// Hop packets rejected as malformed.
    pub malformed: u64,
    /// Times the sender's epoch changed (it restarted).
    pub resets: u64,
    /// Hop packets of another epoch while the current one was live, dropped.
    #[serde(default)]
    pub stale: u64,
    /// Reliable units not held behind a gap because the link's budget of held packets was
    /// full; asked for again like lost ones (an honest sender never causes this).
    #[serde(default)]
    pub over_budget: u64,
    /// Reliable streams the sender has used, and the packets they hold behind gaps now.
    #[serde(default)]
    pub streams: usize,
    #[serde(default)]
    pub held: usize,
}

impl RxStats {
    /// Adds what an ARQ receiver counted between two snapshots (`repairs`: count its
    /// recoveries as ARQ repairs, not for units FEC rebuilt).
    fn add_arq(&mut self, before: &arq::ReceiverStats, after: &arq::ReceiverStats, repairs: bool) {
        if repairs {
            self.arq_repaired += after.recovered - before.recovered;
        }
        self.duplicates += after.duplicates - before.duplicates;
        self.late += after.late - before.late;
        self.lost += after.given_up - before.given_up;
    }
}

#[derive(Serialize, Deserialize)]
struct Group {
    #[serde(with = "crate::carry::time")]
    born: Instant,
    /// Final shape, known once a parity shard arrived.
    shape: Option<(usize, usize, u8)>,
    /// Received shards by index (data units and parity), until the group is done.
    shards: Vec<(usize, Vec<u8>)>,
    /// Data indices received or rebuilt.
    have: Bits,
    /// Shard indices (data and parity) that arrived, for the loss report.
    arrived: Bits,
    done: bool,
}

/// A set of shard indices (below [`fec::MAX_SHARDS`]).
#[derive(Default, Serialize, Deserialize)]
struct Bits([u64; 4]);

impl Bits {
    fn has(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn mark(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn count(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }
}

impl Group {
    fn data_count(&self, k: usize) -> usize {
        (0..k).filter(|&i| self.have.has(i)).count()
    }
}

/// The downstream end of one protected link. Serde carries it to a successor agent
/// ([`crate::carry`]).
#[derive(Serialize, Deserialize)]
pub struct LinkRx {
    node: u32,
    peer: u32,
    /// The sender epoch followed, and when a packet of it last arrived.
    #[serde(with = "crate::carry::optional_tagged_time")]
    epoch: Option<(u32, Instant)>,
    rtt: Duration,
    deadline: Option<arq::Receiver>,
    /// Reliable stream `i + 1` at index `i`, made on its first unit.
    reliable: Vec<Option<arq::Receiver>>,
    /// Packets the reliable streams hold behind gaps.
    held: usize,
    groups: BTreeMap<u32, Group>,
    /// Made on first use (a cache: not carried).
    #[serde(skip)]
    codecs: HashMap<(usize, usize), Codec>,
    /// Shards of finished groups and how many arrived (cumulative, wrapping).
    shards: (u32, u32),
    #[serde(with = "crate::carry::optional_time")]
    last_report: Option<Instant>,
    stats: RxStats,
}

impl LinkRx {
    /// At relay `node`, for packets from relay `peer` over a link of round-trip time `rtt`.
    pub fn new(node: u32, peer: u32, rtt: Duration) -> Self {
        Self {
            node,
            peer,
            epoch: None,
            rtt,
            deadline: None,
            reliable: Vec::new(),
            held: 0,
            groups: BTreeMap::new(),
            codecs: HashMap::new(),
            shards: (0, 0),
            last_report: None,
            stats: RxStats::default(),
        }
    }

    /// A data or parity hop packet (kind and payload after the relay header) arrived. The
    /// original packets to hand on are appended to `deliver`.
    pub fn on_packet(
        &mut self,
        kind: u8,
        body: &[u8],
        now: Instant,
        deliver: &mut Vec<Vec<u8>>,
    ) -> Result<(), HopError> {
        let r = self.accept(kind, body, now, deliver);
        if r.is_err() {
            self.stats.malformed += 1;
        }
        r
    }

    fn accept(
        &mut self,
        kind: u8,
        body: &[u8],
        now: Instant,
        deliver: &mut Vec<Vec<u8>>,
    ) -> Result<(), HopError> {
        let (hop, rest) = HopHeader::decode(body)?;
        let parity = match PacketKind::from_u8(kind) {
            Some(PacketKind::Data) => false,
            Some(PacketKind::FecParity) => true,
            _ => return Err(HopError::NotHop(kind)),
        };
        if parity {
            let (k, m) = (usize::from(hop.k), usize::from(hop.m));
            let i = usize::from(hop.index);
            if k == 0 || m == 0 || k + m > fec::MAX_SHARDS || i < k || i >= k + m {
                return Err(self.bad_group(&hop));
            }
        } else {
            // Check the unit before any state changes.
            parse_unit(rest)?;
        }
        match self.epoch {
            Some((e, _)) if e == hop.epoch => {}
            Some((_, heard)) if now.saturating_duration_since(heard) < EPOCH_SILENCE => {
                self.stats.stale += 1;
                return Ok(());
            }
            old => {
                if old.is_some() {
                    self.stats.resets += 1;
                }
                (self.deadline, self.held) = (None, 0);
                self.reliable.clear();
                self.groups.clear();
            }
        }
        self.epoch = Some((hop.epoch, now));
        self.stats.received += 1;
        if hop.flags & hop_flags::FEC == 0 {
            return self.unit(hop.flags, rest, false, now, deliver);
        }
        self.expire_groups(now);
        let g = self.groups.entry(hop.group).or_insert_with(|| Group {
            born: now,
            shape: None,
            shards: Vec::new(),
            have: Bits::default(),
            arrived: Bits::default(),
            done: false,
        });
        let i = usize::from(hop.index);
        if parity {
            let shape = (usize::from(hop.k), usize::from(hop.m), hop.flags);
            match g.shape {
                None => g.shape = Some(shape),
                Some(s) if s != shape => return Err(self.bad_group(&hop)),
                Some(_) => {}
            }
            if !g.arrived.has(i) {
                g.arrived.mark(i);
                if !g.done {
                    g.shards.push((i, rest.to_vec()));
                }
            }
        } else {
            if g.have.has(i) {
                self.stats.duplicates += 1;
                return Ok(());
            }
            if g.shape.is_some_and(|(k, _, _)| i >= k) {
                return Err(self.bad_group(&hop));
            }
            g.have.mark(i);
            g.arrived.mark(i);
            if !g.done {
                g.shards.push((i, rest.to_vec()));
            }
            self.unit(hop.flags, rest, false, now, deliver)?;
        }
        self.try_decode(hop.group, now, deliver);
        Ok(())
    }

    fn bad_group(&self, hop: &HopHeader) -> HopError {
        HopError::BadGroup { group: hop.group, index: hop.index, k: hop.k, m: hop.m }
    }

    /// Rebuilds the missing data units of `group` once enough shards are in.
    fn try_decode(&mut self, group: u32, now: Instant, deliver: &mut Vec<Vec<u8>>) {
        let Some(g) = self.groups.get_mut(&group) else { return };
        let Some((k, m, gflags)) = g.shape else { return };
        if g.done {
            return;
        }
        if g.data_count(k) == k {
            g.done = true;
            g.shards = Vec::new();
            return;
        }
        if g.shards.len() < k {
            return;
        }
        let received: Vec<(usize, &[u8])> =
            g.shards.iter().map(|(i, s)| (*i, s.as_slice())).collect();
        let rebuilt = codec(&mut self.codecs, k, m).and_then(|c| c.decode(&received));
        let missing: Vec<usize> = (0..k).filter(|&i| !g.have.has(i)).collect();
        g.done = true;
        g.shards = Vec::new();
        match rebuilt {
            Ok(units) => {
                for &i in &missing {
                    g.have.mark(i);
                }
                for i in missing {
                    self.stats.fec_repaired += 1;
                    // A rebuilt unit is as trustworthy as its shards; a bad one is counted.
                    if self.unit(gflags, &units[i], true, now, deliver).is_err() {
                        self.stats.malformed += 1;
                    }
                }
            }
            Err(_) => {
                self.stats.malformed += 1;
                self.give_up(missing.len() as u64, gflags);
            }
        }
    }

    /// Data units a group never got back: residual loss unless ARQ repairs them.
    fn give_up(&mut self, n: u64, gflags: u8) {
        self.stats.fec_unrepaired += n;
        if gflags & hop_flags::ARQ == 0 {
            self.stats.lost += n;
        }
    }

    fn expire_groups(&mut self, now: Instant) {
        while let Some((&id, g)) = self.groups.first_key_value() {
            if self.groups.len() <= MAX_GROUPS && now.saturating_duration_since(g.born) < GROUP_TTL
            {
                break;
            }
            let g = self.groups.remove(&id).expect("first key exists");
            if let Some((k, m, gflags)) = g.shape {
                self.shards.0 = self.shards.0.wrapping_add((k + m) as u32);
                self.shards.1 = self.shards.1.wrapping_add(g.arrived.count().min((k + m) as u32));
                if !g.done {
                    self.give_up((k - g.data_count(k)) as u64, gflags);
                }
            }
        }
    }

    /// One unit (ARQ header and original packet), received or rebuilt.
    fn unit(
        &mut self,
        hflags: u8,
        unit: &[u8],
        rebuilt: bool,
        now: Instant,
        deliver: &mut Vec<Vec<u8>>,
    ) -> Result<(), HopError> {
        let (stream, ah, inner) = parse_unit(unit)?;
        if hflags & hop_flags::ARQ == 0 {
            self.stats.delivered += 1;
            deliver.push(inner.to_vec());
            return Ok(());
        }
        let rtt = self.rtt;
        let new = |mode| move || arq::Receiver::new(arq_settings(mode, rtt));
        let r = match stream {
            StreamId::Deadline => self.deadline.get_or_insert_with(new(Mode::Deadline)),
            StreamId::Reliable(i) => {
                if self.reliable.len() <= i {
                    self.reliable.resize_with(i + 1, || None);
                }
                self.reliable[i].get_or_insert_with(new(Mode::Reliable))
            }
        };
        if self.held >= RELIABLE_BUDGET && r.would_hold(ah.seq) {
            self.stats.over_budget += 1;
            return Ok(());
        }
        let before = r.stats();
        let out = r.on_packet(ah, inner, now);
        let after = r.stats();
        self.held = self.held + after.held - before.held;
        self.stats.add_arq(&before, &after, !rebuilt);
        self.stats.delivered += out.len() as u64;
        deliver.extend(out);
        Ok(())
    }

    /// Timers: the NACKs to send back to the peer now (complete hop packets), and groups
    /// given up.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        self.expire_groups(now);
        let Some((epoch, _)) = self.epoch else { return };
        if self.shards.0 != 0 && self.last_report.is_none_or(|t| now - t >= REPORT_EVERY) {
            self.last_report = Some(now);
            let hop = HopHeader::ungrouped(epoch, hop_flags::REPORT);
            let mut body = [0u8; 8];
            body[..4].copy_from_slice(&self.shards.0.to_be_bytes());
            body[4..].copy_from_slice(&self.shards.1.to_be_bytes());
            out.push(hop_packet(PacketKind::Nack, self.node, self.peer, hop, &[&body]));
        }
        let deadline = self.deadline.as_mut().map(|r| (StreamId::Deadline, r));
        let reliable = self.reliable.iter_mut().enumerate();
        let reliable = reliable.filter_map(|(i, r)| r.as_mut().map(|r| (StreamId::Reliable(i), r)));
        for (stream, r) in deadline.into_iter().chain(reliable) {
            let before = r.stats();
            // Bounded: each call returns at most max_nack_ranges gaps, and gaps asked for are
            // not due again before a retry interval.
            for _ in 0..arq::MAX_NACK_RANGES {
                let Some(nack) = r.poll_nack(now) else { break };
                let hop = HopHeader::ungrouped(epoch, hop_flags::ARQ);
                let parts = [&stream_bytes(stream)[..], &nack.encode()];
                for _ in 0..NACK_COPIES {
                    out.push(hop_packet(PacketKind::Nack, self.node, self.peer, hop, &parts));
                }
                self.stats.nacks_sent += 1;
            }
            let after = r.stats();
            self.stats.add_arq(&before, &after, true);
        }
    }

    /// New ARQ timers for every stream, for a link whose round-trip time is now `rtt`.
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = rtt;
        if let Some(r) = self.deadline.as_mut() {
            r.set_timers(&arq_settings(Mode::Deadline, rtt));
        }
        let reliable = arq_settings(Mode::Reliable, rtt);
        for r in self.reliable.iter_mut().flatten() {
            r.set_timers(&reliable);
        }
    }

    pub fn stats(&self) -> RxStats {
        RxStats { streams: self.reliable.iter().flatten().count(), held: self.held, ..self.stats }
    }
}
