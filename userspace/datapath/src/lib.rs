//! wecan's datapath from userspace: the XDP relay object (built from `xdp-prog/` by
//! `build.rs`, which needs the eBPF toolchain), loading, attaching and pinning it
//! ([`relay`]), typed access to its maps ([`maps`]), and the kernel's interface and route
//! information over rtnetlink ([`netlink`]).
//!
//! Following Katran's split, the XDP program stays small and this crate owns its maps; the
//! agent and the CLI go through it.

pub mod maps;
pub mod netlink;
pub mod relay;

use aya::include_bytes_aligned;

/// The relay XDP object, built from `xdp-prog/` by `build.rs`.
pub static RELAY_OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/wecan-relay"));

/// Test and benchmark XDP programs (`xdp-prog/src/bin/testkit.rs`), for the test bed.
#[cfg(feature = "testkit")]
pub static TESTKIT_OBJECT: &[u8] =
    include_bytes_aligned!(concat!(env!("OUT_DIR"), "/wecan-testkit"));
