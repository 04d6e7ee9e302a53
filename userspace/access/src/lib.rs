//! Edge access without I/O: how a client proves to an edge relay that an operator lets it
//! attach, and how both come away with the hop keys of their link. Nothing here opens a
//! socket, reads a file or a clock: callers pass text, bytes and `now`, so the agent, the
//! client SDK and tests all drive the same code.
//!
//! - [`key`]: Ed25519 signing keys and public keys (`wecan-pk:...`).
//! - [`token`]: operator-signed tokens (`wecan1.<claims>.<signature>`), verified offline.
//! - [`creds`]: the credentials file a client or edge holds (token, seed, trusted operators).
//! - [`register`]: the registration handshake (Register → Accepted | Refused) and its keys.
//! - [`name`], [`ttl`]: the rules for names and token lifetimes.

mod b64;
pub mod creds;
pub mod key;
pub mod name;
pub mod register;
pub mod token;
pub mod ttl;

#[cfg(test)]
mod testkit;

pub use creds::{Creds, CredsError};
pub use key::{KeyError, OperatorKey, PublicKey, SigningKey};
pub use name::{NameError, check_name};
pub use register::{
    AcceptError, Attach, AttachError, Attached, Refusal, Verified, accept, refuse, verify_register,
};
pub use token::{Claims, Op, Role, Token, TokenError, issue};
pub use ttl::{TtlError, parse_ttl};
