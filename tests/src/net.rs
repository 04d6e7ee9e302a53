//! Network namespaces and veth links for tests, via iproute2 (test tooling only: the
//! product itself talks netlink).

use std::process::Command;

use anyhow::{Context, Result, bail};

/// Runs a command, failing with its stderr if it fails; returns stdout.
pub fn sh(prog: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(prog).args(args).output().with_context(|| {
        format!("running {prog} (is it installed? `cargo xtask setup` installs it)")
    })?;
    if !out.status.success() {
        bail!("{prog} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates the namespace with `lo` up and IP forwarding off for IPv4 and IPv6 (set
    /// explicitly: new namespaces may inherit the host's IPv4 settings).
    pub fn new(name: &str) -> Result<Self> {
        // A namespace of that name left behind by a killed run is replaced.
        if std::path::Path::new("/run/netns").join(name).exists() {
            let _ = sh("ip", &["netns", "del", name]);
        }
        sh("ip", &["netns", "add", name])?;
        let ns = Self { name: name.into() };
        ns.ip(&["link", "set", "lo", "up"])?;
        ns.sysctl("net.ipv4.conf.all.forwarding", "0")?;
        ns.sysctl("net.ipv4.conf.default.forwarding", "0")?;
        ns.sysctl("net.ipv6.conf.all.forwarding", "0")?;
        ns.sysctl("net.ipv6.conf.default.forwarding", "0")?;
        Ok(ns)
    }

    /// `ip -n NAME ARGS…`
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut a = vec!["-n", &self.name];
        a.extend_from_slice(args);
        sh("ip", &a)
    }

    /// Runs a program inside the namespace.
    pub fn exec(&self, prog: &str, args: &[&str]) -> Result<String> {
        let mut a = vec!["netns", "exec", &self.name, prog];
        a.extend_from_slice(args);
        sh("ip", &a)
    }

    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.exec("sysctl", &["-q", "-w", &format!("{key}={value}")]).map(drop)
    }

    pub fn read_sysctl(&self, key: &str) -> Result<String> {
        Ok(self.exec("sysctl", &["-n", key])?.trim().to_owned())
    }

    /// MAC address of an interface in this namespace.
    pub fn mac(&self, iface: &str) -> Result<[u8; 6]> {
        let text = self.exec("cat", &[&format!("/sys/class/net/{iface}/address")])?;
        let bytes: Vec<u8> = text
            .trim()
            .split(':')
            .map(|h| u8::from_str_radix(h, 16))
            .collect::<Result<_, _>>()
            .context("parsing MAC")?;
        bytes.try_into().map_err(|_| anyhow::anyhow!("bad MAC {text}"))
    }

    pub fn ifindex(&self, iface: &str) -> Result<u32> {
        let text = self.exec("cat", &[&format!("/sys/class/net/{iface}/ifindex")])?;
        Ok(text.trim().parse()?)
    }

    /// Moves the calling thread into this namespace.
    pub fn enter(&self) -> Result<()> {
        wecan_os::netns::enter(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh("ip", &["netns", "del", &self.name]);
    }
}

/// Creates a veth pair `a_if` (in `a`) — `b_if` (in `b`), both up, with transmit
/// checksum offload off (offloaded UDP checksums would reach XDP unfilled). A veth end
/// without an XDP program does not accept XDP_TX/XDP_REDIRECT frames from its peer: see
/// `Topology::accept_xdp_frames`.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    sh(
        "ip",
        &[
            "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
            &b.name,
        ],
    )?;
    for (ns, i) in [(a, a_if), (b, b_if)] {
        ns.exec("ethtool", &["-K", i, "tx", "off"])?;
        ns.ip(&["link", "set", i, "up"])?;
    }
    Ok(())
}

/// Runs `f` on a new thread inside namespace `ns` and returns its result. Sockets and
/// XDP attachments keep the namespace they were created in.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let ns = ns.to_owned();
    std::thread::spawn(move || -> Result<T> {
        wecan_os::netns::enter(&ns)?;
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("thread in a namespace panicked"))?
}

/// Pins the calling thread to one CPU (per-CPU datapath state, benchmarks).
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, applied to the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
