use std::{collections::VecDeque, time::Instant};

use rand::{Rng, RngCore, SeedableRng, rngs::SmallRng};

use super::{receiver::Slot, *};

/// Loss process of one direction of the simulated link.
#[derive(Clone, Copy, Debug)]
enum Loss {
    Bernoulli(f64),
    /// Gilbert–Elliott: per-packet chances to enter and leave the bad state, and the loss
    /// rate in each state.
    Bursty {
        to_bad: f64,
        to_good: f64,
        good: f64,
        bad: f64,
    },
}

/// One direction of a link: delay `delay_ms` plus uniform jitter up to `jitter_ms` (so
/// packets reorder when it is not 0), random loss.
struct Link {
    delay_ms: u64,
    jitter_ms: u64,
    loss: Loss,
    bad: bool,
    rng: SmallRng,
    queue: VecDeque<(u64, Vec<u8>)>,
}

impl Link {
    fn new(delay_ms: u64, jitter_ms: u64, loss: Loss, seed: u64) -> Self {
        let (bad, rng, queue) = (false, SmallRng::seed_from_u64(seed), VecDeque::new());
        Self { delay_ms, jitter_ms, loss, bad, rng, queue }
    }

    fn send(&mut self, tick: u64, bytes: Vec<u8>) {
        let lost = match self.loss {
            Loss::Bernoulli(p) => self.rng.random::<f64>() < p,
            Loss::Bursty { to_bad, to_good, good, bad } => {
                let flip = if self.bad { to_good } else { to_bad };
                self.bad ^= self.rng.random::<f64>() < flip;
                self.rng.random::<f64>() < if self.bad { bad } else { good }
            }
        };
        if !lost {
            let at = tick + self.delay_ms + self.rng.random_range(0..self.jitter_ms + 1);
            let pos = self.queue.partition_point(|&(t, _)| t <= at);
            self.queue.insert(pos, (at, bytes));
        }
    }

    fn recv(&mut self, tick: u64) -> Option<Vec<u8>> {
        if self.queue.front()?.0 > tick {
            return None;
        }
        self.queue.pop_front().map(|(_, bytes)| bytes)
    }
}

/// One-way delay of the simulated link; RTT is twice this.
const DELAY_MS: u64 = 10;

struct Run {
    mode: Mode,
    first_seq: u32,
    packets: u64,
    data_loss: Loss,
    nack_loss: Loss,
    seed: u64,
    /// False: NACKs never reach the sender (the no-ARQ baseline).
    arq: bool,
    jitter_ms: u64,
    reorder: Duration,
}

impl Run {
    fn new(mode: Mode, loss: f64) -> Self {
        Self {
            mode,
            first_seq: 0,
            packets: 10_000,
            data_loss: Loss::Bernoulli(loss),
            nack_loss: Loss::Bernoulli(loss),
            seed: 1,
            arq: true,
            jitter_ms: 0,
            reorder: Duration::ZERO,
        }
    }
}

#[derive(Default)]
struct Outcome {
    /// Packet indices in delivery order.
    delivered: Vec<u64>,
    tx: SenderStats,
    rx: ReceiverStats,
    max_buffered: usize,
    first_seq: u32,
    last_seq: u32,
}

impl Outcome {
    fn ratio(&self, packets: u64) -> f64 {
        self.delivered.len() as f64 / packets as f64
    }
}

/// Sends one packet per millisecond of virtual time through a lossy link both ways, polls
/// both ends every millisecond, and checks on the way: no packet delivered twice; Deadline
/// mode, none after its deadline (plus the jitter, which the receiver cannot see), every
/// packet handed on the moment it arrives, and without jitter every original at once (with
/// it, a resend may overtake its original); the sender buffer within its bound.
fn simulate(run: &Run) -> Outcome {
    let mut settings = ArqSettings::for_rtt(run.mode, Duration::from_millis(2 * DELAY_MS));
    settings.first_seq = run.first_seq;
    settings.reorder = run.reorder;
    let budget_ms = settings.deadline.as_millis() as u64;
    let mut tx = Sender::new(settings);
    let mut rx = Receiver::new(settings);
    let mut data = Link::new(DELAY_MS, run.jitter_ms, run.data_loss, run.seed);
    let mut nacks = Link::new(DELAY_MS, run.jitter_ms, run.nack_loss, !run.seed);
    let frame = |h: Header, payload: &[u8]| [&h.encode()[..], payload].concat();
    let t0 = Instant::now();
    let mut out = Outcome::default();
    let mut seen = vec![false; run.packets as usize];
    for tick in 0..run.packets + 120_000 {
        let now = t0 + Duration::from_millis(tick);
        if tick < run.packets {
            // Packet index ‖ send tick ‖ filler.
            let payload = [tick.to_le_bytes(), tick.to_le_bytes(), [0xab; 8]].concat();
            let h = tx.sent(&payload, now).expect("one packet per ms never fills the buffer");
            if tick == 0 {
                out.first_seq = h.seq;
            }
            out.last_seq = h.seq;
            data.send(tick, frame(h, &payload));
        }
        while let Some(bytes) = data.recv(tick) {
            let (h, payload) = Header::decode(&bytes).unwrap();
            let got = rx.on_packet(h, payload, now);
            if run.mode == Mode::Deadline {
                // Handed on as it arrives, or not at all; an original (never late on this
                // link, never duplicated on a FIFO link) always, whatever gap precedes it.
                assert!(got.is_empty() || got == [payload], "tick {tick}");
                if h.age_us == 0 && run.jitter_ms == 0 {
                    assert_eq!(got, [payload], "original seq {} held back", h.seq);
                }
            }
            for p in got {
                let index = u64::from_le_bytes(p[..8].try_into().unwrap());
                let sent = u64::from_le_bytes(p[8..16].try_into().unwrap());
                assert!(!seen[index as usize], "packet {index} delivered twice");
                seen[index as usize] = true;
                if run.mode == Mode::Deadline {
                    let due = sent + budget_ms + run.jitter_ms;
                    assert!(tick <= due, "packet {index} delivered at {tick}");
                }
                out.delivered.push(index);
            }
        }
        while let Some(bytes) = nacks.recv(tick) {
            let nack = Nack::decode(&bytes).unwrap();
            if run.arq {
                for (h, payload) in tx.on_nack(&nack, now) {
                    data.send(tick, frame(h, &payload));
                }
            }
        }
        if let Some(nack) = rx.poll_nack(now) {
            nacks.send(tick, nack.encode());
        }
        tx.expire(now);
        if let Some((h, payload)) = tx.poll_probe(now) {
            data.send(tick, frame(h, &payload));
        }
        let buffered = tx.stats().buffered;
        assert!(buffered <= settings.buffer_packets);
        out.max_buffered = out.max_buffered.max(buffered);
        let finished = match run.mode {
            Mode::Reliable => out.delivered.len() as u64 == run.packets && buffered == 0,
            Mode::Deadline => tick >= run.packets + budget_ms + 2 * DELAY_MS,
        };
        if tick >= run.packets && finished {
            break;
        }
    }
    out.tx = tx.stats();
    out.rx = rx.stats();
    out
}

fn report(name: &str, run: &Run, o: &Outcome) {
    println!(
        "{name}: delivered {}/{} ({:.3} %), resent {}, NACKs {}, recovered {}, late {}, \
         given up {}, duplicates {}, expired {}, max buffered {}",
        o.delivered.len(),
        run.packets,
        100.0 * o.ratio(run.packets),
        o.tx.resent,
        o.rx.nacks,
        o.rx.recovered,
        o.rx.late,
        o.rx.given_up,
        o.rx.duplicates,
        o.tx.expired,
        o.max_buffered,
    );
}

const BURSTS: Loss = Loss::Bursty { to_bad: 0.01, to_good: 0.2, good: 0.01, bad: 0.5 };

fn assert_reliable(run: &Run) -> Outcome {
    let o = simulate(run);
    let expected: Vec<u64> = (0..run.packets).collect();
    assert!(o.delivered == expected, "{:?}: not every packet once and in order", run.data_loss);
    assert_eq!(o.rx.delivered, run.packets);
    assert_eq!(o.rx.received, o.rx.delivered + o.rx.duplicates);
    assert_eq!((o.rx.given_up, o.rx.late, o.tx.dropped_full, o.tx.buffered), (0, 0, 0, 0));
    o
}

#[test]
fn reliable_mode_delivers_everything_once_in_order() {
    for loss in [0.05, 0.2] {
        let run = Run::new(Mode::Reliable, loss);
        let o = assert_reliable(&run);
        report(&format!("reliable, {}% loss both ways", loss * 100.0), &run, &o);
        assert!(o.rx.recovered > 0);
    }
    let run = Run { data_loss: BURSTS, nack_loss: BURSTS, ..Run::new(Mode::Reliable, 0.0) };
    report("reliable, Gilbert-Elliott bursts both ways", &run, &assert_reliable(&run));
}

#[test]
fn deadline_mode_repairs_in_time_and_never_late() {
    let run = Run::new(Mode::Deadline, 0.05);
    let with = simulate(&run);
    let without = simulate(&Run { arq: false, ..Run::new(Mode::Deadline, 0.05) });
    report("deadline, 5% loss both ways, ARQ", &run, &with);
    report("deadline, 5% loss both ways, no ARQ", &run, &without);
    assert!((0.94..0.96).contains(&without.ratio(run.packets)));
    assert!(with.ratio(run.packets) >= 0.995, "{}", with.ratio(run.packets));
    // Arrival order: only originals and in-time repairs are handed on, at once.
    assert_eq!(with.rx.received, with.rx.delivered + with.rx.duplicates + with.rx.late);
    assert_eq!(with.rx.delivered, with.delivered.len() as u64);
    assert!(with.rx.given_up > 0 && with.tx.expired > 0);

    for (name, loss) in [("20% loss", Loss::Bernoulli(0.2)), ("bursts", BURSTS)] {
        let run = Run { data_loss: loss, nack_loss: loss, ..Run::new(Mode::Deadline, 0.0) };
        report(&format!("deadline, {name} both ways, ARQ"), &run, &simulate(&run));
    }
}

#[test]
fn sequence_numbers_wrap() {
    for mode in [Mode::Reliable, Mode::Deadline] {
        let run = Run { first_seq: u32::MAX - 500, seed: 7, ..Run::new(mode, 0.05) };
        let o = if mode == Mode::Reliable { assert_reliable(&run) } else { simulate(&run) };
        report(&format!("{mode:?}, 5% loss, wrapping"), &run, &o);
        assert_eq!(o.first_seq, u32::MAX - 500);
        assert_eq!(o.last_seq, run.first_seq.wrapping_add(run.packets as u32 - 1));
        assert!(o.last_seq < o.first_seq);
        assert!(o.ratio(run.packets) >= 0.995);
    }
}

#[test]
fn jitter_and_reordering() {
    // Up to 8 ms of jitter each way reorders packets: asked for at once, many gaps are
    // just late originals, so resends are spurious (duplicates); allowing 8 ms of reordering
    // avoids most of them. Either way delivery stays exactly once, and in order in Reliable
    // mode. Deadline mode estimates the one-way delay as RTT/2, so a delivery can trail the
    // true deadline by at most the jitter.
    for mode in [Mode::Reliable, Mode::Deadline] {
        let mut duplicates = Vec::new();
        for reorder in [0, 8] {
            let reorder = Duration::from_millis(reorder);
            let run = Run { jitter_ms: 8, seed: 3, reorder, ..Run::new(mode, 0.05) };
            let o = if mode == Mode::Reliable { assert_reliable(&run) } else { simulate(&run) };
            report(&format!("{mode:?}, 5% loss, 0-8 ms jitter, {reorder:?}"), &run, &o);
            assert!(o.ratio(run.packets) >= 0.99);
            duplicates.push(o.rx.duplicates);
        }
        assert!(duplicates[1] * 5 < duplicates[0], "{duplicates:?}");
    }
}

/// A valid NACK: ranges in order from cum_ack, at least 64 apart, bit 0 set.
fn random_nack(rng: &mut SmallRng) -> Nack {
    let cum_ack = rng.next_u64() as u32;
    let mut first = cum_ack.wrapping_add(rng.random_range(0..1000) as u32);
    let ranges = (0..rng.random_range(0..MAX_NACK_RANGES as u64 + 1))
        .map(|_| {
            let range = (first, rng.next_u64() | 1);
            first = first.wrapping_add(64 + rng.random_range(0..5000) as u32);
            range
        })
        .collect();
    Nack { cum_ack, ranges }
}

#[test]
fn nack_round_trips_and_garbage_never_panics() {
    let mut rng = SmallRng::seed_from_u64(0xac);
    for _ in 0..2000 {
        let nack = random_nack(&mut rng);
        let bytes = nack.encode();
        assert_eq!(bytes.len(), NACK_FIXED_LEN + nack.ranges.len() * NACK_RANGE_LEN);
        assert_eq!(Nack::decode(&bytes), Ok(nack));
    }
    let (mut ok, mut err) = (0, 0);
    for _ in 0..2000 {
        // Pure noise, or a valid NACK truncated, extended or with a byte flipped.
        let mut bytes = random_nack(&mut rng).encode();
        match rng.random_range(0..4) {
            0 => {
                let len = rng.random_range(0..800) as usize;
                bytes = (0..len).map(|_| rng.random::<u8>()).collect::<Vec<u8>>();
            }
            1 => bytes.truncate(rng.random_range(0..bytes.len() as u64 + 1) as usize),
            2 => {
                let len = 1 + rng.random_range(0..20) as usize;
                bytes.extend((0..len).map(|_| rng.random::<u8>()).collect::<Vec<u8>>());
            }
            _ => {
                let at = rng.random_range(0..bytes.len() as u64) as usize;
                bytes[at] ^= 1 << rng.random_range(0..8);
            }
        }
        let result = std::panic::catch_unwind(|| Nack::decode(&bytes));
        match result.expect("decode panicked") {
            Ok(nack) => {
                ok += 1;
                assert_eq!(nack.encode(), bytes);
            }
            Err(_) => err += 1,
        }
    }
    assert!(ok > 100 && err > 100, "{ok} ok, {err} errors");
}

#[test]
fn bad_messages_are_errors() {
    let nack = |cum_ack, ranges: &[(u32, u64)]| Nack { cum_ack, ranges: ranges.to_vec() };
    assert_eq!(Nack::decode(&[0; 5]), Err(ArqError::Truncated { need: 6, have: 5 }));
    let mut two = nack(10, &[(10, 1), (74, 3)]).encode();
    assert_eq!(Nack::decode(&two[..29]), Err(ArqError::Truncated { need: 30, have: 29 }));
    two.push(0);
    assert_eq!(Nack::decode(&two), Err(ArqError::Oversized { len: 31, expected: 30 }));
    let mut many = nack(0, &[]).encode();
    many[4..6].copy_from_slice(&65u16.to_be_bytes());
    assert_eq!(Nack::decode(&many), Err(ArqError::TooManyRanges(65)));
    let bad = |index, first, bitmap| Err(ArqError::BadRange { index, first, bitmap });
    // Bit 0 clear; behind cum_ack; overlapping; reaching 2^31 past cum_ack.
    assert_eq!(Nack::decode(&nack(10, &[(10, 2)]).encode()), bad(0, 10, 2));
    assert_eq!(Nack::decode(&nack(10, &[(9, 1)]).encode()), bad(0, 9, 1));
    assert_eq!(Nack::decode(&nack(10, &[(10, 1), (73, 1)]).encode()), bad(1, 73, 1));
    let far = 10 + HALF - 63;
    assert_eq!(Nack::decode(&nack(10, &[(far, 1)]).encode()), bad(0, far, 1));
    // Valid across the wrap, and a pure ack.
    let wrapping = nack(u32::MAX - 3, &[(u32::MAX, 5), (63, 1)]);
    assert_eq!(Nack::decode(&wrapping.encode()), Ok(wrapping));
    assert_eq!(Nack::decode(&nack(7, &[]).encode()), Ok(nack(7, &[])));
    // Encode writes at most MAX_NACK_RANGES ranges.
    let long = Nack { cum_ack: 0, ranges: (0..100).map(|i| (i * 64, 1)).collect() };
    assert_eq!(Nack::decode(&long.encode()).unwrap().ranges, long.ranges[..64]);

    let h = Header { seq: 0xdead_beef, age_us: 12_345 };
    let packet = [&h.encode()[..], b"payload"].concat();
    assert_eq!(Header::decode(&packet), Ok((h, &b"payload"[..])));
    assert_eq!(Header::decode(&packet[..8]), Ok((h, &[][..])));
    assert_eq!(Header::decode(&packet[..7]), Err(ArqError::Truncated { need: 8, have: 7 }));
    assert!(ArqError::TooManyRanges(65).to_string().contains("more than the 64"));
}

fn ms(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

fn settings(mode: Mode) -> ArqSettings {
    ArqSettings::for_rtt(mode, Duration::from_millis(20))
}

fn header(seq: u32) -> Header {
    Header { seq, age_us: 0 }
}

#[test]
fn receiver_asks_compactly_and_re_asks_every_retry() {
    let t0 = Instant::now();
    let mut rx = Receiver::new(ArqSettings { max_nack_ranges: 2, ..settings(Mode::Reliable) });
    for seq in [0, 2, 3, 70, 200] {
        rx.on_packet(header(seq), &[seq as u8], t0);
    }
    // Gaps 1, 4..=69, 71..=199: three ranges, two per NACK, asked for at once.
    let all_but = |first: u32, last: u32, except: &[u32]| {
        (first..=last).filter(|s| !except.contains(s)).fold(0u64, |b, s| b | 1 << (s - first))
    };
    let first = rx.poll_nack(t0).unwrap();
    assert_eq!(first.cum_ack, 1);
    assert_eq!(first.ranges, [(1, all_but(1, 64, &[2, 3])), (65, all_but(65, 128, &[70]))]);
    let second = rx.poll_nack(t0).unwrap();
    assert_eq!(second.ranges, [(129, u64::MAX), (193, 0x7f)]);
    assert_eq!(rx.poll_nack(t0), None);
    // Nothing again before the retry interval (22 ms at 20 ms RTT), everything after it.
    assert_eq!(rx.poll_nack(ms(t0, 21)), None);
    rx.on_packet(header(1), &[1], ms(t0, 21));
    let again = rx.poll_nack(ms(t0, 22)).unwrap();
    assert_eq!(again.cum_ack, 4);
    assert_eq!(again.ranges[0], (4, all_but(4, 67, &[])));
    assert_eq!(rx.stats().recovered, 1);
    assert_eq!(rx.stats().delivered, 4);
    let stats = rx.stats();
    assert_eq!((stats.received, stats.nacks), (6, 3));
}

#[test]
fn deadline_receiver_stops_asking_in_time_and_drops_late_packets() {
    let t0 = Instant::now();
    // RTT 20 ms, deadline 55 ms: a gap revealed by a fresh packet is due 45 ms after its
    // arrival (55 − RTT/2), asked for until 20 ms before that, given up after it.
    let mut rx = Receiver::new(settings(Mode::Deadline));
    assert_eq!(rx.on_packet(header(0), b"a", t0), [b"a"]);
    assert_eq!(rx.on_packet(header(2), b"c", t0), [b"c"]);
    assert_eq!(rx.poll_nack(t0).unwrap().ranges, [(1, 1)]);
    assert_eq!(rx.poll_nack(ms(t0, 22)).unwrap().ranges, [(1, 1)]);
    assert_eq!(rx.poll_nack(ms(t0, 44)), None);
    assert_eq!(rx.poll_nack(ms(t0, 45)), None);
    assert_eq!(rx.stats().given_up, 0);
    let nack = rx.poll_nack(ms(t0, 46));
    assert_eq!(rx.stats().given_up, 1);
    // The give-up moves the cumulative ack, but Deadline mode sends no pure acks.
    assert_eq!(nack, None);
    // The repair arriving now is late, a duplicate of 2 is a duplicate.
    assert_eq!(rx.on_packet(Header { seq: 1, age_us: 46_000 }, b"b", ms(t0, 46)).len(), 0);
    assert_eq!(rx.on_packet(header(2), b"c", ms(t0, 46)).len(), 0);
    // A repair 45 ms old has 0 ms left after RTT/2: delivered; 45.001 ms: late.
    rx.on_packet(header(5), b"f", ms(t0, 50));
    let age = |us| Header { seq: 3, age_us: us };
    assert_eq!(rx.on_packet(age(45_001), b"d", ms(t0, 50)).len(), 0);
    assert_eq!(rx.on_packet(Header { seq: 4, age_us: 45_000 }, b"e", ms(t0, 50)), [b"e"]);
    let stats = rx.stats();
    assert_eq!((stats.late, stats.duplicates, stats.delivered), (2, 1, 4));
    assert_eq!(stats.received, stats.late + stats.duplicates + stats.delivered);
}

#[test]
fn sender_resends_rate_limited_and_only_in_time() {
    let t0 = Instant::now();
    let mut tx = Sender::new(settings(Mode::Deadline));
    for i in 0..3u8 {
        assert_eq!(tx.sent(&[i], ms(t0, u64::from(i))), Ok(header(u32::from(i))));
    }
    let nack = Nack { cum_ack: 0, ranges: vec![(0, 0b101), (1, 1)] };
    // Not within RTT/2 of the original send.
    assert!(tx.on_nack(&nack, ms(t0, 9)).is_empty());
    let resent = tx.on_nack(&nack, ms(t0, 12));
    let h = |seq, age_ms: u32| Header { seq, age_us: age_ms * 1000 };
    assert_eq!(resent, [(h(0, 12), vec![0]), (h(2, 10), vec![2]), (h(1, 11), vec![1])]);
    assert!(tx.on_nack(&nack, ms(t0, 21)).is_empty());
    // At 46 ms a resend of seq 0 (46 ms old) would arrive after 55 ms; 1 and 2 still make it.
    let in_time = tx.on_nack(&nack, ms(t0, 46));
    assert_eq!(in_time.iter().map(|(h, _)| h.seq).collect::<Vec<_>>(), [2, 1]);
    tx.expire(ms(t0, 46));
    assert_eq!(tx.stats().expired, 1);
    assert_eq!(tx.stats().buffered, 2);
    // Unknown and acknowledged sequence numbers are ignored; cum_ack frees the buffer.
    let ack = Nack { cum_ack: 2, ranges: vec![(1, 1), (100, 1)] };
    assert!(tx.on_nack(&ack, ms(t0, 80)).is_empty());
    assert_eq!(tx.stats().buffered, 1);
    // A cum_ack past the newest packet is bogus and frees nothing.
    tx.on_nack(&Nack { cum_ack: 9, ranges: vec![] }, ms(t0, 80));
    let stats = tx.stats();
    assert_eq!((stats.sent, stats.resent, stats.buffered), (3, 5, 1));
}

#[test]
fn reliable_tail_loss_is_probed_with_backoff() {
    let t0 = Instant::now();
    let mut tx = Sender::new(settings(Mode::Reliable));
    let mut rx = Receiver::new(settings(Mode::Reliable));
    let (h0, h1) = (tx.sent(b"x", t0).unwrap(), tx.sent(b"y", t0).unwrap());
    assert_eq!(rx.on_packet(h0, b"x", ms(t0, 10)), [b"x"]);
    // Packet 1 is lost and nothing follows: the receiver cannot know. Its ack of 0 is lost
    // too. The sender probes with packet 1 after 2 RTT, then after 4, 8 RTT.
    assert_eq!(rx.poll_nack(ms(t0, 10)).map(|n| n.cum_ack), Some(1));
    assert_eq!(tx.poll_probe(ms(t0, 39)), None);
    assert_eq!(tx.poll_probe(ms(t0, 40)), Some((Header { seq: 1, age_us: 40_000 }, b"y".into())));
    assert_eq!(tx.poll_probe(ms(t0, 119)), None);
    let (probe, payload) = tx.poll_probe(ms(t0, 120)).unwrap();
    assert_eq!(probe.seq, h1.seq);
    assert_eq!(tx.poll_probe(ms(t0, 279)), None);
    assert_eq!(rx.on_packet(probe, &payload, ms(t0, 130)), [b"y"]);
    // The receiver acks after RTT/4 since its last NACK; that frees the sender.
    let ack = rx.poll_nack(ms(t0, 130)).unwrap();
    assert_eq!(ack, Nack { cum_ack: 2, ranges: vec![] });
    tx.on_nack(&ack, ms(t0, 140));
    assert_eq!(tx.stats().buffered, 0);
    assert_eq!(tx.poll_probe(ms(t0, 1000)), None);
    // A duplicate means the sender missed our ack: ack again though nothing moved.
    assert_eq!(rx.on_packet(probe, &payload, ms(t0, 140)).len(), 0);
    assert_eq!(rx.poll_nack(ms(t0, 140)), Some(Nack { cum_ack: 2, ranges: vec![] }));
    assert_eq!(rx.poll_nack(ms(t0, 200)), None);
    // No probes in Deadline mode: nothing acknowledges there.
    let mut tx = Sender::new(settings(Mode::Deadline));
    tx.sent(b"x", t0).unwrap();
    assert_eq!(tx.poll_probe(ms(t0, 50)), None);
}

/// New timers apply from the moment they are set: the receiver's retry interval, the sender's
/// resend rate limit and tail probe, and the deadline both ends judge by.
#[test]
fn timers_follow_a_new_rtt() {
    let t0 = Instant::now();
    let slow = settings(Mode::Reliable);
    let fast = ArqSettings::for_rtt(Mode::Reliable, Duration::from_millis(4));
    let mut rx = Receiver::new(slow);
    rx.on_packet(header(1), b"b", t0);
    assert_eq!(rx.poll_nack(t0).unwrap().ranges, [(0, 1)]);
    // Asked at 0 with a 22 ms retry interval: the next ask stays due at 22 ms.
    rx.set_timers(&fast);
    assert_eq!(rx.poll_nack(ms(t0, 21)), None);
    assert_eq!(rx.poll_nack(ms(t0, 22)).unwrap().ranges, [(0, 1)]);
    // From then on every 5 ms (4 ms + 1 ms slack), not 22.
    assert_eq!(rx.poll_nack(ms(t0, 26)), None);
    assert_eq!(rx.poll_nack(ms(t0, 27)).unwrap().ranges, [(0, 1)]);

    let mut tx = Sender::new(slow);
    tx.sent(b"a", t0).unwrap();
    tx.set_timers(&fast);
    // Tail probe after 2 × 4 ms instead of 2 × 20 ms; resends 2 ms apart instead of 10.
    assert_eq!(tx.poll_probe(ms(t0, 7)), None);
    assert!(tx.poll_probe(ms(t0, 8)).is_some());
    let nack = Nack { cum_ack: 0, ranges: vec![(0, 1)] };
    assert!(tx.on_nack(&nack, ms(t0, 9)).is_empty());
    assert_eq!(tx.on_nack(&nack, ms(t0, 10)).len(), 1);

    // Deadline mode: 55 ms at 20 ms RTT, 15 ms at 4 ms: a 14 ms old packet (+ RTT/2) is late.
    let mut rx = Receiver::new(settings(Mode::Deadline));
    let old = Header { seq: 0, age_us: 14_000 };
    assert_eq!(rx.on_packet(old, b"a", t0).len(), 1);
    rx.set_timers(&ArqSettings::for_rtt(Mode::Deadline, Duration::from_millis(4)));
    assert_eq!(rx.on_packet(Header { seq: 1, ..old }, b"b", t0).len(), 0);
    assert_eq!(rx.stats().late, 1);
}

#[test]
fn buffers_are_bounded() {
    let t0 = Instant::now();
    // Deadline mode: a full buffer evicts its oldest packet, counted.
    let mut tx = Sender::new(ArqSettings { buffer_packets: 16, ..settings(Mode::Deadline) });
    for i in 0..1000u32 {
        assert_eq!(tx.sent(&i.to_le_bytes(), t0).map(|h| h.seq), Ok(i));
        assert!(tx.stats().buffered <= 16);
    }
    assert!(tx.is_full());
    assert_eq!(tx.stats().dropped_full, 1000 - 16);
    // The evicted ones are gone; the buffered ones are still there.
    let nack = Nack { cum_ack: 0, ranges: vec![(980, 1 | 1 << 19)] };
    let resent = tx.on_nack(&nack, ms(t0, 30));
    assert_eq!(resent, [(Header { seq: 999, age_us: 30_000 }, 999u32.to_le_bytes().into())]);

    // Reliable mode: a full buffer refuses and evicts nothing; an ack makes room.
    let mut tx = Sender::new(ArqSettings { buffer_packets: 16, ..settings(Mode::Reliable) });
    for i in 0..16u32 {
        assert_eq!(tx.sent(&i.to_le_bytes(), t0).map(|h| h.seq), Ok(i));
    }
    assert!(tx.is_full());
    assert_eq!(tx.sent(b"17th", t0), Err(BufferFull));
    assert_eq!((tx.stats().sent, tx.stats().dropped_full, tx.stats().buffered), (16, 0, 16));
    let resent = tx.on_nack(&Nack { cum_ack: 0, ranges: vec![(0, 1)] }, ms(t0, 30));
    assert_eq!(resent, [(Header { seq: 0, age_us: 30_000 }, 0u32.to_le_bytes().into())]);
    tx.on_nack(&Nack { cum_ack: 3, ranges: vec![] }, ms(t0, 40));
    assert!(!tx.is_full());
    assert_eq!(tx.sent(b"17th", ms(t0, 40)).map(|h| h.seq), Ok(16));
    assert_eq!(tx.stats().buffered, 14);
    // Deadline mode expires before evicting: a paced flow never overflows.
    let mut tx = Sender::new(ArqSettings { buffer_packets: 50, ..settings(Mode::Deadline) });
    for i in 0..1000 {
        tx.sent(b"p", ms(t0, i)).unwrap();
    }
    // At 999 ms the packets of the last 45 ms (age + RTT/2 <= 55 ms) are kept.
    assert_eq!((tx.stats().dropped_full, tx.stats().expired, tx.stats().buffered), (0, 954, 46));

    // Reliable receiver: a gap that never fills is skipped once the window overflows, and
    // the held packets go on in order.
    let mut rx = Receiver::new(ArqSettings { buffer_packets: 8, ..settings(Mode::Reliable) });
    let mut delivered = Vec::new();
    for seq in 1..=20u32 {
        delivered.extend(rx.on_packet(header(seq), &[seq as u8], t0));
        assert!(rx.slots.len() <= 8);
        if seq == 7 {
            // 0 missing, 1..=7 held: the window is full.
            assert!(delivered.is_empty());
            assert_eq!(rx.stats().held, 7);
            assert!(!rx.would_hold(0), "the gap itself is delivered at once");
            assert!(!rx.would_hold(5), "a duplicate is not held again");
            assert!(rx.would_hold(8));
        }
    }
    assert_eq!(delivered, (1..=20u8).map(|s| vec![s]).collect::<Vec<_>>());
    assert_eq!((rx.stats().given_up, rx.stats().held), (1, 0));
    // A far jump keeps the window at 8 and counts what it skips.
    rx.on_packet(header(1_000_000), b"j", t0);
    assert_eq!(rx.slots.len(), 8);
    assert_eq!(rx.missing, 7);
    assert_eq!(rx.stats().given_up, 1 + (1_000_000 - 21 - 7));
    assert_eq!(rx.stats().delivered, 20);
}

#[test]
fn random_inputs_never_panic_and_stay_bounded() {
    let t0 = Instant::now();
    let mut rng = SmallRng::seed_from_u64(0xbad);
    for mode in [Mode::Deadline, Mode::Reliable] {
        let s = ArqSettings { buffer_packets: 64, first_seq: u32::MAX - 5, ..settings(mode) };
        let mut tx = Sender::new(s);
        let mut rx = Receiver::new(s);
        let mut now = t0;
        for _ in 0..20_000 {
            now += Duration::from_micros(rng.random_range(0..3000));
            // Mostly near the window, sometimes anywhere; ages anything.
            let seq = match rng.random_range(0..8) {
                0 => rng.next_u64() as u32,
                _ => rx.base.wrapping_add(rng.random_range(0..100) as u32).wrapping_sub(20),
            };
            let age_us = if rng.random::<f64>() < 0.5 { 0 } else { rng.next_u64() as u32 };
            rx.on_packet(Header { seq, age_us }, b"p", now);
            assert!(rx.slots.len() <= 64);
            let missing = rx.slots.iter().filter(|s| matches!(s, Slot::Missing(_))).count();
            assert_eq!(rx.missing, missing);
            if let Some(nack) = rx.poll_nack(now) {
                assert!(nack.ranges.len() <= 16);
                assert_eq!(Nack::decode(&nack.encode()), Ok(nack.clone()));
                tx.on_nack(&nack, now);
            }
            // Reliable mode refuses once full (asserted below: never more than the window).
            let _ = tx.sent(b"q", now);
            let junk = Nack {
                cum_ack: rng.next_u64() as u32,
                ranges: vec![(rng.next_u64() as u32, rng.next_u64())],
            };
            tx.on_nack(&junk, now);
            tx.expire(now);
            tx.poll_probe(now);
            assert!(tx.stats().buffered <= 64);
        }
    }
    // Extreme settings are clamped, not trusted.
    let s = ArqSettings {
        rtt: Duration::ZERO,
        deadline: Duration::MAX,
        buffer_packets: 0,
        max_nack_ranges: usize::MAX,
        ..settings(Mode::Deadline)
    };
    let (mut tx, mut rx) = (Sender::new(s), Receiver::new(s));
    tx.sent(b"a", t0).unwrap();
    tx.sent(b"b", t0).unwrap();
    assert_eq!(tx.stats().buffered, 1);
    rx.on_packet(header(5), b"x", t0);
    assert_eq!(rx.slots.len(), 0);
    let huge = ArqSettings::for_rtt(Mode::Deadline, Duration::MAX);
    Receiver::new(huge).on_packet(Header { seq: 0, age_us: u32::MAX }, b"x", t0);
}
