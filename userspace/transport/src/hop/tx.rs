//! The sending end of a protected link: numbers packets for ARQ, groups them for FEC, resends
//! what the receiver NACKs, and follows the receiver's loss reports.

use std::{
    collections::HashMap,
    fmt,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use wecan_common::wire::{PacketKind, RelayHeader, WireError, flags};

use super::{
    FecSettings, HopError, ProtectMode, StreamId, arq_settings, codec, parity,
    streams::{FlowKey, Streams},
    wire::{HopHeader, UNIT_HEADER_LEN, hop_flags, hop_packet, split_stream, unit_header},
};
use crate::{
    arq::{self, Mode},
    fec::{self, Codec},
};

/// Shards a report must cover to count as a loss sample.
const MIN_REPORT_SHARDS: u32 = 50;
/// Link loss from which resends are sent twice.
const DUP_LOSS: f64 = 0.01;

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
    /// Deadline stream: packets evicted before their deadline because the buffer was full.
    #[serde(default)]
    pub dropped_full: u64,
    /// Reliable packets that waited in a backlog for room in their stream's window.
    #[serde(default)]
    pub queued: u64,
    /// Reliable packets refused: their stream's backlog, or the link's budget, was full.
    #[serde(default)]
    pub refused_full: u64,
    /// Reliable packets of a new flow refused: every stream had unacknowledged packets.
    #[serde(default)]
    pub refused_streams: u64,
    /// Reliable streams made, and packets waiting in their backlogs now.
    #[serde(default)]
    pub streams: usize,
    #[serde(default)]
    pub backlog: usize,
    /// Parity per group now, and the loss estimate it follows.
    pub parity: usize,
    pub loss: f64,
}

/// What [`LinkTx::send`] did with a packet it took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Its hop packets are in `out`.
    Now,
    /// Reliable flow with a full window: queued, sent as acks free the window.
    Queued,
}

/// Why [`LinkTx::send`] refused a packet: nothing of it is sent, now or later. The reliable
/// refusals are counted in [`TxStats`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a relay packet.
    Malformed(WireError),
    /// Its reliable stream's window and backlog are full, or the link's budget is.
    Full,
    /// A new reliable flow, and every reliable stream of the link has unacknowledged packets.
    NoStream,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(e) => write!(f, "not a relay packet: {e}"),
            Self::Full => f.write_str(
                "reliable flow refused: its window and backlog (or the link's budget) are full \
                 of packets the next relay has not acknowledged",
            ),
            Self::NoStream => f.write_str(
                "new reliable flow refused: every reliable stream of the link carries another \
                 flow's unacknowledged packets",
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// The upstream end of one protected link. Serde carries it to a successor agent
/// ([`crate::carry`]).
#[derive(Serialize, Deserialize)]
pub struct LinkTx {
    node: u32,
    peer: u32,
    epoch: u32,
    pub(super) fec: FecSettings,
    rtt: Duration,
    deadline: Option<arq::Sender>,
    pub(super) reliable: Streams,
    group: u32,
    /// Units of the open group and when it opened.
    pending: Vec<Vec<u8>>,
    #[serde(with = "crate::carry::optional_time")]
    opened: Option<Instant>,
    /// ARQ flag of the open group (that of its first unit).
    pending_flags: u8,
    /// Made on first use (a cache: not carried).
    #[serde(skip)]
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
            deadline: None,
            reliable: Streams::new(),
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
        let loss = self.loss.map_or(sample, |l| l + parity::LOSS_GAIN * (sample - l));
        self.loss = Some(loss);
        let target = parity::target(with_arq);
        let max = self.fec.parity_cap();
        self.stats.parity =
            parity::parity_for(loss, self.fec.group, self.fec.min_parity.min(max), max, target);
    }

    /// New ARQ timers for every stream, for a link whose round-trip time is now `rtt`.
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = rtt;
        if let Some(s) = self.deadline.as_mut() {
            s.set_timers(&arq_settings(Mode::Deadline, rtt));
        }
        self.reliable.set_rtt(rtt);
    }

    /// Protects one original relay packet: appends the hop packets to send now to `out`, or
    /// (reliable flows) queues or refuses it; see the module docs.
    pub fn send(
        &mut self,
        mode: ProtectMode,
        pkt: &[u8],
        now: Instant,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<Sent, Refusal> {
        let (hdr, _) = RelayHeader::decode(pkt).map_err(Refusal::Malformed)?;
        self.with_arq = mode.arq();
        let r = self.take(mode, &hdr, pkt, now, out);
        match &r {
            Ok(sent) => {
                self.stats.packets += 1;
                self.stats.payload_bytes += pkt.len() as u64;
                self.stats.queued += u64::from(*sent == Sent::Queued);
            }
            Err(Refusal::NoStream) => self.stats.refused_streams += 1,
            Err(_) => self.stats.refused_full += 1,
        }
        r
    }

    /// The stream of a packet with header `hdr` takes it (or refuses it).
    fn take(
        &mut self,
        mode: ProtectMode,
        hdr: &RelayHeader,
        pkt: &[u8],
        now: Instant,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<Sent, Refusal> {
        if !mode.arq() {
            self.unit(mode, StreamId::Deadline, None, pkt, now, out);
            return Ok(Sent::Now);
        }
        if hdr.flags & flags::RELIABLE == 0 {
            let rtt = self.rtt;
            let s = self
                .deadline
                .get_or_insert_with(|| arq::Sender::new(arq_settings(Mode::Deadline, rtt)));
            // Deadline mode evicts its oldest packet rather than refuse (`dropped_full`).
            let h = s.sent(pkt, now).map_err(|_| Refusal::Full)?;
            self.unit(mode, StreamId::Deadline, Some(h), pkt, now, out);
            return Ok(Sent::Now);
        }
        match self.reliable.offer(FlowKey::of(hdr), mode, pkt, self.rtt, now)? {
            Some((i, h)) => {
                self.unit(mode, StreamId::Reliable(i), Some(h), pkt, now, out);
                Ok(Sent::Now)
            }
            None => Ok(Sent::Queued),
        }
    }

    /// Sends `pkt` as a unit of `stream` (ARQ header `arq`, or none) and adds it to the open
    /// FEC group if `mode` asks for FEC.
    fn unit(
        &mut self,
        mode: ProtectMode,
        stream: StreamId,
        arq: Option<arq::Header>,
        pkt: &[u8],
        now: Instant,
        out: &mut Vec<Vec<u8>>,
    ) {
        let aflag = if arq.is_some() { hop_flags::ARQ } else { 0 };
        let head = unit_header(stream, arq.unwrap_or(arq::Header { seq: 0, age_us: 0 }));
        // A packet too long for an FEC group (jumbo frames) gets ARQ only.
        let fec = mode.fec() && UNIT_HEADER_LEN + pkt.len() <= fec::MAX_PACKET;
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
        self.emit(hop_packet(PacketKind::Data, self.node, self.peer, hop, &[&head, pkt]), out);
        if fec {
            self.pending.push([&head[..], pkt].concat());
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
        if let Some(s) = self.deadline.as_mut() {
            s.expire(now);
        }
        for (i, h, p) in self.reliable.probes(now) {
            self.resend(StreamId::Reliable(i), h, &p, out);
        }
    }

    /// A NACK from the peer (hop header and body after the relay header).
    /// Resends go out first, then the backlog packets the NACK's ack made room for.
    pub fn on_nack(
        &mut self,
        body: &[u8],
        now: Instant,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), HopError> {
        let (hop, body) = HopHeader::decode(body)?;
        if hop.flags & hop_flags::REPORT != 0 {
            return self.on_report(&hop, body);
        }
        let (stream, body) = split_stream(body)?;
        let nack = arq::Nack::decode(body).map_err(HopError::Arq)?;
        self.stats.nacks_received += 1;
        if hop.epoch != self.epoch {
            return Ok(());
        }
        let (resends, ready) = match stream {
            StreamId::Deadline => match self.deadline.as_mut() {
                Some(s) => (s.on_nack(&nack, now), Vec::new()),
                None => return Ok(()),
            },
            StreamId::Reliable(i) => match self.reliable.on_nack(i, &nack, now) {
                Some(r) => r,
                None => return Ok(()),
            },
        };
        for (h, p) in resends {
            self.resend(stream, h, &p, out);
        }
        for r in ready {
            self.unit(r.mode, StreamId::Reliable(r.index), Some(r.header), &r.packet, now, out);
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
        let deadline = self.deadline.as_ref().map(arq::Sender::stats).unwrap_or_default();
        let (streams, backlog) = self.reliable.occupancy();
        TxStats {
            expired: deadline.expired,
            dropped_full: deadline.dropped_full,
            streams,
            backlog,
            loss: self.loss.unwrap_or(0.0),
            ..self.stats
        }
    }

    /// Resends go out twice on a link losing at least [`DUP_LOSS`] (see the module docs); two
    /// copies cost little, as resends are a small fraction of the traffic.
    fn resend(&mut self, stream: StreamId, h: arq::Header, pkt: &[u8], out: &mut Vec<Vec<u8>>) {
        self.stats.retransmissions += 1;
        let hop = HopHeader::ungrouped(self.epoch, hop_flags::ARQ);
        let head = unit_header(stream, h);
        let p = hop_packet(PacketKind::Data, self.node, self.peer, hop, &[&head, pkt]);
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
                let p = hop_packet(PacketKind::FecParity, self.node, self.peer, hop, &[shard]);
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
