//! Benchmarks, always as ratios against a baseline measured in the same run.
//!
//! 1. Per-packet cost of the relay program (BPF_PROG_TEST_RUN) for IPv4 and IPv6
//!    forwarding, beside the least a forwarder can do (swap MACs, XDP_TX).
//! 2. Forwarding rate through one relay namespace (generator G — relay R — sink S) for the
//!    XDP relay, a userspace relay (recvmmsg/sendmmsg) and kernel IP forwarding.
//! 3. Control plane: failover time, route computation time and memory, probe RTT accuracy
//!    with replies in XDP beside replies from the agent.
//! 4. The FEC codec beside plain reed-solomon-simd.
//! 5. Per-hop protection ([`crate::protection`]) and the agent's slow-path rate beside XDP.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddrV4},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use aya::{
    Ebpf,
    maps::{Array, PerCpuArray},
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
};
use etherparse::PacketBuilder;
use wecan_agent::probe::ProbeSettings;
use wecan_common::{
    maps::DEFAULT_FIB_CACHE_MS,
    wire::{HEADER_LEN, PacketKind, ProbeBody, RelayHeader},
};
use wecan_datapath::TESTKIT_OBJECT;
use wecan_tests::{
    golden::{self, Fixture, PEER_MAC, TX_V4, TX_V6},
    net::{in_netns, pin_to_cpu},
    scenario,
    topology::{Topology, iface},
};
use wecan_transport::auth::{self as hop_auth, Sealer, Windows};

/// Single-run BPF_PROG_TEST_RUN calls per program and round (see `cost`).
const COST_CALLS: u32 = 200_000;
const COST_ROUNDS: usize = 5;
/// UDP payload of the rate benchmark: relay header + 40 bytes = 64 bytes.
const RATE_PAYLOAD: usize = 40;
pub(crate) const RATE_SECS: f64 = 1.0;
/// Header bytes the generator restores on every frame (`testkit_gen`).
const GEN_TEMPLATE: usize = 14 + 20 + 8 + HEADER_LEN;

pub fn run(json: bool, write: Option<PathBuf>) -> Result<()> {
    let mut r: BTreeMap<&'static str, f64> = BTreeMap::new();
    let mut fec_rows: Vec<(usize, usize, &str, f64)> = Vec::new();
    eprintln!("bench: per-packet cost (BPF_PROG_TEST_RUN)…");
    let cost = in_netns_fixture(cost)?;
    r.insert("relay_ns_per_pkt_v4", cost.v4);
    r.insert("relay_ns_per_pkt_v6", cost.v6);
    r.insert("min_ns_per_pkt", cost.min);
    r.insert("relay_cost_ratio_v4", cost.v4 / cost.min);
    r.insert("relay_cost_ratio_v6", cost.v6 / cost.min);
    r.insert("floor_ns_per_pkt", cost.floor);
    r.insert("relay_ns_per_pkt_v4_nocache", cost.v4_nocache);
    r.insert("relay_ns_per_pkt_v4_noauth", cost.v4_noauth);
    r.insert("relay_ns_per_pkt_v6_noauth", cost.v6_noauth);
    r.insert("relay_ns_per_pkt_v4_verify_only", cost.v4_verify_only);
    r.insert("auth_cost_ratio_v4", cost.v4 / cost.v4_noauth);
    r.insert("auth_cost_ratio_v6", cost.v6 / cost.v6_noauth);
    r.insert("hop_auth_ns_per_pkt", hop_auth_ns());
    r.insert("relay_ns_per_pkt_v6_nocache", cost.v6_nocache);

    eprintln!("bench: forwarding rate G → R → S…");
    let rate = rates()?;
    for (k, v) in rate {
        r.insert(k, v);
    }
    r.insert("xdp_vs_userspace", r["xdp_pps"] / r["userspace_pps"]);

    eprintln!("bench: XDP → agent handoff, UDP socket beside AF_XDP…");
    let (socket, xsk) = crate::handoff::run()?;
    r.insert("handoff_socket_pps", socket);
    r.insert("handoff_afxdp_pps", xsk);
    r.insert("xdp_vs_kernel", r["xdp_pps"] / r["kernel_pps"]);

    eprintln!("bench: route computation (full meshes)…");
    for (n, key) in [(50, "route_ms_50"), (200, "route_ms_200"), (1000, "route_ms_1000")] {
        let (_, router, bytes) = crate::routing_scale::full_mesh(n, 1);
        r.insert(key, router.as_secs_f64() * 1000.0);
        if n == 1000 {
            r.insert("route_mem_mb_1000", bytes as f64 / 1e6);
        }
    }

    eprintln!("bench: FEC codec beside reed-solomon-simd…");
    for (k, m) in FEC_GROUPS {
        let (enc, dec, enc_rs, dec_rs) =
            crate::fec_codec::bench(k, m, 1200, 2, Duration::from_millis(300));
        for (name, v) in [("enc", enc), ("dec", dec), ("enc_rs", enc_rs), ("dec_rs", dec_rs)] {
            fec_rows.push((k, m, name, v));
        }
        if (k, m) == (10, 4) {
            r.insert("fec_encode_gibps", enc);
            r.insert("fec_decode_gibps", dec);
            r.insert("fec_encode_gibps_rs", enc_rs);
            r.insert("fec_decode_gibps_rs", dec_rs);
        }
    }

    eprintln!("bench: FEC backends behind the codec…");
    let backends_table = fec_backends();

    let protection_table = crate::protection::run(&mut r)?;
    r.insert("slowpath_vs_xdp", r["slowpath_pps"] / r["xdp_pps"]);

    eprintln!("bench: probe RTT error against an emulated 5 ms + 5 ms link…");
    r.insert("probe_rtt_err_us_xdp", probe_rtt_error("xdp")?);
    r.insert("probe_rtt_err_us_userspace", probe_rtt_error("agent")?);

    eprintln!("bench: failover time ({FAILOVER_RUNS} runs)…");
    let mut runs = Vec::new();
    let mut down_runs = Vec::new();
    for i in 0..FAILOVER_RUNS {
        let mut t = scenario::mesh(&format!("bf{i}"))?;
        let (ms, report) =
            scenario::fail_and_measure(&mut t, "r4", scenario::Failure::Cut, 30_000, 0)?;
        eprintln!("bench: failover run {i}: {ms:.1} ms ({} packets lost)", report.missing);
        runs.push(ms);
        // Same mesh, r1 now on r2: set its interface toward r2 down.
        scenario::wait_route(&t, "r1", 200, |r| r["next_node"] == 2)?;
        let (ms, report) = scenario::fail_and_measure(
            &mut t,
            "r2",
            scenario::Failure::InterfaceDown,
            30_000,
            100_000,
        )?;
        eprintln!("bench: interface-down run {i}: {ms:.1} ms ({} packets lost)", report.missing);
        down_runs.push(ms);
    }
    r.insert("failover_ms_median", median(runs.clone()));
    r.insert("failover_ms_max", runs.iter().copied().fold(0.0, f64::max));
    r.insert("failover_iface_down_ms_median", median(down_runs.clone()));
    r.insert("failover_iface_down_ms_max", down_runs.iter().copied().fold(0.0, f64::max));

    eprintln!("bench: probe load ({PROBE_LOAD_PEERS} peers, {PROBE_LOAD_ROUNDS} rounds)…");
    let load = crate::probe_load::measure(PROBE_LOAD_PEERS, PROBE_LOAD_ROUNDS)?;
    r.insert("probe_send_ns", load.send_ns);
    r.insert("probe_send_ratio", load.send_ns / load.send_baseline_ns);
    r.insert("probe_reply_ns", load.reply_ns);
    r.insert("probe_reply_ratio", load.reply_ns / load.reply_baseline_ns);
    let per_s = 1000.0 / ProbeSettings::default().interval_ms as f64;
    // Both ends of a link probe it: each agent sends and gets back `per_s` probes per peer.
    r.insert("probe_cpu_share_1000", (load.send_ns + load.reply_ns) * per_s * 1000.0 / 1e9);
    r.insert("probe_bytes_per_peer_s", PROBE_FRAME as f64 * per_s);

    let mut table = render(&r);
    let _ = writeln!(
        table,
        "\nFEC codec, 1,200-byte packets, 2 data packets lost, GiB/s of original data"
    );
    let _ = writeln!(
        table,
        "  {:<8} {:>10} {:>10} {:>14} {:>14}",
        "k+m", "encode", "decode", "encode (rs)", "decode (rs)"
    );
    for (k, m) in FEC_GROUPS {
        let get =
            |n: &str| fec_rows.iter().find(|x| (x.0, x.1, x.2) == (k, m, n)).map_or(0.0, |x| x.3);
        let _ = writeln!(
            table,
            "  {:<8} {:>10.2} {:>10.2} {:>14.2} {:>14.2}",
            format!("{k}+{m}"),
            get("enc"),
            get("dec"),
            get("enc_rs"),
            get("dec_rs")
        );
    }
    table.push_str(&backends_table);
    table.push_str(&protection_table);
    print!("{table}");
    if let Some(path) = write {
        std::fs::write(&path, markdown(&r, &table))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("bench: wrote {}", path.display());
    }
    if json {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}

struct Cost {
    floor: f64,
    min: f64,
    v4: f64,
    v6: f64,
    /// The same paths with the links unauthenticated (`auth = "none"`): no tag verified or
    /// set.
    v4_noauth: f64,
    v6_noauth: f64,
    /// IPv4 with only the incoming link keyed: one tag verified, none set (what one key
    /// verified at every hop, Cilium-style, would cost per hop).
    v4_verify_only: f64,
    /// With `fib_cache_ms = 0`: `bpf_fib_lookup` on every packet.
    v4_nocache: f64,
    v6_nocache: f64,
}

/// Runs `f` on a thread that has entered a fresh golden-packet fixture namespace.
fn in_netns_fixture<T: Send + 'static>(
    f: impl FnOnce(&mut Fixture) -> Result<T> + Send + 'static,
) -> Result<T> {
    thread::spawn(move || {
        let mut fx = Fixture::new()?;
        f(&mut fx)
    })
    .join()
    .map_err(|_| anyhow!("benchmark thread panicked"))?
}

/// Mean kernel-measured ns per run of the packets `next` makes through `prog`, over
/// `COST_CALLS` calls of one run each; fails unless every call returns `verdict`. Sealed
/// packets are made afresh for each call (a packet is accepted once); outside the timing.
fn time_prog(
    prog: &Xdp,
    mut next: impl FnMut() -> Vec<u8>,
    ctx: &[u8],
    verdict: u32,
) -> Result<f64> {
    let mut total = Duration::ZERO;
    for _ in 0..COST_CALLS {
        let pkt = next();
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(&pkt);
        opts.ctx_in = Some(ctx);
        let res = prog.test_run(opts)?;
        if res.return_value != verdict {
            bail!("benchmark packet got verdict {} instead of {verdict}", res.return_value);
        }
        total += res.duration;
    }
    Ok(total.as_nanos() as f64 / f64::from(COST_CALLS))
}

/// Per-packet cost, one run per BPF_PROG_TEST_RUN call. (With repeat > 1 the kernel would
/// run the program on its own output, and on this kernel every such call also pays ~40 ms
/// of XDP dispatcher updates.) The kernel times the run itself, not the syscall, but its
/// clock reads are inside the timed window: the XDP_PASS program's time is that floor.
fn cost(f: &mut Fixture) -> Result<Cost> {
    let mut ctx = [0u8; 24];
    ctx[12..16].copy_from_slice(&f.in_if.to_ne_bytes());
    let in_mac = f.in_mac;
    let v4_frame = move |p: &[u8]| {
        golden::v4(PEER_MAC, in_mac, [10, 1, 0, 2], [10, 1, 0, 1], 20, (40000, golden::PORT), p)
    };
    let v6_frame = move |p: &[u8]| {
        golden::v6(PEER_MAC, in_mac, "fd01::2", "fd01::1", 20, (40000, golden::PORT), p)
    };
    let v4 = v4_frame(&golden::relay_payload(TX_V4, 1, 16));
    let v6 = v6_frame(&golden::relay_payload(TX_V6, 1, 16));
    let ctx_for = |pkt: &[u8]| {
        let mut c = ctx;
        c[4..8].copy_from_slice(&(pkt.len() as u32).to_ne_bytes());
        c
    };
    let (ctx4, ctx6) = (ctx_for(&v4), ctx_for(&v6));
    let (mut next4, mut next6) =
        (sealing("10.1.0.2", TX_V4, v4_frame), sealing("fd01::2", TX_V6, v6_frame));

    // The links the benchmark packets take, keyed (as configured) or not.
    let links = ["10.1.0.2", "fd01::2", "10.1.0.3", "fd01::3"].map(golden::ip);
    let keyed: Vec<_> =
        links.iter().map(|&a| f.relay.maps.peer(a).context("peer")).collect::<Result<_>>()?;
    // Which of the links (in: from the peer; out: to the next hop) are keyed.
    let set_auth = |f: &mut Fixture, incoming: bool, outgoing: bool| -> Result<()> {
        for (i, (&a, v)) in links.iter().zip(&keyed).enumerate() {
            let mut v = *v;
            if !(if i < 2 { incoming } else { outgoing }) {
                v.flags = wecan_common::maps::peer_flags::NO_AUTH;
            }
            f.relay.maps.add_peer(a, v)?;
        }
        Ok(())
    };

    let mut testkit = Ebpf::load(TESTKIT_OBJECT)?;
    for name in ["testkit_mac_swap_tx", "testkit_pass"] {
        let p: &mut Xdp = testkit.program_mut(name).context("testkit")?.try_into()?;
        p.load()?;
    }
    let xdp = wecan_common::stats::xdp::TX;
    let (mut floor, mut min, mut r4, mut r6) = (vec![], vec![], vec![], vec![]);
    let (mut r4_nocache, mut r6_nocache) = (vec![], vec![]);
    let (mut r4_noauth, mut r6_noauth, mut r4_verify) = (vec![], vec![], vec![]);
    // The FIB cache is per CPU: stay on one.
    pin_to_cpu(1);
    for _ in 0..COST_ROUNDS {
        let swap: &Xdp = testkit.program("testkit_mac_swap_tx").context("testkit")?.try_into()?;
        min.push(time_prog(swap, || v4.clone(), &ctx4, xdp)?);
        let pass: &Xdp = testkit.program("testkit_pass").context("testkit")?.try_into()?;
        floor.push(time_prog(pass, || v4.clone(), &ctx4, wecan_common::stats::xdp::PASS)?);
        for (cache_ms, r4, r6) in
            [(DEFAULT_FIB_CACHE_MS, &mut r4, &mut r6), (0, &mut r4_nocache, &mut r6_nocache)]
        {
            f.set_fib_cache_ms(cache_ms)?;
            let relay = f.relay.program()?;
            r4.push(time_prog(relay, &mut next4, &ctx4, xdp).context("relay, IPv4")?);
            r6.push(time_prog(relay, &mut next6, &ctx6, xdp).context("relay, IPv6")?);
        }
        // Beside the first rows, with the default FIB cache: only the incoming link keyed
        // (one tag verified, none set), then neither.
        f.set_fib_cache_ms(DEFAULT_FIB_CACHE_MS)?;
        set_auth(f, true, false)?;
        let relay = f.relay.program()?;
        r4_verify.push(time_prog(relay, &mut next4, &ctx4, xdp).context("IPv4, verify only")?);
        set_auth(f, false, false)?;
        let relay = f.relay.program()?;
        r4_noauth.push(time_prog(relay, || v4.clone(), &ctx4, xdp).context("IPv4, no auth")?);
        r6_noauth.push(time_prog(relay, || v6.clone(), &ctx6, xdp).context("IPv6, no auth")?);
        set_auth(f, true, true)?;
    }
    Ok(Cost {
        floor: median(floor),
        min: median(min),
        v4: median(r4),
        v6: median(r6),
        v4_noauth: median(r4_noauth),
        v6_noauth: median(r6_noauth),
        v4_verify_only: median(r4_verify),
        v4_nocache: median(r4_nocache),
        v6_nocache: median(r6_nocache),
    })
}

/// Packets to `dst` from peer `from` (node 2), each sealed afresh as that peer's end of the
/// link would, in the frames `frame` builds.
fn sealing(
    from: &'static str,
    dst: u32,
    frame: impl Fn(&[u8]) -> Vec<u8>,
) -> impl FnMut() -> Vec<u8> {
    let view = Fixture::view_of_me(from, 2, 1);
    let mut sealer = Sealer::new(1 << 50);
    move || {
        let mut p = golden::relay_payload(dst, 1, 16);
        sealer.seal(&mut p, &view).expect("keyed");
        frame(&p)
    }
}

/// Userspace hop authentication per packet, as the agent pays it for every packet it
/// forwards: verify what came in (tag and replay window), seal what goes out, on 1,200-byte
/// packets (only the header is tagged).
fn hop_auth_ns() -> f64 {
    const N: u64 = 1_000_000;
    // Node 2's entry for this relay (it seals), and this relay's entry for node 2.
    let mine = Fixture::view_of_me("10.1.0.2", 2, 1);
    let mut theirs = wecan_common::maps::PeerValue::new(2, wecan_common::maps::PeerKind::Relay);
    theirs.keys[0] = hop_auth::link_keys(&golden::secret("10.1.0.2", 1), 1, golden::ME, 2);
    let mut tx = Sealer::new(1 << 50);
    let rx = Windows::default();
    let mut pkt = golden::relay_payload(TX_V4, 1, 16);
    pkt.resize(1200, 0);
    let start = Instant::now();
    for _ in 0..N {
        tx.seal(&mut pkt, &mine).expect("keyed");
        hop_auth::verify(std::hint::black_box(&pkt), &theirs, &rx).expect("verifies once");
    }
    start.elapsed().as_nanos() as f64 / N as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

// ---------------------------------------------------------------------------------------
// Forwarding rate.

/// Which relay R runs.
#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Xdp,
    /// The agent's slow path: the route says slow-path, XDP passes packets to the agent's
    /// socket, which forwards them through the kernel (no protection applied).
    SlowPath,
    Userspace,
    Kernel,
}

fn rates() -> Result<Vec<(&'static str, f64)>> {
    let mut t = Topology::new("bench")?;
    // The generator replays one template frame, which a keyed link refuses as a replay: the
    // rates are of unauthenticated links (authentication's cost is the per-packet ratio).
    t.without_auth();
    t.node("r", 1)?;
    t.client_node("g", 100)?;
    t.client_node("s", 200)?;
    t.link("g", "r")?;
    t.link("r", "s")?;
    // Static neighbours: no ARP in the measurement.
    for peer in ["s", "g"] {
        let mac = t.ns(peer).mac(&iface("r"))?;
        let mac = mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        let (addr, dev) = (t.addr(peer, "r").to_string(), iface(peer));
        t.ns("r").ip(&[
            "neigh",
            "replace",
            &addr,
            "lladdr",
            &mac,
            "dev",
            &dev,
            "nud",
            "permanent",
        ])?;
    }
    let sink = Sink::attach(&t.ns("s").name, &iface("r"))?;

    let mut out = Vec::new();
    for v in [Variant::Xdp, Variant::SlowPath, Variant::Userspace, Variant::Kernel] {
        let (name, offered_name) = match v {
            Variant::Xdp => ("xdp_pps", "xdp_offered_pps"),
            Variant::SlowPath => ("slowpath_pps", "slowpath_offered_pps"),
            Variant::Userspace => ("userspace_pps", "userspace_offered_pps"),
            Variant::Kernel => ("kernel_pps", "kernel_offered_pps"),
        };
        let (delivered, offered) = rate(&mut t, &sink, v)?;
        eprintln!("bench: {name}: delivered {delivered:.0}/s, offered {offered:.0}/s");
        out.push((name, delivered));
        out.push((offered_name, offered));
    }
    Ok(out)
}

/// The sweep of offered loads: G transmits one frame in every N it runs (its maximum is a
/// few million frames per second).
pub(crate) const EVERY: [u64; 8] = [128, 64, 32, 16, 8, 4, 2, 1];

/// One relay variant: R set up as `v`, G offers each load of `EVERY` for `RATE_SECS`, S
/// counts. Returns the highest delivered rate and the offered rate it was reached at (past
/// its capacity a relay may deliver less, e.g. a userspace relay starved by receive work).
fn rate(t: &mut Topology, sink: &Sink, v: Variant) -> Result<(f64, f64)> {
    let (g_addr, r_addr, s_addr) = (t.addr("g", "r"), t.addr("r", "g"), t.addr("s", "r"));
    let stop = Arc::new(AtomicBool::new(false));
    let mut relay_thread = None;
    match v {
        Variant::Xdp => t.start_relay("r", &[], &[("s", "s")])?,
        Variant::SlowPath => {
            t.set_extra("r", "[[routes]]\ndst = 200\nvia = 200\naction = \"slow-path\"\n");
            t.start_relay("r", &[], &[])?;
        }
        Variant::Userspace => {
            t.accept_xdp_frames("r")?;
            let (ns, stop) = (t.ns("r").name.clone(), stop.clone());
            let to = SocketAddrV4::new(s_addr, golden::PORT);
            let sock = in_netns(&ns, move || std::net::UdpSocket::bind((r_addr, golden::PORT)))??;
            relay_thread = Some(thread::spawn(move || userspace_relay(sock, to, &stop)));
        }
        Variant::Kernel => t.ns("r").sysctl("net.ipv4.conf.all.forwarding", "1")?,
    }
    // Where R's receive processing (veth NAPI, present once XDP is attached) runs. XDP relay
    // and kernel forwarding: a threaded-NAPI kernel thread pinned to CPU 1, so all of R's
    // work is on CPU 1 and the generator on CPU 0 is never the bottleneck. Userspace relay:
    // the relay process alone on CPU 1 and its kernel receive work as softirq on CPU 0, with
    // the generator: with both on one CPU it starves (receive livelock), so this is its best
    // case.
    let threaded = !matches!(v, Variant::Userspace | Variant::SlowPath);
    let flag = format!("echo {} > /sys/class/net/{}/threaded", u8::from(threaded), iface("g"));
    t.ns("r").exec("sh", &["-c", &flag])?;
    if threaded {
        pin_napi_threads(&iface("g"), 1)?;
    }
    // Kernel forwarding gets frames addressed to S; the relays get relay packets to R.
    let dst_ip = if v == Variant::Kernel { s_addr } else { r_addr };
    let frame = rate_frame(
        t.ns("g").mac(&iface("r"))?,
        t.ns("r").mac(&iface("g"))?,
        g_addr,
        dst_ip,
        t.id("s"),
    );
    let gen_ns = t.ns("g").name.clone();
    let ifindex = t.ns("g").ifindex(&iface("r"))?;
    // The generator runs in G's namespace: BPF_PROG_TEST_RUN resolves the ingress ifindex
    // in the caller's.
    let sweep = thread::scope(|scope| {
        scope
            .spawn(|| -> Result<Vec<(f64, f64)>> {
                wecan_os::netns::enter(&gen_ns)?;
                let mut generator = Generator::new(frame, ifindex)?;
                let mut out = Vec::new();
                for every in EVERY {
                    let before = sink.count()?;
                    let (offered, elapsed) = generator.run(every, RATE_SECS)?;
                    thread::sleep(Duration::from_millis(200));
                    let delivered = (sink.count()? - before) as f64 / elapsed;
                    let offered = offered as f64 / elapsed;
                    eprintln!(
                        "bench:   {}: offered {offered:.0}/s, delivered {delivered:.0}/s",
                        variant_name(v)
                    );
                    out.push((delivered, offered));
                }
                Ok(out)
            })
            .join()
            .map_err(|_| anyhow!("generator panicked"))?
    })?;
    let (best, at) = sweep.into_iter().fold((0.0f64, 0.0f64), |b, x| if x.0 > b.0 { x } else { b });
    stop.store(true, Ordering::Relaxed);
    if let Some(h) = relay_thread {
        h.join().map_err(|_| anyhow!("userspace relay panicked"))??;
    }
    match v {
        Variant::Xdp => t.stop_relay("r"),
        Variant::SlowPath => {
            t.stop_relay("r");
            t.set_extra("r", "");
        }
        Variant::Userspace => {}
        Variant::Kernel => t.ns("r").sysctl("net.ipv4.conf.all.forwarding", "0")?,
    }
    if best == 0.0 {
        bail!("nothing reached the sink through the {} relay", variant_name(v));
    }
    Ok((best, at))
}

fn variant_name(v: Variant) -> &'static str {
    match v {
        Variant::Xdp => "XDP",
        Variant::SlowPath => "agent slow path",
        Variant::Userspace => "userspace",
        Variant::Kernel => "kernel-forwarding",
    }
}

/// Ethernet/IPv4/UDP frame to port 7300 carrying a relay header for `dst_node`.
pub(crate) fn rate_frame(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    dst_node: u32,
) -> Vec<u8> {
    let mut payload = RelayHeader::new(PacketKind::Data, 100, dst_node, 1, 0).to_bytes().to_vec();
    payload.resize(HEADER_LEN + RATE_PAYLOAD, 0xab);
    let mut out = Vec::new();
    PacketBuilder::ethernet2(smac, dmac)
        .ipv4(src.octets(), dst.octets(), 64)
        .udp(40000, golden::PORT)
        .write(&mut out, &payload)
        .expect("frame");
    out
}

/// Pins the threaded-NAPI kernel threads of interfaces named `dev` to `cpu` (they exist once
/// an XDP program is attached).
fn pin_napi_threads(dev: &str, cpu: usize) -> Result<()> {
    let prefix = format!("napi/{dev}-");
    let mut pinned = 0;
    for e in std::fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.starts_with(&prefix) {
            // SAFETY: a zeroed cpu_set_t with one bit set, applied to a kernel thread.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set);
            }
            pinned += 1;
        }
    }
    if pinned == 0 {
        bail!("no threaded NAPI thread for {dev}");
    }
    Ok(())
}

/// The traffic generator: `testkit_gen` run through BPF_PROG_TEST_RUN live frames with
/// `frame` (its headers also loaded as the program's template), XDP_TX out of `ifindex`.
pub(crate) struct Generator {
    ebpf: Ebpf,
    ctx: [u8; 24],
    frame: Vec<u8>,
}

impl Generator {
    pub(crate) fn new(frame: Vec<u8>, ifindex: u32) -> Result<Self> {
        let mut ebpf = Ebpf::load(TESTKIT_OBJECT)?;
        let mut template: Array<_, [u8; GEN_TEMPLATE]> =
            Array::try_from(ebpf.map_mut("TESTKIT_TEMPLATE").context("template map")?)?;
        template.set(0, <[u8; GEN_TEMPLATE]>::try_from(&frame[..GEN_TEMPLATE])?, 0)?;
        let prog: &mut Xdp = ebpf.program_mut("testkit_gen").context("testkit_gen")?.try_into()?;
        prog.load()?;
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
        Ok(Self { ebpf, ctx, frame })
    }

    /// Frames transmitted so far (all CPUs).
    fn sent(&self) -> Result<u64> {
        let m: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map("TESTKIT_GEN_COUNT").context("gen count")?)?;
        Ok(m.get(&1, 0)?.iter().sum())
    }

    /// Runs for `secs`, transmitting one frame in every `every`. Returns (frames offered,
    /// seconds). Calls are large: each BPF_PROG_TEST_RUN call has a fixed cost of
    /// milliseconds on this kernel.
    pub(crate) fn run(&mut self, every: u64, secs: f64) -> Result<(u64, f64)> {
        pin_to_cpu(0);
        let mut e: Array<_, u64> =
            Array::try_from(self.ebpf.map_mut("TESTKIT_GEN_EVERY").context("gen every")?)?;
        e.set(0, every, 0)?;
        let before = self.sent()?;
        let prog: &Xdp = self.ebpf.program("testkit_gen").context("testkit_gen")?.try_into()?;
        let start = Instant::now();
        while start.elapsed().as_secs_f64() < secs {
            let mut opts = TestRunOptions::new();
            opts.data_in = Some(&self.frame);
            opts.ctx_in = Some(&self.ctx);
            opts.repeat = 1 << 16;
            opts.attrs = TestRunAttrs::new().xdp_live_frames(64);
            prog.test_run(opts)?;
        }
        Ok((self.sent()? - before, start.elapsed().as_secs_f64()))
    }
}

/// XDP program on S's interface that counts and drops everything.
struct Sink {
    ebpf: Ebpf,
}

impl Sink {
    fn attach(ns: &str, iface: &str) -> Result<Self> {
        let iface = iface.to_owned();
        let ebpf = in_netns(ns, move || -> Result<Ebpf> {
            let mut ebpf = Ebpf::load(TESTKIT_OBJECT)?;
            let prog: &mut Xdp =
                ebpf.program_mut("testkit_sink").context("testkit_sink")?.try_into()?;
            prog.load()?;
            prog.attach(&iface, XdpMode::Driver)?;
            Ok(ebpf)
        })??;
        Ok(Self { ebpf })
    }

    fn count(&self) -> Result<u64> {
        let map: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map("TESTKIT_SINK").context("sink map")?)?;
        Ok(map.get(&0, 0)?.iter().sum())
    }
}

/// The userspace baseline: the relay's job done over a UDP socket, in batches of 64
/// (recvmmsg/sendmmsg): validate the header, decrement the hop limit, send to the next hop.
fn userspace_relay(sock: std::net::UdpSocket, to: SocketAddrV4, stop: &AtomicBool) -> Result<u64> {
    use std::os::fd::AsRawFd;
    pin_to_cpu(1);
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    const BATCH: usize = 64;
    let fd = sock.as_raw_fd();
    let mut bufs = vec![[0u8; 2048]; BATCH];
    let mut iov: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() })
        .collect();
    // SAFETY: plain C structs; every pointer set below stays valid for the loop.
    let mut rx: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    let dst = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: to.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(to.ip().octets()) },
        sin_zero: [0; 8],
    };
    let forwarded = AtomicU64::new(0);
    while !stop.load(Ordering::Relaxed) {
        for (m, v) in rx.iter_mut().zip(iov.iter_mut()) {
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
            m.msg_len = 0;
        }
        // SAFETY: rx holds BATCH initialised headers pointing at live buffers.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                rx.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n <= 0 {
            continue;
        }
        let mut tx: Vec<libc::mmsghdr> = Vec::with_capacity(n as usize);
        for i in 0..n as usize {
            let len = rx[i].msg_len as usize;
            let Ok((mut hdr, _)) = RelayHeader::decode(&bufs[i][..len]) else { continue };
            if hdr.hop_limit == 0 {
                continue;
            }
            hdr.hop_limit -= 1;
            bufs[i][..HEADER_LEN].copy_from_slice(&hdr.to_bytes());
            iov[i].iov_len = len;
            // SAFETY: as above.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_name = (&dst as *const libc::sockaddr_in).cast_mut().cast();
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            m.msg_hdr.msg_iov = &mut iov[i];
            m.msg_hdr.msg_iovlen = 1;
            tx.push(m);
        }
        // SAFETY: tx headers point at live buffers and the destination address.
        let sent = unsafe { libc::sendmmsg(fd, tx.as_mut_ptr(), tx.len() as u32, 0) };
        if sent > 0 {
            forwarded.fetch_add(sent as u64, Ordering::Relaxed);
        }
        for v in iov.iter_mut() {
            v.iov_len = 2048;
        }
    }
    Ok(forwarded.load(Ordering::Relaxed))
}

/// The codec beside framed reed-solomon-simd over group shapes from per-hop sizes to far beyond:
/// why the codec is written here (`fec_codec::bench_backends`).
fn fec_backends() -> String {
    let mut t = String::from(
        "\nFEC backends behind the codec, 1,200-byte packets, GiB/s of original data\n  \
         k+m       lost   Cauchy enc   Cauchy dec   rs-simd enc   rs-simd dec\n",
    );
    for (k, m) in [(4, 6), (10, 4), (20, 10), (32, 16), (64, 64), (200, 55)] {
        for lost in [1, m / 2] {
            let [(ce, cd), (re, rd)] =
                crate::fec_codec::bench_backends(k, m, 1200, lost, Duration::from_millis(100));
            let _ = writeln!(
                t,
                "  {:<8} {lost:>5} {ce:>12.2} {cd:>12.2} {re:>13.2} {rd:>13.3}",
                format!("{k}+{m}")
            );
        }
    }
    t
}

/// FEC groups (k data, m parity) measured.
const FEC_GROUPS: [(usize, usize); 5] = [(10, 2), (10, 3), (10, 4), (10, 5), (20, 10)];

/// Runs of the failover measurement.
const FAILOVER_RUNS: usize = 5;
/// Peers and rounds of the probe-load measurement.
const PROBE_LOAD_PEERS: u32 = 1000;
const PROBE_LOAD_ROUNDS: usize = 50;
/// Bytes of one probe (or reply) on the wire: Ethernet, IPv4 and UDP headers, relay header,
/// probe body.
const PROBE_FRAME: usize = 14 + 20 + 8 + HEADER_LEN + ProbeBody::LEN;
/// One-way delay of the emulated link in the probe-accuracy benchmark.
const PROBE_DELAY_MS: u64 = 5;

/// |measured RTT − emulated RTT| (µs) of r1's probes to r2 over an emulated link, with r2
/// answering probes as `reply` ("xdp" or "agent"), on a machine kept busy (one spinning
/// thread per CPU), where scheduling delay shows.
fn probe_rtt_error(reply: &str) -> Result<f64> {
    let mut t = Topology::new(&format!("pe{}", &reply[..1]))?;
    t.node("r1", 1)?;
    t.node("r2", 2)?;
    t.link_impaired("r1", "r2", scenario::delay(PROBE_DELAY_MS))?;
    t.set_extra("r2", &format!("probe_reply = \"{reply}\"\n"));
    t.start_relay("r1", &[], &[])?;
    t.start_relay("r2", &[], &[])?;
    // Four full probe windows (100 probes at 10 ms).
    wecan_tests::cpu::busy_for(Duration::from_secs(4));
    let (_, link) = t.links("r1")?.into_iter().find(|(p, _)| *p == 2).context("link to r2")?;
    let emulated_us = 2.0 * PROBE_DELAY_MS as f64 * 1000.0;
    Ok((link.rtt_ns as f64 / 1000.0 - emulated_us).abs())
}

// ---------------------------------------------------------------------------------------
// Reporting.

fn render(r: &BTreeMap<&'static str, f64>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nper-packet cost (BPF_PROG_TEST_RUN, kernel-timed, median of {COST_ROUNDS} rounds of {COST_CALLS} runs)"
    );
    let _ = writeln!(s, "  {:<40} {:>10}  {:>8}", "program", "ns/packet", "ratio");
    let rows = [
        ("XDP_PASS only (measurement floor)", "floor_ns_per_pkt"),
        ("MAC swap + XDP_TX (baseline)", "min_ns_per_pkt"),
        ("wecan relay, IPv4 forward (XDP_TX)", "relay_ns_per_pkt_v4"),
        ("wecan relay, IPv6 forward (XDP_TX)", "relay_ns_per_pkt_v6"),
        ("  IPv4, FIB lookup every packet", "relay_ns_per_pkt_v4_nocache"),
        ("  IPv6, FIB lookup every packet", "relay_ns_per_pkt_v6_nocache"),
        ("  IPv4, incoming link keyed only", "relay_ns_per_pkt_v4_verify_only"),
        ("  IPv4, links unauthenticated", "relay_ns_per_pkt_v4_noauth"),
        ("  IPv6, links unauthenticated", "relay_ns_per_pkt_v6_noauth"),
    ];
    for (name, k) in rows {
        let _ = writeln!(s, "  {:<40} {:>10.1}  {:>7.2}×", name, r[k], r[k] / r["min_ns_per_pkt"]);
    }
    let _ = writeln!(
        s,
        "  hop authentication adds (verify + seal)   IPv4 {:>5.1} ns ({:.2}×), IPv6 {:>5.1} ns ({:.2}×)",
        r["relay_ns_per_pkt_v4"] - r["relay_ns_per_pkt_v4_noauth"],
        r["auth_cost_ratio_v4"],
        r["relay_ns_per_pkt_v6"] - r["relay_ns_per_pkt_v6_noauth"],
        r["auth_cost_ratio_v6"],
    );
    let _ = writeln!(
        s,
        "  in the agent, per forwarded packet (verify + seal, userspace)  {:>5.1} ns",
        r["hop_auth_ns_per_pkt"],
    );
    let _ = writeln!(
        s,
        "\nforwarding rate G → R → S, 64-byte UDP payload, best over a sweep of offered loads"
    );
    let _ = writeln!(
        s,
        "  {:<40} {:>12}  {:>12}  {:>8}",
        "relay on R", "delivered/s", "offered/s", "XDP is"
    );
    for (name, k, off) in [
        ("wecan XDP relay", "xdp_pps", "xdp_offered_pps"),
        ("wecan agent slow path (UDP socket)", "slowpath_pps", "slowpath_offered_pps"),
        ("userspace relay (recvmmsg/sendmmsg)", "userspace_pps", "userspace_offered_pps"),
        ("kernel IP forwarding", "kernel_pps", "kernel_offered_pps"),
    ] {
        let x = r["xdp_pps"] / r[k];
        let _ = writeln!(s, "  {:<40} {:>12.0}  {:>12.0}  {:>7.2}×", name, r[k], r[off], x);
    }
    let _ = writeln!(
        s,
        "\nXDP → agent handoff (receive only, one thread on CPU 1), best over the same sweep"
    );
    let _ = writeln!(
        s,
        "  XDP_PASS to a UDP socket, recv per packet   {:>10.0}/s\n  \
         redirect to AF_XDP (copy mode on veth)       {:>10.0}/s  ({:.2}×)",
        r["handoff_socket_pps"],
        r["handoff_afxdp_pps"],
        r["handoff_afxdp_pps"] / r["handoff_socket_pps"]
    );
    let _ = writeln!(s, "\ncontrol plane");
    let _ = writeln!(
        s,
        "  failover (cut the link in use, 4-relay mesh)  median {:.1} ms, max {:.1} ms of {FAILOVER_RUNS} runs",
        r["failover_ms_median"], r["failover_ms_max"]
    );
    let _ = writeln!(
        s,
        "  failover (interface in use set down)          median {:.1} ms, max {:.1} ms of {FAILOVER_RUNS} runs",
        r["failover_iface_down_ms_median"], r["failover_iface_down_ms_max"]
    );
    let _ = writeln!(
        s,
        "  probing, per peer at the default interval     {:.0} bytes/s each way; agent CPU {:.0} ns per probe sent ({:.2}× a bare sendto), {:.0} ns per reply ({:.2}× a bare recvmsg)\n  \
         probing 1,000 peers                          {:.1} % of one core",
        r["probe_bytes_per_peer_s"],
        r["probe_send_ns"],
        r["probe_send_ratio"],
        r["probe_reply_ns"],
        r["probe_reply_ratio"],
        r["probe_cpu_share_1000"] * 100.0
    );
    for n in [50, 200, 1000] {
        let _ = writeln!(
            s,
            "  route computation, full mesh of {n:>4} relays  {:>8.1} ms",
            r[format!("route_ms_{n}").as_str()]
        );
    }
    let _ = writeln!(
        s,
        "  routing state for 1000 relays               {:>8.1} MB",
        r["route_mem_mb_1000"]
    );
    let _ = writeln!(
        s,
        "  probe RTT error vs emulated {} ms RTT, busy CPUs: XDP reply {:.1} µs, agent reply {:.1} µs",
        2 * PROBE_DELAY_MS,
        r["probe_rtt_err_us_xdp"],
        r["probe_rtt_err_us_userspace"]
    );
    s
}

fn markdown(r: &BTreeMap<&'static str, f64>, table: &str) -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let kernel = kernel.trim();
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "# wecan benchmarks\n\n{goals}\n\
Produced by `cargo xtask bench` (this file is rewritten by every run; `cargo xtask bench --json`\n\
prints the same figures as one JSON object on its last line). Machine: {cpus} vCPU, kernel\n\
{kernel}. Every figure is set beside a baseline measured in the same run.\n\n\
```text{table}```\n\n\
JSON: `{json}`\n\n\
## What was measured\n\n\
- **Per-packet cost**: BPF_PROG_TEST_RUN of the real relay object in a namespace with real\n  \
routes and neighbours (the golden-packet fixture), {calls} calls per program and round, one run\n  \
per call, rounds interleaved, median. The relay takes its full forwarding path (parse, peer\n  \
check, header check, tag check and replay window, flow and destination lookups, egress from the per-CPU FIB cache\n  \
(`fib_cache_ms` = 10, the default), a new tag, rewrite with checksum updates, XDP_TX); the first\n  \
two indented rows set `fib_cache_ms = 0`, so `bpf_fib_lookup` runs on every packet; the unauthenticated rows\n  \
mark the benchmark's links `auth = \"none\"` (no tag verified or set) in the same rounds, and the\n  \
authenticated packets are sealed afresh for every call (a packet is accepted once), outside the\n  \
timing. The agent's row times `Sealer::seal` and `verify` (tag and replay window) of\n  \
`wecan_transport::auth` on a 1,200-byte packet, one million times in one thread. The forwarding\n  \
rates below are of unauthenticated links: the generator replays one template frame. One run per call because with repeat > 1 the kernel runs the program on its\n  \
own output (the rewritten packet is no longer from a peer) and, on this kernel, each such call\n  \
also spends ~40 ms updating the XDP dispatcher. The kernel times the run, not the syscall, but\n  \
its two clock reads fall inside the window: the XDP_PASS-only program shows that floor.\n\
- **Forwarding rate**: namespaces G — R — S on veth. G offers frames with `testkit_gen` run\n  \
through BPF_PROG_TEST_RUN live frames (XDP_TX out of G, pinned to CPU 0); S counts and drops\n  \
them in XDP. R runs, one after the other in the same run: the wecan XDP relay (agent; IPv4\n  \
relay packets to R); a userspace relay over one UDP socket with recvmmsg/sendmmsg in batches\n  \
of 64 (pinned to CPU 1; R's veth gets an XDP_PASS program so it accepts XDP_TX frames); and\n  \
kernel IP forwarding of frames addressed to S (same XDP_PASS program). Neighbours are static.\n  \
For the XDP relay and kernel forwarding, R's receive processing runs in a threaded-NAPI kernel\n  \
thread pinned to CPU 1: all of R's work is on CPU 1, the generator alone on CPU 0. The userspace\n  \
relay gets CPU 1 to itself and its kernel receive work runs as softirq on CPU 0 with the\n  \
generator (on one CPU with its receive work it starves: receive livelock), its best case. Each relay is offered a sweep of loads (G transmits one frame in\n  \
every 128, 64, …, 1 it runs), 1 s each; the table shows the highest delivered rate and the\n  \
offered load it was reached at (past capacity, a userspace relay is starved by the kernel's receive work on its CPU\n  \
and delivers less: receive livelock).\n\
- **Failover**: the control-plane scenario of `tests/tests/control_plane.rs` (four relays in a\n  \
full mesh with 1–5 ms emulated link delays, controller on); a → b at 10,000 packets/s; after 1 s\n  \
the link in use is cut (the impairment element drops everything). The outage is the longest run of\n  \
missing sequence numbers at b, in time. Detection: 5 probe intervals of 10 ms without a reply;\n  \
then the agent switches to the precomputed backup at once and the controller's new routes follow.\n  \
Then, in the same mesh, r1's interface toward its new next hop is set down (`ip link set down`):\n  \
the agent hears it from rtnetlink and fails over without waiting for probes.\n\
- **Probe load**: `probe_load::measure` (wecan-lab): 1,000 peers on loopback, 50 rounds at the\n  \
default 10 ms interval; CPU time of the agent's thread per probe sent (built, sealed, `sendto`) and\n  \
per reply handled (`recvmsg`, verified, decoded, accounted), each against bare `sendto`/`recvmsg`\n  \
of the same datagrams in the same run. Bounded by this CPU's syscall cost; the peers' XDP replies\n  \
are not on this CPU. Bytes on the wire: Ethernet, IPv4 and UDP headers, relay header and probe\n  \
body, per probe and per reply.\n\
- **FEC codec**: `fec_codec::bench` (wecan-lab): encode and decode (rebuilding 2 lost data packets from\n  \
parity) of groups of 1,200-byte packets, encoder/decoder reused, ≥ 0.3 s each, beside plain\n  \
`reed-solomon-simd` 3.1 in the same run. The backend table (`fec_codec::bench_backends`,\n  \
≥ 0.1 s each) runs the codec and reed-solomon-simd behind the same framing, rebuilding `lost` data packets.\n\
- **Slow path**: the same G — R — S sweep with R's route set to `slow-path`: XDP passes the\n  \
packets up, the agent receives them on its UDP socket and sends them on through the kernel (one\n  \
`recvmsg` and one `sendto` per packet; the agent unpinned, R's receive work as softirq). This is\n  \
the ceiling of protected traffic per relay; FEC/ARQ add the CPU of the hop pipeline (next table).\n\
- **XDP → agent handoff**: G offers relay packets to R over the same sweep; R's XDP program\n  \
either passes them up to a UDP socket (`testkit_pass`; one `recv` per packet, like the agent)\n  \
or redirects them to an AF_XDP socket (`testkit_xsk`, copy mode: veth has no zero-copy, 4,096\n  \
2 KiB frames); one thread pinned to CPU 1 receives, checks the relay magic and counts. R's\n  \
kernel receive work runs as softirq on CPU 0 beside the generator.\n\
- **Hop pipeline CPU**: `LinkTx` and `LinkRx` back to back in one thread, 1,200-byte packets,\n  \
every 20th hop packet dropped so repairs run, per mode, beside wrapping alone.\n\
- **Delivery against loss**: `wecan_tests::sim`, the real `LinkTx`/`LinkRx` over 3 simulated\n  \
links in virtual time (seeded Bernoulli loss on every packet both ways: data, parity, resends,\n  \
NACKs; 5 ms one-way delay; timers polled every 1 ms like the agent). Adaptive parity starts\n  \
at its upper bound and follows the receivers' loss reports from the first one on. UDPspeeder-style is fixed 20 data + 10\n  \
parity per group; its published residual at 10 % loss is 0.0089 % at 50 % overhead.\n  \
Overhead counts every extra byte on the wire (44 header bytes per packet, parity, resends, NACKs)\n  \
per payload byte; added latency is delivery time minus the links' delay.\n\
- **3 lossy hops in namespaces**: `scenario::lossy` (the topology of `tests/tests/protection.rs`),\n  \
real agents and XDP; the parity follows the receivers' loss reports.\n\
- **Route computation**: `routing_scale::full_mesh` (wecan-lab): random full mesh (every ordered pair\n  \
linked), one `Router::compute` (all-pairs paths, hysteresis, loop-free backups) on one core.\n\
- **Probe RTT error**: two relays over an emulated link (5 ms each way, userspace impairment\n  \
element), both CPUs kept busy by spinning threads; mean probe RTT over the window minus 10 ms, for\n  \
probes answered in XDP and by the peer's agent.\n\
- **The kernel-forwarding anomaly** (almost nothing delivered from a live-frames generator) is\n  \
explained: within one BPF_PROG_TEST_RUN call the kernel recycles frame pages without restoring\n  \
their data, and frames are forwarded zero-copy, so a forwarder that edits packets in place\n  \
(the kernel's TTL decrement, the relay's address rewrite) is fed its own output until it drops\n  \
it (TTL exhausted; source no longer a peer). `testkit_gen` writes the template headers over\n  \
every frame before XDP_TX, which removes the effect.\n",
        json = serde_json::to_string(r).unwrap_or_default(),
        calls = COST_CALLS,
        goals = goals(r),
    )
}

/// The issues' goals against this run's figures.
fn goals(r: &BTreeMap<&'static str, f64>) -> String {
    let rows = [
        (
            "relay ≤ 1.5× the minimal program (IPv4)",
            r["relay_cost_ratio_v4"],
            "×",
            r["relay_cost_ratio_v4"] <= 1.5,
        ),
        (
            "relay ≤ 1.5× the minimal program (IPv6)",
            r["relay_cost_ratio_v6"],
            "×",
            r["relay_cost_ratio_v6"] <= 1.5,
        ),
        (
            "hop authentication adds ≤ 25 % to the relay (IPv4)",
            r["auth_cost_ratio_v4"],
            "×",
            r["auth_cost_ratio_v4"] <= 1.25,
        ),
        ("XDP ≥ 5× the userspace relay", r["xdp_vs_userspace"], "×", r["xdp_vs_userspace"] >= 5.0),
        ("XDP ≥ 2× kernel forwarding", r["xdp_vs_kernel"], "×", r["xdp_vs_kernel"] >= 2.0),
        (
            "FEC+ARQ delivery ≥ 99.9 % over 3 hops at 5 % (netns)",
            r["delivery_fec_arq_5pct"] * 100.0,
            " %",
            r["delivery_fec_arq_5pct"] >= 0.999,
        ),
        (
            "residual loss at 10 % at most UDPspeeder 20:10's (sim; parts per million)",
            r["sim_residual_fec_arq_10pct"] * 1e6,
            " ppm",
            r["sim_residual_fec_arq_10pct"] <= r["sim_residual_udpspeeder_10pct"],
        ),
        (
            "overhead at 10 % below UDPspeeder 20:10 (sim)",
            r["sim_overhead_fec_arq_10pct"] * 100.0,
            " %",
            r["sim_overhead_fec_arq_10pct"] < r["sim_overhead_udpspeeder_10pct"],
        ),
        (
            "failover < 100 ms (median, silent link cut)",
            r["failover_ms_median"],
            " ms",
            r["failover_ms_median"] < 100.0,
        ),
        (
            "failover < 100 ms (median, interface set down)",
            r["failover_iface_down_ms_median"],
            " ms",
            r["failover_iface_down_ms_median"] < 100.0,
        ),
        ("routes for 200 relays < 10 ms", r["route_ms_200"], " ms", r["route_ms_200"] < 10.0),
        ("routes for 1,000 relays < 500 ms", r["route_ms_1000"], " ms", r["route_ms_1000"] < 500.0),
        (
            "FEC encode ≥ 1 GiB/s (k=10, m=4)",
            r["fec_encode_gibps"],
            " GiB/s",
            r["fec_encode_gibps"] >= 1.0,
        ),
        (
            "FEC decode ≥ 1 GiB/s (k=10, m=4, 2 lost)",
            r["fec_decode_gibps"],
            " GiB/s",
            r["fec_decode_gibps"] >= 1.0,
        ),
    ];
    let mut s = String::from("| goal | this run | met |\n| --- | --- | --- |\n");
    for (goal, v, unit, met) in rows {
        let _ = writeln!(s, "| {goal} | {v:.2}{unit} | {} |", if met { "yes" } else { "**no**" });
    }
    s
}
