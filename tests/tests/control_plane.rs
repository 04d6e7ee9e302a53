//! The control plane end to end, in namespaces: agents probe their links and report to the
//! controller, which computes routes and pushes them; links fail; the controller dies; an
//! agent is upgraded in place.

use std::{
    process::{Child, Stdio},
    sync::mpsc::Receiver,
    time::{Duration, Instant},
};

use wecan::client::RecvReport;
use wecan_tests::{impair::Impairment, proc::Proc, skip_privileged, topology::Topology};

const RATE: u32 = 10_000;

/// One-way delay of each relay link (ms): r1 reaches r4 best directly, then through r2,
/// then through r3; the other links are short.
const DELAYS: [(&str, &str, u64); 6] = [
    ("r1", "r4", 1),
    ("r1", "r2", 3),
    ("r1", "r3", 5),
    ("r2", "r3", 1),
    ("r2", "r4", 1),
    ("r3", "r4", 1),
];

fn delay(ms: u64) -> Impairment {
    Impairment { delay: Duration::from_millis(ms), ..Impairment::default() }
}

/// Relays r1..r4 in a full mesh whose links have the `DELAYS` (impairment elements), client
/// a at r1 and client b at r4, controller on, converged.
fn mesh(tag: &str) -> Topology {
    let mut t = Topology::new(tag).unwrap();
    for (n, id) in [("r1", 1), ("r2", 2), ("r3", 3), ("r4", 4)] {
        t.node(n, id).unwrap();
    }
    t.client_node("a", 100).unwrap();
    t.client_node("b", 200).unwrap();
    for (x, y, ms) in DELAYS {
        t.link_impaired(x, y, delay(ms)).unwrap();
    }
    t.link("a", "r1").unwrap();
    t.link("r4", "b").unwrap();
    t.accept_xdp_frames("b").unwrap();
    t.start_controller().unwrap();
    t.start_relay("r1", &[], &[("a", "a")]).unwrap();
    t.start_relay("r2", &[], &[]).unwrap();
    t.start_relay("r3", &[], &[]).unwrap();
    t.start_relay("r4", &[], &[("b", "b")]).unwrap();
    // Converged: every relay link measured and up at the controller, every relay routing b.
    let url = format!("{}/v1/topology", t.controller_url().unwrap());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let topo = get_json(&url);
        let up = topo["links"].as_array().unwrap().iter().filter(|l| l["up"] == true).count();
        if up == 12 {
            break;
        }
        assert!(Instant::now() < deadline, "links never all up: {topo}");
        std::thread::sleep(Duration::from_millis(100));
    }
    for r in ["r1", "r2", "r3", "r4"] {
        wait_route(&t, r, 200, |_| true);
    }
    t
}

/// Every relay's datapath drop counters that moved.
fn drops(t: &Topology) -> Vec<(String, &'static str, u64)> {
    let mut out = Vec::new();
    for r in ["r1", "r2", "r3", "r4"] {
        for (k, v) in t.stats(r).unwrap() {
            if k.starts_with("drop_") && v > 0 {
                out.push((r.to_string(), k, v));
            }
        }
    }
    out
}

/// `wecan routes get DST -j` on `relay`, once its origin is the controller and `ok` holds.
fn wait_route(
    t: &Topology,
    relay: &str,
    dst: u32,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(out) = t.cli(relay, &["-j", "routes", "get", &dst.to_string()]) {
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            let r = v[0].clone();
            if r["origin"] == "controller" && ok(&r) {
                return r;
            }
        }
        assert!(Instant::now() < deadline, "{relay} has no suitable controller route to {dst}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts a receiver in b and a sender in a (`count` packets at `RATE`).
fn stream(t: &Topology, count: u32, first_seq: u32) -> (Proc, Receiver<String>, Child) {
    let b = t.addr("b", "r4");
    let (rx, _, lines) = Proc::spawn_capture(
        "receiver",
        t.client("b").args(["recv", "--json", "--bind", &format!("{b}:7300")]).args([
            "--count",
            &count.to_string(),
            "--first-seq",
            &first_seq.to_string(),
            "--timeout",
            "60",
            "--idle",
            "3",
        ]),
        "listening",
        Duration::from_secs(10),
    )
    .unwrap();
    let r1 = t.addr("r1", "a");
    let tx = t
        .client("a")
        .args(["send", "--to", &format!("{r1}:7300"), "--src-node", "100", "--dst-node", "200"])
        .args(["--count", &count.to_string(), "--first-seq", &first_seq.to_string()])
        .args(["--rate", &RATE.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    (rx, lines, tx)
}

fn finish(rx: Proc, lines: Receiver<String>, mut tx: Child) -> RecvReport {
    assert!(tx.wait().unwrap().success());
    let report = loop {
        let line = lines.recv_timeout(Duration::from_secs(70)).expect("receiver report");
        if line.starts_with('{') {
            break serde_json::from_str(&line).unwrap();
        }
    };
    rx.wait(Duration::from_secs(10)).unwrap();
    report
}

/// Node name of a relay ID.
fn name(id: u64) -> String {
    format!("r{id}")
}

/// Streams a→b, cuts r1's link to `hop` mid-stream (the element drops everything), and
/// returns the outage in ms as seen by b, and b's report.
fn cut_and_measure(t: &Topology, hop: &str, count: u32, first_seq: u32) -> (f64, RecvReport) {
    let (rx, lines, tx) = stream(t, count, first_seq);
    std::thread::sleep(Duration::from_millis(1000));
    t.impair("r1", hop, Impairment { drop_all: true, ..Impairment::default() });
    let report = finish(rx, lines, tx);
    eprintln!("drops: {:?}", drops(t));
    let outage_ms = report.max_gap as f64 * 1000.0 / f64::from(RATE);
    (outage_ms, report)
}

#[test]
fn controller_steers_by_link_quality_and_failover_stays_under_a_second() {
    if skip_privileged("controller_steers_by_link_quality_and_failover_stays_under_a_second") {
        return;
    }
    let mut t = mesh("fo");
    let hop = |r: &serde_json::Value| r["next_node"].as_u64().unwrap();
    let alt = |r: &serde_json::Value| r["alternate"].as_u64();

    // The best path is the short direct link; the backup is the next best loop-free one.
    let r = wait_route(&t, "r1", 200, |r| hop(r) == 4 && alt(r) == Some(2));
    eprintln!("r1 → b: via {} (backup {})", hop(&r), r["alternate"]);

    // The direct link gets slow: the controller steers b's traffic through r2.
    t.impair("r1", "r4", delay(10));
    let start = Instant::now();
    wait_route(&t, "r1", 200, |r| hop(r) == 2);
    eprintln!("steered around the slow link in {} ms", start.elapsed().as_millis());
    t.impair("r1", "r4", delay(1));
    wait_route(&t, "r1", 200, |r| hop(r) == 4 && alt(r) == Some(2));

    // 1. Cut the link in use, controller running: local fast reroute to the backup (r2),
    //    then the controller's new routes (through r2, backup r3).
    let (outage_ms, report) = cut_and_measure(&t, "r4", 30_000, 0);
    eprintln!("failover with the controller: {outage_ms:.1} ms ({} packets lost)", report.missing);
    assert!(outage_ms < 1000.0, "outage {outage_ms} ms: {report:?}");
    // Beyond the outage, at most brief microloops while relays take the controller's new
    // routes at slightly different times (< 0.1 s of traffic).
    assert!(report.missing - report.max_gap < u64::from(RATE) / 10, "{report:?}");
    assert_eq!((report.corrupt, report.duplicates), (0, 0));
    wait_route(&t, "r1", 200, |r| hop(r) == 2 && alt(r) == Some(3) && r["on_backup"] == false);

    // 2. Controller stopped, cut the new link in use: the precomputed backup alone
    //    carries the traffic over.
    t.stop_controller();
    let (outage_ms, report) = cut_and_measure(&t, "r2", 30_000, 100_000);
    eprintln!(
        "failover without the controller: {outage_ms:.1} ms ({} packets lost)",
        report.missing
    );
    assert!(outage_ms < 1000.0, "outage {outage_ms} ms: {report:?}");
    // Without a controller nothing else changes: the outage is the only loss.
    assert_eq!(report.missing, report.max_gap, "loss outside the outage: {report:?}");
    let r: serde_json::Value =
        serde_json::from_str(&t.cli("r1", &["-j", "routes", "get", "200"]).unwrap()).unwrap();
    assert_eq!((r[0]["on_backup"].clone(), hop(&r[0])), (serde_json::json!(true), 3), "{r}");
}

#[test]
fn controller_death_and_agent_upgrade_lose_nothing() {
    if skip_privileged("controller_death_and_agent_upgrade_lose_nothing") {
        return;
    }
    let mut t = mesh("up");
    let route = wait_route(&t, "r1", 200, |r| r["next_node"] == 4);
    let hop = name(route["next_node"].as_u64().unwrap());
    let (rx, lines, tx) = stream(&t, 40_000, 0);
    std::thread::sleep(Duration::from_millis(1000));
    t.stop_controller();
    std::thread::sleep(Duration::from_millis(500));
    // Upgrade the agent of the relay in the path (r1 always is; so is its next hop).
    t.restart_relay("r1").unwrap();
    t.restart_relay(&hop).unwrap();
    let report = finish(rx, lines, tx);
    eprintln!("controller stopped and r1, {hop} upgraded mid-stream: {report:?}");
    eprintln!("drops: {:?}", drops(&t));
    assert_eq!((report.unique, report.missing, report.corrupt), (40_000, 0, 0), "{report:?}");
    // The upgraded agent kept the controller's routes.
    let r: serde_json::Value =
        serde_json::from_str(&t.cli("r1", &["-j", "routes", "get", "200"]).unwrap()).unwrap();
    assert_eq!(r[0]["origin"], "controller", "{r}");
}

/// GET a JSON document from the controller (loopback).
fn get_json(url: &str) -> serde_json::Value {
    ureq::get(url).call().unwrap().body_mut().read_json().unwrap()
}
