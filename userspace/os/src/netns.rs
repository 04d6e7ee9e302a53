//! Entering a named network namespace (`ip netns add NAME`), like `ip -n NAME`.
//!
//! Only the network namespace changes: the mount namespace, and so `/sys/fs/bpf`, stays
//! the host's, so pinned maps are shared with tools outside the namespace.

use std::{fs::File, os::fd::AsRawFd, path::Path};

use anyhow::{Context, Result, bail};

/// Moves the calling thread into `/run/netns/NAME`. Call before creating threads or
/// sockets: both inherit the namespace they are created in.
pub fn enter(name: &str) -> Result<()> {
    let path = Path::new("/run/netns").join(name);
    let f = File::open(&path).with_context(|| {
        format!(
            "--netns {name}: cannot open {} (does `ip netns add {name}` exist?)",
            path.display()
        )
    })?;
    // SAFETY: setns with a valid namespace fd; affects only this thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("--netns {name}: setns failed: {}", std::io::Error::last_os_error());
    }
    Ok(())
}
