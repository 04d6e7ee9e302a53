//! Link probing: the agent sends a probe to every relay peer each interval and keeps, per
//! link, moving statistics over a window of recent probes: RTT, loss, jitter (RFC 3550
//! smoothing), age of the last reply, and whether the link is up.
//!
//! The peer answers in XDP (see `xdp-prog/src/probe.rs`), so the RTT is the network's and
//! the peer's datapath's, not its agent's scheduling; and only while the peer's agent is
//! alive, so a dead agent's links go down like cut ones.
//!
//! Liveness is BFD-like: probes every 10 ms by default (cheap, as XDP answers them), a link
//! down after `dead_after` intervals of silence, and up again only after `up_after`
//! consecutive answered probes (flap damping). A link whose interface the kernel reports
//! down is held down at once ([`Prober::hold_down`]), without waiting for probes.

use std::{
    collections::{BTreeMap, VecDeque},
    net::SocketAddr,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use wecan_api::LinkReport;
use wecan_common::wire::{HEADER_LEN, PacketKind, ProbeBody, RelayHeader};

/// Flow ID probes are sent on (distinct from application flows in counters and captures).
pub const PROBE_FLOW: u32 = 0;

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the struct we pass.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Monotonic clock (ns): scheduling, ages, liveness.
pub fn now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// Wall clock (ns): probe timestamps, because the kernel's receive timestamps
/// (`SO_TIMESTAMPNS`) use it. A clock step can spoil one sample; negative RTTs are dropped.
pub fn wall_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// Probing parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeSettings {
    /// Time between probes to each peer.
    pub interval_ms: u64,
    /// Number of recent probes the statistics cover.
    pub window: usize,
    /// The link is down after this many probe intervals without any reply.
    pub dead_after: u32,
    /// A down link comes up after this many consecutive probes answered.
    pub up_after: u32,
    /// A probe not answered within this time counts as lost.
    pub timeout_ms: u64,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        // Down within 50–60 ms of silence; a link losing 10 % of probes has five in a row
        // lost about once in 17 minutes.
        Self { interval_ms: 10, window: 100, dead_after: 5, up_after: 3, timeout_ms: 1000 }
    }
}

#[derive(Clone, Serialize, Deserialize)]
struct Link {
    addr: SocketAddr,
    /// (seq, wall-clock send time, monotonic send time, RTT once answered) of the last
    /// `window` probes.
    recent: VecDeque<(u32, u64, u64, Option<u64>)>,
    jitter_ns: f64,
    last_rtt_ns: Option<u64>,
    last_reply_ns: Option<u64>,
    up: bool,
    /// Consecutive probes answered, up to the newest answered.
    streak: u32,
    /// Its interface is down: no reply can bring it up.
    held: bool,
    sent: u64,
    received: u64,
}

/// Probes every peer and tracks its link.
pub struct Prober {
    me: u32,
    settings: ProbeSettings,
    links: BTreeMap<u32, Link>,
    seq: u32,
    next_due_ns: u64,
}

/// What a [`Prober`] hands its successor in an upgrade (see `handover`): every link's
/// statistics and state, so the new agent neither reports its links down nor waits for them
/// to come up again. Times are `CLOCK_MONOTONIC`, which both processes share.
#[derive(Serialize, Deserialize)]
pub struct ProberState {
    seq: u32,
    links: BTreeMap<u32, Link>,
}

/// An up/down change of a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub peer: u32,
    pub up: bool,
}

impl Prober {
    /// `peers`: relay peers (node ID, address of their relay port). Links start down until
    /// their first reply.
    pub fn new(
        me: u32,
        settings: ProbeSettings,
        peers: impl IntoIterator<Item = (u32, SocketAddr)>,
    ) -> Self {
        let links = peers
            .into_iter()
            .map(|(id, addr)| {
                let link = Link {
                    addr,
                    recent: VecDeque::new(),
                    jitter_ns: 0.0,
                    last_rtt_ns: None,
                    last_reply_ns: None,
                    up: false,
                    streak: 0,
                    held: false,
                    sent: 0,
                    received: 0,
                };
                (id, link)
            })
            .collect();
        Self { me, settings, links, seq: 0, next_due_ns: now_ns() }
    }

    /// Time until the next round of probes is due.
    pub fn until_due(&self) -> Duration {
        Duration::from_nanos(self.next_due_ns.saturating_sub(now_ns()))
    }

    /// Sends a probe to every peer with `send` if a round is due (else `None`); returns
    /// links that changed state (a link goes down when nothing came back for `dead_after`
    /// intervals).
    pub fn tick(&mut self, mut send: impl FnMut(&mut [u8], SocketAddr)) -> Option<Vec<Transition>> {
        let now = now_ns();
        if now < self.next_due_ns {
            return None;
        }
        let interval = self.settings.interval_ms * 1_000_000;
        self.next_due_ns += interval;
        // Skip missed rounds rather than bursting to catch up.
        if self.next_due_ns <= now {
            self.next_due_ns = now + interval;
        }
        self.seq = self.seq.wrapping_add(1);
        let dead_ns = u64::from(self.settings.dead_after) * interval;
        let mut changes = Vec::new();
        for (&peer, link) in &mut self.links {
            let hdr = RelayHeader::new(PacketKind::Probe, self.me, peer, PROBE_FLOW, self.seq);
            let mut pkt = [0u8; HEADER_LEN + ProbeBody::LEN];
            pkt[..HEADER_LEN].copy_from_slice(&hdr.to_bytes());
            let sent_ns = wall_ns();
            pkt[HEADER_LEN..].copy_from_slice(&ProbeBody { sent_ns }.to_bytes());
            // A failed send is a lost probe; the statistics show it.
            send(&mut pkt, link.addr);
            link.sent += 1;
            link.recent.push_back((self.seq, sent_ns, now, None));
            while link.recent.len() > self.settings.window {
                link.recent.pop_front();
            }
            if link.up && now.saturating_sub(link.last_reply_ns.unwrap_or(0)) >= dead_ns {
                link.up = false;
                link.streak = 0;
                changes.push(Transition { peer, up: false });
            }
        }
        Some(changes)
    }

    /// Holds the link to `peer` down while its interface is down (`false`), or lets probes
    /// bring it up again (`true`); returns a transition if the link went down.
    pub fn set_reachable(&mut self, peer: u32, reachable: bool) -> Option<Transition> {
        let link = self.links.get_mut(&peer)?;
        link.held = !reachable;
        link.streak = 0;
        if link.held && link.up {
            link.up = false;
            return Some(Transition { peer, up: false });
        }
        None
    }

    pub fn export(&self) -> ProberState {
        ProberState { seq: self.seq, links: self.links.clone() }
    }

    /// Takes over the links of a predecessor's state that this prober also has (same peer
    /// and address).
    pub fn restore(&mut self, st: ProberState) {
        self.seq = st.seq;
        for (peer, old) in st.links {
            if let Some(link) = self.links.get_mut(&peer)
                && link.addr == old.addr
            {
                *link = old;
            }
        }
    }

    /// Relay peers and the addresses they are probed at.
    pub fn peers(&self) -> impl Iterator<Item = (u32, SocketAddr)> + Clone + '_ {
        self.links.iter().map(|(&id, l)| (id, l.addr))
    }

    /// Accounts for a probe reply from `peer` that the kernel received at `rx_ns` (wall
    /// clock; now if unknown); returns a transition if the link came up.
    pub fn on_reply(
        &mut self,
        peer: u32,
        seq: u32,
        body: ProbeBody,
        rx_ns: Option<u64>,
    ) -> Option<Transition> {
        let now = now_ns();
        let link = self.links.get_mut(&peer)?;
        let slot = link.recent.iter_mut().find(|p| p.0 == seq && p.1 == body.sent_ns)?;
        if slot.3.is_some() {
            return None;
        }
        let rtt = rx_ns.unwrap_or_else(wall_ns).checked_sub(body.sent_ns)?;
        slot.3 = Some(rtt);
        link.received += 1;
        if let Some(prev) = link.last_rtt_ns {
            let d = (rtt as f64 - prev as f64).abs();
            link.jitter_ns += (d - link.jitter_ns) / 16.0;
        }
        link.last_rtt_ns = Some(rtt);
        link.last_reply_ns = Some(now);
        let prev_answered = link.recent.iter().any(|p| p.0 == seq.wrapping_sub(1) && p.3.is_some());
        link.streak = if prev_answered { link.streak.saturating_add(1) } else { 1 };
        if !link.up && !link.held && link.streak >= self.settings.up_after {
            link.up = true;
            return Some(Transition { peer, up: true });
        }
        None
    }

    /// Current statistics of every link.
    pub fn reports(&self) -> Vec<LinkReport> {
        let now = now_ns();
        let timeout = self.settings.timeout_ms * 1_000_000;
        self.links
            .iter()
            .map(|(&peer, l)| {
                let answered: Vec<u64> = l.recent.iter().filter_map(|p| p.3).collect();
                // A probe is decided once answered or past the timeout.
                let late =
                    |p: &&(u32, u64, u64, Option<u64>)| p.3.is_none() && now - p.2 >= timeout;
                let lost = l.recent.iter().filter(late).count();
                let decided = answered.len() + lost;
                LinkReport {
                    peer,
                    up: l.up,
                    rtt_us: if answered.is_empty() {
                        0.0
                    } else {
                        answered.iter().sum::<u64>() as f64 / answered.len() as f64 / 1000.0
                    },
                    loss: if decided == 0 { 0.0 } else { lost as f64 / decided as f64 },
                    jitter_us: l.jitter_ns / 1000.0,
                    age_ms: l.last_reply_ns.map(|t| (now - t) / 1_000_000),
                    sent: l.sent,
                    received: l.received,
                }
            })
            .collect()
    }
}

/// The agent's socket is dual-stack: IPv4 peers are addressed as v4-mapped IPv6.
pub fn mapped(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) => SocketAddr::from((a.ip().to_ipv6_mapped(), a.port())),
        a => a,
    }
}

/// The reply to a probe, built by the agent when XDP does not answer probes.
pub fn reply_to(probe: &RelayHeader, payload: &[u8]) -> Vec<u8> {
    let mut hdr = *probe;
    hdr.kind = PacketKind::ProbeReply as u8;
    std::mem::swap(&mut hdr.src_node, &mut hdr.dst_node);
    let mut pkt = hdr.to_bytes().to_vec();
    pkt.extend_from_slice(payload);
    pkt
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prober() -> Prober {
        let settings = ProbeSettings {
            interval_ms: 10,
            window: 4,
            dead_after: 3,
            up_after: 1,
            timeout_ms: 20,
        };
        Prober::new(1, settings, [(2, "127.0.0.1:7300".parse().unwrap())])
    }

    #[test]
    fn replies_bring_the_link_up_and_measure_rtt() {
        let mut p = prober();
        assert_eq!(p.tick(|_, _| {}), Some(vec![]));
        assert_eq!(p.tick(|_, _| {}), None, "not due again yet");
        let (seq, sent) = (p.links[&2].recent[0].0, p.links[&2].recent[0].1);
        let body = ProbeBody { sent_ns: sent };
        let t = p.on_reply(2, seq, body, Some(sent + 2_000_000));
        assert_eq!(t, Some(Transition { peer: 2, up: true }));
        // A duplicate or unknown reply changes nothing.
        assert_eq!(p.on_reply(2, seq, body, None), None);
        assert_eq!(p.on_reply(2, seq + 7, body, None), None);
        assert_eq!(p.on_reply(9, seq, body, None), None);
        let r = &p.reports()[0];
        assert!(r.up && r.rtt_us == 2000.0 && r.received == 1 && r.sent == 1, "{r:?}");
    }

    #[test]
    fn silence_takes_the_link_down_and_counts_loss() {
        let mut p = prober();
        p.tick(|_, _| {});
        let (seq, sent) = (p.links[&2].recent[0].0, p.links[&2].recent[0].1);
        p.on_reply(2, seq, ProbeBody { sent_ns: sent }, None);
        let mut down = false;
        for _ in 0..10 {
            std::thread::sleep(p.until_due());
            if p.tick(|_, _| {}).unwrap_or_default().contains(&Transition { peer: 2, up: false }) {
                down = true;
                break;
            }
        }
        assert!(down, "no down transition after silence");
        std::thread::sleep(Duration::from_millis(25));
        let r = &p.reports()[0];
        assert!(!r.up && r.loss > 0.5, "{r:?}");
    }

    /// Sends the next round now; answers it (`true`) or loses it; returns the transitions.
    fn round(p: &mut Prober, answered: bool) -> Vec<Transition> {
        p.next_due_ns = 0;
        let mut t = p.tick(|_, _| {}).unwrap();
        let &(seq, sent, ..) = p.links[&2].recent.back().unwrap();
        if answered {
            t.extend(p.on_reply(2, seq, ProbeBody { sent_ns: sent }, Some(sent + 1000)));
        }
        t
    }

    #[test]
    fn a_link_comes_up_only_after_consecutive_answers() {
        let mut p = prober();
        p.settings.up_after = 3;
        assert!(round(&mut p, true).is_empty() && round(&mut p, true).is_empty());
        // A loss restarts the count.
        assert!(round(&mut p, false).is_empty());
        assert!(round(&mut p, true).is_empty() && round(&mut p, true).is_empty());
        assert_eq!(round(&mut p, true), vec![Transition { peer: 2, up: true }]);
    }

    #[test]
    fn a_held_link_goes_down_at_once_and_stays_down_until_released() {
        let mut p = prober();
        assert_eq!(round(&mut p, true), vec![Transition { peer: 2, up: true }]);
        assert_eq!(p.set_reachable(2, false), Some(Transition { peer: 2, up: false }));
        assert_eq!(p.set_reachable(2, false), None, "already down");
        for _ in 0..3 {
            assert!(round(&mut p, true).is_empty(), "replies cannot lift a hold");
        }
        assert_eq!(p.set_reachable(2, true), None);
        assert_eq!(round(&mut p, true), vec![Transition { peer: 2, up: true }]);
    }

    #[test]
    fn agent_reply_swaps_nodes_and_echoes_payload() {
        let probe = RelayHeader::new(PacketKind::Probe, 1, 2, PROBE_FLOW, 5);
        let body = ProbeBody { sent_ns: 42 }.to_bytes();
        let reply = reply_to(&probe, &body);
        let (h, payload) = RelayHeader::decode(&reply).unwrap();
        assert_eq!(
            (h.kind, h.src_node(), h.dst_node(), h.seq()),
            (PacketKind::ProbeReply as u8, 2, 1, 5)
        );
        assert_eq!(payload, body);
    }
}
