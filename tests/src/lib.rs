//! wecan test bed: real network namespaces, veth links, agents and clients, shared by the
//! integration tests (`tests/tests/`), the demo and the benchmarks (`wecan-lab`).
//!
//! Everything created here is owned by a guard that removes it on drop (namespaces, pin
//! directories, processes), so a failing test leaves nothing behind.

pub mod access;
pub mod bins;
pub mod cpu;
pub mod golden;
pub mod impair;
pub mod net;
pub mod pki;
pub mod proc;
pub mod receiver;
pub mod scenario;
pub mod sim;
pub mod topology;

/// Reads `read()` every 100 ms until `done` holds of it or `timeout` passes; returns the last
/// reading (for the caller's assertion to show).
pub fn read_until<T>(
    timeout: std::time::Duration,
    mut read: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let v = read();
        if done(&v) || std::time::Instant::now() >= deadline {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Privileged tests run unless this variable is set to 1 (an explicit opt-out; CI never
/// sets it).
pub const SKIP_VAR: &str = "WECAN_SKIP_PRIVILEGED";
/// A file that every skip is recorded in, one line each, when set (`cargo xtask test` sets
/// it: libtest reports a skipped test as passed and keeps its output to itself).
pub const SKIP_LOG_VAR: &str = "WECAN_SKIP_LOG";

/// Returns true (after saying so, and recording it in [`SKIP_LOG_VAR`]'s file) when
/// privileged tests were explicitly opted out of. Without the opt-out, a non-root run fails
/// loudly instead of skipping silently. Call it from the test's own thread: libtest names
/// that thread after the test, which is the name recorded.
pub fn skip_privileged() -> bool {
    let test = std::thread::current().name().unwrap_or("an unnamed test").to_owned();
    if std::env::var(SKIP_VAR).as_deref() == Ok("1") {
        eprintln!("SKIPPED {test}: {SKIP_VAR}=1");
        if let Some(log) = std::env::var_os(SKIP_LOG_VAR) {
            record_skip(std::path::Path::new(&log), &test);
        }
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

/// Appends "BINARY: TEST" to `log` in one write, so the lines of tests skipping at once
/// never interleave. A skip that cannot be recorded fails the test: unrecorded, it would
/// count as passed.
fn record_skip(log: &std::path::Path, test: &str) {
    use std::io::Write;
    let exe = std::env::current_exe().ok();
    // Test binaries are named NAME-HASH.
    let binary = exe
        .as_deref()
        .and_then(|e| e.file_stem())
        .and_then(|s| s.to_str())
        .map_or("?", |s| s.rsplit_once('-').map_or(s, |(name, _)| name));
    let line = format!("{binary}: {test}\n");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .unwrap_or_else(|e| panic!("cannot record the skip of {test} in {}: {e}", log.display()));
}
