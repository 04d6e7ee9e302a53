//! The agent's end of its links' authentication (`wecan_transport::auth`). XDP verifies every
//! packet before passing it up, but IPv4 fragments and packets with IP options reach the
//! agent's socket through the kernel unverified, so the agent verifies everything it
//! receives, with its own replay windows. Everything it sends (probes, probe replies,
//! forwarded and protected packets) it seals in its own lane.
//!
//! State is kept only for allowlisted peers and clients attached here, one entry each, and
//! follows their map entries, so keys the CLI rotates take effect here too (within
//! [`REFRESH`] for sending; at once for receiving, which uses the entry the slow path just
//! looked up).

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use wecan_common::{
    auth::WINDOW_WORDS,
    maps::PeerValue,
    wire::{HEADER_LEN, RelayHeader, overlay},
};
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

/// The other end of a link: a peer by its address, or a client attached here by its
/// overlay address (it may move; its keys stay).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Link {
    Peer(IpAddr),
    Client(u32),
}

impl Link {
    /// The link a packet to `addr` leaves on, and its entry: the peer at that address, or
    /// else the client of this edge (`me`) the packet is addressed to.
    pub fn toward(maps: &Maps, me: u32, addr: IpAddr, pkt: &[u8]) -> Option<(Self, PeerValue)> {
        if let Some(p) = maps.peer(addr) {
            return Some((Self::Peer(addr), p));
        }
        let dst = dst_node(pkt)?;
        if overlay::edge_of(dst) != Some(me) {
            return None;
        }
        maps.client(dst).map(|c| (Self::Client(dst), c.peer))
    }

    /// The link a received packet from `addr` came in on: a peer's, or that of the client
    /// of this edge (`me`) it claims to come from (its tag, verified next, proves the claim).
    pub fn from(
        maps: &Maps,
        me: u32,
        addr: IpAddr,
        hdr: &RelayHeader,
    ) -> Option<(Self, PeerValue)> {
        if let Some(p) = maps.peer(addr) {
            return Some((Self::Peer(addr), p));
        }
        let src = hdr.src_node();
        if overlay::edge_of(src) != Some(me) {
            return None;
        }
        maps.client(src).map(|c| (Self::Client(src), c.peer))
    }
}

/// The destination node of a relay packet, read without validating the rest.
fn dst_node(pkt: &[u8]) -> Option<u32> {
    let h = pkt.first_chunk::<HEADER_LEN>()?;
    Some(u32::from_be_bytes([h[12], h[13], h[14], h[15]]))
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
    windows: Vec<(Link, Vec<[u64; WINDOW_WORDS]>)>,
}

#[derive(Default)]
pub struct HopAuth {
    links: HashMap<Link, LinkEnd>,
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
        for (link, words) in st.windows {
            let peer = match link {
                Link::Peer(addr) => maps.peer(addr),
                Link::Client(addr) => maps.client(addr).map(|c| c.peer),
            };
            let (Ok(words), Some(peer)) = (<[_; 2]>::try_from(words), peer) else {
                continue;
            };
            let end = self.end(link, peer);
            end.rx = Windows::from_words(words);
        }
    }

    /// Forgets a client's link end (it detached; its address may be given to another).
    pub fn forget(&mut self, link: Link) {
        self.links.remove(&link);
    }

    fn end(&mut self, link: Link, peer: PeerValue) -> &mut LinkEnd {
        let end = self.links.entry(link).or_insert_with(|| LinkEnd {
            peer,
            read_at: Instant::now(),
            tx: Sealer::new(wall_ns()),
            rx: Windows::default(),
        });
        end.peer = peer;
        end
    }

    /// Verifies `pkt` that came in on `link`, whose entry is `peer`; counts a refusal.
    pub fn verify(&mut self, pkt: &[u8], link: Link, peer: PeerValue) -> bool {
        let end = self.end(link, peer);
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

    /// Seals `pkt` for the link toward `addr` (see [`Link::toward`]; `me` is this relay);
    /// `false` (counted) if it must not be sent.
    pub fn seal(&mut self, maps: &Maps, me: u32, pkt: &mut [u8], addr: IpAddr) -> bool {
        let client = dst_node(pkt).filter(|&d| overlay::edge_of(d) == Some(me)).map(Link::Client);
        let fresh = [Some(Link::Peer(addr)), client]
            .into_iter()
            .flatten()
            .find(|l| self.links.get(l).is_some_and(|e| e.read_at.elapsed() < REFRESH));
        let link = match fresh {
            Some(link) => link,
            None => match Link::toward(maps, me, addr, pkt) {
                Some((link, peer)) => {
                    self.end(link, peer).read_at = Instant::now();
                    link
                }
                None => {
                    self.links.remove(&Link::Peer(addr));
                    self.counts.no_send_key += 1;
                    return false;
                }
            },
        };
        let Some(end) = self.links.get_mut(&link) else { return false };
        if end.tx.seal(pkt, &end.peer).is_err() {
            self.counts.no_send_key += 1;
            return false;
        }
        true
    }
}
