//! The agent's TOML config (see `configs/relay.example.toml`). Every error names the
//! field and says how to fix it.

use std::{
    collections::HashSet,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use wecan_access::PublicKey;
use wecan_common::{
    maps::{DEFAULT_FIB_CACHE_MS, MAX_CLIENTS, PeerKind, PeerValue, RouteAction, peer_flags},
    wire::{DEFAULT_PORT, overlay},
};

use wecan_transport::{
    auth::{self, Secret},
    fec,
    hop::{FecSettings, ProtectMode},
};

use crate::probe::ProbeSettings;

/// Longest probe, probe timeout or report interval the config accepts: one hour.
const MAX_INTERVAL_MS: u64 = 3_600_000;
/// Shortest heartbeat lease: several turns of the agent's loop, which runs at least every
/// 10 ms while it probes.
const MIN_HEARTBEAT_MS: u64 = 20;

/// Default bpffs directory for pins; one directory per relay instance.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/wecan";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This relay's node ID (non-zero).
    pub node_id: u32,
    /// UDP port relay packets are addressed to.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Where maps and links are pinned.
    #[serde(default = "default_pin_dir")]
    pub pin_dir: PathBuf,
    /// Interfaces to attach the XDP program to.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Neighbours allowed to send to this relay, and next hops of routes.
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// Static routes.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Link probing of relay peers.
    #[serde(default)]
    pub probes: ProbeSettings,
    /// Who answers probes addressed to this relay.
    #[serde(default)]
    pub probe_reply: ProbeReply,
    /// Milliseconds the datapath reuses a `bpf_fib_lookup` result per next hop and CPU: how
    /// long a route or neighbour change may take to reach it. 0 looks up every packet.
    #[serde(default = "default_fib_cache_ms")]
    pub fib_cache_ms: u16,
    /// Controller URL (e.g. `https://192.0.2.100:7400`); without one, static routes only.
    pub controller: Option<String>,
    /// PEM file of the CA the controller's certificate must chain to.
    pub controller_ca: Option<PathBuf>,
    /// File holding this node's controller token (`wecan-controller token` makes one).
    pub controller_token_file: Option<PathBuf>,
    /// Milliseconds between link reports to the controller (a link changing state is
    /// reported at once).
    #[serde(default = "default_report_interval")]
    pub report_interval_ms: u64,
    /// Milliseconds XDP keeps answering probes and handing packets to this agent after its
    /// last heartbeat: past it, the agent counts as dead and its peers route around it.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// The access gateway: present on an edge, where clients attach with a credential.
    pub access: Option<AccessConfig>,
}

/// `[access]`: this relay is an edge whose gateway admits clients holding a token of one of
/// `operators` (checked here, offline: the controller is not asked).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// Public keys (`wecan token keygen` prints one) of the operators whose client tokens
    /// this edge accepts.
    #[serde(deserialize_with = "public_keys")]
    pub operators: Vec<PublicKey>,
    /// This edge's own credentials (`wecan token issue --edge`): clients check the
    /// operator's signature on them before they trust the edge's reply.
    pub creds: PathBuf,
    /// IDs of tokens refused although valid (`wecan token inspect` shows a token's ID).
    #[serde(default)]
    pub revoked: Vec<String>,
    /// Where clients reach this edge (ADDR:PORT), for the controller's scheduler to hand
    /// out; without any, clients must be told the edge's address another way.
    #[serde(default)]
    pub addrs: Vec<std::net::SocketAddr>,
    /// A region label the scheduler prefers among otherwise equal edges.
    #[serde(default)]
    pub region: String,
    /// Clients attached at once (at most the datapath's `MAX_CLIENTS`).
    #[serde(default = "default_max_clients")]
    pub max_clients: u32,
    /// A client silent this long is detached.
    #[serde(default = "default_client_timeout_ms")]
    pub client_timeout_ms: u32,
    /// How often clients are told to send a keepalive (a probe) when they send nothing else.
    #[serde(default = "default_keepalive_ms")]
    pub keepalive_ms: u32,
    /// Registrations per second one source address may send; XDP drops the rest.
    #[serde(default = "default_source_rate")]
    pub source_rate: u16,
    /// Registrations one source may send at once beyond its rate.
    #[serde(default = "default_source_burst")]
    pub source_burst: u16,
    /// Registrations per second the gateway verifies from all sources together (each costs
    /// two signature checks); past it they are refused as `rate_limited`.
    #[serde(default = "default_registrations_per_s")]
    pub registrations_per_s: u32,
}

fn default_max_clients() -> u32 {
    MAX_CLIENTS
}

fn default_client_timeout_ms() -> u32 {
    30_000
}

fn default_keepalive_ms() -> u32 {
    5_000
}

fn default_source_rate() -> u16 {
    5
}

fn default_source_burst() -> u16 {
    10
}

fn default_registrations_per_s() -> u32 {
    5_000
}

fn public_keys<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<PublicKey>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .enumerate()
        .map(|(i, k)| {
            k.parse().map_err(|e| {
                serde::de::Error::custom(format!(
                    "operators[{i}] {k:?}: {e}; give the key `wecan token keygen` printed"
                ))
            })
        })
        .collect()
}

impl AccessConfig {
    fn validate(&self, node_id: u32) -> Result<()> {
        if node_id > overlay::MAX_EDGE {
            bail!(
                "node_id: an edge's node ID names it in its clients' addresses, so it must be at \
                 most {} (this one is {node_id}); renumber the edge or remove [access]",
                overlay::MAX_EDGE
            );
        }
        if self.operators.is_empty() {
            bail!(
                "access.operators: empty; list the public key of every operator whose clients \
                 may attach here"
            );
        }
        if self.max_clients == 0 || self.max_clients > MAX_CLIENTS {
            bail!(
                "access.max_clients: {} is out of range; use 1 to {MAX_CLIENTS}",
                self.max_clients
            );
        }
        if self.keepalive_ms == 0
            || u64::from(self.client_timeout_ms) < 2 * u64::from(self.keepalive_ms)
        {
            bail!(
                "access.client_timeout_ms: {} must be at least twice keepalive_ms ({}, non-zero), \
                 so one lost keepalive does not detach a client",
                self.client_timeout_ms,
                self.keepalive_ms
            );
        }
        if u64::from(self.client_timeout_ms) > MAX_INTERVAL_MS {
            bail!(
                "access.client_timeout_ms: more than the most this agent allows ({MAX_INTERVAL_MS})"
            );
        }
        if self.source_rate == 0 || self.registrations_per_s == 0 {
            bail!(
                "access.source_rate, access.registrations_per_s: 0 would refuse every client; \
                 give each at least 1 (remove [access] to turn the gateway off)"
            );
        }
        Ok(())
    }
}

fn default_heartbeat_ms() -> u64 {
    50
}

fn default_fib_cache_ms() -> u16 {
    DEFAULT_FIB_CACHE_MS
}

fn default_report_interval() -> u64 {
    250
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeReply {
    /// The XDP program (XDP_TX): RTT without this relay's userspace scheduling.
    #[default]
    Xdp,
    /// The agent, over its socket (for comparison, or where XDP cannot transmit).
    Agent,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub node_id: u32,
    pub addr: IpAddr,
    /// The peer's UDP port; defaults to this relay's `port`.
    pub port: Option<u16>,
    /// `relay` (the default: probed, a possible next hop) or `client` (an end point
    /// attached here, never probed or used as transit).
    #[serde(default = "default_kind", deserialize_with = "peer_kind")]
    pub kind: PeerKind,
    /// Per-hop protection of routes through this peer (relay peers only).
    #[serde(default)]
    pub protect: ProtectConfig,
    /// `keys` (the default: every packet on this link is tagged and verified) or `none`
    /// (a link inside one trusted network).
    #[serde(default)]
    pub auth: AuthMode,
    /// The link's shared secrets, at most two: the current one and the one it replaces, so
    /// keys rotate without loss. The peer's config lists the same.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// The key ID to tag with; default the highest.
    pub send_key: Option<u8>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    #[default]
    Keys,
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// 1..=255, carried in every packet tagged with this key.
    pub id: u8,
    /// 64 hex digits (`wecan key generate`).
    #[serde(deserialize_with = "secret")]
    pub secret: Secret,
}

fn secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    let hex = String::deserialize(d)?;
    hex.parse().map_err(serde::de::Error::custom)
}

/// Protection of one link: routes whose next hop is this peer are handed to the agent and
/// protected with FEC and/or ARQ on this hop (see `wecan_transport::hop`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProtectConfig {
    /// `none` (forward in XDP), `fec`, `arq` or `fec+arq`.
    pub mode: ProtectMode,
    /// Data packets per FEC group (k).
    pub fec_group: usize,
    /// Bounds of the parity shards per group (m), which follow the link's measured loss.
    pub fec_min_parity: usize,
    pub fec_max_parity: usize,
    /// A group still open this long after its first packet is closed short.
    pub fec_timeout_ms: u64,
}

impl Default for ProtectConfig {
    fn default() -> Self {
        let f = FecSettings::default();
        Self {
            mode: ProtectMode::None,
            fec_group: f.group,
            fec_min_parity: f.min_parity,
            fec_max_parity: f.max_parity,
            fec_timeout_ms: f.timeout.as_millis() as u64,
        }
    }
}

impl ProtectConfig {
    pub fn fec(&self) -> FecSettings {
        FecSettings {
            group: self.fec_group,
            min_parity: self.fec_min_parity,
            max_parity: self.fec_max_parity,
            timeout: Duration::from_millis(self.fec_timeout_ms),
        }
    }

    fn validate(&self, at: &str) -> Result<()> {
        let (k, lo, hi) = (self.fec_group, self.fec_min_parity, self.fec_max_parity);
        if !(1..=MAX_GROUP).contains(&k) {
            bail!("{at}.fec_group: {k}; must be 1..={MAX_GROUP} packets");
        }
        if lo == 0 || lo > hi {
            bail!(
                "{at}.fec_min_parity: {lo}; must be at least 1 and at most fec_max_parity ({hi})"
            );
        }
        if k + hi > fec::MAX_SHARDS {
            bail!(
                "{at}.fec_max_parity: {hi}; fec_group + fec_max_parity must be at most {}",
                fec::MAX_SHARDS
            );
        }
        if self.fec_timeout_ms == 0 {
            bail!("{at}.fec_timeout_ms: must be at least 1");
        }
        Ok(())
    }
}

/// Largest FEC group: a receiver tracks data indices in a 256-bit set, and bigger groups only
/// delay repairs.
const MAX_GROUP: usize = 128;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Destination node.
    pub dst: u32,
    /// Next hop: a peer's node ID (required unless `action = "local"`).
    pub via: Option<u32>,
    /// Only for this flow of `dst` (per-flow override).
    pub flow: Option<u32>,
    /// `forward` (the default), `slow-path` or `local`.
    #[serde(default = "default_action", deserialize_with = "route_action")]
    pub action: RouteAction,
}

fn default_kind() -> PeerKind {
    PeerKind::Relay
}

fn peer_kind<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PeerKind, D::Error> {
    let name = String::deserialize(d)?;
    name.parse().map_err(|e| serde::de::Error::custom(format!("{name:?}: {e}")))
}

fn default_action() -> RouteAction {
    RouteAction::Forward
}

fn route_action<'de, D: serde::Deserializer<'de>>(d: D) -> Result<RouteAction, D::Error> {
    let name = String::deserialize(d)?;
    name.parse().map_err(|e| serde::de::Error::custom(format!("{name:?}: {e}")))
}

fn default_port() -> u16 {
    DEFAULT_PORT
}

fn default_pin_dir() -> PathBuf {
    PathBuf::from(DEFAULT_PIN_DIR)
}

impl PeerConfig {
    fn validate_keys(&self, i: usize) -> Result<()> {
        if self.auth == AuthMode::None {
            if !self.keys.is_empty() || self.send_key.is_some() {
                bail!(
                    "peers[{i}].keys: a link with auth = \"none\" has no keys; remove them or `auth`"
                );
            }
            return Ok(());
        }
        if self.keys.is_empty() {
            bail!(
                "peers[{i}].keys: missing; give the secret this link's two ends share as \
                 keys = [{{ id = 1, secret = \"...\" }}] (`wecan key generate` makes one), or \
                 auth = \"none\" for a link inside a trusted network"
            );
        }
        if self.keys.len() > 2 {
            bail!(
                "peers[{i}].keys: {} keys; a link holds two (the current one and the one it \
                 replaces): remove the oldest",
                self.keys.len()
            );
        }
        for (j, k) in self.keys.iter().enumerate() {
            if k.id == 0 {
                bail!("peers[{i}].keys[{j}].id: 0 means untagged; use 1..=255");
            }
        }
        if self.keys.len() == 2 && self.keys[0].id == self.keys[1].id {
            bail!("peers[{i}].keys: both keys have ID {}; give each its own", self.keys[0].id);
        }
        if let Some(id) = self.send_key
            && !self.keys.iter().any(|k| k.id == id)
        {
            bail!("peers[{i}].send_key: {id} is not the ID of one of this peer's keys");
        }
        Ok(())
    }

    /// The peer's allowlist entry for relay `me`: its keys derived for this link.
    pub fn value(&self, me: u32) -> PeerValue {
        let mut v = PeerValue::new(self.node_id, self.kind);
        if self.auth == AuthMode::None {
            v.flags = peer_flags::NO_AUTH;
            return v;
        }
        for (slot, k) in v.keys.iter_mut().zip(&self.keys) {
            *slot = auth::link_keys(&k.secret, k.id, me, self.node_id);
        }
        let send =
            self.send_key.unwrap_or_else(|| self.keys.iter().map(|k| k.id).max().unwrap_or(0));
        v.send = u8::from(v.keys[1].id == send && send != 0);
        v
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("config {}", path.display()))
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Self> {
        let cfg: Config = toml::from_str(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        if self.node_id == 0 {
            bail!("node_id: 0 is reserved; give this relay a non-zero node ID");
        }
        if overlay::edge_of(self.node_id).is_some() {
            bail!(
                "node_id: {:#x} has the top bit set, which marks the addresses of clients \
                 attached through an edge; give this relay an ID below 2^31",
                self.node_id
            );
        }
        if let Some(a) = &self.access {
            a.validate(self.node_id)?;
        }
        if self.port == 0 {
            bail!("port: 0 is not a usable UDP port; set e.g. port = {DEFAULT_PORT}");
        }
        let mut nodes = HashSet::new();
        let mut addrs = HashSet::new();
        for (i, p) in self.peers.iter().enumerate() {
            if overlay::edge_of(p.node_id).is_some() {
                bail!(
                    "peers[{i}].node_id: {:#x} has the top bit set, which marks edge-attached \
                     clients (they register; they are not configured); use an ID below 2^31",
                    p.node_id
                );
            }
            if p.node_id == 0 || p.node_id == self.node_id {
                bail!(
                    "peers[{i}].node_id: {} is {}; give the peer its own non-zero node ID",
                    p.node_id,
                    if p.node_id == 0 { "reserved" } else { "this relay's own node_id" }
                );
            }
            if !nodes.insert(p.node_id) {
                bail!("peers[{i}].node_id: node {} is listed twice; merge the entries", p.node_id);
            }
            if p.addr.is_unspecified() || p.addr.is_multicast() {
                bail!("peers[{i}].addr: {} is not a unicast address", p.addr);
            }
            if !addrs.insert(p.addr) {
                bail!(
                    "peers[{i}].addr: {} is used by another peer; each peer needs its own address",
                    p.addr
                );
            }
            if p.port == Some(0) {
                bail!("peers[{i}].port: 0 is not a usable UDP port");
            }
            if p.kind == PeerKind::Client && p.protect.mode != ProtectMode::None {
                bail!(
                    "peers[{i}].protect.mode: a client does not speak the hop protocol; protect \
                     links between relays only (mode = \"none\")"
                );
            }
            p.protect.validate(&format!("peers[{i}].protect"))?;
            p.validate_keys(i)?;
        }
        let p = &self.probes;
        if p.interval_ms == 0
            || p.window == 0
            || p.dead_after == 0
            || p.up_after == 0
            || p.timeout_ms == 0
        {
            bail!(
                "probes: interval_ms, window, dead_after, up_after and timeout_ms must all be at \
                 least 1"
            );
        }
        // Upper bounds keep the timer arithmetic (intervals × counts, as Durations and
        // Instants) far from overflow; beyond them a link would never be declared down.
        for (field, v, max) in [
            ("interval_ms", p.interval_ms, MAX_INTERVAL_MS),
            ("timeout_ms", p.timeout_ms, MAX_INTERVAL_MS),
            ("window", p.window as u64, 10_000),
            ("dead_after", u64::from(p.dead_after), 1_000),
            ("up_after", u64::from(p.up_after), 1_000),
        ] {
            if v > max {
                bail!("probes.{field}: {v} is more than the most this agent allows ({max})");
            }
        }
        if let Some(url) = &self.controller {
            // Always TLS and a token: no plain-HTTP mode to fall into by mistake.
            if !url.starts_with("https://") {
                bail!(
                    "controller: {url:?} must be an https:// URL, e.g. \"https://192.0.2.100:7400\""
                );
            }
            if self.controller_ca.is_none() {
                bail!(
                    "controller_ca: missing; set it to the PEM file of the CA that signed the \
                     controller's certificate"
                );
            }
            if self.controller_token_file.is_none() {
                bail!(
                    "controller_token_file: missing; set it to the file holding this node's \
                     token (from `wecan-controller token`)"
                );
            }
        }
        // The agent's loop beats every few milliseconds; a shorter lease would lapse between.
        if !(MIN_HEARTBEAT_MS..=MAX_INTERVAL_MS).contains(&self.heartbeat_ms) {
            bail!(
                "heartbeat_ms: {} is out of range; use {MIN_HEARTBEAT_MS} to {MAX_INTERVAL_MS}",
                self.heartbeat_ms
            );
        }
        if self.report_interval_ms == 0 || self.report_interval_ms > MAX_INTERVAL_MS {
            bail!(
                "report_interval_ms: {} is out of range; use 1 to {MAX_INTERVAL_MS}",
                self.report_interval_ms
            );
        }
        let mut keys = HashSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            if r.dst == 0 {
                bail!("routes[{i}].dst: node 0 is reserved");
            }
            if !keys.insert((r.dst, r.flow)) {
                bail!(
                    "routes[{i}]: a route for dst {} (flow {:?}) is already defined; keep one",
                    r.dst,
                    r.flow
                );
            }
            match (r.action, r.via) {
                (RouteAction::Local, Some(_)) => {
                    bail!("routes[{i}].via: a local route has no next hop; remove `via`")
                }
                (RouteAction::Local, None) => {}
                (_, None) => {
                    bail!("routes[{i}].via: missing; set it to the node ID of one of the [[peers]]")
                }
                (_, Some(via)) => {
                    if self.peer(via).is_none() {
                        bail!(
                            "routes[{i}].via: node {via} is not a configured peer; add it under [[peers]]"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// The peer with this node ID.
    pub fn peer(&self, node_id: u32) -> Option<&PeerConfig> {
        self.peers.iter().find(|p| p.node_id == node_id)
    }

    /// Relay peers (probed; possible transit next hops).
    pub fn relay_peers(&self) -> impl Iterator<Item = &PeerConfig> {
        self.peers.iter().filter(|p| p.kind == PeerKind::Relay)
    }

    /// Node IDs of the clients attached to this relay.
    pub fn clients(&self) -> impl Iterator<Item = u32> + '_ {
        self.peers.iter().filter(|p| p.kind == PeerKind::Client).map(|p| p.node_id)
    }

    /// Where the agent publishes its per-hop protection counters for `wecan protection`: beside
    /// nothing in bpffs (which holds only pins), so under `/run/wecan`, keyed by `pin_dir`.
    pub fn state_file(pin_dir: &Path) -> PathBuf {
        Path::new("/run/wecan")
            .join(pin_dir.strip_prefix("/").unwrap_or(pin_dir))
            .join("protection.json")
    }

    /// Where an edge's agent publishes its gateway's clients and counters for `wecan clients`.
    pub fn gateway_file(pin_dir: &Path) -> PathBuf {
        Self::state_file(pin_dir).with_file_name("gateway.json")
    }

    /// UDP port of a peer.
    pub fn peer_port(&self, peer: &PeerConfig) -> u16 {
        peer.port.unwrap_or(self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        node_id = 1
        interfaces = ["eth0"]
        [[peers]]
        node_id = 2
        addr = "10.0.0.2"
        keys = [{ id = 1, secret = "0101010101010101010101010101010101010101010101010101010101010101" },
                { id = 2, secret = "0202020202020202020202020202020202020202020202020202020202020202" }]
        [[peers]]
        node_id = 3
        addr = "fd00::3"
        port = 9000
        kind = "client"
        auth = "none"
        [[routes]]
        dst = 3
        via = 3
        [[routes]]
        dst = 3
        flow = 7
        via = 2
        action = "slow-path"
    "#;

    #[test]
    fn parses_good_config() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.port, DEFAULT_PORT);
        assert_eq!(c.pin_dir, Path::new(DEFAULT_PIN_DIR));
        assert_eq!(c.peer_port(c.peer(3).unwrap()), 9000);
        assert_eq!(c.routes[1].action, RouteAction::SlowPath);
        assert_eq!(c.relay_peers().map(|p| p.node_id).collect::<Vec<_>>(), vec![2]);
        assert_eq!(c.probes, ProbeSettings::default());
        assert_eq!(c.probe_reply, ProbeReply::Xdp);
        // Keys are derived per link and direction; the highest ID sends.
        let v = c.peer(2).unwrap().value(1);
        assert_eq!((v.keys[0].id, v.keys[1].id, v.send), (1, 2, 1));
        let secret2: Secret = "02".repeat(32).parse().unwrap();
        assert_eq!(v.send_key().unwrap().tx, auth::derive(&secret2, 2, 1, 2));
        assert!(c.peer(3).unwrap().value(1).no_auth());
    }

    #[test]
    fn shipped_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/relay.example.toml");
        Config::load(&path).unwrap();
    }

    fn err(text: &str) -> String {
        format!("{:#}", Config::parse(text).unwrap_err())
    }

    #[test]
    fn liveness_settings_are_bounded() {
        assert!(err("node_id = 1\nheartbeat_ms = 5").contains("heartbeat_ms: 5 is out of range"));
        assert!(err("node_id = 1\n[probes]\nup_after = 0").contains("up_after"));
        assert!(err("node_id = 1\n[probes]\nup_after = 5000").contains("probes.up_after"));
    }

    #[test]
    fn an_edge_names_its_operators_and_fits_its_clients_addresses() {
        let op = format!("{}{}", wecan_access::key::PUBLIC_PREFIX, "A".repeat(43));
        let edge = |node: u32, more: &str| {
            format!(
                "node_id = {node}\n[access]\noperators = [\"{op}\"]\ncreds = \"/e.creds\"\n{more}"
            )
        };
        let c = Config::parse(&edge(7, "")).unwrap();
        let a = c.access.unwrap();
        assert_eq!((a.max_clients, a.client_timeout_ms, a.source_rate), (MAX_CLIENTS, 30_000, 5));
        let e = err(&edge(0x8000, ""));
        assert!(e.contains("at most 32767"), "{e}");
        assert!(err(&edge(7, "max_clients = 0")).contains("access.max_clients"));
        assert!(err(&edge(7, "keepalive_ms = 20000")).contains("twice keepalive_ms"));
        assert!(err(&edge(7, "source_rate = 0")).contains("access.source_rate"));
        let e = err("node_id = 7\n[access]\noperators = [\"nope\"]\ncreds = \"/e.creds\"");
        assert!(e.contains("operators[0]") && e.contains("wecan token keygen"), "{e}");
        let e = err("node_id = 7\n[access]\noperators = []\ncreds = \"/e.creds\"");
        assert!(e.contains("access.operators: empty"), "{e}");
        // The top bit of a node ID marks an edge's clients: no relay or peer may have it.
        assert!(err("node_id = 2147483649").contains("top bit"));
        let e = err(
            "node_id = 1\n[[peers]]\nnode_id = 2147483650\naddr = \"10.0.0.2\"\nauth = \"none\"",
        );
        assert!(e.contains("peers[0].node_id") && e.contains("top bit"), "{e}");
    }

    #[test]
    fn controller_needs_tls_and_a_token() {
        let ctl = "node_id = 1\ncontroller = \"https://192.0.2.100:7400\"\n";
        assert!(err("node_id = 1\ncontroller = \"http://10.0.0.1:7400\"").contains("https://"));
        assert!(err(ctl).contains("controller_ca: missing"));
        let e = err(&format!("{ctl}controller_ca = \"/ca.pem\""));
        assert!(e.contains("controller_token_file: missing"), "{e}");
    }

    #[test]
    fn errors_name_the_field() {
        assert!(err("node_id = 0").contains("node_id"));
        assert!(err("node_id = 1\nport = 0").contains("port"));
        assert!(err("node_id = 1\nbogus = 2").contains("bogus"));
        let e = err("node_id = 1\n[[routes]]\ndst = 5\nvia = 9");
        assert!(e.contains("routes[0].via") && e.contains("[[peers]]"), "{e}");
        let e = err("node_id = 1\n[[routes]]\ndst = 5");
        assert!(e.contains("routes[0].via: missing"), "{e}");
        let e = err("node_id = 1\n[[peers]]\nnode_id = 2\naddr = \"10.0.0.300\"");
        assert!(e.contains("addr"), "{e}");
        let e = err("node_id = 1\n[[peers]]\nnode_id = 1\naddr = \"10.0.0.3\"");
        assert!(e.contains("peers[0].node_id"), "{e}");
        let e = err("node_id = 1\n[[routes]]\ndst = 5\naction = \"teleport\"");
        assert!(e.contains("action"), "{e}");
        let e = err("node_id = 1\n[[peers]]\nnode_id = 2\naddr = \"10.0.0.2\"");
        assert!(e.contains("peers[0].keys: missing") && e.contains("wecan key generate"), "{e}");
        let key = |id: u8| format!("{{ id = {id}, secret = \"{}\" }}", "ab".repeat(32));
        let base = "node_id = 1\n[[peers]]\nnode_id = 2\naddr = \"10.0.0.2\"\n";
        let e = err(&format!("{base}keys = [{}, {}, {}]", key(1), key(2), key(3)));
        assert!(e.contains("peers[0].keys: 3 keys"), "{e}");
        let e = err(&format!("{base}keys = [{}]", key(0)));
        assert!(e.contains("peers[0].keys[0].id"), "{e}");
        let e = err(&format!("{base}keys = [{}, {}]", key(4), key(4)));
        assert!(e.contains("both keys have ID 4"), "{e}");
        let e = err(&format!("{base}keys = [{}]\nsend_key = 2", key(1)));
        assert!(e.contains("peers[0].send_key: 2"), "{e}");
        let e = err(&format!("{base}keys = [{{ id = 1, secret = \"abc\" }}]"));
        assert!(e.contains("64 hex digits"), "{e}");
        let e = err(&format!("{base}auth = \"none\"\nkeys = [{}]", key(1)));
        assert!(e.contains("auth = \"none\" has no keys"), "{e}");
        let peer = format!("{base}keys = [{}]\n", key(1));
        let e = err(&format!("{peer}protect = {{ mode = \"fec+arq\", fec_group = 0 }}"));
        assert!(e.contains("peers[0].protect.fec_group"), "{e}");
        let e = err(&format!("{peer}protect = {{ fec_min_parity = 5, fec_max_parity = 2 }}"));
        assert!(e.contains("peers[0].protect.fec_min_parity"), "{e}");
        let e = err(&format!("{peer}protect = {{ mode = \"xor\" }}"));
        assert!(e.contains("mode"), "{e}");
        let e = err(&format!("{peer}kind = \"client\"\nprotect = {{ mode = \"arq\" }}"));
        assert!(e.contains("peers[0].protect.mode: a client"), "{e}");
        let ok = Config::parse(&format!("{peer}protect = {{ mode = \"fec+arq\" }}")).unwrap();
        assert_eq!(ok.peers[0].protect.mode, ProtectMode::FecArq);
        let e = err("node_id = 1\n[probes]\ninterval_ms = 0");
        assert!(e.contains("probes"), "{e}");
        // Huge values are refused by name instead of overflowing the timers.
        let e = err("node_id = 1\n[probes]\ninterval_ms = 9223372036854775807");
        assert!(e.contains("probes.interval_ms"), "{e}");
        let e = err("node_id = 1\n[probes]\ndead_after = 4000000000");
        assert!(e.contains("probes.dead_after"), "{e}");
        let e = err("node_id = 1\nreport_interval_ms = 9223372036854775807");
        assert!(e.contains("report_interval_ms"), "{e}");
    }
}
