//! wecan: inspect and steer a relay's datapath through its pinned maps, like `bpftool`.
//!
//! ```text
//! wecan routes list | get DST [--flow F] | add DST --via ADDR [--port P] [--flow F] [--protect MODE] | del DST [--flow F]
//! wecan peers list | add ADDR --node N (--key ID:SECRET | --no-auth) | key ADDR [--add ID:SECRET] [--send ID] | del ADDR
//! wecan key generate
//! wecan token keygen --out FILE | issue --operator FILE --name NAME --ttl 24h [--ops LIST] [--edge] --out FILE | inspect FILE
//! wecan stats
//! wecan links
//! wecan protection
//! wecan controller [--url URL] --ca CA.pem --token-file FILE topology | routes [--node N] | auth
//! ```
//! `-j/--json` prints JSON instead of a table.

use std::{net::IpAddr, path::PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use wecan_agent::{
    config::{Config, DEFAULT_PIN_DIR},
    gateway::{Attached, GatewayReport},
    output::{self, ClientRow, LinkRow, PeerRow, ProtectionRow, RouteRow, Row, StatRow},
    probe,
    protection::{HopRefusals, ProtectionReport},
    reconcile,
    upstream::{ControllerHttp, read_ca, read_token},
};
use wecan_api::{AuthReply, EdgeInfo, RoutesReply, Topology};
use wecan_common::{
    maps::{PeerKind, PeerValue, RouteAction, RouteOrigin, RouteValue, peer_flags},
    wire::DEFAULT_PORT,
};
use wecan_datapath::maps::{Maps, RouteSel, describe};
use wecan_os::netns;
use wecan_transport::{
    auth::{self, Secret},
    hop::ProtectMode,
};

#[path = "wecan/token.rs"]
mod token;

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
    #[command(flatten)]
    Map(MapCmd),
    /// Ask the controller (HTTPS API, operator token) instead of this relay's maps.
    Controller {
        /// Controller URL.
        #[arg(long, default_value = "https://127.0.0.1:7400")]
        url: String,
        /// PEM file of the CA the controller's certificate must chain to.
        #[arg(long)]
        ca: PathBuf,
        /// File holding an operator token (the controller's [[operators]]).
        #[arg(long)]
        token_file: PathBuf,
        #[command(subcommand)]
        cmd: ControllerCmd,
    },
    /// Per-hop protection of each protected link and direction (FEC groups, repairs, NACKs,
    /// retransmissions, residual loss), as the running agent last published it.
    Protection,
    /// Link secrets for hop authentication.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Operator keys and edge-access credentials (offline, no relay needed).
    #[command(subcommand)]
    Token(token::TokenCmd),
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Print a fresh random link secret (64 hex digits) for both ends' `keys`.
    Generate,
}

/// Commands on this relay's pinned maps.
#[derive(Subcommand)]
enum MapCmd {
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
    /// Clients attached through this edge's access gateway, and what the gateway refused.
    Clients,
}

#[derive(Subcommand)]
enum ControllerCmd {
    /// The link-quality graph as the controller sees it.
    Topology,
    /// Routes the controller computed (for one relay with --node).
    Routes {
        #[arg(long)]
        node: Option<u32>,
    },
    /// Requests the controller refused, per reason (missing or bad tokens, wrong node, TLS).
    Auth,
    /// Edges: where clients reach them, whose clients they serve, their region and load.
    Edges,
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
        /// forward, slow-path or local.
        #[arg(long, default_value = "forward", value_parser = parse_action)]
        action: RouteAction,
        /// none, fec, arq or fec+arq: protect the hop to the next relay (the agent then
        /// handles the route's packets: action slow-path). The next hop must be a relay
        /// running wecan.
        #[arg(long, default_value = "none", value_parser = parse_protect)]
        protect: ProtectMode,
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
        /// `relay` (probed, a possible next hop, may send hop messages) or `client`.
        #[arg(long, default_value = "relay", value_parser = parse_kind)]
        kind: PeerKind,
        /// The link's key, ID:SECRET (SECRET: 64 hex digits, the same at both ends).
        #[arg(long, value_parser = parse_key, conflicts_with = "no_auth")]
        key: Option<(u8, Secret)>,
        /// The link is not authenticated (a trusted network only).
        #[arg(long)]
        no_auth: bool,
    },
    /// Rotate a link's keys without loss: `--add` the new key at both ends (it replaces the
    /// one not sending), then `--send` with it at both ends.
    Key {
        addr: IpAddr,
        /// Install this key, ID:SECRET, in the slot of the key that is not sending.
        #[arg(long, value_parser = parse_key)]
        add: Option<(u8, Secret)>,
        /// Tag what this relay sends to the peer with key ID.
        #[arg(long)]
        send: Option<u8>,
    },
    Del {
        addr: IpAddr,
    },
}

fn parse_kind(s: &str) -> Result<PeerKind, String> {
    s.parse().map_err(|e: wecan_common::maps::UnknownPeerKind| e.to_string())
}

fn parse_key(s: &str) -> Result<(u8, Secret), String> {
    let (id, secret) = s.split_once(':').ok_or("expected ID:SECRET, e.g. 1:<64 hex digits>")?;
    let id: u8 = id.parse().map_err(|_| format!("key ID {id:?}: use 1..=255"))?;
    if id == 0 {
        return Err("key ID 0 means untagged; use 1..=255".into());
    }
    Ok((id, secret.parse().map_err(|e: auth::BadSecret| e.to_string())?))
}

fn parse_action(s: &str) -> Result<RouteAction, String> {
    s.parse().map_err(|e| format!("{e}"))
}

fn parse_protect(s: &str) -> Result<ProtectMode, String> {
    s.parse()
}

/// GET a JSON document from the controller, with its error message on failure.
fn get<T: serde::de::DeserializeOwned>(http: &ControllerHttp, url: &str) -> Result<T> {
    let resp =
        http.get(url).call().with_context(|| format!("cannot reach the controller at {url}"))?;
    let mut resp = ControllerHttp::check(resp).context("controller")?;
    Ok(resp.body_mut().read_json()?)
}

fn controller(
    url: &str,
    ca: &std::path::Path,
    token_file: &std::path::Path,
    cmd: &ControllerCmd,
    json: bool,
) -> Result<()> {
    if !url.starts_with("https://") {
        bail!("--url: {url:?} must be an https:// URL (the controller speaks only TLS)");
    }
    let roots = read_ca(ca).context("--ca")?;
    let token = read_token(token_file).context("--token-file")?;
    let http = ControllerHttp::new(&roots, &token, Some(std::time::Duration::from_secs(10)));
    let url = url.trim_end_matches('/');
    match cmd {
        ControllerCmd::Topology => {
            let t: Topology = get(&http, &format!("{url}/v1/topology"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&t)?);
                return Ok(());
            }
            let rows = t.links.iter().map(|l| {
                vec![
                    l.from.to_string(),
                    l.to.to_string(),
                    if l.up { "up" } else { "down" }.to_string(),
                    format!("{:.1}", l.rtt_us),
                    format!("{:.1}", l.loss * 100.0),
                    format!("{:.1}", l.jitter_us),
                    l.cost_us.map_or_else(|| "-".into(), |c| format!("{c:.1}")),
                ]
            });
            print!(
                "{}",
                output::table(
                    &["FROM", "TO", "STATE", "RTT-US", "LOSS-%", "JITTER-US", "COST-US"],
                    rows
                )
            );
            let relays = t.nodes.iter().filter(|n| n.relay).count();
            println!("{relays} relays, {} clients", t.nodes.len() - relays);
            Ok(())
        }
        ControllerCmd::Routes { node } => {
            let q = node.map_or_else(String::new, |n| format!("?node={n}"));
            let sets: Vec<RoutesReply> = get(&http, &format!("{url}/v1/routes{q}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&sets)?);
                return Ok(());
            }
            let rows = sets.iter().flat_map(|s| {
                s.routes.iter().map(move |r| {
                    vec![
                        s.node.to_string(),
                        r.dst.to_string(),
                        r.next_hop.to_string(),
                        r.backup.map_or_else(|| "-".into(), |b| b.to_string()),
                        format!("{:.1}", r.cost_us),
                        s.generation.to_string(),
                    ]
                })
            });
            print!(
                "{}",
                output::table(&["NODE", "DST", "NEXT-HOP", "BACKUP", "COST-US", "GEN"], rows)
            );
            Ok(())
        }
        ControllerCmd::Auth => {
            let a: AuthReply = get(&http, &format!("{url}/v1/auth"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&a)?);
                return Ok(());
            }
            let r = a.refused;
            let rows = [
                ("missing_credentials", r.missing_credentials),
                ("malformed_credentials", r.malformed_credentials),
                ("bad_credentials", r.bad_credentials),
                ("wrong_node", r.wrong_node),
                ("not_operator", r.not_operator),
                ("read_only", r.read_only),
                ("bad_client_token", r.bad_client_token),
                ("tls_handshake", r.tls_handshake),
            ]
            .map(|(reason, n)| vec![reason.to_string(), n.to_string()]);
            print!("{}", output::table(&["REFUSED", "REQUESTS"], rows.into_iter()));
            println!("{} nodes, {} operators with a token", a.nodes, a.operators);
            Ok(())
        }
        ControllerCmd::Edges => {
            let edges: Vec<EdgeInfo> = get(&http, &format!("{url}/v1/edges"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&edges)?);
                return Ok(());
            }
            let rows = edges.iter().map(|i| {
                let e = &i.edge;
                let addrs: Vec<String> = e.addrs.iter().map(ToString::to_string).collect();
                vec![
                    i.node.to_string(),
                    if e.region.is_empty() { "-".into() } else { e.region.clone() },
                    format!("{}/{}", e.clients, e.capacity),
                    addrs.join(","),
                    e.operator.clone(),
                    i.age_ms.to_string(),
                ]
            });
            let header = ["NODE", "REGION", "CLIENTS", "ADDRESSES", "OPERATOR", "AGE_MS"];
            print!("{}", output::table(&header, rows));
            Ok(())
        }
    }
}

/// This relay's node ID, which link keys are derived for.
fn me(maps: &Maps) -> Result<u32> {
    match maps.config()?.node_id {
        0 => bail!("the relay is not configured yet (no node ID); start its agent first"),
        id => Ok(id),
    }
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("wecan: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    // The controller is reached from here (the management network), like the agent does.
    let (config, default_pin_dir) = (cli.config.clone(), cli.pin_dir.clone());
    let pin_dir = || -> Result<PathBuf> {
        Ok(match &config {
            Some(c) => Config::load(c)?.pin_dir,
            None => default_pin_dir.clone(),
        })
    };
    let cmd = match cli.cmd {
        Cmd::Controller { url, ca, token_file, cmd } => {
            return controller(&url, &ca, &token_file, &cmd, cli.json);
        }
        // The agent publishes these outside bpffs, in no namespace of its own.
        Cmd::Protection => return protection(&pin_dir()?, cli.json),
        Cmd::Key(KeyCmd::Generate) => {
            let mut b = [0u8; auth::SECRET_LEN];
            getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            println!("{}", Secret::new(b).to_hex());
            return Ok(());
        }
        Cmd::Token(cmd) => return token::run(cmd, cli.json),
        Cmd::Map(cmd) => cmd,
    };
    if let Some(ns) = &cli.netns {
        netns::enter(ns)?;
    }
    let pin_dir = pin_dir()?;
    let mut maps = Maps::open_pinned(&pin_dir)?;
    match cmd {
        MapCmd::Routes(RoutesCmd::List) => {
            let rows: Vec<RouteRow> =
                maps.routes()?.iter().map(|(s, v)| RouteRow::new(*s, v)).collect();
            output::print(&rows, cli.json)
        }
        MapCmd::Routes(RoutesCmd::Get { dst, flow }) => {
            let found = match flow {
                Some(f) => maps.lookup(dst, f)?,
                None => maps.route(RouteSel::Dst(dst))?.map(|v| (RouteSel::Dst(dst), v)),
            };
            match found {
                Some((sel, v)) => output::print(&[RouteRow::new(sel, &v)], cli.json),
                None => bail!("no route for {}", describe(RouteSel::new(dst, flow))),
            }
        }
        MapCmd::Routes(RoutesCmd::Add { dst, via, port, next_node, flow, action, protect }) => {
            if dst == 0 {
                bail!("DST: node 0 is reserved");
            }
            let value = match (action, via) {
                (RouteAction::Local, None) if protect != ProtectMode::None => {
                    bail!("--protect: a local route has no hop to protect; drop --protect")
                }
                (RouteAction::Local, None) => RouteValue::local(RouteOrigin::Cli),
                (RouteAction::Local, Some(_)) => {
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
                        _ if protect != ProtectMode::None => RouteAction::SlowPath,
                        RouteAction::SlowPath => RouteAction::SlowPath,
                        _ => RouteAction::Forward,
                    };
                    let mut v = reconcile::route_to(action, addr, port, node, RouteOrigin::Cli)?;
                    v.flags = protect.route_flags();
                    v
                }
            };
            let sel = RouteSel::new(dst, flow);
            maps.set_route(sel, value)?;
            output::print(&[RouteRow::new(sel, &value)], cli.json)
        }
        MapCmd::Routes(RoutesCmd::Del { dst, flow }) => maps.remove_route(RouteSel::new(dst, flow)),
        MapCmd::Clients => clients(&maps, &pin_dir, cli.json),
        MapCmd::Peers { cmd: None | Some(PeersCmd::List) } => {
            let rows: Vec<PeerRow> =
                maps.peers()?.iter().map(|(a, v)| PeerRow::new(*a, v)).collect();
            output::print(&rows, cli.json)
        }
        MapCmd::Peers { cmd: Some(PeersCmd::Add { addr, node, kind, key, no_auth }) } => {
            if node == 0 {
                bail!("--node: node 0 is reserved");
            }
            let mut v = PeerValue::new(node, kind);
            match key {
                Some((id, secret)) => v.keys[0] = auth::link_keys(&secret, id, me(&maps)?, node),
                None if no_auth => v.flags = peer_flags::NO_AUTH,
                None => bail!(
                    "--key: missing; give the link's key as ID:SECRET (`wecan key generate` makes a secret), or --no-auth for a trusted network"
                ),
            }
            maps.add_peer(addr, v)
        }
        MapCmd::Peers { cmd: Some(PeersCmd::Key { addr, add, send }) } => {
            let Some(mut v) = maps.peer(addr) else {
                bail!(
                    "{addr} is not a peer; add it first (`wecan peers add {addr} --node N --key ID:SECRET`)"
                );
            };
            if v.no_auth() {
                bail!("{addr}: the link is not authenticated; re-add it with --key");
            }
            if add.is_none() && send.is_none() {
                bail!("nothing to do: give --add ID:SECRET and/or --send ID");
            }
            if let Some((id, secret)) = add {
                let spare = 1 - usize::from(v.send & 1);
                if v.keys[usize::from(v.send & 1)].id == id {
                    bail!("--add: key {id} is the one sending; give the new key another ID");
                }
                v.keys[spare] = auth::link_keys(&secret, id, me(&maps)?, v.node_id);
            }
            if let Some(id) = send {
                v.send = match v.keys.iter().position(|k| k.id == id && id != 0) {
                    Some(slot) => slot as u8,
                    None => bail!("--send: {addr} has no key {id}; --add it first"),
                };
            }
            maps.add_peer(addr, v)
        }
        MapCmd::Peers { cmd: Some(PeersCmd::Del { addr }) } => maps.remove_peer(addr),
        MapCmd::Links => {
            let now = probe::now_ns();
            let rows: Vec<LinkRow> =
                maps.links()?.iter().map(|(p, v)| LinkRow::new(*p, v, now)).collect();
            output::print(&rows, cli.json)
        }
        MapCmd::Stats => {
            let rows: Vec<StatRow> =
                maps.stats()?.iter().map(|(s, c)| StatRow::new(*s, c)).collect();
            output::print(&rows, cli.json)
        }
    }
}

/// `wecan clients`: the datapath's attached clients, with the names and counters the
/// gateway published.
fn clients(maps: &Maps, pin_dir: &std::path::Path, json: bool) -> Result<()> {
    let path = Config::gateway_file(pin_dir);
    let report: GatewayReport = match std::fs::read_to_string(&path) {
        Ok(t) => serde_json::from_str(&t)
            .with_context(|| format!("{}: not a gateway report", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => GatewayReport::default(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let known: std::collections::HashMap<u32, &Attached> =
        report.clients.iter().map(|a| (a.addr, a)).collect();
    let now = probe::now_ns();
    let rows: Vec<ClientRow> = maps
        .clients()?
        .iter()
        .map(|c| ClientRow::new(c, known.get(&c.peer.node_id).copied(), now))
        .collect();
    if json {
        let doc = serde_json::json!({ "clients": rows, "counts": report.counts });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    print!("{}", output::table(ClientRow::HEADER, rows.iter().map(Row::cells)));
    let c = &report.counts;
    let refused: Vec<String> = c.refused.iter().map(|(r, n)| format!("{n} {r}")).collect();
    println!(
        "gateway: {} accepted, {} refused ({}), {} timed out, {} token expired, {} replaced",
        c.accepted,
        c.refused.values().sum::<u64>(),
        if refused.is_empty() { "none".into() } else { refused.join(", ") },
        c.timed_out,
        c.token_expired,
        c.replaced
    );
    Ok(())
}

fn protection(pin_dir: &std::path::Path, json: bool) -> Result<()> {
    let path = Config::state_file(pin_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if json {
                println!("{}", serde_json::to_string_pretty(&ProtectionReport::default())?);
            } else {
                println!("no protected links (the agent has not protected any packet yet)");
            }
            return Ok(());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let report: ProtectionReport = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a protection report", path.display()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    print!(
        "{}",
        output::table(
            ProtectionRow::HEADER,
            ProtectionRow::from_report(&report).iter().map(Row::cells)
        )
    );
    let a = &report.auth;
    if *a != Default::default() {
        println!(
            "hop authentication refused by the agent: {} untagged, {} unknown key, {} bad tag, {} replayed; {} not sent (no key for the next hop)",
            a.untagged, a.unknown_key, a.bad_tag, a.replay, a.no_send_key
        );
    }
    let r = report.refused;
    if r != HopRefusals::default() {
        println!(
            "refused hop messages: {} not from a relay, {} from a relay claiming another node, {} NACKs for a link without sending state",
            r.not_relay, r.wrong_source, r.nacks_without_link
        );
    }
    Ok(())
}
