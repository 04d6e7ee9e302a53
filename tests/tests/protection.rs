//! Per-hop protection end to end, through real agents and real XDP in namespaces
//! (`scenario::lossy`):
//!
//! ```text
//!   A ── R1 ~~ R2 ~~ R3 ~~ R4 ── B       ~~ : 5 % random loss each way, 1 ms delay
//! ```
//!
//! Three lossy hops lose about 14 % end to end. The same 50,000-packet stream crosses them
//! unprotected (forwarded in XDP), then with FEC+ARQ on every lossy link (the relays' agents
//! protect each hop), then as a reliable flow. Between the last two, R2's agent is fed
//! fuzzed hop messages from R1's address (random epochs among them) and must keep relaying.

use std::{
    net::{SocketAddr, UdpSocket},
    time::Duration,
};

use rand::{Rng, RngCore, SeedableRng, rngs::SmallRng};
use wecan_common::wire::{PacketKind, RelayHeader, flags};
use wecan_tests::{
    net::in_netns,
    scenario::lossy::{self, RELAYS},
    skip_privileged,
    topology::Topology,
};
use wecan_transport::hop::{HOP_HEADER_LEN, HopHeader};

const COUNT: u32 = 50_000;

/// Sends `n` fuzzed hop messages to R2 from R1's address (a peer, so XDP admits them).
fn fuzz_r2(t: &Topology, n: u32) {
    let (from, to) = (t.addr("r1", "r2"), t.addr("r2", "r1"));
    let ns = t.ns("r1").name.clone();
    in_netns(&ns, move || {
        let sock = UdpSocket::bind(SocketAddr::from((from, 0))).unwrap();
        let mut rng = SmallRng::seed_from_u64(7);
        let kinds = [PacketKind::Data, PacketKind::FecParity, PacketKind::Nack];
        for i in 0..n {
            let mut hdr = RelayHeader::new(kinds[i as usize % 3], 1, 2, 0, 0);
            hdr.flags = flags::HOP | (rng.random_range(0..2) as u8 * flags::RELIABLE);
            hdr.hop_limit = 1;
            let mut pkt = hdr.to_bytes().to_vec();
            let hop = HopHeader {
                epoch: rng.next_u64() as u32,
                group: rng.random_range(0..4) as u32,
                index: rng.random_range(0..20) as u8,
                k: rng.random_range(0..12) as u8,
                m: rng.random_range(0..6) as u8,
                flags: rng.random_range(0..4) as u8,
            };
            let body_len = rng.random_range(0..300) as usize;
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
    let mut t = lossy::chain("pr", 0.05).unwrap();

    // Unprotected: XDP forwards, and the losses compound.
    let none = lossy::stream(&t, COUNT, 0, false).unwrap();
    let none_ratio = none.unique as f64 / f64::from(COUNT);
    eprintln!("unprotected: {none:?}, delivery {none_ratio:.4}");
    assert!((0.82..0.89).contains(&none_ratio), "expected about 0.857: {none:?}");
    assert_eq!(none.socket_drops, 0);

    // FEC+ARQ on every lossy link: the agents restart in place with protection.
    lossy::protect(&mut t, "fec+arq").unwrap();
    for r in ["r2", "r3"] {
        let route: serde_json::Value =
            serde_json::from_str(&t.cli(r, &["-j", "routes", "get", "200"]).unwrap()).unwrap();
        assert_eq!(route[0]["protect"], "fec+arq", "{route}");
        assert_eq!(route[0]["action"], "slow-path", "{route}");
    }
    let both = lossy::stream(&t, COUNT, 100_000, false).unwrap();
    let ratio = both.unique as f64 / f64::from(COUNT);
    let overhead = lossy::overhead(&t).unwrap();
    for r in RELAYS {
        eprintln!("{r}: {}", t.cli(r, &["protection"]).unwrap());
    }
    eprintln!("fec+arq: {both:?}, delivery {ratio:.5}, overhead {:.1} %", overhead * 100.0);
    assert!(ratio >= 0.999, "FEC+ARQ delivered {ratio:.5}: {both:?}");
    assert_eq!((both.corrupt, both.duplicates, both.socket_drops), (0, 0, 0), "{both:?}");
    assert!(overhead < 0.6, "overhead {overhead}");
    let repaired: u64 = ["r2", "r3", "r4"]
        .iter()
        .map(|r| lossy::protection(&t, r).unwrap().rx[0].stats.fec_repaired)
        .sum();
    assert!(repaired > 1000, "FEC repaired only {repaired} packets");

    // Malformed hop messages: counted and dropped; the agent keeps relaying.
    fuzz_r2(&t, 20_000);
    std::thread::sleep(Duration::from_millis(600));
    let malformed: u64 =
        lossy::protection(&t, "r2").unwrap().rx.iter().map(|r| r.stats.malformed).sum();
    eprintln!("r2 counted {malformed} malformed hop messages");
    assert!(malformed > 1000, "{malformed}");

    // Reliable flow: everything, in order, exactly once. The fuzz's random epochs (some of
    // them later-looking than R1's) were followed while the link was idle; R1 is followed
    // again as soon as it sends.
    let reliable = lossy::stream(&t, COUNT, 200_000, true).unwrap();
    eprintln!("reliable: {reliable:?}");
    assert_eq!(reliable.unique, u64::from(COUNT), "{reliable:?}");
    assert_eq!((reliable.reordered, reliable.duplicates, reliable.corrupt), (0, 0, 0));
    let flows = lossy::protection(&t, "r2").unwrap();
    let r2 = flows.rx.iter().find(|r| r.peer == 1).expect("R2 receives from R1").stats;
    eprintln!("r2 from r1: {} epoch resets, {} stale", r2.resets, r2.stale);
    assert!(r2.resets >= 2, "the fuzz's epochs and then R1's again: {r2:?}");

    // An operator protects a route by hand: the CLI writes the mode into the route map.
    let via = t.addr("r2", "r1").to_string();
    t.cli("r1", &["routes", "add", "200", "--via", &via, "--protect", "arq"]).unwrap();
    let route: serde_json::Value =
        serde_json::from_str(&t.cli("r1", &["-j", "routes", "get", "200"]).unwrap()).unwrap();
    assert_eq!((&route[0]["protect"], &route[0]["action"]), (&"arq".into(), &"slow-path".into()));
}
