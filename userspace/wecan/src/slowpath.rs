//! The agent's share of the datapath: relay packets XDP passes up to the kernel stack
//! (local delivery, slow-path routes, next hops without a neighbour entry yet, IPv4
//! fragments) arrive on the agent's UDP socket on the relay port. Local ones are consumed;
//! the rest are forwarded by the same route maps, through the kernel stack, which also
//! resolves the missing neighbour so the next packets stay in XDP.

use std::{
    io::ErrorKind,
    net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket},
    time::Duration,
};

use anyhow::{Context, Result};
use log::debug;
use serde::Serialize;
use wecan_common::{
    maps::RouteAction,
    wire::{HEADER_LEN, RelayHeader},
};

use crate::datapath::{Maps, addr_from};

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
}

pub struct SlowPath {
    sock: UdpSocket,
    node_id: u32,
    pub stats: SlowPathStats,
}

/// IPv4 addresses as v4-mapped IPv6, for the dual-stack socket.
fn mapped(addr: IpAddr) -> Ipv6Addr {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

impl SlowPath {
    /// Binds the relay port on all addresses (IPv4 and IPv6).
    pub fn bind(node_id: u32, port: u16) -> Result<Self> {
        let sock = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port))
            .with_context(|| format!("cannot bind UDP port {port} for the slow path"))?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(Self { sock, node_id, stats: SlowPathStats::default() })
    }

    /// Handles packets until none arrives for 100 ms, so the caller can check for shutdown
    /// and print stats.
    pub fn poll(&mut self, maps: &Maps) -> Result<()> {
        let mut buf = [0u8; 65536];
        loop {
            match self.sock.recv_from(&mut buf) {
                Ok((len, from)) => self.handle(maps, &mut buf[..len], from.ip()),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) =>
                {
                    return Ok(());
                }
                Err(e) => return Err(e).context("slow path receive"),
            }
        }
    }

    fn handle(&mut self, maps: &Maps, pkt: &mut [u8], from: IpAddr) {
        self.stats.received += 1;
        let from = match from {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
            a => a,
        };
        if !maps.is_peer(from) {
            self.stats.drop_unknown_peer += 1;
            return;
        }
        let Ok((hdr, _)) = RelayHeader::decode(pkt) else {
            self.stats.drop_malformed += 1;
            return;
        };
        if hdr.dst_node() == self.node_id {
            self.stats.local += 1;
            return;
        }
        let route = match maps.lookup(hdr.dst_node(), hdr.flow_id()) {
            Ok(Some((_, r))) => r,
            _ => {
                self.stats.drop_no_route += 1;
                return;
            }
        };
        match RouteAction::from_u8(route.action) {
            Some(RouteAction::Local) => {
                self.stats.local += 1;
                return;
            }
            Some(RouteAction::Forward | RouteAction::SlowPath) => {}
            None => {
                self.stats.drop_no_route += 1;
                return;
            }
        }
        if hdr.hop_limit == 0 {
            self.stats.drop_hop_limit += 1;
            return;
        }
        let Some(next) = addr_from(route.family, &route.next_addr) else {
            self.stats.drop_no_route += 1;
            return;
        };
        let mut next_hdr = hdr;
        next_hdr.hop_limit -= 1;
        pkt[..HEADER_LEN].copy_from_slice(&next_hdr.to_bytes());
        match self.sock.send_to(pkt, SocketAddr::from((mapped(next), route.next_port))) {
            Ok(_) => self.stats.forwarded += 1,
            Err(e) => {
                debug!("slow path send to {next}: {e}");
                self.stats.send_errors += 1;
            }
        }
    }
}
