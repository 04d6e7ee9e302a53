//! An edge's access gateway: clients register with an operator-signed token
//! (`wecan_access`), checked here offline; an admitted client gets an overlay address that
//! names this edge (`wire::overlay`) and keys for its link, written into `CLIENTS`, after
//! which XDP forwards its packets like any peer's. Clients silent for their timeout, or whose
//! token expired, are detached.
//!
//! What it costs is bounded: XDP passes registrations up only within a per-source rate, this
//! gateway verifies at most `registrations_per_s` of them from all sources together, and
//! holds at most `max_clients` clients and the nonces of the last minute.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};
use log::{debug, warn};
use serde::{Deserialize, Serialize};
use wecan_access::{
    Creds,
    register::{self, Refusal, msg::NONCE_LEN},
};
use wecan_api::EdgeReport;
use wecan_common::{
    maps::{
        ClientValue, HopKeys, MAX_CLIENTS, PeerKind, PeerValue, RouteAction, RouteOrigin,
        client_auth_slot,
    },
    wire::{HEADER_LEN, PacketKind, RelayHeader, overlay},
};
use wecan_datapath::maps::Maps;

use crate::{config::AccessConfig, hop_auth::Link, reconcile};

/// A registration's nonce is remembered this long: its timestamp is refused as stale after
/// [`register::MAX_SKEW_MS`] either way, so an older replay cannot pass.
const NONCE_MEMORY_MS: u64 = 2 * register::MAX_SKEW_MS;
/// Clients whose activity one sweep reads (one map lookup each), so a sweep of a full edge
/// is spread over several turns of the agent's loop.
const SWEEP_BATCH: usize = 2_048;
/// How often a sweep runs.
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// Key ID of a client link: each registration derives fresh keys, so one suffices.
const CLIENT_KEY_ID: u8 = 1;

/// What the gateway did, by outcome; `wecan clients` shows it.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayCounts {
    pub accepted: u64,
    /// Refused registrations by reason (`Refusal::name`).
    pub refused: BTreeMap<String, u64>,
    /// Clients detached after their timeout without a packet.
    pub timed_out: u64,
    /// Clients detached because their token expired.
    pub token_expired: u64,
    /// Clients that registered again with the same token (restarted): the old attachment
    /// was released.
    pub replaced: u64,
}

/// One attached client, as the gateway remembers it (the datapath holds the rest).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attached {
    pub addr: u32,
    pub name: String,
    pub token_id: String,
    /// Token expiry, unix seconds.
    pub expires: u64,
}

/// What a successor agent takes over (see `handover`), so attached clients stay attached
/// and a nonce seen before the upgrade is refused after it.
#[derive(Serialize, Deserialize)]
pub struct GatewayState {
    attached: Vec<Attached>,
    released: Vec<u16>,
    fresh: u32,
    nonces: Vec<(u64, [u8; NONCE_LEN])>,
    counts: GatewayCounts,
}

/// The gateway's published state, for `wecan clients`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct GatewayReport {
    pub counts: GatewayCounts,
    pub clients: Vec<Attached>,
}

pub struct Gateway {
    node_id: u32,
    cfg: AccessConfig,
    creds: Creds,
    revoked: HashSet<String>,
    attached: HashMap<u32, Attached>,
    by_token: HashMap<String, u32>,
    /// Slots released, oldest first: reused as late as possible, so a packet still in
    /// flight to a detached client is unlikely to reach the next one.
    released: VecDeque<u16>,
    /// Slots never used yet start here.
    fresh: u32,
    nonces: HashSet<[u8; NONCE_LEN]>,
    nonce_order: VecDeque<(u64, [u8; NONCE_LEN])>,
    /// Registrations verified in the current second, and when it began.
    budget: (Instant, u32),
    sweep_at: Instant,
    sweep_cursor: usize,
    pub counts: GatewayCounts,
    changed: bool,
}

/// Unix time in ms.
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Gateway {
    /// The gateway of edge `node_id`, with its credentials read from `cfg.creds`.
    pub fn new(node_id: u32, cfg: &AccessConfig) -> Result<Self> {
        let text = std::fs::read_to_string(&cfg.creds)
            .with_context(|| format!("access.creds: cannot read {}", cfg.creds.display()))?;
        let creds = Creds::parse(&text).with_context(|| {
            format!("access.creds: {} is not a valid credentials file", cfg.creds.display())
        })?;
        Ok(Self {
            node_id,
            cfg: cfg.clone(),
            creds,
            revoked: cfg.revoked.iter().cloned().collect(),
            attached: HashMap::new(),
            by_token: HashMap::new(),
            released: VecDeque::new(),
            fresh: 1,
            nonces: HashSet::new(),
            nonce_order: VecDeque::new(),
            budget: (Instant::now(), 0),
            sweep_at: Instant::now(),
            sweep_cursor: 0,
            counts: GatewayCounts::default(),
            changed: true,
        })
    }

    pub fn export(&self) -> GatewayState {
        GatewayState {
            attached: self.attached.values().cloned().collect(),
            released: self.released.iter().copied().collect(),
            fresh: self.fresh,
            nonces: self.nonce_order.iter().copied().collect(),
            counts: self.counts.clone(),
        }
    }

    /// Takes over a predecessor's clients, slots, nonces and counters.
    pub fn restore(&mut self, st: GatewayState) {
        for a in st.attached {
            self.by_token.insert(a.token_id.clone(), a.addr);
            self.attached.insert(a.addr, a);
        }
        self.released = st.released.into();
        self.fresh = st.fresh;
        self.nonces = st.nonces.iter().map(|(_, n)| *n).collect();
        self.nonce_order = st.nonces.into();
        self.counts = st.counts;
    }

    /// Keeps the clients a predecessor left in the datapath without handing its state over
    /// (it exited leaving the relay attached): they stay until their timeout, without the
    /// name and token the gateway no longer knows.
    pub fn adopt(&mut self, maps: &Maps) -> Result<()> {
        let mut used = HashSet::new();
        for c in maps.clients()? {
            let addr = c.peer.node_id;
            if overlay::edge_of(addr) != Some(self.node_id) {
                continue;
            }
            used.insert(overlay::slot_of(addr));
            let unknown = Attached {
                addr,
                name: String::new(),
                token_id: format!("{addr:#x}"),
                expires: u64::MAX,
            };
            self.attached.entry(addr).or_insert(unknown);
        }
        if let Some(&max) = used.iter().max() {
            self.fresh = self.fresh.max(u32::from(max) + 1);
            self.released = (1..max).filter(|s| !used.contains(s)).collect();
        }
        Ok(())
    }

    /// Handles a registration `payload` (after the relay header) from `from`; returns the
    /// reply to send back untagged, if any (garbage gets none).
    pub fn on_register(
        &mut self,
        maps: &mut Maps,
        payload: &[u8],
        from: SocketAddr,
    ) -> Option<Vec<u8>> {
        self.changed = true;
        let now_ms = unix_ms();
        let reply = match self.admit(maps, payload, from, now_ms) {
            Ok(reply) => {
                self.counts.accepted += 1;
                reply
            }
            Err((refusal, nonce)) => {
                *self.counts.refused.entry(refusal.name().to_string()).or_default() += 1;
                debug!("registration from {from} refused: {refusal}");
                register::refuse(nonce?, refusal)
            }
        };
        let hdr = RelayHeader::new(PacketKind::Control, self.node_id, 0, 0, 0);
        let mut pkt = Vec::with_capacity(HEADER_LEN + reply.len());
        pkt.extend_from_slice(&hdr.to_bytes());
        pkt.extend_from_slice(&reply);
        Some(pkt)
    }

    /// Checks a registration and attaches the client; the refusal comes with the request's
    /// nonce when it had one to answer to.
    fn admit(
        &mut self,
        maps: &mut Maps,
        payload: &[u8],
        from: SocketAddr,
        now_ms: u64,
    ) -> Result<Vec<u8>, (Refusal, Option<[u8; NONCE_LEN]>)> {
        let nonce = register::register_nonce(payload);
        let refuse = |r| (r, nonce);
        if !self.within_budget() {
            return Err(refuse(Refusal::RateLimited));
        }
        let v = register::verify_register(payload, &self.cfg.operators, self.node_id, now_ms)
            .map_err(refuse)?;
        if self.revoked.contains(&v.claims.id) {
            return Err(refuse(Refusal::Revoked));
        }
        self.forget_old_nonces(now_ms);
        if !self.nonces.insert(v.nonce) {
            return Err(refuse(Refusal::Replayed));
        }
        self.nonce_order.push_back((now_ms + NONCE_MEMORY_MS, v.nonce));
        // The same token again: the client restarted, or lost the reply.
        if let Some(old) = self.by_token.get(&v.claims.id).copied() {
            self.detach(maps, old);
            self.counts.replaced += 1;
        }
        let Some(slot) = self.take_slot() else {
            return Err(refuse(Refusal::Full));
        };
        let (addr, auth_slot) = match (overlay::client(self.node_id, slot), client_auth_slot(slot))
        {
            (Some(a), Some(s)) => (a, s),
            _ => return Err(refuse(Refusal::Full)),
        };
        let (reply, keys) = register::accept(
            &v,
            &self.creds,
            self.node_id,
            addr,
            CLIENT_KEY_ID,
            self.cfg.keepalive_ms,
            self.cfg.client_timeout_ms,
        )
        .map_err(|e| {
            warn!("cannot answer a registration: {e}");
            refuse(Refusal::Malformed)
        })?;
        let added = client_value(addr, auth_slot, keys, from).and_then(|v| maps.add_client(v));
        if let Err(e) = added {
            warn!("attaching client {addr:#x}: {e:#}");
            self.released.push_back(slot);
            return Err(refuse(Refusal::Full));
        }
        debug!("client {:?} attached as {addr:#x} from {from}", v.claims.name);
        self.by_token.insert(v.claims.id.clone(), addr);
        self.attached.insert(
            addr,
            Attached {
                addr,
                name: v.claims.name.clone(),
                token_id: v.claims.id.clone(),
                expires: v.claims.exp,
            },
        );
        Ok(reply)
    }

    fn within_budget(&mut self) -> bool {
        let (since, n) = &mut self.budget;
        if since.elapsed() >= Duration::from_secs(1) {
            *since = Instant::now();
            *n = 0;
        }
        *n += 1;
        *n <= self.cfg.registrations_per_s
    }

    fn forget_old_nonces(&mut self, now_ms: u64) {
        while let Some(&(until, nonce)) = self.nonce_order.front() {
            if until > now_ms {
                break;
            }
            self.nonce_order.pop_front();
            self.nonces.remove(&nonce);
        }
    }

    fn take_slot(&mut self) -> Option<u16> {
        if self.attached.len() >= self.cfg.max_clients as usize {
            return None;
        }
        if self.fresh <= MAX_CLIENTS {
            self.fresh += 1;
            return u16::try_from(self.fresh - 1).ok();
        }
        self.released.pop_front()
    }

    /// Removes client `addr` from the datapath and frees its slot.
    fn detach(&mut self, maps: &mut Maps, addr: u32) -> Option<Link> {
        let a = self.attached.remove(&addr)?;
        self.by_token.remove(&a.token_id);
        if let Err(e) = maps.remove_client(addr) {
            warn!("detaching client {addr:#x}: {e:#}");
        }
        self.released.push_back(overlay::slot_of(addr));
        self.changed = true;
        Some(Link::Client(addr))
    }

    /// Detaches clients silent for their timeout, or whose token expired (part of them per
    /// call, see [`SWEEP_BATCH`]); returns their links, for the agent to forget.
    pub fn sweep(&mut self, maps: &mut Maps, mono_ns: u64) -> Vec<Link> {
        if self.attached.is_empty() || self.sweep_at.elapsed() < SWEEP_EVERY {
            return Vec::new();
        }
        self.sweep_at = Instant::now();
        let now_s = unix_ms() / 1000;
        let timeout_ns = u64::from(self.cfg.client_timeout_ms) * 1_000_000;
        let mut addrs: Vec<u32> = self.attached.keys().copied().collect();
        addrs.sort_unstable();
        let start = self.sweep_cursor % addrs.len();
        let batch: Vec<u32> =
            addrs.iter().cycle().skip(start).take(SWEEP_BATCH.min(addrs.len())).copied().collect();
        self.sweep_cursor = start + batch.len();
        let mut gone = Vec::new();
        for addr in batch {
            let expired = self.attached.get(&addr).is_some_and(|a| a.expires <= now_s);
            let silent = match maps.client(addr) {
                Some(c) => mono_ns.saturating_sub(c.last_seen_ns) > timeout_ns,
                // Removed by someone else (`wecan clients remove`): forget it.
                None => true,
            };
            if expired || silent {
                if expired {
                    self.counts.token_expired += 1;
                } else {
                    self.counts.timed_out += 1;
                }
                gone.extend(self.detach(maps, addr));
            }
        }
        gone
    }

    /// What the controller's scheduler needs to know of this edge.
    pub fn report(&self) -> EdgeReport {
        EdgeReport {
            operator: self.creds.claims().iss.to_string(),
            serves: self.cfg.operators.iter().map(ToString::to_string).collect(),
            region: self.cfg.region.clone(),
            addrs: self.cfg.addrs.clone(),
            clients: u32::try_from(self.attached.len()).unwrap_or(u32::MAX),
            capacity: self.cfg.max_clients,
        }
    }

    /// Writes the gateway's state to `path` if it changed since the last call.
    pub fn publish(&mut self, path: &Path) -> Result<()> {
        if !self.changed {
            return Ok(());
        }
        self.changed = false;
        let mut clients: Vec<Attached> = self.attached.values().cloned().collect();
        clients.sort_by_key(|a| a.addr);
        let report = GatewayReport { counts: self.counts.clone(), clients };
        let dir = path.parent().context("state file has no directory")?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&report)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
    }
}

/// The datapath entry of a client at `addr` that registered from `from`: replies go back
/// there, from the address the kernel routes toward it (the client's first packet through
/// XDP corrects both if it sent to another of this edge's addresses).
fn client_value(addr: u32, auth_slot: u32, keys: HopKeys, from: SocketAddr) -> Result<ClientValue> {
    let mut peer = PeerValue::new(addr, PeerKind::Client);
    peer.keys[0] = keys;
    peer.auth_slot = auth_slot;
    let route = reconcile::route_to(
        RouteAction::Forward,
        from.ip(),
        from.port(),
        addr,
        RouteOrigin::Static,
    )?;
    Ok(ClientValue { peer, route, last_seen_ns: crate::probe::now_ns() })
}
