//! Per-hop protection of slow-path flows: the FEC + ARQ pipeline between two adjacent relays.
//!
//! A route flagged for protection (`route_flags::PROTECT_FEC` / `PROTECT_ARQ`) makes XDP hand
//! its packets to the agent. The agent gives each one to the [`LinkTx`] of the next hop, which
//! wraps it into hop packets for that relay (or, for a reliable flow, queues or refuses it: see
//! [`Sent`] and [`Refusal`]); the next relay's agent gives those to its
//! [`LinkRx`] for the sending peer, which hands the original packets on (in arrival order, or
//! in sequence order for reliable flows) and emits NACKs back. Nothing here does I/O or reads
//! a clock: callers pass `now` and send what comes out, so the agent drives it from its socket
//! loop and the benchmarks from a simulated channel.
//!
//! # Wire
//!
//! Every hop packet is a relay packet from this relay to the next (relay header with flags
//! `flags::HOP` alone, flow and sequence 0, hop limit 1, so the next relay's XDP program
//! delivers it locally), whose payload starts with the 12-byte [`HopHeader`] (big-endian):
//!
//! ```text
//! | epoch (u32) | group (u32) | index (u8) | k (u8) | m (u8) | hop flags (u8) |
//! ```
//!
//! - **data** (kind data): hop header, then the *unit*: the ARQ stream (u16, see *Streams*),
//!   the 8-byte `arq::Header` (that stream's sequence number) and the original relay packet
//!   (its own relay header and payload). With [`hop_flags::FEC`] the unit is data shard
//!   `index` of FEC group `group`; with [`hop_flags::ARQ`] its ARQ sequence number is tracked
//!   (without, stream and sequence number are 0). ARQ resends carry no group. The stream is
//!   inside the unit, so a unit FEC rebuilds says its stream as well as one that arrived.
//! - **parity** (kind FEC parity): hop header with `index = k + j`, the group's final `k` (a
//!   group closed by its timeout has fewer packets than configured) and `m`, then parity shard
//!   `j` of `fec::Codec` over the group's units.
//! - **NACK** (kind NACK, from the receiving relay back): hop header echoing the sender's
//!   epoch, the ARQ stream it is for (u16), then an `arq::Nack`.
//! - **loss report** (kind NACK with [`hop_flags::REPORT`], every 100 ms while FEC groups
//!   arrive): hop header echoing the epoch, then `expected (u32) ‖ arrived (u32)`: the FEC
//!   shards of the groups the receiver has finished with, and how many of them arrived, both
//!   cumulative (wrapping), so a lost report only delays the next sample.
//!
//! The **epoch** is a random number the sending agent draws at start (unguessable, so an
//! off-path forger cannot aim at the live one). A receiver follows a different
//! epoch (the upstream agent restarted and numbers from 0 again) and starts afresh only once
//! the current one has been silent for 200 ms (`rx::EPOCH_SILENCE`); until then packets of other epochs
//! are counted as stale and dropped. Comparing epochs instead would let one stray or forged
//! packet with a later-looking epoch lock the live sender out for good; silence heals either
//! way, as whichever epoch keeps sending wins.
//!
//! # Streams
//!
//! ARQ numbers packets per stream; a loss holds back only its own stream's later packets
//! (reliable streams deliver in order). A link's streams, by the wire's stream number:
//!
//! - **0, deadline**: every real-time packet of the link (original header without
//!   `flags::RELIABLE`); delivery never waits for a gap, so one stream does not couple flows.
//! - **1..=[`RELIABLE_STREAMS`], reliable**: one per reliable flow, a flow being what its
//!   source names (source node, destination node, flow ID: flow IDs are chosen per source).
//!   The sender assigns a flow a stream on its first packet; the receiver makes a stream's
//!   state on its first unit, both numbering from 0. When every stream is taken, a new flow
//!   takes the least recently used stream with nothing unacknowledged (no timeout needed: an
//!   ack means delivered, so the old flow is done there, and the new flow's packets simply
//!   continue that stream's sequence numbers, which the receiver cannot tell from one flow);
//!   if there is none, its packet is refused ([`Refusal::NoStream`], `refused_streams`).
//!   Stream state lives as long as the sender's epoch: at most [`RELIABLE_STREAMS`] per link
//!   and direction, whatever the peer sends.
//!
//! **Reliable means no silent loss.** A reliable stream's sender never evicts an
//! unacknowledged packet. With its window ([`RELIABLE_WINDOW`] packets unacknowledged) full,
//! a new packet waits in the stream's backlog ([`RELIABLE_BACKLOG`]), sent in order as acks
//! free the window ([`Sent::Queued`], `queued`: back-pressure inside the agent, costing the
//! flow latency, not packets). With the backlog full too, or the link's [`RELIABLE_BUDGET`]
//! of packets in all its reliable windows and backlogs reached, the packet is refused
//! ([`Refusal::Full`], `refused_full`). Refusals are counted where they happen and shown by
//! `wecan protection` on that relay; the packet's origin is not told (that needs an
//! end-to-end message, for the SDK). The receiver's window per stream is [`RELIABLE_WINDOW`]
//! too, and it holds at most [`RELIABLE_BUDGET`] packets behind gaps per link: an arrival
//! beyond that is left out (`over_budget`) and asked for again like a lost one. An honest
//! sender, holding at most as many unacknowledged, never meets that bound; a peer cannot
//! make the receiver hold more. The deadline stream evicts its oldest packet when its buffer
//! is full (`dropped_full`), and drops packets whose repair would be late (`expired`).
//!
//! **Timers follow the RTT.** The agent passes each link's probe RTT to [`LinkTx::set_rtt`]
//! and [`LinkRx::set_rtt`] as it is measured; every stream takes the new timers (retry, ack,
//! resend spacing, tail probe, deadline `2.5 × RTT + 15 ms`) from then on. Both ends probe the
//! same link, so their RTTs agree up to the probes' jitter; a difference `d` moves the ages
//! up to which the sender and the receiver judge a packet in time (`2 × RTT + 15 ms`: the
//! deadline less the one-way estimate) apart by `2 × d`. That only decides whether a repair
//! on the edge of the deadline is tried (or, tried, accepted): counted as given up or late,
//! never handed on late.
//!
//! # Redundancy
//!
//! FEC groups span all streams of a link. The parity count `m` follows the link's
//! one-way loss, measured by the receiver's loss reports (before the first one, `m` is at its
//! upper bound: safe until measured), smoothed: the smallest `m`
//! within the configured bounds that leaves a group unrecoverable with probability at most
//! 1 % with ARQ behind it (ARQ repairs the rest more cheaply than more parity would) or 0.01 %
//! without. Repairs are made sturdy cheaply, as they are a small part of the traffic: NACKs go
//! out twice, and on a link losing 1 % or more so do resends; a repair is needed only where
//! loss already struck, and losing it too costs a round trip the deadline may not have.
//!
//! Modules: `wire` (hop header, unit and packet framing), `parity` (how much FEC a measured
//! loss calls for), `streams` (the sending end's reliable streams: flows, windows, backlogs),
//! `tx` (the sending end, [`LinkTx`]) and `rx` (the receiving end, [`LinkRx`]).

mod parity;
mod rx;
mod streams;
mod tx;
mod wire;

use std::{
    collections::{HashMap, hash_map::Entry},
    fmt,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use wecan_common::{
    maps::route_flags::{PROTECT_ARQ, PROTECT_FEC},
    wire::WireError,
};

pub use parity::parity_for;
pub use rx::{LinkRx, RxStats};
pub use tx::{LinkTx, Refusal, Sent, TxStats};
pub use wire::{HOP_HEADER_LEN, HopHeader, hop_flags};

use crate::{
    arq::{self, ArqSettings, Mode},
    fec::{self, Codec},
};

/// Added to the ARQ deadline (`arq::ArqSettings::for_rtt`: 2.5 × RTT + 5 ms): repairs pass
/// through the agents at both ends of the hop, whose loops and scheduling on a busy relay add
/// milliseconds the RTT of probes answered in XDP does not show.
const AGENT_SLACK: Duration = Duration::from_millis(10);

/// Which protections a route asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProtectMode {
    /// Forwarded in XDP, unprotected.
    #[default]
    None,
    /// Forward error correction: parity per group of packets.
    Fec,
    /// Selective retransmission of lost packets.
    Arq,
    /// Both: FEC repairs most losses at once, ARQ the rest.
    FecArq,
}

impl ProtectMode {
    pub const ALL: [Self; 4] = [Self::None, Self::Fec, Self::Arq, Self::FecArq];

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

    /// The name operators write in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Fec => "fec",
            Self::Arq => "arq",
            Self::FecArq => "fec+arq",
        }
    }
}

impl std::str::FromStr for ProtectMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown protection mode {s:?}; use none, fec, arq or fec+arq"))
    }
}

impl fmt::Display for ProtectMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for ProtectMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for ProtectMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// FEC group size and parity bounds of one link.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
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
    /// A unit or NACK for a stream number above [`RELIABLE_STREAMS`].
    BadStream(u16),
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
            Self::BadStream(n) => write!(
                f,
                "ARQ stream {n}: a link has stream 0 (deadline) and 1..={RELIABLE_STREAMS} \
                 (reliable) only"
            ),
            Self::Arq(e) => write!(f, "ARQ: {e}"),
            Self::NotHop(k) => write!(f, "packet kind {k} is not a hop protection message"),
        }
    }
}

impl std::error::Error for HopError {}

/// Reliable streams per link and direction (stream numbers `1..=RELIABLE_STREAMS`).
pub const RELIABLE_STREAMS: usize = 64;
/// Unacknowledged packets per reliable stream (the sender's ARQ buffer, the receiver's window):
/// 1,024 per RTT, 600 Mbit/s of 1,500-byte packets per flow over a 20 ms link.
pub const RELIABLE_WINDOW: usize = 1024;
/// Packets per reliable stream waiting for room in its window.
pub const RELIABLE_BACKLOG: usize = 1024;
/// Packets in all reliable streams of one link end: the sender's windows and backlogs, the
/// receiver's packets held behind gaps (24 MB of 1,500-byte packets).
pub const RELIABLE_BUDGET: usize = 16 * 1024;

/// An ARQ stream of a link (see *Streams* in the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamId {
    Deadline,
    /// Reliable stream `i + 1` on the wire.
    Reliable(usize),
}

impl StreamId {
    fn from_wire(n: u16) -> Result<Self, HopError> {
        match usize::from(n) {
            0 => Ok(Self::Deadline),
            i if i <= RELIABLE_STREAMS => Ok(Self::Reliable(i - 1)),
            _ => Err(HopError::BadStream(n)),
        }
    }

    fn to_wire(self) -> u16 {
        match self {
            Self::Deadline => 0,
            // Below RELIABLE_STREAMS, which fits.
            Self::Reliable(i) => (i + 1) as u16,
        }
    }
}

/// ARQ settings of a stream of `mode` on a link of round-trip time `rtt`.
fn arq_settings(mode: Mode, rtt: Duration) -> ArqSettings {
    let mut s = ArqSettings::for_rtt(mode, rtt);
    s.deadline += AGENT_SLACK;
    if mode == Mode::Reliable {
        s.buffer_packets = RELIABLE_WINDOW;
    }
    s
}

/// The codec for a group shape, made on first use and kept.
fn codec(
    codecs: &mut HashMap<(usize, usize), Codec>,
    k: usize,
    m: usize,
) -> Result<&mut Codec, fec::FecError> {
    match codecs.entry((k, m)) {
        Entry::Occupied(e) => Ok(e.into_mut()),
        Entry::Vacant(v) => Ok(v.insert(Codec::new(k, m)?)),
    }
}

#[cfg(test)]
mod tests;
