//! The registration handshake by which a client attaches to an edge: one Register, one
//! Accepted or Refused, carried as Control payloads ([`msg`] has the layout).
//!
//! The client proves who it is with its operator-signed token and a signature by the
//! token's key; the edge proves the same with its own edge token. Ephemeral X25519 keys on
//! both sides give a fresh link secret per attachment ([`kdf`]), from which both derive the
//! hop keys of their link, each direction its own.

pub mod client;
pub mod edge;
pub mod kdf;
pub mod msg;
pub mod refusal;

pub use client::{Attach, AttachError, Attached};
pub use edge::{AcceptError, MAX_SKEW_MS, Verified, accept, refuse, verify_register};
pub use msg::{Accepted, DecodeError, Msg, Refused, Register, register_nonce};
pub use refusal::Refusal;

#[cfg(test)]
mod tests;
