//! What BFD-like probing costs the agent: rounds of probes to many peers at the default
//! interval, on the thread's CPU clock, each beside a baseline of the same datagrams sent and
//! received bare (no prober, no seal, no verify), in the same run.
//!
//! Sending: one `Prober::tick` (a probe built, sealed and `sendto`'d per peer) against bare
//! `sendto`s of as many datagrams of the same size. Receiving: the replies (turned around and
//! sealed the way a peer's XDP would) read with `recvmsg`, verified, decoded and accounted by
//! `Prober::on_reply`, against bare `recvmsg`s of them. Loopback UDP; the peers' side (XDP
//! answering) is not on this CPU in a real network and not measured here.

use std::{net::UdpSocket, os::fd::AsRawFd, time::Duration};

use anyhow::{Context, Result};
use wecan_agent::probe::{ProbeSettings, Prober};
use wecan_common::{
    maps::{HopKeys, PeerKind, PeerValue},
    wire::{HEADER_LEN, PacketKind, ProbeBody, RelayHeader},
};
use wecan_transport::auth::{Sealer, Windows, verify};

/// CPU ns per probe (send side) and per reply (receive side), each with its baseline.
pub struct ProbeLoad {
    pub send_ns: f64,
    pub send_baseline_ns: f64,
    pub reply_ns: f64,
    pub reply_baseline_ns: f64,
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the struct we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn socket() -> Result<UdpSocket> {
    let s = UdpSocket::bind("127.0.0.1:0")?;
    // Room for a whole round of datagrams (root may exceed rmem_max).
    wecan_os::sockopt::grow_rcvbuf(s.as_raw_fd(), 16 << 20)?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(s)
}

/// Drains `n` datagrams from `s` (or what came within the read timeout).
fn drain(s: &UdpSocket, n: usize, buf: &mut [u8], mut each: impl FnMut(&[u8])) -> usize {
    let mut got = 0;
    while got < n {
        match s.recv_from(buf) {
            Ok((len, _)) => {
                each(&buf[..len]);
                got += 1;
            }
            Err(_) => break,
        }
    }
    got
}

/// `rounds` rounds of probes to `peers` peers.
pub fn measure(peers: u32, rounds: usize) -> Result<ProbeLoad> {
    let (agent, sink) = (socket()?, socket()?);
    let to = sink.local_addr()?;
    let settings = ProbeSettings::default();
    let mut prober = Prober::new(1, settings, (2..peers + 2).map(|p| (p, to)));
    // One key for both directions: what the agent seals, the peers' replies verify with.
    let key = [0x5eed_u64, 0xcafe];
    let mut link = PeerValue::new(2, PeerKind::Relay);
    link.keys[0] = HopKeys { id: 1, _pad: [0; 7], rx: key, tx: key };
    let windows: Vec<Windows> = (0..peers).map(|_| Windows::default()).collect();
    let (mut sealer, mut peer_sealer) = (Sealer::new(1 << 40), Sealer::new(1 << 40));
    let mut buf = vec![0u8; 2048];
    let (mut send, mut send_base, mut reply, mut reply_base) = (0, 0, 0, 0);
    let (mut replies, mut bare_replies) = (0u64, 0u64);
    let n = peers as usize;
    for _ in 0..rounds {
        std::thread::sleep(prober.until_due());
        let t = thread_cpu_ns();
        prober
            .tick(|p, dst| {
                if sealer.seal(p, &link).is_ok() {
                    let _ = agent.send_to(p, dst);
                }
            })
            .context("a probe round was due")?;
        send += thread_cpu_ns() - t;
        // The peers' replies, as their XDP turns the probes around.
        let mut turned = Vec::with_capacity(n);
        drain(&sink, n, &mut buf, |p| {
            let mut r = p.to_vec();
            r[3] = PacketKind::ProbeReply as u8;
            r.copy_within(8..12, 12);
            r[8..12].copy_from_slice(&p[12..16]);
            if peer_sealer.seal(&mut r, &link).is_ok() {
                turned.push(r);
            }
        });
        let me = agent.local_addr()?;
        for r in &turned {
            sink.send_to(r, me)?;
        }
        let t = thread_cpu_ns();
        replies += drain(&agent, turned.len(), &mut buf, |p| {
            let Some((hdr, body)) = RelayHeader::decode(p).ok() else { return };
            let peer = hdr.src_node();
            let Some(w) = windows.get(peer as usize - 2) else { return };
            if verify(p, &link, w).is_ok()
                && let Some(body) = ProbeBody::decode(body)
            {
                prober.on_reply(peer, hdr.seq(), body, None);
            }
        }) as u64;
        reply += thread_cpu_ns() - t;

        // Baseline: the same datagrams, bare.
        let bare = vec![0u8; HEADER_LEN + ProbeBody::LEN];
        let t = thread_cpu_ns();
        for _ in 0..n {
            let _ = agent.send_to(&bare, to);
        }
        send_base += thread_cpu_ns() - t;
        let got = drain(&sink, n, &mut buf, |_| {});
        for _ in 0..got {
            sink.send_to(&bare, me)?;
        }
        let t = thread_cpu_ns();
        bare_replies += drain(&agent, got, &mut buf, |_| {}) as u64;
        reply_base += thread_cpu_ns() - t;
    }
    let received: u64 = prober.reports().iter().map(|r| r.received).sum();
    anyhow::ensure!(received * 10 >= replies * 9, "only {received} of {replies} replies counted");
    let probes = (rounds * n) as f64;
    Ok(ProbeLoad {
        send_ns: send as f64 / probes,
        send_baseline_ns: send_base as f64 / probes,
        reply_ns: reply as f64 / replies.max(1) as f64,
        reply_baseline_ns: reply_base as f64 / bare_replies.max(1) as f64,
    })
}
