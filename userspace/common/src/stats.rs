//! Every outcome of the relay program, each with its own per-CPU counter (index into the
//! `STATS` array), in the spirit of Cilium's drop reasons: an operator can always tell
//! what happened to a packet. The XDP program's error type *is* [`Stat`]: the outcome
//! decides the verdict, in one place ([`Stat::verdict`]).

/// XDP verdicts (values of `enum xdp_action`), so userspace and tests can name them
/// without kernel bindings.
pub mod xdp {
    pub const ABORTED: u32 = 0;
    pub const DROP: u32 = 1;
    pub const PASS: u32 = 2;
    pub const TX: u32 = 3;
    pub const REDIRECT: u32 = 4;
}

/// Packet and byte count of one outcome.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

macro_rules! stats {
    ($( $(#[$doc:meta])* $variant:ident = $idx:literal, $name:literal, $class:ident; )*) => {
        /// Outcome of one packet through the relay program.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Stat { $( $(#[$doc])* $variant = $idx, )* }

        impl Stat {
            /// Every outcome, in counter-index order.
            pub const ALL: &'static [Stat] = &[$(Stat::$variant,)*];
            /// Number of counters (size of the `STATS` array).
            pub const COUNT: u32 = Self::ALL.len() as u32;

            /// Stable name, used by the CLI and in JSON.
            pub const fn name(self) -> &'static str {
                match self { $(Stat::$variant => $name,)* }
            }

            /// Whether this is a forwarding, pass or drop outcome.
            pub const fn class(self) -> Class {
                match self { $(Stat::$variant => Class::$class,)* }
            }
        }
    };
}

/// The three kinds of outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Sent back out by XDP (XDP_TX or XDP_REDIRECT).
    Forward,
    /// Handed to the kernel stack (XDP_PASS).
    Pass,
    /// Dropped (XDP_DROP).
    Drop,
}

impl Class {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Forward => "forward",
            Self::Pass => "pass",
            Self::Drop => "drop",
        }
    }
}

stats! {
    /// Forwarded out of the interface it came in on (XDP_TX).
    Tx = 0, "tx", Forward;
    /// Forwarded out of another interface (XDP_REDIRECT via the devmap).
    Redirect = 1, "redirect", Forward;
    /// A probe for this relay, answered in XDP (XDP_TX).
    ProbeReply = 2, "probe_reply", Forward;
    /// Addressed to this node: delivered to the local stack.
    Local = 3, "local", Pass;
    /// Route says slow path: handed to the agent.
    SlowPath = 4, "slow_path", Pass;
    /// FIB has no neighbour entry for the next hop: the agent forwards it through the
    /// kernel stack, which resolves the neighbour for the packets after it.
    NoNeighbour = 5, "no_neighbour", Pass;
    /// FIB lookup could not finish in XDP for another reason (no route, a route XDP cannot
    /// use): the agent forwards it through the kernel stack, which decides.
    FibPass = 6, "fib_pass", Pass;
    /// Not a relay packet (not IP, not UDP, or not to the relay port): left to the kernel.
    NotRelay = 7, "not_relay", Pass;
    /// IPv4 fragment: left to the kernel to reassemble for the agent.
    Fragment = 8, "fragment", Pass;
    /// IPv4 header with options: left to the kernel for the agent.
    IpOptions = 9, "ip_options", Pass;
    /// The agent has not configured the relay yet.
    NotConfigured = 10, "not_configured", Pass;
    /// A header ends beyond the packet (at any layer).
    DropTruncated = 11, "drop_truncated", Drop;
    /// IP header fields are inconsistent (IHL, lengths).
    DropMalformed = 12, "drop_malformed", Drop;
    /// Relay-port packet without the wecan magic.
    DropBadMagic = 13, "drop_bad_magic", Drop;
    /// Unsupported header version.
    DropBadVersion = 14, "drop_bad_version", Drop;
    /// Unknown packet kind or non-zero reserved bytes.
    DropBadHeader = 15, "drop_bad_header", Drop;
    /// Outer source is not a configured peer (nor, on an edge, a client attached there or a
    /// stranger's registration or probe).
    DropUnknownPeer = 16, "drop_unknown_peer", Drop;
    /// Hop limit exhausted on a packet that needs forwarding.
    DropHopLimit = 17, "drop_hop_limit", Drop;
    /// No route for the destination node.
    DropNoRoute = 18, "drop_no_route", Drop;
    /// The route is invalid (unknown action, or next hop of the other address family).
    DropBadRoute = 19, "drop_bad_route", Drop;
    /// FIB lookup says the next hop is unreachable, blackholed or prohibited.
    DropUnreachable = 20, "drop_unreachable", Drop;
    /// Egress interface has no entry in the TX port devmap.
    DropNoTxPort = 21, "drop_no_tx_port", Drop;
    /// The egress MTU is too small for the packet.
    DropMtu = 22, "drop_mtu", Drop;
    /// A client peer claimed another node as the packet's overlay source: a client speaks
    /// only for itself (relays carry others' packets, so only clients are held to this).
    DropSpoofedSource = 23, "drop_spoofed_source", Drop;
    /// No tag (key ID 0) from a peer whose link is authenticated.
    DropUntagged = 24, "drop_untagged", Drop;
    /// Tagged with a key ID that is neither of the link's keys (e.g. one retired).
    DropUnknownKey = 25, "drop_unknown_key", Drop;
    /// The tag does not verify: forged, or altered on the way.
    DropBadTag = 26, "drop_bad_tag", Drop;
    /// A valid tag on an authentication sequence number seen before or older than the
    /// replay window: a replayed (or very late) packet.
    DropReplay = 27, "drop_replay", Drop;
    /// The next hop is not a peer with a key to send with (or its link state is missing).
    DropNoNextKey = 28, "drop_no_next_key", Drop;
    /// A probe for this relay, not answered: the agent's heartbeat lapsed (it is dead or
    /// hung), so its peers must see the links go down and route around this relay.
    DropAgentDown = 29, "drop_agent_down", Drop;
    /// A control packet (registration) for this edge's access gateway from a sender it does
    /// not know, within that sender's rate: handed to the agent.
    Gateway = 30, "gateway", Pass;
    /// A control packet or probe from an unknown sender to an edge, beyond that sender's
    /// rate (`gateway_rate`).
    DropRateLimited = 31, "drop_rate_limited", Drop;
    /// A probe from a sender this edge does not know (a client measuring candidate edges),
    /// within its source's rate: answered untagged in XDP (XDP_TX).
    ProbeReplyOpen = 32, "probe_reply_open", Forward;
}

impl Stat {
    /// The XDP verdict for outcomes that are not forwards (forwards pick TX or REDIRECT).
    pub const fn verdict(self) -> u32 {
        match self {
            Stat::Tx | Stat::ProbeReply | Stat::ProbeReplyOpen => xdp::TX,
            Stat::Redirect => xdp::REDIRECT,
            _ => match self.class() {
                Class::Pass => xdp::PASS,
                _ => xdp::DROP,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_dense_and_ordered() {
        for (i, s) in Stat::ALL.iter().enumerate() {
            assert_eq!(*s as u32, i as u32, "{}", s.name());
            assert_eq!(Stat::ALL.iter().filter(|o| o.name() == s.name()).count(), 1);
        }
    }

    #[test]
    fn verdicts_follow_class() {
        assert_eq!(Stat::Tx.verdict(), xdp::TX);
        assert_eq!(Stat::Redirect.verdict(), xdp::REDIRECT);
        assert_eq!(Stat::Local.verdict(), xdp::PASS);
        assert_eq!(Stat::DropNoRoute.verdict(), xdp::DROP);
        for s in Stat::ALL {
            assert_eq!(s.name().starts_with("drop_"), s.class() == Class::Drop);
        }
    }
}
