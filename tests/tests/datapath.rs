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
use wecan_transport::auth::link_keys;

fn fixture() -> Option<Fixture> {
    if skip_privileged() { None } else { Some(Fixture::new().unwrap()) }
}

#[test]
fn ipv4_forward_same_link_is_xdp_tx_with_exact_rewrite() {
    let Some(mut f) = fixture() else {
        return;
    };
    let pkt = f.from_peer(TX_V4, 1, 5);
    let out = f.expect(&pkt, xdp::TX, Stat::Tx);
    assert_eq!(out, v4_to_same_link(&f, &out, relay_payload(TX_V4, 1, 4)));
    // Each packet sent on a link has the next authentication sequence number.
    let seq =
        |out: &[u8]| u64::from_be_bytes(out[RELAY_V4 + 24..RELAY_V4 + 32].try_into().unwrap());
    let first = seq(&out);
    for next in first + 1..first + 4 {
        let pkt = f.from_peer(TX_V4, 1, 5);
        let out = f.expect(&pkt, xdp::TX, Stat::Tx);
        assert_eq!(seq(&out), next);
    }
}

#[test]
fn ipv4_forward_other_link_is_redirect_with_exact_rewrite() {
    let Some(mut f) = fixture() else {
        return;
    };
    let pkt = f.from_peer(REDIRECT_V4, 1, 16);
    let out = f.expect(&pkt, xdp::REDIRECT, Stat::Redirect);
    assert_eq!(out, v4_to_other_link(&f, &out, relay_payload(REDIRECT_V4, 1, 15)));
}

#[test]
fn ipv4_without_udp_checksum_stays_without() {
    let Some(mut f) = fixture() else {
        return;
    };
    let mut pkt = f.from_peer(TX_V4, 1, 5);
    pkt[40..42].copy_from_slice(&[0, 0]);
    let out = f.expect(&pkt, xdp::TX, Stat::Tx);
    let mut expected = v4_to_same_link(&f, &out, relay_payload(TX_V4, 1, 4));
    expected[40..42].copy_from_slice(&[0, 0]);
    assert_eq!(out, expected);
}

#[test]
fn per_flow_override_wins_over_destination_route() {
    let Some(mut f) = fixture() else {
        return;
    };
    let pkt = f.from_peer(REDIRECT_V4, OVERRIDE_FLOW, 5);
    let out = f.expect(&pkt, xdp::TX, Stat::Tx);
    assert_eq!(out, v4_to_same_link(&f, &out, relay_payload(REDIRECT_V4, OVERRIDE_FLOW, 4)));
}

#[test]
fn vlan_tagged_forward_keeps_the_tag() {
    let Some(mut f) = fixture() else {
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
    let mut payload = relay_payload(TX_V4, 1, 5);
    f.seal("10.1.0.2", &mut payload);
    let pkt = build(PEER_MAC, f.in_mac, [10, 1, 0, 2], [10, 1, 0, 1], 20, (40000, PORT), &payload);
    let out = f.expect(&pkt, xdp::TX, Stat::Tx);
    let sealed = Fixture::sealed_as(&out, RELAY_V4 + 4, "10.1.0.3", relay_payload(TX_V4, 1, 4));
    let expected =
        build(f.in_mac, SAME_LINK_MAC, [10, 1, 0, 1], [10, 1, 0, 3], 64, (PORT, PORT), &sealed);
    assert_eq!(out, expected);
}

#[test]
fn ipv6_forward_tx_and_redirect_with_exact_rewrite() {
    let Some(mut f) = fixture() else {
        return;
    };
    let mut pkt = |dst| {
        let mut p = relay_payload(dst, 1, 9);
        f.seal("fd01::2", &mut p);
        v6(PEER_MAC, f.in_mac, "fd01::2", "fd01::1", 20, (40000, PORT), &p)
    };
    let (tx_pkt, redirect_pkt) = (pkt(TX_V6), pkt(REDIRECT_V6));
    let out = f.expect(&tx_pkt, xdp::TX, Stat::Tx);
    let sealed = Fixture::sealed_as(&out, RELAY_V6, "fd01::3", relay_payload(TX_V6, 1, 8));
    let (m, s) = (f.in_mac, SAME_LINK_MAC);
    assert_eq!(out, v6(m, s, "fd01::1", "fd01::3", 64, (PORT, PORT), &sealed));
    let out = f.expect(&redirect_pkt, xdp::REDIRECT, Stat::Redirect);
    let sealed = Fixture::sealed_as(&out, RELAY_V6, "fd02::2", relay_payload(REDIRECT_V6, 1, 8));
    let (m, o) = (f.out_mac, OTHER_LINK_MAC);
    assert_eq!(out, v6(m, o, "fd02::1", "fd02::2", 64, (PORT, PORT), &sealed));
}

#[test]
fn local_slow_path_and_no_neighbour_go_to_the_stack_unchanged() {
    let Some(mut f) = fixture() else {
        return;
    };
    for (dst, stat) in [(ME, Stat::Local), (SLOW, Stat::SlowPath), (NO_NEIGH, Stat::NoNeighbour)] {
        let pkt = f.from_peer(dst, 1, 5);
        let out = f.expect(&pkt, xdp::PASS, stat);
        assert_eq!(out, pkt, "{} must not be rewritten", stat.name());
    }
}

#[test]
fn refused_packets_are_dropped_and_counted() {
    let Some(mut f) = fixture() else {
        return;
    };
    // Unknown destination, unreachable next hop, family mismatch, hop limit 0.
    // Unknown destination, unreachable next hop, family mismatch, hop limit 0, a next hop
    // that is not a peer (no key to seal with).
    for (dst, hops, stat) in [
        (UNKNOWN, 5, Stat::DropNoRoute),
        (UNREACHABLE, 5, Stat::DropUnreachable),
        (FAMILY_MISMATCH, 5, Stat::DropBadRoute),
        (TX_V4, 0, Stat::DropHopLimit),
        (NO_NEXT_KEY, 5, Stat::DropNoNextKey),
    ] {
        let pkt = f.from_peer(dst, 1, hops);
        f.expect(&pkt, xdp::DROP, stat);
    }
    // Hop limit 0 is still fine for local delivery.
    let pkt = f.from_peer(ME, 1, 0);
    f.expect(&pkt, xdp::PASS, Stat::Local);
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
    let Some(mut f) = fixture() else {
        return;
    };
    let in_mac = f.in_mac;
    let mut from_client = |src_node: u32| {
        let mut p = RelayHeader::new(PacketKind::Data, src_node, TX_V4, 1, 42).to_bytes().to_vec();
        p.extend_from_slice(b"client payload");
        f.seal("10.1.0.4", &mut p);
        let frame = v4(PEER_MAC, in_mac, [10, 1, 0, 4], [10, 1, 0, 1], 20, (40000, PORT), &p);
        (frame, p)
    };
    // Its own node ID is relayed (here back out of the same link)...
    let (frame, payload) = from_client(CLIENT);
    let spoofed: Vec<_> = [2, UNKNOWN, ME].map(|n| from_client(n).0).into();
    let out = f.expect(&frame, xdp::TX, Stat::Tx);
    let mut forwarded = payload;
    forwarded[5] -= 1;
    assert_eq!(out, v4_to_same_link(&f, &out, forwarded));
    // ...any other is dropped and counted, be it a relay's or a stranger's.
    for frame in spoofed {
        f.expect(&frame, xdp::DROP, Stat::DropSpoofedSource);
    }
}

#[test]
fn bad_headers_are_dropped_by_reason() {
    let Some(mut f) = fixture() else {
        return;
    };
    let mut with = |byte: usize, value: u8| {
        let mut p = relay_payload(TX_V4, 1, 5);
        p[byte] = value;
        f.seal("10.1.0.2", &mut p);
        v4(PEER_MAC, f.in_mac, [10, 1, 0, 2], [10, 1, 0, 1], 20, (40000, PORT), &p)
    };
    let (bad_version, bad_magic, bad_kind, bad_reserved) =
        (with(2, 7), with(0, b'X'), with(3, 99), with(7, 1));
    f.expect(&bad_version, xdp::DROP, Stat::DropBadVersion);
    f.expect(&bad_magic, xdp::DROP, Stat::DropBadMagic);
    f.expect(&bad_kind, xdp::DROP, Stat::DropBadHeader);
    f.expect(&bad_reserved, xdp::DROP, Stat::DropBadHeader);
    // IPv4 header length below 5 words.
    let mut bad_ihl = f.from_peer(TX_V4, 1, 5);
    bad_ihl[14] = 0x44;
    f.expect(&bad_ihl, xdp::DROP, Stat::DropMalformed);
    // UDP length larger than the IP payload.
    let mut bad_len = f.from_peer(TX_V4, 1, 5);
    bad_len[38..40].copy_from_slice(&2000u16.to_be_bytes());
    f.expect(&bad_len, xdp::DROP, Stat::DropMalformed);
}

#[test]
fn truncation_at_every_header_boundary_is_dropped() {
    let Some(mut f) = fixture() else {
        return;
    };
    let v4_pkt = f.from_peer(TX_V4, 1, 5);
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
        for cut in [14, 14 + ip_len / 2, udp, udp + 4, udp + 8, udp + 8 + 12, udp + 8 + 40] {
            f.expect(&pkt[..cut], xdp::DROP, Stat::DropTruncated);
        }
    }
}

#[test]
fn non_relay_traffic_is_left_to_the_kernel() {
    let Some(mut f) = fixture() else {
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
    let mut frag = f.from_peer(TX_V4, 1, 5);
    frag[20] = 0x20; // more fragments
    f.expect(&frag, xdp::PASS, Stat::Fragment);
    let mut opts = f.from_peer(TX_V4, 1, 5);
    opts[14] = 0x46;
    f.expect(&opts, xdp::PASS, Stat::IpOptions);
}

/// FIB lookups are reused per next hop and CPU for `fib_cache_ms`: while fresh, a neighbour
/// change is not seen (the cache answers); a packet longer than any the lookup passed is
/// looked up afresh (its MTU check); with the cache off, every packet is looked up.
#[test]
fn fib_lookups_are_cached_per_next_hop() {
    let Some(mut f) = fixture() else {
        return;
    };
    pin_to_cpu(0);
    f.set_fib_cache_ms(60_000).unwrap();
    let moved = [2, 0, 0, 0, 1, 0x33];
    let neigh =
        |mac| ["neigh", "replace", "10.1.0.3", "lladdr", mac, "dev", "in0", "nud", "permanent"];
    let sized = |f: &mut Fixture, ip_len: usize| {
        let mut p = relay_payload(TX_V4, 1, 5);
        p.resize(ip_len - 28, 0);
        f.seal("10.1.0.2", &mut p);
        v4(PEER_MAC, f.in_mac, [10, 1, 0, 2], [10, 1, 0, 1], 20, (40000, PORT), &p)
    };
    let tx = |f: &mut Fixture, pkt: Vec<u8>| f.expect(&pkt, xdp::TX, Stat::Tx)[..6].to_vec();
    let small = |f: &mut Fixture| f.from_peer(TX_V4, 1, 5);

    let p = small(&mut f);
    assert_eq!(tx(&mut f, p), SAME_LINK_MAC);
    f.ip(&neigh("02:00:00:00:01:33")).unwrap();
    let p = small(&mut f);
    assert_eq!(tx(&mut f, p), SAME_LINK_MAC, "cached");
    let p = sized(&mut f, 1600);
    f.expect(&p, xdp::DROP, Stat::DropMtu);
    let p = sized(&mut f, 1000);
    assert_eq!(tx(&mut f, p), moved, "longer: looked up");
    let p = small(&mut f);
    assert_eq!(tx(&mut f, p), moved, "and that result cached");

    f.ip(&neigh("02:00:00:00:01:03")).unwrap();
    f.set_fib_cache_ms(0).unwrap();
    let p = small(&mut f);
    assert_eq!(tx(&mut f, p), SAME_LINK_MAC, "cache off");
}

/// A packet from a keyed peer passes only with a tag of one of that link's keys over its
/// exact header, once: everything else is dropped by reason, cheapest check first, and the
/// valid packets beside them are forwarded.
#[test]
fn unauthenticated_packets_are_dropped_by_reason() {
    let Some(mut f) = fixture() else {
        return;
    };
    let frame = |f: &Fixture, p: &[u8]| {
        v4(PEER_MAC, f.in_mac, [10, 1, 0, 2], [10, 1, 0, 1], 20, (40000, PORT), p)
    };
    // Untagged (a spoofer without the key), or tagged with a key ID the link does not have.
    let untagged = frame(&f, &relay_payload(TX_V4, 1, 5));
    f.expect(&untagged, xdp::DROP, Stat::DropUntagged);
    let mut p = relay_payload(TX_V4, 1, 5);
    f.seal("10.1.0.2", &mut p);
    p[6] = 7;
    f.expect(&frame(&f, &p), xdp::DROP, Stat::DropUnknownKey);
    // A guessed tag, another link's key, and a valid packet altered on the way.
    let mut guessed = relay_payload(TX_V4, 1, 5);
    f.seal("10.1.0.2", &mut guessed);
    guessed[32] ^= 0x80;
    f.expect(&frame(&f, &guessed), xdp::DROP, Stat::DropBadTag);
    let mut other_link = relay_payload(TX_V4, 1, 5);
    f.seal("10.1.0.4", &mut other_link);
    f.expect(&frame(&f, &other_link), xdp::DROP, Stat::DropBadTag);
    for at in [3, 4, 5, 8, 12, 16, 20, 24, 31] {
        let mut altered = relay_payload(TX_V4, 1, 5);
        f.seal("10.1.0.2", &mut altered);
        altered[at] ^= 1;
        let out = f.run(&frame(&f, &altered));
        assert_eq!(out.0, xdp::DROP, "byte {at} altered");
    }
    // A valid packet is forwarded once; its replays are dropped, from any lane.
    let valid = f.from_peer(TX_V4, 1, 5);
    f.expect(&valid, xdp::TX, Stat::Tx);
    for _ in 0..3 {
        f.expect(&valid, xdp::DROP, Stat::DropReplay);
    }
    // Reordering within the window is fine; older than the window is a replay.
    let batch: Vec<Vec<u8>> = (0..300).map(|_| f.from_peer(TX_V4, 1, 5)).collect();
    for p in batch[1..].iter().rev().take(200) {
        f.expect(p, xdp::TX, Stat::Tx);
    }
    f.expect(&batch[0], xdp::DROP, Stat::DropReplay);
}

/// Keys rotate without loss: a new key is accepted beside the current one before any sender
/// uses it; the relay seals with whichever key its entry for the next hop says; a retired
/// key is refused.
#[test]
fn keys_rotate_without_loss() {
    let Some(mut f) = fixture() else {
        return;
    };
    let frame = |f: &Fixture, p: &[u8]| {
        v4(PEER_MAC, f.in_mac, [10, 1, 0, 2], [10, 1, 0, 1], 20, (40000, PORT), p)
    };
    let sealed = |f: &mut Fixture, id: u8| {
        let mut p = relay_payload(TX_V4, 1, 5);
        f.seal_with("10.1.0.2", id, &mut p);
        frame(f, &p)
    };
    // Step 1 at this relay: accept the peer's new key 2 beside key 1.
    let mut v = f.relay.maps.peer(ip("10.1.0.2")).unwrap();
    v.keys[1] = link_keys(&secret("10.1.0.2", 2), 2, ME, 2);
    f.relay.maps.add_peer(ip("10.1.0.2"), v).unwrap();
    for id in [1, 2, 1, 2] {
        let p = sealed(&mut f, id);
        f.expect(&p, xdp::TX, Stat::Tx);
    }
    // Step 2 toward the next hop 10.1.0.3: its key 2 installed, then sent with.
    let mut next = f.relay.maps.peer(ip("10.1.0.3")).unwrap();
    next.keys[1] = link_keys(&secret("10.1.0.3", 2), 2, ME, NEXT);
    f.relay.maps.add_peer(ip("10.1.0.3"), next).unwrap();
    let p = sealed(&mut f, 2);
    let out = f.expect(&p, xdp::TX, Stat::Tx);
    assert_eq!(out[RELAY_V4 + 6], 1, "still sending with key 1");
    next.send = 1;
    f.relay.maps.add_peer(ip("10.1.0.3"), next).unwrap();
    let p = sealed(&mut f, 2);
    let out = f.expect(&p, xdp::TX, Stat::Tx);
    let expected = Fixture::sealed_with(&out, RELAY_V4, "10.1.0.3", 2, relay_payload(TX_V4, 1, 4));
    assert_eq!(out[RELAY_V4..], expected[..]);
    // Step 3: key 1 retired (its slot takes the next key, 3): refused from then on.
    v.keys[0] = link_keys(&secret("10.1.0.2", 3), 3, ME, 2);
    f.relay.maps.add_peer(ip("10.1.0.2"), v).unwrap();
    let p = sealed(&mut f, 1);
    f.expect(&p, xdp::DROP, Stat::DropUnknownKey);
    for id in [2, 3] {
        let p = sealed(&mut f, id);
        f.expect(&p, xdp::TX, Stat::Tx);
    }
}

/// A link configured without authentication takes untagged packets and sends untagged.
#[test]
fn unauthenticated_links_pass_untagged() {
    let Some(mut f) = fixture() else {
        return;
    };
    for addr in ["10.1.0.2", "10.1.0.3"] {
        let mut v = f.relay.maps.peer(ip(addr)).unwrap();
        v.flags = wecan_common::maps::peer_flags::NO_AUTH;
        f.relay.maps.add_peer(ip(addr), v).unwrap();
    }
    let p = relay_payload(TX_V4, 1, 5);
    let pkt = v4(PEER_MAC, f.in_mac, [10, 1, 0, 2], [10, 1, 0, 1], 20, (40000, PORT), &p);
    let out = f.expect(&pkt, xdp::TX, Stat::Tx);
    let expected = relay_payload(TX_V4, 1, 4);
    assert_eq!(
        out,
        v4(f.in_mac, SAME_LINK_MAC, [10, 1, 0, 1], [10, 1, 0, 3], 64, (PORT, PORT), &expected)
    );
    // The same packet again is not a replay on such a link: nothing is checked.
    f.expect(&pkt, xdp::TX, Stat::Tx);
}
