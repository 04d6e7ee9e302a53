//! The control plane end to end, in namespaces: agents probe their links and report to the
//! controller, which computes routes and pushes them; links fail; the controller dies; an
//! agent is upgraded in place.

use std::time::{Duration, Instant};

use wecan_tests::{bins::bin, net::sh, scenario::*, skip_privileged};

#[test]
fn controller_steers_by_link_quality_and_failover_stays_under_a_second() {
    if skip_privileged() {
        return;
    }
    let mut t = mesh("fo").unwrap();
    let hop = |r: &serde_json::Value| r["next_node"].as_u64().unwrap();
    let alt = |r: &serde_json::Value| r["alternate"].as_u64();

    // The best path is the short direct link; the backup is the next best loop-free one.
    let r = wait_route(&t, "r1", 200, |r| hop(r) == 4 && alt(r) == Some(2)).unwrap();
    eprintln!("r1 → b: via {} (backup {})", hop(&r), r["alternate"]);
    // The controller's side agrees (`wecan controller routes --node 1`) and its topology
    // shows the measured delays (RTT ≈ 2 × one-way delay).
    let ctl = t.controller_cli().unwrap();
    let wecan = |args: &[&str]| -> serde_json::Value {
        let args: Vec<&str> = ["-j"]
            .into_iter()
            .chain(ctl.iter().map(String::as_str))
            .chain(args.iter().copied())
            .collect();
        let out = sh(bin("wecan").to_str().unwrap(), &args).unwrap();
        serde_json::from_str(&out).unwrap()
    };
    let sets = wecan(&["routes", "--node", "1"]);
    let to_b =
        sets[0]["routes"].as_array().unwrap().iter().find(|r| r["dst"] == 200).unwrap().clone();
    assert_eq!((to_b["next_hop"].as_u64(), to_b["backup"].as_u64()), (Some(4), Some(2)), "{sets}");
    let topo = wecan(&["topology"]);
    let link = |a: u64, b: u64| {
        topo["links"].as_array().unwrap().iter().find(|l| l["from"] == a && l["to"] == b).unwrap()["rtt_us"]
            .as_f64()
            .unwrap()
    };
    // Never below the emulated round trip, and in the right unit. A busy machine delays the
    // impairment element's threads by tens of milliseconds (seen in CI after the previous
    // test: 23.8 ms on the 10 ms link, 14.9 ms on the 6 ms one), so the upper bound only
    // catches a wrong unit or a stuck estimate; the route choice above already showed that
    // the controller ranks the links by their delays.
    for (to, one_way_ms) in [(4, 1.0), (2, 3.0), (3, 5.0)] {
        let emulated = 2000.0 * one_way_ms;
        assert!((emulated..emulated + 100_000.0).contains(&link(1, to)), "{topo}");
    }

    // The direct link gets slow: the controller steers b's traffic through r2.
    t.impair("r1", "r4", delay(10));
    let start = Instant::now();
    wait_route(&t, "r1", 200, |r| hop(r) == 2).unwrap();
    eprintln!("steered around the slow link in {} ms", start.elapsed().as_millis());
    t.impair("r1", "r4", delay(1));
    wait_route(&t, "r1", 200, |r| hop(r) == 4 && alt(r) == Some(2)).unwrap();

    // 1. Cut the link in use, controller running: local fast reroute to the backup (r2),
    //    then the controller's new routes (through r2, backup r3).
    let (outage_ms, report) = fail_and_measure(&mut t, "r4", Failure::Cut, 30_000, 0).unwrap();
    eprintln!("drops: {:?}", drops(&t).unwrap());
    eprintln!("failover with the controller: {outage_ms:.1} ms ({} packets lost)", report.missing);
    assert!(outage_ms < 1000.0, "outage {outage_ms} ms: {report:?}");
    // Beyond the outage, at most brief microloops while relays take the controller's new
    // routes at slightly different times (< 0.1 s of traffic).
    assert!(report.missing - report.max_gap < u64::from(RATE) / 10, "{report:?}");
    assert_eq!((report.corrupt, report.duplicates), (0, 0));
    wait_route(&t, "r1", 200, |r| hop(r) == 2 && alt(r) == Some(3) && r["on_backup"] == false)
        .unwrap();

    // 2. Controller stopped, cut the new link in use: the precomputed backup alone
    //    carries the traffic over.
    t.stop_controller();
    let (outage_ms, report) =
        fail_and_measure(&mut t, "r2", Failure::Cut, 30_000, 100_000).unwrap();
    eprintln!("drops: {:?}", drops(&t).unwrap());
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
    if skip_privileged() {
        return;
    }
    let mut t = mesh("up").unwrap();
    let route = wait_route(&t, "r1", 200, |r| r["next_node"] == 4).unwrap();
    let hop = format!("r{}", route["next_node"]);
    let s = stream(&t, 40_000, 0).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    t.stop_controller();
    std::thread::sleep(Duration::from_millis(500));
    // Upgrade the agent of the relay in the path (r1 always is; so is its next hop).
    t.restart_relay("r1").unwrap();
    t.restart_relay(&hop).unwrap();
    let report = s.finish().unwrap();
    eprintln!("controller stopped and r1, {hop} upgraded mid-stream: {report:?}");
    eprintln!("drops: {:?}", drops(&t).unwrap());
    assert_eq!((report.unique, report.missing, report.corrupt), (40_000, 0, 0), "{report:?}");
    // The upgraded agent kept the controller's routes.
    let r: serde_json::Value =
        serde_json::from_str(&t.cli("r1", &["-j", "routes", "get", "200"]).unwrap()).unwrap();
    assert_eq!(r[0]["origin"], "controller", "{r}");
}
