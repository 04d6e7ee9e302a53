//! Golden-packet tests of the real relay XDP object through BPF_PROG_TEST_RUN (aya
//! `TestRun`), Katran-style: for each case an input packet, the expected verdict, the exact
//! expected output bytes for rewrites (checksums computed independently by `etherparse`),
//! and the counter that must move.
//!
//! Each test runs in its own network namespace with real routes and neighbours
//! (`wecan_tests::golden::Fixture`).

use std::{net::IpAddr, time::Duration};

use etherparse::{PacketBuilder, VlanId};
use wecan_common::{
    auth::LANE_AGENT,
    maps::FIB_CACHE_SLOTS,
    stats::{Stat, xdp},
    wire::{PacketKind, ProbeBody, RelayHeader},
};
use wecan_datapath::maps::addr_bytes;
use wecan_tests::{golden::*, net::pin_to_cpu, skip_privileged};
use wecan_transport::auth::{self, link_keys};

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
fn a_relay_whose_agent_died_answers_no_probe() {
    let Some(mut f) = fixture() else {
        return;
    };
    let probe = |f: &mut Fixture| {
        let mut p = RelayHeader::new(PacketKind::Probe, 2, ME, 0, 7).to_bytes().to_vec();
        p.extend_from_slice(&ProbeBody { sent_ns: 1 }.to_bytes());
        f.seal("10.1.0.2", &mut p);
        v4(PEER_MAC, f.in_mac, [10, 1, 0, 2], [10, 1, 0, 1], 20, (40000, PORT), &p)
    };
    let p = probe(&mut f);
    f.expect(&p, xdp::TX, Stat::ProbeReply);
    f.set_agent_alive(false).unwrap();
    let p = probe(&mut f);
    f.expect(&p, xdp::DROP, Stat::DropAgentDown);
    // Forwarding in XDP needs no agent; packets for it still go up (it may be merely late).
    let pkt = f.from_peer(TX_V4, 1, 5);
    f.expect(&pkt, xdp::TX, Stat::Tx);
    let pkt = f.from_peer(SLOW, 1, 5);
    f.expect(&pkt, xdp::PASS, Stat::SlowPath);
    f.set_agent_alive(true).unwrap();
    let p = probe(&mut f);
    f.expect(&p, xdp::TX, Stat::ProbeReply);
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

/// A probe for this relay from a keyed peer is answered in XDP (XDP_TX) with exactly the
/// frame the peer expects: MACs, addresses, ports and nodes swapped, kind probe reply, hop
/// limit, flow, sequence number and body (the prober's timestamp) unchanged, checksums as
/// etherparse computes them for that frame, sealed for the way back with the key of the
/// peer's link in the datapath's lane, and accepted by the peer's own verifier.
#[test]
fn probes_are_answered_in_xdp_with_exact_bytes() {
    let Some(mut f) = fixture() else {
        return;
    };
    let relay = |kind, src, dst| {
        let mut h = RelayHeader::new(kind, src, dst, 0, 77);
        h.hop_limit = 1;
        let mut p = h.to_bytes().to_vec();
        p.extend_from_slice(&ProbeBody { sent_ns: 1_764_000_123_456_789 }.to_bytes());
        p
    };
    let check_seal = |out: &[u8], at: usize, peer: &str| {
        let view = Fixture::view_of_me(peer, 2, 1);
        assert_eq!(auth::verify(&out[at..], &view, &auth::Windows::default()), Ok(()));
        let seq = u64::from_be_bytes(out[at + 24..at + 32].try_into().unwrap());
        assert_eq!(seq & LANE_AGENT, 0, "sealed in the datapath's lane, not the probe's");
    };

    let mut probe = relay(PacketKind::Probe, 2, ME);
    f.seal("10.1.0.2", &mut probe);
    let pkt = v4(PEER_MAC, f.in_mac, [10, 1, 0, 2], [10, 1, 0, 1], 20, (40000, PORT), &probe);
    let out = f.expect(&pkt, xdp::TX, Stat::ProbeReply);
    check_seal(&out, RELAY_V4, "10.1.0.2");
    let reply =
        Fixture::sealed_as(&out, RELAY_V4, "10.1.0.2", relay(PacketKind::ProbeReply, ME, 2));
    let expected = v4(f.in_mac, PEER_MAC, [10, 1, 0, 1], [10, 1, 0, 2], 20, (PORT, 40000), &reply);
    assert_eq!(out, expected);

    let mut probe = relay(PacketKind::Probe, 2, ME);
    f.seal("fd01::2", &mut probe);
    let pkt = v6(PEER_MAC, f.in_mac, "fd01::2", "fd01::1", 20, (40000, PORT), &probe);
    let out = f.expect(&pkt, xdp::TX, Stat::ProbeReply);
    check_seal(&out, RELAY_V6, "fd01::2");
    let reply = Fixture::sealed_as(&out, RELAY_V6, "fd01::2", relay(PacketKind::ProbeReply, ME, 2));
    assert_eq!(out, v6(f.in_mac, PEER_MAC, "fd01::1", "fd01::2", 20, (PORT, 40000), &reply));
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

/// The FIB cache slot of a next hop: its address bytes folded exactly as `fib_slot` in
/// `xdp-prog/src/forward.rs` folds them.
fn fib_slot(addr: IpAddr) -> u32 {
    let (_, bytes) = addr_bytes(addr);
    let w: Vec<u32> = bytes.chunks(4).map(|c| u32::from_ne_bytes(c.try_into().unwrap())).collect();
    let x = w[0] ^ w[1] ^ w[2] ^ w[3];
    (x ^ (x >> 8) ^ (x >> 16) ^ (x >> 24)) & (FIB_CACHE_SLOTS - 1)
}

/// Gives the neighbour `addr` on in0 the MAC `mac`.
fn set_neighbour(f: &Fixture, addr: &str, mac: &str) {
    f.ip(&["neigh", "replace", addr, "lladdr", mac, "dev", "in0", "nud", "permanent"]).unwrap();
}

/// The destination MAC a packet to `dst`, forwarded on the link it came in on, leaves with.
fn tx_dmac(f: &mut Fixture, dst: u32) -> [u8; 6] {
    let pkt = f.from_peer(dst, 1, 5);
    f.expect(&pkt, xdp::TX, Stat::Tx)[..6].try_into().unwrap()
}

/// A cached lookup is reused while younger than the configured `fib_cache_ms` and looked up
/// afresh once older. Each check leaves a busy machine no way to fail it falsely: the entry
/// must still be used 300 ms on under a 10 s lifetime, and must be gone 300 ms on under a
/// 100 ms one (a delay only ages it further). Together they bound the lifetime applied
/// between 100 ms and 10 s for those settings, so a unit slip either way shows.
#[test]
fn fib_cache_entries_expire_at_the_configured_lifetime() {
    let Some(mut f) = fixture() else {
        return;
    };
    // The cache is per CPU: every run on the same one.
    pin_to_cpu(0);
    let wait = || std::thread::sleep(Duration::from_millis(300));
    f.set_fib_cache_ms(10_000).unwrap();
    assert_eq!(tx_dmac(&mut f, TX_V4), SAME_LINK_MAC);
    set_neighbour(&f, "10.1.0.3", "02:00:00:00:01:33");
    wait();
    assert_eq!(tx_dmac(&mut f, TX_V4), SAME_LINK_MAC, "within 10 s: the cached MAC");

    f.set_fib_cache_ms(100).unwrap();
    wait();
    assert_eq!(tx_dmac(&mut f, TX_V4), [2, 0, 0, 0, 1, 0x33], "older than 100 ms: looked up");
    // An entry made under the 100 ms lifetime expires with time alone.
    set_neighbour(&f, "10.1.0.3", "02:00:00:00:01:03");
    wait();
    assert_eq!(tx_dmac(&mut f, TX_V4), SAME_LINK_MAC, "100 ms on: looked up again");
}

/// Next hops that share a cache slot (10.1.0.5 on in0 and 10.2.0.6 on out0, whose address
/// bytes fold to the same slot) each leave with their own egress, exactly as without a
/// cache, however their packets interleave.
#[test]
fn next_hops_sharing_a_fib_cache_slot_keep_their_own_egress() {
    let Some(mut f) = fixture() else {
        return;
    };
    pin_to_cpu(0);
    assert_eq!(fib_slot(ip("10.1.0.5")), fib_slot(ip("10.2.0.6")), "the next hops collide");
    f.set_fib_cache_ms(10_000).unwrap();
    let to_same_link = |f: &Fixture, out: &[u8]| {
        let payload = Fixture::sealed_as(out, RELAY_V4, "10.1.0.5", relay_payload(SLOT_TX, 1, 4));
        let mac = [2, 0, 0, 0, 1, 5];
        v4(f.in_mac, mac, [10, 1, 0, 1], [10, 1, 0, 5], 64, (PORT, PORT), &payload)
    };
    let redirect = |f: &mut Fixture| {
        let pkt = f.from_peer(SLOT_REDIRECT, 1, 5);
        let out = f.expect(&pkt, xdp::REDIRECT, Stat::Redirect);
        let payload =
            Fixture::sealed_as(&out, RELAY_V4, "10.2.0.6", relay_payload(SLOT_REDIRECT, 1, 4));
        let mac = [2, 0, 0, 0, 2, 6];
        assert_eq!(
            out,
            v4(f.out_mac, mac, [10, 2, 0, 1], [10, 2, 0, 6], 64, (PORT, PORT), &payload)
        );
    };
    for _ in 0..3 {
        let pkt = f.from_peer(SLOT_TX, 1, 5);
        let out = f.expect(&pkt, xdp::TX, Stat::Tx);
        assert_eq!(out, to_same_link(&f, &out));
        redirect(&mut f);
    }
    // The slot really is shared: 10.1.0.5's entry is used until a packet to 10.2.0.6 takes
    // the slot, after which 10.1.0.5 is looked up afresh (a neighbour change shows at once,
    // well within the 10 s lifetime).
    assert_eq!(tx_dmac(&mut f, SLOT_TX), [2, 0, 0, 0, 1, 5]);
    set_neighbour(&f, "10.1.0.5", "02:00:00:00:01:55");
    assert_eq!(tx_dmac(&mut f, SLOT_TX), [2, 0, 0, 0, 1, 5], "cached");
    redirect(&mut f);
    assert_eq!(tx_dmac(&mut f, SLOT_TX), [2, 0, 0, 0, 1, 0x55], "evicted: looked up afresh");
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

/// A frame from `from:port` (not a peer address) sealed as client `src_node`.
fn client_frame(
    f: &mut Fixture,
    from: [u8; 4],
    port: u16,
    src_node: u32,
    dst: u32,
    kind: PacketKind,
) -> Vec<u8> {
    let mut p = RelayHeader::new(kind, src_node, dst, 1, 42).to_bytes().to_vec();
    p.extend_from_slice(b"client payload");
    f.seal_as_client(src_node, &mut p);
    v4(PEER_MAC, f.in_mac, from, [10, 1, 0, 1], 20, (port, PORT), &p)
}

/// Where the edge sends packets for client `addr` now.
fn client_route(f: &Fixture, addr: u32) -> (IpAddr, u16, IpAddr) {
    let c = f.relay.maps.client(addr).expect("attached");
    let r = c.route;
    let at = |b: &[u8; 16]| IpAddr::from([b[0], b[1], b[2], b[3]]);
    (at(&r.next_addr), r.next_port, at(&r.src_addr))
}

/// A client attached through the gateway is admitted by the address it claims, which its
/// tag proves; its return address follows its last authenticated packet (NAT rebinding),
/// and neither a replay nor a forgery from elsewhere can move it.
#[test]
fn an_attached_client_is_admitted_by_its_claim_and_followed_when_it_moves() {
    let Some(mut f) = fixture() else {
        return;
    };
    let alice = f.attach_client(5, "10.1.0.1", 1).unwrap();
    let first = client_frame(&mut f, [10, 1, 0, 77], 40000, alice, TX_V4, PacketKind::Data);
    f.expect(&first, xdp::TX, Stat::Tx);
    assert_eq!(client_route(&f, alice), (ip("10.1.0.77"), 40000, ip("10.1.0.1")));
    assert!(f.relay.maps.client(alice).unwrap().last_seen_ns > 0, "seen");
    // Behind a NAT that rebound: a new address and port.
    let moved = client_frame(&mut f, [10, 1, 0, 78], 41000, alice, TX_V4, PacketKind::Data);
    f.expect(&moved, xdp::TX, Stat::Tx);
    assert_eq!(client_route(&f, alice), (ip("10.1.0.78"), 41000, ip("10.1.0.1")));
    // The first packet replayed from a third address: refused, and the client stays.
    let replay = v4(
        PEER_MAC,
        f.in_mac,
        [10, 1, 0, 79],
        [10, 1, 0, 1],
        20,
        (40000, PORT),
        &first[RELAY_V4..],
    );
    f.expect(&replay, xdp::DROP, Stat::DropReplay);
    // Sealed with another client's key, claiming alice.
    let bob = f.attach_client(6, "10.1.0.1", 1).unwrap();
    let mut forged = RelayHeader::new(PacketKind::Data, alice, TX_V4, 1, 43).to_bytes().to_vec();
    f.seal_as_client(bob, &mut forged);
    let forged = v4(PEER_MAC, f.in_mac, [10, 1, 0, 80], [10, 1, 0, 1], 20, (40000, PORT), &forged);
    f.expect(&forged, xdp::DROP, Stat::DropBadTag);
    assert_eq!(client_route(&f, alice), (ip("10.1.0.78"), 41000, ip("10.1.0.1")));
    // Bob under his own address is bob; a slot nobody holds is a stranger.
    let bobs = client_frame(&mut f, [10, 1, 0, 80], 40000, bob, TX_V4, PacketKind::Data);
    f.expect(&bobs, xdp::TX, Stat::Tx);
    let nobody = wecan_common::wire::overlay::client(ME, 9).unwrap();
    let stranger = client_frame(&mut f, [10, 1, 0, 81], 40000, nobody, TX_V4, PacketKind::Data);
    f.expect(&stranger, xdp::DROP, Stat::DropUnknownPeer);
    // Probes from an attached client are its keepalives: answered in XDP.
    let probe = client_frame(&mut f, [10, 1, 0, 78], 41000, alice, ME, PacketKind::Probe);
    f.expect(&probe, xdp::TX, Stat::ProbeReply);
}

/// Packets for a client address go to the client where this edge holds it, sealed with
/// its key; for another edge's client, along the route to that edge. No per-client route
/// exists anywhere.
#[test]
fn packets_for_a_client_go_to_it_or_toward_its_edge() {
    let Some(mut f) = fixture() else {
        return;
    };
    let alice = f.attach_client(5, "10.1.0.1", 1).unwrap();
    let hello = client_frame(&mut f, [10, 1, 0, 77], 40000, alice, TX_V4, PacketKind::Data);
    f.expect(&hello, xdp::TX, Stat::Tx);
    f.ip(&[
        "neigh",
        "add",
        "10.1.0.77",
        "lladdr",
        "02:00:00:00:01:77",
        "dev",
        "in0",
        "nud",
        "permanent",
    ])
    .unwrap();
    let pkt = f.from_peer(alice, 1, 5);
    let out = f.expect(&pkt, xdp::TX, Stat::Tx);
    // What alice verifies the edge's packets with.
    let mut view = wecan_common::maps::PeerValue::new(ME, wecan_common::maps::PeerKind::Relay);
    view.keys[0] = link_keys(&client_secret(alice), 1, alice, ME);
    assert_eq!(auth::verify(&out[RELAY_V4..], &view, &auth::Windows::default()), Ok(()));
    let mut payload = relay_payload(alice, 1, 4);
    payload[6] = out[RELAY_V4 + 6];
    payload[24..40].copy_from_slice(&out[RELAY_V4 + 24..RELAY_V4 + 40]);
    let expected = v4(
        f.in_mac,
        [2, 0, 0, 0, 1, 0x77],
        [10, 1, 0, 1],
        [10, 1, 0, 77],
        64,
        (PORT, 40000),
        &payload,
    );
    assert_eq!(out, expected);
    // A slot of this edge nobody holds.
    let gone = wecan_common::wire::overlay::client(ME, 9).unwrap();
    let pkt = f.from_peer(gone, 1, 5);
    f.expect(&pkt, xdp::DROP, Stat::DropNoRoute);
    // A client of edge TX_V4's: along the route to that edge (XDP_TX to 10.1.0.3).
    let elsewhere = wecan_common::wire::overlay::client(TX_V4, 1).unwrap();
    let pkt = f.from_peer(elsewhere, 1, 5);
    let out = f.expect(&pkt, xdp::TX, Stat::Tx);
    assert_eq!(out, v4_to_same_link(&f, &out, relay_payload(elsewhere, 1, 4)));
    // A client of an edge this relay has no route to.
    let lost = wecan_common::wire::overlay::client(UNKNOWN, 1).unwrap();
    let pkt = f.from_peer(lost, 1, 5);
    f.expect(&pkt, xdp::DROP, Stat::DropNoRoute);
}

/// Registrations from senders the relay does not know reach the agent only on an edge, and
/// their probes are answered, only within each source's rate; anything else from them stays
/// dropped.
#[test]
fn registrations_from_strangers_are_rate_limited_per_source() {
    let Some(mut f) = fixture() else {
        return;
    };
    let register = |f: &Fixture, from: [u8; 4]| {
        let mut p = RelayHeader::new(PacketKind::Control, 0, ME, 0, 0).to_bytes().to_vec();
        p.extend_from_slice(&[1, 2, 3]);
        v4(PEER_MAC, f.in_mac, from, [10, 1, 0, 1], 20, (40000, PORT), &p)
    };
    // Not an edge: a stranger like any other.
    let pkt = register(&f, [10, 1, 0, 90]);
    f.expect(&pkt, xdp::DROP, Stat::DropUnknownPeer);
    // One a second, three more at once: the first four pass, then none.
    f.set_gateway(1, 3).unwrap();
    for _ in 0..4 {
        f.expect(&pkt, xdp::PASS, Stat::Gateway);
    }
    for _ in 0..50 {
        f.expect(&pkt, xdp::DROP, Stat::DropRateLimited);
    }
    // Another source has its own allowance.
    let other = register(&f, [10, 1, 0, 91]);
    f.expect(&other, xdp::PASS, Stat::Gateway);
    // A stranger's probe (a client measuring candidate edges) is answered untagged, within
    // the same allowance, and only while the agent lives.
    let mut p = RelayHeader::new(PacketKind::Probe, 0, ME, 0, 9).to_bytes().to_vec();
    p.extend_from_slice(&ProbeBody { sent_ns: 77 }.to_bytes());
    let probe = v4(PEER_MAC, f.in_mac, [10, 1, 0, 93], [10, 1, 0, 1], 20, (40001, PORT), &p);
    let out = f.expect(&probe, xdp::TX, Stat::ProbeReplyOpen);
    let mut reply = RelayHeader::new(PacketKind::ProbeReply, ME, 0, 0, 9).to_bytes().to_vec();
    reply.extend_from_slice(&ProbeBody { sent_ns: 77 }.to_bytes());
    let expected = v4(f.in_mac, PEER_MAC, [10, 1, 0, 1], [10, 1, 0, 93], 20, (PORT, 40001), &reply);
    assert_eq!(out, expected, "turned around, untagged");
    f.set_agent_alive(false).unwrap();
    f.expect(&probe, xdp::DROP, Stat::DropAgentDown);
    f.set_agent_alive(true).unwrap();
    for _ in 0..50 {
        f.run(&probe);
    }
    f.expect(&probe, xdp::DROP, Stat::DropRateLimited);
    // Data from a stranger is never passed up.
    let mut p = relay_payload(TX_V4, 1, 5);
    p[3] = PacketKind::Data as u8;
    let data = v4(PEER_MAC, f.in_mac, [10, 1, 0, 92], [10, 1, 0, 1], 20, (40000, PORT), &p);
    f.expect(&data, xdp::DROP, Stat::DropUnknownPeer);
}
