//! Per-hop protection benchmarks (part of `cargo xtask bench`):
//!
//! 1. CPU cost per packet of the hop pipeline (protect, then unprotect at the next hop, 5 %
//!    of hop packets lost), per mode, beside wrapping alone (mode none).
//! 2. Delivery, added latency and overhead against loss for each mode and for fixed FEC
//!    20:10 (UDPspeeder's default), over 3 simulated hops (`wecan_tests::sim`: the real
//!    pipeline in virtual time).
//! 3. The real thing: 3 lossy hops in namespaces (`scenario::lossy`), agents protecting
//!    each hop, unprotected and with FEC+ARQ, in the same run.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    time::{Duration, Instant},
};

use anyhow::Result;
use wecan_client as client;
use wecan_common::wire::{PacketKind, RelayHeader};
use wecan_tests::scenario::lossy;
use wecan_tests::sim::{self, SimConfig};
use wecan_transport::hop::{FecSettings, LinkRx, LinkTx, ProtectMode};

const LOSSES: [f64; 4] = [0.01, 0.05, 0.10, 0.20];
const SIM_PACKETS: u32 = 100_000;
const NETNS_PACKETS: u32 = 20_000;
const COST_PACKETS: u32 = 400_000;

/// Our adaptive bounds in the comparison: k = 10, parity 1..=6 following the loss.
fn adaptive() -> FecSettings {
    FecSettings { group: 10, min_parity: 1, max_parity: 6, timeout: Duration::from_millis(5) }
}

/// UDPspeeder's default `-f20:10`: 20 data + 10 parity, fixed.
fn udpspeeder() -> FecSettings {
    FecSettings { group: 20, min_parity: 10, max_parity: 10, timeout: Duration::from_millis(5) }
}

/// Nanoseconds per original packet for protecting it on one hop and unprotecting it on the
/// next: 1,200-byte packets at 10,000/s of virtual time, every 20th hop packet lost.
fn hop_cost(mode: ProtectMode) -> f64 {
    let rtt = Duration::from_millis(10);
    let mut tx = LinkTx::new(1, 2, adaptive(), rtt, 1);
    tx.set_loss(0.05, mode.arq());
    let mut rx = LinkRx::new(2, 1, rtt);
    let pkts: Vec<Vec<u8>> = (0..1024)
        .map(|s| client::datagram(&RelayHeader::new(PacketKind::Data, 100, 200, 1, s), 1200))
        .collect();
    let (mut wire, mut back, mut delivered) = (Vec::new(), Vec::new(), Vec::new());
    let t0 = Instant::now();
    let mut hop_packets = 0u64;
    let start = Instant::now();
    for i in 0..COST_PACKETS {
        let now = t0 + Duration::from_micros(100 * u64::from(i));
        // Deadline flows: never refused.
        let _ = tx.send(mode, &pkts[i as usize % pkts.len()], now, &mut wire);
        if i % 10 == 0 {
            tx.poll(now, &mut wire);
            rx.poll(now, &mut back);
        }
        for p in wire.drain(..) {
            hop_packets += 1;
            if hop_packets.is_multiple_of(20) {
                continue;
            }
            if let Ok((h, body)) = RelayHeader::decode(&p) {
                let _ = rx.on_packet(h.kind, body, now, &mut delivered);
            }
        }
        for n in back.drain(..) {
            if let Ok((_, body)) = RelayHeader::decode(&n) {
                let _ = tx.on_nack(body, now, &mut wire);
            }
        }
        delivered.clear();
    }
    start.elapsed().as_nanos() as f64 / f64::from(COST_PACKETS)
}

/// Runs the protection benchmarks; adds their keys to `r` and returns their table.
pub fn run(r: &mut BTreeMap<&'static str, f64>) -> Result<String> {
    let mut s = String::new();
    eprintln!("bench: hop pipeline CPU cost…");
    let _ = writeln!(
        s,
        "\nper-hop protection, CPU per packet (protect + unprotect, 1,200 bytes, 5 % hop loss)"
    );
    let _ = writeln!(s, "  {:<28} {:>10}  {:>8}", "mode", "ns/packet", "ratio");
    let base = hop_cost(ProtectMode::None);
    for (mode, key) in [
        (ProtectMode::None, "hop_ns_per_pkt_none"),
        (ProtectMode::Fec, "hop_ns_per_pkt_fec"),
        (ProtectMode::Arq, "hop_ns_per_pkt_arq"),
        (ProtectMode::FecArq, "hop_ns_per_pkt_fec_arq"),
    ] {
        let ns = if mode == ProtectMode::None { base } else { hop_cost(mode) };
        r.insert(key, ns);
        let name =
            if mode == ProtectMode::None { "none (wrap only, baseline)" } else { mode.name() };
        let _ = writeln!(s, "  {:<28} {:>10.0}  {:>7.2}×", name, ns, ns / base);
    }

    eprintln!("bench: delivery against loss (3 simulated hops)…");
    let _ = writeln!(
        s,
        "\ndelivery over 3 hops, each losing `loss` both ways, 5 ms one-way delay, 1,200-byte \
         packets at 10,000/s,\n{SIM_PACKETS} packets (wecan_tests::sim: the real pipeline in \
         virtual time); adaptive FEC: k=10, m 1..=6"
    );
    let _ = writeln!(
        s,
        "  {:<22} {:>5}  {:>10}  {:>11}  {:>9}  {:>9}  {:>9}",
        "mode", "loss", "delivered", "residual", "+p50 ms", "+p99 ms", "overhead"
    );
    let modes: [(&str, ProtectMode, FecSettings); 5] = [
        ("none", ProtectMode::None, adaptive()),
        ("FEC (adaptive)", ProtectMode::Fec, adaptive()),
        ("ARQ", ProtectMode::Arq, adaptive()),
        ("FEC+ARQ (adaptive)", ProtectMode::FecArq, adaptive()),
        ("UDPspeeder-style 20:10", ProtectMode::Fec, udpspeeder()),
    ];
    for loss in LOSSES {
        for (name, mode, fec) in modes {
            let res = sim::run(&SimConfig { fec, ..SimConfig::new(3, loss, mode, SIM_PACKETS) });
            let _ = writeln!(
                s,
                "  {:<22} {:>4.0}%  {:>9.4}%  {:>10.4}%  {:>9.2}  {:>9.2}  {:>8.1}%",
                name,
                loss * 100.0,
                res.delivery * 100.0,
                (1.0 - res.delivery) * 100.0,
                res.added_p50_us / 1000.0,
                res.added_p99_us / 1000.0,
                res.overhead * 100.0
            );
            if loss == 0.10 && name.starts_with("FEC+ARQ") {
                r.insert("sim_residual_fec_arq_10pct", 1.0 - res.delivery);
                r.insert("sim_overhead_fec_arq_10pct", res.overhead);
            }
            if loss == 0.10 && name.starts_with("UDPspeeder") {
                r.insert("sim_residual_udpspeeder_10pct", 1.0 - res.delivery);
                r.insert("sim_overhead_udpspeeder_10pct", res.overhead);
            }
        }
    }

    eprintln!("bench: 3 lossy hops in namespaces, unprotected and FEC+ARQ…");
    let mut t = lossy::chain("bp", 0.05)?;
    let none = lossy::stream(&t, NETNS_PACKETS, 0, false)?;
    lossy::protect(&mut t, "fec+arq")?;
    let both = lossy::stream(&t, NETNS_PACKETS, 100_000, false)?;
    let overhead = lossy::overhead(&t)?;
    for r in ["r2", "r3", "r4"] {
        let rx = lossy::protection(&t, r)?.rx;
        eprintln!("bench:   {r} receiving: {:?}", rx.first().map(|x| x.stats));
    }
    drop(t);
    let n = f64::from(NETNS_PACKETS);
    r.insert("delivery_none_5pct", none.unique as f64 / n);
    r.insert("delivery_fec_arq_5pct", both.unique as f64 / n);
    r.insert("overhead_fec_arq_5pct", overhead);
    let _ = writeln!(
        s,
        "\n3 lossy hops in namespaces (5 % loss each way, 1 ms delay; agents protect each hop), \
         {NETNS_PACKETS} packets of {} bytes at {}/s",
        lossy::SIZE,
        lossy::RATE
    );
    let _ = writeln!(
        s,
        "  unprotected (XDP)  delivered {:.4}%\n  FEC+ARQ (agents)   delivered {:.4}%, \
         overhead {:.1}%",
        r["delivery_none_5pct"] * 100.0,
        r["delivery_fec_arq_5pct"] * 100.0,
        overhead * 100.0
    );
    Ok(s)
}
