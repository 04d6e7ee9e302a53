//! What keeps the agent's links honest about being alive: the heartbeat lease it writes for
//! XDP (which answers probes and hands packets up only while the lease runs), and the
//! kernel's interface events, which take the links behind a down interface down at once.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    time::Duration,
};

use anyhow::Result;
use log::{info, warn};
use wecan_datapath::{
    maps::Maps,
    netlink::{self, LinkEvents},
};

use crate::probe::now_ns;

pub struct Liveness {
    lease_ns: u64,
    /// When the lease was last extended, and until when (monotonic ns).
    beat_ns: u64,
    until_ns: u64,
    events: LinkEvents,
    /// Egress interface of each relay peer, as the kernel routed it while it was up.
    egress: BTreeMap<u32, u32>,
    /// Interfaces the kernel reported down (not running) and not back up since.
    down: BTreeSet<u32>,
}

impl Liveness {
    /// Subscribes to interface events and learns each peer's egress interface; `lease`:
    /// how long XDP vouches for the agent after a heartbeat.
    pub fn new(lease: Duration, peers: impl Iterator<Item = (u32, SocketAddr)>) -> Result<Self> {
        let mut l = Self {
            lease_ns: u64::try_from(lease.as_nanos()).unwrap_or(u64::MAX),
            beat_ns: 0,
            until_ns: 0,
            events: LinkEvents::subscribe()?,
            egress: BTreeMap::new(),
            down: BTreeSet::new(),
        };
        l.learn_egress(peers);
        Ok(l)
    }

    /// Extends the lease once a third of it has passed (so two missed turns of the loop
    /// still leave it running).
    pub fn beat(&mut self, maps: &mut Maps) {
        let now = now_ns();
        if now.saturating_sub(self.beat_ns) < self.lease_ns / 3 {
            return;
        }
        if self.until_ns != 0 && now > self.until_ns {
            warn!(
                "heartbeat {} ms late: the agent's loop stalled, and XDP answered no probe meanwhile",
                (now - self.until_ns) / 1_000_000
            );
        }
        self.extend(maps, now, self.lease_ns);
    }

    /// Extends the lease to `by` ns from `now` (a handover asks for longer than a turn).
    pub fn extend(&mut self, maps: &mut Maps, now: u64, by: u64) {
        let until = now.saturating_add(by);
        match maps.beat(until) {
            Ok(()) => (self.beat_ns, self.until_ns) = (now, until),
            Err(e) => warn!("heartbeat: {e:#}"),
        }
    }

    /// How long the loop may wait before the next heartbeat is due.
    pub fn beat_due_in(&self) -> Duration {
        let due = self.beat_ns.saturating_add(self.lease_ns / 3);
        Duration::from_nanos(due.saturating_sub(now_ns()))
    }

    /// Reads the interface events; returns the peers that became unreachable (`false`: their
    /// interface went down) or reachable again (`true`: it came back).
    pub fn interface_changes(
        &mut self,
        peers: impl Iterator<Item = (u32, SocketAddr)> + Clone,
    ) -> Vec<(u32, bool)> {
        let links = match self.events.poll() {
            Ok(l) => l,
            Err(e) => {
                warn!("interface events: {e:#}");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for l in links {
            if !l.running && self.down.insert(l.index) {
                info!("interface {} ({}) is down", l.name, l.index);
                out.extend(self.behind(l.index).map(|p| (p, false)));
            } else if l.running && self.down.remove(&l.index) {
                info!("interface {} ({}) is up", l.name, l.index);
                // Routes may have moved while it was down.
                let held: Vec<u32> = self.behind(l.index).collect();
                self.learn_egress(peers.clone());
                out.extend(held.into_iter().map(|p| (p, true)));
            }
        }
        out
    }

    fn behind(&self, ifindex: u32) -> impl Iterator<Item = u32> + '_ {
        self.egress.iter().filter(move |e| *e.1 == ifindex).map(|e| *e.0)
    }

    fn learn_egress(&mut self, peers: impl Iterator<Item = (u32, SocketAddr)>) {
        for (peer, addr) in peers {
            match netlink::route_get(addr.ip()) {
                Ok(r) => {
                    self.egress.insert(peer, r.oif);
                }
                // Kept as last known: a peer is still behind the interface it was.
                Err(e) => warn!("egress toward node {peer}: {e:#}"),
            }
        }
    }
}
