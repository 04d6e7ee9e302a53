use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use wecan_common::wire::{HEADER_LEN, PacketKind, RelayHeader};

use rand::{Rng, RngCore, SeedableRng, rngs::SmallRng};

use super::*;

/// A relay packet of `size` bytes (at least the header) whose payload depends on `seq`.
fn original(seq: u32, size: usize) -> Vec<u8> {
    let mut p = RelayHeader::new(PacketKind::Data, 100, 200, 1, seq).to_bytes().to_vec();
    p.extend((0..size.saturating_sub(HEADER_LEN)).map(|i| (i as u32 ^ seq) as u8));
    p
}

fn settings(group: usize, parity: usize) -> FecSettings {
    FecSettings { group, min_parity: parity, max_parity: parity, timeout: Duration::from_millis(5) }
}

/// Splits a hop packet into (kind, payload after the relay header).
fn split(p: &[u8]) -> (u8, &[u8]) {
    let (h, body) = RelayHeader::decode(p).unwrap();
    assert_eq!(h.hop_limit, 1);
    assert!([(1, 2), (2, 1)].contains(&(h.src_node(), h.dst_node())));
    assert_eq!(h.flags, wecan_common::wire::flags::HOP);
    (h.kind, body)
}

#[test]
fn header_round_trips_and_rejects_short_input() {
    let h = HopHeader { epoch: 7, group: 0xdead_beef, index: 3, k: 10, m: 4, flags: 3 };
    let mut b = h.encode().to_vec();
    b.push(9);
    assert_eq!(HopHeader::decode(&b).unwrap(), (h, &[9u8][..]));
    for n in 0..HOP_HEADER_LEN {
        assert_eq!(
            HopHeader::decode(&b[..n]),
            Err(HopError::Truncated { have: n, need: HOP_HEADER_LEN })
        );
    }
}

#[test]
fn parity_follows_loss_within_bounds() {
    assert_eq!(parity_for(0.0, 10, 1, 4, 1e-2), 1);
    assert_eq!(parity_for(0.05, 10, 1, 8, 1e-2), 3);
    assert_eq!(parity_for(0.05, 10, 1, 8, 1e-4), 5);
    assert_eq!(parity_for(0.5, 10, 1, 4, 1e-2), 4, "capped at the upper bound");
    assert_eq!(parity_for(1.0, 10, 2, 4, 1e-2), 4);
    let mut tx = LinkTx::new(1, 2, settings(10, 1), Duration::from_millis(2), 1);
    tx.fec.max_parity = 6;
    tx.set_loss(0.0, true);
    assert_eq!(tx.stats().parity, 1);
    for _ in 0..100 {
        tx.set_loss(0.10, true);
    }
    assert_eq!(tx.stats().parity, parity_for(tx.stats().loss, 10, 1, 6, 1e-2));
    assert!(tx.stats().parity >= 3);
}

/// Every way of losing up to m shards of a group (variable-length packets) rebuilds the lost
/// packets byte-exact, each delivered once.
#[test]
fn fec_rebuilds_any_m_lost_shards_of_a_group() {
    let (k, m) = (5, 2);
    let t = Instant::now();
    let pkts: Vec<Vec<u8>> = (0..k as u32).map(|s| original(s, 40 + 97 * s as usize)).collect();
    let mut tx = LinkTx::new(1, 2, settings(k, m), Duration::from_millis(2), 9);
    tx.set_loss(0.0, false);
    let mut wire = Vec::new();
    for p in &pkts {
        tx.send(ProtectMode::Fec, p, t, &mut wire).unwrap();
    }
    assert_eq!(wire.len(), k + m);
    for lost_a in 0..k + m {
        for lost_b in lost_a..k + m {
            let mut rx = LinkRx::new(2, 1, Duration::from_millis(2));
            let mut got = Vec::new();
            for (i, p) in wire.iter().enumerate() {
                if i != lost_a && i != lost_b {
                    let (kind, body) = split(p);
                    rx.on_packet(kind, body, t, &mut got).unwrap();
                }
            }
            got.sort();
            let mut want = pkts.clone();
            want.sort();
            assert_eq!(got, want, "lost {lost_a} and {lost_b}");
            let lost_data = [lost_a, lost_b].iter().filter(|&&i| i < k).count() as u64;
            assert_eq!(
                rx.stats().fec_repaired,
                lost_data - u64::from(lost_a == lost_b && lost_a < k)
            );
        }
    }
}

#[test]
fn a_group_closes_on_its_timeout_with_fewer_packets() {
    let t = Instant::now();
    let mut tx = LinkTx::new(1, 2, settings(10, 2), Duration::from_millis(2), 9);
    tx.set_loss(0.0, false);
    let mut wire = Vec::new();
    for s in 0..3 {
        tx.send(ProtectMode::Fec, &original(s, 300), t, &mut wire).unwrap();
    }
    tx.poll(t + Duration::from_millis(4), &mut wire);
    assert_eq!(wire.len(), 3, "still open before the timeout");
    tx.poll(t + Duration::from_millis(5), &mut wire);
    assert_eq!(wire.len(), 5);
    let (kind, body) = split(&wire[3]);
    assert_eq!(kind, PacketKind::FecParity as u8);
    let (h, _) = HopHeader::decode(body).unwrap();
    assert_eq!((h.k, h.m, h.index), (3, 2, 3));
    // Lose two of the three data packets: both come back.
    let mut rx = LinkRx::new(2, 1, Duration::from_millis(2));
    let mut got = Vec::new();
    for p in [&wire[1], &wire[3], &wire[4]] {
        let (kind, body) = split(p);
        rx.on_packet(kind, body, t, &mut got).unwrap();
    }
    assert_eq!(got.len(), 3);
    assert_eq!(rx.stats().fec_repaired, 2);
}

/// A corrupted or truncated shard is an error or a counted bad unit, never a panic, and
/// nothing corrupt is delivered as valid.
#[test]
fn corrupted_and_short_shards_are_rejected() {
    let t = Instant::now();
    let mut tx = LinkTx::new(1, 2, settings(4, 2), Duration::from_millis(2), 9);
    tx.set_loss(0.0, false);
    let mut wire = Vec::new();
    for s in 0..4 {
        tx.send(ProtectMode::Fec, &original(s, 200), t, &mut wire).unwrap();
    }
    // Parity truncated by one byte: a different length than its sibling.
    let mut rx = LinkRx::new(2, 1, Duration::from_millis(2));
    let mut got = Vec::new();
    let (_, p4) = split(&wire[4]);
    let (_, p5) = split(&wire[5]);
    rx.on_packet(PacketKind::FecParity as u8, &p4[..p4.len() - 1], t, &mut got).unwrap();
    rx.on_packet(PacketKind::FecParity as u8, p5, t, &mut got).unwrap();
    let (_, d2) = split(&wire[2]);
    let (_, d3) = split(&wire[3]);
    rx.on_packet(PacketKind::Data as u8, d2, t, &mut got).unwrap();
    rx.on_packet(PacketKind::Data as u8, d3, t, &mut got).unwrap();
    assert_eq!(got.len(), 2, "only the two data packets that arrived");
    assert_eq!(rx.stats().fec_repaired, 0);
    assert!(rx.stats().malformed >= 1);
    // A data unit cut inside its relay header.
    let (_, d0) = split(&wire[0]);
    let cut = &d0[..HOP_HEADER_LEN + wire::UNIT_HEADER_LEN + HEADER_LEN - 1];
    assert_eq!(
        rx.on_packet(PacketKind::Data as u8, cut, t, &mut got),
        Err(HopError::Inner(WireError::Truncated))
    );
}

/// Random bytes, truncations and bit flips of valid hop packets, into both ends: errors and
/// counters, never a panic.
#[test]
fn fuzzed_hop_packets_never_panic() {
    let t = Instant::now();
    let mut rng = SmallRng::seed_from_u64(42);
    let mut tx = LinkTx::new(1, 2, settings(6, 3), Duration::from_millis(2), 9);
    tx.set_loss(0.1, true);
    let mut rx = LinkRx::new(2, 1, Duration::from_millis(2));
    let mut wire = Vec::new();
    for s in 0..60 {
        tx.send(ProtectMode::FecArq, &original(s, 50 + 13 * s as usize), t, &mut wire).unwrap();
    }
    let mut nacks = Vec::new();
    rx.poll(t, &mut nacks);
    let mut sink = Vec::new();
    for round in 0..20_000u32 {
        let base = &wire[rng.random_range(0..wire.len() as u64) as usize];
        let (kind, body) = split(base);
        let mut b = body.to_vec();
        match round % 4 {
            0 => b.truncate(rng.random_range(0..b.len() as u64 + 1) as usize),
            1 => {
                for _ in 0..1 + rng.random_range(0..4) {
                    let i = rng.random_range(0..b.len() as u64) as usize;
                    b[i] ^= 1 << rng.random_range(0..8);
                }
            }
            2 => b = (0..rng.random_range(0..64)).map(|_| rng.next_u64() as u8).collect(),
            _ => {
                let n = HOP_HEADER_LEN.min(b.len());
                b[..n].iter_mut().for_each(|x| *x = rng.next_u64() as u8);
            }
        }
        let kind = if round % 7 == 0 { rng.random_range(0..8) as u8 } else { kind };
        let now = t + Duration::from_micros(u64::from(round));
        let _ = rx.on_packet(kind, &b, now, &mut sink);
        let _ = tx.on_nack(&b, now, &mut sink);
        if round % 100 == 0 {
            rx.poll(now, &mut sink);
            tx.poll(now, &mut sink);
        }
    }
    assert!(rx.stats().malformed > 1000, "{:?}", rx.stats());
}

/// Sends 8 packets of sender `epoch` (sequence numbers from `first`) to `rx` at `at`: 10 hop
/// packets (two groups of 4 with a parity each).
fn epoch_burst(rx: &mut LinkRx, epoch: u32, first: u32, at: Instant, got: &mut Vec<Vec<u8>>) {
    let rtt = Duration::from_millis(2);
    let mut tx = LinkTx::new(1, 2, settings(4, 1), rtt, epoch);
    let mut wire = Vec::new();
    for s in first..first + 8 {
        tx.send(ProtectMode::FecArq, &original(s, 100), at, &mut wire).unwrap();
    }
    for p in &wire {
        let (kind, body) = split(p);
        rx.on_packet(kind, body, at, got).unwrap();
    }
}

/// A restarted sender (new epoch, numbering from 0 again) is followed once the old epoch has
/// gone silent; while an epoch is live, packets of any other are stale, whichever looks newer.
#[test]
fn receiver_follows_a_restarted_sender() {
    let t = Instant::now();
    let ms = Duration::from_millis;
    let mut rx = LinkRx::new(2, 1, Duration::from_millis(2));
    let mut got = Vec::new();
    epoch_burst(&mut rx, 100, 0, t, &mut got);
    epoch_burst(&mut rx, 200, 1000, t + ms(50), &mut got);
    assert_eq!((got.len(), rx.stats().stale), (8, 10), "epoch 100 is live: 200 is stale");
    epoch_burst(&mut rx, 200, 1000, t + ms(300), &mut got);
    assert_eq!((got.len(), rx.stats().resets), (16, 1), "epoch 100 went silent: 200 is followed");
    epoch_burst(&mut rx, 100, 8, t + ms(310), &mut got);
    assert_eq!((got.len(), rx.stats().stale), (16, 20), "a straggler of 100 is stale");
}

/// One forged or stray packet with another epoch, arriving while the link is idle, is
/// followed; it cannot lock out the real sender, which is followed again once it stops.
#[test]
fn a_stray_epoch_does_not_lock_out_the_sender() {
    let t = Instant::now();
    let ms = Duration::from_millis;
    let mut rx = LinkRx::new(2, 1, Duration::from_millis(2));
    let mut got = Vec::new();
    epoch_burst(&mut rx, 1_000, 0, t, &mut got);
    let stray = HopHeader { epoch: 1_000 + (1 << 30), group: 0, index: 1, k: 1, m: 1, flags: 1 };
    let mut p = stray.encode().to_vec();
    p.extend_from_slice(&[0; 40]);
    rx.on_packet(PacketKind::FecParity as u8, &p, t + ms(500), &mut got).unwrap();
    assert_eq!(rx.stats().resets, 1);
    epoch_burst(&mut rx, 1_000, 8, t + ms(600), &mut got);
    assert_eq!((got.len(), rx.stats().stale), (8, 10), "the stray epoch is live for 200 ms");
    epoch_burst(&mut rx, 1_000, 16, t + ms(800), &mut got);
    assert_eq!((got.len(), rx.stats().resets), (16, 2), "the sender is followed again");
}

/// The receiver's loss reports measure the link: the sender's estimate and parity follow the
/// loss actually seen, starting from the upper bound before the first report.
#[test]
fn loss_reports_drive_the_parity() {
    let t0 = Instant::now();
    let rtt = Duration::from_millis(2);
    let fec = FecSettings { max_parity: 8, ..settings(10, 1) };
    let mut tx = LinkTx::new(1, 2, fec, rtt, 9);
    let mut rx = LinkRx::new(2, 1, rtt);
    let mut rng = SmallRng::seed_from_u64(3);
    let mut first_parity = None;
    let (mut wire, mut back, mut got) = (Vec::new(), Vec::new(), Vec::new());
    for s in 0..30_000u32 {
        let now = t0 + Duration::from_micros(100 * u64::from(s));
        first_parity.get_or_insert(tx.stats().parity);
        tx.send(ProtectMode::FecArq, &original(s, 300), now, &mut wire).unwrap();
        tx.poll(now, &mut wire);
        for p in wire.drain(..) {
            if rng.random::<f64>() >= 0.15 {
                let (kind, body) = split(&p);
                let _ = rx.on_packet(kind, body, now, &mut got);
            }
        }
        rx.poll(now, &mut back);
        for p in back.drain(..) {
            let (_, body) = split(&p);
            tx.on_nack(body, now, &mut wire).unwrap();
        }
    }
    let s = tx.stats();
    assert_eq!(first_parity, Some(8), "the upper bound before any report");
    assert!((0.12..0.18).contains(&s.loss), "{s:?}");
    assert_eq!(s.parity, parity_for(s.loss, 10, 1, 8, 1e-2), "{s:?}");
    assert!(s.parity >= 4, "{s:?}");
}

/// A reliable packet of flow `flow`, sequence number `seq`.
fn reliable_original(flow: u32, seq: u32) -> Vec<u8> {
    let mut h = RelayHeader::new(PacketKind::Data, 100, 200, flow, seq);
    h.flags = wecan_common::wire::flags::RELIABLE;
    let mut p = h.to_bytes().to_vec();
    p.extend_from_slice(&seq.to_be_bytes());
    p
}

/// The (flow, sequence number) of the original packet inside a data hop packet, if any.
fn inner_of(p: &[u8]) -> Option<(u32, u32)> {
    let (kind, body) = split(p);
    if kind != PacketKind::Data as u8 {
        return None;
    }
    let (_, unit) = HopHeader::decode(body).ok()?;
    let (_, _, inner) = wire::parse_unit(unit).ok()?;
    let (h, _) = RelayHeader::decode(inner).ok()?;
    Some((h.flow_id(), h.seq()))
}

/// A protected link in virtual time, in 1 ms ticks: `delay_ms` each way; each hop packet is
/// lost when `lose` says so (it sees the tick, the direction (true: toward the receiver) and
/// the packet). Both ends poll every tick, like the agent.
struct SimLink<L> {
    tx: LinkTx,
    rx: LinkRx,
    t0: Instant,
    tick: u64,
    delay_ms: u64,
    lose: L,
    /// (arrival tick, toward the receiver, packet), in arrival order.
    wire: VecDeque<(u64, bool, Vec<u8>)>,
}

impl<L: FnMut(u64, bool, &[u8]) -> bool> SimLink<L> {
    fn new(delay_ms: u64, lose: L) -> Self {
        let rtt = Duration::from_millis(2 * delay_ms);
        let tx = LinkTx::new(1, 2, settings(10, 1), rtt, 7);
        let rx = LinkRx::new(2, 1, rtt);
        Self { tx, rx, t0: Instant::now(), tick: 0, delay_ms, lose, wire: VecDeque::new() }
    }

    fn now(&self) -> Instant {
        self.t0 + Duration::from_millis(self.tick)
    }

    fn put(&mut self, forward: bool, pkts: Vec<Vec<u8>>) {
        for p in pkts {
            if !(self.lose)(self.tick, forward, &p) {
                self.wire.push_back((self.tick + self.delay_ms, forward, p));
            }
        }
    }

    /// Gives `pkt` to the sending end now.
    fn offer(&mut self, mode: ProtectMode, pkt: &[u8]) -> Result<Sent, Refusal> {
        let mut out = Vec::new();
        let r = self.tx.send(mode, pkt, self.now(), &mut out);
        self.put(true, out);
        r
    }

    /// One tick: arrivals at both ends, then their timers. Returns the originals handed on.
    fn step(&mut self) -> Vec<Vec<u8>> {
        let now = self.now();
        let mut delivered = Vec::new();
        let (mut fwd, mut back) = (Vec::new(), Vec::new());
        while self.wire.front().is_some_and(|(at, _, _)| *at <= self.tick) {
            let (_, forward, p) = self.wire.pop_front().unwrap();
            let (kind, body) = split(&p);
            if forward {
                self.rx.on_packet(kind, body, now, &mut delivered).unwrap();
            } else {
                self.tx.on_nack(body, now, &mut fwd).unwrap();
            }
        }
        self.tx.poll(now, &mut fwd);
        self.rx.poll(now, &mut back);
        self.put(true, fwd);
        self.put(false, back);
        self.tick += 1;
        delivered
    }
}

/// (flow, seq) of each original handed on.
fn ids(delivered: &[Vec<u8>]) -> Vec<(u32, u32)> {
    delivered
        .iter()
        .map(|p| RelayHeader::decode(p).map(|(h, _)| (h.flow_id(), h.seq())).unwrap())
        .collect()
}

/// A reliable flow offered far more than its stream's window holds, over a link losing 10 %
/// each way: the backlog takes what the window cannot (back-pressure), every packet is
/// delivered once and in order, and nothing is refused or evicted.
#[test]
fn reliable_overload_is_queued_and_delivered_in_order() {
    let mut rng = SmallRng::seed_from_u64(5);
    let mut link = SimLink::new(10, move |_, _, _| rng.random::<f64>() < 0.10);
    link.tx.reliable =
        streams::Streams::with_limits(streams::Limits { window: 16, ..streams::Limits::default() });
    const N: u32 = 1000;
    for seq in 0..N {
        let want = if seq < 16 { Sent::Now } else { Sent::Queued };
        assert_eq!(link.offer(ProtectMode::Arq, &reliable_original(1, seq)), Ok(want));
    }
    assert_eq!(link.tx.stats().backlog, (N - 16) as usize);
    let mut got = Vec::new();
    while got.len() < N as usize && link.tick < 60_000 {
        got.extend(ids(&link.step()));
    }
    assert_eq!(got, (0..N).map(|s| (1, s)).collect::<Vec<_>>(), "{:?}", link.rx.stats());
    let s = link.tx.stats();
    assert_eq!((s.packets, s.queued, s.refused_full, s.backlog), (1000, 984, 0, 0), "{s:?}");
    assert!(s.retransmissions > 50, "the link lost and ARQ repaired: {s:?}");
    assert_eq!(link.rx.stats().lost, 0);
}

/// Offered faster than the link drains its window and backlog, a reliable flow is refused
/// beyond them, each refusal returned and counted: exactly the refused packets are missing,
/// the rest arrive once and in order.
#[test]
fn reliable_refusals_are_counted_and_are_all_that_is_missing() {
    let mut rng = SmallRng::seed_from_u64(6);
    let mut link = SimLink::new(10, move |_, _, _| rng.random::<f64>() < 0.10);
    let limits = streams::Limits { window: 16, backlog: 64, ..streams::Limits::default() };
    link.tx.reliable = streams::Streams::with_limits(limits);
    let (mut refused, mut got) = (Vec::new(), Vec::new());
    // 5 packets a millisecond: the window drains about 16 per 20 ms round trip.
    for seq in 0..5_000u32 {
        match link.offer(ProtectMode::FecArq, &reliable_original(1, seq)) {
            Ok(_) => {}
            Err(Refusal::Full) => refused.push(seq),
            Err(e) => panic!("{e}"),
        }
        if seq % 5 == 4 {
            got.extend(ids(&link.step()));
        }
    }
    while link.tx.stats().backlog + got.len() < 5_000 - refused.len() && link.tick < 60_000 {
        got.extend(ids(&link.step()));
    }
    for _ in 0..1_000 {
        got.extend(ids(&link.step()));
    }
    let s = link.tx.stats();
    assert!(refused.len() > 3_000, "{s:?}");
    assert_eq!(s.refused_full, refused.len() as u64, "{s:?}");
    assert_eq!(s.packets + s.refused_full, 5_000, "{s:?}");
    let refused: HashSet<u32> = refused.into_iter().collect();
    let want: Vec<(u32, u32)> =
        (0..5_000).filter(|q| !refused.contains(q)).map(|q| (1, q)).collect();
    // (Copies of units FEC already rebuilt arrive as duplicates; none is handed on twice.)
    assert_eq!(got, want, "delivered once, in order, all but the refused");
    assert_eq!((s.backlog, link.rx.stats().lost), (0, 0));
}

/// The default bounds: a burst far beyond a stream's window and backlog is refused beyond
/// them, and the link's budget bounds all its reliable streams together.
#[test]
fn reliable_streams_are_bounded_per_flow_and_per_link() {
    let t = Instant::now();
    let mut tx = LinkTx::new(1, 2, settings(10, 1), Duration::from_millis(20), 7);
    let mut out = Vec::new();
    let mut outcomes = [0; 3];
    for seq in 0..3 * RELIABLE_WINDOW as u32 {
        match tx.send(ProtectMode::Arq, &reliable_original(1, seq), t, &mut out) {
            Ok(Sent::Now) => outcomes[0] += 1,
            Ok(Sent::Queued) => outcomes[1] += 1,
            Err(r) => {
                assert_eq!(r, Refusal::Full);
                outcomes[2] += 1;
            }
        }
    }
    let refused = 3 * RELIABLE_WINDOW - RELIABLE_WINDOW - RELIABLE_BACKLOG;
    assert_eq!(outcomes, [RELIABLE_WINDOW, RELIABLE_BACKLOG, refused]);
    assert_eq!(out.len(), RELIABLE_WINDOW);
    // Sixteen flows fill the link's budget (2,048 packets each); the seventeenth's first packet
    // is refused though its own stream is empty.
    let per_flow = (RELIABLE_WINDOW + RELIABLE_BACKLOG) as u32;
    let flows = RELIABLE_BUDGET as u32 / per_flow;
    for flow in 2..=flows {
        for seq in 0..per_flow {
            tx.send(ProtectMode::Arq, &reliable_original(flow, seq), t, &mut out).unwrap();
        }
    }
    let last = flows + 1;
    let refused = tx.send(ProtectMode::Arq, &reliable_original(last, 0), t, &mut out);
    assert_eq!(refused, Err(Refusal::Full));
    let s = tx.stats();
    assert_eq!((s.packets as usize, s.streams), (RELIABLE_BUDGET, last as usize), "{s:?}");
}

/// With every stream busy, a new flow is refused (counted); once a stream's packets are all
/// acknowledged, the new flow takes it over and continues its sequence numbers, and the
/// receiver delivers both flows whole and in order.
#[test]
fn a_new_flow_takes_over_an_acknowledged_stream() {
    let mut link = SimLink::new(5, |_, _, _| false);
    let limits = streams::Limits { streams: 2, ..streams::Limits::default() };
    link.tx.reliable = streams::Streams::with_limits(limits);
    for seq in 0..10 {
        link.offer(ProtectMode::Arq, &reliable_original(1, seq)).unwrap();
        link.offer(ProtectMode::Arq, &reliable_original(2, seq)).unwrap();
    }
    assert_eq!(link.offer(ProtectMode::Arq, &reliable_original(3, 0)), Err(Refusal::NoStream));
    assert_eq!(link.tx.stats().refused_streams, 1);
    let mut got = Vec::new();
    for _ in 0..100 {
        got.extend(ids(&link.step()));
    }
    assert_eq!(got.len(), 20);
    // Flow 2 keeps offering, so flow 3 takes flow 1's stream, the least recently used.
    link.offer(ProtectMode::Arq, &reliable_original(2, 10)).unwrap();
    for seq in 1..=10 {
        assert_eq!(link.offer(ProtectMode::Arq, &reliable_original(3, seq)), Ok(Sent::Now));
    }
    for _ in 0..100 {
        got.extend(ids(&link.step()));
    }
    let flow = |f: u32| got.iter().filter(|(g, _)| *g == f).map(|(_, s)| *s).collect::<Vec<_>>();
    assert_eq!(
        (flow(1), flow(2), flow(3)),
        ((0..10).collect(), (0..11).collect(), (1..=10).collect())
    );
    assert_eq!(link.rx.stats().streams, 2, "two streams on the wire, three flows");
}

/// Two reliable flows on one link; flow A loses everything for 50 ms (originals and
/// resends), flow B nothing. B's packets are handed on as they arrive, A's wait for their
/// repair: a loss holds back only its own flow.
#[test]
fn a_loss_on_one_reliable_flow_does_not_hold_back_another() {
    const DELAY: u64 = 10;
    let burst = 100..150;
    let mut link = SimLink::new(DELAY, move |tick, forward, p| {
        forward && burst.contains(&tick) && inner_of(p).is_some_and(|(flow, _)| flow == 1)
    });
    let mut sent_at = HashMap::new();
    let mut latency: HashMap<u32, Vec<u64>> = HashMap::new();
    for tick in 0..10_000u64 {
        if tick < 300 {
            for flow in [1, 2] {
                let seq = tick as u32;
                link.offer(ProtectMode::Arq, &reliable_original(flow, seq)).unwrap();
                sent_at.insert((flow, seq), tick);
            }
        }
        for (flow, seq) in ids(&link.step()) {
            latency.entry(flow).or_default().push(tick - sent_at[&(flow, seq)]);
        }
        if latency.values().map(Vec::len).sum::<usize>() == 600 {
            break;
        }
    }
    let (a, b) = (&latency[&1], &latency[&2]);
    assert_eq!((a.len(), b.len()), (300, 300));
    // B: every packet on arrival, one-way delay. A: the first lost packet waits out the
    // burst and its repair (at least 50 ms), and the packets behind it wait with it.
    assert!(b.iter().all(|&l| l == DELAY), "flow B held back: {b:?}");
    let a_max = *a.iter().max().unwrap();
    assert!(a_max >= 50 + DELAY, "flow A's worst latency {a_max} ms");
    assert!(a.iter().filter(|&&l| l > DELAY).count() >= 50);
    let s = link.rx.stats();
    assert_eq!((s.delivered, s.lost, s.streams), (600, 0, 2), "{s:?}");
}

/// A peer sending units for every reliable stream with the first one missing cannot make the
/// receiver hold more than the link's budget; what it leaves out is counted, and a filled gap
/// releases what was held.
#[test]
fn the_receiver_holds_at_most_its_budget() {
    let t = Instant::now();
    let mut rx = LinkRx::new(2, 1, Duration::from_millis(2));
    let mut got = Vec::new();
    let unit = |stream: usize, seq: u32| {
        let mut b = HopHeader::ungrouped(9, hop_flags::ARQ).encode().to_vec();
        b.extend_from_slice(&wire::unit_header(
            StreamId::Reliable(stream),
            arq::Header { seq, age_us: 0 },
        ));
        b.extend_from_slice(&reliable_original(stream as u32, seq));
        b
    };
    let per = RELIABLE_WINDOW as u32 - 1;
    for stream in 0..RELIABLE_STREAMS {
        for seq in 1..=per {
            rx.on_packet(PacketKind::Data as u8, &unit(stream, seq), t, &mut got).unwrap();
        }
    }
    let offered = RELIABLE_STREAMS * per as usize;
    assert!(got.is_empty());
    assert_eq!(rx.stats().held, RELIABLE_BUDGET);
    assert_eq!(rx.stats().over_budget, (offered - RELIABLE_BUDGET) as u64);
    assert_eq!(rx.stats().streams, RELIABLE_STREAMS);
    rx.on_packet(PacketKind::Data as u8, &unit(0, 0), t, &mut got).unwrap();
    assert_eq!(got.len(), 1 + per as usize);
    assert_eq!(rx.stats().held, RELIABLE_BUDGET - per as usize);
    // A stream number beyond the bound is refused as malformed.
    let mut bad = unit(0, 0);
    bad[HOP_HEADER_LEN..HOP_HEADER_LEN + 2]
        .copy_from_slice(&(RELIABLE_STREAMS as u16 + 1).to_be_bytes());
    let err = rx.on_packet(PacketKind::Data as u8, &bad, t, &mut got);
    assert_eq!(err, Err(HopError::BadStream(RELIABLE_STREAMS as u16 + 1)));
}

/// `set_rtt` retimes the streams of both ends: after the RTT drops from 100 to 4 ms, a
/// reliable tail probe goes out after 8 ms, not 200, and a gap is asked for again after 5 ms,
/// not 102.
#[test]
fn set_rtt_retimes_both_ends() {
    let t = Instant::now();
    let ms = |n| t + Duration::from_millis(n);
    let slow = Duration::from_millis(100);
    let mut tx = LinkTx::new(1, 2, settings(10, 1), slow, 7);
    let mut wire = Vec::new();
    tx.send(ProtectMode::Arq, &reliable_original(1, 0), t, &mut wire).unwrap();
    tx.send(ProtectMode::Arq, &reliable_original(1, 1), t, &mut wire).unwrap();
    tx.set_rtt(Duration::from_millis(4));
    let mut probe = Vec::new();
    tx.poll(ms(7), &mut probe);
    assert!(probe.is_empty());
    tx.poll(ms(8), &mut probe);
    assert_eq!(probe.iter().filter_map(|p| inner_of(p)).collect::<Vec<_>>(), [(1, 1)]);

    let mut rx = LinkRx::new(2, 1, slow);
    rx.set_rtt(Duration::from_millis(4));
    let mut got = Vec::new();
    let (_, second) = split(&wire[1]);
    rx.on_packet(PacketKind::Data as u8, second, t, &mut got).unwrap();
    let nacked = |rx: &mut LinkRx, at| {
        let mut out = Vec::new();
        rx.poll(at, &mut out);
        !out.is_empty()
    };
    assert!(nacked(&mut rx, t));
    assert!(!nacked(&mut rx, ms(4)));
    assert!(nacked(&mut rx, ms(5)));
}
