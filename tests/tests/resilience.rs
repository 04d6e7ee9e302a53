//! Failures the network must route around on its own, and upgrades it must not notice, in
//! namespaces: an agent killed with its program still attached and an interface set down
//! (on the control-plane mesh of `wecan_tests::scenario`: a → r1 → … → r4 → b, the outage
//! measured at b as the longest run of missing packets of a 10,000 packets/s stream), and an
//! agent upgraded twice in the middle of protected flows (on the lossy chain).

use std::time::{Duration, Instant};

use serde_json::Value;
use wecan_agent::handover;
use wecan_tests::{
    net::in_netns,
    scenario::{lossy, *},
    skip_privileged,
    topology::{Topology, iface},
};

/// Upper bound asserted on an outage: the detection time (a 50 ms heartbeat lease, then 5
/// probes of 10 ms unanswered) several times over, for a busy machine.
const MAX_OUTAGE_MS: f64 = 600.0;

fn route(t: &Topology, relay: &str) -> Value {
    let r: Value =
        serde_json::from_str(&t.cli(relay, &["-j", "routes", "get", "200"]).unwrap()).unwrap();
    r[0].clone()
}

fn hop(r: &Value) -> u64 {
    r["next_node"].as_u64().unwrap()
}

/// Whether `relay`'s prober has its link to node `peer` up.
fn link_up(t: &Topology, relay: &str, peer: u32) -> bool {
    t.links(relay).unwrap().iter().any(|(p, l)| *p == peer && l.up != 0)
}

fn wait_link(t: &Topology, relay: &str, peer: u32, up: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while link_up(t, relay, peer) != up {
        assert!(
            Instant::now() < deadline,
            "{relay}: link to {peer} never went {}",
            if up { "up" } else { "down" }
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_crashed_agent_is_routed_around_with_and_without_the_controller() {
    if skip_privileged() {
        return;
    }
    let mut t = mesh("kl").unwrap();
    // Send r1's traffic through r2 (the direct link gets slow), and make it depend on r2's
    // agent: r1 protects its links with FEC, which r2's agent decodes. Its XDP program, left
    // attached by the crash, would go on answering probes for a black hole.
    t.impair("r1", "r4", delay(10));
    t.set_protect("r1", "mode = \"fec\"");
    t.write_config("r1", &[], &[("a", "a")]).unwrap();
    t.restart_relay("r1").unwrap();
    wait_route(&t, "r1", 200, |r| hop(r) == 2).unwrap();

    // 1. With the controller.
    let (ms, report) = outage_when(&mut t, 30_000, 0, |t| t.kill_relay("r2")).unwrap();
    eprintln!("r2's agent killed, controller up: outage {ms:.1} ms, {report:?}");
    eprintln!("drops: {:?}", drops(&t).unwrap());
    assert!(ms < MAX_OUTAGE_MS, "outage {ms} ms: {report:?}");
    // Beyond the outage, at most brief microloops while relays take the controller's new
    // routes at slightly different times (< 0.1 s of traffic).
    assert!(report.missing - report.max_gap < u64::from(RATE) / 10, "{report:?}");
    assert_eq!((report.corrupt, report.duplicates), (0, 0), "{report:?}");
    for peer in ["r1", "r3", "r4"] {
        assert!(!link_up(&t, peer, 2), "{peer} still has its link to the dead agent up");
    }
    assert_ne!(hop(&route(&t, "r1")), 2);

    // 2. Without: r2 comes back, the routes return to it, the controller stops, r2 dies again.
    t.revive_relay("r2").unwrap();
    wait_link(&t, "r1", 2, true);
    wait_route(&t, "r1", 200, |r| hop(r) == 2 && r["on_backup"] == false).unwrap();
    t.stop_controller();
    let (ms, report) = outage_when(&mut t, 30_000, 100_000, |t| t.kill_relay("r2")).unwrap();
    eprintln!("r2's agent killed, no controller: outage {ms:.1} ms, {report:?}");
    eprintln!("drops: {:?}", drops(&t).unwrap());
    assert!(ms < MAX_OUTAGE_MS, "outage {ms} ms: {report:?}");
    // Without a controller nothing else changes: the outage is the only loss.
    assert_eq!(report.missing, report.max_gap, "loss outside the outage: {report:?}");
    assert_eq!((report.corrupt, report.duplicates), (0, 0), "{report:?}");
    let r = route(&t, "r1");
    assert_eq!((r["on_backup"].clone(), hop(&r) == 2), (Value::Bool(true), false), "{r}");
}

#[test]
fn an_interface_set_down_fails_over_without_waiting_for_probes() {
    if skip_privileged() {
        return;
    }
    let mut t = mesh("id").unwrap();
    // Probes alone would give up on a link only after 2 s here.
    t.set_extra("r1", "[probes]\ndead_after = 200\n");
    t.write_config("r1", &[], &[("a", "a")]).unwrap();
    t.restart_relay("r1").unwrap();
    wait_route(&t, "r1", 200, |r| hop(r) == 4).unwrap();
    wait_link(&t, "r1", 4, true);

    let (ms, report) = fail_and_measure(&mut t, "r4", Failure::InterfaceDown, 30_000, 0).unwrap();
    eprintln!("r1's interface to r4 set down: outage {ms:.1} ms, {report:?}");
    eprintln!("drops: {:?}", drops(&t).unwrap());
    assert!(ms < 1000.0, "outage {ms} ms, as long as waiting for probes: {report:?}");
    assert_eq!((report.corrupt, report.duplicates), (0, 0), "{report:?}");
    assert!(!link_up(&t, "r1", 4));
    assert_ne!(hop(&route(&t, "r1")), 4);

    // Back up: the probes bring the link back.
    t.ns("r1").ip(&["link", "set", &iface("r4"), "up"]).unwrap();
    wait_link(&t, "r1", 4, true);
}

/// Packets per flow of the upgrade run: 4 s of both flows at `lossy::RATE`.
const UPGRADE_COUNT: u32 = 10_000;

#[test]
fn upgrading_a_relay_twice_loses_no_packet_of_protected_or_reliable_flows() {
    if skip_privileged() {
        return;
    }
    let mut t = lossy::chain("ug", 0.02).unwrap();
    lossy::protect(&mut t, "fec+arq").unwrap();
    let size = lossy::SIZE.to_string();
    // Flow 1 real-time (FEC, ARQ within a deadline), flow 2 reliable, side by side.
    let args = ["--size", size.as_str(), "--reliable-flows", "1"];
    let s = streams_with(&t, 2, UPGRADE_COUNT, 0, lossy::RATE, &args).unwrap();
    // r2 ends one lossy hop and starts the next: its agent holds both ends' state.
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(1200));
        let start = Instant::now();
        t.restart_relay("r2").unwrap();
        eprintln!("r2 upgraded in {} ms", start.elapsed().as_millis());
    }
    let report = s.finish().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    for r in lossy::RELAYS {
        eprintln!("{r}: {}", t.cli(r, &["protection"]).unwrap());
    }
    eprintln!("upgraded twice: {report:?}");
    assert_eq!(report.unique, u64::from(2 * UPGRADE_COUNT), "{report:?}");
    assert_eq!((report.duplicates, report.corrupt), (0, 0), "{report:?}");
    let reliable = report.flows[&2];
    assert_eq!((reliable.unique, reliable.reordered), (u64::from(UPGRADE_COUNT), 0), "{report:?}");
    let r2 = lossy::protection(&t, "r2").unwrap();
    assert_eq!(r2.socket_drops, 0, "{r2:?}");
}

#[test]
fn a_failed_upgrade_leaves_the_running_agent_in_charge() {
    if skip_privileged() {
        return;
    }
    let mut t = Topology::new("uf").unwrap();
    t.node("r1", 1).unwrap();
    t.node("r2", 2).unwrap();
    t.link("r1", "r2").unwrap();
    t.start_relay("r1", &[], &[]).unwrap();
    t.start_relay("r2", &[], &[]).unwrap();
    wait_link(&t, "r2", 1, true);
    // A new agent that takes the state and dies before it confirms.
    let (ns, pin_dir) = (t.ns("r1").name.clone(), t.pin_dir("r1"));
    let taken = in_netns(&ns, move || handover::request(&pin_dir)).unwrap().unwrap();
    let (state, socket, confirmation) = taken.expect("r1's agent offers a handover");
    assert_eq!(state.node_id, 1);
    assert!(socket.local_addr().unwrap().port() > 0);
    drop((socket, confirmation));
    // The old agent carries on: its links stay up, and it hands over to the next one.
    std::thread::sleep(Duration::from_millis(300));
    assert!(link_up(&t, "r2", 1) && link_up(&t, "r1", 2));
    t.restart_relay("r1").unwrap();
    wait_link(&t, "r2", 1, true);
    assert_eq!(t.stats("r2").unwrap()["drop_agent_down"], 0);
}
