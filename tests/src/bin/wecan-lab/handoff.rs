//! How a protected packet gets from XDP to the agent, measured both ways in the same run
//! (part of `cargo xtask bench`):
//!
//! - **socket**: XDP_PASS, the kernel stack delivers to a UDP socket, one `recv` per packet
//!   (what the agent does today);
//! - **AF_XDP**: the XDP program redirects to an AF_XDP socket (copy mode: veth has no
//!   zero-copy), and userspace takes frames from its receive ring.
//!
//! G offers relay packets to R at a sweep of loads; a thread pinned to CPU 1 in R receives,
//! checks the relay magic and counts. The best received rate of each is reported.

use std::{
    net::UdpSocket,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};
use aya::{
    Ebpf,
    maps::XskMap,
    programs::{Xdp, XdpMode},
};
use wecan_common::wire::MAGIC;
use wecan_datapath::TESTKIT_OBJECT;
use wecan_tests::{
    golden,
    net::{in_netns, pin_to_cpu},
    topology::{Topology, iface},
};

use crate::bench::{EVERY, Generator, RATE_SECS, rate_frame};

/// UMEM frames (and ring entries) of the AF_XDP socket.
const FRAMES: u32 = 4096;
const FRAME_SIZE: u32 = 2048;
/// Offset of the relay header in a frame: Ethernet, IPv4, UDP.
const RELAY_AT: usize = 14 + 20 + 8;

#[derive(Clone, Copy, PartialEq)]
enum Handoff {
    Socket,
    Xsk,
}

/// Best received rates (packets/s): (UDP socket, AF_XDP).
pub fn run() -> Result<(f64, f64)> {
    let mut t = Topology::new("ho")?;
    t.node("r", 1)?;
    t.client_node("g", 100)?;
    t.link("g", "r")?;
    let mut out = Vec::new();
    for h in [Handoff::Socket, Handoff::Xsk] {
        out.push(measure(&mut t, h)?);
    }
    Ok((out[0], out[1]))
}

fn measure(t: &mut Topology, h: Handoff) -> Result<f64> {
    let (r_ns, r_if) = (t.ns("r").name.clone(), iface("g"));
    let r_ifindex = t.ns("r").ifindex(&r_if)?;
    let r_addr = t.addr("r", "g");
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // R's XDP program: pass to the stack, or redirect to the AF_XDP socket; and the receiver.
    let (ebpf, receiver) = {
        let (count, stop, r_if) = (count.clone(), stop.clone(), r_if.clone());
        in_netns(&r_ns, move || -> Result<(Ebpf, thread::JoinHandle<Result<()>>)> {
            let mut ebpf = Ebpf::load(TESTKIT_OBJECT)?;
            let name = if h == Handoff::Socket { "testkit_pass" } else { "testkit_xsk" };
            let prog: &mut Xdp = ebpf.program_mut(name).context(name)?.try_into()?;
            prog.load()?;
            prog.attach(&r_if, XdpMode::Driver)?;
            let receiver = match h {
                Handoff::Socket => {
                    let sock = UdpSocket::bind((r_addr, golden::PORT))?;
                    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
                    thread::spawn(move || socket_loop(&sock, &count, &stop))
                }
                Handoff::Xsk => {
                    let xsk = Xsk::bind(r_ifindex, 0)?;
                    let mut map = XskMap::try_from(ebpf.map_mut("TESTKIT_XSKS").context("xsks")?)?;
                    map.set(0, xsk.fd.as_raw_fd(), 0)?;
                    thread::spawn(move || xsk.run(&count, &stop))
                }
            };
            Ok((ebpf, receiver))
        })??
    };
    // R's receive work runs as softirq beside the generator on CPU 0; the receiver has CPU 1.
    let frame = rate_frame(
        t.ns("g").mac(&iface("r"))?,
        t.ns("r").mac(&iface("g"))?,
        t.addr("g", "r"),
        r_addr,
        t.id("r"),
    );
    let (gen_ns, ifindex) = (t.ns("g").name.clone(), t.ns("g").ifindex(&iface("r"))?);
    let name = if h == Handoff::Socket { "UDP socket" } else { "AF_XDP" };
    let best = thread::scope(|scope| {
        scope
            .spawn(|| -> Result<f64> {
                wecan_os::netns::enter(&gen_ns)?;
                let mut generator = Generator::new(frame, ifindex)?;
                let mut best = 0f64;
                for every in EVERY {
                    let before = count.load(Ordering::Relaxed);
                    let (offered, secs) = generator.run(every, RATE_SECS)?;
                    thread::sleep(Duration::from_millis(100));
                    let got = (count.load(Ordering::Relaxed) - before) as f64 / secs;
                    let offered = offered as f64 / secs;
                    eprintln!(
                        "bench:   handoff {name}: offered {offered:.0}/s, received {got:.0}/s"
                    );
                    best = best.max(got);
                }
                Ok(best)
            })
            .join()
            .map_err(|_| anyhow!("generator panicked"))?
    })?;
    stop.store(true, Ordering::Relaxed);
    receiver.join().map_err(|_| anyhow!("receiver panicked"))??;
    drop(ebpf);
    if best == 0.0 {
        bail!("nothing reached the {name} receiver");
    }
    Ok(best)
}

/// One `recv` per packet, as the agent's slow path does.
fn socket_loop(sock: &UdpSocket, count: &AtomicU64, stop: &AtomicBool) -> Result<()> {
    pin_to_cpu(1);
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        if let Ok(n) = sock.recv(&mut buf)
            && buf[..n.min(2)] == MAGIC
        {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// A memory-mapped ring of the AF_XDP socket (single producer, single consumer).
struct Ring<T> {
    map: *mut libc::c_void,
    map_len: usize,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    desc: *mut T,
}

impl<T> Ring<T> {
    /// Maps the ring at `pgoff` with its `off`sets, `FRAMES` entries of `T`.
    fn map(fd: RawFd, off: &libc::xdp_ring_offset, pgoff: u64) -> Result<Self> {
        let map_len = off.desc as usize + FRAMES as usize * size_of::<T>();
        // SAFETY: maps the socket's ring; the kernel validates offset and length.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff as libc::off_t,
            )
        };
        if map == libc::MAP_FAILED {
            bail!("mmap AF_XDP ring: {}", std::io::Error::last_os_error());
        }
        // SAFETY: offsets inside the mapping, as the kernel reported them.
        unsafe {
            let base = map.cast::<u8>();
            Ok(Self {
                map,
                map_len,
                producer: base.add(off.producer as usize).cast(),
                consumer: base.add(off.consumer as usize).cast(),
                desc: base.add(off.desc as usize).cast(),
            })
        }
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // SAFETY: unmaps what `map` mapped.
        unsafe { libc::munmap(self.map, self.map_len) };
    }
}

/// An AF_XDP socket receiving from one queue, in copy mode, with its UMEM.
struct Xsk {
    fd: OwnedFd,
    umem: *mut libc::c_void,
    rx: Ring<libc::xdp_desc>,
    fill: Ring<u64>,
}

// SAFETY: the socket and its mappings are used by one thread at a time (moved, not shared).
unsafe impl Send for Xsk {}

fn setsockopt_u32(fd: RawFd, name: libc::c_int, v: u32) -> Result<()> {
    wecan_os::sockopt::set(fd, libc::SOL_XDP, name, &v).context("AF_XDP ring size")
}

impl Xsk {
    fn bind(ifindex: u32, queue: u32) -> Result<Self> {
        let len = (FRAMES * FRAME_SIZE) as usize;
        // SAFETY: anonymous private mapping for the UMEM.
        let umem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if umem == libc::MAP_FAILED {
            bail!("mmap UMEM: {}", std::io::Error::last_os_error());
        }
        // SAFETY: plain socket(2).
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            bail!("AF_XDP socket: {}", std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let reg = libc::xdp_umem_reg {
            addr: umem as u64,
            len: len as u64,
            chunk_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        wecan_os::sockopt::set(raw, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg).context("UMEM")?;
        setsockopt_u32(raw, libc::XDP_UMEM_FILL_RING, FRAMES)?;
        setsockopt_u32(raw, libc::XDP_UMEM_COMPLETION_RING, FRAMES)?;
        setsockopt_u32(raw, libc::XDP_RX_RING, FRAMES)?;
        // SAFETY: `off` is writable for `olen` bytes.
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        let mut olen = size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
        let r = unsafe {
            libc::getsockopt(
                raw,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                (&mut off as *mut libc::xdp_mmap_offsets).cast(),
                &mut olen,
            )
        };
        if r != 0 {
            bail!("XDP_MMAP_OFFSETS: {}", std::io::Error::last_os_error());
        }
        let rx = Ring::map(raw, &off.rx, libc::XDP_PGOFF_RX_RING as u64)?;
        let fill = Ring::<u64>::map(raw, &off.fr, libc::XDP_UMEM_PGOFF_FILL_RING)?;
        // Every frame starts on the fill ring, for the kernel to receive into.
        // SAFETY: FRAMES entries inside the fill ring's mapping; producer published after.
        unsafe {
            for i in 0..FRAMES {
                *fill.desc.add(i as usize) = u64::from(i * FRAME_SIZE);
            }
            (*fill.producer).store(FRAMES, Ordering::Release);
        }
        let sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: libc::XDP_COPY,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: a valid sockaddr_xdp of its size.
        let r = unsafe {
            libc::bind(
                raw,
                (&sa as *const libc::sockaddr_xdp).cast(),
                size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if r != 0 {
            bail!("bind AF_XDP socket: {}", std::io::Error::last_os_error());
        }
        Ok(Self { fd, umem, rx, fill })
    }

    /// Takes frames off the receive ring, checks the relay magic, counts, and gives the
    /// frames back to the fill ring; sleeps in poll(2) when the ring is empty.
    fn run(self, count: &AtomicU64, stop: &AtomicBool) -> Result<()> {
        pin_to_cpu(1);
        let mask = FRAMES - 1;
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: ring indices and descriptors inside the mappings; the kernel produces rx
            // entries before publishing `producer` (Acquire) and reads fill entries after we
            // publish ours (Release); UMEM offsets come from the kernel and lie in the UMEM.
            unsafe {
                let cons = (*self.rx.consumer).load(Ordering::Relaxed);
                let prod = (*self.rx.producer).load(Ordering::Acquire);
                if prod == cons {
                    wecan_os::sockopt::readable(self.fd.as_raw_fd(), Duration::from_millis(50));
                    continue;
                }
                let fill_prod = (*self.fill.producer).load(Ordering::Relaxed);
                let n = prod.wrapping_sub(cons);
                let mut good = 0;
                for i in 0..n {
                    let d = *self.rx.desc.add((cons.wrapping_add(i) & mask) as usize);
                    let frame = self.umem.cast::<u8>().add(d.addr as usize);
                    if d.len as usize >= RELAY_AT + 2
                        && *frame.add(RELAY_AT) == MAGIC[0]
                        && *frame.add(RELAY_AT + 1) == MAGIC[1]
                    {
                        good += 1;
                    }
                    // Chunk-aligned UMEM: the frame's address is its chunk's start.
                    let chunk = d.addr & !u64::from(FRAME_SIZE - 1);
                    *self.fill.desc.add((fill_prod.wrapping_add(i) & mask) as usize) = chunk;
                }
                (*self.rx.consumer).store(prod, Ordering::Release);
                (*self.fill.producer).store(fill_prod.wrapping_add(n), Ordering::Release);
                count.fetch_add(good, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

impl Drop for Xsk {
    fn drop(&mut self) {
        // SAFETY: unmaps the UMEM mapped in `bind`; the kernel holds its own references to
        // the pages until the socket closes.
        unsafe { libc::munmap(self.umem, (FRAMES * FRAME_SIZE) as usize) };
    }
}
