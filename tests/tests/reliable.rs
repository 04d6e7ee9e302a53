//! Reliable flows end to end, through real agents and real XDP in namespaces
//! (`scenario::lossy`), every lossy link protected with ARQ:
//!
//! ```text
//!   A ── R1 ~~ R2 ~~ R3 ~~ R4 ── B       ~~ : 5 % random loss each way, 1 ms delay
//! ```
//!
//! Two reliable flows cross at once: both arrive whole and each in order, every relay
//! keeping one ARQ stream per flow. Then one reliable flow streams through a 600 ms cut of
//! the R1 — R2 link, so R1 is offered far more than the flow's window and backlog hold: it
//! refuses the rest and counts each refusal, and B gets exactly what was not refused, in
//! order. (The relays route statically, so the cut does not reroute.)

use std::time::Duration;

use wecan_tests::{
    impair::Impairment,
    scenario::{lossy, streams_with},
    skip_privileged,
    topology::Topology,
};
use wecan_transport::hop::{RELIABLE_BACKLOG, TxStats};

/// Packets per flow of the two-flow run.
const COUNT: u32 = 10_000;
/// Packets of the run through the cut: 4 s at `lossy::RATE`.
const CUT_COUNT: u32 = 20_000;
const CUT: Duration = Duration::from_millis(600);

/// The sending counters of `relay` (r1..r3) on its link toward b.
fn tx_toward_b(t: &Topology, relay: &str) -> TxStats {
    let next = t.id(relay) + 1;
    let p = lossy::protection(t, relay).unwrap();
    p.tx.iter().find(|x| x.peer == next).map(|x| x.stats).expect("a protected link toward b")
}

#[test]
fn reliable_flows_arrive_in_order_and_refusals_are_counted() {
    if skip_privileged() {
        return;
    }
    let mut t = lossy::chain("rl", 0.05).unwrap();
    lossy::protect(&mut t, "arq").unwrap();
    let size = lossy::SIZE.to_string();
    let args = ["--size", size.as_str(), "--reliable"];

    // Two flows from one sender, in turn, at the scenario's rate in all.
    let two = streams_with(&t, 2, COUNT, 0, lossy::RATE, &args).unwrap().finish().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    for r in ["r1", "r2", "r3", "r4"] {
        eprintln!("{r}: {}", t.cli(r, &["protection"]).unwrap());
    }
    eprintln!("two reliable flows: {two:?}");
    assert_eq!(two.unique, u64::from(2 * COUNT), "{two:?}");
    assert_eq!((two.reordered, two.duplicates, two.corrupt), (0, 0, 0), "{two:?}");
    for (r, next) in [("r1", "r2"), ("r2", "r3"), ("r3", "r4")] {
        let tx = tx_toward_b(&t, r);
        assert_eq!(tx.streams, 2, "{r}: one stream per flow: {tx:?}");
        assert_eq!((tx.refused_full, tx.refused_streams), (0, 0), "{r}: {tx:?}");
        assert!(tx.retransmissions > 0, "{r}: a 5 % lossy link needs repairs: {tx:?}");
        let rx = lossy::protection(&t, next).unwrap().rx;
        let rx = rx.iter().find(|x| x.peer == t.id(r)).map(|x| x.stats).unwrap();
        assert_eq!((rx.streams, rx.lost, rx.over_budget), (2, 0, 0), "{next}: {rx:?}");
    }

    // One flow through a cut of the first lossy link.
    let flow = streams_with(&t, 1, CUT_COUNT, 2 * COUNT, lossy::RATE, &args).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    t.impair("r1", "r2", Impairment { drop_all: true, ..Impairment::default() });
    std::thread::sleep(CUT);
    t.impair("r1", "r2", lossy::impairment(0.05));
    let report = flow.finish().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    eprintln!("{}", t.cli("r1", &["protection"]).unwrap());
    eprintln!("through the cut: {report:?}");
    let r1 = lossy::protection(&t, "r1").unwrap();
    assert_eq!(r1.socket_drops, 0, "R1 lost packets before protection saw them: {r1:?}");
    let tx = tx_toward_b(&t, "r1");
    // 600 ms at 5,000/s is 3,000 packets; window and backlog take 2,048.
    assert!(tx.refused_full >= 100, "the cut overflowed no backlog: {tx:?}");
    assert!(tx.queued >= RELIABLE_BACKLOG as u64, "{tx:?}");
    assert_eq!((tx.refused_streams, tx.backlog), (0, 0), "{tx:?}");
    assert_eq!(
        report.unique + tx.refused_full,
        u64::from(CUT_COUNT),
        "B got exactly what R1 did not refuse: {report:?}, {tx:?}"
    );
    assert_eq!((report.reordered, report.duplicates, report.corrupt), (0, 0, 0), "{report:?}");
    for r in ["r2", "r3"] {
        let tx = tx_toward_b(&t, r);
        assert_eq!((tx.refused_full, tx.refused_streams), (0, 0), "{r}: {tx:?}");
    }
    assert!(t.cli("r1", &["protection"]).unwrap().contains("REFUSED"));
}
