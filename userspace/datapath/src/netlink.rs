//! Interface and route information from the kernel over rtnetlink (never by parsing `ip`
//! output). Queries run in the calling thread's network namespace.

use std::net::IpAddr;

use anyhow::{Context, Result, anyhow, bail};
use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    link::{LinkAttribute, LinkFlags, LinkMessage},
    route::{RouteAddress, RouteAttribute, RouteMessage},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// Administratively up (`ip link set up`).
    pub up: bool,
    /// Up and operational (carrier present): it can carry packets.
    pub running: bool,
}

/// The kernel's answer to "how do I reach this address" (`ip route get`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// Egress interface.
    pub oif: u32,
    /// Preferred source address toward the destination.
    pub src: IpAddr,
}

/// All interfaces of this network namespace.
pub fn links() -> Result<Vec<Link>> {
    let replies = request(RouteNetlinkMessage::GetLink(LinkMessage::default()), true)?;
    Ok(replies
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(Link::from(&l)),
            _ => None,
        })
        .collect())
}

impl From<&LinkMessage> for Link {
    fn from(l: &LinkMessage) -> Self {
        Self {
            index: l.header.index,
            up: l.header.flags.contains(LinkFlags::Up),
            running: l.header.flags.contains(LinkFlags::Up | LinkFlags::Running),
            name: l
                .attributes
                .iter()
                .find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                })
                .unwrap_or_default(),
        }
    }
}

/// Interface state changes as the kernel announces them (the `RTNLGRP_LINK` group), read
/// without blocking: how the agent learns at once that an interface went down, rather than
/// after probes time out.
pub struct LinkEvents {
    socket: Socket,
    buf: Vec<u8>,
}

/// `RTMGRP_LINK`: the bit of the link group in a netlink bind address.
const RTMGRP_LINK: u32 = 1;

impl LinkEvents {
    /// Subscribes in the calling thread's network namespace.
    pub fn subscribe() -> Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE).context("netlink socket")?;
        socket.bind(&SocketAddr::new(0, RTMGRP_LINK)).context("netlink bind to link events")?;
        socket.set_non_blocking(true).context("netlink non-blocking")?;
        Ok(Self { socket, buf: Vec::with_capacity(64 * 1024) })
    }

    /// Interfaces whose state was announced since the last call, oldest first. If the
    /// kernel dropped announcements (our socket buffer overflowed), every interface as it
    /// is now.
    pub fn poll(&mut self) -> Result<Vec<Link>> {
        let mut out = Vec::new();
        loop {
            self.buf.clear();
            match self.socket.recv_from(&mut self.buf, 0) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(out),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    out.extend(links()?);
                    continue;
                }
                Err(e) => return Err(e).context("netlink link events"),
            }
            let mut offset = 0;
            while offset < self.buf.len() {
                let Ok(msg) =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[offset..])
                else {
                    break;
                };
                let len = msg.header.length as usize;
                if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) = &msg.payload
                {
                    out.push(Link::from(l));
                }
                if len == 0 {
                    break;
                }
                offset += len;
            }
        }
    }
}

/// The interface called `name`.
pub fn link(name: &str) -> Result<Link> {
    links()?.into_iter().find(|l| l.name == name).ok_or_else(|| {
        anyhow!("interface {name:?} does not exist in this network namespace (see `ip link`)")
    })
}

/// Egress interface and source address the kernel would use to reach `dst`.
pub fn route_get(dst: IpAddr) -> Result<RouteInfo> {
    let mut msg = RouteMessage::default();
    msg.header.address_family = match dst {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    msg.header.destination_prefix_length = if dst.is_ipv4() { 32 } else { 128 };
    msg.attributes.push(RouteAttribute::Destination(RouteAddress::from(dst)));
    let reply = request(RouteNetlinkMessage::GetRoute(msg), false)?
        .into_iter()
        .find_map(|m| match m {
            RouteNetlinkMessage::NewRoute(r) => Some(r),
            _ => None,
        })
        .ok_or_else(|| anyhow!("no route to {dst}"))?;
    let mut oif = None;
    let mut src = None;
    for a in reply.attributes {
        match a {
            RouteAttribute::Oif(i) => oif = Some(i),
            RouteAttribute::PrefSource(RouteAddress::Inet(a)) => src = Some(IpAddr::V4(a)),
            RouteAttribute::PrefSource(RouteAddress::Inet6(a)) => src = Some(IpAddr::V6(a)),
            _ => {}
        }
    }
    Ok(RouteInfo {
        oif: oif.ok_or_else(|| anyhow!("route to {dst} has no output interface"))?,
        src: src.ok_or_else(|| {
            anyhow!(
                "no local address to send to {dst} from; add an address on the interface toward it"
            )
        })?,
    })
}

/// Sends one rtnetlink request and collects the replies (all parts of a dump).
fn request(msg: RouteNetlinkMessage, dump: bool) -> Result<Vec<RouteNetlinkMessage>> {
    let mut socket = Socket::new(NETLINK_ROUTE).context("netlink socket")?;
    socket.bind_auto().context("netlink bind")?;
    socket.connect(&SocketAddr::new(0, 0)).context("netlink connect")?;

    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { 0 };
    header.sequence_number = 1;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0).context("netlink send")?;

    let mut out = Vec::new();
    loop {
        let (data, _) = socket.recv_from_full().context("netlink receive")?;
        let mut offset = 0;
        while offset < data.len() {
            let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
                .context("malformed netlink reply")?;
            let len = reply.header.length as usize;
            match reply.payload {
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => match e.code {
                    Some(code) => {
                        bail!("netlink: {}", std::io::Error::from_raw_os_error(-code.get()))
                    }
                    None => return Ok(out),
                },
                NetlinkPayload::InnerMessage(m) => out.push(m),
                _ => {}
            }
            if !dump {
                return Ok(out);
            }
            if len == 0 {
                break;
            }
            offset += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_listed_and_routable() {
        let lo = link("lo").unwrap();
        assert_eq!(lo.index, 1);
        let r = route_get("127.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(r.oif, 1);
        assert_eq!(r.src, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert!(link("no-such-if0").unwrap_err().to_string().contains("does not exist"));
    }
}
