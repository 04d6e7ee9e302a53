//! wecan's per-hop protection as protocol logic without I/O: nothing here opens a socket,
//! reads a clock or spawns a thread. Every call takes `now` and returns the packets to send,
//! so the agent drives it from its socket loop, the SDK from its own, and simulations and
//! tests from a virtual clock (the shape of quinn-proto).
//!
//! - [`fec`]: the erasure codec (groups of `k` packets, `m` parity shards).
//! - [`arq`]: per-hop selective retransmission (sender, receiver, NACKs).
//! - [`hop`]: the pipeline between two adjacent relays that combines them: [`hop::LinkTx`]
//!   at the sending relay, [`hop::LinkRx`] at the receiving one, and their wire format.
//! - [`auth`]: hop authentication for userspace ends of a link: keys, sealing, verifying.
//! - [`carry`]: carrying the state to another process (a hitless agent upgrade).

pub mod arq;
pub mod auth;
pub mod carry;
pub mod fec;
pub mod hop;
