//! Golden-packet tests of the real relay XDP object through BPF_PROG_TEST_RUN (aya
//! `TestRun`), Katran-style: for each case an input packet, the expected verdict, the exact
//! expected output bytes for rewrites (checksums computed independently by `etherparse`),
//! and the counter that must move.
//!
//! Each test runs in its own network namespace with real routes and neighbours
//! (`wecan_tests::golden::Fixture`).

use etherparse::{PacketBuilder, VlanId};
use wecan_common::{
    stats::{Stat, xdp},
    wire::{PacketKind, RelayHeader},
};
use wecan_tests::{golden::*, net::pin_to_cpu, skip_privileged};

fn fixture(name: &str) -> Option<Fixture> {
    if skip_privileged(name) { None } else { Some(Fixture::new().unwrap()) }
}

#[test]
fn ipv4_forward_same_link_is_xdp_tx_with_exact_rewrite() {
    let Some(mut f) = fixture("ipv4_forward_same_link") else {
        return;
    };
    let out = f.expect(&from_peer(&f, TX_V4, 1, 5), xdp::TX, Stat::Tx);
    let expected = v4_to_same_link(&f, &relay_payload(TX_V4, 1, 4));
    assert_eq!(out, expected);
}

#[test]
fn ipv4_forward_other_link_is_redirect_with_exact_rewrite() {
    let Some(mut f) = fixture("ipv4_forward_other_link") else {
        return;
    };
    let out = f.expect(&from_peer(&f, REDIRECT_V4, 1, 16), xdp::REDIRECT, Stat::Redirect);
    let expected = v4_to_other_link(&f, &relay_payload(REDIRECT_V4, 1, 15));
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
    let mut expected = v4_to_same_link(&f, &relay_payload(TX_V4, 1, 4));
    expected[40..42].copy_from_slice(&[0, 0]);
    assert_eq!(out, expected);
}

#[test]
fn per_flow_override_wins_over_destination_route() {
    let Some(mut f) = fixture("per_flow_override") else {
        return;
    };
    let out = f.expect(&from_peer(&f, REDIRECT_V4, OVERRIDE_FLOW, 5), xdp::TX, Stat::Tx);
    let expected = v4_to_same_link(&f, &relay_payload(REDIRECT_V4, OVERRIDE_FLOW, 4));
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
        v6(PEER_MAC, f.in_mac, "fd01::2", "fd01::1", 20, (40000, PORT), &relay_payload(dst, 1, 9))
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
    for (dst, stat) in [(ME, Stat::Local), (SLOW, Stat::SlowPath), (NO_NEIGH, Stat::NoNeighbour)] {
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
    f.expect(&from_peer(&f, UNREACHABLE, 1, 5), xdp::DROP, Stat::DropUnreachable);
    f.expect(&from_peer(&f, FAMILY_MISMATCH, 1, 5), xdp::DROP, Stat::DropBadRoute);
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
fn a_client_speaks_only_for_itself() {
    let Some(mut f) = fixture("client_source") else {
        return;
    };
    let in_mac = f.in_mac;
    let from_client = |src_node: u32| {
        let mut p = RelayHeader::new(PacketKind::Data, src_node, TX_V4, 1, 42).to_bytes().to_vec();
        p.extend_from_slice(b"client payload");
        let frame = v4(PEER_MAC, in_mac, [10, 1, 0, 4], [10, 1, 0, 1], 20, (40000, PORT), &p);
        (frame, p)
    };
    // Its own node ID is relayed (here back out of the same link)...
    let (frame, payload) = from_client(CLIENT);
    let out = f.expect(&frame, xdp::TX, Stat::Tx);
    let mut forwarded = payload;
    forwarded[5] -= 1;
    assert_eq!(out, v4_to_same_link(&f, &forwarded));
    // ...any other is dropped and counted, be it a relay's or a stranger's.
    for claimed in [2, UNKNOWN, ME] {
        f.expect(&from_client(claimed).0, xdp::DROP, Stat::DropSpoofedSource);
    }
}

#[test]
fn bad_headers_are_dropped_by_reason() {
    let Some(mut f) = fixture("bad_headers") else {
        return;
    };
    let with = |byte: usize, value: u8| {
        let mut p = relay_payload(TX_V4, 1, 5);
        p[byte] = value;
        v4(PEER_MAC, f.in_mac, [10, 1, 0, 2], [10, 1, 0, 1], 20, (40000, PORT), &p)
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
        for cut in [14, 14 + ip_len / 2, udp, udp + 4, udp + 8, udp + 8 + 12, udp + 8 + 24] {
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

/// FIB lookups are reused per next hop and CPU for `fib_cache_ms`: while fresh, a neighbour
/// change is not seen (the cache answers); a packet longer than any the lookup passed is
/// looked up afresh (its MTU check); with the cache off, every packet is looked up.
#[test]
fn fib_lookups_are_cached_per_next_hop() {
    let Some(mut f) = fixture("fib_cache") else {
        return;
    };
    pin_to_cpu(0);
    f.set_fib_cache_ms(60_000).unwrap();
    let moved = [2, 0, 0, 0, 1, 0x33];
    let neigh =
        |mac| ["neigh", "replace", "10.1.0.3", "lladdr", mac, "dev", "in0", "nud", "permanent"];
    let in_mac = f.in_mac;
    let sized = |ip_len: usize| {
        let mut p = relay_payload(TX_V4, 1, 5);
        p.resize(ip_len - 28, 0);
        v4(PEER_MAC, in_mac, [10, 1, 0, 2], [10, 1, 0, 1], 20, (40000, PORT), &p)
    };
    let small = from_peer(&f, TX_V4, 1, 5);

    assert_eq!(f.expect(&small, xdp::TX, Stat::Tx)[..6], SAME_LINK_MAC);
    f.ip(&neigh("02:00:00:00:01:33")).unwrap();
    assert_eq!(f.expect(&small, xdp::TX, Stat::Tx)[..6], SAME_LINK_MAC, "cached");
    f.expect(&sized(1600), xdp::DROP, Stat::DropMtu);
    assert_eq!(f.expect(&sized(1000), xdp::TX, Stat::Tx)[..6], moved, "longer: looked up");
    assert_eq!(f.expect(&small, xdp::TX, Stat::Tx)[..6], moved, "and that result cached");

    f.ip(&neigh("02:00:00:00:01:03")).unwrap();
    f.set_fib_cache_ms(0).unwrap();
    assert_eq!(f.expect(&small, xdp::TX, Stat::Tx)[..6], SAME_LINK_MAC, "cache off");
}
