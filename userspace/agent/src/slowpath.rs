//! The agent's share of the datapath: relay packets XDP passes up to the kernel stack
//! (local delivery, slow-path routes, next hops without a neighbour entry yet, IPv4
//! fragments, per-hop protection messages) arrive on the agent's UDP socket on the relay
//! port. Local ones (probes, probe replies) go to the caller; hop messages go to the link's
//! protection state ([`ProtectedLinks`]); the rest are forwarded by the same route maps, with
//! per-hop protection when the route asks for it, through the kernel stack, which also
//! resolves the missing neighbour so the next packets stay in XDP.

use std::{
    io::ErrorKind,
    net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use std::os::fd::AsRawFd;

use anyhow::{Context, Result};
use log::debug;
use serde::Serialize;
use wecan_common::{
    maps::{PeerKind, PeerValue, RouteAction},
    wire::{HEADER_LEN, PacketKind, RelayHeader, flags},
};

use wecan_datapath::maps::{Maps, addr_from};
use wecan_os::sockopt;
use wecan_transport::hop::ProtectMode;

use crate::{
    config::Config,
    hop_auth::{HopAuth, Link},
    probe::mapped,
    protection::ProtectedLinks,
};

/// Receive buffer of the agent's socket.
const RCVBUF: usize = 16 << 20;
/// Send buffer of the agent's socket (see [`SlowPath::with_socket`]).
const SNDBUF: usize = 4 << 20;

/// What the slow path did, by outcome.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SlowPathStats {
    pub received: u64,
    pub local: u64,
    pub forwarded: u64,
    pub drop_unknown_peer: u64,
    pub drop_malformed: u64,
    pub drop_no_route: u64,
    pub drop_hop_limit: u64,
    pub send_errors: u64,
    /// Transit packets taken by per-hop protection (sent, or queued behind a reliable flow's
    /// full window); refusals are the link's counters.
    pub protected: u64,
    /// Original packets recovered from hop messages (then forwarded).
    pub unwrapped: u64,
}

pub struct SlowPath {
    sock: UdpSocket,
    node_id: u32,
    pub stats: SlowPathStats,
    /// Per-hop protection state of every protected link.
    pub protect: ProtectedLinks,
    /// Sealing and verifying; its counters are the refusals (received) and the packets not
    /// sent for want of a key.
    pub auth: HopAuth,
    /// Registrations received for the access gateway (payload, sender), which
    /// [`SlowPath::poll`] returns early for.
    pub control: Vec<(Vec<u8>, SocketAddr)>,
}

/// A relay packet addressed to this node.
pub struct Local<'a> {
    pub hdr: RelayHeader,
    pub payload: &'a [u8],
    pub from: SocketAddr,
    /// When the kernel received it (CLOCK_REALTIME ns, `SO_TIMESTAMPNS`), so probe RTTs
    /// leave out this agent's own scheduling delay.
    pub rx_ns: Option<u64>,
}

/// `recvfrom` plus the kernel's receive timestamp, without blocking.
fn recv_timestamped(
    sock: &UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, Option<u64>)> {
    // SAFETY: msghdr points at live buffers sized as declared; the kernel fills them and
    // we only read within the lengths it reports.
    unsafe {
        let mut name: libc::sockaddr_in6 = std::mem::zeroed();
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let mut control = [0u64; 8];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = (&mut name as *mut libc::sockaddr_in6).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT);
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut rx_ns = None;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                rx_ns = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        let ip = Ipv6Addr::from(name.sin6_addr.s6_addr);
        let from = SocketAddr::from((ip, u16::from_be(name.sin6_port)));
        Ok((n as usize, from, rx_ns))
    }
}

impl SlowPath {
    /// Binds the relay port on all addresses (IPv4 and IPv6).
    pub fn bind(cfg: &Config) -> Result<Self> {
        let port = cfg.port;
        let sock = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port))
            .with_context(|| format!("cannot bind UDP port {port} for the slow path"))?;
        Self::with_socket(cfg, sock)
    }

    /// On a socket already bound to the relay port (one a predecessor handed over).
    pub fn with_socket(cfg: &Config, sock: UdpSocket) -> Result<Self> {
        sockopt::set(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, &1)
            .context("SO_TIMESTAMPNS")?;
        // Room for bursts (a reliable flow's held packets are released at once when a gap
        // fills) while the agent is busy or descheduled.
        sockopt::grow_rcvbuf(sock.as_raw_fd(), RCVBUF).context("receive buffer")?;
        // Datagrams to a peer whose neighbour entry is unresolved wait in the kernel's
        // neighbour queue, charged to this socket for up to the 3 s ARP gives up after:
        // room for several such peers, and never blocking the loop when it is full (a send
        // that would block fails and is counted).
        sockopt::grow_sndbuf(sock.as_raw_fd(), SNDBUF).context("send buffer")?;
        sock.set_nonblocking(true).context("non-blocking slow-path socket")?;
        Ok(Self {
            sock,
            node_id: cfg.node_id,
            stats: SlowPathStats::default(),
            protect: ProtectedLinks::new(cfg)?,
            auth: HopAuth::default(),
            control: Vec::new(),
        })
    }

    /// The relay port's socket.
    pub fn socket(&self) -> &UdpSocket {
        &self.sock
    }

    /// Datagrams the kernel dropped on the agent's socket (buffer full).
    pub fn socket_drops(&self) -> u64 {
        sockopt::drops(self.sock.as_raw_fd()).map_or(0, u64::from)
    }

    /// Handles packets for `timeout`, or until a registration waits in [`SlowPath::control`]:
    /// forwards transit packets and hands packets for this node to `on_local`, sending the
    /// reply it may return.
    pub fn poll(
        &mut self,
        maps: &Maps,
        timeout: Duration,
        mut on_local: impl FnMut(Local) -> Option<(Vec<u8>, SocketAddr)>,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.control.is_empty() {
                return Ok(());
            }
            // A busy socket costs one recvmsg per packet; only an empty one waits in poll.
            match recv_timestamped(&self.sock, &mut buf) {
                Ok((len, from, rx_ns)) => {
                    if let Some((hdr, at)) = self.handle(maps, &mut buf[..len], from) {
                        let payload = &buf[at..len];
                        if let Some((mut reply, to)) = on_local(Local { hdr, payload, from, rx_ns })
                        {
                            self.send(maps, &mut reply, to);
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    sockopt::readable(self.sock.as_raw_fd(), left);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("slow path receive"),
            }
        }
    }

    /// Forwards a transit packet and handles hop protection messages; returns the header and
    /// payload offset of a local one.
    fn handle(
        &mut self,
        maps: &Maps,
        pkt: &mut [u8],
        from: SocketAddr,
    ) -> Option<(RelayHeader, usize)> {
        self.stats.received += 1;
        let from = SocketAddr::new(unmapped(from.ip()), from.port());
        let Ok((hdr, body)) = RelayHeader::decode(pkt) else {
            self.stats.drop_malformed += 1;
            return None;
        };
        let Some((link, peer)) = Link::from(maps, self.node_id, from.ip(), &hdr) else {
            // A registration: XDP let it through within its source's rate.
            if hdr.kind == PacketKind::Control as u8 && hdr.dst_node() == self.node_id {
                self.control.push((body.to_vec(), from));
            } else {
                self.stats.drop_unknown_peer += 1;
            }
            return None;
        };
        if !self.auth.verify(pkt, link, peer) {
            return None;
        }
        if hdr.dst_node() == self.node_id && hdr.flags & flags::HOP != 0 {
            self.hop_message(maps, &hdr, body, from, peer);
            return None;
        }
        if hdr.dst_node() == self.node_id {
            self.stats.local += 1;
            return Some((hdr, HEADER_LEN));
        }
        self.forward(maps, hdr, pkt)
    }

    /// A per-hop protection message from `peer`, the allowlist entry of its source address.
    /// Only relay peers speak the hop protocol, and only under their own node ID; anything
    /// else is counted and changes nothing.
    fn hop_message(
        &mut self,
        maps: &Maps,
        hdr: &RelayHeader,
        body: &[u8],
        from: SocketAddr,
        peer: PeerValue,
    ) {
        if peer.kind() != Some(PeerKind::Relay) {
            self.protect.refused.not_relay += 1;
            return;
        }
        if hdr.src_node() != peer.node_id {
            self.protect.refused.wrong_source += 1;
            return;
        }
        let now = Instant::now();
        let mut out = Vec::new();
        let r = if hdr.kind == PacketKind::Nack as u8 {
            let r = self.protect.on_nack(peer.node_id, body, now, &mut out);
            // Resends go where the link sends to.
            if let Ok(Some(to)) = r {
                for p in &mut out {
                    self.send(maps, p, to);
                }
            }
            r.map(drop)
        } else {
            let r = self.protect.on_packet(peer.node_id, from, hdr.kind, body, now, &mut out);
            for mut inner in out {
                self.stats.unwrapped += 1;
                let Ok((ih, _)) = RelayHeader::decode(&inner) else { continue };
                // Delivered here is delivered: nothing local consumes protected data.
                let _ = self.forward(maps, ih, &mut inner);
            }
            r
        };
        if let Err(e) = r {
            debug!("hop message from node {}: {e}", hdr.src_node());
            self.stats.drop_malformed += 1;
        }
    }

    /// Sends a transit packet on by the route maps (protected if its route says so); returns
    /// the header and payload offset when the route delivers locally.
    fn forward(
        &mut self,
        maps: &Maps,
        hdr: RelayHeader,
        pkt: &mut [u8],
    ) -> Option<(RelayHeader, usize)> {
        let route = match maps.lookup(hdr.dst_node(), hdr.flow_id()) {
            Ok(Some((_, r))) => r,
            _ => {
                self.stats.drop_no_route += 1;
                return None;
            }
        };
        match RouteAction::from_u8(route.action) {
            Some(RouteAction::Local) => {
                self.stats.local += 1;
                return Some((hdr, HEADER_LEN));
            }
            Some(RouteAction::Forward | RouteAction::SlowPath) => {}
            None => {
                self.stats.drop_no_route += 1;
                return None;
            }
        }
        if hdr.hop_limit == 0 {
            self.stats.drop_hop_limit += 1;
            return None;
        }
        let Some(next) = addr_from(route.family, &route.next_addr) else {
            self.stats.drop_no_route += 1;
            return None;
        };
        let to = SocketAddr::from((next, route.next_port));
        let mut next_hdr = hdr;
        next_hdr.hop_limit -= 1;
        pkt[..HEADER_LEN].copy_from_slice(&next_hdr.to_bytes());
        let mode = ProtectMode::from_route_flags(route.flags);
        if mode == ProtectMode::None {
            self.send(maps, pkt, to);
            self.stats.forwarded += 1;
            return None;
        }
        let mut out = Vec::new();
        let r = self.protect.send(route.next_node, to, mode, pkt, Instant::now(), &mut out);
        for p in &mut out {
            self.send(maps, p, to);
        }
        match r {
            Ok(_) => self.stats.protected += 1,
            // The link counts its refusals (`wecan protection`).
            Err(e) => debug!("protecting a packet to node {}: {e}", route.next_node),
        }
        None
    }

    /// Runs the protection timers (FEC group timeouts, NACKs, resends).
    pub fn tick(&mut self, maps: &Maps) {
        let mut out = Vec::new();
        self.protect.poll(Instant::now(), &mut out);
        for (to, p) in &mut out {
            self.send(maps, p, *to);
        }
    }

    /// Seals `pkt` for the link to `to` and sends it (not at all without a key for it).
    pub fn send(&mut self, maps: &Maps, pkt: &mut [u8], to: SocketAddr) {
        let to = SocketAddr::new(unmapped(to.ip()), to.port());
        if !self.auth.seal(maps, self.node_id, pkt, to.ip()) {
            return;
        }
        self.send_raw(pkt, to);
    }

    /// Sends `pkt` as it is: for the gateway's replies to clients not attached (yet), which
    /// have no link key.
    pub fn send_raw(&mut self, pkt: &[u8], to: SocketAddr) {
        if let Err(e) = self.sock.send_to(pkt, mapped(to)) {
            debug!("slow path send to {to}: {e}");
            self.stats.send_errors += 1;
        }
    }
}

fn unmapped(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
        a => a,
    }
}
