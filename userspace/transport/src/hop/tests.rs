use std::time::{Duration, Instant};

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

/// Splits a hop packet into (kind, relay flags, payload after the relay header).
fn split(p: &[u8]) -> (u8, u8, &[u8]) {
    let (h, body) = RelayHeader::decode(p).unwrap();
    assert_eq!(h.hop_limit, 1);
    assert!([(1, 2), (2, 1)].contains(&(h.src_node(), h.dst_node())));
    assert_ne!(h.flags & flags::HOP, 0);
    (h.kind, h.flags, body)
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
        tx.send(ProtectMode::Fec, p, t, &mut wire);
    }
    assert_eq!(wire.len(), k + m);
    for lost_a in 0..k + m {
        for lost_b in lost_a..k + m {
            let mut rx = LinkRx::new(2, 1, Duration::from_millis(2));
            let mut got = Vec::new();
            for (i, p) in wire.iter().enumerate() {
                if i != lost_a && i != lost_b {
                    let (kind, _, body) = split(p);
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
        tx.send(ProtectMode::Fec, &original(s, 300), t, &mut wire);
    }
    tx.poll(t + Duration::from_millis(4), &mut wire);
    assert_eq!(wire.len(), 3, "still open before the timeout");
    tx.poll(t + Duration::from_millis(5), &mut wire);
    assert_eq!(wire.len(), 5);
    let (kind, _, body) = split(&wire[3]);
    assert_eq!(kind, PacketKind::FecParity as u8);
    let (h, _) = HopHeader::decode(body).unwrap();
    assert_eq!((h.k, h.m, h.index), (3, 2, 3));
    // Lose two of the three data packets: both come back.
    let mut rx = LinkRx::new(2, 1, Duration::from_millis(2));
    let mut got = Vec::new();
    for p in [&wire[1], &wire[3], &wire[4]] {
        let (kind, _, body) = split(p);
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
        tx.send(ProtectMode::Fec, &original(s, 200), t, &mut wire);
    }
    // Parity truncated by one byte: a different length than its sibling.
    let mut rx = LinkRx::new(2, 1, Duration::from_millis(2));
    let mut got = Vec::new();
    let (_, _, p4) = split(&wire[4]);
    let (_, _, p5) = split(&wire[5]);
    rx.on_packet(PacketKind::FecParity as u8, &p4[..p4.len() - 1], t, &mut got).unwrap();
    rx.on_packet(PacketKind::FecParity as u8, p5, t, &mut got).unwrap();
    let (_, _, d2) = split(&wire[2]);
    let (_, _, d3) = split(&wire[3]);
    rx.on_packet(PacketKind::Data as u8, d2, t, &mut got).unwrap();
    rx.on_packet(PacketKind::Data as u8, d3, t, &mut got).unwrap();
    assert_eq!(got.len(), 2, "only the two data packets that arrived");
    assert_eq!(rx.stats().fec_repaired, 0);
    assert!(rx.stats().malformed >= 1);
    // A data unit cut inside its relay header.
    let (_, _, d0) = split(&wire[0]);
    let cut = &d0[..HOP_HEADER_LEN + arq::HEADER_LEN + HEADER_LEN - 1];
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
        tx.send(ProtectMode::FecArq, &original(s, 50 + 13 * s as usize), t, &mut wire);
    }
    let mut nacks = Vec::new();
    rx.poll(t, &mut nacks);
    let mut sink = Vec::new();
    for round in 0..20_000u32 {
        let base = &wire[rng.random_range(0..wire.len() as u64) as usize];
        let (kind, rflags, body) = split(base);
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
        let _ = tx.on_nack(rflags, &b, now, &mut sink);
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
        tx.send(ProtectMode::FecArq, &original(s, 100), at, &mut wire);
    }
    for p in &wire {
        let (kind, _, body) = split(p);
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
        tx.send(ProtectMode::FecArq, &original(s, 300), now, &mut wire);
        tx.poll(now, &mut wire);
        for p in wire.drain(..) {
            if rng.random::<f64>() >= 0.15 {
                let (kind, _, body) = split(&p);
                let _ = rx.on_packet(kind, body, now, &mut got);
            }
        }
        rx.poll(now, &mut back);
        for p in back.drain(..) {
            let (_, rflags, body) = split(&p);
            tx.on_nack(rflags, body, now, &mut wire).unwrap();
        }
    }
    let s = tx.stats();
    assert_eq!(first_parity, Some(8), "the upper bound before any report");
    assert!((0.12..0.18).contains(&s.loss), "{s:?}");
    assert_eq!(s.parity, parity_for(s.loss, 10, 1, 8, 1e-2), "{s:?}");
    assert!(s.parity >= 4, "{s:?}");
}
