//! Edge access: clients register with an edge's access gateway using operator-signed
//! credentials (made with the real `wecan token` CLI), are admitted into the XDP datapath
//! and reached through their edge, on a line of namespaces:
//!
//! ```text
//!   a (clients, no config anywhere) — r1 (edge, node 1) — r2 (core, node 2) — b (node 200)
//! ```

use std::{
    net::{SocketAddr, UdpSocket},
    process::Command,
    time::Duration,
};

use anyhow::Result;
use serde_json::Value;
use wecan_common::wire::{PacketKind, ProbeBody, RelayHeader, overlay};
use wecan_tests::{
    access::{Operator, creds_in_memory, register_all},
    bins::bin,
    net::in_netns,
    proc::Proc,
    read_until,
    receiver::receive,
    skip_privileged,
    topology::Topology,
};

const B: u32 = 200;

/// The line with r1 as an edge whose `[access]` table is `access`.
fn line(tag: &str, access: &str) -> Result<Topology> {
    let mut t = Topology::new(tag)?;
    t.node("r1", 1)?;
    t.node("r2", 2)?;
    t.client_node("a", 100)?;
    t.client_node("b", B)?;
    t.link("a", "r1")?;
    t.link("r1", "r2")?;
    t.link("r2", "b")?;
    t.accept_xdp_frames("a")?;
    t.accept_xdp_frames("b")?;
    t.set_extra("r1", access);
    // a is nobody's peer: its clients register.
    t.start_relay("r1", &["a"], &[("b", "r2")])?;
    // The core knows the edge, never its clients.
    t.start_relay("r2", &[], &[("b", "b"), ("r1", "r1")])?;
    Ok(t)
}

/// `wecan-client` in a's namespace registering with r1 as `name` with `creds`.
fn client(t: &Topology, creds: &std::path::Path, name: &str) -> Command {
    let mut c = Command::new(bin("wecan-client"));
    c.args(["--netns", &t.ns("a").name, "--creds", creds.to_str().unwrap(), "--name", name]);
    c.args(["--edge-node", "1"]);
    c
}

fn edge(t: &Topology) -> SocketAddr {
    SocketAddr::from((t.addr("r1", "a"), 7300))
}

/// `wecan clients -j` on r1.
fn clients(t: &Topology) -> Value {
    serde_json::from_str(&t.cli("r1", &["-j", "clients"]).unwrap()).unwrap()
}

/// `wecan clients -j` on r1 once `done` holds of it (the agent publishes twice a second),
/// or as it is after 5 s.
fn clients_when(t: &Topology, done: impl Fn(&Value) -> bool) -> Value {
    read_until(Duration::from_secs(5), || clients(t), done)
}

/// Registrations r1 refused for `reason`, once it has published `n` of them.
fn refused(t: &Topology, reason: &str, n: u64) -> u64 {
    let count = |c: &Value| c["counts"]["refused"][reason].as_u64().unwrap_or(0);
    count(&clients_when(t, |c| count(c) >= n))
}

fn route_count(t: &Topology, relay: &str) -> usize {
    let v: Value = serde_json::from_str(&t.cli(relay, &["-j", "routes", "list"]).unwrap()).unwrap();
    v.as_array().unwrap().len()
}

/// Bad credentials are refused, each counted by its reason, and the client told why; a
/// flood of registrations from one address stops in XDP at that address's rate while an
/// admitted client's traffic from the same address arrives whole.
#[test]
fn bad_credentials_are_refused_and_counted_and_a_flood_does_not_slow_admitted_clients() {
    if skip_privileged() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let op = Operator::new(dir.path(), "operator").unwrap();
    let rogue = Operator::new(dir.path(), "rogue").unwrap();
    let edge_creds = op.issue("edge-r1", "1h", true).unwrap();
    let alice = op.issue("alice", "1h", false).unwrap();
    let mallory = rogue.issue("mallory", "1h", false).unwrap();
    // Alice's credentials with one character of the token's signature changed.
    let forged = dir.path().join("forged.creds");
    let text = std::fs::read_to_string(&alice).unwrap();
    let token = text.lines().find(|l| l.starts_with("token")).unwrap();
    let at = token.rfind('.').unwrap() + 4;
    let swap = if &token[at..=at] == "A" { "B" } else { "A" };
    let bad = format!("{}{swap}{}", &token[..at], &token[at + 1..]);
    std::fs::write(&forged, text.replace(token, &bad)).unwrap();
    let expired = dir.path().join("expired.creds");
    let old = creds_in_memory(&op.key().unwrap(), "carol", 7200, 3600).unwrap();
    std::fs::write(&expired, old.to_toml()).unwrap();

    let t =
        line("acc", &op.access_table(&edge_creds, "source_rate = 5\nsource_burst = 20\n")).unwrap();
    for (creds, name, reason, says) in [
        (&alice, "bob", "wrong_name", "name"),
        (&mallory, "mallory", "unknown_issuer", "operator"),
        (&forged, "alice", "bad_signature", "signature"),
        (&expired, "carol", "expired", "expired"),
    ] {
        let out = client(&t, creds, name)
            .args(["attach", "--to", &edge(&t).to_string()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} attached with {}", creds.display());
        assert!(err.contains("refused") && err.contains(says), "{name}: {err}");
        assert_eq!(refused(&t, reason, 1), 1, "{reason}: {}", clients(&t));
    }
    // Garbage gets no answer, only a count.
    let to = edge(&t);
    in_netns(&t.ns("a").name, move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for i in 0..5u8 {
            let mut p = RelayHeader::new(PacketKind::Control, 0, 1, 0, 0).to_bytes().to_vec();
            p.extend_from_slice(&[1, i, 0xff, 0x00, i]);
            s.send_to(&p, to).unwrap();
        }
    })
    .unwrap();
    assert_eq!(refused(&t, "malformed", 5), 5, "{}", clients(&t));
    assert_eq!(clients(&t)["counts"]["accepted"], 0);

    // Alice attaches and streams to b; then her address floods the gateway.
    const COUNT: u32 = 10_000;
    let b = SocketAddr::from((t.addr("b", "r2"), 7300));
    let rx = receive(&t, "b", b, COUNT, 5).unwrap();
    let (tx, line, _) = Proc::spawn_capture(
        "alice",
        client(&t, &alice, "alice").args(["send", "--to", &edge(&t).to_string()]).args([
            "--dst-node",
            &B.to_string(),
            "--count",
            &COUNT.to_string(),
            "--rate",
            "5000",
            "--size",
            "200",
        ]),
        "attached",
        Duration::from_secs(10),
    )
    .unwrap();
    let addr: u32 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(overlay::edge_of(addr), Some(1), "an address of edge r1: {addr:#x}");
    let before = t.stats("r1").unwrap();
    const FLOOD: u64 = 300_000;
    let flood = in_netns(&t.ns("a").name, move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        let start = std::time::Instant::now();
        for i in 0..FLOOD {
            let mut p = RelayHeader::new(PacketKind::Control, 0, 1, 0, 0).to_bytes().to_vec();
            p.extend_from_slice(&i.to_be_bytes());
            // A full socket buffer only slows the flood down.
            let _ = s.send_to(&p, to);
        }
        start.elapsed()
    })
    .unwrap();
    assert!(tx.wait(Duration::from_secs(30)).unwrap().success(), "alice's sender");
    let report = rx.report().unwrap();
    let after = t.stats("r1").unwrap();
    eprintln!("flood of {FLOOD} in {flood:?}; alice → b: {report:?}");
    assert_eq!(
        (report.unique, report.corrupt, report.duplicates),
        (u64::from(COUNT), 0, 0),
        "{report:?}"
    );
    // Within its rate (5/s, 20 at once) the flood reached the agent; the rest stopped in XDP.
    let passed = after["gateway"] - before["gateway"];
    let allowed = 20 + 5 * (flood.as_secs() + 2);
    assert!(passed <= allowed, "{passed} of the flood passed, more than {allowed}");
    assert!(after["drop_rate_limited"] - before["drop_rate_limited"] >= FLOOD - allowed);
    let c = clients_when(&t, |c| c["counts"]["accepted"] == 1);
    assert_eq!(c["counts"]["accepted"], 1, "{c}");
    let listed = &c["clients"][0];
    assert_eq!(
        (listed["name"].as_str(), listed["node"].as_u64()),
        (Some("alice"), Some(addr.into())),
        "{c}"
    );
}

/// 10,000 clients registered at one edge: the core relay's routes and maps do not grow (it
/// routes them all by their edge), every client is admitted in XDP; the registration rate
/// and the edge agent's memory per client are measured.
#[test]
fn ten_thousand_clients_at_one_edge_leave_the_core_unchanged() {
    if skip_privileged() {
        return;
    }
    const N: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let op = Operator::new(dir.path(), "operator").unwrap();
    let edge_creds = op.issue("edge-r1", "1h", true).unwrap();
    let access = op.access_table(
        &edge_creds,
        "source_rate = 60000\nsource_burst = 60000\nregistrations_per_s = 100000\nclient_timeout_ms = 600000\n",
    );
    let t = line("many", &access).unwrap();
    let core_routes = route_count(&t, "r2");
    let edge_routes = route_count(&t, "r1");
    let rss_before = t.agent("r1").unwrap().rss().unwrap();
    let key = op.key().unwrap();
    let creds: Vec<_> = (0..N)
        .map(|i| {
            let name = format!("load-{i:05}");
            let c = creds_in_memory(&key, &name, 0, 3600).unwrap();
            (name, c)
        })
        .collect();
    let to = edge(&t);
    let (took, answered, sampled) = in_netns(&t.ns("a").name, move || -> Result<_> {
        let (regs, sock) = register_all(to, 1, &creds)?;
        // Every 100th client sends a keepalive, which XDP must admit and answer.
        let mut sample: Vec<_> = regs.attached.into_iter().step_by(100).collect();
        let mut answered = 0;
        let mut buf = [0u8; 256];
        sock.set_read_timeout(Some(Duration::from_millis(500)))?;
        for a in &mut sample {
            a.keepalive(&sock, to, 1)?;
            let n = sock.recv(&mut buf)?;
            let (h, body) = RelayHeader::decode(&buf[..n]).map_err(|e| anyhow::anyhow!("{e}"))?;
            assert!(a.link.verify(&buf[..n]).is_ok(), "the reply is sealed for {:#x}", a.addr);
            let sent = ProbeBody::decode(body).map(|b| b.sent_ns);
            assert_eq!(
                (h.kind, h.dst_node(), sent),
                (PacketKind::ProbeReply as u8, a.addr, Some(1))
            );
            answered += 1;
        }
        Ok((regs.took, answered, sample.len()))
    })
    .unwrap()
    .unwrap();
    let rss_after = t.agent("r1").unwrap().rss().unwrap();
    let listed =
        clients_when(&t, |c| c["clients"].as_array().is_some_and(|a| a.len() == N))["clients"]
            .as_array()
            .unwrap()
            .len();
    let per_s = N as f64 / took.as_secs_f64();
    let per_client = rss_after.saturating_sub(rss_before) as f64 / N as f64;
    eprintln!(
        "{N} registrations in {took:?} ({per_s:.0}/s, one at a time); edge agent RSS {rss_before} → {rss_after} bytes ({per_client:.0} B per client)"
    );
    assert_eq!(listed, N);
    assert_eq!(answered, sampled);
    // Nothing of the clients reaches the core, nor the edge's route table.
    assert_eq!(route_count(&t, "r2"), core_routes);
    assert_eq!(route_count(&t, "r1"), edge_routes);
    let core: Value = serde_json::from_str(&t.cli("r2", &["-j", "clients"]).unwrap()).unwrap();
    assert_eq!(core["clients"].as_array().unwrap().len(), 0);
    // What the agent keeps per client is small (the datapath's share is preallocated).
    assert!(per_client < 4096.0, "{per_client} B of agent memory per client");
}

/// Three edges at different RTTs from one client, two of its operator's and a partner's
/// (the nearest, which admits its operator's clients too): the scheduler offers all three, the
/// client probes them and attaches to the nearest of its own operator's; with that edge at
/// capacity, to the next of its own operator's, not the partner's.
#[test]
fn a_client_attaches_to_the_nearest_edge_of_its_operator_and_to_the_next_when_that_is_full() {
    if skip_privileged() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let acme = Operator::new(dir.path(), "acme").unwrap();
    let beta = Operator::new(dir.path(), "beta").unwrap();
    let mut t = Topology::new("sch").unwrap();
    // (edge, node, one-way delay to the client in ms, its operator, whom it serves, capacity)
    let edges = [
        ("e1", 1, 6, &acme, vec![&acme], 10),
        ("e2", 2, 2, &acme, vec![&acme], 1),
        ("e3", 3, 1, &beta, vec![&beta, &acme], 10),
    ];
    for (e, node, ..) in &edges {
        t.node(e, *node).unwrap();
    }
    t.client_node("c", 100).unwrap();
    for (e, _, ms, ..) in &edges {
        t.link_impaired("c", e, wecan_tests::scenario::delay(*ms)).unwrap();
    }
    t.accept_xdp_frames("c").unwrap();
    t.start_controller().unwrap();
    for (e, _, _, op, serves, capacity) in &edges {
        let creds = op.issue(&format!("edge-{e}"), "1h", true).unwrap();
        let serves: Vec<String> = serves.iter().map(|o| format!("\"{}\"", o.public)).collect();
        t.set_extra(
            e,
            &format!(
                "[access]\noperators = [{}]\ncreds = \"{}\"\naddrs = [\"{}:7300\"]\nmax_clients = {capacity}\n",
                serves.join(", "),
                creds.display(),
                t.addr(e, "c"),
            ),
        );
        t.start_relay(e, &["c"], &[]).unwrap();
    }
    let edges_seen = |want: &dyn Fn(&[Value]) -> bool| {
        let read = || t.controller_get("/v1/edges").unwrap();
        read_until(Duration::from_secs(10), read, |v| want(v.as_array().unwrap()))
    };
    let v = edges_seen(&|e| e.len() == 3);
    assert_eq!(v.as_array().unwrap().len(), 3, "{v}");
    let ca = t.controller_pki().unwrap().ca.clone();
    let url = t.controller_url().unwrap().to_owned();
    let attach = |who: &str| -> Value {
        let creds = acme.issue(who, "1h", false).unwrap();
        let out = Command::new(bin("wecan-client"))
            .args(["--netns", &t.ns("c").name, "--creds", creds.to_str().unwrap(), "--name", who])
            .args(["--controller", &url, "--ca", ca.to_str().unwrap(), "attach", "--json"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{who}: {err}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let alice = attach("alice");
    eprintln!("alice: {alice}");
    assert_eq!(alice["edge_node"], 2, "the nearest of acme's edges: {alice}");
    let c = alice["candidates"].as_array().unwrap();
    let order: Vec<u64> = c.iter().map(|p| p["node"].as_u64().unwrap()).collect();
    assert_eq!(order, [2, 1, 3], "acme's nearest first, the partner last: {alice}");
    // The partner's edge is the nearest of all, and measured so.
    let rtt = |i: usize| c[i]["rtt_us"].as_u64().unwrap();
    assert!(rtt(2) < rtt(0) && rtt(0) < rtt(1), "{alice}");
    // e2 (capacity 1) is full once the controller hears of alice.
    let v = edges_seen(&|e| e.iter().any(|x| x["node"] == 2 && x["edge"]["clients"] == 1));
    assert!(v.as_array().unwrap().iter().any(|x| x["node"] == 2 && x["edge"]["clients"] == 1));
    let bob = attach("bob");
    eprintln!("bob: {bob}");
    assert_eq!(
        bob["edge_node"], 1,
        "e2 is full; the next of acme's, not the nearer partner: {bob}"
    );
}

/// A client streams through the nearest edge; that edge's link is cut mid-stream: the
/// client notices its keepalives going unanswered and moves to the runner-up, and the
/// receiver sees one gap under a second and no other loss.
#[test]
fn a_client_whose_edge_dies_moves_to_its_runner_up_within_a_second() {
    if skip_privileged() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let acme = Operator::new(dir.path(), "acme").unwrap();
    let mut t = Topology::new("mig").unwrap();
    t.node("e1", 1).unwrap();
    t.node("e2", 2).unwrap();
    t.node("r", 9).unwrap();
    t.client_node("c", 100).unwrap();
    t.client_node("b", B).unwrap();
    t.link_impaired("c", "e1", wecan_tests::scenario::delay(1)).unwrap();
    t.link_impaired("c", "e2", wecan_tests::scenario::delay(3)).unwrap();
    t.link("e1", "r").unwrap();
    t.link("e2", "r").unwrap();
    t.link("r", "b").unwrap();
    t.accept_xdp_frames("c").unwrap();
    t.accept_xdp_frames("b").unwrap();
    t.start_controller().unwrap();
    for e in ["e1", "e2"] {
        let creds = acme.issue(&format!("edge-{e}"), "1h", true).unwrap();
        let addrs = format!("addrs = [\"{}:7300\"]\n", t.addr(e, "c"));
        t.set_extra(e, &acme.access_table(&creds, &addrs));
        t.start_relay(e, &["c"], &[("b", "r")]).unwrap();
    }
    t.start_relay("r", &[], &[("b", "b")]).unwrap();
    let seen = read_until(
        Duration::from_secs(10),
        || t.controller_get("/v1/edges").unwrap(),
        |v| v.as_array().unwrap().len() == 2,
    );
    assert_eq!(seen.as_array().unwrap().len(), 2, "{seen}");

    const COUNT: u32 = 20_000;
    const RATE: u32 = 5_000;
    let rx = receive(&t, "b", SocketAddr::from((t.addr("b", "r"), 7300)), COUNT, 5).unwrap();
    let alice = acme.issue("alice", "1h", false).unwrap();
    let ca = t.controller_pki().unwrap().ca.clone();
    let (tx, line, lines) = Proc::spawn_capture(
        "alice",
        Command::new(bin("wecan-client"))
            .args(["--netns", &t.ns("c").name, "--creds", alice.to_str().unwrap(), "--name"])
            .args(["alice", "--controller", t.controller_url().unwrap()])
            .args(["--ca", ca.to_str().unwrap(), "send", "--dst-node", &B.to_string()])
            .args(["--count", &COUNT.to_string(), "--rate", &RATE.to_string(), "--size", "200"]),
        "attached",
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(line.ends_with("at edge 1"), "the nearer edge first: {line}");
    std::thread::sleep(Duration::from_millis(1500));
    t.impair("c", "e1", wecan_tests::impair::Impairment { drop_all: true, ..Default::default() });
    assert!(tx.wait(Duration::from_secs(30)).unwrap().success(), "alice's sender");
    let moves = lines.iter().find_map(|l| l.strip_prefix("moves ").map(str::to_owned)).unwrap();
    let report = rx.report().unwrap();
    let gap_ms = report.max_gap as f64 * 1000.0 / f64::from(RATE);
    eprintln!("moves {moves}; gap {gap_ms} ms; {report:?}");
    let moves: Value = serde_json::from_str(&moves).unwrap();
    assert_eq!((moves[0]["from"].as_u64(), moves[0]["to"].as_u64()), (Some(1), Some(2)), "{moves}");
    assert_eq!(moves.as_array().unwrap().len(), 1, "{moves}");
    assert!(gap_ms < 1000.0, "a gap of {gap_ms} ms");
    assert_eq!(report.missing, report.max_gap, "loss outside the one gap: {report:?}");
    assert_eq!((report.duplicates, report.corrupt), (0, 0), "{report:?}");
}
