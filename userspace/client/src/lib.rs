//! Relay packets for the client tool (`wecan-client`), the demo and the tests: a sender with a
//! verifiable payload, and a receiver that checks every packet and accounts for all.

use std::{
    collections::BTreeMap,
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};
use wecan_common::{
    maps::{PeerKind, PeerValue, peer_flags},
    wire::{HEADER_LEN, PacketKind, RelayHeader, flags},
};
use wecan_transport::auth::{self, Sealer, Secret, Windows};

mod attach;
pub mod schedule;
pub use attach::{Attachment, Refused, attach};

/// The client's end of the link to its edge relay: it seals what it sends and verifies what
/// the edge relays to it, as the relays do on every hop.
pub struct EdgeLink {
    edge: PeerValue,
    tx: Sealer,
    rx: Windows,
}

impl EdgeLink {
    /// The link of client `me` to relay `edge`, keyed with `secret` under `id` (the edge's
    /// config lists the same key for this client).
    pub fn keyed(me: u32, edge: u32, id: u8, secret: &Secret) -> Self {
        let mut v = PeerValue::new(edge, PeerKind::Relay);
        v.keys[0] = auth::link_keys(secret, id, me, edge);
        Self::new(v)
    }

    /// The link of a client attached through edge `edge`'s gateway, with the keys its
    /// registration derived.
    pub fn attached(edge: u32, keys: wecan_common::maps::HopKeys) -> Self {
        let mut v = PeerValue::new(edge, PeerKind::Relay);
        v.keys[0] = keys;
        Self::new(v)
    }

    /// A link without authentication (the edge has `auth = "none"` for this client).
    pub fn unauthenticated() -> Self {
        let mut v = PeerValue::new(0, PeerKind::Relay);
        v.flags = peer_flags::NO_AUTH;
        Self::new(v)
    }

    fn new(edge: PeerValue) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self { edge, tx: Sealer::new(now), rx: Windows::default() }
    }

    pub fn seal(&mut self, pkt: &mut [u8]) -> Result<()> {
        self.tx.seal(pkt, &self.edge).map_err(|_| anyhow!("no key to send to the edge with"))
    }

    pub fn verify(&self, pkt: &[u8]) -> Result<(), auth::Refusal> {
        auth::verify(pkt, &self.edge, &self.rx)
    }
}

/// Payload bytes after the relay header: a pattern derived from (flow, seq), so the
/// receiver can verify each packet arrived intact.
pub fn fill_payload(flow: u32, seq: u32, out: &mut [u8]) {
    let mut x = (u64::from(flow) << 32 | u64::from(seq)) ^ 0x9e37_79b9_7f4a_7c15;
    for b in out.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

/// A complete relay datagram of `size` bytes (header included, at least the header).
pub fn datagram(hdr: &RelayHeader, size: usize) -> Vec<u8> {
    let mut pkt = vec![0u8; size.max(HEADER_LEN)];
    pkt[..HEADER_LEN].copy_from_slice(&hdr.to_bytes());
    fill_payload(hdr.flow_id(), hdr.seq(), &mut pkt[HEADER_LEN..]);
    pkt
}

/// What to send.
#[derive(Debug, Clone)]
pub struct SendSpec {
    pub to: SocketAddr,
    pub src_node: u32,
    pub dst_node: u32,
    pub flow: u32,
    pub first_seq: u32,
    /// Packets per flow.
    pub count: u32,
    /// Flows `flow .. flow + flows`, sent in turn; flow `flow + k` numbers its packets from
    /// `first_seq + k × count`, so one receiver can check them all.
    pub flows: u32,
    /// Packets per second, all flows together; 0 means as fast as possible.
    pub rate: u32,
    /// Datagram size including the relay header.
    pub size: usize,
    pub hop_limit: u8,
    /// Relay header flags (`wire::flags`) of every packet.
    pub flags: u8,
    /// The last this many flows also ask for reliable delivery (`flags::RELIABLE`), the
    /// others for deadline delivery: real-time and signalling traffic side by side.
    pub reliable_flows: u32,
}

/// What a sender sends over: a link to a fixed edge, or an attachment that moves between
/// edges ([`schedule::Roaming`]).
pub trait Uplink {
    /// Runs before each packet; the edge to send it to and its source node, where they are
    /// not the spec's.
    fn before_send(&mut self, sock: &UdpSocket) -> Result<Option<(SocketAddr, u32)>>;
    fn seal_for_edge(&mut self, pkt: &mut [u8]) -> Result<()>;
}

impl Uplink for EdgeLink {
    fn before_send(&mut self, _: &UdpSocket) -> Result<Option<(SocketAddr, u32)>> {
        Ok(None)
    }

    fn seal_for_edge(&mut self, pkt: &mut [u8]) -> Result<()> {
        self.seal(pkt)
    }
}

impl Uplink for schedule::Roaming {
    fn before_send(&mut self, sock: &UdpSocket) -> Result<Option<(SocketAddr, u32)>> {
        self.tick(sock)?;
        Ok(Some((self.edge().addr, self.attachment.addr)))
    }

    fn seal_for_edge(&mut self, pkt: &mut [u8]) -> Result<()> {
        self.attachment.link.seal(pkt)
    }
}

/// Sends `spec.count` data packets of each flow over `link`, paced to `spec.rate`. Returns
/// packets sent.
pub fn send(sock: &UdpSocket, spec: &SendSpec, link: &mut impl Uplink) -> Result<u64> {
    let start = Instant::now();
    let mut sent = 0u64;
    let flows = (0..spec.count).flat_map(|i| (0..spec.flows).map(move |k| (k, i)));
    for (k, i) in flows {
        let seq = spec.first_seq.wrapping_add(k.wrapping_mul(spec.count)).wrapping_add(i);
        let flow = spec.flow.wrapping_add(k);
        let (to, src) = link.before_send(sock)?.unwrap_or((spec.to, spec.src_node));
        let mut hdr = RelayHeader::new(PacketKind::Data, src, spec.dst_node, flow, seq);
        hdr.hop_limit = spec.hop_limit;
        hdr.flags = spec.flags;
        if k >= spec.flows.saturating_sub(spec.reliable_flows) {
            hdr.flags |= flags::RELIABLE;
        }
        let mut pkt = datagram(&hdr, spec.size);
        link.seal_for_edge(&mut pkt)?;
        loop {
            match sock.send_to(&pkt, to) {
                Ok(_) => break,
                // Local queue full: wait for it to drain rather than lose the packet.
                Err(e)
                    if e.raw_os_error() == Some(libc::ENOBUFS)
                        || e.kind() == std::io::ErrorKind::WouldBlock =>
                {
                    std::thread::sleep(Duration::from_micros(50));
                }
                Err(e) => return Err(e).with_context(|| format!("send to {to}")),
            }
        }
        sent += 1;
        if spec.rate > 0 {
            let due = Duration::from_secs_f64(sent as f64 / spec.rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed())
                && wait > Duration::from_micros(200)
            {
                std::thread::sleep(wait);
            }
        }
    }
    Ok(sent)
}

/// What a receiver saw.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecvReport {
    /// Datagrams received.
    pub received: u64,
    /// Distinct, intact data packets.
    pub unique: u64,
    pub duplicates: u64,
    /// Bad relay header or payload not matching its (flow, seq).
    pub corrupt: u64,
    /// Packets that arrived after one of their flow with a higher sequence number (sequence
    /// numbers are per flow).
    pub reordered: u64,
    /// Expected sequence numbers never received (when the expected count is known).
    pub missing: u64,
    /// Longest run of consecutive missing sequence numbers (an outage, in packets).
    pub max_gap: u64,
    pub min_hop_limit: Option<u8>,
    /// Datagrams the receiving socket itself dropped (full buffer): loss at the receiver,
    /// not in the network.
    #[serde(default)]
    pub socket_drops: u64,
    /// Datagrams whose hop authentication failed (not counted as received).
    #[serde(default)]
    pub unauthenticated: u64,
    /// Distinct packets and reordering per flow.
    #[serde(default)]
    pub flows: BTreeMap<u32, FlowReport>,
}

/// What a receiver saw of one flow.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct FlowReport {
    pub unique: u64,
    /// Packets that arrived after one of this flow with a higher sequence number.
    pub reordered: u64,
    /// Highest sequence number seen.
    pub max_seq: u32,
}

/// Checks arriving packets against the sender's pattern.
pub struct Receiver {
    expect_first: u32,
    seen: Vec<bool>,
    /// Its `flows` has one entry per flow with an intact packet, so at most as many as
    /// packets expected.
    pub report: RecvReport,
}

impl Receiver {
    /// Expects sequence numbers `first .. first + count`.
    pub fn new(first: u32, count: u32) -> Self {
        Self {
            expect_first: first,
            seen: vec![false; count as usize],
            report: RecvReport::default(),
        }
    }

    pub fn packet(&mut self, pkt: &[u8]) {
        self.report.received += 1;
        let Ok((hdr, payload)) = RelayHeader::decode(pkt) else {
            self.report.corrupt += 1;
            return;
        };
        let mut expect = vec![0u8; payload.len()];
        fill_payload(hdr.flow_id(), hdr.seq(), &mut expect);
        let idx = hdr.seq().wrapping_sub(self.expect_first) as usize;
        if expect != payload || idx >= self.seen.len() {
            self.report.corrupt += 1;
            return;
        }
        if std::mem::replace(&mut self.seen[idx], true) {
            self.report.duplicates += 1;
            return;
        }
        self.report.unique += 1;
        self.report.min_hop_limit =
            Some(self.report.min_hop_limit.map_or(hdr.hop_limit, |m| m.min(hdr.hop_limit)));
        let f = self
            .report
            .flows
            .entry(hdr.flow_id())
            .or_insert(FlowReport { max_seq: hdr.seq(), ..FlowReport::default() });
        f.unique += 1;
        if hdr.seq() < f.max_seq {
            f.reordered += 1;
            self.report.reordered += 1;
        }
        f.max_seq = f.max_seq.max(hdr.seq());
    }

    /// Whether every expected packet has arrived.
    pub fn complete(&self) -> bool {
        self.report.unique == self.seen.len() as u64
    }

    pub fn finish(mut self) -> RecvReport {
        self.report.missing = self.seen.iter().filter(|s| !**s).count() as u64;
        let mut run = 0u64;
        for &s in &self.seen {
            run = if s { 0 } else { run + 1 };
            self.report.max_gap = self.report.max_gap.max(run);
        }
        self.report
    }
}

/// Receives over `link` until all expected packets arrived, or `idle` passes with nothing
/// new, or `limit` passes in total.
pub fn receive(
    sock: &UdpSocket,
    mut rx: Receiver,
    link: &EdgeLink,
    idle: Duration,
    limit: Duration,
) -> Result<RecvReport> {
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    let start = Instant::now();
    let mut last = Instant::now();
    let mut buf = vec![0u8; 65536];
    let mut unauthenticated = 0;
    while !rx.complete() && start.elapsed() < limit && last.elapsed() < idle {
        match sock.recv(&mut buf) {
            Ok(n) => {
                match link.verify(&buf[..n]) {
                    Ok(()) => rx.packet(&buf[..n]),
                    Err(_) => unauthenticated += 1,
                }
                last = Instant::now();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e).context("receive"),
        }
    }
    let drops = wecan_os::sockopt::drops(sock.as_raw_fd()).context("SO_MEMINFO")?;
    Ok(RecvReport { socket_drops: drops.into(), unauthenticated, ..rx.finish() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(seq: u32) -> Vec<u8> {
        datagram(&RelayHeader::new(PacketKind::Data, 1, 2, 5, seq), 100)
    }

    #[test]
    fn receiver_accounts_for_everything() {
        let mut rx = Receiver::new(10, 5);
        for seq in [10, 12, 11, 12] {
            rx.packet(&pkt(seq));
        }
        let mut bad = pkt(13);
        bad[60] ^= 1;
        rx.packet(&bad);
        rx.packet(b"short");
        rx.packet(&pkt(99));
        assert!(!rx.complete());
        let r = rx.finish();
        assert_eq!(
            r,
            RecvReport {
                received: 7,
                unique: 3,
                duplicates: 1,
                corrupt: 3,
                reordered: 1,
                missing: 2,
                max_gap: 2,
                min_hop_limit: Some(16),
                socket_drops: 0,
                unauthenticated: 0,
                flows: BTreeMap::from([(5, FlowReport { unique: 3, reordered: 1, max_seq: 12 })]),
            }
        );
    }

    /// Sequence numbers are per flow: another flow's higher numbers reorder nothing.
    #[test]
    fn reordering_is_per_flow() {
        let flow = |f, seq| datagram(&RelayHeader::new(PacketKind::Data, 1, 2, f, seq), 60);
        let mut rx = Receiver::new(0, 6);
        for (f, seq) in [(2, 3), (1, 0), (2, 4), (1, 1), (1, 2), (2, 5)] {
            rx.packet(&flow(f, seq));
        }
        assert_eq!((rx.report.unique, rx.report.reordered), (6, 0));
        rx = Receiver::new(0, 2);
        rx.packet(&flow(1, 1));
        rx.packet(&flow(1, 0));
        assert_eq!(rx.report.reordered, 1);
    }
}
