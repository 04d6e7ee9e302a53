//! Golden-packet tests of the real relay XDP object through BPF_PROG_TEST_RUN (aya
//! `TestRun`), Katran-style: for each case an input packet, the expected verdict, the exact
//! expected output bytes for rewrites (checksums computed independently by `etherparse`),
//! and the counter that must move.
//!
//! Each test runs in its own network namespace, where the FIB has real routes and static
//! neighbours, so `bpf_fib_lookup` resolves egress exactly as on a relay:
//!
//! ```text
//!   in0  10.1.0.1/24 fd01::1/64   neighbours .2 (peer), .3 (next hop on the same link)
//!   out0 10.2.0.1/24 fd02::1/64   neighbour  .2 (next hop on another link)
//! ```

use std::{
    net::IpAddr,
    sync::atomic::{AtomicU32, Ordering},
};

use aya::programs::{TestRun, TestRunOptions};
use etherparse::{PacketBuilder, VlanId};
use wecan::{
    control,
    datapath::{Relay, RouteSel},
};
use wecan_common::{
    maps::{RelayConfig, RouteAction, RouteOrigin, RouteValue},
    stats::{Stat, xdp},
    wire::{PacketKind, RelayHeader},
};
use wecan_tests::{
    net::{Netns, veth},
    skip_privileged,
};

const PORT: u16 = 7300;
const ME: u32 = 1;
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 1, 2];
const SAME_LINK_MAC: [u8; 6] = [2, 0, 0, 0, 1, 3];
const OTHER_LINK_MAC: [u8; 6] = [2, 0, 0, 0, 2, 2];

// Destination nodes and what their routes do.
const TX_V4: u32 = 10; // via 10.1.0.3: same interface → XDP_TX
const REDIRECT_V4: u32 = 20; // via 10.2.0.2: other interface → XDP_REDIRECT
const TX_V6: u32 = 16;
const REDIRECT_V6: u32 = 26;
const SLOW: u32 = 30;
const NO_NEIGH: u32 = 40; // via 10.1.0.9, no neighbour entry
const UNREACHABLE: u32 = 50; // via 10.9.0.5, an unreachable route
const FAMILY_MISMATCH: u32 = 60; // IPv6 next hop for an IPv4 packet
const UNKNOWN: u32 = 77;
const OVERRIDE_FLOW: u32 = 99; // (REDIRECT_V4, 99) is overridden to go via 10.1.0.3

struct Fixture {
    relay: Relay,
    in_if: u32,
    in_mac: [u8; 6],
    out_mac: [u8; 6],
    pin_dir: std::path::PathBuf,
    _ns: Netns,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Ok(files) = std::fs::read_dir(&self.pin_dir) {
            for f in files.flatten() {
                let _ = std::fs::remove_file(f.path());
            }
        }
        let _ = std::fs::remove_dir(&self.pin_dir);
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

impl Fixture {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let tag = format!("dp{}-{n}", std::process::id() % 100_000);
        let ns = Netns::new(&tag).unwrap();
        veth(&ns, "in0", &ns, "in0p").unwrap();
        veth(&ns, "out0", &ns, "out0p").unwrap();
        let cmds: &[&[&str]] = &[
            &["addr", "add", "10.1.0.1/24", "dev", "in0"],
            &["addr", "add", "fd01::1/64", "dev", "in0", "nodad"],
            &["addr", "add", "10.2.0.1/24", "dev", "out0"],
            &["addr", "add", "fd02::1/64", "dev", "out0", "nodad"],
            &[
                "neigh",
                "add",
                "10.1.0.2",
                "lladdr",
                "02:00:00:00:01:02",
                "dev",
                "in0",
                "nud",
                "permanent",
            ],
            &[
                "neigh",
                "add",
                "10.1.0.3",
                "lladdr",
                "02:00:00:00:01:03",
                "dev",
                "in0",
                "nud",
                "permanent",
            ],
            &[
                "neigh",
                "add",
                "fd01::3",
                "lladdr",
                "02:00:00:00:01:03",
                "dev",
                "in0",
                "nud",
                "permanent",
            ],
            &[
                "neigh",
                "add",
                "10.2.0.2",
                "lladdr",
                "02:00:00:00:02:02",
                "dev",
                "out0",
                "nud",
                "permanent",
            ],
            &[
                "neigh",
                "add",
                "fd02::2",
                "lladdr",
                "02:00:00:00:02:02",
                "dev",
                "out0",
                "nud",
                "permanent",
            ],
            &["route", "add", "unreachable", "10.9.0.0/24"],
        ];
        for c in cmds {
            ns.ip(c).unwrap();
        }
        ns.enter().unwrap();
        let pin_dir = std::path::PathBuf::from(format!("/sys/fs/bpf/wecan-{tag}"));
        let mut relay = Relay::load(&pin_dir).unwrap();
        let m = &mut relay.maps;
        m.add_peer(ip("10.1.0.2"), 2).unwrap();
        m.add_peer(ip("fd01::2"), 2).unwrap();
        let fwd = |a: RouteAction, via: &str| {
            control::route_to(a, ip(via), PORT, 9, RouteOrigin::Cli).unwrap()
        };
        let routes = [
            (RouteSel::Dst(ME), RouteValue::local(RouteOrigin::Static)),
            (RouteSel::Dst(TX_V4), fwd(RouteAction::Forward, "10.1.0.3")),
            (
                RouteSel::Dst(REDIRECT_V4),
                fwd(RouteAction::Forward, "10.2.0.2"),
            ),
            (
                RouteSel::Flow {
                    dst: REDIRECT_V4,
                    flow: OVERRIDE_FLOW,
                },
                fwd(RouteAction::Forward, "10.1.0.3"),
            ),
            (RouteSel::Dst(TX_V6), fwd(RouteAction::Forward, "fd01::3")),
            (
                RouteSel::Dst(REDIRECT_V6),
                fwd(RouteAction::Forward, "fd02::2"),
            ),
            (RouteSel::Dst(SLOW), fwd(RouteAction::SlowPath, "10.2.0.2")),
            (
                RouteSel::Dst(NO_NEIGH),
                fwd(RouteAction::Forward, "10.1.0.9"),
            ),
            (
                RouteSel::Dst(FAMILY_MISMATCH),
                fwd(RouteAction::Forward, "fd02::2"),
            ),
        ];
        for (sel, v) in routes {
            m.set_route(sel, v).unwrap();
        }
        // The kernel will not resolve a source toward an unreachable route: write it by hand.
        let mut unreachable = fwd(RouteAction::Forward, "10.2.0.2");
        unreachable.next_addr[..4].copy_from_slice(&[10, 9, 0, 5]);
        m.set_route(RouteSel::Dst(UNREACHABLE), unreachable)
            .unwrap();
        let out_if = ns.ifindex("out0").unwrap();
        m.add_tx_port(out_if).unwrap();
        control::enable_fib_lookups().unwrap();
        m.set_config(RelayConfig {
            node_id: ME,
            port: PORT,
            enabled: 1,
            _pad: 0,
        })
        .unwrap();
        Self {
            in_if: ns.ifindex("in0").unwrap(),
            in_mac: ns.mac("in0").unwrap(),
            out_mac: ns.mac("out0").unwrap(),
            relay,
            pin_dir,
            _ns: ns,
        }
    }

    /// Runs one packet through the program as if received on in0; returns the verdict and
    /// the packet as the program left it.
    fn run(&mut self, pkt: &[u8]) -> (u32, Vec<u8>) {
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(pkt.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&self.in_if.to_ne_bytes());
        let mut out = vec![0u8; pkt.len() + 256];
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(pkt);
        opts.data_out = Some(&mut out);
        opts.ctx_in = Some(&ctx);
        let res = self.relay.program().unwrap().test_run(opts).unwrap();
        out.truncate(res.data_size_out as usize);
        (res.return_value, out)
    }

    fn counter(&self, s: Stat) -> u64 {
        self.relay.maps.stats().unwrap()[s as usize].1.packets
    }

    /// Runs `pkt`, asserts the verdict and that exactly the counter of `outcome` moved.
    fn expect(&mut self, pkt: &[u8], verdict: u32, outcome: Stat) -> Vec<u8> {
        let before: Vec<u64> = Stat::ALL.iter().map(|&s| self.counter(s)).collect();
        let (v, out) = self.run(pkt);
        assert_eq!(v, verdict, "verdict for outcome {}", outcome.name());
        for (i, &s) in Stat::ALL.iter().enumerate() {
            let moved = self.counter(s) - before[i];
            assert_eq!(
                moved,
                u64::from(s == outcome),
                "counter {} (expected {} to move)",
                s.name(),
                outcome.name()
            );
        }
        out
    }
}

fn relay_payload(dst: u32, flow: u32, hop_limit: u8) -> Vec<u8> {
    let mut h = RelayHeader::new(PacketKind::Data, 2, dst, flow, 42);
    h.hop_limit = hop_limit;
    let mut p = h.to_bytes().to_vec();
    p.extend_from_slice(b"relayed payload, 32 bytes long..");
    p
}

/// An Ethernet/IPv4/UDP frame built (with checksums) by etherparse.
fn v4(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    ttl: u8,
    ports: (u16, u16),
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(smac, dmac)
        .ipv4(src, dst, ttl)
        .udp(ports.0, ports.1)
        .write(&mut out, payload)
        .unwrap();
    out
}

fn v6(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: &str,
    dst: &str,
    hops: u8,
    ports: (u16, u16),
    payload: &[u8],
) -> Vec<u8> {
    let (s, d): (std::net::Ipv6Addr, std::net::Ipv6Addr) =
        (src.parse().unwrap(), dst.parse().unwrap());
    let mut out = Vec::new();
    PacketBuilder::ethernet2(smac, dmac)
        .ipv6(s.octets(), d.octets(), hops)
        .udp(ports.0, ports.1)
        .write(&mut out, payload)
        .unwrap();
    out
}

/// A relay packet from the peer 10.1.0.2 to us.
fn from_peer(f: &Fixture, dst: u32, flow: u32, hop_limit: u8) -> Vec<u8> {
    v4(
        PEER_MAC,
        f.in_mac,
        [10, 1, 0, 2],
        [10, 1, 0, 1],
        20,
        (40000, PORT),
        &relay_payload(dst, flow, hop_limit),
    )
}

fn fixture(name: &str) -> Option<Fixture> {
    if skip_privileged(name) {
        None
    } else {
        Some(Fixture::new())
    }
}

#[test]
fn ipv4_forward_same_link_is_xdp_tx_with_exact_rewrite() {
    let Some(mut f) = fixture("ipv4_forward_same_link") else {
        return;
    };
    let out = f.expect(&from_peer(&f, TX_V4, 1, 5), xdp::TX, Stat::Tx);
    let expected = v4(
        f.in_mac,
        SAME_LINK_MAC,
        [10, 1, 0, 1],
        [10, 1, 0, 3],
        64,
        (PORT, PORT),
        &relay_payload(TX_V4, 1, 4),
    );
    assert_eq!(out, expected);
}

#[test]
fn ipv4_forward_other_link_is_redirect_with_exact_rewrite() {
    let Some(mut f) = fixture("ipv4_forward_other_link") else {
        return;
    };
    let out = f.expect(
        &from_peer(&f, REDIRECT_V4, 1, 16),
        xdp::REDIRECT,
        Stat::Redirect,
    );
    let expected = v4(
        f.out_mac,
        OTHER_LINK_MAC,
        [10, 2, 0, 1],
        [10, 2, 0, 2],
        64,
        (PORT, PORT),
        &relay_payload(REDIRECT_V4, 1, 15),
    );
    assert_eq!(out, expected);
}

#[test]
fn ipv4_without_udp_checksum_stays_without() {
    let Some(mut f) = fixture("ipv4_without_udp_checksum") else {
        return;
    };
    let mut pkt = from_peer(&f, TX_V4, 1, 5);
    pkt[40..42].copy_from_slice(&[0, 0]);
    let out = f.expect(&pkt, xdp::TX, Stat::Tx);
    let mut expected = v4(
        f.in_mac,
        SAME_LINK_MAC,
        [10, 1, 0, 1],
        [10, 1, 0, 3],
        64,
        (PORT, PORT),
        &relay_payload(TX_V4, 1, 4),
    );
    expected[40..42].copy_from_slice(&[0, 0]);
    assert_eq!(out, expected);
}

#[test]
fn per_flow_override_wins_over_destination_route() {
    let Some(mut f) = fixture("per_flow_override") else {
        return;
    };
    let out = f.expect(
        &from_peer(&f, REDIRECT_V4, OVERRIDE_FLOW, 5),
        xdp::TX,
        Stat::Tx,
    );
    let expected = v4(
        f.in_mac,
        SAME_LINK_MAC,
        [10, 1, 0, 1],
        [10, 1, 0, 3],
        64,
        (PORT, PORT),
        &relay_payload(REDIRECT_V4, OVERRIDE_FLOW, 4),
    );
    assert_eq!(out, expected);
}

#[test]
fn vlan_tagged_forward_keeps_the_tag() {
    let Some(mut f) = fixture("vlan_tagged_forward") else {
        return;
    };
    let build = |smac, dmac, src, dst, ttl, ports: (u16, u16), payload: &[u8]| {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(smac, dmac)
            .single_vlan(VlanId::try_new(100).unwrap())
            .ipv4(src, dst, ttl)
            .udp(ports.0, ports.1)
            .write(&mut out, payload)
            .unwrap();
        out
    };
    let pkt = build(
        PEER_MAC,
        f.in_mac,
        [10, 1, 0, 2],
        [10, 1, 0, 1],
        20,
        (40000, PORT),
        &relay_payload(TX_V4, 1, 5),
    );
    let out = f.expect(&pkt, xdp::TX, Stat::Tx);
    let expected = build(
        f.in_mac,
        SAME_LINK_MAC,
        [10, 1, 0, 1],
        [10, 1, 0, 3],
        64,
        (PORT, PORT),
        &relay_payload(TX_V4, 1, 4),
    );
    assert_eq!(out, expected);
}

#[test]
fn ipv6_forward_tx_and_redirect_with_exact_rewrite() {
    let Some(mut f) = fixture("ipv6_forward") else {
        return;
    };
    let pkt = |dst| {
        v6(
            PEER_MAC,
            f.in_mac,
            "fd01::2",
            "fd01::1",
            20,
            (40000, PORT),
            &relay_payload(dst, 1, 9),
        )
    };
    let (tx_pkt, redirect_pkt) = (pkt(TX_V6), pkt(REDIRECT_V6));
    let out = f.expect(&tx_pkt, xdp::TX, Stat::Tx);
    assert_eq!(
        out,
        v6(
            f.in_mac,
            SAME_LINK_MAC,
            "fd01::1",
            "fd01::3",
            64,
            (PORT, PORT),
            &relay_payload(TX_V6, 1, 8)
        )
    );
    let out = f.expect(&redirect_pkt, xdp::REDIRECT, Stat::Redirect);
    assert_eq!(
        out,
        v6(
            f.out_mac,
            OTHER_LINK_MAC,
            "fd02::1",
            "fd02::2",
            64,
            (PORT, PORT),
            &relay_payload(REDIRECT_V6, 1, 8)
        )
    );
}

#[test]
fn local_slow_path_and_no_neighbour_go_to_the_stack_unchanged() {
    let Some(mut f) = fixture("local_slow_path_no_neighbour") else {
        return;
    };
    for (dst, stat) in [
        (ME, Stat::Local),
        (SLOW, Stat::SlowPath),
        (NO_NEIGH, Stat::NoNeighbour),
    ] {
        let pkt = from_peer(&f, dst, 1, 5);
        let out = f.expect(&pkt, xdp::PASS, stat);
        assert_eq!(out, pkt, "{} must not be rewritten", stat.name());
    }
}

#[test]
fn refused_packets_are_dropped_and_counted() {
    let Some(mut f) = fixture("refused_packets") else {
        return;
    };
    // Unknown destination, unreachable next hop, family mismatch, hop limit 0.
    f.expect(&from_peer(&f, UNKNOWN, 1, 5), xdp::DROP, Stat::DropNoRoute);
    f.expect(
        &from_peer(&f, UNREACHABLE, 1, 5),
        xdp::DROP,
        Stat::DropUnreachable,
    );
    f.expect(
        &from_peer(&f, FAMILY_MISMATCH, 1, 5),
        xdp::DROP,
        Stat::DropBadRoute,
    );
    f.expect(&from_peer(&f, TX_V4, 1, 0), xdp::DROP, Stat::DropHopLimit);
    // Hop limit 0 is still fine for local delivery.
    f.expect(&from_peer(&f, ME, 1, 0), xdp::PASS, Stat::Local);
    // A sender that is not a peer.
    let stranger = v4(
        PEER_MAC,
        f.in_mac,
        [10, 1, 0, 66],
        [10, 1, 0, 1],
        20,
        (40000, PORT),
        &relay_payload(TX_V4, 1, 5),
    );
    f.expect(&stranger, xdp::DROP, Stat::DropUnknownPeer);
}

#[test]
fn bad_headers_are_dropped_by_reason() {
    let Some(mut f) = fixture("bad_headers") else {
        return;
    };
    let with = |byte: usize, value: u8| {
        let mut p = relay_payload(TX_V4, 1, 5);
        p[byte] = value;
        v4(
            PEER_MAC,
            f.in_mac,
            [10, 1, 0, 2],
            [10, 1, 0, 1],
            20,
            (40000, PORT),
            &p,
        )
    };
    let (bad_version, bad_magic, bad_kind, bad_reserved) =
        (with(2, 7), with(0, b'X'), with(3, 99), with(6, 1));
    f.expect(&bad_version, xdp::DROP, Stat::DropBadVersion);
    f.expect(&bad_magic, xdp::DROP, Stat::DropBadMagic);
    f.expect(&bad_kind, xdp::DROP, Stat::DropBadHeader);
    f.expect(&bad_reserved, xdp::DROP, Stat::DropBadHeader);
    // IPv4 header length below 5 words.
    let mut bad_ihl = from_peer(&f, TX_V4, 1, 5);
    bad_ihl[14] = 0x44;
    f.expect(&bad_ihl, xdp::DROP, Stat::DropMalformed);
    // UDP length larger than the IP payload.
    let mut bad_len = from_peer(&f, TX_V4, 1, 5);
    bad_len[38..40].copy_from_slice(&2000u16.to_be_bytes());
    f.expect(&bad_len, xdp::DROP, Stat::DropMalformed);
}

#[test]
fn truncation_at_every_header_boundary_is_dropped() {
    let Some(mut f) = fixture("truncation") else {
        return;
    };
    let v4_pkt = from_peer(&f, TX_V4, 1, 5);
    let v6_pkt = v6(
        PEER_MAC,
        f.in_mac,
        "fd01::2",
        "fd01::1",
        20,
        (40000, PORT),
        &relay_payload(TX_V6, 1, 5),
    );
    // Ethernet end, inside IP, IP end, inside UDP, UDP end, inside relay header, relay
    // header end (payload missing).
    for (pkt, ip_len) in [(&v4_pkt, 20), (&v6_pkt, 40)] {
        let udp = 14 + ip_len;
        for cut in [
            14,
            14 + ip_len / 2,
            udp,
            udp + 4,
            udp + 8,
            udp + 8 + 12,
            udp + 8 + 24,
        ] {
            f.expect(&pkt[..cut], xdp::DROP, Stat::DropTruncated);
        }
    }
}

#[test]
fn non_relay_traffic_is_left_to_the_kernel() {
    let Some(mut f) = fixture("non_relay_traffic") else {
        return;
    };
    // UDP to another port.
    let dns = v4(
        PEER_MAC,
        f.in_mac,
        [10, 1, 0, 2],
        [10, 1, 0, 1],
        20,
        (40000, 53),
        b"not a relay packet",
    );
    f.expect(&dns, xdp::PASS, Stat::NotRelay);
    // TCP.
    let mut tcp = Vec::new();
    PacketBuilder::ethernet2(PEER_MAC, f.in_mac)
        .ipv4([10, 1, 0, 2], [10, 1, 0, 1], 20)
        .tcp(40000, PORT, 1, 1000)
        .write(&mut tcp, b"hello")
        .unwrap();
    f.expect(&tcp, xdp::PASS, Stat::NotRelay);
    // ARP.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&PEER_MAC);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    f.expect(&arp, xdp::PASS, Stat::NotRelay);
    // IPv4 fragment and IPv4 with options: the kernel reassembles / parses them.
    let mut frag = from_peer(&f, TX_V4, 1, 5);
    frag[20] = 0x20; // more fragments
    f.expect(&frag, xdp::PASS, Stat::Fragment);
    let mut opts = from_peer(&f, TX_V4, 1, 5);
    opts[14] = 0x46;
    f.expect(&opts, xdp::PASS, Stat::IpOptions);
}
