//! The ARQ header and NACK on the wire (see the [module docs](super)).

use super::{ArqError, HALF, HEADER_LEN, MAX_NACK_RANGES, NACK_FIXED_LEN, NACK_RANGE_LEN};

/// The per-hop ARQ header in front of each protected data packet (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Per-hop sequence number.
    pub seq: u32,
    /// Microseconds since the packet's first send on this hop (0 on the original).
    pub age_us: u32,
}

impl Header {
    /// The 8 wire bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0; HEADER_LEN];
        b[..4].copy_from_slice(&self.seq.to_be_bytes());
        b[4..].copy_from_slice(&self.age_us.to_be_bytes());
        b
    }

    /// The header at the start of `b` and the payload after it.
    pub fn decode(b: &[u8]) -> Result<(Self, &[u8]), ArqError> {
        let (Some(head), Some(payload)) = (b.first_chunk::<HEADER_LEN>(), b.get(HEADER_LEN..))
        else {
            return Err(ArqError::Truncated { need: HEADER_LEN, have: b.len() });
        };
        let seq = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let age_us = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        Ok((Self { seq, age_us }, payload))
    }
}

/// A NACK body: cumulative ack plus the missing sequence numbers as `(first, bitmap)` ranges
/// (see the module docs for the wire layout and the rules ranges follow).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nack {
    /// The receiver will never ask for a sequence number before this one again (Reliable mode:
    /// it has received all of them).
    pub cum_ack: u32,
    /// `(first missing seq, bitmap)`: bit `i` set when `first + i` is missing.
    pub ranges: Vec<(u32, u64)>,
}

impl Nack {
    /// The wire bytes. At most [`MAX_NACK_RANGES`] ranges are written (a [`Receiver`] never
    /// makes more); ranges are written as given, so only a NACK following the range rules
    /// decodes again.
    pub fn encode(&self) -> Vec<u8> {
        let ranges = &self.ranges[..self.ranges.len().min(MAX_NACK_RANGES)];
        let mut b = Vec::with_capacity(NACK_FIXED_LEN + ranges.len() * NACK_RANGE_LEN);
        b.extend_from_slice(&self.cum_ack.to_be_bytes());
        b.extend_from_slice(&(ranges.len() as u16).to_be_bytes());
        for &(first, bitmap) in ranges {
            b.extend_from_slice(&first.to_be_bytes());
            b.extend_from_slice(&bitmap.to_be_bytes());
        }
        b
    }

    /// Parses and validates a NACK body: exact length, at most [`MAX_NACK_RANGES`] ranges, and
    /// every range starting at a missing sequence number, in order, within 2^31 of `cum_ack`.
    pub fn decode(b: &[u8]) -> Result<Self, ArqError> {
        let Some(fixed) = b.first_chunk::<NACK_FIXED_LEN>() else {
            return Err(ArqError::Truncated { need: NACK_FIXED_LEN, have: b.len() });
        };
        let cum_ack = u32::from_be_bytes([fixed[0], fixed[1], fixed[2], fixed[3]]);
        let count = usize::from(u16::from_be_bytes([fixed[4], fixed[5]]));
        if count > MAX_NACK_RANGES {
            return Err(ArqError::TooManyRanges(count));
        }
        let expected = NACK_FIXED_LEN + count * NACK_RANGE_LEN;
        if b.len() < expected {
            return Err(ArqError::Truncated { need: expected, have: b.len() });
        }
        if b.len() > expected {
            return Err(ArqError::Oversized { len: b.len(), expected });
        }
        let mut ranges = Vec::with_capacity(count);
        // Offset from cum_ack the next range may start at, so ranges neither overlap nor wrap.
        let mut min_offset = 0u64;
        for (index, chunk) in b[NACK_FIXED_LEN..].chunks_exact(NACK_RANGE_LEN).enumerate() {
            let mut first = [0; 4];
            let mut bitmap = [0; 8];
            first.copy_from_slice(&chunk[..4]);
            bitmap.copy_from_slice(&chunk[4..]);
            let (first, bitmap) = (u32::from_be_bytes(first), u64::from_be_bytes(bitmap));
            let offset = u64::from(first.wrapping_sub(cum_ack));
            if bitmap & 1 == 0 || offset < min_offset || offset + 63 >= u64::from(HALF) {
                return Err(ArqError::BadRange { index, first, bitmap });
            }
            min_offset = offset + 64;
            ranges.push((first, bitmap));
        }
        Ok(Self { cum_ack, ranges })
    }
}
