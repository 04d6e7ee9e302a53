//! The wecan controller: it holds the link-quality graph the agents report, computes every
//! relay's routes ([`routing`]) and serves them over the HTTP+JSON API of `wecan-api`
//! ([`server`]) over TLS ([`tls`]) to callers with a token ([`auth`]), and tells clients
//! which edges to attach to ([`edges`]). Builds on stable Rust alone: no eBPF toolchain, no
//! aya.

pub mod auth;
pub mod edges;
pub mod routing;
pub mod server;
pub mod tls;
