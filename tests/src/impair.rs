//! Link impairment for tests and benchmarks: delay, jitter, reordering, loss (Bernoulli or
//! Gilbert-Elliott bursts) and link cuts. This kernel has no netem, so the link is bridged
//! in userspace:
//!
//! ```text
//!   X:x_if ── I:to-x ══ ImpairedLink (`xy` one way, `yx` back) ══ I:to-y ── Y:y_if
//! ```
//!
//! One thread per direction reads every frame arriving on one end through an AF_PACKET
//! socket, holds it until its due time and writes it out of the other end. The element is
//! L2 transparent (ARP, IPv6 neighbour discovery and VLAN tags cross it like a cable), so X
//! and Y share a subnet. Loss and jitter come from seeded PRNGs: a run is reproducible.

use std::{
    collections::{BinaryHeap, binary_heap::PeekMut},
    io,
    mem::size_of,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use aya::{
    Ebpf,
    programs::{Xdp, XdpMode},
};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use wecan_datapath::TESTKIT_OBJECT;
use wecan_os::sockopt;

use crate::net::{Netns, in_netns, veth};

/// Impairment of one direction of a link. `Default` is a perfect link.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Impairment {
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Uniform extra delay in [0, jitter).
    pub jitter: Duration,
    /// Whether jitter may reorder frames. Without it a frame is never released before the
    /// one that arrived before it (its due time is at least the previous frame's).
    pub reorder: bool,
    /// Bernoulli loss probability (0..=1), used when `burst` is `None`.
    pub loss: f64,
    /// Two-state Gilbert-Elliott loss; replaces `loss` when set.
    pub burst: Option<GilbertElliott>,
    /// Link cut: drop everything.
    pub drop_all: bool,
}

/// Gilbert-Elliott loss: a Good and a Bad state, each with its own loss probability. Per
/// frame the current state decides loss, then the state may change, so Bad runs last
/// 1 / `p_bad_to_good` frames on average.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GilbertElliott {
    pub p_good_to_bad: f64,
    pub p_bad_to_good: f64,
    pub loss_good: f64,
    pub loss_bad: f64,
}

impl GilbertElliott {
    /// Long-run fraction of frames lost.
    pub fn mean_loss(&self) -> f64 {
        let bad = self.p_good_to_bad / (self.p_good_to_bad + self.p_bad_to_good);
        (1.0 - bad) * self.loss_good + bad * self.loss_bad
    }
}

/// Frame counts per direction. `dropped` is the impairment's doing (loss, cut, queue
/// overflow); `errors` are frames lost to socket errors (a sound test expects none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImpairStats {
    pub xy_forwarded: u64,
    pub xy_dropped: u64,
    pub xy_errors: u64,
    pub yx_forwarded: u64,
    pub yx_dropped: u64,
    pub yx_errors: u64,
}

/// Largest frame carried (GRO is off in I, so frames are at most MTU-sized).
const MAX_FRAME: usize = 64 * 1024;
/// Frames held per direction; more are dropped (counted in `dropped`).
const QUEUE_LIMIT: usize = 100_000;
/// Longest poll: how soon a thread notices the stop flag.
const MAX_WAIT: Duration = Duration::from_millis(50);
/// Frames read per wake-up before due frames are sent again.
const BATCH: usize = 256;
/// Socket receive buffer: absorbs bursts while a thread sleeps or sends.
const RCVBUF: libc::c_int = 8 << 20;
const VLAN_LEN: usize = 4;

/// I's interface toward X (`ip` would take a name like `a` for a keyword: `address`).
pub const TO_X: &str = "to-x";
/// I's interface toward Y.
pub const TO_Y: &str = "to-y";

/// A link X ── Y through namespace I, impaired in each direction. Dropping it stops the
/// threads and deletes I (and with it both veth pairs).
pub struct ImpairedLink {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// XDP_PASS on I's interfaces (detached on drop, before I is deleted).
    _pass: Ebpf,
    _ns: Netns,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    /// Index 0: X → Y, 1: Y → X.
    impairment: [Mutex<Impairment>; 2],
    counters: [Counters; 2],
}

#[derive(Default)]
struct Counters {
    forwarded: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
}

impl ImpairedLink {
    /// Creates namespace `ns_name` (I), the veth pairs `x_if` (in `x`) ── [`TO_X`] (in I)
    /// and [`TO_Y`] (in I) ── `y_if` (in `y`), and starts bridging with `xy` for frames
    /// X → Y and `yx` for Y → X.
    pub fn new(
        ns_name: &str,
        x: &Netns,
        x_if: &str,
        y: &Netns,
        y_if: &str,
        xy: Impairment,
        yx: Impairment,
    ) -> Result<Self> {
        let ns = Netns::new(ns_name)?;
        // I only bridges: without IPv6 its interfaces send no DAD or router solicitations
        // that would reach X and Y.
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
        veth(x, x_if, &ns, TO_X)?;
        veth(&ns, TO_Y, y, y_if)?;
        // A veth accepts XDP_TX/XDP_REDIRECT frames from its peer only with XDP (or GRO
        // switched on while up, which would also merge TCP segments beyond the MTU): the
        // XDP_PASS program attached in `open_sockets` delivers frames as they came.
        let (pass, [x_rx, x_tx, y_rx, y_tx]) = in_netns(ns_name, open_sockets)??;
        let shared = Arc::new(Shared::default());
        let link_threads = [("impair-xy", 0, x_rx, y_tx), ("impair-yx", 1, y_rx, x_tx)];
        let mut link = Self { shared, threads: Vec::new(), _pass: pass, _ns: ns };
        link.set(xy, yx);
        for (name, dir, rx, tx) in link_threads {
            let worker = Worker { shared: link.shared.clone(), dir, rx, tx };
            let thread = std::thread::Builder::new().name(name.into()).spawn(|| worker.run());
            link.threads.push(thread.context("spawning an impairment thread")?);
        }
        Ok(link)
    }

    /// Changes the impairment at run time (takes effect for frames arriving from then on).
    pub fn set(&self, xy: Impairment, yx: Impairment) {
        for (slot, imp) in self.shared.impairment.iter().zip([xy, yx]) {
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = imp;
        }
    }

    /// Frames forwarded, dropped and lost to errors per direction so far.
    pub fn stats(&self) -> ImpairStats {
        let [xy, yx] = &self.shared.counters;
        ImpairStats {
            xy_forwarded: xy.forwarded.load(Relaxed),
            xy_dropped: xy.dropped.load(Relaxed),
            xy_errors: xy.errors.load(Relaxed),
            yx_forwarded: yx.forwarded.load(Relaxed),
            yx_dropped: yx.dropped.load(Relaxed),
            yx_errors: yx.errors.load(Relaxed),
        }
    }
}

impl Drop for ImpairedLink {
    fn drop(&mut self) {
        self.shared.stop.store(true, Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Runs inside I: attaches XDP_PASS to both interfaces and opens (rx, tx) sockets on each.
fn open_sockets() -> Result<(Ebpf, [OwnedFd; 4])> {
    let mut ebpf = Ebpf::load(TESTKIT_OBJECT)?;
    let prog: &mut Xdp = ebpf.program_mut("testkit_pass").context("testkit_pass")?.try_into()?;
    prog.load()?;
    for i in [TO_X, TO_Y] {
        prog.attach(i, XdpMode::Driver).with_context(|| format!("XDP_PASS on {i}"))?;
    }
    let (x, y) = (ifindex(TO_X)?, ifindex(TO_Y)?);
    Ok((ebpf, [rx_socket(x)?, tx_socket(x)?, rx_socket(y)?, tx_socket(y)?]))
}

fn ifindex(name: &str) -> Result<libc::c_int> {
    let c = std::ffi::CString::new(name)?;
    // SAFETY: a NUL-terminated name.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => bail!("no interface {name}: {}", io::Error::last_os_error()),
        i => Ok(i as libc::c_int),
    }
}

/// A socket that receives every frame arriving on `ifindex` (not those sent out of it),
/// with VLAN tags reported as auxiliary data. Promiscuous mode is not needed: a veth passes
/// frames for any MAC address up the stack, and packet sockets see those too.
fn rx_socket(ifindex: libc::c_int) -> Result<OwnedFd> {
    let fd = packet_socket()?;
    let raw = fd.as_raw_fd();
    sockopt::set(raw, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &1)?;
    sockopt::set(raw, libc::SOL_PACKET, libc::PACKET_AUXDATA, &1)?;
    sockopt::set(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &RCVBUF)?;
    // Options first, then bind: only a bound protocol makes the socket receive.
    bind(raw, ifindex, (libc::ETH_P_ALL as u16).to_be())?;
    Ok(fd)
}

/// A socket that only sends out of `ifindex` (protocol 0: it receives nothing).
fn tx_socket(ifindex: libc::c_int) -> Result<OwnedFd> {
    let fd = packet_socket()?;
    bind(fd.as_raw_fd(), ifindex, 0)?;
    Ok(fd)
}

fn packet_socket() -> Result<OwnedFd> {
    // SAFETY: plain socket(2); protocol 0 receives nothing until bound with a protocol.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        bail!("AF_PACKET socket: {}", io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn bind(fd: RawFd, ifindex: libc::c_int, protocol_be: u16) -> Result<()> {
    // SAFETY: sockaddr_ll is plain data; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol_be;
    sll.sll_ifindex = ifindex;
    // SAFETY: a valid sockaddr_ll and its size.
    let r = unsafe {
        libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r != 0 {
        bail!("bind AF_PACKET to ifindex {ifindex}: {}", io::Error::last_os_error());
    }
    Ok(())
}

/// The per-direction decisions, with separate generators so that changing the jitter does
/// not change which frames are lost.
struct Decide {
    loss: SmallRng,
    jitter: SmallRng,
    /// Gilbert-Elliott state.
    bad: bool,
    /// Latest due time so far: the earliest a frame may leave without reordering.
    last_due: Instant,
}

impl Decide {
    fn new(dir: usize) -> Self {
        // Odd multiples of the golden ratio: well-mixed, nonzero seeds per direction.
        let seed = 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(2 * dir as u64 + 1);
        Self {
            loss: SmallRng::seed_from_u64(seed),
            jitter: SmallRng::seed_from_u64(!seed),
            bad: false,
            last_due: Instant::now(),
        }
    }

    fn lose(&mut self, imp: &Impairment) -> bool {
        if imp.drop_all {
            return true;
        }
        let Some(ge) = imp.burst else { return self.loss.random::<f64>() < imp.loss };
        let lost = self.loss.random::<f64>() < if self.bad { ge.loss_bad } else { ge.loss_good };
        if self.loss.random::<f64>() < if self.bad { ge.p_bad_to_good } else { ge.p_good_to_bad } {
            self.bad = !self.bad;
        }
        lost
    }

    fn due(&mut self, arrived: Instant, imp: &Impairment) -> Instant {
        let due = arrived + imp.delay + imp.jitter.mul_f64(self.jitter.random::<f64>());
        self.last_due = self.last_due.max(due);
        if imp.reorder { due } else { self.last_due }
    }
}

/// A frame waiting for its due time; the heap pops the earliest (then the first arrived).
struct Held {
    due: Instant,
    seq: u64,
    frame: Vec<u8>,
}

impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}

impl Eq for Held {}

/// One direction: frames from `rx` to `tx`.
struct Worker {
    shared: Arc<Shared>,
    dir: usize,
    rx: OwnedFd,
    tx: OwnedFd,
}

impl Worker {
    fn run(self) {
        // The element emulates a link, not a host process: real-time priority keeps its
        // delays exact when a test loads the CPUs (`cpu::busy_for`). Without the privilege
        // it runs as an ordinary thread.
        let param = libc::sched_param { sched_priority: 10 };
        // SAFETY: sets the calling thread's policy; a failure leaves it unchanged.
        unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
        let counters = &self.shared.counters[self.dir];
        let mut decide = Decide::new(self.dir);
        let mut held = BinaryHeap::<Held>::new();
        let mut seq = 0u64;
        // Room for a VLAN tag in front: see `recv_frame`.
        let mut buf = vec![0u8; VLAN_LEN + MAX_FRAME];
        while !self.shared.stop.load(Relaxed) {
            let now = Instant::now();
            while let Some(top) = held.peek_mut() {
                if top.due > now {
                    break;
                }
                let h = PeekMut::pop(top);
                let counter = match send(self.tx.as_raw_fd(), &h.frame) {
                    Ok(()) => &counters.forwarded,
                    Err(_) => &counters.errors,
                };
                counter.fetch_add(1, Relaxed);
            }
            let wait = held.peek().map_or(MAX_WAIT, |h| h.due - now).min(MAX_WAIT);
            if !sockopt::readable(self.rx.as_raw_fd(), wait) {
                continue;
            }
            let imp =
                *self.shared.impairment[self.dir].lock().unwrap_or_else(PoisonError::into_inner);
            for _ in 0..BATCH {
                let frame = match recv_frame(self.rx.as_raw_fd(), &mut buf) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(_) => {
                        counters.errors.fetch_add(1, Relaxed);
                        break;
                    }
                };
                if decide.lose(&imp) || held.len() >= QUEUE_LIMIT {
                    counters.dropped.fetch_add(1, Relaxed);
                    continue;
                }
                let due = decide.due(Instant::now(), &imp);
                seq += 1;
                held.push(Held { due, seq, frame: frame.to_vec() });
            }
        }
    }
}

/// Reads one waiting frame into `buf` (`None`: nothing waiting). The kernel strips a VLAN
/// tag into auxiliary data before packet sockets see the frame; it is put back, so the
/// frame leaves as it came.
fn recv_frame(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<&[u8]>> {
    let room = buf.len() - VLAN_LEN;
    let mut iov = libc::iovec { iov_base: buf[VLAN_LEN..].as_mut_ptr().cast(), iov_len: room };
    // u64 elements: cmsg headers need their alignment.
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control);
    let len = loop {
        // SAFETY: `msg` points at `iov` (into `buf`) and `control`, both live and writable.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT | libc::MSG_TRUNC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(None),
            _ => return Err(e),
        }
    };
    if len > room || len < 14 {
        return Err(io::Error::other(format!("frame of {len} bytes")));
    }
    let mut tag = None;
    // SAFETY: the kernel filled `control` with `msg.msg_controllen` bytes of cmsgs.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA {
                let aux: libc::tpacket_auxdata =
                    std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                    let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                        aux.tp_vlan_tpid
                    } else {
                        libc::ETH_P_8021Q as u16
                    };
                    tag = Some((tpid, aux.tp_vlan_tci));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let Some((tpid, tci)) = tag else { return Ok(Some(&buf[VLAN_LEN..VLAN_LEN + len])) };
    // Move the two MAC addresses forward and insert the tag behind them.
    buf.copy_within(VLAN_LEN..VLAN_LEN + 12, 0);
    buf[12..14].copy_from_slice(&tpid.to_be_bytes());
    buf[14..16].copy_from_slice(&tci.to_be_bytes());
    Ok(Some(&buf[..VLAN_LEN + len]))
}

fn send(fd: RawFd, frame: &[u8]) -> io::Result<()> {
    loop {
        // SAFETY: `frame` is valid for its length.
        let n = unsafe { libc::send(fd, frame.as_ptr().cast(), frame.len(), libc::MSG_DONTWAIT) };
        if n >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Due times of 1,000 frames arriving every 100 µs under 10 ms delay and 5 ms jitter.
    fn dues(reorder: bool) -> (Vec<Instant>, Vec<Instant>) {
        let imp = Impairment {
            delay: Duration::from_millis(10),
            jitter: Duration::from_millis(5),
            reorder,
            ..Default::default()
        };
        let mut decide = Decide::new(0);
        let start = Instant::now();
        let arrivals: Vec<_> = (0..1000).map(|i| start + Duration::from_micros(i * 100)).collect();
        let dues = arrivals.iter().map(|&a| decide.due(a, &imp)).collect();
        (arrivals, dues)
    }

    #[test]
    fn jitter_reorders_only_when_allowed() {
        for reorder in [false, true] {
            let (arrivals, dues) = dues(reorder);
            for (a, d) in arrivals.iter().zip(&dues) {
                let held = *d - *a;
                assert!(held >= Duration::from_millis(10) && held < Duration::from_millis(15));
            }
            let inversions = dues.windows(2).filter(|w| w[1] < w[0]).count();
            assert_eq!(inversions > 0, reorder, "{inversions} inversions, reorder {reorder}");
        }
    }

    #[test]
    fn bernoulli_and_cut() {
        let mut decide = Decide::new(1);
        let lossy = Impairment { loss: 0.25, ..Default::default() };
        let lost = (0..100_000).filter(|_| decide.lose(&lossy)).count();
        assert!((24_000..26_000).contains(&lost), "{lost}");
        let cut = Impairment { drop_all: true, ..Default::default() };
        assert!((0..1000).all(|_| decide.lose(&cut)));
        assert!((0..1000).all(|_| !decide.lose(&Impairment::default())));
    }
}
