//! The control-plane scenario shared by the tests and the benchmarks: four relays in a full
//! mesh whose links have distinct delays (impairment elements), clients at the edges, the
//! controller, and a stream whose outage is measured at the receiver.
//!
//! ```text
//!          1 ms
//!    r1 ───────── r4 ── b           one-way delays: r1–r2 3 ms, r1–r3 5 ms,
//!  a ┘ ╲         ╱                  r2–r3, r2–r4, r3–r4 1 ms
//!       r2 ─── r3
//! ```

use std::{
    process::{Child, Stdio},
    sync::mpsc::Receiver,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use wecan_client::RecvReport;

use crate::{impair::Impairment, proc::Proc, topology::Topology};

/// Packets per second of the measured stream (an outage of N packets is N / 10 ms).
pub const RATE: u32 = 10_000;

/// One-way delay of each relay link (ms): r1 reaches r4 best directly, then through r2,
/// then through r3; the other links are short.
pub const DELAYS: [(&str, &str, u64); 6] = [
    ("r1", "r4", 1),
    ("r1", "r2", 3),
    ("r1", "r3", 5),
    ("r2", "r3", 1),
    ("r2", "r4", 1),
    ("r3", "r4", 1),
];

pub fn delay(ms: u64) -> Impairment {
    Impairment { delay: Duration::from_millis(ms), ..Impairment::default() }
}

/// The mesh with the controller on, converged: every relay link up at the controller and
/// every relay holding a controller route to b.
pub fn mesh(tag: &str) -> Result<Topology> {
    let mut t = Topology::new(tag)?;
    for (n, id) in [("r1", 1), ("r2", 2), ("r3", 3), ("r4", 4)] {
        t.node(n, id)?;
    }
    t.client_node("a", 100)?;
    t.client_node("b", 200)?;
    for (x, y, ms) in DELAYS {
        t.link_impaired(x, y, delay(ms))?;
    }
    t.link("a", "r1")?;
    t.link("r4", "b")?;
    t.accept_xdp_frames("b")?;
    t.start_controller()?;
    t.start_relay("r1", &[], &[("a", "a")])?;
    t.start_relay("r2", &[], &[])?;
    t.start_relay("r3", &[], &[])?;
    t.start_relay("r4", &[], &[("b", "b")])?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let topo = t.controller_get("/v1/topology")?;
        let links = topo["links"].as_array().context("topology links")?;
        if links.iter().filter(|l| l["up"] == true).count() == 12 {
            break;
        }
        if Instant::now() > deadline {
            bail!("relay links never all up: {topo}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for r in ["r1", "r2", "r3", "r4"] {
        wait_route(&t, r, 200, |_| true)?;
    }
    Ok(t)
}

/// Every relay's datapath drop counters that moved.
pub fn drops(t: &Topology) -> Result<Vec<(String, &'static str, u64)>> {
    let mut out = Vec::new();
    for r in ["r1", "r2", "r3", "r4"] {
        for (k, v) in t.stats(r)? {
            if k.starts_with("drop_") && v > 0 {
                out.push((r.to_string(), k, v));
            }
        }
    }
    Ok(out)
}

/// `wecan routes get DST -j` on `relay`, once its origin is the controller and `ok` holds.
pub fn wait_route(
    t: &Topology,
    relay: &str,
    dst: u32,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(out) = t.cli(relay, &["-j", "routes", "get", &dst.to_string()]) {
            let v: serde_json::Value = serde_json::from_str(&out)?;
            let r = v[0].clone();
            if r["origin"] == "controller" && ok(&r) {
                return Ok(r);
            }
        }
        if Instant::now() > deadline {
            bail!("{relay} has no suitable controller route to {dst}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `relay` has had a probe reply from each of `peers` (node IDs). A reply means
/// the kernel resolved the peer's address, so streams that start afterwards are forwarded
/// in XDP from their first packet; on a lossy link a lost ARP request would otherwise cost
/// the kernel's 1 s retransmit, the stream meanwhile going to the slow path.
pub fn wait_probe_replies(t: &Topology, relay: &str, peers: &[u32]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let links = t.links(relay)?;
        let heard = |p: &u32| links.iter().any(|(n, l)| n == p && l.received > 0);
        if peers.iter().all(heard) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{relay}: no probe reply from some of {peers:?} within 10 s: {links:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running a → b stream: receiver in b, sender in a.
pub struct Stream {
    rx: Proc,
    lines: Receiver<String>,
    tx: Child,
}

/// Starts `count` packets a → b at `RATE`, sequence numbers from `first_seq`.
pub fn stream(t: &Topology, count: u32, first_seq: u32) -> Result<Stream> {
    stream_with(t, count, first_seq, RATE, &[])
}

/// Like [`stream`], at `rate` packets/s and with extra `wecan-client send` arguments (e.g.
/// `--size`, `--reliable`).
pub fn stream_with(
    t: &Topology,
    count: u32,
    first_seq: u32,
    rate: u32,
    send_args: &[&str],
) -> Result<Stream> {
    streams_with(t, 1, count, first_seq, rate, send_args)
}

/// Like [`stream_with`], `flows` flows from one sender (`wecan-client send --flows`), `rate`
/// packets/s in all: flow `f` (1 ..= flows) sends `count` packets numbered from
/// `first_seq + (f − 1) × count`; the receiver expects them all.
pub fn streams_with(
    t: &Topology,
    flows: u32,
    count: u32,
    first_seq: u32,
    rate: u32,
    send_args: &[&str],
) -> Result<Stream> {
    let b = t.addr("b", "r4");
    let total = (flows * count).to_string();
    let (count, first) = (count.to_string(), first_seq.to_string());
    let (rx, _, lines) = Proc::spawn_capture(
        "receiver",
        t.client("b").args(["recv", "--json", "--bind", &format!("{b}:7300")]).args([
            "--count",
            &total,
            "--first-seq",
            &first,
            "--timeout",
            "90",
            "--idle",
            "4",
        ]),
        "listening",
        Duration::from_secs(10),
    )?;
    let r1 = t.addr("r1", "a");
    let tx = t
        .client("a")
        .args(["send", "--to", &format!("{r1}:7300"), "--src-node", "100", "--dst-node", "200"])
        .args(["--count", &count, "--first-seq", &first, "--rate", &rate.to_string()])
        .args(["--flows", &flows.to_string()])
        .args(send_args)
        .stdout(Stdio::null())
        .spawn()?;
    Ok(Stream { rx, lines, tx })
}

impl Stream {
    /// Waits for the sender and the receiver's report.
    pub fn finish(mut self) -> Result<RecvReport> {
        if !self.tx.wait()?.success() {
            bail!("sender failed");
        }
        let report = loop {
            let line =
                self.lines.recv_timeout(Duration::from_secs(100)).context("receiver report")?;
            if line.starts_with('{') {
                break serde_json::from_str(&line)?;
            }
        };
        self.rx.wait(Duration::from_secs(10))?;
        Ok(report)
    }
}

/// Streams `count` packets a → b, runs `act` after 1 s, and returns the outage in ms as seen
/// by b (longest run of missing packets), with b's report.
pub fn outage_when(
    t: &mut Topology,
    count: u32,
    first_seq: u32,
    act: impl FnOnce(&mut Topology) -> Result<()>,
) -> Result<(f64, RecvReport)> {
    let s = stream(t, count, first_seq)?;
    std::thread::sleep(Duration::from_millis(1000));
    act(t)?;
    let report = s.finish()?;
    Ok((report.max_gap as f64 * 1000.0 / f64::from(RATE), report))
}

/// How r1's link to its next hop fails in [`fail_and_measure`].
#[derive(Clone, Copy, Debug)]
pub enum Failure {
    /// Cut silently (the element drops everything): only probes can tell.
    Cut,
    /// r1's interface toward it set down: the kernel announces it.
    InterfaceDown,
}

/// [`outage_when`] r1's link to `hop` fails as `how` says.
pub fn fail_and_measure(
    t: &mut Topology,
    hop: &str,
    how: Failure,
    count: u32,
    first_seq: u32,
) -> Result<(f64, RecvReport)> {
    outage_when(t, count, first_seq, |t| match how {
        Failure::Cut => {
            t.impair("r1", hop, Impairment { drop_all: true, ..Impairment::default() });
            Ok(())
        }
        Failure::InterfaceDown => {
            t.ns("r1").ip(&["link", "set", &crate::topology::iface(hop), "down"]).map(drop)
        }
    })
}

/// The per-hop protection scenario shared by `tests/tests/protection.rs` and the benchmarks:
///
/// ```text
///   a ── r1 ~~ r2 ~~ r3 ~~ r4 ── b       ~~ : `loss` random loss each way, 1 ms delay
/// ```
pub mod lossy {
    use super::*;
    use wecan_agent::protection::ProtectionReport;

    pub const RELAYS: [&str; 4] = ["r1", "r2", "r3", "r4"];
    /// Bytes per packet, relay header included: a typical media packet.
    pub const SIZE: usize = 1000;
    /// Packets per second of a stream: 40 Mbit/s. Every packet crosses three impairment
    /// elements and three agents on one small machine; the rate leaves them headroom, so a
    /// noisy neighbour does not delay the agents past an ARQ deadline.
    pub const RATE: u32 = 5_000;

    /// Static routes of each relay along the chain.
    pub fn routes(r: &str) -> Vec<(&'static str, &'static str)> {
        match r {
            "r1" => vec![("b", "r2"), ("a", "a")],
            "r2" => vec![("b", "r3"), ("a", "r1")],
            "r3" => vec![("b", "r4"), ("a", "r2")],
            _ => vec![("b", "b"), ("a", "r3")],
        }
    }

    /// The impairment of each relay link, each way: `loss` random loss, 1 ms delay.
    pub fn impairment(loss: f64) -> Impairment {
        Impairment { delay: Duration::from_millis(1), loss, ..Default::default() }
    }

    /// The chain with its agents running, unprotected, every link authenticated.
    pub fn chain(tag: &str, loss: f64) -> Result<Topology> {
        chain_with(tag, loss, true)
    }

    /// [`chain`], with its links authenticated or not (`auth = "none"`).
    pub fn chain_with(tag: &str, loss: f64, auth: bool) -> Result<Topology> {
        let mut t = Topology::new(tag)?;
        if !auth {
            t.without_auth();
        }
        for (i, r) in RELAYS.iter().enumerate() {
            t.node(r, i as u32 + 1)?;
        }
        t.client_node("a", 100)?;
        t.client_node("b", 200)?;
        t.link("a", "r1")?;
        for (x, y) in [("r1", "r2"), ("r2", "r3"), ("r3", "r4")] {
            t.link_impaired(x, y, impairment(loss))?;
        }
        t.link("r4", "b")?;
        t.accept_xdp_frames("b")?;
        for r in RELAYS {
            t.start_relay(r, &[], &routes(r))?;
        }
        for (i, r) in (1..).zip(RELAYS) {
            let neighbours: Vec<u32> =
                [i - 1, i + 1].into_iter().filter(|n| (1..=4).contains(n)).collect();
            wait_probe_replies(&t, r, &neighbours)?;
        }
        Ok(t)
    }

    /// Restarts r1..r3 in place with `mode` on their relay links, and lets the probes
    /// measure the links (which sets the parity) before returning.
    pub fn protect(t: &mut Topology, mode: &str) -> Result<()> {
        for r in ["r1", "r2", "r3"] {
            t.set_protect(r, &format!("mode = \"{mode}\""));
            t.write_config(r, &[], &routes(r))?;
            t.restart_relay(r)?;
        }
        std::thread::sleep(Duration::from_secs(3));
        Ok(())
    }

    /// Streams `count` packets of [`SIZE`] bytes a → b at [`RATE`] and returns b's report.
    pub fn stream(t: &Topology, count: u32, first_seq: u32, reliable: bool) -> Result<RecvReport> {
        let size = SIZE.to_string();
        let mut args = vec!["--size", &size];
        if reliable {
            args.push("--reliable");
        }
        let report = stream_with(t, count, first_seq, RATE, &args)?.finish()?;
        // Agents publish their protection counters every 500 ms: let the last ones land.
        std::thread::sleep(Duration::from_millis(700));
        Ok(report)
    }

    /// `wecan protection -j` of `relay`.
    pub fn protection(t: &Topology, relay: &str) -> Result<ProtectionReport> {
        Ok(serde_json::from_str(&t.cli(relay, &["-j", "protection"])?)?)
    }

    /// Extra bytes per payload byte over the three protected hops so far (hop packets sent
    /// by r1..r3 toward b, against the packets they carried).
    pub fn overhead(t: &Topology) -> Result<f64> {
        let (mut extra, mut payload) = (0u64, 0u64);
        for (i, r) in ["r1", "r2", "r3"].iter().enumerate() {
            let f = protection(t, r)?;
            let tx = f.tx.iter().find(|x| x.peer == i as u32 + 2).context("tx to next relay")?;
            extra += tx.stats.wire_bytes - tx.stats.payload_bytes;
            payload += tx.stats.payload_bytes;
        }
        Ok(extra as f64 / payload.max(1) as f64)
    }
}
