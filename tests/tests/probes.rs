//! Link probing in namespaces: probes are answered in XDP, links come up with RTT, loss and
//! jitter, and XDP-answered probes measure a lower and steadier RTT than probes answered by
//! the peer's agent.
//!
//! r1 probes r2, which answers in XDP, and r3, which answers from its agent, at the same
//! time, so both links are measured under the same conditions on a busy machine.

use std::time::Duration;

use wecan_tests::{skip_privileged, topology::Topology};

/// Probes averaged per link (the statistics window).
const WINDOW: u64 = 40;

/// (rtt_us, jitter_us, loss_pct, received) of r1's link to `peer`, from `wecan links -j`.
fn link(t: &Topology, peer: u32) -> (f64, f64, f64, u64) {
    let v: serde_json::Value =
        serde_json::from_str(&t.cli("r1", &["-j", "links"]).unwrap()).unwrap();
    let l = v.as_array().unwrap().iter().find(|l| l["peer"] == peer).expect("link").clone();
    assert_eq!(l["state"], "up", "{l}");
    (
        l["rtt_us"].as_f64().unwrap(),
        l["jitter_us"].as_f64().unwrap(),
        l["loss_pct"].as_f64().unwrap(),
        l["received"].as_u64().unwrap(),
    )
}

#[test]
fn probes_answered_in_xdp_measure_lower_steadier_rtt() {
    if skip_privileged() {
        return;
    }
    let mut t = Topology::new("pr").unwrap();
    for (n, id) in [("r1", 1), ("r2", 2), ("r3", 3)] {
        t.node(n, id).unwrap();
    }
    t.link("r1", "r2").unwrap();
    t.link("r1", "r3").unwrap();
    t.set_extra("r1", &format!("[probes]\ninterval_ms = 100\nwindow = {WINDOW}\n"));
    t.set_extra("r3", "probe_reply = \"agent\"\n");
    t.start_relay("r2", &[], &[]).unwrap();
    t.start_relay("r3", &[], &[]).unwrap();
    t.start_relay("r1", &[], &[]).unwrap();
    // A full window at a 100 ms interval, on a busy machine: scheduling delay is
    // what answering in XDP avoids.
    wecan_tests::cpu::busy_for(Duration::from_millis(WINDOW * 100 + 500));
    let (x_rtt, x_jit, x_loss, x_rx) = link(&t, 2);
    let (a_rtt, a_jit, a_loss, a_rx) = link(&t, 3);
    eprintln!("XDP reply:   rtt {x_rtt} µs, jitter {x_jit} µs, loss {x_loss} %, {x_rx} replies");
    eprintln!("agent reply: rtt {a_rtt} µs, jitter {a_jit} µs, loss {a_loss} %, {a_rx} replies");
    assert!(x_rx >= WINDOW && a_rx >= WINDOW, "too few replies: {x_rx} / {a_rx}");
    assert!(x_loss < 10.0 && a_loss < 10.0, "loss {x_loss} % / {a_loss} %");
    // Who answered: r2's XDP (its counter moved) and r3's agent (its XDP answered none).
    assert!(t.stats("r2").unwrap()["probe_reply"] >= x_rx);
    assert_eq!(t.stats("r3").unwrap()["probe_reply"], 0);
    assert!(x_rtt > 0.0 && x_rtt < a_rtt, "XDP {x_rtt} µs vs agent {a_rtt} µs");
    assert!(x_jit < a_jit, "jitter XDP {x_jit} µs vs agent {a_jit} µs");
}
