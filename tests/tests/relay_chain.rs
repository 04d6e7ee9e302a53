//! End to end through real XDP in network namespaces:
//!
//! ```text
//!   A ── R1 ── R2 ── R3 ── B        (each node its own namespace, veth links)
//!   X ──┘ └──────────┘               X: not a peer; R1 ── R3: the direct link
//! ```
//!
//! IP forwarding is off in every relay namespace, so only the XDP program (and the
//! agent's slow path, for packets whose next hop has no neighbour entry yet) can move
//! relay packets. The same chain without X and the direct link runs over IPv6 too.

use std::{net::SocketAddr, process::Stdio, time::Duration};

use wecan_tests::{
    receiver::receive,
    scenario::wait_probe_replies,
    skip_privileged,
    topology::{Topology, iface},
};

const COUNT: u32 = 100_000;
const RATE: u32 = 50_000;
const ROGUE: u32 = 1_000;

/// Packets a relay moved on: in XDP, or through the agent after a neighbour miss.
fn relayed(t: &Topology, r: &str) -> u64 {
    let s = t.stats(r).unwrap();
    s["tx"] + s["redirect"] + s["no_neighbour"]
}

fn drops(t: &Topology, r: &str) -> Vec<(&'static str, u64)> {
    t.stats(r).unwrap().into_iter().filter(|(k, v)| k.starts_with("drop_") && *v > 0).collect()
}

#[test]
fn chain_forwards_every_packet_and_reroutes_without_loss() {
    if skip_privileged() {
        return;
    }
    let mut t = Topology::new("ch").unwrap();
    for (name, id) in [("r1", 1), ("r2", 2), ("r3", 3)] {
        t.node(name, id).unwrap();
    }
    for (name, id) in [("a", 100), ("b", 200), ("x", 66)] {
        t.client_node(name, id).unwrap();
    }
    for (a, b) in [("a", "r1"), ("r1", "r2"), ("r2", "r3"), ("r3", "b"), ("r1", "r3"), ("x", "r1")]
    {
        t.link(a, b).unwrap();
    }
    t.accept_xdp_frames("b").unwrap();
    t.start_relay("r1", &["x"], &[("b", "r2"), ("a", "a")]).unwrap();
    t.start_relay("r2", &[], &[("b", "r3"), ("a", "r1")]).unwrap();
    t.start_relay("r3", &[], &[("b", "b"), ("a", "r2")]).unwrap();

    // The kernel cannot forward: forwarding is off on every relay interface.
    for r in ["r1", "r2", "r3"] {
        for n in t.neighbours(r) {
            let key = format!("net.ipv4.conf.{}.forwarding", iface(&n));
            assert_eq!(t.ns(r).read_sysctl(&key).unwrap(), "0", "{r} {key}");
        }
    }

    // An unknown source is dropped at the first relay.
    let r1_for_x = t.addr("r1", "x");
    let out = t
        .client("x")
        .args([
            "send",
            "--to",
            &format!("{r1_for_x}:7300"),
            "--src-node",
            "66",
            "--dst-node",
            "200",
        ])
        .args(["--count", &ROGUE.to_string(), "--first-seq", "1000000", "--rate", "0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while t.stats("r1").unwrap()["drop_unknown_peer"] < u64::from(ROGUE)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(t.stats("r1").unwrap()["drop_unknown_peer"], u64::from(ROGUE));
    assert_eq!(relayed(&t, "r1"), 0, "nothing from X may be relayed");

    let b_addr = t.addr("b", "r3");
    let rx = receive(&t, "b", SocketAddr::from((b_addr, 7300)), COUNT, 5).unwrap();

    let r1_for_a = t.addr("r1", "a");
    let mut sender = t
        .client("a")
        .args([
            "send",
            "--to",
            &format!("{r1_for_a}:7300"),
            "--src-node",
            "100",
            "--dst-node",
            "200",
        ])
        .args(["--count", &COUNT.to_string(), "--rate", &RATE.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();

    // Mid-stream, move B's route on R1 from R2 to the direct link to R3, with the CLI.
    std::thread::sleep(Duration::from_millis(800));
    let r3_direct = t.addr("r3", "r1").to_string();
    let added = t.cli("r1", &["-j", "routes", "add", "200", "--via", &r3_direct]).unwrap();
    assert!(added.contains(&r3_direct), "{added}");
    let got: serde_json::Value =
        serde_json::from_str(&t.cli("r1", &["-j", "routes", "get", "200"]).unwrap()).unwrap();
    assert_eq!(got[0]["next_hop"], format!("{r3_direct}:7300"));
    assert_eq!(got[0]["origin"], "cli");
    // Packets R1 sent R2 before the switch cross it within microseconds; this leaves them
    // (and a busy machine) a hundred thousand times that.
    std::thread::sleep(Duration::from_millis(200));
    let r2_at_switch = relayed(&t, "r2");

    assert!(sender.wait().unwrap().success());
    let report = rx.report().unwrap();

    for r in ["r1", "r2", "r3"] {
        eprintln!(
            "{r}: {:?}",
            t.stats(r).unwrap().into_iter().filter(|(_, v)| *v > 0).collect::<Vec<_>>()
        );
    }
    // Every packet arrived, intact, exactly once; none of X's.
    assert_eq!(report.socket_drops, 0, "B's socket overflowed, a receiver not a relay loss");
    assert_eq!(report.unique, u64::from(COUNT), "{report:?}");
    assert_eq!((report.missing, report.corrupt, report.duplicates), (0, 0, 0), "{report:?}");
    // Three relay hops on the long path, two on the direct one.
    assert_eq!(report.min_hop_limit, Some(13), "{report:?}");

    // The counters account for each packet: R1 and R3 relayed all of them, R2 only
    // those before the switch; the rest took the direct link.
    let (r1, r2, r3) = (relayed(&t, "r1"), relayed(&t, "r2"), relayed(&t, "r3"));
    assert_eq!(r1, u64::from(COUNT));
    assert_eq!(r3, u64::from(COUNT));
    assert!(r2 > 0 && r2 < u64::from(COUNT), "R2 relayed {r2}: the switch was not mid-stream");
    assert_eq!(r2, r2_at_switch, "R2 relayed packets after the switch");
    eprintln!(
        "R2 carried {r2} packets before the switch, the direct link {}",
        u64::from(COUNT) - r2
    );
    assert_eq!(drops(&t, "r1"), vec![("drop_unknown_peer", u64::from(ROGUE))]);
    assert_eq!(drops(&t, "r2"), vec![]);
    assert_eq!(drops(&t, "r3"), vec![]);

    // The CLI reports the same counters as the maps.
    let stats: serde_json::Value =
        serde_json::from_str(&t.cli("r3", &["-j", "stats"]).unwrap()).unwrap();
    let cli_redirect =
        stats.as_array().unwrap().iter().find(|r| r["outcome"] == "redirect").unwrap();
    assert_eq!(cli_redirect["packets"], t.stats("r3").unwrap()["redirect"]);
}

/// A → R1 → R2 → R3 → B with every peer named by its IPv6 link address: each packet
/// arrives intact, once, after three relay hops, and each relay forwarded each one in XDP
/// (neighbours resolved first, so none needed the agent) while the kernel forwards
/// nothing (IPv6 and IPv4 forwarding off on every relay interface).
#[test]
fn ipv6_chain_forwards_every_packet_in_xdp() {
    if skip_privileged() {
        return;
    }
    const COUNT6: u32 = 20_000;
    let mut t = Topology::new("c6").unwrap();
    t.over_ipv6();
    for (name, id) in [("r1", 1), ("r2", 2), ("r3", 3)] {
        t.node(name, id).unwrap();
    }
    for (name, id) in [("a", 100), ("b", 200)] {
        t.client_node(name, id).unwrap();
    }
    for (a, b) in [("a", "r1"), ("r1", "r2"), ("r2", "r3"), ("r3", "b")] {
        t.link(a, b).unwrap();
    }
    t.accept_xdp_frames("b").unwrap();
    t.start_relay("r1", &[], &[("b", "r2"), ("a", "a")]).unwrap();
    t.start_relay("r2", &[], &[("b", "r3"), ("a", "r1")]).unwrap();
    t.start_relay("r3", &[], &[("b", "b"), ("a", "r2")]).unwrap();
    for r in ["r1", "r2", "r3"] {
        for n in t.neighbours(r) {
            for family in ["ipv6", "ipv4"] {
                let key = format!("net.{family}.conf.{}.forwarding", iface(&n));
                assert_eq!(t.ns(r).read_sysctl(&key).unwrap(), "0", "{r} {key}");
            }
        }
    }
    for (r, peers) in [("r1", &[2][..]), ("r2", &[1, 3]), ("r3", &[2])] {
        wait_probe_replies(&t, r, peers).unwrap();
    }
    t.resolve_neighbour("r3", "b").unwrap();

    let to_b = SocketAddr::new(t.overlay_addr("b", "r3"), 7300);
    let to_r1 = SocketAddr::new(t.overlay_addr("r1", "a"), 7300);
    assert!(to_b.is_ipv6() && to_r1.is_ipv6(), "{to_b} {to_r1}");
    let count = COUNT6.to_string();
    let rx = receive(&t, "b", to_b, COUNT6, 5).unwrap();
    let sent = t
        .client("a")
        .args(["send", "--to", &to_r1.to_string(), "--src-node", "100", "--dst-node", "200"])
        .args(["--count", &count, "--rate", "20000"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(sent.success());
    let report = rx.report().unwrap();

    assert_eq!(report.socket_drops, 0, "B's socket overflowed, a receiver not a relay loss");
    assert_eq!(report.unique, u64::from(COUNT6), "{report:?}");
    assert_eq!((report.missing, report.corrupt, report.duplicates), (0, 0, 0), "{report:?}");
    assert_eq!(report.min_hop_limit, Some(13), "{report:?}");
    for r in ["r1", "r2", "r3"] {
        let s = t.stats(r).unwrap();
        let forwarded = (s["redirect"], s["tx"], s["no_neighbour"], s["slow_path"]);
        assert_eq!(
            forwarded,
            (u64::from(COUNT6), 0, 0, 0),
            "{r}: (redirect, tx, no_neighbour, slow_path)"
        );
        assert_eq!(drops(&t, r), vec![], "{r}");
    }
}
