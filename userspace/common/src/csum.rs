//! Incremental Internet checksum update (RFC 1624, eqn. 3: `HC' = ~(~HC + ~m + m')`).
//!
//! The relay rewrites a handful of header fields (addresses, ports, hop limit), so it
//! patches the existing IPv4/UDP checksums instead of summing the whole packet. Fields are
//! big-endian byte arrays of even length, summed as 16-bit words.

/// Folds a 32-bit accumulator into 16 bits (end-around carry).
#[inline(always)]
pub fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Running update of a stored checksum: start from the stored value, [`Update::replace`]
/// every changed field, then [`Update::finish`].
#[derive(Clone, Copy, Debug)]
pub struct Update(u32);

impl Update {
    /// Starts from the checksum as stored in the header.
    #[inline(always)]
    pub fn new(stored: u16) -> Self {
        Self(!stored as u32)
    }

    /// Accounts for the field `old` being overwritten by `new`.
    #[inline(always)]
    pub fn replace<const N: usize>(self, old: &[u8; N], new: &[u8; N]) -> Self {
        // At most 8 words of each kind per call, so the u32 cannot overflow.
        let mut sum = self.0;
        let mut i = 0;
        while i + 1 < N {
            sum += !u16::from_be_bytes([old[i], old[i + 1]]) as u32;
            sum += u16::from_be_bytes([new[i], new[i + 1]]) as u32;
            i += 2;
        }
        Self(fold(sum) as u32)
    }

    /// The checksum to store.
    #[inline(always)]
    pub fn finish(self) -> u16 {
        !fold(self.0)
    }

    /// The checksum to store in a UDP header: a computed zero is sent as `0xffff`, since
    /// zero means "no checksum" (RFC 768) and is illegal on IPv6 (RFC 8200).
    #[inline(always)]
    pub fn finish_udp(self) -> u16 {
        match self.finish() {
            0 => 0xffff,
            c => c,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain full checksum over a byte string, the definition the update must agree with.
    fn full(bytes: &[u8]) -> u16 {
        let mut sum = 0u32;
        for pair in bytes.chunks(2) {
            let hi = pair[0] as u32;
            let lo = *pair.get(1).unwrap_or(&0) as u32;
            sum += (hi << 8) | lo;
        }
        !fold(sum)
    }

    #[test]
    fn ipv4_header_example() {
        // Classic example header (checksum field zeroed): checksum 0xb861.
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(full(&hdr), 0xb861);
        hdr[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        // Change the destination address and the TTL incrementally.
        let old_dst = [0xc0, 0xa8, 0x00, 0xc7];
        let new_dst = [10, 1, 2, 3];
        let old_ttl = [hdr[8], hdr[9]];
        let new_ttl = [63, hdr[9]];
        let c =
            Update::new(0xb861).replace(&old_dst, &new_dst).replace(&old_ttl, &new_ttl).finish();
        hdr[16..20].copy_from_slice(&new_dst);
        hdr[8] = 63;
        hdr[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(c, full(&hdr));
    }

    #[test]
    fn update_matches_full_sum_on_many_inputs() {
        // Deterministic pseudo-random inputs: xorshift.
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..10_000 {
            let mut data = [0u8; 32];
            for b in data.iter_mut() {
                *b = next() as u8;
            }
            let before = full(&data);
            let new: [u8; 4] = (next() as u32).to_be_bytes();
            let old: [u8; 4] = data[8..12].try_into().unwrap();
            data[8..12].copy_from_slice(&new);
            let after = full(&data);
            let inc = Update::new(before).replace(&old, &new).finish();
            // 0x0000 and 0xffff are the same one's-complement value.
            assert!(inc == after || (inc, after) == (0xffff, 0) || (inc, after) == (0, 0xffff));
        }
    }

    #[test]
    fn udp_zero_becomes_ffff() {
        // A stored checksum whose update lands on zero must be sent as 0xffff.
        let u = Update::new(0xffff).replace(&[0, 0], &[0, 0]);
        assert_eq!(u.finish(), 0);
        assert_eq!(u.finish_udp(), 0xffff);
    }
}
