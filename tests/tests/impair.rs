//! The userspace link impairment element with real frames between two namespaces:
//!
//! ```text
//!   X (10.0.1.1/24) ifx ── to-x [I: ImpairedLink] to-y ── ify (10.0.1.2/24) Y
//! ```
//!
//! Delay shows in the round-trip time, Bernoulli and Gilbert-Elliott loss in the delivered
//! fraction and the shape of the gaps, a cut in silence and recovery. Frames that X and Y
//! transmit in XDP cross the element too, with their VLAN tag; ARP crosses it as well: X
//! and Y resolve each other through it.

use std::{
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    maps::Array,
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp},
};
use etherparse::{PacketBuilder, SlicedPacket, TransportSlice, VlanId};
use wecan_common::wire::HEADER_LEN;
use wecan_datapath::TESTKIT_OBJECT;
use wecan_tests::{
    impair::{GilbertElliott, ImpairedLink, Impairment},
    net::{Netns, in_netns},
    skip_privileged,
};

const X_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
const Y_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const ECHO_PORT: u16 = 9000;
const SINK_PORT: u16 = 9001;
const SENDER_PORT: u16 = 9100;
const VLAN_PORT: u16 = 9003;
/// Datagrams per loss phase.
const N: u32 = 5_000;
/// A receiver stops this long after the last datagram.
const IDLE: Duration = Duration::from_millis(500);
/// Frames that may cross the link besides the test's own (IPv6 neighbour discovery, MLD
/// and router solicitations of X and Y, ARP refreshes).
const STRAY: u64 = 20;

/// Binds a UDP socket in namespace `ns` with a receive buffer large enough for a phase.
fn udp(ns: &Netns, ip: Ipv4Addr, port: u16) -> UdpSocket {
    let s =
        in_netns(&ns.name, move || UdpSocket::bind(SocketAddrV4::new(ip, port))).unwrap().unwrap();
    let size: libc::c_int = 8 << 20;
    // SAFETY: a valid socket and an int option.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as u32,
        )
    };
    assert_eq!(r, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
    s
}

/// Reads datagrams carrying a u32 sequence number until none came for `IDLE` (at most
/// 30 s); returns the sequence numbers in arrival order.
fn receive(sock: UdpSocket) -> JoinHandle<Vec<u32>> {
    sock.set_read_timeout(Some(IDLE)).unwrap();
    thread::spawn(move || {
        let start = Instant::now();
        let mut seqs = Vec::new();
        let mut buf = [0u8; 2048];
        while start.elapsed() < Duration::from_secs(30) {
            match sock.recv(&mut buf) {
                Ok(n) if n >= 4 => seqs.push(u32::from_be_bytes(buf[..4].try_into().unwrap())),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        seqs
    })
}

/// Sends sequence numbers `0..n` to Y's sink, paced (bursts of 50, then 1 ms) so that no
/// socket along the way overflows: every loss is then the element's.
fn send_seq(sock: &UdpSocket, n: u32) {
    for seq in 0..n {
        sock.send_to(&seq.to_be_bytes(), SocketAddrV4::new(Y_IP, SINK_PORT)).unwrap();
        if seq % 50 == 49 {
            thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Sends `0..n` from X to Y's sink and returns what arrived and the X → Y drops the
/// element counted meanwhile.
fn run_phase(link: &ImpairedLink, tx: &UdpSocket, sink: &UdpSocket, n: u32) -> (Vec<u32>, u64) {
    let before = link.stats();
    let rx = receive(sink.try_clone().unwrap());
    send_seq(tx, n);
    let seqs = rx.join().unwrap();
    let after = link.stats();
    assert_eq!(after.xy_errors, 0, "socket errors in the element: {after:?}");
    (seqs, after.xy_dropped - before.xy_dropped)
}

/// Lengths of the runs of missing sequence numbers among `0..n`.
fn loss_runs(seqs: &[u32], n: u32) -> Vec<u32> {
    let mut got = vec![false; n as usize];
    for &s in seqs {
        got[s as usize] = true;
    }
    let mut runs = Vec::new();
    let mut run = 0;
    for g in got {
        if g {
            if run > 0 {
                runs.push(run);
            }
            run = 0;
        } else {
            run += 1;
        }
    }
    if run > 0 {
        runs.push(run);
    }
    runs
}

/// Checks that what arrived and what the element dropped account for every datagram sent,
/// up to a few stray frames of X's own that the element also decided on.
fn assert_accounted(phase: &str, seqs: &[u32], dropped: u64, n: u32) {
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), seqs.len(), "{phase}: duplicates");
    let total = seqs.len() as u64 + dropped;
    assert!(
        total >= u64::from(n) && total <= u64::from(n) + STRAY,
        "{phase}: {} arrived + {dropped} dropped by the element != {n} sent",
        seqs.len()
    );
}

/// Runs `testkit_gen` in `ns` with live frames: `n` copies of `frame` sent with XDP_TX out
/// of `iface`, as a relay's XDP program transmits.
fn xdp_transmit(ns: &Netns, iface: &str, frame: Vec<u8>, n: u32) {
    let ifindex = ns.ifindex(iface).unwrap();
    in_netns(&ns.name, move || {
        let mut ebpf = Ebpf::load(TESTKIT_OBJECT).unwrap();
        let mut template: Array<_, [u8; GEN_TEMPLATE]> =
            Array::try_from(ebpf.map_mut("TESTKIT_TEMPLATE").unwrap()).unwrap();
        template
            .set(0, <[u8; GEN_TEMPLATE]>::try_from(&frame[..GEN_TEMPLATE]).unwrap(), 0)
            .unwrap();
        let prog: &mut Xdp = ebpf.program_mut("testkit_gen").unwrap().try_into().unwrap();
        prog.load().unwrap();
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(&frame);
        opts.ctx_in = Some(&ctx);
        opts.repeat = n;
        opts.attrs = TestRunAttrs::new().xdp_live_frames(64);
        prog.test_run(opts).unwrap();
    })
    .unwrap();
}

/// Bytes of headers `testkit_gen` restores on every frame: Ethernet, IPv4, UDP, relay header.
const GEN_TEMPLATE: usize = 14 + 20 + 8 + HEADER_LEN;

/// A UDP datagram in an Ethernet frame (VLAN-tagged with `vlan`), longer than the
/// [`GEN_TEMPLATE`] bytes of headers that `testkit_gen` restores.
fn udp_frame(
    mac: ([u8; 6], [u8; 6]),
    ip: (Ipv4Addr, Ipv4Addr),
    port: u16,
    vlan: Option<u16>,
) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(mac.0, mac.1);
    let ipv4 = match vlan {
        Some(id) => {
            eth.single_vlan(VlanId::try_new(id).unwrap()).ipv4(ip.0.octets(), ip.1.octets(), 64)
        }
        None => eth.ipv4(ip.0.octets(), ip.1.octets(), 64),
    };
    let mut out = Vec::new();
    ipv4.udp(SENDER_PORT, port).write(&mut out, &[0u8; 64]).unwrap();
    out
}

/// A packet socket on `iface` in `ns` that reports VLAN tags as auxiliary data (the kernel
/// strips the tag before packet sockets see the frame).
fn vlan_socket(ns: &Netns, iface: &str) -> OwnedFd {
    let ifindex = ns.ifindex(iface).unwrap() as libc::c_int;
    in_netns(&ns.name, move || {
        // SAFETY: plain socket calls on a fresh descriptor with valid arguments.
        unsafe {
            let proto = (libc::ETH_P_ALL as u16).to_be();
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto.into());
            assert!(fd >= 0, "AF_PACKET socket: {}", std::io::Error::last_os_error());
            let fd = OwnedFd::from_raw_fd(fd);
            let on: libc::c_int = 1;
            let r = libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_AUXDATA,
                (&on as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as u32,
            );
            assert_eq!(r, 0);
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = ifindex;
            let r = libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
            fd
        }
    })
    .unwrap()
}

/// VLAN IDs (None: untagged) of the UDP datagrams to `port` read from `fd` until none came
/// for `IDLE` (at most 200 frames).
fn vlan_ids(fd: &OwnedFd, port: u16) -> Vec<Option<u16>> {
    let mut ids = Vec::new();
    for _ in 0..200 {
        let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, IDLE.as_millis() as libc::c_int) } != 1 {
            break;
        }
        let mut buf = [0u8; 2048];
        let mut control = [0u64; 8];
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        // SAFETY: msghdr is plain data; it points at live `iov` and `control` buffers.
        let (n, aux) = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = size_of_val(&control);
            let n = libc::recvmsg(fd.as_raw_fd(), &mut msg, 0);
            assert!(n >= 0, "recvmsg: {}", std::io::Error::last_os_error());
            let c = libc::CMSG_FIRSTHDR(&msg);
            assert!(!c.is_null() && (*c).cmsg_type == libc::PACKET_AUXDATA, "no auxdata");
            (
                n as usize,
                std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::tpacket_auxdata>()),
            )
        };
        let Ok(p) = SlicedPacket::from_ethernet(&buf[..n]) else { continue };
        if let Some(TransportSlice::Udp(u)) = p.transport
            && u.destination_port() == port
        {
            let tagged = aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0;
            ids.push(tagged.then_some(aux.tp_vlan_tci & 0x0fff));
        }
    }
    ids
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[test]
fn impaired_link_delays_loses_bursts_cuts_and_carries_xdp_frames() {
    if skip_privileged() {
        return;
    }
    let tag = std::process::id() % 100_000;
    let x = Netns::new(&format!("impx{tag}")).unwrap();
    let y = Netns::new(&format!("impy{tag}")).unwrap();
    let delay = Impairment { delay: Duration::from_millis(20), ..Default::default() };
    let link =
        ImpairedLink::new(&format!("impi{tag}"), &x, "ifx", &y, "ify", delay, delay).unwrap();
    x.ip(&["addr", "add", &format!("{X_IP}/24"), "dev", "ifx"]).unwrap();
    y.ip(&["addr", "add", &format!("{Y_IP}/24"), "dev", "ify"]).unwrap();

    // (a) 20 ms each way: 50 UDP pings to an echo thread in Y (the first one also resolves
    // Y's MAC through the element).
    let tx = udp(&x, X_IP, SENDER_PORT);
    let echo = udp(&y, Y_IP, ECHO_PORT);
    let stop = Arc::new(AtomicBool::new(false));
    let responder = {
        let stop = stop.clone();
        echo.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = echo.recv_from(&mut buf) {
                    let _ = echo.send_to(&buf[..n], from);
                }
            }
        })
    };
    tx.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut rtts = Vec::new();
    for seq in 0u32..50 {
        let start = Instant::now();
        tx.send_to(&seq.to_be_bytes(), SocketAddrV4::new(Y_IP, ECHO_PORT)).unwrap();
        let mut buf = [0u8; 64];
        // A stale echo (of a ping that timed out) is skipped, within the same 1 s bound.
        while let Ok(n) = tx.recv(&mut buf) {
            if buf[..n] == seq.to_be_bytes() {
                rtts.push(start.elapsed());
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    responder.join().unwrap();
    rtts.sort();
    assert_eq!(rtts.len(), 50, "pings answered");
    let median = rtts[rtts.len() / 2];
    eprintln!(
        "(a) RTT over 20 ms + 20 ms: min {:.2} ms, median {:.2} ms, max {:.2} ms",
        ms(rtts[0]),
        ms(median),
        ms(rtts[rtts.len() - 1])
    );
    assert!(rtts[0] >= Duration::from_millis(40), "a frame left early: {:?}", rtts[0]);
    assert!(median <= Duration::from_millis(48), "median RTT {median:?}");

    // (b) 10 % Bernoulli loss X → Y.
    let sink = udp(&y, Y_IP, SINK_PORT);
    link.set(Impairment { loss: 0.1, ..Default::default() }, Impairment::default());
    let (seqs, dropped) = run_phase(&link, &tx, &sink, N);
    let delivered = seqs.len() as f64 / f64::from(N);
    eprintln!("(b) 10 % loss: {} of {N} delivered ({delivered:.4}), {dropped} dropped", seqs.len());
    assert_accounted("(b)", &seqs, dropped, N);
    assert!((0.87..=0.93).contains(&delivered), "delivered {delivered}");

    // (c) Gilbert-Elliott: Bad runs of mean length 1 / 0.3 lose everything, Good loses
    // nothing. The number of Bad frames among N has mean N·πB and, the states being
    // correlated, variance N·πB·πG·(1 + λ) / (1 − λ) with λ = 1 − p − r; accept ±5 σ.
    let ge =
        GilbertElliott { p_good_to_bad: 0.03, p_bad_to_good: 0.3, loss_good: 0.0, loss_bad: 1.0 };
    let (p, r) = (ge.p_good_to_bad, ge.p_bad_to_good);
    let pi_bad = ge.mean_loss();
    let lambda = 1.0 - p - r;
    let sigma = (pi_bad * (1.0 - pi_bad) * (1.0 + lambda) / (1.0 - lambda) / f64::from(N)).sqrt();
    let band = (pi_bad - 5.0 * sigma)..=(pi_bad + 5.0 * sigma);
    link.set(Impairment { burst: Some(ge), ..Default::default() }, Impairment::default());
    let (seqs, dropped) = run_phase(&link, &tx, &sink, N);
    assert_accounted("(c)", &seqs, dropped, N);
    let loss = 1.0 - seqs.len() as f64 / f64::from(N);
    let runs = loss_runs(&seqs, N);
    let mean_run = runs.iter().sum::<u32>() as f64 / runs.len().max(1) as f64;
    eprintln!(
        "(c) Gilbert-Elliott: loss {loss:.4} (model {pi_bad:.4}, band {:.4}..={:.4}), {} loss \
         runs of mean length {mean_run:.2} (model {:.2})",
        band.start(),
        band.end(),
        runs.len(),
        1.0 / r
    );
    assert!(band.contains(&loss), "loss {loss} outside {band:?}");
    assert!(mean_run > 2.0, "mean loss run {mean_run}");

    // (d) A cut drops everything; after repair datagrams arrive again.
    let cut = Impairment { drop_all: true, ..Default::default() };
    link.set(cut, cut);
    let (seqs, dropped) = run_phase(&link, &tx, &sink, 200);
    eprintln!("(d) cut: {} of 200 arrived, {dropped} dropped", seqs.len());
    assert!(seqs.is_empty(), "{} datagrams crossed a cut link", seqs.len());
    assert!(dropped >= 200, "dropped {dropped}");
    link.set(Impairment::default(), Impairment::default());
    // The first datagrams after the repair may wait for X to re-resolve Y's MAC.
    let rx = receive(sink.try_clone().unwrap());
    send_seq(&tx, 1);
    assert_eq!(rx.join().unwrap(), vec![0], "the first datagram after repair");
    let (seqs, dropped) = run_phase(&link, &tx, &sink, 200);
    eprintln!("(d) repaired: {} of 200 arrived, {dropped} dropped", seqs.len());
    assert_eq!((seqs.len(), dropped), (200, 0));

    // (e) Frames X and Y transmit in XDP (as a relay forwards) reach the element and cross.
    let (x_mac, y_mac) = (x.mac("ifx").unwrap(), y.mac("ify").unwrap());
    for (name, from, iface, to, mac_from, mac_to, ip_from, ip_to) in [
        ("X → Y", &x, "ifx", &y, x_mac, y_mac, X_IP, Y_IP),
        ("Y → X", &y, "ify", &x, y_mac, x_mac, Y_IP, X_IP),
    ] {
        let sink = udp(to, ip_to, SINK_PORT + 1);
        let rx = receive(sink);
        let frame = udp_frame((mac_from, mac_to), (ip_from, ip_to), SINK_PORT + 1, None);
        xdp_transmit(from, iface, frame, 1000);
        let got = rx.join().unwrap().len();
        eprintln!("(e) {name}: 1000 XDP_TX frames, {got} received");
        assert_eq!(got, 1000, "{name}: XDP-transmitted frames received");
    }

    // (f) A VLAN tag crosses too: Y's kernel reports the tag X's XDP program sent.
    let sock = vlan_socket(&y, "ify");
    xdp_transmit(&x, "ifx", udp_frame((x_mac, y_mac), (X_IP, Y_IP), VLAN_PORT, Some(100)), 10);
    let ids = vlan_ids(&sock, VLAN_PORT);
    eprintln!("(f) VLAN: {ids:?}");
    assert_eq!(ids, vec![Some(100); 10]);

    let s = link.stats();
    eprintln!("element totals: {s:?}");
    assert_eq!(s.xy_errors + s.yx_errors, 0, "{s:?}");
}
