//! Relay networks in namespaces: nodes (relays run `wecan-agent`, clients run nothing),
//! veth links with a /24 each (and a /64, for an overlay over IPv6), agent configs
//! generated from the links, and helpers to read counters and drive the CLI.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use aya::{
    Ebpf,
    programs::{Xdp, XdpMode},
};
use wecan_agent::upstream::{ControllerHttp, read_ca, read_token};
use wecan_common::wire::DEFAULT_PORT;
use wecan_datapath::{TESTKIT_OBJECT, maps::Maps};
use wecan_transport::auth::Secret;

use crate::{
    bins::bin,
    impair::{ImpairedLink, Impairment},
    net::{Netns, in_netns, veth},
    pki::ControllerPki,
    proc::Proc,
};

struct Node {
    name: String,
    id: u32,
    ns: Netns,
    /// An end point (runs no agent): never probed, never transit.
    client: bool,
}

struct Link {
    a: String,
    b: String,
    a_ip: Ipv4Addr,
    b_ip: Ipv4Addr,
    /// IPv6 addresses of `a` and `b` on links made after [`Topology::over_ipv6`]: the
    /// overlay runs over them.
    v6: Option<(Ipv6Addr, Ipv6Addr)>,
    /// The hop authentication secret both ends are configured with (key ID 1).
    secret: Secret,
}

fn fresh_secret() -> Result<Secret> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| anyhow!("no randomness: {e}"))?;
    Ok(Secret::new(b))
}

/// A relay network. Dropping it stops the agents, then deletes namespaces and pins.
pub struct Topology {
    tag: String,
    nodes: Vec<Node>,
    links: Vec<Link>,
    agents: Vec<(String, Proc)>,
    /// XDP_PASS programs on client interfaces (detached on drop).
    pass_progs: Vec<Ebpf>,
    /// Extra top-level config lines per relay.
    extra: BTreeMap<String, String>,
    /// Per relay: the `protect` table of its relay peers.
    protect: BTreeMap<String, String>,
    controller: Option<(String, Proc)>,
    /// The controller's CA, certificate and tokens (made once per topology).
    pki: Option<ControllerPki>,
    /// Links are configured with `auth = "none"` ([`Topology::without_auth`]).
    no_auth: bool,
    /// New links get IPv6 addresses, which the overlay uses ([`Topology::over_ipv6`]).
    ipv6: bool,
    /// Links through an impairment element, by (a, b).
    impaired: Vec<((String, String), ImpairedLink)>,
    config_dir: PathBuf,
}

/// Interface name on `node` for its link to `peer`.
pub fn iface(peer: &str) -> String {
    format!("to-{peer}")
}

impl Topology {
    /// `tag` must be unique among running topologies (namespace and pin names use it).
    pub fn new(tag: &str) -> Result<Self> {
        let tag = format!("{tag}{}", std::process::id() % 100_000);
        let config_dir = std::env::temp_dir().join(format!("wecan-{tag}"));
        std::fs::create_dir_all(&config_dir)?;
        Ok(Self {
            tag,
            nodes: Vec::new(),
            links: Vec::new(),
            agents: Vec::new(),
            pass_progs: Vec::new(),
            extra: BTreeMap::new(),
            protect: BTreeMap::new(),
            controller: None,
            pki: None,
            impaired: Vec::new(),
            config_dir,
            no_auth: false,
            ipv6: false,
        })
    }

    /// Adds a relay node with its own namespace.
    pub fn node(&mut self, name: &str, id: u32) -> Result<()> {
        self.add(name, id, false)
    }

    /// Adds a client node (an end point) with its own namespace.
    pub fn client_node(&mut self, name: &str, id: u32) -> Result<()> {
        self.add(name, id, true)
    }

    fn add(&mut self, name: &str, id: u32, client: bool) -> Result<()> {
        let ns = Netns::new(&format!("{}-{name}", self.tag))?;
        self.nodes.push(Node { name: name.into(), id, ns, client });
        Ok(())
    }

    /// Links two nodes with a veth pair and a /24 (10.0.N.1 on `a`, 10.0.N.2 on `b`; after
    /// [`Topology::over_ipv6`], also fd00:0:N::1/64 and fd00:0:N::2/64).
    pub fn link(&mut self, a: &str, b: &str) -> Result<()> {
        let (na, nb) = (self.find(a)?, self.find(b)?);
        veth(&na.ns, &iface(b), &nb.ns, &iface(a))?;
        self.address_link(a, b)
    }

    /// Addresses the interfaces `a` and `b` have toward each other as the next link, and
    /// records it.
    fn address_link(&mut self, a: &str, b: &str) -> Result<()> {
        let n = self.links.len() as u8 + 1;
        let (a_ip, b_ip) = (Ipv4Addr::new(10, 0, n, 1), Ipv4Addr::new(10, 0, n, 2));
        let v6_of = |host| Ipv6Addr::new(0xfd00, 0, u16::from(n), 0, 0, 0, 0, host);
        let v6 = self.ipv6.then(|| (v6_of(1), v6_of(2)));
        let (na, nb) = (self.find(a)?, self.find(b)?);
        na.ns.ip(&["addr", "add", &format!("{a_ip}/24"), "dev", &iface(b)])?;
        nb.ns.ip(&["addr", "add", &format!("{b_ip}/24"), "dev", &iface(a)])?;
        if let Some((a6, b6)) = v6 {
            // Without duplicate address detection, usable at once rather than in a second.
            na.ns.ip(&["addr", "add", &format!("{a6}/64"), "dev", &iface(b), "nodad"])?;
            nb.ns.ip(&["addr", "add", &format!("{b6}/64"), "dev", &iface(a), "nodad"])?;
        }
        let secret = fresh_secret()?;
        self.links.push(Link { a: a.into(), b: b.into(), a_ip, b_ip, v6, secret });
        Ok(())
    }

    /// Links made from now on get IPv6 addresses too, and the overlay runs over them:
    /// configs name those peers by their IPv6 addresses.
    pub fn over_ipv6(&mut self) {
        self.ipv6 = true;
    }

    /// The secret of the link between `a` and `b`.
    pub fn secret(&self, a: &str, b: &str) -> Result<&Secret> {
        self.links
            .iter()
            .find(|l| (l.a == a && l.b == b) || (l.a == b && l.b == a))
            .map(|l| &l.secret)
            .ok_or_else(|| anyhow!("no link between {a} and {b}"))
    }

    /// Configures every link written from now on without hop authentication
    /// (`auth = "none"`), and clients without keys: the rate benchmark's generator replays
    /// one template frame.
    pub fn without_auth(&mut self) {
        self.no_auth = true;
    }

    /// Like [`Topology::link`], through an impairment element (its own namespace) that
    /// applies `imp` in both directions; change it later with [`Topology::impair`].
    pub fn link_impaired(&mut self, a: &str, b: &str, imp: Impairment) -> Result<()> {
        let n = self.links.len() + 1;
        let (na, nb) = (self.find(a)?, self.find(b)?);
        let ns = format!("{}-i{n}", self.tag);
        let el = ImpairedLink::new(&ns, &na.ns, &iface(b), &nb.ns, &iface(a), imp, imp)?;
        self.address_link(a, b)?;
        self.impaired.push(((a.into(), b.into()), el));
        Ok(())
    }

    /// Sets the impairment of the a — b link (both directions).
    pub fn impair(&self, a: &str, b: &str, imp: Impairment) {
        let el = self.impaired.iter().find(|((x, y), _)| (x == a && y == b) || (x == b && y == a));
        el.expect("an impaired link").1.set(imp, imp);
    }

    fn find(&self, name: &str) -> Result<&Node> {
        self.nodes.iter().find(|n| n.name == name).ok_or_else(|| anyhow!("no node {name}"))
    }

    pub fn ns(&self, name: &str) -> &Netns {
        &self.find(name).expect("known node").ns
    }

    pub fn id(&self, name: &str) -> u32 {
        self.find(name).expect("known node").id
    }

    /// The link between `on` and `toward`, and whether `on` is its `a` end.
    fn link_of(&self, on: &str, toward: &str) -> (&Link, bool) {
        self.links
            .iter()
            .find_map(|l| match (l.a == on && l.b == toward, l.b == on && l.a == toward) {
                (true, _) => Some((l, true)),
                (_, true) => Some((l, false)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no link {on} -- {toward}"))
    }

    /// IPv4 address of `on` on its link to `toward`.
    pub fn addr(&self, on: &str, toward: &str) -> Ipv4Addr {
        match self.link_of(on, toward) {
            (l, true) => l.a_ip,
            (l, false) => l.b_ip,
        }
    }

    /// The address of `on` on its link to `toward` that the overlay uses: IPv6 on a link
    /// made after [`Topology::over_ipv6`], else IPv4.
    pub fn overlay_addr(&self, on: &str, toward: &str) -> IpAddr {
        match self.link_of(on, toward) {
            (Link { v6: Some((a, _)), .. }, true) => IpAddr::V6(*a),
            (Link { v6: Some((_, b)), .. }, false) => IpAddr::V6(*b),
            _ => IpAddr::V4(self.addr(on, toward)),
        }
    }

    /// Makes `node`'s kernel resolve the overlay address of `toward` (a datagram to its
    /// discard port, repeated until the neighbour entry is valid), so that a relay forwards
    /// toward it in XDP from the first packet instead of handing that to its agent. Relays
    /// resolve their relay peers by probing them; nothing probes a client.
    pub fn resolve_neighbour(&self, node: &str, toward: &str) -> Result<()> {
        let to = SocketAddr::new(self.overlay_addr(toward, node), 9);
        let ns = self.ns(node);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            in_netns(&ns.name, move || {
                let any: SocketAddr =
                    if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("an address");
                UdpSocket::bind(any).and_then(|s| s.send_to(&[], to))
            })??;
            let entry = ns.ip(&["neigh", "show", &to.ip().to_string(), "dev", &iface(toward)])?;
            if ["REACHABLE", "STALE", "DELAY", "PROBE"].iter().any(|s| entry.contains(s)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{node} did not resolve {} within 5 s: {entry:?}", to.ip());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Nodes linked to `name`.
    pub fn neighbours(&self, name: &str) -> Vec<String> {
        self.links
            .iter()
            .filter_map(|l| {
                if l.a == name {
                    Some(l.b.clone())
                } else if l.b == name {
                    Some(l.a.clone())
                } else {
                    None
                }
            })
            .collect()
    }

    pub fn pin_dir(&self, relay: &str) -> PathBuf {
        PathBuf::from(format!("/sys/fs/bpf/wecan-{}/{relay}", self.tag))
    }

    /// The agent config for `relay`: every neighbour except those in `strangers` is a
    /// peer; `routes` maps destination node names to next-hop node names.
    pub fn config(&self, relay: &str, strangers: &[&str], routes: &[(&str, &str)]) -> String {
        let mut c = format!(
            "node_id = {}\nport = {DEFAULT_PORT}\npin_dir = \"{}\"\ninterfaces = [{}]\n",
            self.id(relay),
            self.pin_dir(relay).display(),
            self.neighbours(relay)
                .iter()
                .map(|n| format!("\"{}\"", iface(n)))
                .collect::<Vec<_>>()
                .join(", "),
        );
        if let (Some((url, _)), Some(pki)) = (&self.controller, &self.pki) {
            c += &format!("controller = \"{url}\"\ncontroller_ca = \"{}\"\n", pki.ca.display());
            if let Some(token) = pki.token_file(self.id(relay)) {
                c += &format!("controller_token_file = \"{}\"\n", token.display());
            }
        }
        // Last before the peer tables: it may open a table of its own (e.g. `[probes]`).
        c += self.extra.get(relay).map_or("", String::as_str);
        for n in self.neighbours(relay) {
            if !strangers.contains(&n.as_str()) {
                let client = self.find(&n).is_ok_and(|n| n.client);
                c += &format!(
                    "\n[[peers]]\nnode_id = {}\naddr = \"{}\"\nkind = \"{}\"\n",
                    self.id(&n),
                    self.overlay_addr(&n, relay),
                    if client { "client" } else { "relay" },
                );
                if let Some(p) = self.protect.get(relay).filter(|_| !client) {
                    c += &format!("protect = {{ {p} }}\n");
                }
                match self.secret(relay, &n) {
                    Ok(s) if !self.no_auth => {
                        c += &format!("keys = [{{ id = 1, secret = \"{}\" }}]\n", s.to_hex());
                    }
                    _ => c += "auth = \"none\"\n",
                }
            }
        }
        for (dst, via) in routes {
            c += &format!("\n[[routes]]\ndst = {}\nvia = {}\n", self.id(dst), self.id(via));
        }
        c
    }

    /// Adds config lines for `relay` (top-level keys, then at most tables such as
    /// `[probes]`).
    pub fn set_extra(&mut self, relay: &str, toml: &str) {
        self.extra.insert(relay.into(), toml.into());
    }

    /// Protects `relay`'s links to its relay peers: `fields` are the inner fields of the
    /// peers' `protect` table (e.g. `mode = "fec+arq"`). Applies to configs written later.
    pub fn set_protect(&mut self, relay: &str, fields: &str) {
        self.protect.insert(relay.into(), fields.into());
    }

    /// Writes the config for `relay` (read by the next start or restart).
    pub fn write_config(
        &self,
        relay: &str,
        strangers: &[&str],
        routes: &[(&str, &str)],
    ) -> Result<()> {
        let path = self.config_dir.join(format!("{relay}.toml"));
        Ok(std::fs::write(&path, self.config(relay, strangers, routes))?)
    }

    /// Writes the config and starts `wecan-agent run` for `relay`; returns once it is ready.
    pub fn start_relay(
        &mut self,
        relay: &str,
        strangers: &[&str],
        routes: &[(&str, &str)],
    ) -> Result<()> {
        self.write_config(relay, strangers, routes)?;
        self.spawn_agent(relay)
    }

    /// Starts `wecan-agent run` with the config written for `relay`; returns once ready.
    fn spawn_agent(&mut self, relay: &str) -> Result<()> {
        let path = self.config_dir.join(format!("{relay}.toml"));
        let ns = self.ns(relay).name.clone();
        let agent = Proc::spawn_ready(
            relay,
            Command::new(bin("wecan-agent"))
                .args(["--netns", &ns, "run", "--stats-interval", "0", "--config"])
                .arg(&path)
                .env(
                    "RUST_LOG",
                    std::env::var("WECAN_AGENT_LOG").unwrap_or_else(|_| "warn".into()),
                ),
            "ready",
            Duration::from_secs(20),
        )
        .with_context(|| format!("agent {relay}"))?;
        self.agents.push((relay.into(), agent));
        Ok(())
    }

    /// The running agent of `relay`.
    pub fn agent(&self, relay: &str) -> Result<&Proc> {
        self.agents.iter().find(|(r, _)| r == relay).map(|(_, p)| p).context("no such agent")
    }

    /// Attaches an XDP_PASS program to every interface of `node`: a veth only accepts
    /// frames that its peer sends with XDP_TX/XDP_REDIRECT when it runs XDP itself.
    pub fn accept_xdp_frames(&mut self, node: &str) -> Result<()> {
        let ns = self.ns(node).name.clone();
        let ifaces: Vec<String> = self.neighbours(node).iter().map(|n| iface(n)).collect();
        let ebpf = crate::net::in_netns(&ns, move || -> Result<Ebpf> {
            let mut ebpf = Ebpf::load(TESTKIT_OBJECT)?;
            let prog: &mut Xdp =
                ebpf.program_mut("testkit_pass").context("testkit_pass")?.try_into()?;
            prog.load()?;
            for i in &ifaces {
                prog.attach(i, XdpMode::Driver).with_context(|| format!("XDP_PASS on {i}"))?;
            }
            Ok(ebpf)
        })??;
        self.pass_progs.push(ebpf);
        Ok(())
    }

    /// Stops the agent of `relay` (it detaches and removes its pins).
    pub fn stop_relay(&mut self, relay: &str) {
        self.agents.retain(|(n, _)| n != relay);
    }

    /// Kills the agent of `relay` with SIGKILL, as a crash would: program, maps and links stay
    /// pinned and attached, and nothing is cleaned up.
    pub fn kill_relay(&mut self, relay: &str) -> Result<()> {
        let i = self.agents.iter().position(|(n, _)| n == relay).context("no such agent")?;
        let (_, old) = self.agents.remove(i);
        old.signal(libc::SIGKILL);
        old.wait(Duration::from_secs(10))?;
        Ok(())
    }

    /// Starts an agent for `relay` again after [`Self::kill_relay`]; it takes over the pins.
    pub fn revive_relay(&mut self, relay: &str) -> Result<()> {
        self.spawn_agent(relay)
    }

    /// Upgrades the agent of `relay` in place: a new one (the config as last written) takes
    /// the running one's socket, state, maps and links over, and the old one exits.
    pub fn restart_relay(&mut self, relay: &str) -> Result<()> {
        let i = self.agents.iter().position(|(n, _)| n == relay).context("no such agent")?;
        let (_, old) = self.agents.remove(i);
        self.spawn_agent(relay)?;
        let status = old.wait(Duration::from_secs(10))?;
        if !status.success() {
            anyhow::bail!("{relay}: the old agent exited with {status} after the handover");
        }
        Ok(())
    }

    /// Starts the controller on a free loopback port, over TLS with a throwaway CA and a
    /// token for each relay added so far (see [`ControllerPki`]); agents started afterwards
    /// use it.
    pub fn start_controller(&mut self) -> Result<()> {
        if self.pki.is_none() {
            let relays: Vec<u32> = self.nodes.iter().filter(|n| !n.client).map(|n| n.id).collect();
            self.pki = Some(ControllerPki::create(&self.config_dir.join("pki"), &relays)?);
        }
        let pki = self.pki.as_ref().context("controller credentials")?;
        let (p, ready, _) = Proc::spawn_capture(
            "controller",
            Command::new(bin("wecan-controller"))
                .arg("--config")
                .arg(&pki.config)
                .args(["--listen", "127.0.0.1:0"])
                .env("RUST_LOG", "warn"),
            "listening",
            Duration::from_secs(10),
        )?;
        let addr = ready.trim_start_matches("listening").trim();
        self.controller = Some((format!("https://{addr}"), p));
        Ok(())
    }

    /// The controller's credentials, once it has been started.
    pub fn controller_pki(&self) -> Option<&ControllerPki> {
        self.pki.as_ref()
    }

    /// The arguments of `wecan controller` for this controller with the operator token.
    pub fn controller_cli(&self) -> Result<Vec<String>> {
        let (url, pki) = (self.controller_url().context("controller")?, self.pki()?);
        Ok(vec![
            "controller".into(),
            "--url".into(),
            url.into(),
            "--ca".into(),
            pki.ca.display().to_string(),
            "--token-file".into(),
            pki.operator_token.display().to_string(),
        ])
    }

    /// A client of the controller trusting its CA, with the token in `token_file`.
    pub fn controller_client(&self, token_file: &Path) -> Result<ControllerHttp> {
        let roots = read_ca(&self.pki()?.ca)?;
        Ok(ControllerHttp::new(&roots, &read_token(token_file)?, Some(Duration::from_secs(10))))
    }

    /// GET `path` (e.g. `/v1/topology`) from the controller with the operator token.
    pub fn controller_get(&self, path: &str) -> Result<serde_json::Value> {
        let http = self.controller_client(&self.pki()?.operator_token)?;
        let url = format!("{}{path}", self.controller_url().context("controller")?);
        let resp = http.get(&url).call().with_context(|| format!("GET {url}"))?;
        let mut resp = ControllerHttp::check(resp).with_context(|| format!("GET {url}"))?;
        Ok(resp.body_mut().read_json()?)
    }

    fn pki(&self) -> Result<&ControllerPki> {
        self.pki.as_ref().context("the controller was never started")
    }

    /// Stops the controller (agents keep forwarding on their last routes).
    pub fn stop_controller(&mut self) {
        if let Some((_, p)) = &mut self.controller {
            p.stop();
        }
    }

    /// The controller's URL.
    pub fn controller_url(&self) -> Option<&str> {
        self.controller.as_ref().map(|(u, _)| u.as_str())
    }

    /// The relay's datapath counters (packets per outcome).
    pub fn stats(&self, relay: &str) -> Result<BTreeMap<&'static str, u64>> {
        let maps = Maps::open_pinned(&self.pin_dir(relay))?;
        Ok(maps.stats()?.into_iter().map(|(s, c)| (s.name(), c.packets)).collect())
    }

    /// The relay's probe statistics per peer (what `wecan links` shows).
    pub fn links(&self, relay: &str) -> Result<Vec<(u32, wecan_common::maps::LinkValue)>> {
        Maps::open_pinned(&self.pin_dir(relay))?.links()
    }

    /// Runs the `wecan` CLI against `relay`.
    pub fn cli(&self, relay: &str, args: &[&str]) -> Result<String> {
        let pin = self.pin_dir(relay);
        let mut a =
            vec!["--netns", &self.ns(relay).name, "--pin-dir", pin.to_str().expect("UTF-8")];
        a.extend_from_slice(args);
        crate::net::sh(bin("wecan").to_str().expect("UTF-8"), &a)
    }

    /// A `wecan-client` command running in `node`'s namespace, keyed for the link to its
    /// edge relay (its first neighbour).
    pub fn client(&self, node: &str) -> Command {
        let mut c = Command::new(bin("wecan-client"));
        c.args(["--netns", &self.ns(node).name]);
        if let Some(edge) = self.neighbours(node).first()
            && let Ok(s) = self.secret(node, edge)
            && !self.no_auth
        {
            c.args(["--key", &format!("1:{}", s.to_hex())]);
            c.args([
                "--node",
                &self.id(node).to_string(),
                "--edge-node",
                &self.id(edge).to_string(),
            ]);
        }
        c
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Agents first (they detach and unpin), then namespaces, then leftovers.
        self.agents.clear();
        self.pass_progs.clear();
        self.impaired.clear();
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.config_dir);
        let root = PathBuf::from(format!("/sys/fs/bpf/wecan-{}", self.tag));
        if let Ok(dirs) = std::fs::read_dir(&root) {
            for d in dirs.flatten() {
                if let Ok(files) = std::fs::read_dir(d.path()) {
                    for f in files.flatten() {
                        let _ = std::fs::remove_file(f.path());
                    }
                }
                let _ = std::fs::remove_dir(d.path());
            }
        }
        let _ = std::fs::remove_dir(&root);
    }
}
