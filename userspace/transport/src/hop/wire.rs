//! The hop header and the framing of hop packets (see the [module docs](super) for the wire
//! format).

use wecan_common::wire::{HEADER_LEN, PacketKind, RelayHeader, flags};

use super::HopError;

/// Bytes of [`HopHeader`].
pub const HOP_HEADER_LEN: usize = 12;

/// Bits of [`HopHeader::flags`].
pub mod hop_flags {
    /// The unit is a data shard of an FEC group (or the packet a parity shard).
    pub const FEC: u8 = 0x01;
    /// The unit's ARQ sequence number is tracked.
    pub const ARQ: u8 = 0x02;
    /// A loss report (kind NACK) instead of a NACK.
    pub const REPORT: u8 = 0x04;
}

/// The header in front of every hop packet's payload (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HopHeader {
    pub epoch: u32,
    pub group: u32,
    pub index: u8,
    pub k: u8,
    pub m: u8,
    pub flags: u8,
}

impl HopHeader {
    /// The header of a message outside any FEC group (ARQ resends, NACKs, loss reports).
    pub(super) fn ungrouped(epoch: u32, flags: u8) -> Self {
        Self { epoch, group: 0, index: 0, k: 0, m: 0, flags }
    }

    pub fn encode(&self) -> [u8; HOP_HEADER_LEN] {
        let mut b = [0; HOP_HEADER_LEN];
        b[..4].copy_from_slice(&self.epoch.to_be_bytes());
        b[4..8].copy_from_slice(&self.group.to_be_bytes());
        b[8..].copy_from_slice(&[self.index, self.k, self.m, self.flags]);
        b
    }

    pub fn decode(b: &[u8]) -> Result<(Self, &[u8]), HopError> {
        let Some((h, rest)) = b.split_first_chunk::<HOP_HEADER_LEN>() else {
            return Err(HopError::Truncated { have: b.len(), need: HOP_HEADER_LEN });
        };
        let hdr = Self {
            epoch: u32::from_be_bytes([h[0], h[1], h[2], h[3]]),
            group: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
            index: h[8],
            k: h[9],
            m: h[10],
            flags: h[11],
        };
        Ok((hdr, rest))
    }
}

/// A hop packet: relay header from `node` to `peer`, hop header, body.
pub(super) fn hop_packet(
    kind: PacketKind,
    node: u32,
    peer: u32,
    rflags: u8,
    hop: HopHeader,
    parts: &[&[u8]],
) -> Vec<u8> {
    let mut hdr = RelayHeader::new(kind, node, peer, 0, 0);
    hdr.flags = flags::HOP | rflags;
    hdr.hop_limit = 1;
    let len = HEADER_LEN + HOP_HEADER_LEN + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&hdr.to_bytes());
    out.extend_from_slice(&hop.encode());
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}
