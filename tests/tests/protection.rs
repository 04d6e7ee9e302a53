//! Per-hop protection end to end, through real agents and real XDP in namespaces
//! (`scenario::lossy`):
//!
//! ```text
//!   A ── R1 ~~ R2 ~~ R3 ~~ R4 ── B       ~~ : 5 % random loss each way, 1 ms delay
//! ```
//!
//! Three lossy hops lose about 14 % end to end, every link authenticated. The same
//! 50,000-packet stream crosses them unprotected (forwarded in XDP), then with FEC+ARQ on
//! every lossy link (the relays' agents protect, seal and verify each hop), then as a
//! reliable flow. Between the last two, fuzzed hop messages from R1's address without R1's
//! key are dropped in R2's XDP and reach nothing.
//!
//! A second run, on links configured without authentication (where the agent's own checks
//! are all that stands between a forger and the hop state), forges hop messages while a
//! protected flow crosses: fuzzed ones into R2's agent, from client A (under its own ID and
//! claiming 2,500 others, R2 among them) and from R2's address claiming other relays. XDP
//! or the agents refuse and count every one, R1 keeps no state for them, and the flow is
//! whole. Fuzzed messages cross the R1 — R2 link with its loss off, so that each one is
//! accounted for exactly.

use std::{
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use rand::{Rng, RngCore, SeedableRng, rngs::SmallRng};
use wecan_common::wire::{PacketKind, RelayHeader, flags};
use wecan_tests::{
    net::in_netns,
    scenario::{
        lossy::{self, RELAYS},
        stream_with,
    },
    skip_privileged,
    topology::Topology,
};
use wecan_transport::hop::{HOP_HEADER_LEN, HopHeader, RxStats};

const COUNT: u32 = 50_000;
/// Fuzzed hop messages sent to R2 in each test.
const FUZZED: u64 = 20_000;

/// Sends `n` fuzzed hop messages to R2 from R1's address, untagged, data, parity and NACKs in
/// turn; returns how many were NACKs. XDP drops them on an authenticated link; on one
/// without, they reach R2's agent.
fn fuzz_r2(t: &Topology, n: u64) -> u64 {
    let (from, to) = (t.addr("r1", "r2"), t.addr("r2", "r1"));
    let ns = t.ns("r1").name.clone();
    in_netns(&ns, move || {
        let sock = UdpSocket::bind(SocketAddr::from((from, 0))).unwrap();
        let mut rng = SmallRng::seed_from_u64(7);
        let kinds = [PacketKind::Data, PacketKind::FecParity, PacketKind::Nack];
        let mut nacks = 0;
        for i in 0..n {
            let kind = kinds[i as usize % 3];
            nacks += u64::from(kind == PacketKind::Nack);
            let mut hdr = RelayHeader::new(kind, 1, 2, 0, 0);
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
        nacks
    })
    .unwrap()
}

/// With the R1 — R2 link's loss off, runs `send` and polls `arrived` until it says all that
/// was sent arrived (for up to 10 s); then the link's `loss` is back. So what `send` sends
/// all reaches R2 and can be counted exactly, while the link loses packets before and after.
fn without_r1_r2_loss<T>(
    t: &Topology,
    loss: f64,
    send: impl FnOnce(),
    mut arrived: impl FnMut() -> (bool, T),
) -> T {
    t.impair("r1", "r2", lossy::impairment(0.0));
    send();
    let deadline = Instant::now() + Duration::from_secs(10);
    let counted = loop {
        let (all, counted) = arrived();
        if all || Instant::now() > deadline {
            break counted;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    t.impair("r1", "r2", lossy::impairment(loss));
    counted
}

/// What R2's agent counted of hop messages from R1 on a link without authentication.
#[derive(Clone, Copy, Debug)]
struct R2Counts {
    /// Data and parity refused: malformed, or of an epoch other than the live one.
    refused: u64,
    nacks_without_link: u64,
    /// Times a sender epoch was taken over.
    resets: u64,
    socket_drops: u64,
}

impl R2Counts {
    fn read(t: &Topology) -> Self {
        let p = lossy::protection(t, "r2").unwrap();
        let rx = |f: fn(&RxStats) -> u64| p.rx.iter().map(|r| f(&r.stats)).sum::<u64>();
        Self {
            refused: rx(|s| s.malformed + s.stale),
            nacks_without_link: p.refused.nacks_without_link,
            resets: rx(|s| s.resets),
            socket_drops: p.socket_drops,
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            refused: self.refused - before.refused,
            nacks_without_link: self.nacks_without_link - before.nacks_without_link,
            resets: self.resets - before.resets,
            socket_drops: self.socket_drops - before.socket_drops,
        }
    }
}

/// Kinds of hop message: data, parity and NACKs.
const ALL_KINDS: &[PacketKind] = &[PacketKind::Data, PacketKind::FecParity, PacketKind::Nack];

/// Sends `n` well-formed hop messages of `kinds` (in turn) from `node`'s address toward
/// `relay`, the `i`-th claiming to come from node `claim(i)`, at about 5,000 a second.
fn forge(
    t: &Topology,
    (node, relay): (&str, &str),
    n: u32,
    kinds: &'static [PacketKind],
    claim: fn(u32) -> u32,
) {
    let (from, to) = (t.addr(node, relay), t.addr(relay, node));
    let dst = t.id(relay);
    in_netns(&t.ns(node).name.clone(), move || {
        let sock = UdpSocket::bind(SocketAddr::from((from, 0))).unwrap();
        let mut rng = SmallRng::seed_from_u64(11);
        for i in 0..n {
            let mut hdr = RelayHeader::new(kinds[i as usize % kinds.len()], claim(i), dst, 0, i);
            hdr.flags = flags::HOP;
            hdr.hop_limit = 1;
            let hop = HopHeader {
                epoch: rng.next_u64() as u32,
                group: i,
                index: 0,
                k: 4,
                m: 1,
                flags: 0,
            };
            let mut pkt = hdr.to_bytes().to_vec();
            pkt.extend_from_slice(&hop.encode());
            pkt.extend((0..100).map(|_| rng.next_u64() as u8));
            sock.send_to(&pkt, SocketAddr::from((to, 7300))).unwrap();
            if i % 10 == 9 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    })
    .unwrap();
}

#[test]
fn forged_hop_messages_are_refused_and_change_nothing() {
    if skip_privileged() {
        return;
    }
    const FORGED: u32 = 5_000;
    const LOSS: f64 = 0.01;
    let mut t = lossy::chain_with("hf", LOSS, false).unwrap();
    lossy::protect(&mut t, "fec+arq").unwrap();
    let size = lossy::SIZE.to_string();
    let flow = stream_with(&t, COUNT, 0, lossy::RATE, &["--size", &size]).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let rss_before = t.agent("r1").unwrap().rss().unwrap();

    // Client A (node 100) sends hop messages, half under its own ID, half claiming 2,500
    // other nodes (R2 among them); R2's address claims relays 3 and 4; R3 NACKs a link R4
    // never sent on.
    let claim_a = |i: u32| match i % 10 {
        0 | 2 | 4 | 6 | 8 => 100,
        1 => 2,
        _ => 1_000 + i,
    };
    forge(&t, ("a", "r1"), FORGED, ALL_KINDS, claim_a);
    forge(&t, ("r2", "r1"), 1_000, ALL_KINDS, |i| 3 + i % 2);
    forge(&t, ("r3", "r4"), 100, &[PacketKind::Nack], |_| 3);
    let before = R2Counts::read(&t);
    let mut nacks = 0;
    let fuzz = without_r1_r2_loss(
        &t,
        LOSS,
        || nacks = fuzz_r2(&t, FUZZED),
        || {
            let d = R2Counts::read(&t).since(before);
            (d.refused + d.nacks_without_link + d.socket_drops >= FUZZED, d)
        },
    );
    let rss_after = t.agent("r1").unwrap().rss().unwrap();
    let report = flow.finish().unwrap();
    std::thread::sleep(Duration::from_millis(700));

    let r1 = lossy::protection(&t, "r1").unwrap();
    eprintln!("r1 refused {:?}; rss {rss_before} -> {rss_after} bytes", r1.refused);
    eprintln!("{}", t.cli("r1", &["protection"]).unwrap());
    assert_eq!(r1.socket_drops, 0, "{r1:?}");
    // XDP drops the claims of other nodes; the agent refuses the rest: clients do not
    // speak the hop protocol.
    assert_eq!(t.stats("r1").unwrap()["drop_spoofed_source"], u64::from(FORGED / 2));
    assert_eq!(r1.refused.not_relay, u64::from(FORGED / 2), "{:?}", r1.refused);
    // R2's link to R1 loses 1 % each way.
    assert!((900..=1_000).contains(&r1.refused.wrong_source), "{:?}", r1.refused);
    // Link state exists only toward R1's one relay peer.
    let peers: Vec<u32> =
        r1.tx.iter().map(|x| x.peer).chain(r1.rx.iter().map(|x| x.peer)).collect();
    assert!(peers.iter().all(|&p| p == 2), "{peers:?}");
    // Issue 9 measured 8.8 → 14.8 MB for 5,000 forged links before the fix.
    assert!(rss_after < rss_before + (3 << 20), "{rss_before} -> {rss_after}");
    let r4 = lossy::protection(&t, "r4").unwrap();
    assert!((90..=100).contains(&r4.refused.nacks_without_link), "{:?}", r4.refused);
    assert!(r4.tx.is_empty(), "a NACK made no sending state: {r4:?}");
    // Every fuzzed message reached R2 (the link's loss was off) and was refused and counted
    // by reason: data and parity as malformed or stale, NACKs as for a link R2 never sent
    // on; none took the live epoch over. Only datagrams R2's full socket dropped (counted
    // there, though some may be the flow's) escape the count.
    eprintln!("r2 counted of the fuzz ({nacks} NACKs): {fuzz:?}");
    assert_eq!(fuzz.resets, 0, "{fuzz:?}");
    assert!(fuzz.refused <= FUZZED - nacks && fuzz.nacks_without_link <= nacks, "{fuzz:?}");
    assert!(fuzz.refused + fuzz.nacks_without_link + fuzz.socket_drops >= FUZZED, "{fuzz:?}");

    let ratio = report.unique as f64 / f64::from(COUNT);
    eprintln!("protected flow under forgery: {report:?}, delivery {ratio:.5}");
    assert!(ratio >= 0.999, "{report:?}");
    assert_eq!((report.corrupt, report.duplicates), (0, 0), "{report:?}");
}

#[test]
fn fec_and_arq_repair_three_lossy_hops() {
    if skip_privileged() {
        return;
    }
    const LOSS: f64 = 0.05;
    let mut t = lossy::chain("pr", LOSS).unwrap();

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

    // Hop messages from R1's address without R1's key, over the link with its loss off:
    // every one is dropped in R2's XDP.
    let untagged = t.stats("r2").unwrap()["drop_untagged"];
    let dropped = without_r1_r2_loss(
        &t,
        LOSS,
        || {
            fuzz_r2(&t, FUZZED);
        },
        || {
            let dropped = t.stats("r2").unwrap()["drop_untagged"] - untagged;
            (dropped >= FUZZED, dropped)
        },
    );
    assert_eq!(dropped, FUZZED, "untagged hop messages dropped in R2's XDP");
    let malformed: u64 =
        lossy::protection(&t, "r2").unwrap().rx.iter().map(|r| r.stats.malformed).sum();
    assert_eq!(malformed, 0, "nothing unauthenticated reached R2's agent");

    // Reliable flow: everything, in order, exactly once.
    let reliable = lossy::stream(&t, COUNT, 200_000, true).unwrap();
    eprintln!("reliable: {reliable:?}");
    assert_eq!(reliable.unique, u64::from(COUNT), "{reliable:?}");
    assert_eq!((reliable.reordered, reliable.duplicates, reliable.corrupt), (0, 0, 0));
    for r in RELAYS {
        let s = t.stats(r).unwrap();
        for name in ["drop_unknown_key", "drop_bad_tag", "drop_replay"] {
            assert_eq!(s[name], 0, "{r} {name}: agents seal every hop message they send");
        }
    }

    // An operator protects a route by hand: the CLI writes the mode into the route map.
    let via = t.addr("r2", "r1").to_string();
    t.cli("r1", &["routes", "add", "200", "--via", &via, "--protect", "arq"]).unwrap();
    let route: serde_json::Value =
        serde_json::from_str(&t.cli("r1", &["-j", "routes", "get", "200"]).unwrap()).unwrap();
    assert_eq!((&route[0]["protect"], &route[0]["action"]), (&"arq".into(), &"slow-path".into()));
}
