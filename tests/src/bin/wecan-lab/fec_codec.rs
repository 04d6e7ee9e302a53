//! The FEC codec (`wecan_transport::fec`, a Cauchy code written here) beside reed-solomon-simd,
//! the well-kept crate it would otherwise be: why the codec is hand-written.
//!
//! - [`bench`]: the codec against reed-solomon-simd used directly on bare shards;
//! - [`bench_backends`]: the codec against reed-solomon-simd behind the same framing
//!   (`fec::frame_into`), i.e. as a drop-in backend would run, over group shapes from per-hop
//!   sizes to far beyond.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng, rngs::SmallRng};
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};
use wecan_transport::fec::{self, Codec, MAX_PACKET, PREFIX};

const GIB: f64 = (1u64 << 30) as f64;

/// Side-by-side throughput of `Codec::new(k, m)` and plain reed-solomon-simd on groups of `k`
/// packets of `packet` bytes: `(encode_ours, decode_ours, encode_rs, decode_rs)` in GiB/s of
/// original data, each measured for at least `min_time` with encoder and decoder reused. Each
/// decode rebuilds the first `lost` data packets (clamped to `k` and `m`) from the first `lost`
/// parity shards.
pub fn bench(
    k: usize,
    m: usize,
    packet: usize,
    lost: usize,
    min_time: Duration,
) -> (f64, f64, f64, f64) {
    let (encode, decode) = bench_codec(k, m, packet, lost, min_time);
    let (encode_rs, decode_rs) = bench_rs(k, m, packet, lost, min_time, Rs::Plain);
    (encode, decode, encode_rs, decode_rs)
}

/// `[(encode, decode) of the codec, (encode, decode) of framed reed-solomon-simd]` in GiB/s,
/// on the same groups as [`bench`].
pub fn bench_backends(
    k: usize,
    m: usize,
    packet: usize,
    lost: usize,
    min_time: Duration,
) -> [(f64, f64); 2] {
    [bench_codec(k, m, packet, lost, min_time), bench_rs(k, m, packet, lost, min_time, Rs::Framed)]
}

/// `(encode, decode)` GiB/s of the codec, as described for [`bench`].
fn bench_codec(k: usize, m: usize, packet: usize, lost: usize, min_time: Duration) -> (f64, f64) {
    let mut codec = Codec::new(k, m).expect("bench: invalid k, m");
    let lost = lost.min(k).min(m);
    let data = random_packets(k, packet, 1);
    let data: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    let bytes = (k * packet) as f64;
    let mut parity = Vec::new();
    let encode = throughput(bytes, min_time, || {
        codec.encode_into(&data, &mut parity).expect("bench: encode");
        std::hint::black_box(&parity);
    });
    let received: Vec<(usize, &[u8])> = (lost..k)
        .map(|i| (i, data[i]))
        .chain(parity[..lost].iter().enumerate().map(|(p, s)| (k + p, s.as_slice())))
        .collect();
    let mut out = Vec::new();
    let decode = throughput(bytes, min_time, || {
        codec.decode_into(&received, &mut out).expect("bench: decode");
        std::hint::black_box(&out);
    });
    (encode, decode)
}

/// How reed-solomon-simd is fed in a run.
#[derive(Clone, Copy, PartialEq)]
enum Rs {
    /// Directly, on `packet`-byte shards (rounded up to even, as it requires).
    Plain,
    /// Doing the codec's job: each packet framed (`prefix ‖ bytes ‖ zeros`, shard length
    /// rounded up to even) before encoding, received data packets framed again before
    /// decoding, rebuilt shards copied out.
    Framed,
}

/// `(encode, decode)` GiB/s of reed-solomon-simd fed as `how` says, on the groups of
/// [`bench`].
fn bench_rs(
    k: usize,
    m: usize,
    packet: usize,
    lost: usize,
    min_time: Duration,
    how: Rs,
) -> (f64, f64) {
    assert!(packet <= MAX_PACKET, "bench: packet longer than the codec carries");
    let lost = lost.min(k).min(m);
    let framed = how == Rs::Framed;
    let shard = if framed { PREFIX + packet } else { packet };
    let len = (shard + (shard & 1)).max(2);
    let data = random_packets(k, if framed { packet } else { len }, 1);
    let bytes = (k * packet) as f64;
    let mut frames = if framed { vec![vec![0u8; len]; k] } else { data.clone() };
    let mut encoder = ReedSolomonEncoder::new(k, m, len).expect("bench: encoder");
    let encode = throughput(bytes, min_time, || {
        for (frame, p) in frames.iter_mut().zip(&data) {
            if framed {
                fec::frame_into(frame, p);
            }
            encoder.add_original_shard(&*frame).expect("bench: add original");
        }
        std::hint::black_box(encoder.encode().expect("bench: encode").recovery(0));
    });
    let recovery = rs_recovery(&mut encoder, &frames);
    let mut decoder = ReedSolomonDecoder::new(k, m, len).expect("bench: decoder");
    let mut out = vec![vec![0u8; len]; lost];
    let decode = throughput(bytes, min_time, || {
        for (i, (frame, p)) in frames.iter_mut().zip(&data).enumerate().skip(lost) {
            if framed {
                fec::frame_into(frame, p);
            }
            decoder.add_original_shard(i, &*frame).expect("bench: add original");
        }
        for (p, shard) in recovery.iter().enumerate().take(lost) {
            decoder.add_recovery_shard(p, shard).expect("bench: add recovery");
        }
        let result = decoder.decode().expect("bench: decode");
        for (i, o) in out.iter_mut().enumerate() {
            let restored = result.restored_original(i).expect("bench: restored");
            if framed {
                o.copy_from_slice(restored);
            } else {
                std::hint::black_box(restored);
            }
        }
        std::hint::black_box(&out);
    });
    (encode, decode)
}

/// The recovery shards of `shards` (the encoder is reset by its last `encode`).
fn rs_recovery(encoder: &mut ReedSolomonEncoder, shards: &[Vec<u8>]) -> Vec<Vec<u8>> {
    for shard in shards {
        encoder.add_original_shard(shard).expect("bench: add original");
    }
    encoder.encode().expect("bench: encode").recovery_iter().map(<[u8]>::to_vec).collect()
}

/// GiB/s of `run`, which processes `bytes` per call, measured over at least `min_time`.
fn throughput(bytes: f64, min_time: Duration, mut run: impl FnMut()) -> f64 {
    run(); // Warm caches and work space.
    let start = Instant::now();
    let mut runs = 0u64;
    loop {
        run();
        runs += 1;
        let elapsed = start.elapsed();
        if elapsed >= min_time {
            return runs as f64 * bytes / elapsed.as_secs_f64() / GIB;
        }
    }
}

/// `count` packets of `len` pseudo-random bytes.
fn random_packets(count: usize, len: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..count).map(|_| (0..len).map(|_| rng.random::<u8>()).collect()).collect()
}
