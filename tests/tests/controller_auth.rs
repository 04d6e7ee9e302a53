//! The authenticated control plane end to end: a real controller (TLS, per-node tokens) and
//! real agents in namespaces. Reports without credentials, with malformed or unknown ones,
//! with another node's valid token or with an operator's read-only token are refused with
//! the exact status, counted per reason, and change no route; a client that does not trust
//! the controller's CA, or speaks plain HTTP, does not get through the TLS handshake.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wecan_agent::upstream::{ControllerHttp, read_ca};
use wecan_tests::{pki, skip_privileged, topology::Topology};

/// A report that, if accepted, would take r1's only link down (and so every route to r1).
fn forged_report() -> Value {
    json!({"clients": [], "links": [{"peer": 2, "up": false, "rtt_us": 0.0, "loss": 1.0,
        "jitter_us": 0.0, "age_ms": null, "sent": 10, "received": 0}]})
}

/// Every node's routes at the controller (node, generation, next hops and backups) and r1's
/// route table in its datapath.
fn routes(t: &Topology) -> (Value, Value) {
    let mut sets = t.controller_get("/v1/routes").unwrap();
    for set in sets.as_array_mut().unwrap() {
        // Costs follow the measured RTT every report; routes are next hops and backups.
        for r in set["routes"].as_array_mut().unwrap() {
            r.as_object_mut().unwrap().remove("cost_us");
        }
    }
    let table: Value =
        serde_json::from_str(&t.cli("r1", &["-j", "routes", "list"]).unwrap()).unwrap();
    (sets, table)
}

#[test]
fn refused_reports_change_no_route_and_are_counted() {
    if skip_privileged() {
        return;
    }
    let mut t = Topology::new("au").unwrap();
    for (n, id) in [("r1", 1), ("r2", 2), ("r3", 3)] {
        t.node(n, id).unwrap();
    }
    // A line: every route has one path and no backup, so routes cannot move by themselves
    // (alternates on a triangle of equal veth links follow RTT noise).
    t.link("r1", "r2").unwrap();
    t.link("r2", "r3").unwrap();
    t.start_controller().unwrap();
    for r in ["r1", "r2", "r3"] {
        t.start_relay(r, &[], &[]).unwrap();
    }
    // Converged: every link up at the controller, every relay holding routes to the others.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let topo = t.controller_get("/v1/topology").unwrap();
        let up = topo["links"].as_array().unwrap().iter().filter(|l| l["up"] == true).count();
        let sets = t.controller_get("/v1/routes").unwrap();
        let routed =
            sets.as_array().unwrap().iter().filter(|s| s["routes"].as_array().unwrap().len() == 2);
        // ...and every relay's datapath holding them (agents poll the controller).
        let installed = ["r1", "r2", "r3"].iter().all(|r| {
            t.cli(r, &["-j", "routes", "list"])
                .ok()
                .and_then(|out| serde_json::from_str::<Value>(&out).ok())
                .and_then(|v| {
                    v.as_array().map(|a| a.iter().filter(|x| x["origin"] == "controller").count())
                })
                == Some(2)
        });
        if up == 4 && routed.count() == 3 && installed {
            break;
        }
        assert!(Instant::now() < deadline, "never converged: {topo}\n{sets}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = routes(&t);
    let refused_before = t.controller_get("/v1/auth").unwrap()["refused"].clone();
    assert!(refused_before.as_object().unwrap().values().all(|v| v == 0), "{refused_before}");

    let url = t.controller_url().unwrap().to_string();
    let pki = t.controller_pki().unwrap();
    let report_url = format!("{url}/v1/nodes/1/report");
    let body = forged_report().to_string();
    // A client that trusts the controller's CA but sends whatever Authorization it is given.
    let roots = read_ca(&pki.ca).unwrap();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
        .build();
    let raw = ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent();
    let post = |auth: Option<&str>| -> u16 {
        let mut req = raw.post(&report_url).header("content-type", "application/json");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send(body.as_str()).unwrap().status().as_u16()
    };
    assert_eq!(post(None), 401, "no credentials");
    assert_eq!(post(Some("Basic cjE6c2VjcmV0")), 401, "malformed credentials");
    let unknown = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    assert_eq!(post(Some(&format!("Bearer {unknown}"))), 401, "unknown token");
    // r2's own, valid token: not for r1's report, nor r1's routes, nor the whole network.
    let r2 = t.controller_client(pki.token_file(2).unwrap()).unwrap();
    let status =
        |r: Result<ureq::http::Response<ureq::Body>, ureq::Error>| r.unwrap().status().as_u16();
    let forged: wecan_api::Report = serde_json::from_value(forged_report()).unwrap();
    assert_eq!(status(r2.post(&report_url).send_json(&forged)), 403, "another node's token");
    assert_eq!(status(r2.get(&format!("{url}/v1/nodes/1/routes")).call()), 403);
    assert_eq!(status(r2.get(&format!("{url}/v1/topology")).call()), 403);
    assert_eq!(status(r2.get(&format!("{url}/v1/nodes/2/routes")).call()), 200, "its own");
    // The operator's token only reads.
    let op = t.controller_client(&pki.operator_token).unwrap();
    assert_eq!(status(op.post(&report_url).send_json(&forged)), 403, "operator posting");
    // /healthz stays open (for load balancers and probes).
    assert_eq!(status(raw.get(&format!("{url}/healthz")).call()), 200);

    // A client that trusts another CA fails the handshake, before any request is sent.
    let other_ca = t.controller_pki().unwrap().ca.with_file_name("other-ca.pem");
    pki::write_unrelated_ca(&other_ca).unwrap();
    let token = pki.token_file(1).unwrap();
    let stranger = ControllerHttp::new(
        &read_ca(&other_ca).unwrap(),
        &wecan_agent::upstream::read_token(token).unwrap(),
        Some(Duration::from_secs(10)),
    );
    match stranger.post(&report_url).send_json(&forged) {
        // rustls's verdict on the chain, whichever ureq error carries it.
        Err(e) if format!("{e:?}").contains("UnknownIssuer") => eprintln!("wrong CA: {e}"),
        other => panic!("a client with the wrong CA got {other:?}"),
    }
    // Plain HTTP to the TLS port gets no answer either.
    let plain = format!("http://{}/healthz", url.trim_start_matches("https://"));
    assert!(ureq::get(&plain).call().is_err(), "plain HTTP answered");

    // Well after several report intervals and recomputations, nothing moved.
    std::thread::sleep(Duration::from_millis(1500));
    let after = routes(&t);
    assert_eq!(before.0, after.0, "controller routes changed");
    assert_eq!(before.1, after.1, "r1's datapath routes changed");
    let refused = t.controller_get("/v1/auth").unwrap()["refused"].clone();
    eprintln!("refused: {refused}");
    for (reason, n) in [
        ("missing_credentials", 1),
        ("malformed_credentials", 1),
        ("bad_credentials", 1),
        ("wrong_node", 2),
        ("not_operator", 1),
        ("read_only", 1),
    ] {
        assert_eq!(refused[reason], n, "{reason}: {refused}");
    }
    assert!(refused["tls_handshake"].as_u64().unwrap() >= 2, "{refused}");
}
