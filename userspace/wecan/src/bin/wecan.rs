//! wecan: inspect and steer a relay's datapath through its pinned maps, like `bpftool`.
//!
//! ```text
//! wecan routes list | get DST [--flow F] | add DST --via ADDR [--port P] [--flow F] | del DST [--flow F]
//! wecan peers list | add ADDR --node N | del ADDR
//! wecan stats
//! wecan links
//! ```
//! `-j/--json` prints JSON instead of a table.

use std::{net::IpAddr, path::PathBuf};

use anyhow::{Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use wecan::{
    config::{Config, DEFAULT_PIN_DIR},
    control,
    datapath::{Maps, RouteSel, describe},
    netns,
    output::{self, LinkRow, PeerRow, RouteRow, StatRow},
};
use wecan_common::{
    maps::{RouteAction, RouteOrigin, RouteValue},
    wire::DEFAULT_PORT,
};

#[derive(Parser)]
#[command(version, about = "Inspect and steer a wecan relay")]
struct Cli {
    /// Pin directory of the relay instance.
    #[arg(long, global = true, default_value = DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
    /// Take the pin directory from the agent's config file.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Resolve addresses in this network namespace (where the relay runs), like `ip -n`.
    #[arg(long, global = true)]
    netns: Option<String>,
    /// JSON output.
    #[arg(short, long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Route map entries.
    #[command(subcommand)]
    Routes(RoutesCmd),
    /// Peer allowlist.
    Peers {
        #[command(subcommand)]
        cmd: Option<PeersCmd>,
    },
    /// Datapath counters per outcome and drop reason.
    Stats,
    /// Link quality to each relay peer, from the agent's probes.
    Links,
}

#[derive(Subcommand)]
enum RoutesCmd {
    List,
    Get {
        dst: u32,
        #[arg(long)]
        flow: Option<u32>,
    },
    /// Add or replace a route (atomic: one map update).
    Add {
        dst: u32,
        /// Next hop address (required unless --action local).
        #[arg(long)]
        via: Option<IpAddr>,
        /// Next hop UDP port.
        #[arg(long, default_value_t = DEFAULT_PORT)]
        port: u16,
        /// Next hop node ID (informational; defaults to the peer with that address).
        #[arg(long)]
        next_node: Option<u32>,
        /// Only for this flow (per-flow override).
        #[arg(long)]
        flow: Option<u32>,
        #[arg(long, value_enum, default_value_t = Action::Forward)]
        action: Action,
    },
    Del {
        dst: u32,
        #[arg(long)]
        flow: Option<u32>,
    },
}

#[derive(Subcommand)]
enum PeersCmd {
    List,
    Add {
        addr: IpAddr,
        #[arg(long)]
        node: u32,
    },
    Del {
        addr: IpAddr,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Action {
    Forward,
    SlowPath,
    Local,
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("wecan: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(ns) = &cli.netns {
        netns::enter(ns)?;
    }
    let pin_dir = match &cli.config {
        Some(c) => Config::load(c)?.pin_dir,
        None => cli.pin_dir.clone(),
    };
    let mut maps = Maps::open_pinned(&pin_dir)?;
    match cli.cmd {
        Cmd::Routes(RoutesCmd::List) => {
            let rows: Vec<RouteRow> =
                maps.routes()?.iter().map(|(s, v)| RouteRow::new(*s, v)).collect();
            output::print(&rows, cli.json)
        }
        Cmd::Routes(RoutesCmd::Get { dst, flow }) => {
            let found = match flow {
                Some(f) => maps.lookup(dst, f)?,
                None => maps.route(RouteSel::Dst(dst))?.map(|v| (RouteSel::Dst(dst), v)),
            };
            match found {
                Some((sel, v)) => output::print(&[RouteRow::new(sel, &v)], cli.json),
                None => bail!("no route for {}", describe(RouteSel::new(dst, flow))),
            }
        }
        Cmd::Routes(RoutesCmd::Add { dst, via, port, next_node, flow, action }) => {
            if dst == 0 {
                bail!("DST: node 0 is reserved");
            }
            let value = match (action, via) {
                (Action::Local, None) => RouteValue::local(RouteOrigin::Cli),
                (Action::Local, Some(_)) => {
                    bail!("--via: a local route has no next hop; drop --via")
                }
                (_, None) => {
                    bail!("--via: required for a forwarding route; give the next hop's address")
                }
                (a, Some(addr)) => {
                    let peers = maps.peers()?;
                    let node = match next_node {
                        Some(n) => n,
                        None => match peers.iter().find(|(p, _)| *p == addr) {
                            Some((_, v)) => v.node_id,
                            None => bail!(
                                "--via {addr}: not a peer of this relay; add it first (`wecan peers add {addr} --node N`) or pass --next-node"
                            ),
                        },
                    };
                    let action = match a {
                        Action::SlowPath => RouteAction::SlowPath,
                        _ => RouteAction::Forward,
                    };
                    control::route_to(action, addr, port, node, RouteOrigin::Cli)?
                }
            };
            let sel = RouteSel::new(dst, flow);
            maps.set_route(sel, value)?;
            output::print(&[RouteRow::new(sel, &value)], cli.json)
        }
        Cmd::Routes(RoutesCmd::Del { dst, flow }) => maps.remove_route(RouteSel::new(dst, flow)),
        Cmd::Peers { cmd: None | Some(PeersCmd::List) } => {
            let rows: Vec<PeerRow> =
                maps.peers()?.iter().map(|(a, v)| PeerRow::new(*a, v)).collect();
            output::print(&rows, cli.json)
        }
        Cmd::Peers { cmd: Some(PeersCmd::Add { addr, node }) } => {
            if node == 0 {
                bail!("--node: node 0 is reserved");
            }
            maps.add_peer(addr, node)
        }
        Cmd::Peers { cmd: Some(PeersCmd::Del { addr }) } => maps.remove_peer(addr),
        Cmd::Links => {
            let now = wecan::probe::now_ns();
            let rows: Vec<LinkRow> =
                maps.links()?.iter().map(|(p, v)| LinkRow::new(*p, v, now)).collect();
            output::print(&rows, cli.json)
        }
        Cmd::Stats => {
            let rows: Vec<StatRow> =
                maps.stats()?.iter().map(|(s, c)| StatRow::new(*s, c)).collect();
            output::print(&rows, cli.json)
        }
    }
}
