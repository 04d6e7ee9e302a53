//! The agent's side of per-hop protection: one [`LinkTx`] per next-hop relay and one
//! [`LinkRx`] per upstream relay, created on first use with the link's settings from the
//! config and its RTT from the probes, and the counters `wecan protection` shows.
//!
//! Links are keyed by the node ID of the peer allowlist entry the hop message came from
//! (see `slowpath`), never by the node a packet claims, so state is bounded by the peers
//! configured: at most one sending and one receiving link per relay peer.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use wecan_transport::hop::{
    FecSettings, HopError, LinkRx, LinkTx, ProtectMode, Refusal, RxStats, Sent, TxStats,
};

use crate::{config::Config, hop_auth::AuthCounts};

/// RTT assumed for a link the probes have not measured yet.
const DEFAULT_RTT: Duration = Duration::from_millis(10);

/// What `wecan protection` reads: the agent's protection counters per link and direction.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ProtectionReport {
    pub node: u32,
    /// Datagrams the agent's socket dropped (buffer full): lost before protection saw them.
    #[serde(default)]
    pub socket_drops: u64,
    /// Hop messages refused before any link state saw them.
    #[serde(default)]
    pub refused: HopRefusals,
    /// Packets whose hop authentication the agent refused (after XDP: fragments and packets
    /// with IP options come up unverified), and packets it could not seal.
    #[serde(default)]
    pub auth: AuthCounts,
    pub tx: Vec<TxRow>,
    pub rx: Vec<RxRow>,
}

/// Hop messages refused, by reason. None of them creates or changes link state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopRefusals {
    /// From an allowed address that is not a relay peer (a client, say): clients do not
    /// speak the hop protocol.
    pub not_relay: u64,
    /// From a relay peer's address but claiming another node as its source.
    pub wrong_source: u64,
    /// NACKs or loss reports for a link this agent has no sending state for (it never sent
    /// protected traffic there, or restarted since).
    pub nacks_without_link: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TxRow {
    pub peer: u32,
    pub mode: String,
    #[serde(flatten)]
    pub stats: TxStats,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RxRow {
    pub peer: u32,
    #[serde(flatten)]
    pub stats: RxStats,
}

#[derive(Serialize, Deserialize)]
struct Tx {
    link: LinkTx,
    to: SocketAddr,
    mode: ProtectMode,
}

#[derive(Serialize, Deserialize)]
struct Rx {
    link: LinkRx,
    /// Where the peer's hop packets come from: NACKs go back there.
    from: SocketAddr,
}

/// Serde carries it to a successor agent (see `handover`, `wecan_transport::carry`).
#[derive(Serialize, Deserialize)]
pub struct ProtectedLinks {
    node: u32,
    epoch: u32,
    pub refused: HopRefusals,
    fec: HashMap<u32, FecSettings>,
    /// Mean RTT of each link, from the probes.
    rtt: HashMap<u32, Duration>,
    tx: BTreeMap<u32, Tx>,
    rx: BTreeMap<u32, Rx>,
}

impl ProtectedLinks {
    pub fn new(cfg: &Config) -> Result<Self> {
        Ok(Self {
            node: cfg.node_id,
            epoch: new_epoch()?,
            refused: HopRefusals::default(),
            fec: cfg.peers.iter().map(|p| (p.node_id, p.protect.fec())).collect(),
            rtt: HashMap::new(),
            tx: BTreeMap::new(),
            rx: BTreeMap::new(),
        })
    }

    /// Carries on from a predecessor's links (`old`): its epoch, so the peers' receivers
    /// follow on without a restart, and every link's state (numbering, retransmit buffers,
    /// held packets, FEC groups), for the peers this config still has. Links made from here
    /// on use this config's settings.
    pub fn restore(&mut self, old: ProtectedLinks) {
        let configured = |p: &u32| self.fec.contains_key(p);
        self.epoch = old.epoch;
        self.refused = old.refused;
        self.rtt = old.rtt;
        self.tx = old.tx.into_iter().filter(|(p, _)| configured(p)).collect();
        self.rx = old.rx.into_iter().filter(|(p, _)| configured(p)).collect();
    }

    /// Whether any link is protected yet (timers need polling).
    pub fn active(&self) -> bool {
        !self.tx.is_empty() || !self.rx.is_empty()
    }

    /// Whether there is anything for `wecan protection` to show: links, or refusals.
    pub fn reportable(&self) -> bool {
        self.active() || self.refused != HopRefusals::default()
    }

    /// The probes' mean RTT of the link to `peer`: the ARQ timers of its links in both
    /// directions follow it from now on (the peer's agent measures the same link). (The loss
    /// that sets the FEC parity comes from the receiving relay's reports, which measure the
    /// protected traffic itself.)
    pub fn set_rtt(&mut self, peer: u32, rtt: Duration) {
        self.rtt.insert(peer, rtt);
        let rtt = self.rtt(peer);
        if let Some(tx) = self.tx.get_mut(&peer) {
            tx.link.set_rtt(rtt);
        }
        if let Some(rx) = self.rx.get_mut(&peer) {
            rx.link.set_rtt(rtt);
        }
    }

    fn rtt(&self, peer: u32) -> Duration {
        self.rtt.get(&peer).copied().unwrap_or(DEFAULT_RTT).max(Duration::from_millis(1))
    }

    /// Protects `pkt` on the hop to relay `peer` at `to`; the hop packets to send now go to
    /// `out`. A reliable packet may be queued, or refused (counted in the link's counters).
    pub fn send(
        &mut self,
        peer: u32,
        to: SocketAddr,
        mode: ProtectMode,
        pkt: &[u8],
        now: Instant,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<Sent, Refusal> {
        let rtt = self.rtt(peer);
        let (node, epoch) = (self.node, self.epoch);
        let fec = self.fec.get(&peer).copied().unwrap_or_default();
        let tx = self.tx.entry(peer).or_insert_with(|| Tx {
            link: LinkTx::new(node, peer, fec, rtt, epoch),
            to,
            mode,
        });
        (tx.to, tx.mode) = (to, mode);
        tx.link.send(mode, pkt, now, out)
    }

    /// A NACK from `peer`: resends (and queued packets it made room for) to append to `out`,
    /// and where to send them. One for a link without sending state is counted and answered
    /// with nothing.
    pub fn on_nack(
        &mut self,
        peer: u32,
        body: &[u8],
        now: Instant,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<Option<SocketAddr>, HopError> {
        let Some(tx) = self.tx.get_mut(&peer) else {
            self.refused.nacks_without_link += 1;
            return Ok(None);
        };
        tx.link.on_nack(body, now, out)?;
        Ok(Some(tx.to))
    }

    /// A data or parity hop packet from `peer` at `from`: the original packets it completes
    /// go to `deliver`.
    pub fn on_packet(
        &mut self,
        peer: u32,
        from: SocketAddr,
        kind: u8,
        body: &[u8],
        now: Instant,
        deliver: &mut Vec<Vec<u8>>,
    ) -> Result<(), HopError> {
        let rtt = self.rtt(peer);
        let node = self.node;
        let rx =
            self.rx.entry(peer).or_insert_with(|| Rx { link: LinkRx::new(node, peer, rtt), from });
        rx.from = from;
        rx.link.on_packet(kind, body, now, deliver)
    }

    /// Timers of every link: `(destination, hop packet)` pairs to send now.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        let mut buf = Vec::new();
        for tx in self.tx.values_mut() {
            tx.link.poll(now, &mut buf);
            out.extend(buf.drain(..).map(|p| (tx.to, p)));
        }
        for rx in self.rx.values_mut() {
            rx.link.poll(now, &mut buf);
            out.extend(buf.drain(..).map(|p| (rx.from, p)));
        }
    }

    pub fn report(&self, socket_drops: u64, auth: &AuthCounts) -> ProtectionReport {
        ProtectionReport {
            node: self.node,
            socket_drops,
            refused: self.refused,
            auth: auth.clone(),
            tx: self
                .tx
                .iter()
                .map(|(&peer, t)| TxRow { peer, mode: t.mode.name().into(), stats: t.link.stats() })
                .collect(),
            rx: self.rx.iter().map(|(&peer, r)| RxRow { peer, stats: r.link.stats() }).collect(),
        }
    }

    /// Writes [`ProtectedLinks::report`] to `path` atomically (temporary file, then rename).
    pub fn publish(&self, path: &Path, socket_drops: u64, auth: &AuthCounts) -> Result<()> {
        let dir = path.parent().context("state file has no directory")?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&self.report(socket_drops, auth))?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
    }
}

/// The sender epoch of this agent run: random, so a restart picks another and nobody off
/// the path can guess it (`wecan_transport::hop`).
fn new_epoch() -> Result<u32> {
    getrandom::u32().context("cannot draw a random hop epoch from the OS")
}

#[cfg(test)]
mod tests {
    use wecan_common::wire::{PacketKind, RelayHeader, flags};
    use wecan_transport::hop::{RELIABLE_BACKLOG, RELIABLE_WINDOW};

    use super::*;

    fn links() -> ProtectedLinks {
        let cfg = Config::parse(
            r#"
            node_id = 1
            interfaces = ["eth0"]
            [[peers]]
            node_id = 2
            addr = "10.0.0.2"
            auth = "none"
            protect = { mode = "arq" }
            "#,
        )
        .unwrap();
        ProtectedLinks::new(&cfg).unwrap()
    }

    fn reliable(seq: u32) -> Vec<u8> {
        let mut h = RelayHeader::new(PacketKind::Data, 100, 200, 1, seq);
        h.flags = flags::RELIABLE;
        h.to_bytes().to_vec()
    }

    const TO: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7300);

    /// A link made before the probes measured it follows their RTT once they do: its tail
    /// probe waits 2 × 100 ms, not 2 × the 10 ms assumed at first.
    #[test]
    fn live_links_follow_the_probed_rtt() {
        let mut p = links();
        let t = Instant::now();
        let mut out = Vec::new();
        p.send(2, TO, ProtectMode::Arq, &reliable(0), t, &mut out).unwrap();
        p.set_rtt(2, Duration::from_millis(100));
        let mut due = Vec::new();
        p.poll(t + Duration::from_millis(199), &mut due);
        assert!(due.is_empty(), "probed on the old RTT");
        p.poll(t + Duration::from_millis(200), &mut due);
        assert_eq!(due.len(), 1);
    }

    /// Refused reliable packets are returned and counted in the published report.
    #[test]
    fn refusals_reach_the_report() {
        let mut p = links();
        let t = Instant::now();
        let mut out = Vec::new();
        let offered = RELIABLE_WINDOW + RELIABLE_BACKLOG + 100;
        let refused = (0..offered as u32)
            .filter(|&s| p.send(2, TO, ProtectMode::Arq, &reliable(s), t, &mut out).is_err())
            .count();
        assert_eq!(refused, 100);
        let report = p.report(0, &AuthCounts::default());
        let s = report.tx[0].stats;
        assert_eq!(
            (s.refused_full, s.queued, s.backlog),
            (100, RELIABLE_BACKLOG as u64, RELIABLE_BACKLOG)
        );
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.contains("\"refused_full\":100"), "{json}");
    }
}
