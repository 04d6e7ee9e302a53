//! Choosing an edge: ask the controller's scheduler which edges may take this client, probe
//! them (an edge answers a stranger's probes in XDP, within a per-source rate), and attach
//! to the nearest of the best class, keeping the others, nearest first, as runners-up.

use std::{
    net::{SocketAddr, UdpSocket},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use wecan_access::{Creds, Refusal};
use wecan_api::{EdgeCandidate, SelectReply, SelectRequest, http::ControllerHttp};
use wecan_common::wire::{PacketKind, ProbeBody, RelayHeader};

use crate::attach::{Attachment, Refused, attach};

/// How long the probes of one round wait for their replies.
const PROBE_WAIT: Duration = Duration::from_millis(300);

/// The edges the controller at `url` (trusting the CA in `ca`) offers this client, best
/// class first.
pub fn select(
    url: &str,
    ca: &Path,
    creds: &Creds,
    region: Option<&str>,
) -> Result<Vec<EdgeCandidate>> {
    let roots = wecan_api::http::read_ca(ca).context("--ca")?;
    let http = ControllerHttp::without_token(&roots, Some(Duration::from_secs(10)));
    let req = SelectRequest {
        token: creds.token().to_string(),
        region: region.map(Into::into),
        max: None,
    };
    let url = format!("{url}/v1/edges/select");
    let resp = http.post(&url).send_json(&req).with_context(|| format!("POST {url}"))?;
    let mut resp = ControllerHttp::check(resp).with_context(|| format!("POST {url}"))?;
    let reply: SelectReply = resp.body_mut().read_json().context("the scheduler's reply")?;
    if reply.edges.is_empty() {
        bail!("the scheduler has no edge with room for this client's operator");
    }
    Ok(reply.edges)
}

/// A candidate edge as this client measured it.
#[derive(Clone, Debug, Serialize)]
pub struct Probed {
    pub node: u32,
    pub addr: SocketAddr,
    pub same_operator: bool,
    /// Best of the probe rounds; none if the edge never answered.
    pub rtt_us: Option<u64>,
}

/// Probes each candidate's first address `rounds` times from `sock` and orders them: the
/// client's own operator's edges first, each class nearest first, silent edges last.
pub fn probe(sock: &UdpSocket, candidates: &[EdgeCandidate], rounds: u32) -> Result<Vec<Probed>> {
    let mut out: Vec<Probed> = candidates
        .iter()
        .filter_map(|c| {
            let addr = *c.addrs.first()?;
            Some(Probed { node: c.node, addr, same_operator: c.same_operator, rtt_us: None })
        })
        .collect();
    let start = Instant::now();
    let mut buf = [0u8; 256];
    for round in 0..rounds {
        for p in &out {
            let hdr = RelayHeader::new(PacketKind::Probe, 0, p.node, 0, round);
            let mut pkt = hdr.to_bytes().to_vec();
            let sent_ns = start.elapsed().as_nanos() as u64;
            pkt.extend_from_slice(&ProbeBody { sent_ns }.to_bytes());
            sock.send_to(&pkt, p.addr).with_context(|| format!("probing {}", p.addr))?;
        }
        let deadline = Instant::now() + PROBE_WAIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            let Ok((n, from)) = sock.recv_from(&mut buf) else { break };
            let Ok((h, body)) = RelayHeader::decode(&buf[..n]) else { continue };
            let (Some(b), Some(p)) =
                (ProbeBody::decode(body), out.iter_mut().find(|p| p.addr == from))
            else {
                continue;
            };
            if h.kind != PacketKind::ProbeReply as u8 || h.src_node() != p.node {
                continue;
            }
            let rtt = (start.elapsed().as_nanos() as u64).saturating_sub(b.sent_ns) / 1000;
            p.rtt_us = Some(p.rtt_us.map_or(rtt, |r| r.min(rtt)));
        }
    }
    out.sort_by_key(|p| (!p.same_operator, p.rtt_us.is_none(), p.rtt_us, p.node));
    Ok(out)
}

/// Attaches to the first of `probed` that takes this client: an edge that is full (the
/// scheduler's view lags) or silent gives way to the next; any other refusal is final (every
/// edge would refuse the same credential). Returns the attachment and its edge's index.
pub fn attach_first(
    sock: &UdpSocket,
    probed: &[Probed],
    creds: &Creds,
    name: &str,
    tries: u32,
) -> Result<(Attachment, usize)> {
    let mut last = None;
    for (i, p) in probed.iter().enumerate().filter(|(_, p)| p.rtt_us.is_some()) {
        match attach(sock, p.addr, p.node, creds, name, tries) {
            Ok(a) => return Ok((a, i)),
            Err(e) if e.downcast_ref::<Refused>().is_some_and(|r| r.0 != Refusal::Full) => {
                return Err(e);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no candidate edge answered its probes")))
}

/// A client attached through the scheduler that keeps its edge alive and moves to the next
/// candidate, nearest of the best class first, when its edge stops answering: the
/// application sees a short gap, not an error.
pub struct Roaming {
    probed: Vec<Probed>,
    at: usize,
    creds: Creds,
    name: String,
    pub attachment: Attachment,
    /// Keepalives go out this often; an edge silent for `dead_after` is given up.
    every: Duration,
    dead_after: Duration,
    sent_at: Instant,
    heard_at: Instant,
    read_at: Instant,
    /// Every move: from which edge to which, and how long the old one had been silent.
    pub moves: Vec<Move>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Move {
    pub from: u32,
    pub to: u32,
    pub silent_ms: u64,
}

/// How often a roaming client reads its socket for the edge's keepalive replies.
const READ_EVERY: Duration = Duration::from_millis(5);

impl Roaming {
    /// Attaches to the first of `probed` that takes the client (see [`attach_first`]).
    pub fn attach(
        sock: &UdpSocket,
        probed: Vec<Probed>,
        creds: Creds,
        name: &str,
        every: Duration,
        dead_after: Duration,
    ) -> Result<Self> {
        let (attachment, at) = attach_first(sock, &probed, &creds, name, 3)?;
        let now = Instant::now();
        Ok(Self {
            probed,
            at,
            creds,
            name: name.into(),
            attachment,
            every,
            dead_after,
            sent_at: now,
            heard_at: now,
            read_at: now,
            moves: Vec::new(),
        })
    }

    /// The edge it is attached to now.
    pub fn edge(&self) -> &Probed {
        &self.probed[self.at]
    }

    /// Reads the edge's keepalive replies, sends a keepalive when one is due, and moves to
    /// the next answering candidate when the edge has been silent for too long.
    pub fn tick(&mut self, sock: &UdpSocket) -> Result<()> {
        if self.read_at.elapsed() < READ_EVERY {
            return Ok(());
        }
        self.read_at = Instant::now();
        sock.set_nonblocking(true)?;
        let mut buf = [0u8; 2048];
        let edge = self.edge().addr;
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let reply = RelayHeader::decode(&buf[..n])
                .is_ok_and(|(h, _)| h.kind == PacketKind::ProbeReply as u8);
            if from == edge && reply && self.attachment.link.verify(&buf[..n]).is_ok() {
                self.heard_at = Instant::now();
            }
        }
        sock.set_nonblocking(false)?;
        if self.sent_at.elapsed() >= self.every {
            self.sent_at = Instant::now();
            self.attachment.keepalive(sock, edge, 0)?;
        }
        let silent = self.heard_at.elapsed();
        if silent >= self.dead_after {
            self.roam(sock, silent)?;
        }
        Ok(())
    }

    fn roam(&mut self, sock: &UdpSocket, silent: Duration) -> Result<()> {
        let from = self.edge().node;
        let n = self.probed.len();
        for i in (1..n).map(|k| (self.at + k) % n) {
            let p = &self.probed[i];
            if let Ok(a) = attach(sock, p.addr, p.node, &self.creds, &self.name, 1) {
                self.moves.push(Move { from, to: p.node, silent_ms: silent.as_millis() as u64 });
                self.at = i;
                self.attachment = a;
                self.heard_at = Instant::now();
                return Ok(());
            }
        }
        bail!("edge {from} went silent and no other candidate edge takes this client")
    }
}
