//! Everything the wecan XDP program and its userspace must agree on, defined once.
//!
//! - [`wire`]: the relay header carried inside UDP (the wire format).
//! - [`auth`]: the hop authentication tag and replay window over that header.
//! - [`maps`]: keys and values of every BPF map, and the map names.
//! - [`stats`]: the outcome/drop-reason counters and the XDP verdict each implies.
//! - [`csum`]: incremental Internet-checksum helpers (RFC 1624) used by the rewrite.
//!
//! The crate is `no_std` so the kernel side can use it; the `user` feature derives
//! `aya::Pod` for the map types so userspace can read and write the same structs.
#![no_std]

pub mod auth;
pub mod csum;
pub mod maps;
pub mod stats;
pub mod wire;
