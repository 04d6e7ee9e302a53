//! The wecan relay header: the one definition of the wire format.
//!
//! A relay packet is an ordinary UDP datagram (IPv4 or IPv6 underlay) sent to a relay's
//! port, whose payload starts with this 40-byte header, followed by the application
//! payload. All multi-byte fields are big-endian (network order) except the tag.
//!
//! ```text
//!  0               1               2               3
//!  0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
//! +---------------+---------------+---------------+---------------+
//! |   magic 'W'   |   magic 'C'   |    version    |     kind      |
//! +---------------+---------------+---------------+---------------+
//! |     flags     |   hop limit   |    key ID     | reserved (0)  |
//! +---------------+---------------+---------------+---------------+
//! |                        source node ID                         |
//! +---------------------------------------------------------------+
//! |                     destination node ID                       |
//! +---------------------------------------------------------------+
//! |                           flow ID                             |
//! +---------------------------------------------------------------+
//! |                       sequence number                         |
//! +---------------------------------------------------------------+
//! |                                                               |
//! +                 authentication sequence number                +
//! |                                                               |
//! +---------------------------------------------------------------+
//! |                                                               |
//! +                  tag (SipHash-2-4 of bytes 0..32)             +
//! |                                                               |
//! +---------------------------------------------------------------+
//! ```
//!
//! - **magic** `"WC"` and **version** ([`VERSION`]) identify the protocol; anything else
//!   arriving on the relay port is dropped and counted.
//! - **kind**: [`PacketKind`]. Data, probe, probe reply, NACK, FEC parity and control are
//!   reserved now so that later protocol layers never change the header.
//! - **flags**: per-kind bits, forwarded unchanged ([`flags`]).
//! - **hop limit**: remaining relay hops. A relay forwards a packet only if its hop limit is
//!   at least 1 and decrements it when it does; a packet with hop limit 0 can only be
//!   delivered locally. This bounds routing loops.
//! - **key ID**, **authentication sequence number**, **tag**: the hop's authentication
//!   ([`crate::auth`]). Set by whoever sends the packet over a link (client, relay, agent)
//!   with that link's key; verified, replay-checked and set again at every hop. Key ID 0
//!   means untagged, for links configured without authentication.
//! - **source / destination node**: end points of the overlay path (clients and relays
//!   are all nodes). Relays route on the destination node.
//! - **flow ID**: chosen by the source; lets a route be overridden per flow.
//! - **sequence number**: per flow, chosen by the source; relays do not look at it.
//!
//! The tag covers the header, not the payload: a hop proves who sent the packet over the
//! link and that routing fields and sequence are as sent. Payload integrity and secrecy are
//! end to end, between the applications.
//!
//! **Addressing.** Relays have node IDs below 2^31 (an edge's below 2^15); a static client
//! configured at a relay has one too. A client that attaches through an edge's access
//! gateway gets an address that names its edge ([`overlay::client`]):
//!
//! ```text
//!  bit 31 = 1 | bits 30..16: edge node ID | bits 15..0: slot at that edge (1..)
//! ```
//!
//! A relay routes on its tables first; a destination they do not hold whose top bit is set
//! is routed toward the edge it names, and only that edge holds the client (its address,
//! keys and last activity, in `WECAN_CLIENTS`). So core relays and the controller keep no
//! per-client state: their routing grows with the relays, not with the clients.
//!
//! A **probe** is sent by a relay's agent to a peer, with the peer as destination node; its
//! payload is the sender's 8-byte timestamp ([`ProbeBody`]). The peer turns it around as a
//! **probe reply** (kind changed, source/destination swapped at every layer, payload
//! echoed, tagged for the way back), in XDP unless configured otherwise, so the sender
//! measures the link's RTT.

/// First two bytes of every relay header.
pub const MAGIC: [u8; 2] = *b"WC";
/// The version this code speaks.
pub const VERSION: u8 = 2;
/// Length of [`RelayHeader`] on the wire.
pub const HEADER_LEN: usize = core::mem::size_of::<RelayHeader>();
/// Default UDP port of a relay.
pub const DEFAULT_PORT: u16 = 7300;
/// Default hop limit for packets a client originates.
pub const DEFAULT_HOP_LIMIT: u8 = 16;

/// Overlay addresses of clients attached through an edge (see the module docs).
pub mod overlay {
    /// The top bit marks an edge-attached client's address.
    pub const CLIENT: u32 = 0x8000_0000;
    /// Highest node ID an edge may have: 15 bits of a client's address name it.
    pub const MAX_EDGE: u32 = 0x7fff;

    /// The address of slot `slot` (1..) at edge `edge`; `None` if either is out of range.
    pub const fn client(edge: u32, slot: u16) -> Option<u32> {
        if edge > MAX_EDGE || slot == 0 {
            return None;
        }
        Some(CLIENT | edge << 16 | slot as u32)
    }

    /// The edge a client address names; `None` for a node ID that is not one.
    #[inline(always)]
    pub const fn edge_of(addr: u32) -> Option<u32> {
        if addr & CLIENT == 0 { None } else { Some(addr >> 16 & MAX_EDGE) }
    }

    /// The slot at its edge of a client address.
    pub const fn slot_of(addr: u32) -> u16 {
        addr as u16
    }
}

/// Flag bits of [`RelayHeader::flags`]. Relays forward them unchanged.
pub mod flags {
    /// The source wants reliable, ordered delivery (reliable-ordered mode).
    pub const RELIABLE: u8 = 0x01;
    /// The packet belongs to an FEC-protected flow.
    pub const FEC: u8 = 0x02;
    /// A per-hop protection message between two adjacent relays (kinds data, FEC parity
    /// and NACK): addressed to the next relay, whose agent unwraps it. Its payload starts
    /// with the hop header of `wecan_transport::hop`.
    pub const HOP: u8 = 0x04;
}

/// What a relay packet carries.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketKind {
    /// Application payload.
    Data = 0,
    /// Link probe (RTT/loss measurement).
    Probe = 1,
    /// Answer to a probe, turned around by the probed relay.
    ProbeReply = 2,
    /// Negative acknowledgement asking for retransmission (ARQ).
    Nack = 3,
    /// Forward-error-correction parity shard.
    FecParity = 4,
    /// Control message between a client and an edge's access gateway (registration). Its
    /// payload starts with a message type (`wecan_access`); from a sender the relay does
    /// not know, XDP passes it to the agent only within a per-source rate.
    Control = 5,
}

impl PacketKind {
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Data,
            1 => Self::Probe,
            2 => Self::ProbeReply,
            3 => Self::Nack,
            4 => Self::FecParity,
            5 => Self::Control,
            _ => return None,
        })
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Data => "data",
            Self::Probe => "probe",
            Self::ProbeReply => "probe-reply",
            Self::Nack => "nack",
            Self::FecParity => "fec-parity",
            Self::Control => "control",
        }
    }
}

/// Payload of probes and probe replies: the prober's send time (ns, its own monotonic
/// clock), echoed unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeBody {
    pub sent_ns: u64,
}

impl ProbeBody {
    pub const LEN: usize = 8;

    pub fn to_bytes(self) -> [u8; Self::LEN] {
        self.sent_ns.to_be_bytes()
    }

    pub fn decode(payload: &[u8]) -> Option<Self> {
        let b: [u8; Self::LEN] = payload.get(..Self::LEN)?.try_into().ok()?;
        Some(Self { sent_ns: u64::from_be_bytes(b) })
    }
}

/// Why a header was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// Fewer than [`HEADER_LEN`] bytes.
    Truncated,
    /// The first two bytes are not [`MAGIC`].
    BadMagic,
    /// A version this code does not speak.
    BadVersion(u8),
    /// A kind outside [`PacketKind`].
    BadKind(u8),
    /// The reserved byte is not zero.
    BadReserved,
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Truncated => write!(f, "shorter than the {HEADER_LEN}-byte relay header"),
            Self::BadMagic => write!(f, "bad magic (not a wecan relay packet)"),
            Self::BadVersion(v) => write!(f, "unsupported version {v} (this is version {VERSION})"),
            Self::BadKind(k) => write!(f, "unknown packet kind {k}"),
            Self::BadReserved => write!(f, "reserved byte is not zero"),
        }
    }
}

/// The relay header exactly as it sits in the packet (see the module docs).
///
/// Byte arrays keep the struct alignment 1, so the XDP program can overlay it on packet
/// memory at any offset (e.g. after a VLAN tag).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayHeader {
    pub magic: [u8; 2],
    pub version: u8,
    pub kind: u8,
    pub flags: u8,
    pub hop_limit: u8,
    pub key_id: u8,
    pub reserved: u8,
    pub src_node: [u8; 4],
    pub dst_node: [u8; 4],
    pub flow_id: [u8; 4],
    pub seq: [u8; 4],
    pub auth_seq: [u8; 8],
    pub tag: [u8; 8],
}

impl RelayHeader {
    /// A header of the current version.
    pub const fn new(
        kind: PacketKind,
        src_node: u32,
        dst_node: u32,
        flow_id: u32,
        seq: u32,
    ) -> Self {
        Self {
            magic: MAGIC,
            version: VERSION,
            kind: kind as u8,
            flags: 0,
            hop_limit: DEFAULT_HOP_LIMIT,
            key_id: 0,
            reserved: 0,
            src_node: src_node.to_be_bytes(),
            dst_node: dst_node.to_be_bytes(),
            flow_id: flow_id.to_be_bytes(),
            seq: seq.to_be_bytes(),
            auth_seq: [0; 8],
            tag: [0; 8],
        }
    }

    /// Checks magic, version, kind and the reserved byte. Both the XDP program and userspace
    /// use this, so they accept exactly the same headers.
    #[inline(always)]
    pub fn validate(&self) -> Result<PacketKind, WireError> {
        if self.magic != MAGIC {
            return Err(WireError::BadMagic);
        }
        if self.version != VERSION {
            return Err(WireError::BadVersion(self.version));
        }
        if self.reserved != 0 {
            return Err(WireError::BadReserved);
        }
        match PacketKind::from_u8(self.kind) {
            Some(kind) => Ok(kind),
            None => Err(WireError::BadKind(self.kind)),
        }
    }

    pub const fn src_node(&self) -> u32 {
        u32::from_be_bytes(self.src_node)
    }
    pub const fn dst_node(&self) -> u32 {
        u32::from_be_bytes(self.dst_node)
    }
    pub const fn flow_id(&self) -> u32 {
        u32::from_be_bytes(self.flow_id)
    }
    pub const fn seq(&self) -> u32 {
        u32::from_be_bytes(self.seq)
    }
    pub const fn auth_seq(&self) -> u64 {
        u64::from_be_bytes(self.auth_seq)
    }

    /// The header as wire bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..2].copy_from_slice(&self.magic);
        out[2] = self.version;
        out[3] = self.kind;
        out[4] = self.flags;
        out[5] = self.hop_limit;
        out[6] = self.key_id;
        out[7] = self.reserved;
        out[8..12].copy_from_slice(&self.src_node);
        out[12..16].copy_from_slice(&self.dst_node);
        out[16..20].copy_from_slice(&self.flow_id);
        out[20..24].copy_from_slice(&self.seq);
        out[24..32].copy_from_slice(&self.auth_seq);
        out[32..40].copy_from_slice(&self.tag);
        out
    }

    /// Parses and validates the header at the start of `buf`; returns it with the payload.
    pub fn decode(buf: &[u8]) -> Result<(Self, &[u8]), WireError> {
        let Some((head, payload)) = buf.split_first_chunk::<HEADER_LEN>() else {
            return Err(WireError::Truncated);
        };
        let four = |at: usize| [head[at], head[at + 1], head[at + 2], head[at + 3]];
        let eight = |at: usize| {
            let mut b = [0; 8];
            b.copy_from_slice(&head[at..at + 8]);
            b
        };
        let hdr = Self {
            magic: [head[0], head[1]],
            version: head[2],
            kind: head[3],
            flags: head[4],
            hop_limit: head[5],
            key_id: head[6],
            reserved: head[7],
            src_node: four(8),
            dst_node: four(12),
            flow_id: four(16),
            seq: four(20),
            auth_seq: eight(24),
            tag: eight(32),
        };
        hdr.validate()?;
        Ok((hdr, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_40_bytes_align_1() {
        assert_eq!(HEADER_LEN, 40);
        assert_eq!(core::mem::align_of::<RelayHeader>(), 1);
        assert_eq!(core::mem::offset_of!(RelayHeader, hop_limit), 5);
        assert_eq!(core::mem::offset_of!(RelayHeader, src_node), 8);
        assert_eq!(core::mem::offset_of!(RelayHeader, key_id), 6);
        assert_eq!(core::mem::offset_of!(RelayHeader, seq), 20);
        assert_eq!(core::mem::offset_of!(RelayHeader, auth_seq), 24);
        assert_eq!(core::mem::offset_of!(RelayHeader, tag), crate::auth::TAGGED_LEN);
    }

    #[test]
    fn encode_decode_roundtrip() {
        let mut h = RelayHeader::new(PacketKind::Nack, 1, 0xdead_beef, 7, u32::MAX);
        h.flags = flags::RELIABLE;
        h.hop_limit = 3;
        h.key_id = 9;
        h.auth_seq = 0x0102_0304_0506_0708u64.to_be_bytes();
        h.tag = [0xaa; 8];
        let mut pkt = h.to_bytes().to_vec();
        pkt.extend_from_slice(b"payload");
        let (back, payload) = RelayHeader::decode(&pkt).unwrap();
        assert_eq!(back, h);
        assert_eq!(payload, b"payload");
        assert_eq!(back.dst_node(), 0xdead_beef);
        assert_eq!(back.seq(), u32::MAX);
        assert_eq!(back.validate(), Ok(PacketKind::Nack));
        // Network byte order on the wire.
        assert_eq!(&pkt[12..16], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&pkt[0..4], b"WC\x02\x03");
        assert_eq!(pkt[6], 9);
        assert_eq!(back.auth_seq(), 0x0102_0304_0506_0708);
        assert_eq!(&pkt[32..40], &[0xaa; 8]);
    }

    #[test]
    fn decode_rejects_bad_input() {
        let good = RelayHeader::new(PacketKind::Data, 1, 2, 3, 4).to_bytes();
        for len in 0..HEADER_LEN {
            assert_eq!(RelayHeader::decode(&good[..len]), Err(WireError::Truncated));
        }
        let mut bad = good;
        bad[0] = b'X';
        assert_eq!(RelayHeader::decode(&bad).unwrap_err(), WireError::BadMagic);
        let mut bad = good;
        bad[2] = 9;
        assert_eq!(RelayHeader::decode(&bad).unwrap_err(), WireError::BadVersion(9));
        let mut bad = good;
        bad[3] = 200;
        assert_eq!(RelayHeader::decode(&bad).unwrap_err(), WireError::BadKind(200));
        let mut bad = good;
        bad[7] = 1;
        assert_eq!(RelayHeader::decode(&bad).unwrap_err(), WireError::BadReserved);
    }

    #[test]
    fn client_addresses_name_their_edge() {
        let a = overlay::client(0x1234, 7).unwrap();
        assert_eq!(a, 0x9234_0007);
        assert_eq!(overlay::edge_of(a), Some(0x1234));
        assert_eq!(overlay::slot_of(a), 7);
        assert_eq!(overlay::client(overlay::MAX_EDGE + 1, 1), None);
        assert_eq!(overlay::client(3, 0), None);
        assert_eq!(overlay::edge_of(0x7fff_ffff), None);
        assert_eq!(
            overlay::edge_of(overlay::client(overlay::MAX_EDGE, u16::MAX).unwrap()),
            Some(0x7fff)
        );
    }

    #[test]
    fn probe_body_roundtrips() {
        let b = ProbeBody { sent_ns: 0x0102_0304_0506_0708 };
        assert_eq!(ProbeBody::decode(&b.to_bytes()), Some(b));
        assert_eq!(ProbeBody::decode(&[1, 2, 3]), None);
    }

    #[test]
    fn every_kind_roundtrips() {
        for v in 0..=255u8 {
            match PacketKind::from_u8(v) {
                Some(k) => assert_eq!(k as u8, v),
                None => assert!(v > 5),
            }
        }
    }
}
