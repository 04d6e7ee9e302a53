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

struct Tx {
    link: LinkTx,
    to: SocketAddr,
    mode: ProtectMode,
}

struct Rx {
    link: LinkRx,
    /// Where the peer's hop packets come from: NACKs go back there.
    from: SocketAddr,
}

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

    /// Whether any link is protected yet (timers need polling).
    pub fn active(&self) -> bool {
        !self.tx.is_empty() || !self.rx.is_empty()
    }

    /// Whether there is anything for `wecan protection` to show: links, or refusals.
    pub fn reportable(&self) -> bool {
        self.active() || self.refused != HopRefusals::default()
    }

    /// The probes' mean RTT of the link to `peer`, for the ARQ timers of links set up later.
    /// (The loss that sets the FEC parity comes from the receiving relay's reports, which
    /// measure the protected traffic itself.)
    pub fn set_rtt(&mut self, peer: u32, rtt: Duration) {
        self.rtt.insert(peer, rtt);
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

