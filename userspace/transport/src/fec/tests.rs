use rand::{Rng, RngCore, SeedableRng, rngs::SmallRng};

use super::{
    gf::{Kernel, gf_inv, gf_mul, mul_acc, slow_mul},
    *,
};

/// A group of `k` packets with random lengths, always including the extremes 0 and
/// `MAX_PACKET` when `k` allows.
fn group(rng: &mut SmallRng, k: usize, max: usize) -> Vec<Vec<u8>> {
    (0..k)
        .map(|i| match i {
            0 => (0..max).map(|_| rng.random::<u8>()).collect::<Vec<u8>>(),
            1 => Vec::new(),
            _ => {
                let len = (rng.next_u64() % (max as u64 + 1)) as usize;
                (0..len).map(|_| rng.random::<u8>()).collect::<Vec<u8>>()
            }
        })
        .collect()
}

fn refs(packets: &[Vec<u8>]) -> Vec<&[u8]> {
    packets.iter().map(Vec::as_slice).collect()
}

/// All shards of a group: data packets then parity shards, by index.
fn shards<'a>(data: &'a [Vec<u8>], parity: &'a [Vec<u8>]) -> Vec<(usize, &'a [u8])> {
    data.iter().chain(parity).map(Vec::as_slice).enumerate().collect()
}

/// Decodes `data` with the shards whose index is in `lost` removed, in shuffled order.
fn decode_without(
    codec: &mut Codec,
    rng: &mut SmallRng,
    all: &[(usize, &[u8])],
    lost: &[usize],
) -> Result<Vec<Vec<u8>>, FecError> {
    let mut received: Vec<_> = all.iter().filter(|(i, _)| !lost.contains(i)).copied().collect();
    for i in (1..received.len()).rev() {
        received.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    codec.decode(&received)
}

/// `count` distinct indices below `total`.
fn random_subset(rng: &mut SmallRng, total: usize, count: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (0..total).collect();
    for i in 0..count {
        all.swap(i, i + (rng.next_u64() % (total - i) as u64) as usize);
    }
    all.truncate(count);
    all
}

/// Calls `f` with every `count`-subset of `0..total` (lexicographic).
fn for_each_subset(total: usize, count: usize, f: &mut impl FnMut(&[usize])) {
    let mut idx: Vec<usize> = (0..count).collect();
    loop {
        f(&idx);
        let Some(i) = (0..count).rev().find(|&i| idx[i] != i + total - count) else {
            return;
        };
        idx[i] += 1;
        for j in i + 1..count {
            idx[j] = idx[j - 1] + 1;
        }
    }
}

fn binomial(n: usize, r: usize) -> usize {
    (0..r).fold(1, |acc, i| acc * (n - i) / (i + 1))
}

/// Round trip for `(k, m)`: every loss pattern of `m` shards when there are
/// few, random ones otherwise, plus random patterns losing fewer.
fn round_trip(k: usize, m: usize, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut codec = Codec::new(k, m).unwrap();
    // Full-size groups, small ones, and all-empty ones (2-byte shards).
    for max in [MAX_PACKET, MAX_PACKET, 40, 0] {
        let data = group(&mut rng, k, max);
        let parity = codec.encode(&refs(&data)).unwrap();
        let longest = data.iter().map(Vec::len).max().unwrap();
        assert!(parity.iter().all(|p| p.len() == codec.shard_len(longest)));
        let all = shards(&data, &parity);
        let mut shuffle = SmallRng::seed_from_u64(rng.next_u64());
        let mut check = |lost: &[usize]| {
            let got = decode_without(&mut codec, &mut shuffle, &all, lost);
            assert_eq!(got.as_ref(), Ok(&data), "k={k} m={m} lost {lost:?}");
        };
        if k + m <= 8 {
            for_each_subset(k + m, m, &mut check);
        } else {
            for _ in 0..40 {
                check(&random_subset(&mut rng, k + m, m));
            }
        }
        for _ in 0..20 {
            let count = (rng.next_u64() % (m as u64 + 1)) as usize;
            check(&random_subset(&mut rng, k + m, count));
        }
    }
}

#[test]
fn round_trips_any_m_losses() {
    for k in [1, 2, 5, 10, 20] {
        for m in [1, 2, 4, 10] {
            round_trip(k, m, (k * 100 + m) as u64);
        }
    }
}

#[test]
fn exhaustive_loss_patterns_on_small_packets() {
    // Every m-subset of lost shards for mid-sized groups: each one inverts a different
    // square submatrix of the Cauchy matrix (or, with fewer than m data lost, a smaller one).
    for (k, m) in [(10, 4), (8, 5), (20, 3)] {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut codec = Codec::new(k, m).unwrap();
        let data = group(&mut rng, k, 9);
        let parity = codec.encode(&refs(&data)).unwrap();
        let all = shards(&data, &parity);
        let mut patterns = 0;
        for_each_subset(k + m, m, &mut |lost| {
            patterns += 1;
            assert_eq!(decode_without(&mut codec, &mut rng, &all, lost).unwrap(), data);
        });
        assert_eq!(patterns, binomial(k + m, m));
    }
}

#[test]
fn large_groups_round_trip() {
    for (k, m) in [(200, 55), (100, 100), (254, 1), (1, 254)] {
        let mut rng = SmallRng::seed_from_u64(k as u64);
        let mut codec = Codec::new(k, m).unwrap();
        let data = group(&mut rng, k, 64);
        let parity = codec.encode(&refs(&data)).unwrap();
        let all = shards(&data, &parity);
        let lost = random_subset(&mut rng, k + m, m);
        assert_eq!(decode_without(&mut codec, &mut rng, &all, &lost).unwrap(), data);
    }
}

#[test]
fn parity_zero_is_xor() {
    let mut rng = SmallRng::seed_from_u64(11);
    let (k, m) = (10, 4);
    let data = group(&mut rng, k, 1200);
    let mut codec = Codec::new(k, m).unwrap();
    let parity = codec.encode(&refs(&data)).unwrap();
    let lost = [0, 3, 7, 9];
    assert_eq!(decode_without(&mut codec, &mut rng, &shards(&data, &parity), &lost).unwrap(), data);
    // Parity 0 is the XOR of the framed data shards.
    let mut xor = vec![0; parity[0].len()];
    for packet in &data {
        let mut frame = vec![0; xor.len()];
        frame_into(&mut frame, packet);
        xor.iter_mut().zip(frame).for_each(|(x, f)| *x ^= f);
    }
    assert_eq!(xor, parity[0]);
    // An odd longest packet: shards are exactly prefix + longest.
    let odd = [vec![1u8; 3]];
    assert_eq!(Codec::new(1, 1).unwrap().encode(&refs(&odd)).unwrap()[0].len(), 5);
}

#[test]
fn xor_fast_path_repairs_single_losses() {
    let mut rng = SmallRng::seed_from_u64(5);
    let (k, m) = (10, 3);
    let mut codec = Codec::new(k, m).unwrap();
    let data = group(&mut rng, k, 1200);
    let parity = codec.encode(&refs(&data)).unwrap();
    let all = shards(&data, &parity);
    for i in 0..k {
        // One data packet and two unneeded parity shards lost: parity 0 rebuilds it.
        assert_eq!(decode_without(&mut codec, &mut rng, &all, &[i, k + 1, k + 2]).unwrap(), data);
        assert_eq!(codec.xor_repairs(), i as u64 + 1);
    }
    // Parity 0 lost too, or two data packets lost: the general path.
    assert_eq!(decode_without(&mut codec, &mut rng, &all, &[4, k]).unwrap(), data);
    assert_eq!(decode_without(&mut codec, &mut rng, &all, &[4, 5]).unwrap(), data);
    // No loss: nothing to repair.
    assert_eq!(decode_without(&mut codec, &mut rng, &all, &[]).unwrap(), data);
    assert_eq!(codec.xor_repairs(), k as u64);
}

#[test]
fn simd_and_scalar_kernels_match_the_field() {
    let mut rng = SmallRng::seed_from_u64(3);
    let src = (0..300).map(|_| rng.random::<u8>()).collect::<Vec<u8>>();
    let base = (0..300).map(|_| rng.random::<u8>()).collect::<Vec<u8>>();
    let kernels = [Kernel::Scalar, Kernel::detect()];
    for c in 0..=255u8 {
        for (start, len) in [(0, 0), (1, 31), (0, 32), (3, 33), (5, 95), (0, 300)] {
            let src = &src[start..start + len.min(300 - start)];
            let expected: Vec<u8> =
                base.iter().zip(src).map(|(&b, &s)| b ^ slow_mul(c, s)).collect();
            for kernel in kernels {
                let mut out = base[..src.len()].to_vec();
                mul_acc(kernel, &mut out, c, src);
                assert_eq!(out, expected, "{kernel:?} c={c} len={}", src.len());
            }
        }
        for b in 0..=255u8 {
            assert_eq!(gf_mul(c, b), slow_mul(c, b));
        }
        if c != 0 {
            assert_eq!(gf_mul(c, gf_inv(c)), 1);
        }
    }
}

#[test]
fn scalar_kernel_round_trips() {
    let mut rng = SmallRng::seed_from_u64(9);
    let (k, m) = (10, 4);
    let mut codec = Codec::new(k, m).unwrap();
    codec.cauchy.kernel = Kernel::Scalar;
    let data = group(&mut rng, k, MAX_PACKET);
    let parity = codec.encode(&refs(&data)).unwrap();
    let mut simd = Codec::new(k, m).unwrap();
    assert_eq!(simd.encode(&refs(&data)).unwrap(), parity);
    let all = shards(&data, &parity);
    for lost in [[0, 1, 2, 3], [0, 5, 11, 13], [2, 10, 11, 12]] {
        assert_eq!(decode_without(&mut codec, &mut rng, &all, &lost).unwrap(), data);
    }
}

#[test]
fn too_few_shards_is_an_error() {
    for (k, m) in [(1, 1), (5, 2), (10, 4), (20, 10)] {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut codec = Codec::new(k, m).unwrap();
        let data = group(&mut rng, k, 100);
        let parity = codec.encode(&refs(&data)).unwrap();
        let all = shards(&data, &parity);
        for _ in 0..20 {
            let mut lost = random_subset(&mut rng, k + m, m + 1);
            if lost.iter().all(|&i| i >= k) {
                lost[0] = 0; // At least one data packet must be missing.
            }
            let got = decode_without(&mut codec, &mut rng, &all, &lost);
            assert_eq!(got, Err(FecError::TooFewShards { have: k - 1, need: k }));
        }
    }
}

#[test]
fn bad_inputs_are_errors() {
    assert_eq!(Codec::new(0, 1).err(), Some(FecError::BadParams { k: 0, m: 1 }));
    assert_eq!(Codec::new(1, 0).err(), Some(FecError::BadParams { k: 1, m: 0 }));
    assert_eq!(Codec::new(200, 56).err(), Some(FecError::BadParams { k: 200, m: 56 }));
    let (k, m) = (4, 2);
    let mut codec = Codec::new(k, m).unwrap();
    let data: Vec<Vec<u8>> = (0..k).map(|i| vec![i as u8 + 1; 100 * (i + 1)]).collect();
    let parity = codec.encode(&refs(&data)).unwrap();
    let len = parity[0].len();
    let d = |i: usize| (i, data[i].as_slice());
    let p = |i: usize| (k + i, parity[i].as_slice());

    let too_long = vec![0; MAX_PACKET + 3];
    let mut wrong_count = refs(&data);
    assert_eq!(
        codec.encode(&wrong_count[..3]),
        Err(FecError::WrongPacketCount { have: 3, need: 4 })
    );
    wrong_count[2] = &too_long[1..];
    assert_eq!(
        codec.encode(&wrong_count),
        Err(FecError::ShardTooLong { len: MAX_PACKET + 2, max: MAX_PACKET })
    );

    assert_eq!(
        codec.decode(&[d(0), d(1), d(2), (6, &parity[0])]),
        Err(FecError::IndexOutOfRange { index: 6, total: 6 })
    );
    assert_eq!(codec.decode(&[d(0), d(1), p(0), d(1)]), Err(FecError::Duplicate(1)));
    let short = &parity[1][..len - 2];
    assert_eq!(
        codec.decode(&[d(0), d(1), p(0), (5, short)]),
        Err(FecError::WrongShardLen { index: 5, len: len - 2, expected: len })
    );
    // A lone parity shard of a length encode never makes.
    assert!(matches!(
        codec.decode(&[d(0), d(1), (4, &too_long[..1]), d(2)]),
        Err(FecError::WrongShardLen { index: 4, len: 1, .. })
    ));
    assert_eq!(
        codec.decode(&[d(0), d(1), (4, &too_long), d(2)]),
        Err(FecError::ShardTooLong { len: MAX_PACKET + 3, max: codec.shard_len(MAX_PACKET) })
    );
    // A data packet longer than the parity shards can hold.
    let longer = vec![1; len - 1];
    assert_eq!(
        codec.decode(&[d(0), (1, &longer), p(0), d(2)]),
        Err(FecError::ShardTooLong { len: len - 1, max: len - PREFIX })
    );
    // A data packet truncated in transit: lengths no longer add up.
    let truncated = &data[1][..50];
    for with in [[p(0), p(1)], [p(1), p(0)]] {
        let got = codec.decode(&[d(0), (1, truncated), d(2), with[0]]);
        assert_eq!(got, Err(FecError::Corrupt { index: 3 }));
        let got = codec.decode(&[d(0), (1, truncated), with[0], with[1]]);
        assert!(matches!(got, Err(FecError::Corrupt { .. })), "{got:?}");
    }
    // Every error explains itself.
    assert!(FecError::Duplicate(1).to_string().contains("given twice"));
}

#[test]
fn garbage_never_panics() {
    let mut rng = SmallRng::seed_from_u64(0xfec);
    let (k, m) = (6, 3);
    let mut codec = Codec::new(k, m).unwrap();
    let data = group(&mut rng, k, 300);
    let parity = codec.encode(&refs(&data)).unwrap();
    let (mut ok, mut err) = (0, 0);
    for _ in 0..2000 {
        // Mostly real shards (some resized, flipped or replaced by noise), sometimes an
        // index out of range or twice, in random numbers.
        let count = (rng.next_u64() % (k + m + 1) as u64) as usize;
        let mut indices = random_subset(&mut rng, k + m, count);
        match rng.next_u64() % 8 {
            0 => indices.push(k + m + (rng.next_u64() % 3) as usize),
            1 if count > 0 => indices.push(indices[0]),
            _ => {}
        }
        let owned: Vec<(usize, Vec<u8>)> = indices
            .into_iter()
            .map(|index| {
                let mut bytes = match index {
                    i if i < k => data[i].clone(),
                    i if i < k + m => parity[i - k].clone(),
                    _ => Vec::new(),
                };
                match rng.next_u64() % 16 {
                    0 => {
                        let len = (rng.next_u64() % 1600) as usize;
                        bytes = (0..len).map(|_| rng.random::<u8>()).collect::<Vec<u8>>();
                    }
                    1 => bytes.truncate((rng.next_u64() % 400) as usize),
                    2 if !bytes.is_empty() => {
                        let at = (rng.next_u64() % bytes.len() as u64) as usize;
                        bytes[at] ^= 1 + (rng.next_u64() % 255) as u8;
                    }
                    _ => {}
                }
                (index, bytes)
            })
            .collect();
        let received: Vec<(usize, &[u8])> = owned.iter().map(|(i, b)| (*i, b.as_slice())).collect();
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| codec.decode(&received)));
        match result.expect("decode panicked") {
            Ok(packets) => {
                ok += 1;
                assert_eq!(packets.len(), k);
            }
            Err(_) => err += 1,
        }
    }
    // Both outcomes are exercised, not just the error paths.
    assert!(ok > 50 && err > 50, "{ok} ok, {err} errors");
}
