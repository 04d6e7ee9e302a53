//! Agent config text through the agent's own parse-and-validate path (`Config::parse`, what
//! `Config::load` runs on a file's contents): any text gives a config or an error, never a
//! panic, and what validation accepts the agent can use: every peer and route it names
//! resolves, and every protected link's FEC settings run in the transport.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use wecan_agent::config::Config;
use wecan_common::wire::{PacketKind, RelayHeader};
use wecan_transport::hop::{LinkRx, LinkTx};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(cfg) = Config::parse(text) else { return };
    for r in &cfg.routes {
        if let Some(via) = r.via {
            assert!(cfg.peer(via).is_some(), "route via {via} names no peer");
        }
    }
    for p in cfg.relay_peers() {
        assert_ne!(cfg.peer_port(p), 0);
        let mode = p.protect.mode;
        if !mode.fec() && !mode.arq() {
            continue;
        }
        // A group's worth of packets, closed, parity built and received: what the agent does
        // with these settings once the link carries traffic.
        let fec = p.protect.fec();
        let now = Instant::now();
        let mut tx = LinkTx::new(cfg.node_id, p.node_id, fec, Duration::from_millis(1), 1);
        let mut rx = LinkRx::new(p.node_id, cfg.node_id, Duration::from_millis(1));
        let mut wire = Vec::new();
        for seq in 0..fec.group as u32 {
            let pkt = RelayHeader::new(PacketKind::Data, 100, 200, 1, seq).to_bytes();
            tx.send(mode, &pkt, now, &mut wire).expect("a deadline flow is never refused");
        }
        tx.poll(now + fec.timeout, &mut wire);
        let mut got = Vec::new();
        for w in &wire {
            let (h, body) = RelayHeader::decode(w).expect("the sender emits valid packets");
            rx.on_packet(h.kind, body, now, &mut got).expect("the receiver takes them");
        }
        assert_eq!(got.len(), fec.group, "every packet of the group arrives once");
    }
});
