//! The hop and ARQ wire decoders on arbitrary bytes (accepted input encodes back to the same
//! bytes), then the same bytes read as a short script of steps between the two ends of a
//! protected link: real traffic with losses, replays, corruptions and arbitrary packets into
//! both ends. Neither end may panic, hand on anything but a valid relay packet, hand on more
//! than it took in, or grow its state out of proportion.
#![no_main]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicUsize, Ordering::Relaxed},
    time::{Duration, Instant},
};

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use wecan_common::wire::{HEADER_LEN, PacketKind, RelayHeader, flags};
use wecan_transport::{
    arq,
    hop::{FecSettings, HOP_HEADER_LEN, HopHeader, LinkRx, LinkTx, ProtectMode, RELIABLE_STREAMS},
};

/// Counts live heap bytes and their peak, so the target can bound what the ends keep.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
            PEAK.fetch_max(live, Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Most steps of one input: enough to fill and repair groups, short enough to run fast.
const MAX_STEPS: usize = 64;
/// Hop packets kept for replays.
const HISTORY: usize = 32;
/// Heap the two ends may grow by within one input. A few dozen packets need well under a
/// megabyte; this catches windows, groups or codecs allocated out of proportion.
const HEAP_LIMIT: usize = 32 << 20;
/// Most hop packets one receiver poll may emit: a loss report and, per ARQ stream (deadline
/// and reliable ones), its NACKs twice each.
const MAX_POLL_OUT: usize = 1 + 2 * arq::MAX_NACK_RANGES * (1 + RELIABLE_STREAMS);

#[derive(Arbitrary, Debug)]
enum Step {
    /// An original packet of flow `flow` (of a few) and `len` bytes through the sending end;
    /// hop packet `i` of what it emits is lost when bit `i` of `lose` is set.
    Send { reliable: bool, flow: u8, mode: u8, len: u16, lose: u16 },
    /// A hop packet sent earlier, again (duplicate, reordered), with byte `at` xored by `xor`.
    Replay { which: u8, at: u16, xor: u8 },
    /// Arbitrary bytes into the receiving end as a hop packet of `kind`.
    Raw { kind: u8, body: Vec<u8> },
    /// Arbitrary bytes into the sending end as a NACK or loss report.
    Feedback { body: Vec<u8> },
    /// Time passes: both ends run their timers; the receiver's NACKs and reports reach the
    /// sender.
    Wait { ms: u8 },
}

fuzz_target!(|data: &[u8]| {
    decoders(data);
    let mut script = Unstructured::new(data);
    let Ok(steps) = script.arbitrary_iter::<Step>() else { return };
    let start = LIVE.load(Relaxed);
    PEAK.store(start, Relaxed);
    link(steps.take(MAX_STEPS).map_while(Result::ok));
    assert!(
        PEAK.load(Relaxed) - start <= HEAP_LIMIT,
        "the link ends grew the heap by {} bytes",
        PEAK.load(Relaxed) - start
    );
});

fn decoders(data: &[u8]) {
    if let Ok((h, rest)) = HopHeader::decode(data) {
        assert_eq!(h.encode()[..], data[..HOP_HEADER_LEN]);
        assert_eq!(rest.len(), data.len() - HOP_HEADER_LEN);
        assert_eq!(HopHeader::decode(&h.encode()), Ok((h, &[][..])));
    }
    if let Ok((h, rest)) = arq::Header::decode(data) {
        assert_eq!(h.encode()[..], data[..arq::HEADER_LEN]);
        assert_eq!(rest.len(), data.len() - arq::HEADER_LEN);
        assert_eq!(arq::Header::decode(&h.encode()), Ok((h, &[][..])));
    }
    if let Ok(nack) = arq::Nack::decode(data) {
        assert!(nack.ranges.len() <= arq::MAX_NACK_RANGES);
        // Decoding checks the exact length, so an accepted NACK is its own encoding.
        assert_eq!(nack.encode(), data);
    }
}

fn link(steps: impl Iterator<Item = Step>) {
    let rtt = Duration::from_millis(2);
    let mut now = Instant::now();
    let mut tx = LinkTx::new(1, 2, FecSettings::default(), rtt, 7);
    let mut rx = LinkRx::new(2, 1, rtt);
    let mut history: Vec<Vec<u8>> = Vec::new();
    let mut delivered = Vec::new();
    let mut seq = 0u32;
    for step in steps {
        let mut wire = Vec::new();
        match step {
            Step::Send { reliable, flow, mode, len, lose } => {
                let flow = u32::from(flow % 4);
                let mut hdr = RelayHeader::new(PacketKind::Data, 100, 200, flow, seq);
                hdr.flags = if reliable { flags::RELIABLE } else { 0 };
                seq = seq.wrapping_add(1);
                let mut pkt = hdr.to_bytes().to_vec();
                pkt.resize(HEADER_LEN + usize::from(len % 1600), seq as u8);
                let mode = ProtectMode::ALL[usize::from(mode) % ProtectMode::ALL.len()];
                // A refusal (a full reliable stream) sends nothing: also a valid outcome.
                let _ = tx.send(mode, &pkt, now, &mut wire);
                for (i, p) in wire.into_iter().enumerate() {
                    if lose & (1 << (i % 16)) == 0 {
                        to_rx(&mut rx, &p, now, &mut delivered);
                    }
                    remember(&mut history, p);
                }
            }
            Step::Replay { which, at, xor } => {
                if history.is_empty() {
                    continue;
                }
                let mut p = history[usize::from(which) % history.len()].clone();
                let i = usize::from(at) % p.len();
                p[i] ^= xor;
                to_rx(&mut rx, &p, now, &mut delivered);
            }
            Step::Raw { kind, body } => {
                let _ = rx.on_packet(kind, &body, now, &mut delivered);
            }
            Step::Feedback { body } => {
                let _ = tx.on_nack(&body, now, &mut wire);
                for p in wire {
                    to_rx(&mut rx, &p, now, &mut delivered);
                }
            }
            Step::Wait { ms } => {
                now += Duration::from_millis(u64::from(ms));
                tx.poll(now, &mut wire);
                for p in wire {
                    to_rx(&mut rx, &p, now, &mut delivered);
                }
                let mut back = Vec::new();
                rx.poll(now, &mut back);
                assert!(back.len() <= MAX_POLL_OUT, "one poll emitted {} packets", back.len());
                let mut resent = Vec::new();
                for p in &back {
                    let (_, body) =
                        RelayHeader::decode(p).expect("the receiver emits valid packets");
                    let _ = tx.on_nack(body, now, &mut resent);
                }
                for p in resent {
                    to_rx(&mut rx, &p, now, &mut delivered);
                }
            }
        }
        for p in delivered.drain(..) {
            RelayHeader::decode(&p).expect("the receiver hands on valid relay packets only");
        }
        let s = rx.stats();
        assert!(
            s.delivered <= s.received + s.fec_repaired,
            "handed on more than it took in: {s:?}"
        );
    }
}

/// A hop packet from the sending end (or a tampered copy) into the receiving end.
fn to_rx(rx: &mut LinkRx, p: &[u8], now: Instant, delivered: &mut Vec<Vec<u8>>) {
    if let Ok((h, body)) = RelayHeader::decode(p) {
        let _ = rx.on_packet(h.kind, body, now, delivered);
    }
}

fn remember(history: &mut Vec<Vec<u8>>, p: Vec<u8>) {
    if history.len() == HISTORY {
        history.remove(0);
    }
    history.push(p);
}
