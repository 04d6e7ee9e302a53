//! Loading, attaching and pinning the relay program, and typed access to its maps.
//!
//! Layout under the pin directory (one per relay instance):
//!
//! ```text
//! <pin_dir>/WECAN_*          the maps (pinned by name; reused by the next load)
//! <pin_dir>/link-<ifname>    the XDP link of each attached interface
//! ```
//!
//! A pinned link keeps the program attached after the process exits (`wecan-agent load`,
//! fail-static); removing the pin detaches it.

use std::{
    collections::BTreeMap,
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader, include_bytes_aligned,
    maps::{Array, DevMapHash, HashMap, Map, MapData, PerCpuArray},
    programs::{
        Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
};
use log::{info, warn};
use wecan_common::{
    maps::{
        FAMILY_V4, FAMILY_V6, FlowKey, LinkValue, PeerValue, RELAY_PROGRAM, RelayConfig, RouteKey,
        RouteValue, names,
    },
    stats::{Counter, Stat},
};

/// The relay XDP object, built from `xdp-prog/` by `build.rs`.
pub static RELAY_OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/wecan-relay"));
/// Test and benchmark XDP programs (`xdp-prog/src/bin/testkit.rs`).
pub static TESTKIT_OBJECT: &[u8] =
    include_bytes_aligned!(concat!(env!("OUT_DIR"), "/wecan-testkit"));

/// Which route map entry: per destination, or a per-flow override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteSel {
    Dst(u32),
    Flow { dst: u32, flow: u32 },
}

impl RouteSel {
    pub fn new(dst: u32, flow: Option<u32>) -> Self {
        match flow {
            Some(flow) => Self::Flow { dst, flow },
            None => Self::Dst(dst),
        }
    }
    pub fn dst(self) -> u32 {
        match self {
            Self::Dst(d) | Self::Flow { dst: d, .. } => d,
        }
    }
    pub fn flow(self) -> Option<u32> {
        match self {
            Self::Dst(_) => None,
            Self::Flow { flow, .. } => Some(flow),
        }
    }
}

/// A 16-byte address slot as the maps store it (IPv4 in the first four bytes).
pub fn addr_bytes(addr: IpAddr) -> (u8, [u8; 16]) {
    let mut out = [0u8; 16];
    match addr {
        IpAddr::V4(a) => {
            out[..4].copy_from_slice(&a.octets());
            (FAMILY_V4, out)
        }
        IpAddr::V6(a) => (FAMILY_V6, a.octets()),
    }
}

/// The address in a 16-byte slot of the given family.
pub fn addr_from(family: u8, bytes: &[u8; 16]) -> Option<IpAddr> {
    match family {
        FAMILY_V4 => Some(IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])),
        FAMILY_V6 => Some(IpAddr::from(*bytes)),
        _ => None,
    }
}

/// Typed handles on every relay map. Userspace is the only writer of all but `STATS`.
pub struct Maps {
    config: Array<MapData, RelayConfig>,
    peers_v4: HashMap<MapData, [u8; 4], PeerValue>,
    peers_v6: HashMap<MapData, [u8; 16], PeerValue>,
    /// The double-buffered route tables; `config.table` selects the live one.
    routes: [HashMap<MapData, RouteKey, RouteValue>; 2],
    flow_routes: HashMap<MapData, FlowKey, RouteValue>,
    tx_ports: DevMapHash<MapData>,
    stats: PerCpuArray<MapData, Counter>,
    links: HashMap<MapData, u32, LinkValue>,
}

fn typed<T>(name: &str, map: Map) -> Result<T>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    T::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
}

impl Maps {
    /// Opens the maps pinned in `pin_dir` (for the CLI and for taking over).
    pub fn open_pinned(pin_dir: &Path) -> Result<Self> {
        let open = |name: &str| -> Result<Map> {
            let path = pin_dir.join(name);
            let data = MapData::from_pin(&path).with_context(|| {
                format!(
                    "cannot open pinned map {}; is a relay loaded with this pin directory (`wecan-agent run|load`, or --pin-dir)?",
                    path.display()
                )
            })?;
            Map::from_map_data(data).with_context(|| format!("map {name}"))
        };
        Self::from_fn(open)
    }

    /// Takes the maps out of a freshly loaded object.
    fn from_ebpf(ebpf: &mut Ebpf) -> Result<Self> {
        Self::from_fn(|name| {
            ebpf.take_map(name).ok_or_else(|| anyhow!("the relay object has no map {name}"))
        })
    }

    fn from_fn(mut get: impl FnMut(&str) -> Result<Map>) -> Result<Self> {
        Ok(Self {
            config: typed(names::CONFIG, get(names::CONFIG)?)?,
            peers_v4: typed(names::PEERS_V4, get(names::PEERS_V4)?)?,
            peers_v6: typed(names::PEERS_V6, get(names::PEERS_V6)?)?,
            routes: [
                typed(names::ROUTES[0], get(names::ROUTES[0])?)?,
                typed(names::ROUTES[1], get(names::ROUTES[1])?)?,
            ],
            flow_routes: typed(names::FLOW_ROUTES, get(names::FLOW_ROUTES)?)?,
            tx_ports: typed(names::TX_PORTS, get(names::TX_PORTS)?)?,
            stats: typed(names::STATS, get(names::STATS)?)?,
            links: typed(names::LINKS, get(names::LINKS)?)?,
        })
    }

    pub fn config(&self) -> Result<RelayConfig> {
        Ok(self.config.get(&0, 0)?)
    }

    pub fn set_config(&mut self, cfg: RelayConfig) -> Result<()> {
        Ok(self.config.set(0, cfg, 0)?)
    }

    pub fn add_peer(&mut self, addr: IpAddr, node_id: u32) -> Result<()> {
        let v = PeerValue { node_id };
        match addr {
            IpAddr::V4(a) => self.peers_v4.insert(a.octets(), v, 0)?,
            IpAddr::V6(a) => self.peers_v6.insert(a.octets(), v, 0)?,
        }
        Ok(())
    }

    pub fn remove_peer(&mut self, addr: IpAddr) -> Result<()> {
        let r = match addr {
            IpAddr::V4(a) => self.peers_v4.remove(&a.octets()),
            IpAddr::V6(a) => self.peers_v6.remove(&a.octets()),
        };
        r.with_context(|| format!("{addr} is not a peer"))
    }

    /// Whether `addr` is an allowed sender.
    pub fn is_peer(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.peers_v4.get(&a.octets(), 0).is_ok(),
            IpAddr::V6(a) => self.peers_v6.get(&a.octets(), 0).is_ok(),
        }
    }

    /// All peers, sorted by node ID then address.
    pub fn peers(&self) -> Result<Vec<(IpAddr, PeerValue)>> {
        let mut out = Vec::new();
        for kv in self.peers_v4.iter() {
            let (k, v) = kv?;
            out.push((IpAddr::from(k), v));
        }
        for kv in self.peers_v6.iter() {
            let (k, v) = kv?;
            out.push((IpAddr::from(k), v));
        }
        out.sort_by_key(|(a, v)| (v.node_id, *a));
        Ok(out)
    }

    /// The live route table (0 or 1).
    fn live(&self) -> usize {
        self.config().map_or(0, |c| usize::from(c.table & 1))
    }

    /// Adds or replaces one entry in place: in both route tables (or the flow map), each
    /// write atomic for that entry. For operator changes; whole pushes use `replace_table`.
    pub fn set_route(&mut self, sel: RouteSel, value: RouteValue) -> Result<()> {
        match sel {
            RouteSel::Dst(dst) => {
                for t in &mut self.routes {
                    t.insert(RouteKey { dst_node: dst }, value, 0)?;
                }
            }
            RouteSel::Flow { dst, flow } => {
                self.flow_routes.insert(FlowKey { dst_node: dst, flow_id: flow }, value, 0)?
            }
        }
        Ok(())
    }

    pub fn remove_route(&mut self, sel: RouteSel) -> Result<()> {
        let missing = || format!("no route for {}", describe(sel));
        match sel {
            RouteSel::Dst(dst) => {
                let key = RouteKey { dst_node: dst };
                let live = self.live();
                self.routes[live].remove(&key).with_context(missing)?;
                let _ = self.routes[1 - live].remove(&key);
                Ok(())
            }
            RouteSel::Flow { dst, flow } => self
                .flow_routes
                .remove(&FlowKey { dst_node: dst, flow_id: flow })
                .with_context(missing),
        }
    }

    /// Makes the per-destination routes exactly `table`, atomically: the inactive table is
    /// rewritten, then the config flips to it in one map update.
    pub fn replace_table(&mut self, table: &BTreeMap<u32, RouteValue>) -> Result<()> {
        let mut cfg = self.config()?;
        let next = 1 - usize::from(cfg.table & 1);
        let t = &mut self.routes[next];
        for (&dst, v) in table {
            t.insert(RouteKey { dst_node: dst }, *v, 0)?;
        }
        let stale: Vec<RouteKey> =
            t.keys().filter_map(Result::ok).filter(|k| !table.contains_key(&k.dst_node)).collect();
        for k in stale {
            t.remove(&k)?;
        }
        cfg.table = next as u8;
        self.set_config(cfg)
    }

    /// The exact entry for `sel` in the live table (or the flow map), if any.
    pub fn route(&self, sel: RouteSel) -> Result<Option<RouteValue>> {
        let r = match sel {
            RouteSel::Dst(dst) => self.routes[self.live()].get(&RouteKey { dst_node: dst }, 0),
            RouteSel::Flow { dst, flow } => {
                self.flow_routes.get(&FlowKey { dst_node: dst, flow_id: flow }, 0)
            }
        };
        match r {
            Ok(v) => Ok(Some(v)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The route the datapath would use for (dst, flow): flow override, then destination.
    pub fn lookup(&self, dst: u32, flow: u32) -> Result<Option<(RouteSel, RouteValue)>> {
        for sel in [RouteSel::Flow { dst, flow }, RouteSel::Dst(dst)] {
            if let Some(v) = self.route(sel)? {
                return Ok(Some((sel, v)));
            }
        }
        Ok(None)
    }

    /// All live routes, sorted by destination, per-destination entry first.
    pub fn routes(&self) -> Result<Vec<(RouteSel, RouteValue)>> {
        let mut out = Vec::new();
        for kv in self.routes[self.live()].iter() {
            let (k, v) = kv?;
            out.push((RouteSel::Dst(k.dst_node), v));
        }
        for kv in self.flow_routes.iter() {
            let (k, v) = kv?;
            out.push((RouteSel::Flow { dst: k.dst_node, flow: k.flow_id }, v));
        }
        out.sort_by_key(|(s, _)| (s.dst(), s.flow()));
        Ok(out)
    }

    /// Allows XDP_REDIRECT to this interface.
    pub fn add_tx_port(&mut self, ifindex: u32) -> Result<()> {
        self.tx_ports
            .insert(ifindex, ifindex, None, 0)
            .with_context(|| format!("devmap insert of ifindex {ifindex}"))
    }

    pub fn remove_tx_port(&mut self, ifindex: u32) -> Result<()> {
        Ok(self.tx_ports.remove(ifindex)?)
    }

    /// Publishes the probe statistics of the link to `peer`.
    pub fn set_link(&mut self, peer: u32, value: LinkValue) -> Result<()> {
        Ok(self.links.insert(peer, value, 0)?)
    }

    /// Probe statistics of every link, by peer node.
    pub fn links(&self) -> Result<Vec<(u32, LinkValue)>> {
        let mut out = self.links.iter().collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|(peer, _)| *peer);
        Ok(out)
    }

    /// Counters summed over CPUs, in `Stat` order.
    pub fn stats(&self) -> Result<Vec<(Stat, Counter)>> {
        Stat::ALL
            .iter()
            .map(|&s| {
                let per_cpu = self.stats.get(&(s as u32), 0)?;
                let sum = per_cpu.iter().fold(Counter::default(), |acc, c| Counter {
                    packets: acc.packets + c.packets,
                    bytes: acc.bytes + c.bytes,
                });
                Ok((s, sum))
            })
            .collect()
    }
}

/// "dst 3" or "dst 3 flow 7", for messages.
pub fn describe(sel: RouteSel) -> String {
    match sel {
        RouteSel::Dst(d) => format!("dst {d}"),
        RouteSel::Flow { dst, flow } => format!("dst {dst} flow {flow}"),
    }
}

/// How the program ended up attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    /// Native (driver) XDP.
    Native,
    /// Generic (skb) XDP, after native failed.
    Generic,
    /// An existing pinned link now runs the newly loaded program (atomic replace).
    Replaced,
}

/// A loaded relay program with its maps, pinned under `pin_dir`.
pub struct Relay {
    ebpf: Ebpf,
    pub maps: Maps,
    pin_dir: PathBuf,
}

fn link_pin(pin_dir: &Path, iface: &str) -> PathBuf {
    pin_dir.join(format!("link-{iface}"))
}

impl Relay {
    /// Loads the relay program. Maps already pinned in `pin_dir` are reused, so routes and
    /// counters survive an agent restart.
    pub fn load(pin_dir: &Path) -> Result<Self> {
        ensure_bpffs(pin_dir)?;
        fs::create_dir_all(pin_dir)
            .with_context(|| format!("cannot create pin directory {}", pin_dir.display()))?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .load(RELAY_OBJECT)
            .context("loading the relay object")?;
        let prog: &mut Xdp = program(&mut ebpf)?;
        prog.load().context("the kernel rejected the relay program")?;
        let maps = Maps::from_ebpf(&mut ebpf)?;
        Ok(Self { ebpf, maps, pin_dir: pin_dir.to_owned() })
    }

    /// The relay program, e.g. for `BPF_PROG_TEST_RUN`.
    pub fn program(&mut self) -> Result<&mut Xdp> {
        program(&mut self.ebpf)
    }

    /// Attaches to `iface` and pins the link. If a link of an earlier load is pinned for
    /// this interface, it is switched to this program atomically instead.
    pub fn attach(&mut self, iface: &str) -> Result<Attached> {
        let link = crate::netlink::link(iface)?;
        let pin = link_pin(&self.pin_dir, iface);
        let prog: &mut Xdp = program(&mut self.ebpf)?;
        let (id, how) = if pin.exists() {
            let old = PinnedLink::from_pin(&pin)
                .with_context(|| format!("cannot open pinned link {}", pin.display()))?;
            let old =
                XdpLink::try_from(FdLink::from(old)).context("pinned link is not an XDP link")?;
            let id = prog
                .attach_to_link(old)
                .with_context(|| format!("replacing the program on {iface}"))?;
            (id, Attached::Replaced)
        } else {
            match prog.attach_to_if_index(link.index, XdpMode::Driver) {
                Ok(id) => (id, Attached::Native),
                Err(native) => {
                    warn!(
                        "{iface}: native XDP failed ({native}); falling back to generic (skb) mode, which is much slower"
                    );
                    let id = prog
                        .attach_to_if_index(link.index, XdpMode::Skb)
                        .with_context(|| format!("attaching XDP to {iface}"))?;
                    (id, Attached::Generic)
                }
            }
        };
        let link_handle = prog.take_link(id)?;
        let fd_link = FdLink::try_from(link_handle)
            .context("the kernel attached XDP without a bpf_link; cannot pin it")?;
        if how != Attached::Replaced {
            fd_link.pin(&pin).with_context(|| format!("pinning the link at {}", pin.display()))?;
        }
        self.maps.add_tx_port(link.index)?;
        info!("{iface}: relay attached ({how:?})");
        Ok(how)
    }
}

fn program(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    ebpf.program_mut(RELAY_PROGRAM)
        .ok_or_else(|| anyhow!("the relay object has no program {RELAY_PROGRAM}"))?
        .try_into()
        .context("relay program is not XDP")
}

/// Detaches the relay from `iface` (removes its pinned link). When no interface is left,
/// the pinned maps and the directory are removed too. Returns whether anything was
/// attached.
pub fn detach(pin_dir: &Path, iface: &str) -> Result<bool> {
    let pin = link_pin(pin_dir, iface);
    let attached = pin.exists();
    if attached {
        let link = PinnedLink::from_pin(&pin)
            .with_context(|| format!("cannot open pinned link {}", pin.display()))?;
        // Dropping the unpinned link detaches the program.
        drop(link.unpin().with_context(|| format!("unpinning {}", pin.display()))?);
        if let (Ok(l), Ok(mut maps)) = (crate::netlink::link(iface), Maps::open_pinned(pin_dir)) {
            let _ = maps.remove_tx_port(l.index);
        }
    }
    if attached_interfaces(pin_dir)?.is_empty() {
        remove_pins(pin_dir)?;
    }
    Ok(attached)
}

/// Interfaces with a pinned link under `pin_dir`.
pub fn attached_interfaces(pin_dir: &Path) -> Result<Vec<String>> {
    let Ok(rd) = fs::read_dir(pin_dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in rd {
        let name = e?.file_name().to_string_lossy().into_owned();
        if let Some(iface) = name.strip_prefix("link-") {
            out.push(iface.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

fn remove_pins(pin_dir: &Path) -> Result<()> {
    for name in names::ALL {
        let p = pin_dir.join(name);
        if p.exists() {
            fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    if pin_dir.exists() {
        fs::remove_dir(pin_dir).with_context(|| format!("removing {}", pin_dir.display()))?;
    }
    Ok(())
}

/// Default bpffs mount point.
const BPFFS: &str = "/sys/fs/bpf";

/// Makes sure `pin_dir` is on a bpffs. Like bpftool, mounts one at `/sys/fs/bpf` when
/// that is where the pins go and nothing is mounted there yet; refuses other places.
fn ensure_bpffs(pin_dir: &Path) -> Result<()> {
    if is_bpffs(pin_dir)? {
        return Ok(());
    }
    if pin_dir.starts_with(BPFFS) && !is_bpffs(Path::new(BPFFS))? {
        let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
        let (src, dst, fstype) = (c("bpf"), c(BPFFS), c("bpf"));
        // SAFETY: valid C strings; no mount data.
        let rc = unsafe {
            libc::mount(src.as_ptr(), dst.as_ptr(), fstype.as_ptr(), 0, std::ptr::null())
        };
        if rc != 0 {
            bail!("cannot mount bpffs at {BPFFS}: {}", std::io::Error::last_os_error());
        }
        info!("mounted bpffs at {BPFFS}");
        return Ok(());
    }
    bail!(
        "pin_dir {}: not on a bpf filesystem; mount one (`mount -t bpf bpf /sys/fs/bpf`) or choose a directory under it",
        pin_dir.display()
    )
}

/// Whether the nearest existing ancestor of `path` is on a bpffs.
fn is_bpffs(path: &Path) -> Result<bool> {
    const BPF_FS_MAGIC: i64 = 0xcafe4a11;
    let mut probe = path.to_path_buf();
    while !probe.exists() && probe.pop() {}
    let c = std::ffi::CString::new(probe.as_os_str().as_encoded_bytes())?;
    // SAFETY: statfs into a zeroed struct with a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        bail!("{}: {}", probe.display(), std::io::Error::last_os_error());
    }
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}
