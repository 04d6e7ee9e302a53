//! The agent's main loop: the slow path, link probing, and publishing link statistics for
//! the CLI, in one thread (it owns the relay's maps and its socket).

use std::{
    net::SocketAddr,
    os::unix::net::UnixStream,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use log::{info, warn};
use wecan_common::{
    maps::LinkValue,
    wire::{PacketKind, ProbeBody},
};

use wecan_api::Report;
use wecan_datapath::relay::{self, Relay};

use crate::{
    config::Config,
    gateway::Gateway,
    handover::{self, Handoff, Listener},
    hop_auth::AuthCounts,
    liveness::Liveness,
    probe::{self, Prober, Transition},
    reconcile::{self, RouteTable},
    slowpath::SlowPath,
    upstream::Upstream,
};

/// Loop period while protected links need their timers run.
const PROTECT_TICK: Duration = Duration::from_millis(1);
/// Longest wait for a packet otherwise.
const IDLE_TICK: Duration = Duration::from_millis(100);
/// How often the protection counters are published for `wecan protection`.
const PUBLISH_EVERY: Duration = Duration::from_millis(500);

pub struct Agent {
    cfg: Config,
    relay: Relay,
    slow: SlowPath,
    prober: Prober,
    table: RouteTable,
    upstream: Option<Upstream>,
    live: Liveness,
    /// The access gateway, on an edge.
    gateway: Option<Gateway>,
    /// Where a successor asks for the handover (none while one is under way).
    listener: Option<Listener>,
}

/// How the agent leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Detach from the interfaces and remove the pins.
    Detach,
    /// Leave program, maps and links pinned for a later agent to take over.
    KeepAttached,
    /// Another agent runs (a successor took the socket and state over, or the predecessor
    /// whose handover this one failed to complete): leave everything to it.
    ToOtherAgent,
}

impl Agent {
    /// Loads the relay (taking over pinned maps and links if present), fills the maps from
    /// the config and attaches to the configured interfaces. `upstream`: the controller
    /// connection, if the config names a controller.
    pub fn start(cfg: Config, upstream: Option<Upstream>) -> Result<Self> {
        // Everything that writes no shared state first, to keep the handover short.
        let mut relay = Relay::load(&cfg.pin_dir)?;
        let peers = cfg
            .relay_peers()
            .map(|p| (p.node_id, SocketAddr::from((p.addr, cfg.peer_port(p)))))
            .collect::<Vec<_>>();
        let live = Liveness::new(Duration::from_millis(cfg.heartbeat_ms), peers.iter().copied())?;
        let mut prober = Prober::new(cfg.node_id, cfg.probes, peers);
        let mut table = RouteTable::new(&cfg);
        let mut gateway = cfg.access.as_ref().map(|a| Gateway::new(cfg.node_id, a)).transpose()?;
        // An agent running for these pins stops writing the maps and hands over its socket
        // and state; it exits once this one confirms it runs (`handover`).
        let takeover = handover::request(&cfg.pin_dir)?;
        if let Some((state, ..)) = &takeover
            && state.node_id != cfg.node_id
        {
            bail!(
                "the agent running for {} is node {}, this config is node {}: stop it first",
                cfg.pin_dir.display(),
                state.node_id,
                cfg.node_id
            );
        }
        table.adopt(&relay.maps)?;
        reconcile::apply_config(&mut relay.maps, &cfg, &table)?;
        let (slow, confirmation) = match takeover {
            Some((state, socket, confirmation)) => {
                let mut slow = SlowPath::with_socket(&cfg, socket)?;
                prober.restore(state.prober);
                slow.auth.restore(state.auth, &relay.maps);
                slow.protect.restore(state.protection);
                if let (Some(g), Some(st)) = (&mut gateway, state.gateway) {
                    g.restore(st);
                }
                (slow, Some(confirmation))
            }
            None => {
                if let Some(g) = &mut gateway {
                    g.adopt(&relay.maps)?;
                }
                (SlowPath::bind(&cfg)?, None)
            }
        };
        let mut agent =
            Self { cfg, relay, slow, prober, table, upstream, live, gateway, listener: None };
        // Alive before the first probe can reach the program.
        agent.live.beat(&mut agent.relay.maps);
        for i in &agent.cfg.interfaces {
            if let Err(e) = agent.relay.attach(i) {
                agent.shutdown(if confirmation.is_some() {
                    Exit::ToOtherAgent
                } else {
                    Exit::Detach
                });
                return Err(e);
            }
        }
        if let Some(c) = confirmation {
            c.confirm()?;
            info!("took over from the running agent");
        }
        agent.listener = Some(Listener::bind(&agent.cfg.pin_dir)?);
        info!("node {} relaying on {}", agent.cfg.node_id, agent.cfg.interfaces.join(", "));
        Ok(agent)
    }

    /// Runs until `stop` is set (`Ok(false)`) or a successor took over (`Ok(true)`); logs
    /// counters every `stats_interval` (if non-zero).
    pub fn run(&mut self, stop: &AtomicBool, stats_interval: Duration) -> Result<bool> {
        let mut last_log = Instant::now();
        let report_every = Duration::from_millis(self.cfg.report_interval_ms);
        let mut last_report = Instant::now() - report_every;
        let mut last_publish = Instant::now();
        let mut gateway_published = Instant::now();
        let state_file = Config::state_file(&self.cfg.pin_dir);
        while !stop.load(Ordering::Relaxed) {
            if let Some(conn) = self.listener.as_ref().and_then(Listener::accept)
                && self.hand_over(conn)
            {
                return Ok(true);
            }
            self.live.beat(&mut self.relay.maps);
            // Protection timers (NACKs, group timeouts) run at millisecond granularity.
            let cap = if self.slow.protect.active() { PROTECT_TICK } else { IDLE_TICK };
            let wait = self.prober.until_due().min(cap).min(self.live.beat_due_in());
            let mut changes: Vec<Transition> = Vec::new();
            for (peer, reachable) in self.live.interface_changes(self.prober.peers()) {
                changes.extend(self.prober.set_reachable(peer, reachable));
            }
            let prober = &mut self.prober;
            self.slow.poll(&self.relay.maps, wait, |local| {
                match PacketKind::from_u8(local.hdr.kind) {
                    // Only reaches the agent when XDP does not answer probes.
                    Some(PacketKind::Probe) => {
                        Some((probe::reply_to(&local.hdr, local.payload), local.from))
                    }
                    Some(PacketKind::ProbeReply) => {
                        if let Some(body) = ProbeBody::decode(local.payload) {
                            let (peer, seq) = (local.hdr.src_node(), local.hdr.seq());
                            changes.extend(prober.on_reply(peer, seq, body, local.rx_ns));
                        }
                        None
                    }
                    _ => None,
                }
            })?;
            self.serve_gateway();
            let maps = &self.relay.maps;
            self.slow.tick(maps);
            let slow = &mut self.slow;
            let probed = self
                .prober
                .tick(|p, to| slow.send(maps, p, to))
                .map(|t| changes.extend(t))
                .is_some();
            let mut reroute = false;
            for t in &changes {
                info!(
                    "node {}: link to node {} is {}",
                    self.cfg.node_id,
                    t.peer,
                    if t.up { "up" } else { "down" }
                );
                reroute |= self.table.set_link(t.peer, t.up);
            }
            let pushed = self.upstream.as_ref().and_then(Upstream::routes);
            if let Some(r) = pushed {
                info!(
                    "routes generation {} from the controller ({} routes)",
                    r.generation,
                    r.routes.len()
                );
                self.table.set_pushed(r);
                reroute = true;
            }
            // Local fast reroute and controller pushes alike: one atomic table flip.
            if reroute && let Err(e) = self.table.apply(&mut self.relay.maps) {
                warn!("applying routes: {e:#}");
            }
            if probed || !changes.is_empty() {
                self.publish_links();
            }
            let auth = &self.slow.auth.counts;
            let reportable = self.slow.protect.reportable() || *auth != AuthCounts::default();
            if reportable && last_publish.elapsed() >= PUBLISH_EVERY {
                last_publish = Instant::now();
                let drops = self.slow.socket_drops();
                if let Err(e) = self.slow.protect.publish(&state_file, drops, auth) {
                    warn!("publishing protection counters: {e:#}");
                }
            }
            if let Some(g) = &mut self.gateway
                && gateway_published.elapsed() >= PUBLISH_EVERY
            {
                gateway_published = Instant::now();
                if let Err(e) = g.publish(&Config::gateway_file(&self.cfg.pin_dir)) {
                    warn!("publishing the gateway's clients: {e:#}");
                }
            }
            if let Some(up) = &self.upstream
                && (!changes.is_empty() || last_report.elapsed() >= report_every)
            {
                last_report = Instant::now();
                up.report(Report {
                    clients: self.cfg.clients().collect(),
                    links: self.prober.reports(),
                    edge: self.gateway.as_ref().map(Gateway::report),
                });
            }
            if !stats_interval.is_zero() && last_log.elapsed() >= stats_interval {
                last_log = Instant::now();
                self.log_stats();
            }
        }
        Ok(false)
    }

    /// Hands the socket and state to a successor; `true` once it runs (this agent must then
    /// exit without touching anything), `false` if it failed (this one carries on).
    fn hand_over(&mut self, conn: UnixStream) -> bool {
        // The successor binds the name once it runs.
        self.listener = None;
        let grace = u64::try_from(handover::GRACE.as_nanos()).unwrap_or(u64::MAX);
        self.live.extend(&mut self.relay.maps, probe::now_ns(), grace);
        let state = Handoff {
            node_id: self.cfg.node_id,
            prober: self.prober.export(),
            auth: self.slow.auth.export(),
            protection: &self.slow.protect,
            gateway: self.gateway.as_ref().map(Gateway::export),
        };
        match handover::hand_over(conn, self.slow.socket(), &state) {
            Ok(true) => {
                info!("handed over to the new agent");
                return true;
            }
            Ok(false) => warn!("the new agent did not confirm the handover; carrying on"),
            Err(e) => warn!("handover failed ({e:#}); carrying on"),
        }
        match Listener::bind(&self.cfg.pin_dir) {
            Ok(l) => self.listener = Some(l),
            Err(e) => warn!("{e:#}"),
        }
        false
    }

    /// Answers the registrations the slow path received and detaches clients gone silent.
    fn serve_gateway(&mut self) {
        let queued = std::mem::take(&mut self.slow.control);
        let Some(g) = &mut self.gateway else { return };
        for (payload, from) in queued {
            if let Some(reply) = g.on_register(&mut self.relay.maps, &payload, from) {
                self.slow.send_raw(&reply, from);
            }
        }
        for link in g.sweep(&mut self.relay.maps, probe::now_ns()) {
            self.slow.auth.forget(link);
        }
    }

    fn publish_links(&mut self) {
        let now = probe::now_ns();
        for r in self.prober.reports() {
            if let Ok(rtt) = Duration::try_from_secs_f64(r.rtt_us / 1e6)
                && r.received > 0
            {
                self.slow.protect.set_rtt(r.peer, rtt);
            }
            let v = LinkValue {
                rtt_ns: (r.rtt_us * 1000.0) as u64,
                jitter_ns: (r.jitter_us * 1000.0) as u64,
                last_reply_ns: r.age_ms.map_or(0, |a| now.saturating_sub(a * 1_000_000)),
                sent: r.sent,
                received: r.received,
                loss_ppm: (r.loss * 1e6) as u32,
                up: u8::from(r.up),
                _pad: [0; 3],
            };
            if let Err(e) = self.relay.maps.set_link(r.peer, v) {
                warn!("publishing link {}: {e:#}", r.peer);
            }
        }
    }

    fn log_stats(&self) {
        match self.relay.maps.stats() {
            Ok(stats) => {
                let line: Vec<String> = stats
                    .iter()
                    .filter(|(_, c)| c.packets > 0)
                    .map(|(s, c)| format!("{}={}", s.name(), c.packets))
                    .collect();
                info!(
                    "xdp: {} | slow path: {:?} | hop auth: {:?}",
                    line.join(" "),
                    self.slow.stats,
                    self.slow.auth.counts
                );
            }
            Err(e) => warn!("reading counters: {e:#}"),
        }
    }

    /// Leaves as `how` says.
    pub fn shutdown(self, how: Exit) {
        match how {
            Exit::ToOtherAgent => return,
            // The counters die with this process.
            Exit::KeepAttached | Exit::Detach => {
                let _ = std::fs::remove_file(Config::state_file(&self.cfg.pin_dir));
                let _ = std::fs::remove_file(Config::gateway_file(&self.cfg.pin_dir));
            }
        }
        if how == Exit::KeepAttached {
            info!("leaving the relay attached (pins under {})", self.cfg.pin_dir.display());
            return;
        }
        for i in &self.cfg.interfaces {
            if let Err(e) = relay::detach(&self.cfg.pin_dir, i) {
                warn!("{i}: detach failed: {e:#}");
            }
        }
        info!("detached; pins removed");
    }
}
