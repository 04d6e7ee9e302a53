//! `cargo xtask load` / `unload` on a veth in a namespace: the relay is attached, keeps
//! forwarding after the loader exits (pinned link), and unload leaves nothing behind.

use std::{path::Path, process::Command, time::Duration};

use wecan_client::RecvReport;
use wecan_tests::{
    bins::bin,
    proc::Proc,
    skip_privileged,
    topology::{Topology, iface},
};

fn xtask(args: &[&str]) {
    let out = Command::new(bin("xtask")).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "xtask {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends `n` packets from p through the relay and back to p; returns what arrived.
fn round_trip(t: &Topology, n: u32) -> RecvReport {
    let p_addr = t.addr("p", "r");
    let (rx, _, lines) = Proc::spawn_capture(
        "receiver",
        t.client("p")
            .args(["recv", "--json", "--bind", &format!("{p_addr}:7300"), "--count"])
            .args([&n.to_string(), "--timeout", "10", "--idle", "2"]),
        "listening",
        Duration::from_secs(10),
    )
    .unwrap();
    let r_addr = t.addr("r", "p");
    let sent = t
        .client("p")
        .args(["send", "--to", &format!("{r_addr}:7300"), "--bind", &format!("{p_addr}:0")])
        .args([
            "--src-node",
            "100",
            "--dst-node",
            "100",
            "--count",
            &n.to_string(),
            "--rate",
            "20000",
        ])
        .output()
        .unwrap();
    assert!(sent.status.success());
    let report = loop {
        let line = lines.recv_timeout(Duration::from_secs(20)).expect("report");
        if line.starts_with('{') {
            break serde_json::from_str(&line).unwrap();
        }
    };
    rx.wait(Duration::from_secs(5)).unwrap();
    report
}

#[test]
fn xtask_load_attaches_forwards_and_unload_cleans_up() {
    if skip_privileged() {
        return;
    }
    let mut t = Topology::new("lu").unwrap();
    t.node("r", 1).unwrap();
    t.client_node("p", 100).unwrap();
    t.link("p", "r").unwrap();
    t.accept_xdp_frames("p").unwrap();
    // Packets for node 100 go back out of the interface they came in on (XDP_TX).
    let cfg = std::env::temp_dir().join(format!("wecan-lu-{}.toml", std::process::id()));
    std::fs::write(&cfg, t.config("r", &[], &[("p", "p")])).unwrap();
    let (cfg_s, ns) = (cfg.to_str().unwrap(), t.ns("r").name.clone());
    let dev = iface("p");

    xtask(&["load", "--iface", &dev, "--config", cfg_s, "--netns", &ns]);
    let link = t.ns("r").ip(&["link", "show", &dev]).unwrap();
    assert!(link.contains("prog/xdp") && link.contains("wecan_relay"), "{link}");
    let pins = t.pin_dir("r");
    assert!(pins.join(format!("link-{dev}")).exists());

    // The loader has exited; the pinned program forwards on its own.
    let report = round_trip(&t, 2_000);
    assert_eq!((report.unique, report.corrupt), (2_000, 0), "{report:?}");
    assert_eq!(report.min_hop_limit, Some(15));
    let s = t.stats("r").unwrap();
    assert_eq!(s["tx"] + s["no_neighbour"], 2_000, "{s:?}");

    xtask(&["unload", "--iface", &dev, "--config", cfg_s, "--netns", &ns]);
    let link = t.ns("r").ip(&["link", "show", &dev]).unwrap();
    assert!(!link.contains("xdp"), "still attached: {link}");
    assert!(!Path::new(&pins).exists(), "pins left behind in {}", pins.display());
    // Nothing relays any more.
    let report = round_trip(&t, 100);
    assert_eq!(report.received, 0, "{report:?}");
    std::fs::remove_file(&cfg).unwrap();
}
