//! The hop header and the framing of hop packets (see the [module docs](super) for the wire
//! format).

use wecan_common::wire::{HEADER_LEN, PacketKind, RelayHeader, flags};

use super::{HopError, StreamId};
use crate::arq;

/// Bytes of [`HopHeader`].
pub const HOP_HEADER_LEN: usize = 12;

/// Bytes of the stream number in front of a unit's ARQ header and of a NACK.
const STREAM_LEN: usize = 2;

/// Bytes in front of the original packet in a unit: stream and ARQ header.
pub(super) const UNIT_HEADER_LEN: usize = STREAM_LEN + arq::HEADER_LEN;

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

/// The stream number in front of `b` (a unit or a NACK body) and the bytes after it.
pub(super) fn split_stream(b: &[u8]) -> Result<(StreamId, &[u8]), HopError> {
    let Some((n, rest)) = b.split_first_chunk::<STREAM_LEN>() else {
        return Err(HopError::Truncated { have: b.len(), need: STREAM_LEN });
    };
    Ok((StreamId::from_wire(u16::from_be_bytes(*n))?, rest))
}

/// The stream number as it goes in front of a NACK body.
pub(super) fn stream_bytes(stream: StreamId) -> [u8; STREAM_LEN] {
    stream.to_wire().to_be_bytes()
}

/// The bytes in front of the original packet in a unit of `stream`.
pub(super) fn unit_header(stream: StreamId, h: arq::Header) -> [u8; UNIT_HEADER_LEN] {
    let mut b = [0; UNIT_HEADER_LEN];
    b[..STREAM_LEN].copy_from_slice(&stream_bytes(stream));
    b[STREAM_LEN..].copy_from_slice(&h.encode());
    b
}

/// A unit's stream, ARQ header, and original packet (whose relay header is checked).
pub(super) fn parse_unit(unit: &[u8]) -> Result<(StreamId, arq::Header, &[u8]), HopError> {
    let (stream, rest) = split_stream(unit)?;
    let (h, inner) = arq::Header::decode(rest).map_err(HopError::Arq)?;
    RelayHeader::decode(inner).map_err(HopError::Inner)?;
    Ok((stream, h, inner))
}

/// A hop packet: relay header from `node` to `peer`, hop header, body.
pub(super) fn hop_packet(
    kind: PacketKind,
    node: u32,
    peer: u32,
    hop: HopHeader,
    parts: &[&[u8]],
) -> Vec<u8> {
    let mut hdr = RelayHeader::new(kind, node, peer, 0, 0);
    hdr.flags = flags::HOP;
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
