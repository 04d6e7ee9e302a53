//! Per-hop protection end to end, through real agents and real XDP in namespaces:
//!
//! ```text
//!   A ── R1 ~~ R2 ~~ R3 ~~ R4 ── B       ~~ : 5 % random loss each way, 1 ms delay
//! ```
//!
//! Three lossy hops lose about 14 % end to end. The same 50,000-packet stream crosses them
//! unprotected (forwarded in XDP), then with FEC+ARQ on every lossy link (the relays' agents
//! protect each hop), then as a reliable flow. Between the last two, R2's agent is fed
//! fuzzed hop messages from R1's address and must keep relaying.

use std::{
    net::{SocketAddr, UdpSocket},
    process::Stdio,
    time::Duration,
};

use wecan::{
    client::RecvReport,
    hop::{HOP_HEADER_LEN, HopHeader},
    prng::XorShift,
    protect::FlowsReport,
};
use wecan_common::wire::{PacketKind, RelayHeader, flags};
use wecan_tests::{
    impair::Impairment, net::in_netns, proc::Proc, skip_privileged, topology::Topology,
};

const COUNT: u32 = 50_000;
const RATE: u32 = 10_000;
const LOSS: f64 = 0.05;
/// Bytes per packet, relay header included: a typical media packet.
const SIZE: usize = 1000;
const RELAYS: [&str; 4] = ["r1", "r2", "r3", "r4"];

fn routes(r: &str) -> Vec<(&'static str, &'static str)> {
    match r {
        "r1" => vec![("b", "r2"), ("a", "a")],
        "r2" => vec![("b", "r3"), ("a", "r1")],
        "r3" => vec![("b", "r4"), ("a", "r2")],
        _ => vec![("b", "b"), ("a", "r3")],
    }
}

/// Streams `COUNT` packets of `SIZE` bytes A → B and returns B's report.
fn stream(t: &Topology, first_seq: u32, reliable: bool) -> RecvReport {
    let b = t.addr("b", "r4");
    let (count, first) = (COUNT.to_string(), first_seq.to_string());
    let (rx, _, lines) = Proc::spawn_capture(
        "receiver",
        t.client("b").args(["recv", "--json", "--bind", &format!("{b}:7300")]).args([
            "--count",
            &count,
            "--first-seq",
            &first,
            "--timeout",
            "90",
            "--idle",
            "4",
        ]),
        "listening",
        Duration::from_secs(10),
    )
    .unwrap();
    let r1 = t.addr("r1", "a");
    let mut send = t.client("a");
    send.args(["send", "--to", &format!("{r1}:7300"), "--src-node", "100", "--dst-node", "200"])
        .args(["--count", &count, "--first-seq", &first, "--rate", &RATE.to_string()])
        .args(["--size", &SIZE.to_string()])
        .stdout(Stdio::null());
    if reliable {
        send.arg("--reliable");
    }
    assert!(send.status().unwrap().success());
    let report = loop {
        let line = lines.recv_timeout(Duration::from_secs(100)).expect("receiver report");
        if line.starts_with('{') {
            break serde_json::from_str(&line).unwrap();
        }
    };
    rx.wait(Duration::from_secs(10)).unwrap();
    report
}

fn flows(t: &Topology, r: &str) -> FlowsReport {
    serde_json::from_str(&t.cli(r, &["-j", "flows"]).unwrap()).unwrap()
}

/// Sends `n` fuzzed hop messages to R2 from R1's address (a peer, so XDP admits them).
fn fuzz_r2(t: &Topology, n: u32) {
    let (from, to) = (t.addr("r1", "r2"), t.addr("r2", "r1"));
    let ns = t.ns("r1").name.clone();
    in_netns(&ns, move || {
        let sock = UdpSocket::bind(SocketAddr::from((from, 0))).unwrap();
        let mut rng = XorShift::new(7);
        let kinds = [PacketKind::Data, PacketKind::FecParity, PacketKind::Nack];
        for i in 0..n {
            let mut hdr = RelayHeader::new(kinds[i as usize % 3], 1, 2, 0, 0);
            hdr.flags = flags::HOP | (rng.below(2) as u8 * flags::RELIABLE);
            hdr.hop_limit = 1;
            let mut pkt = hdr.to_bytes().to_vec();
            let hop = HopHeader {
                epoch: rng.next_u64() as u32,
                group: rng.below(4) as u32,
                index: rng.below(20) as u8,
                k: rng.below(12) as u8,
                m: rng.below(6) as u8,
                flags: rng.below(4) as u8,
            };
            let body_len = rng.below(300) as usize;
            if i % 5 != 0 {
                pkt.extend_from_slice(&hop.encode()[..HOP_HEADER_LEN.min(body_len)]);
            }
            pkt.extend((0..body_len).map(|_| rng.next_u64() as u8));
            sock.send_to(&pkt, SocketAddr::from((to, 7300))).unwrap();
            if i % 200 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    })
    .unwrap();
}

#[test]
fn fec_and_arq_repair_three_lossy_hops() {
    if skip_privileged("fec_and_arq_repair_three_lossy_hops") {
        return;
    }
    let mut t = Topology::new("pr").unwrap();
    for (i, r) in RELAYS.iter().enumerate() {
        t.node(r, i as u32 + 1).unwrap();
    }
    t.client_node("a", 100).unwrap();
    t.client_node("b", 200).unwrap();
    let lossy = Impairment { delay: Duration::from_millis(1), loss: LOSS, ..Default::default() };
    t.link("a", "r1").unwrap();
    for (x, y) in [("r1", "r2"), ("r2", "r3"), ("r3", "r4")] {
        t.link_impaired(x, y, lossy).unwrap();
    }
    t.link("r4", "b").unwrap();
    t.accept_xdp_frames("b").unwrap();
    for r in RELAYS {
        t.start_relay(r, &[], &routes(r)).unwrap();
    }

    // Unprotected: XDP forwards, and the losses compound.
    let none = stream(&t, 0, false);
    let none_ratio = none.unique as f64 / f64::from(COUNT);
    eprintln!("unprotected: {none:?}, delivery {none_ratio:.4}");
    assert!((0.82..0.89).contains(&none_ratio), "expected about 0.857: {none:?}");
    assert_eq!(none.socket_drops, 0);

    // FEC+ARQ on every lossy link: restart the agents (in place) with protection.
    for r in ["r1", "r2", "r3"] {
        t.set_protect(r, "mode = \"fec+arq\"");
        t.write_config(r, &[], &routes(r)).unwrap();
        t.restart_relay(r).unwrap();
    }
    for r in ["r2", "r3"] {
        // R2 and R3 protect both directions of their links; routes say so.
        let route: serde_json::Value =
            serde_json::from_str(&t.cli(r, &["-j", "routes", "get", "200"]).unwrap()).unwrap();
        assert_eq!(route[0]["protect"], "fec+arq", "{route}");
        assert_eq!(route[0]["action"], "slow-path", "{route}");
    }
    // Let the probes measure the links, which sets the parity.
    std::thread::sleep(Duration::from_secs(3));
    let both = stream(&t, 100_000, false);
    let ratio = both.unique as f64 / f64::from(COUNT);
    let mut overhead = (0u64, 0u64);
    for r in ["r1", "r2", "r3"] {
        let f = flows(&t, r);
        let tx = f.tx.iter().find(|x| x.peer == t.id(r) + 1).expect("tx toward the next relay");
        eprintln!("{r} tx: {:?}", tx.stats);
        overhead.0 += tx.stats.wire_bytes - tx.stats.payload_bytes;
        overhead.1 += tx.stats.payload_bytes;
        let rx = flows(&t, RELAYS[t.id(r) as usize]);
        eprintln!("{} rx: {:?}", RELAYS[t.id(r) as usize], rx.rx);
    }
    let overhead = overhead.0 as f64 / overhead.1 as f64;
    eprintln!("fec+arq: {both:?}, delivery {ratio:.5}, overhead {:.1} %", overhead * 100.0);
    assert!(ratio >= 0.999, "FEC+ARQ delivered {ratio:.5}: {both:?}");
    assert_eq!((both.corrupt, both.duplicates, both.socket_drops), (0, 0, 0), "{both:?}");
    assert!(overhead < 0.6, "overhead {overhead}");
    let repaired: u64 =
        ["r2", "r3", "r4"].iter().map(|r| flows(&t, r).rx[0].stats.fec_repaired).sum();
    assert!(repaired > 1000, "FEC repaired only {repaired} packets");

    // Malformed hop messages: counted and dropped; the agent keeps relaying.
    fuzz_r2(&t, 20_000);
    std::thread::sleep(Duration::from_millis(600));
    let malformed: u64 = flows(&t, "r2").rx.iter().map(|r| r.stats.malformed).sum();
    eprintln!("r2 counted {malformed} malformed hop messages");
    assert!(malformed > 1000, "{malformed}");

    // Reliable flow: everything, in order, exactly once.
    let reliable = stream(&t, 200_000, true);
    for r in RELAYS {
        eprintln!("{r}: {}", t.cli(r, &["flows"]).unwrap());
    }
    eprintln!("reliable: {reliable:?}");
    assert_eq!(reliable.unique, u64::from(COUNT), "{reliable:?}");
    assert_eq!((reliable.reordered, reliable.duplicates, reliable.corrupt), (0, 0, 0));
}
