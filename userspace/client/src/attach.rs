//! Attaching to an edge's access gateway: register with a credential, get an overlay
//! address and the keys of the link (`wecan_access`), then keep the attachment alive.

use std::{
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, anyhow, bail};
use wecan_access::{Attach, AttachError, Creds, Refusal};
use wecan_common::wire::{PacketKind, ProbeBody, RelayHeader};

use crate::EdgeLink;

/// How long one registration waits for the edge's reply before it is sent again (with a
/// fresh nonce: the edge refuses a nonce it has seen).
const REPLY_WAIT: Duration = Duration::from_millis(300);

/// An edge's refusal of a registration, with its reason (find it in an error with
/// `downcast_ref`).
#[derive(Debug)]
pub struct Refused(pub Refusal);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refused the registration: {}", self.0)
    }
}

impl std::error::Error for Refused {}

/// A client attached through an edge: its overlay address and its sealed link.
pub struct Attachment {
    pub addr: u32,
    pub edge_node: u32,
    pub edge_name: String,
    pub link: EdgeLink,
    /// Send something at least this often (see [`Attachment::keepalive`]).
    pub keepalive: Duration,
    pub timeout: Duration,
    /// From the first registration sent to the edge's accepted reply.
    pub took: Duration,
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Registers `creds` under `name` with edge `edge_node` at `edge`, over `sock`, trying
/// `tries` times. A refusal is final (its reason in the error); silence is retried.
pub fn attach(
    sock: &UdpSocket,
    edge: SocketAddr,
    edge_node: u32,
    creds: &Creds,
    name: &str,
    tries: u32,
) -> Result<Attachment> {
    let start = Instant::now();
    let old_timeout = sock.read_timeout()?;
    let mut buf = vec![0u8; 65536];
    let result = (|| {
        for _ in 0..tries.max(1) {
            let (pending, payload) =
                Attach::start(creds, name, edge_node, unix_ms()).map_err(|e| anyhow!("{e:?}"))?;
            let hdr = RelayHeader::new(PacketKind::Control, 0, edge_node, 0, 0);
            let mut pkt = hdr.to_bytes().to_vec();
            pkt.extend_from_slice(&payload);
            sock.send_to(&pkt, edge).with_context(|| format!("registering with {edge}"))?;
            let deadline = Instant::now() + REPLY_WAIT;
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
                let (n, from) = match sock.recv_from(&mut buf) {
                    Ok(r) => r,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        break;
                    }
                    Err(e) => return Err(e).context("waiting for the edge's reply"),
                };
                let Ok((h, body)) = RelayHeader::decode(&buf[..n]) else { continue };
                if from != edge || h.kind != PacketKind::Control as u8 {
                    continue;
                }
                return match pending.finish(body, unix_ms()) {
                    Ok(a) => Ok(Attachment {
                        addr: a.overlay_addr,
                        edge_node: a.edge_node,
                        edge_name: a.edge_name,
                        link: EdgeLink::attached(a.edge_node, a.keys),
                        keepalive: Duration::from_millis(a.keepalive_ms.into()),
                        timeout: Duration::from_millis(a.timeout_ms.into()),
                        took: start.elapsed(),
                    }),
                    Err(AttachError::Refused(r)) => {
                        bail!("edge {edge} refused the registration: {r}")
                    }
                    Err(e) => bail!("edge {edge} sent a reply that does not check out: {e:?}"),
                };
            }
        }
        bail!(
            "edge {edge} did not answer {tries} registrations ({} ms each)",
            REPLY_WAIT.as_millis()
        )
    })();
    sock.set_read_timeout(old_timeout)?;
    result
}

impl Attachment {
    /// Sends a keepalive: a probe to the edge, which XDP answers (its reply also tells the
    /// client the edge still holds it).
    pub fn keepalive(&mut self, sock: &UdpSocket, edge: SocketAddr, sent_ns: u64) -> Result<()> {
        let hdr = RelayHeader::new(PacketKind::Probe, self.addr, self.edge_node, 0, 0);
        let mut pkt = hdr.to_bytes().to_vec();
        pkt.extend_from_slice(&ProbeBody { sent_ns }.to_bytes());
        self.link.seal(&mut pkt)?;
        sock.send_to(&pkt, edge).with_context(|| format!("keepalive to {edge}"))?;
        Ok(())
    }
}
