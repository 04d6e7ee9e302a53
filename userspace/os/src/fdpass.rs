//! Passing a file descriptor to another process over a Unix stream socket (`SCM_RIGHTS`),
//! which std does not offer on stable Rust yet.

use std::{
    io,
    mem::{size_of, zeroed},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::net::UnixStream,
    },
};

/// Control-message space for one descriptor.
const CMSG_SPACE: usize = 64;

/// A message header over one buffer and `control_len` bytes of `cmsg`.
fn header(iov: &mut libc::iovec, cmsg: &mut [u8; CMSG_SPACE], control_len: usize) -> libc::msghdr {
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = control_len.min(CMSG_SPACE);
    msg
}

/// Sends `data` (non-empty) with a duplicate of `fd` attached.
pub fn send_with_fd(sock: &UnixStream, data: &[u8], fd: RawFd) -> io::Result<()> {
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut _, iov_len: data.len() };
    let mut cmsg = [0u8; CMSG_SPACE];
    // SAFETY: the header's pointers point into live locals sized as declared, and the CMSG
    // macros stay within `cmsg` (space for one int).
    unsafe {
        let space = libc::CMSG_SPACE(size_of::<RawFd>() as u32) as usize;
        let msg = header(&mut iov, &mut cmsg, space);
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
        let sent = libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL);
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        if sent as usize != data.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short write with a descriptor"));
        }
    }
    Ok(())
}

/// Receives into `buf` and takes the descriptor attached to these bytes, if any.
pub fn recv_with_fd(sock: &UnixStream, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut cmsg = [0u8; CMSG_SPACE];
    // SAFETY: as in `send_with_fd`; the kernel fills at most `msg_controllen` bytes, and a
    // descriptor it passes is ours to own (MSG_CMSG_CLOEXEC keeps it out of children).
    unsafe {
        let mut msg = header(&mut iov, &mut cmsg, CMSG_SPACE);
        let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut fd = None;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let raw = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<RawFd>());
                fd = Some(OwnedFd::from_raw_fd(raw));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        Ok((n as usize, fd))
    }
}

/// The user ID of the process at the other end of `sock` (`SO_PEERCRED`).
pub fn peer_uid(sock: &UnixStream) -> io::Result<u32> {
    // SAFETY: getsockopt writes at most `len` bytes into the ucred we pass.
    unsafe {
        let mut cred: libc::ucred = zeroed();
        let mut len = size_of::<libc::ucred>() as libc::socklen_t;
        let rc = libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        );
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(cred.uid)
    }
}

#[cfg(test)]
mod tests {
    use std::{io::Read, net::UdpSocket};

    use super::*;

    #[test]
    fn a_socket_crosses_with_its_bytes() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        send_with_fd(&a, b"hello", udp.as_raw_fd()).unwrap();
        let mut buf = [0u8; 5];
        let (n, fd) = recv_with_fd(&b, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        let got = UdpSocket::from(fd.expect("a descriptor"));
        assert_eq!(got.local_addr().unwrap().port(), port, "the same socket");
        // Later bytes come without one.
        send_with_fd(&a, b"x", udp.as_raw_fd()).unwrap();
        drop(a);
        let mut rest = Vec::new();
        b.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"x");
    }

    #[test]
    fn the_peer_is_this_user() {
        let (a, _b) = UnixStream::pair().unwrap();
        // SAFETY: no arguments.
        assert_eq!(peer_uid(&a).unwrap(), unsafe { libc::geteuid() });
    }
}
