//! Socket options std does not expose: one `setsockopt` wrapper for the agent, the client
//! and the test toolkit, buffer sizing, the kernel's count of datagrams a socket
//! dropped because its buffer was full, and waiting for a socket to become readable.

use std::{io, os::fd::RawFd, time::Duration};

/// `setsockopt(fd, level, name, value)`, naming the option in the error.
pub fn set<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is valid for size_of::<T>() bytes for the duration of the call.
    let r = unsafe {
        libc::setsockopt(fd, level, name, (value as *const T).cast(), size_of::<T>() as u32)
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("setsockopt({level}, {name}): {e}")));
    }
    Ok(())
}

/// Sets the receive buffer to `bytes`, beyond `net.core.rmem_max` when privileged
/// (`SO_RCVBUFFORCE`), else as far as the sysctl allows.
pub fn grow_rcvbuf(fd: RawFd, bytes: usize) -> io::Result<()> {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    set(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &bytes)
        .or_else(|_| set(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &bytes))
}

/// Sets the send buffer to `bytes`, beyond `net.core.wmem_max` when privileged
/// (`SO_SNDBUFFORCE`), else as far as the sysctl allows.
pub fn grow_sndbuf(fd: RawFd, bytes: usize) -> io::Result<()> {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    set(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &bytes)
        .or_else(|_| set(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, &bytes))
}

/// Datagrams the kernel dropped on this socket (full receive buffer, failed filters):
/// `SK_MEMINFO_DROPS` of `SO_MEMINFO`.
pub fn drops(fd: RawFd) -> io::Result<u32> {
    // The uapi's SK_MEMINFO_VARS and SK_MEMINFO_DROPS (linux/sock_diag.h).
    const VARS: usize = 9;
    const DROPS: usize = 8;
    let mut info = [0u32; VARS];
    let mut len = size_of_val(&info) as libc::socklen_t;
    // SAFETY: `info` is writable for `len` bytes; the kernel writes at most that many.
    let r = unsafe {
        libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_MEMINFO, info.as_mut_ptr().cast(), &mut len)
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info[DROPS])
}

/// Waits up to `timeout` for `fd` to become readable (or report an error). False on timeout
/// or a signal: callers loop on their own deadline.
pub fn readable(fd: RawFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos().into(),
    };
    // SAFETY: one valid pollfd, a valid timeout, no signal mask.
    unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) > 0 }
}
