//! Loading, attaching and pinning the relay program.
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
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    programs::{
        Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
};
use log::{info, warn};
use wecan_common::maps::{RELAY_PROGRAM, names};

use crate::{RELAY_OBJECT, maps::Maps, netlink};

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
        let link = netlink::link(iface)?;
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
        if let (Ok(l), Ok(mut maps)) = (netlink::link(iface), Maps::open_pinned(pin_dir)) {
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
