//! Hop authentication through the real XDP relays in namespaces:
//!
//! ```text
//!   A ── R1 ── R2 ── B        every link keyed; A and B are clients
//! ```
//!
//! 1. Beside A's valid stream, packets from A's own address without a tag, with a guessed
//!    tag, with a key ID the link does not have, and exact replays of A's earlier packets
//!    are dropped in R1's XDP and counted by reason; B receives A's stream exactly once.
//!    Fragmented datagrams, which XDP leaves to the kernel, are verified by R1's agent.
//! 2. The R1 — R2 link's keys rotate twice mid-stream with the CLI: nothing is lost.

use std::{
    net::{SocketAddr, UdpSocket},
    process::Stdio,
    time::{Duration, Instant},
};

use wecan_client::{EdgeLink, datagram};
use wecan_common::wire::{PacketKind, RelayHeader};
use wecan_tests::{net::in_netns, receiver::receive, skip_privileged, topology::Topology};

fn chain(tag: &str) -> Topology {
    let mut t = Topology::new(tag).unwrap();
    t.node("r1", 1).unwrap();
    t.node("r2", 2).unwrap();
    t.client_node("a", 100).unwrap();
    t.client_node("b", 200).unwrap();
    for (x, y) in [("a", "r1"), ("r1", "r2"), ("r2", "b")] {
        t.link(x, y).unwrap();
    }
    t.accept_xdp_frames("b").unwrap();
    t.start_relay("r1", &[], &[("b", "r2"), ("a", "a")]).unwrap();
    t.start_relay("r2", &[], &[("b", "b"), ("a", "r1")]).unwrap();
    t
}

/// Waits (bounded) until `relay`'s counter `name` reaches `want`; returns its value.
fn settle(t: &Topology, relay: &str, name: &str, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = t.stats(relay).unwrap()[name];
        if v >= want || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

const STREAM: u32 = 20_000;
/// Datagrams of 3,000 bytes (IPv4 fragments on the 1,500-byte links), untagged and sealed each.
const FRAGMENTED: u32 = 10;
/// One of each forgery per this many valid packets.
const EVERY: u32 = 10;

#[test]
fn spoofed_and_replayed_packets_are_dropped_beside_a_valid_stream() {
    if skip_privileged() {
        return;
    }
    let t = chain("ha");
    let rx = receive(&t, "b", SocketAddr::from((t.addr("b", "r2"), 7300)), STREAM, 5).unwrap();
    let to = SocketAddr::from((t.addr("r1", "a"), 7300));
    let from = t.addr("a", "r1");
    let secret = t.secret("a", "r1").unwrap().clone();
    // A's own address, A's key: the test is A, and its forger and replayer beside it.
    let sent = in_netns(&t.ns("a").name, move || -> anyhow::Result<[u32; 4]> {
        let sock = UdpSocket::bind((from, 0))?;
        let mut link = EdgeLink::keyed(100, 1, 1, &secret);
        let mut history: Vec<Vec<u8>> = Vec::new();
        let mut forged = [0u32; 4];
        let start = Instant::now();
        for seq in 0..STREAM {
            let hdr = RelayHeader::new(PacketKind::Data, 100, 200, 1, seq);
            let mut pkt = datagram(&hdr, 200);
            link.seal(&mut pkt)?;
            sock.send_to(&pkt, to)?;
            history.push(pkt.clone());
            if seq % EVERY == EVERY - 1 {
                let untagged = datagram(&hdr, 200);
                let mut guessed = pkt.clone();
                guessed[32..40].copy_from_slice(&u64::from(seq).wrapping_mul(0x9e37).to_le_bytes());
                let mut unknown_key = pkt.clone();
                unknown_key[6] = 9;
                // Within the window (a duplicate) and far older than it.
                let replay = &history[history.len() - 1 - (seq as usize % 300)];
                for (i, p) in [&untagged, &guessed, &unknown_key, replay].into_iter().enumerate() {
                    sock.send_to(p, to)?;
                    forged[i] += 1;
                }
            }
            // 5,000 valid packets/s: far below what any neighbour's load could disturb.
            let due = Duration::from_micros(200 * u64::from(seq + 1));
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        Ok(forged)
    })
    .unwrap()
    .unwrap();
    let r = rx.report().unwrap();
    let stats = t.stats("r1").unwrap();
    eprintln!(
        "forged {sent:?}; r1: {:?}",
        stats.iter().filter(|(_, v)| **v > 0).collect::<Vec<_>>()
    );
    assert_eq!(r.unique, u64::from(STREAM), "{r:?}");
    assert_eq!((r.missing, r.duplicates, r.corrupt, r.unauthenticated), (0, 0, 0, 0), "{r:?}");
    for (i, name) in
        ["drop_untagged", "drop_bad_tag", "drop_unknown_key", "drop_replay"].into_iter().enumerate()
    {
        assert_eq!(settle(&t, "r1", name, u64::from(sent[i])), u64::from(sent[i]), "{name}");
    }
    // IPv4 fragments reach R1's agent through the kernel, unverified by XDP: the agent
    // verifies them itself, refusing the untagged and taking the sealed.
    let secret = t.secret("a", "r1").unwrap().clone();
    in_netns(&t.ns("a").name, move || -> anyhow::Result<()> {
        let sock = UdpSocket::bind((from, 0))?;
        let mut link = EdgeLink::keyed(100, 1, 1, &secret);
        for seq in 0..FRAGMENTED {
            let hdr = RelayHeader::new(PacketKind::Data, 100, 1, 9, seq);
            let mut sealed = datagram(&hdr, 3000);
            link.seal(&mut sealed)?;
            sock.send_to(&datagram(&hdr, 3000), to)?;
            sock.send_to(&sealed, to)?;
        }
        Ok(())
    })
    .unwrap()
    .unwrap();
    assert!(settle(&t, "r1", "fragment", u64::from(4 * FRAGMENTED)) >= u64::from(4 * FRAGMENTED));
    let deadline = Instant::now() + Duration::from_secs(5);
    let refused = loop {
        let p: serde_json::Value =
            serde_json::from_str(&t.cli("r1", &["-j", "protection"]).unwrap()).unwrap();
        let n = p["auth"]["untagged"].as_u64().unwrap_or(0);
        if n >= u64::from(FRAGMENTED) || Instant::now() > deadline {
            break p["auth"].clone();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(refused["untagged"], FRAGMENTED, "{refused}");
    assert_eq!((&refused["bad_tag"], &refused["replay"]), (&0.into(), &0.into()), "{refused}");

    // Nothing forged went further: R2 dropped nothing and relayed the stream only (in XDP, or
    // through its agent while the neighbour entry toward B resolved).
    let r2 = t.stats("r2").unwrap();
    assert!(r2.iter().all(|(k, v)| !k.starts_with("drop_") || *v == 0), "{r2:?}");
    assert_eq!(r2["redirect"] + r2["tx"] + r2["no_neighbour"], u64::from(STREAM), "{r2:?}");
}

#[test]
fn link_keys_rotate_mid_stream_without_loss() {
    if skip_privileged() {
        return;
    }
    let t = chain("hr");
    let rx = receive(&t, "b", SocketAddr::from((t.addr("b", "r2"), 7300)), STREAM, 5).unwrap();
    let r1 = t.addr("r1", "a");
    let mut tx = t
        .client("a")
        .args(["send", "--to", &format!("{r1}:7300"), "--dst-node", "200"])
        .args(["--count", &STREAM.to_string(), "--rate", "5000"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // R1 knows R2 by R2's address on their link, and the other way round.
    let ends = [("r1", t.addr("r2", "r1").to_string()), ("r2", t.addr("r1", "r2").to_string())];
    let both = |args: &[&str]| {
        for (relay, peer) in &ends {
            let mut a = vec!["peers", "key", peer.as_str()];
            a.extend_from_slice(args);
            t.cli(relay, &a).unwrap();
        }
    };
    let (s2, s3) = ("22".repeat(32), "33".repeat(32));
    std::thread::sleep(Duration::from_millis(800));
    // Each step leaves every key a sender may use accepted by its receiver.
    both(&["--add", &format!("2:{s2}")]);
    both(&["--send", "2"]);
    std::thread::sleep(Duration::from_millis(800));
    both(&["--add", &format!("3:{s3}")]);
    both(&["--send", "3"]);
    let peers = t.cli("r1", &["-j", "peers"]).unwrap();
    let peers: serde_json::Value = serde_json::from_str(&peers).unwrap();
    let r2_entry = peers.as_array().unwrap().iter().find(|p| p["node"] == 2).unwrap();
    assert_eq!(r2_entry["keys"], serde_json::json!([3, 2]), "{r2_entry}");
    assert_eq!(r2_entry["send_key"], 3, "{r2_entry}");

    assert!(tx.wait().unwrap().success());
    let r = rx.report().unwrap();
    let r2 = t.stats("r2").unwrap();
    eprintln!("r2: {:?}", r2.iter().filter(|(_, v)| **v > 0).collect::<Vec<_>>());
    assert_eq!(r.unique, u64::from(STREAM), "{r:?}");
    assert_eq!((r.missing, r.duplicates, r.corrupt, r.unauthenticated), (0, 0, 0, 0), "{r:?}");
    for name in ["drop_untagged", "drop_unknown_key", "drop_bad_tag", "drop_replay"] {
        assert_eq!(r2[name], 0, "{name}");
    }
}
