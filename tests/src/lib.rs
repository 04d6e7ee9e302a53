//! wecan test bed: real network namespaces, veth links, agents and clients, shared by the
//! integration tests (`tests/tests/`), the demo and the benchmarks (`wecan-lab`).
//!
//! Everything created here is owned by a guard that removes it on drop (namespaces, pin
//! directories, processes), so a failing test leaves nothing behind.

pub mod bins;
pub mod cpu;
pub mod golden;
pub mod impair;
pub mod net;
pub mod pki;
pub mod proc;
pub mod scenario;
pub mod sim;
pub mod topology;

/// Privileged tests run unless this variable is set to 1 (an explicit opt-out; CI never
/// sets it).
pub const SKIP_VAR: &str = "WECAN_SKIP_PRIVILEGED";

/// Returns true (after saying so) when privileged tests were explicitly opted out of.
/// Without the opt-out, a non-root run fails loudly instead of skipping silently.
pub fn skip_privileged(test: &str) -> bool {
    if std::env::var(SKIP_VAR).as_deref() == Ok("1") {
        eprintln!("SKIPPED {test}: {SKIP_VAR}=1");
        return true;
    }
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "{test} needs root (network namespaces, XDP); run it as root or set {SKIP_VAR}=1 to skip"
    );
    false
}
