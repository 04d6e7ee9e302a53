//! The agent's end of its links' authentication (`wecan_transport::auth`). XDP verifies every
//! packet before passing it up, but IPv4 fragments and packets with IP options reach the
//! agent's socket through the kernel unverified, so the agent verifies everything it
//! receives, with its own replay windows. Everything it sends (probes, probe replies,
//! forwarded and protected packets) it seals in its own lane.
//!
//! State is kept only for allowlisted peers, one entry each, and follows the peer map, so
//! keys the CLI rotates take effect here too (within [`REFRESH`] for sending; at once for
//! receiving, which uses the entry the slow path just looked up).

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use wecan_common::{auth::WINDOW_WORDS, maps::PeerValue};
use wecan_datapath::maps::Maps;
use wecan_transport::auth::{self, Refusal, Sealer, Windows};

/// How long a peer's keys are used for sending before they are read from the map again.
pub const REFRESH: Duration = Duration::from_millis(100);

/// Packets the agent refused or could not seal, by reason.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthCounts {
    pub untagged: u64,
    pub unknown_key: u64,
    pub bad_tag: u64,
    pub replay: u64,
    /// Not sent: the destination is not a peer with a key to send with.
    pub no_send_key: u64,
}

struct LinkEnd {
    peer: PeerValue,
    read_at: Instant,
    tx: Sealer,
    rx: Windows,
}

/// The receive windows of every link, for the agent that takes over (see `handover`): a
/// packet accepted before the upgrade is not accepted again after it. Send counters need no
/// handing over: a new sealer starts at the wall clock, ahead of everything sent before.
#[derive(Serialize, Deserialize)]
pub struct AuthState {
    windows: Vec<(IpAddr, Vec<[u64; WINDOW_WORDS]>)>,
}

#[derive(Default)]
pub struct HopAuth {
    links: HashMap<IpAddr, LinkEnd>,
    pub counts: AuthCounts,
}

fn wall_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

impl HopAuth {
    pub fn export(&self) -> AuthState {
        let windows = self.links.iter().map(|(a, e)| (*a, e.rx.words().to_vec())).collect();
        AuthState { windows }
    }

    /// Takes over a predecessor's windows; each link's keys are read from the map as usual.
    pub fn restore(&mut self, st: AuthState, maps: &Maps) {
        for (addr, words) in st.windows {
            let (Ok(words), Some(peer)) = (<[_; 2]>::try_from(words), maps.peer(addr)) else {
                continue;
            };
            let end = self.end(addr, peer);
            end.rx = Windows::from_words(words);
        }
    }

    fn end(&mut self, addr: IpAddr, peer: PeerValue) -> &mut LinkEnd {
        let end = self.links.entry(addr).or_insert_with(|| LinkEnd {
            peer,
            read_at: Instant::now(),
            tx: Sealer::new(wall_ns()),
            rx: Windows::default(),
        });
        end.peer = peer;
        end
    }

    /// Verifies `pkt` from `addr`, whose allowlist entry is `peer`; counts a refusal.
    pub fn verify(&mut self, pkt: &[u8], addr: IpAddr, peer: PeerValue) -> bool {
        let end = self.end(addr, peer);
        end.read_at = Instant::now();
        match auth::verify(pkt, &peer, &end.rx) {
            Ok(()) => true,
            Err(r) => {
                let c = &mut self.counts;
                *match r {
                    Refusal::Untagged => &mut c.untagged,
                    Refusal::UnknownKey => &mut c.unknown_key,
                    Refusal::BadTag => &mut c.bad_tag,
                    Refusal::Replay => &mut c.replay,
                } += 1;
                false
            }
        }
    }

    /// Seals `pkt` for peer `addr`; `false` (counted) if it must not be sent.
    pub fn seal(&mut self, maps: &Maps, pkt: &mut [u8], addr: IpAddr) -> bool {
        let stale = self.links.get(&addr).is_none_or(|e| e.read_at.elapsed() >= REFRESH);
        if stale {
            match maps.peer(addr) {
                Some(peer) => self.end(addr, peer).read_at = Instant::now(),
                None => {
                    self.links.remove(&addr);
                    self.counts.no_send_key += 1;
                    return false;
                }
            }
        }
        let end = self.links.get_mut(&addr).expect("entry made above");
        if end.tx.seal(pkt, &end.peer).is_err() {
            self.counts.no_send_key += 1;
            return false;
        }
        true
    }
}
