//! Per-hop protection of slow-path flows: the FEC + ARQ pipeline between two adjacent relays.
//!
//! A route flagged for protection (`route_flags::PROTECT_FEC` / `PROTECT_ARQ`) makes XDP hand
//! its packets to the agent. The agent gives each one to the [`LinkTx`] of the next hop, which
//! wraps it into hop packets for that relay; the next relay's agent gives those to its
//! [`LinkRx`] for the sending peer, which hands the original packets on (in arrival order, or
//! in sequence order for reliable flows) and emits NACKs back. Nothing here does I/O or reads
//! a clock: callers pass `now` and send what comes out, so the agent drives it from its socket
//! loop and the benchmarks from a simulated channel.
//!
//! # Wire
//!
//! Every hop packet is a relay packet from this relay to the next (relay header with
//! [`flags::HOP`], hop limit 1, so the next relay's XDP program delivers it locally), whose
//! payload starts with the 12-byte [`HopHeader`] (big-endian):
//!
//! ```text
//! | epoch (u32) | group (u32) | index (u8) | k (u8) | m (u8) | hop flags (u8) |
//! ```
//!
//! - **data** (kind data): hop header, then the *unit*: the 8-byte `arq::Header` and the
//!   original relay packet (its own relay header and payload). With [`hop_flags::FEC`] the unit
//!   is data shard `index` of FEC group `group`; with [`hop_flags::ARQ`] its ARQ sequence
//!   number is tracked. ARQ resends carry no group.
//! - **parity** (kind FEC parity): hop header with `index = k + j`, the group's final `k` (a
//!   group closed by its timeout has fewer packets than configured) and `m`, then parity shard
//!   `j` of `fec::Codec` over the group's units.
//! - **NACK** (kind NACK, from the receiving relay back): hop header echoing the sender's
//!   epoch, then an `arq::Nack`. The relay header's [`flags::RELIABLE`] says which of the
//!   link's two ARQ streams it is for.
//! - **loss report** (kind NACK with [`hop_flags::REPORT`], every 100 ms while FEC groups
//!   arrive): hop header echoing the epoch, then `expected (u32) ‖ arrived (u32)`: the FEC
//!   shards of the groups the receiver has finished with, and how many of them arrived, both
//!   cumulative (wrapping), so a lost report only delays the next sample.
//!
//! The **epoch** is the sender's start time in milliseconds. A receiver follows a different
//! epoch (the upstream agent restarted and numbers from 0 again) and starts afresh only once
//! the current one has been silent for [`EPOCH_SILENCE`]; until then packets of other epochs
//! are counted as stale and dropped. Comparing epochs instead would let one stray or forged
//! packet with a later-looking epoch lock the live sender out for good; silence heals either
//! way, as whichever epoch keeps sending wins.
//!
//! # Streams and redundancy
//!
//! A link has two ARQ streams, deadline and reliable, picked per packet by the original
//! header's [`flags::RELIABLE`]; FEC groups span both. The parity count `m` follows the link's
//! one-way loss, measured by the receiver's loss reports (before the first one, `m` is at its
//! upper bound: safe until measured), smoothed: the smallest `m`
//! within the configured bounds that leaves a group unrecoverable with probability at most
//! 1 % with ARQ behind it (ARQ repairs the rest more cheaply than more parity would) or 0.01 %
//! without. Repairs are made sturdy cheaply, as they are a small part of the traffic: NACKs go
//! out twice, and on a link losing 1 % or more so do resends; a repair is needed only where
//! loss already struck, and losing it too costs a round trip the deadline may not have.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use wecan_common::{
    maps::route_flags::{PROTECT_ARQ, PROTECT_FEC},
    wire::{HEADER_LEN, PacketKind, RelayHeader, WireError, flags},
};

use crate::{
    arq::{self, ArqSettings, Mode},
    fec::{self, Codec},
};

/// Bytes of [`HopHeader`].
pub const HOP_HEADER_LEN: usize = 12;

/// Bits of [`HopHeader::flags`].
pub mod hop_flags {
    /// The unit is a data shard of an FEC group (or the packet a parity shard).
    pub const FEC: u8 = 0x01;
    /// The unit's ARQ sequence number is tracked.
    pub const ARQ: u8 = 0x02;
    /// A loss report (kind NACK) instead of a NACK.
    pub const REPORT: u8 = 0x04;
}

/// FEC groups a receiver keeps at once; older ones are given up.
const MAX_GROUPS: usize = 4096;
/// How long a receiver waits for the shards of a group; then it counts the group's shards for
/// the loss report.
const GROUP_TTL: Duration = Duration::from_millis(300);
/// How often a receiver reports the shards it got.
const REPORT_EVERY: Duration = Duration::from_millis(100);
/// Shards a report must cover to count as a loss sample.
const MIN_REPORT_SHARDS: u32 = 50;
/// Added to the ARQ deadline (`arq::ArqSettings::for_rtt`: 2.5 × RTT + 5 ms): repairs pass
/// through the agents at both ends of the hop, whose loops and scheduling on a busy relay add
/// milliseconds the RTT of probes answered in XDP does not show.
const AGENT_SLACK: Duration = Duration::from_millis(10);
/// Link loss from which resends are sent twice.
const DUP_LOSS: f64 = 0.01;
/// Copies of each NACK: they are small and rare, and a lost NACK costs a retry interval.
const NACK_COPIES: usize = 2;
/// Weight of a new loss sample in the sender's smoothed loss estimate.
const LOSS_GAIN: f64 = 0.1;
/// How long the current sender epoch must be silent before another is followed: an agent
/// restarting (exit, start, config, maps) is silent longer, a live sender never is.
const EPOCH_SILENCE: Duration = Duration::from_millis(200);

/// Which protections a route asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Protect {
    /// Forwarded in XDP, unprotected.
    #[default]
    None,
    /// Forward error correction: parity per group of packets.
    Fec,
    /// Selective retransmission of lost packets.
    Arq,
    /// Both: FEC repairs most losses at once, ARQ the rest.
    #[serde(rename = "fec+arq")]
    #[value(name = "fec+arq")]
    FecArq,
}

impl Protect {
    pub fn fec(self) -> bool {
        matches!(self, Self::Fec | Self::FecArq)
    }

    pub fn arq(self) -> bool {
        matches!(self, Self::Arq | Self::FecArq)
    }

    /// The `route_flags` bits.
    pub fn route_flags(self) -> u32 {
        (if self.fec() { PROTECT_FEC } else { 0 }) | (if self.arq() { PROTECT_ARQ } else { 0 })
    }

    pub fn from_route_flags(f: u32) -> Self {
        match (f & PROTECT_FEC != 0, f & PROTECT_ARQ != 0) {
            (false, false) => Self::None,
            (true, false) => Self::Fec,
            (false, true) => Self::Arq,
            (true, true) => Self::FecArq,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Fec => "fec",
            Self::Arq => "arq",
            Self::FecArq => "fec+arq",
        }
    }
}

/// FEC group size and parity bounds of one link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FecSettings {
    /// Data packets per group (`k`).
    pub group: usize,
    /// Bounds of the adaptive parity count `m`.
    pub min_parity: usize,
    pub max_parity: usize,
    /// A group still open this long after its first packet is closed short, so the repair
    /// of a packet waits at most this plus the link delay.
    pub timeout: Duration,
}

impl FecSettings {
    /// The most parity a group can get: `max_parity`, within the codec's `k + m` limit.
    fn parity_cap(&self) -> usize {
        self.max_parity.min(fec::MAX_SHARDS.saturating_sub(self.group)).max(1)
    }
}

impl Default for FecSettings {
    fn default() -> Self {
        Self { group: 10, min_parity: 1, max_parity: 4, timeout: Duration::from_millis(5) }
    }
}

/// Why a hop packet was rejected. Bad input is reported and counted, never a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HopError {
    /// Shorter than the hop header.
    Truncated {
        have: usize,
        need: usize,
    },
    /// The packet inside a data unit is not a valid relay packet.
    Inner(WireError),
    /// Parity with `k`/`m` the FEC codec cannot take, or an index outside the group.
    BadGroup {
        group: u32,
        index: u8,
        k: u8,
        m: u8,
    },
    /// A loss report whose body is not exactly 8 bytes.
    BadReport(usize),
    Arq(arq::ArqError),
    /// A kind that is not a hop message (probe, control).
    NotHop(u8),
}

impl fmt::Display for HopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { have, need } => {
                write!(f, "hop packet of {have} bytes, shorter than the {need} its headers need")
            }
            Self::Inner(e) => write!(f, "the packet inside a hop data unit is invalid: {e}"),
            Self::BadGroup { group, index, k, m } => write!(
                f,
                "FEC group {group}: shard {index} with k={k}, m={m} is not a valid group shape"
            ),
            Self::BadReport(len) => {
                write!(f, "loss report of {len} bytes; a report is exactly 8 (expected, arrived)")
            }
            Self::Arq(e) => write!(f, "ARQ: {e}"),
            Self::NotHop(k) => write!(f, "packet kind {k} is not a hop protection message"),
        }
    }
}

impl std::error::Error for HopError {}

/// The header in front of every hop packet's payload (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HopHeader {
    pub epoch: u32,
    pub group: u32,
    pub index: u8,
    pub k: u8,
    pub m: u8,
    pub flags: u8,
}

impl HopHeader {
    /// The header of a message outside any FEC group (ARQ resends, NACKs, loss reports).
    fn ungrouped(epoch: u32, flags: u8) -> Self {
        Self { epoch, group: 0, index: 0, k: 0, m: 0, flags }
    }

    pub fn encode(&self) -> [u8; HOP_HEADER_LEN] {
        let mut b = [0; HOP_HEADER_LEN];
        b[..4].copy_from_slice(&self.epoch.to_be_bytes());
        b[4..8].copy_from_slice(&self.group.to_be_bytes());
        b[8..].copy_from_slice(&[self.index, self.k, self.m, self.flags]);
        b
    }

    pub fn decode(b: &[u8]) -> Result<(Self, &[u8]), HopError> {
        let Some((h, rest)) = b.split_first_chunk::<HOP_HEADER_LEN>() else {
            return Err(HopError::Truncated { have: b.len(), need: HOP_HEADER_LEN });
        };
        let hdr = Self {
            epoch: u32::from_be_bytes([h[0], h[1], h[2], h[3]]),
            group: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
            index: h[8],
            k: h[9],
            m: h[10],
            flags: h[11],
        };
        Ok((hdr, rest))
    }
}

/// A new epoch: milliseconds since the Unix epoch, truncated, so a restart picks another.
pub fn new_epoch() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_millis() as u32)
}

fn reliable(inner_flags: u8) -> usize {
    usize::from(inner_flags & flags::RELIABLE != 0)
}

fn arq_settings(class: usize, rtt: Duration) -> ArqSettings {
    let mut s = ArqSettings::for_rtt(if class == 1 { Mode::Reliable } else { Mode::Deadline }, rtt);
    s.deadline += AGENT_SLACK;
    s
}

/// A hop packet: relay header from `node` to `peer`, hop header, body.
fn hop_packet(
    kind: PacketKind,
    node: u32,
    peer: u32,
    rflags: u8,
    hop: HopHeader,
    parts: &[&[u8]],
) -> Vec<u8> {
    let mut hdr = RelayHeader::new(kind, node, peer, 0, 0);
    hdr.flags = flags::HOP | rflags;
    hdr.hop_limit = 1;
    let len = HEADER_LEN + HOP_HEADER_LEN + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&hdr.to_bytes());
    out.extend_from_slice(&hop.encode());
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// Smallest `m` in `min..=max` for which a group of `k + m` shards, each lost with probability
/// `p`, loses more than `m` with probability at most `target`; `max` if none does.
pub fn parity_for(p: f64, k: usize, min: usize, max: usize, target: f64) -> usize {
    let p = p.clamp(0.0, 1.0);
    (min..=max)
        .find(|&m| {
            let n = k + m;
            // P(X <= m) for X ~ Binomial(n, p), by the term recurrence.
            let mut term = (1.0 - p).powi(n as i32);
            let mut cdf = term;
            for i in 0..m {
                if p >= 1.0 {
                    break;
                }
                term *= (n - i) as f64 / (i + 1) as f64 * p / (1.0 - p);
                cdf += term;
            }
            1.0 - cdf <= target
        })
        .unwrap_or(max)
}

fn codec(
    codecs: &mut HashMap<(usize, usize), Codec>,
    k: usize,
    m: usize,
) -> Result<&mut Codec, fec::FecError> {
    match codecs.entry((k, m)) {
        std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
        std::collections::hash_map::Entry::Vacant(v) => Ok(v.insert(Codec::new(k, m)?)),
    }
}

// ---------------------------------------------------------------------------------------------
// Sending end
// ---------------------------------------------------------------------------------------------

/// Counters of a [`LinkTx`].
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TxStats {
    /// Original packets protected.
    pub packets: u64,
    /// Their bytes (relay header and payload).
    pub payload_bytes: u64,
    /// Bytes of every hop packet sent (UDP payloads): data, parity, resends.
    pub wire_bytes: u64,
    pub fec_groups: u64,
    pub parity_sent: u64,
    pub nacks_received: u64,
    pub retransmissions: u64,
    /// Deadline stream: packets dropped from the buffer because a resend would be late.
    pub expired: u64,
    /// Parity per group now, and the loss estimate it follows.
    pub parity: usize,
    pub loss: f64,
}

/// The upstream end of one protected link.
pub struct LinkTx {
    node: u32,
    peer: u32,
    epoch: u32,
    fec: FecSettings,
    rtt: Duration,
    arq: [Option<arq::Sender>; 2],
    group: u32,
    /// Units of the open group and when it opened.
    pending: Vec<Vec<u8>>,
    opened: Option<Instant>,
    /// ARQ flag of the open group (that of its first unit).
    pending_flags: u8,
    codecs: HashMap<(usize, usize), Codec>,
    /// Smoothed one-way loss of the link, once measured.
    loss: Option<f64>,
    /// Whether ARQ backs the FEC (sets the parity target).
    with_arq: bool,
    /// The last loss report (expected, arrived), once one came.
    report: Option<(u32, u32)>,
    stats: TxStats,
}

impl LinkTx {
    /// From relay `node` to relay `peer`, over a link of round-trip time `rtt`.
    pub fn new(node: u32, peer: u32, fec: FecSettings, rtt: Duration, epoch: u32) -> Self {
        Self {
            node,
            peer,
            epoch,
            fec,
            rtt,
            arq: [None, None],
            group: 0,
            pending: Vec::new(),
            opened: None,
            pending_flags: 0,
            codecs: HashMap::new(),
            loss: None,
            with_arq: false,
            report: None,
            // Until the receiver has measured the link: the upper bound, safe before known.
            stats: TxStats { parity: fec.parity_cap(), ..TxStats::default() },
        }
    }

    /// Feeds a one-way loss sample of the link (0..1); the parity count follows it.
    pub fn set_loss(&mut self, sample: f64, with_arq: bool) {
        self.with_arq = with_arq;
        let sample = sample.clamp(0.0, 1.0);
        let loss = self.loss.map_or(sample, |l| l + LOSS_GAIN * (sample - l));
        self.loss = Some(loss);
        let target = if with_arq { 1e-2 } else { 1e-4 };
        let max = self.fec.parity_cap();
        self.stats.parity =
            parity_for(loss, self.fec.group, self.fec.min_parity.min(max), max, target);
    }

    /// Protects one original relay packet: appends the hop packets to send to `out`.
    pub fn send(&mut self, mode: Protect, pkt: &[u8], now: Instant, out: &mut Vec<Vec<u8>>) {
        self.stats.packets += 1;
        self.stats.payload_bytes += pkt.len() as u64;
        self.with_arq = mode.arq();
        let rflags = pkt.get(4).copied().unwrap_or(0) & flags::RELIABLE;
        let (arq_hdr, aflag) = if mode.arq() {
            let (class, rtt) = (reliable(rflags), self.rtt);
            let sender =
                self.arq[class].get_or_insert_with(|| arq::Sender::new(arq_settings(class, rtt)));
            (sender.sent(pkt, now), hop_flags::ARQ)
        } else {
            (arq::Header { seq: 0, age_us: 0 }, 0)
        };
        // A packet too long for an FEC group (jumbo frames) gets ARQ only.
        let fec = mode.fec() && pkt.len() + arq::HEADER_LEN <= fec::MAX_PACKET;
        let mut hop = HopHeader::ungrouped(self.epoch, aflag);
        if fec {
            if self.pending.is_empty() {
                self.opened = Some(now);
                self.pending_flags = aflag;
            }
            hop.group = self.group;
            hop.index = self.pending.len() as u8;
            hop.flags |= hop_flags::FEC;
        }
        let hb = arq_hdr.encode();
        self.emit(
            hop_packet(PacketKind::Data, self.node, self.peer, rflags, hop, &[&hb, pkt]),
            out,
        );
        if fec {
            let mut unit = Vec::with_capacity(arq::HEADER_LEN + pkt.len());
            unit.extend_from_slice(&hb);
            unit.extend_from_slice(pkt);
            self.pending.push(unit);
            if self.pending.len() >= self.fec.group {
                self.close_group(out);
            }
        }
    }

    /// Timers: closes a group open past its timeout, drops expired deadline packets, sends
    /// reliable tail probes.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        if self.opened.is_some_and(|t| now.saturating_duration_since(t) >= self.fec.timeout) {
            self.close_group(out);
        }
        for class in 0..2 {
            let Some(s) = self.arq[class].as_mut() else { continue };
            s.expire(now);
            if let Some((h, p)) = s.poll_probe(now) {
                self.resend(class, h, &p, out);
            }
        }
    }

    /// A NACK from the peer (hop header and body after the relay header).
    pub fn on_nack(
        &mut self,
        rflags: u8,
        body: &[u8],
        now: Instant,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), HopError> {
        let (hop, body) = HopHeader::decode(body)?;
        if hop.flags & hop_flags::REPORT != 0 {
            return self.on_report(&hop, body);
        }
        let nack = arq::Nack::decode(body).map_err(HopError::Arq)?;
        self.stats.nacks_received += 1;
        if hop.epoch != self.epoch {
            return Ok(());
        }
        let class = reliable(rflags);
        let Some(s) = self.arq[class].as_mut() else { return Ok(()) };
        for (h, p) in s.on_nack(&nack, now) {
            self.resend(class, h, &p, out);
        }
        Ok(())
    }

    /// A loss report: the shards lost since the previous report are the loss sample.
    fn on_report(&mut self, hop: &HopHeader, body: &[u8]) -> Result<(), HopError> {
        let Ok(b) = <[u8; 8]>::try_from(body) else {
            return Err(HopError::BadReport(body.len()));
        };
        if hop.epoch != self.epoch {
            return Ok(());
        }
        let expected = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let arrived = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        let (e0, a0) = self.report.unwrap_or((0, 0));
        let (de, da) = (expected.wrapping_sub(e0), arrived.wrapping_sub(a0));
        // A report older than the last (reordered) or covering too few shards: keep waiting.
        if de >= 1 << 31 || da > de || de < MIN_REPORT_SHARDS {
            return Ok(());
        }
        self.report = Some((expected, arrived));
        self.set_loss(1.0 - f64::from(da) / f64::from(de), self.with_arq);
        Ok(())
    }

    pub fn stats(&self) -> TxStats {
        let expired = self.arq.iter().flatten().map(|s| s.stats().expired).sum();
        TxStats { expired, loss: self.loss.unwrap_or(0.0), ..self.stats }
    }

    /// Resends go out twice on a link losing at least [`DUP_LOSS`] (see the module docs); two
    /// copies cost little, as resends are a small fraction of the traffic.
    fn resend(&mut self, class: usize, h: arq::Header, pkt: &[u8], out: &mut Vec<Vec<u8>>) {
        self.stats.retransmissions += 1;
        let hop = HopHeader::ungrouped(self.epoch, hop_flags::ARQ);
        let rflags = if class == 1 { flags::RELIABLE } else { 0 };
        let p =
            hop_packet(PacketKind::Data, self.node, self.peer, rflags, hop, &[&h.encode(), pkt]);
        if self.loss.unwrap_or(0.0) >= DUP_LOSS {
            self.emit(p.clone(), out);
        }
        self.emit(p, out);
    }

    fn close_group(&mut self, out: &mut Vec<Vec<u8>>) {
        self.opened = None;
        if self.pending.is_empty() {
            return;
        }
        let (k, m) = (self.pending.len(), self.stats.parity.max(1));
        let units: Vec<&[u8]> = self.pending.iter().map(Vec::as_slice).collect();
        // k ≤ group and m ≤ MAX_SHARDS − group (set_loss), units ≤ MAX_PACKET (send): the
        // codec accepts them; a failure would be a bug, and the group then goes unprotected.
        let parity = codec(&mut self.codecs, k, m).and_then(|c| c.encode(&units));
        if let Ok(parity) = parity {
            for (j, shard) in parity.iter().enumerate() {
                let hop = HopHeader {
                    epoch: self.epoch,
                    group: self.group,
                    index: (k + j) as u8,
                    k: k as u8,
                    m: m as u8,
                    flags: hop_flags::FEC | self.pending_flags,
                };
                let p = hop_packet(PacketKind::FecParity, self.node, self.peer, 0, hop, &[shard]);
                self.emit(p, out);
                self.stats.parity_sent += 1;
            }
            self.stats.fec_groups += 1;
        }
        self.pending.clear();
        self.group = self.group.wrapping_add(1);
    }

    fn emit(&mut self, p: Vec<u8>, out: &mut Vec<Vec<u8>>) {
        self.stats.wire_bytes += p.len() as u64;
        out.push(p);
    }
}

// ---------------------------------------------------------------------------------------------
// Receiving end
// ---------------------------------------------------------------------------------------------

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

struct Group {
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
#[derive(Default)]
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

/// The downstream end of one protected link.
pub struct LinkRx {
    node: u32,
    peer: u32,
    /// The sender epoch followed, and when a packet of it last arrived.
    epoch: Option<(u32, Instant)>,
    rtt: Duration,
    arq: [Option<arq::Receiver>; 2],
    groups: BTreeMap<u32, Group>,
    codecs: HashMap<(usize, usize), Codec>,
    /// Shards of finished groups and how many arrived (cumulative, wrapping).
    shards: (u32, u32),
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
            arq: [None, None],
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
            // Check both headers before any state changes.
            let (_, inner) = arq::Header::decode(rest).map_err(HopError::Arq)?;
            RelayHeader::decode(inner).map_err(HopError::Inner)?;
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
                self.arq = [None, None];
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
        let (ah, inner) = arq::Header::decode(unit).map_err(HopError::Arq)?;
        let (ih, _) = RelayHeader::decode(inner).map_err(HopError::Inner)?;
        if hflags & hop_flags::ARQ == 0 {
            self.stats.delivered += 1;
            deliver.push(inner.to_vec());
            return Ok(());
        }
        let class = reliable(ih.flags);
        let rtt = self.rtt;
        let r = self.arq[class].get_or_insert_with(|| arq::Receiver::new(arq_settings(class, rtt)));
        let before = r.stats();
        let out = r.on_packet(ah, inner, now);
        let after = r.stats();
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
            out.push(hop_packet(PacketKind::Nack, self.node, self.peer, 0, hop, &[&body]));
        }
        for class in 0..2 {
            let Some(r) = self.arq[class].as_mut() else { continue };
            let before = r.stats();
            // Bounded: each call returns at most max_nack_ranges gaps, and gaps asked for are
            // not due again before a retry interval.
            for _ in 0..arq::MAX_NACK_RANGES {
                let Some(nack) = r.poll_nack(now) else { break };
                let hop = HopHeader::ungrouped(epoch, hop_flags::ARQ);
                let rflags = if class == 1 { flags::RELIABLE } else { 0 };
                let body = nack.encode();
                for _ in 0..NACK_COPIES {
                    out.push(hop_packet(
                        PacketKind::Nack,
                        self.node,
                        self.peer,
                        rflags,
                        hop,
                        &[&body],
                    ));
                }
                self.stats.nacks_sent += 1;
            }
            let after = r.stats();
            self.stats.add_arq(&before, &after, true);
        }
    }

    pub fn stats(&self) -> RxStats {
        self.stats
    }
}

pub mod sim;

#[cfg(test)]
mod tests;
