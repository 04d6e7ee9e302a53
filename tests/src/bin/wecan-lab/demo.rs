//! The demo network: a newcomer's first look at wecan.
//!
//! ```text
//!   A ── R1 ── R2 ~~ R3 ── B        clients A (node 100), B (node 200); relays 1, 2, 3
//!         └──────────┘               R1 ── R3: a direct link; relay links have 1 ms delay
//! ```
//!
//! Agents attach the XDP relay in every relay namespace (IP forwarding off), probe their
//! links and report to the controller, which pushes routes. A streams relay packets to B,
//! and every second the demo prints what each relay's datapath did and which way R1 sends
//! B's traffic. Every 10 s the direct link turns congested (20 ms delay) or clears (1 ms),
//! and the controller steers the traffic accordingly. The R2 ~~ R3 link loses 5 % of its
//! packets; R2 protects its links with FEC+ARQ, so while traffic goes through R2 its agent
//! protects that hop and R3's agent repairs it (`wecan protection`).

use std::{
    net::UdpSocket,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::Result;
use wecan_client::{EdgeLink, SendSpec, fill_payload, send};
use wecan_common::wire::{HEADER_LEN, RelayHeader};
use wecan_tests::{
    impair::Impairment,
    net::in_netns,
    scenario::{delay, wait_route},
    topology::Topology,
};

use crate::stopped;

const RATE: u32 = 20_000;
/// Loss of the R2 ~~ R3 link, each way.
const LOSSY: f64 = 0.05;
const RELAYS: [&str; 3] = ["r1", "r2", "r3"];

pub fn run(duration: Option<u64>) -> Result<()> {
    println!("wecan demo: building the relay network in network namespaces…");
    let mut t = Topology::new("demo")?;
    for (name, id) in [("r1", 1), ("r2", 2), ("r3", 3)] {
        t.node(name, id)?;
    }
    t.client_node("a", 100)?;
    t.client_node("b", 200)?;
    t.link("a", "r1")?;
    t.link("r3", "b")?;
    // Relay links through impairment elements with 1 ms of delay each way: R1 reaches R3
    // best directly (1 ms) rather than through R2 (2 ms) until the direct link congests.
    for (x, y) in [("r1", "r2"), ("r2", "r3"), ("r1", "r3")] {
        t.link_impaired(x, y, delay(1))?;
    }
    t.impair("r2", "r3", Impairment { loss: LOSSY, ..delay(1) });
    t.set_protect("r2", "mode = \"fec+arq\"");
    t.accept_xdp_frames("b")?;
    t.start_controller()?;
    t.start_relay("r1", &[], &[("a", "a")])?;
    t.start_relay("r2", &[], &[])?;
    t.start_relay("r3", &[], &[("b", "b")])?;
    wait_route(&t, "r1", 200, |_| true)?;
    println!("r1's links (`wecan links`):\n{}", t.cli("r1", &["links"])?);
    println!("r1's routes (`wecan routes list`):\n{}", t.cli("r1", &["routes", "list"])?);

    let delivered = Arc::new(AtomicU64::new(0));
    let corrupt = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let rx_stop = Arc::new(AtomicBool::new(false));
    // Each client's end of the authenticated link to its edge relay.
    let rx_link = EdgeLink::keyed(200, 3, 1, t.secret("b", "r3")?);
    let mut tx_link = EdgeLink::keyed(100, 1, 1, t.secret("a", "r1")?);
    let receiver = {
        let (ns, addr) = (t.ns("b").name.clone(), t.addr("b", "r3"));
        let (delivered, corrupt, rx_stop) = (delivered.clone(), corrupt.clone(), rx_stop.clone());
        let sock = in_netns(&ns, move || UdpSocket::bind((addr, 7300)))??;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !rx_stop.load(Ordering::Relaxed) {
                let Ok(n) = sock.recv(&mut buf) else { continue };
                let authentic = rx_link.verify(&buf[..n]).is_ok();
                let ok = authentic
                    && RelayHeader::decode(&buf[..n]).is_ok_and(|(h, payload)| {
                        let mut expect = vec![0u8; payload.len()];
                        fill_payload(h.flow_id(), h.seq(), &mut expect);
                        expect == payload
                    });
                if ok { &delivered } else { &corrupt }.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let sender = {
        let (ns, to) = (t.ns("a").name.clone(), t.addr("r1", "a"));
        let sent = sent.clone();
        let sock = in_netns(&ns, || UdpSocket::bind(("0.0.0.0", 0)))??;
        thread::spawn(move || -> Result<()> {
            let mut seq = 0u32;
            while !stopped() {
                let spec = SendSpec {
                    to: (to, 7300).into(),
                    src_node: 100,
                    dst_node: 200,
                    flow: 1,
                    first_seq: seq,
                    count: RATE / 100,
                    flows: 1,
                    rate: RATE,
                    size: HEADER_LEN + 100,
                    hop_limit: 16,
                    flags: 0,
                    reliable_flows: 0,
                };
                // Counted before sending, so the live line never shows more delivered than sent.
                sent.fetch_add(u64::from(spec.count), Ordering::Relaxed);
                send(&sock, &spec, &mut tx_link)?;
                seq = seq.wrapping_add(spec.count);
            }
            Ok(())
        })
    };

    println!(
        "A → B at {RATE} packets/s through the XDP relays; R2 protects the lossy R2 ~~ R3 hop. {}\n",
        match duration {
            Some(d) => format!("Running for {d} s."),
            None => "Ctrl-C to stop.".into(),
        }
    );
    let start = Instant::now();
    let mut last: Vec<u64> = vec![0; RELAYS.len()];
    let mut congested = false;
    let mut tick = 0u64;
    while !stopped() && duration.is_none_or(|d| start.elapsed() < Duration::from_secs(d)) {
        thread::sleep(Duration::from_secs(1));
        tick += 1;
        if tick.is_multiple_of(10) {
            congested = !congested;
            let ms = if congested { 20 } else { 1 };
            t.impair("r1", "r3", delay(ms));
            println!("  t={tick}s  the r1 — r3 link now has {ms} ms of delay each way");
        }
        let route = t.cli("r1", &["-j", "routes", "get", "200"])?;
        let route: serde_json::Value = serde_json::from_str(&route)?;
        let via = match route[0]["next_node"].as_u64() {
            Some(2) => "r2".to_string(),
            Some(3) => "r3 direct".to_string(),
            other => format!("{other:?}"),
        };
        print!(
            "t={tick:>3}s  sent {:>8}  delivered {:>8}  corrupt {}  r1 → B via {via:<9} |",
            sent.load(Ordering::Relaxed),
            delivered.load(Ordering::Relaxed),
            corrupt.load(Ordering::Relaxed)
        );
        for (i, r) in RELAYS.iter().enumerate() {
            let s = t.stats(r)?;
            let fwd = s["tx"] + s["redirect"];
            // Passed up to the agent: slow-path routes (protected hops), hop packets to unwrap,
            // probe replies, neighbour misses.
            let agent = s["no_neighbour"] + s["slow_path"] + s["fib_pass"] + s["local"];
            let drops: u64 = s.iter().filter(|(k, _)| k.starts_with("drop_")).map(|(_, v)| v).sum();
            print!("  {r}: {:>6} pkt/s in XDP, {agent:>7} to agent, {drops} drop", fwd - last[i]);
            last[i] = fwd;
        }
        println!();
    }
    crate::STOP.store(true, Ordering::Relaxed);
    sender.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
    // Let packets in flight land before the final numbers.
    thread::sleep(Duration::from_millis(300));
    rx_stop.store(true, Ordering::Relaxed);
    receiver.join().map_err(|_| anyhow::anyhow!("receiver panicked"))?;
    println!("\nfinal counters of r1 (`wecan stats`):\n{}", t.cli("r1", &["stats"])?);
    for r in ["r2", "r3"] {
        println!("per-hop protection at {r} (`wecan protection`):\n{}", t.cli(r, &["protection"])?);
    }
    for r in RELAYS {
        let drops: Vec<String> = t
            .stats(r)?
            .into_iter()
            .filter(|(k, v)| k.starts_with("drop_") && *v > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("{r} drops: {}", if drops.is_empty() { "none".into() } else { drops.join(" ") });
    }
    let (s, d) = (sent.load(Ordering::Relaxed), delivered.load(Ordering::Relaxed));
    println!(
        "A → B: sent {s}, delivered {d} ({:.3} %), corrupt {}",
        100.0 * d as f64 / s.max(1) as f64,
        corrupt.load(Ordering::Relaxed)
    );
    println!("removing the demo network…");
    drop(t);
    Ok(())
}
