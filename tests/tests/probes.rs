//! Link probing between two relays in namespaces: probes are answered in XDP, links come
//! up with RTT, loss and jitter, and XDP-answered probes measure a lower and steadier RTT
//! than probes answered by the peer's agent.

use std::time::Duration;

use wecan_tests::{skip_privileged, topology::Topology};

/// (rtt_us, jitter_us, loss_pct, received) of r1's link to r2, from `wecan links -j`.
fn link(t: &Topology) -> (f64, f64, f64, u64) {
    let v: serde_json::Value =
        serde_json::from_str(&t.cli("r1", &["-j", "links"]).unwrap()).unwrap();
    let l = &v.as_array().unwrap().iter().find(|l| l["peer"] == 2).expect("link to r2").clone();
    assert_eq!(l["state"], "up", "{l}");
    (
        l["rtt_us"].as_f64().unwrap(),
        l["jitter_us"].as_f64().unwrap(),
        l["loss_pct"].as_f64().unwrap(),
        l["received"].as_u64().unwrap(),
    )
}

/// Runs r1 and r2 with r2 answering probes as `reply`; returns r1's view of the link.
fn measure(reply: &str) -> (f64, f64, f64, u64, u64) {
    let mut t = Topology::new(&format!("pr{}", &reply[..1])).unwrap();
    t.node("r1", 1).unwrap();
    t.node("r2", 2).unwrap();
    t.link("r1", "r2").unwrap();
    t.set_extra("r2", &format!("probe_reply = \"{reply}\"\n"));
    t.start_relay("r1", &[], &[]).unwrap();
    t.start_relay("r2", &[], &[]).unwrap();
    // 40 probes at the default 100 ms interval, on a busy machine: scheduling delay is
    // what answering in XDP avoids.
    wecan_tests::cpu::busy_for(Duration::from_secs(4));
    let (rtt, jitter, loss, received) = link(&t);
    let xdp_replies = t.stats("r2").unwrap()["probe_reply"];
    (rtt, jitter, loss, received, xdp_replies)
}

#[test]
fn probes_answered_in_xdp_measure_lower_steadier_rtt() {
    if skip_privileged("probes_answered_in_xdp_measure_lower_steadier_rtt") {
        return;
    }
    let (x_rtt, x_jit, x_loss, x_rx, x_replies) = measure("xdp");
    let (a_rtt, a_jit, a_loss, a_rx, a_replies) = measure("agent");
    eprintln!("XDP reply:   rtt {x_rtt} µs, jitter {x_jit} µs, loss {x_loss} %, {x_rx} replies");
    eprintln!("agent reply: rtt {a_rtt} µs, jitter {a_jit} µs, loss {a_loss} %, {a_rx} replies");
    assert!(x_rx >= 30 && a_rx >= 30, "too few replies: {x_rx} / {a_rx}");
    // Probes sent before the peer's agent was up are the only losses.
    assert!(x_loss < 10.0 && a_loss < 10.0, "loss {x_loss} % / {a_loss} %");
    // Who answered: XDP (its counter moved) or the agent (it did not).
    assert!(x_replies >= x_rx, "XDP answered {x_replies} of {x_rx}");
    assert_eq!(a_replies, 0);
    assert!(x_rtt > 0.0 && x_rtt < a_rtt, "XDP {x_rtt} µs vs agent {a_rtt} µs");
    assert!(x_jit < a_jit, "jitter XDP {x_jit} µs vs agent {a_jit} µs");
}
