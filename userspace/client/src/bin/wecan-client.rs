//! wecan-client: send and receive relay packets (used by the demo and the tests).
//!
//! ```text
//! wecan-client [--key ID:SECRET --node ME --edge-node EDGE] send --to ADDR:PORT --dst-node B [--flow F] [--flows N] [--count N] [--rate PPS] [--size BYTES] [--reliable | --reliable-flows N]
//! wecan-client [--key ID:SECRET --node ME --edge-node EDGE] recv --bind ADDR:PORT --count N [--timeout SECS] [--json]
//! wecan-client --creds FILE --name NAME --edge-node EDGE attach --to ADDR:PORT [--json]
//! wecan-client --creds FILE --name NAME --edge-node EDGE send --to ADDR:PORT --dst-node B …
//! ```
//! With `--key`, packets to the edge are sealed and packets from it verified with the key
//! the edge's config lists for this client; with `--creds`, the client first registers with
//! the edge's access gateway, which gives it its overlay address (the source node of what
//! it sends) and the link's keys; without either the link must be `auth = "none"`.

use std::{
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    path::PathBuf,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use wecan_access::Creds;
use wecan_client::{self as client, EdgeLink, Receiver, SendSpec, schedule};
use wecan_common::wire::{DEFAULT_HOP_LIMIT, HEADER_LEN};
use wecan_os::{netns, sockopt};

#[derive(Parser)]
#[command(version, about = "Send and receive wecan relay packets")]
struct Cli {
    /// Run inside this network namespace.
    #[arg(long, global = true)]
    netns: Option<String>,
    /// The key of the link to the edge relay, ID:SECRET (SECRET: 64 hex digits).
    #[arg(long, global = true, requires_all = ["node", "edge_node"])]
    key: Option<String>,
    /// This client's node ID (for the key; `send` takes it as the source node too).
    #[arg(long, global = true)]
    node: Option<u32>,
    /// Node ID of the edge relay this client is attached to.
    #[arg(long, global = true)]
    edge_node: Option<u32>,
    /// Credentials file (`wecan token issue`): register with the edge's gateway first.
    #[arg(long, global = true, conflicts_with = "key", requires = "name")]
    creds: Option<PathBuf>,
    /// The controller whose scheduler picks candidate edges (`attach` without `--to`); it is
    /// asked from the namespace this tool starts in, before it enters --netns.
    #[arg(long, global = true, requires = "ca")]
    controller: Option<String>,
    /// PEM file of the CA the controller's certificate must chain to.
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    /// A region to prefer among equal edges.
    #[arg(long, global = true)]
    region: Option<String>,
    /// The name to register under (the one the token carries).
    #[arg(long, global = true)]
    name: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

/// The link to the edge as the command line describes it.
fn edge_link(cli: &Cli) -> Result<EdgeLink> {
    let (Some(key), Some(me), Some(edge)) = (&cli.key, cli.node, cli.edge_node) else {
        return Ok(EdgeLink::unauthenticated());
    };
    let Some((id, secret)) = key.split_once(':') else {
        bail!("--key: expected ID:SECRET, e.g. 1:<64 hex digits>");
    };
    let id: u8 = match id.parse() {
        Ok(id) if id != 0 => id,
        _ => bail!("--key: key ID {id:?}; use 1..=255"),
    };
    let secret = secret.parse().map_err(|e| anyhow::anyhow!("--key: {e}"))?;
    Ok(EdgeLink::keyed(me, edge, id, &secret))
}

/// The credentials file the command line names, read.
fn read_creds(cli: &Cli) -> Result<Option<Creds>> {
    let Some(path) = &cli.creds else { return Ok(None) };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--creds: cannot read {}", path.display()))?;
    let creds =
        Creds::parse(&text).map_err(|e| anyhow::anyhow!("--creds {}: {e}", path.display()))?;
    Ok(Some(creds))
}

/// Registers with the edge at `to` if the command line gives credentials.
fn attach_if_asked(
    cli: &Cli,
    sock: &UdpSocket,
    to: SocketAddr,
) -> Result<Option<client::Attachment>> {
    let (Some(creds), Some(name)) = (read_creds(cli)?, &cli.name) else {
        return Ok(None);
    };
    let Some(edge) = cli.edge_node else {
        bail!("--edge-node: missing; give the node ID of the edge at {to}");
    };
    Ok(Some(client::attach(sock, to, edge, &creds, name, ATTACH_TRIES)?))
}

/// Registrations sent before giving up on a silent edge.
const ATTACH_TRIES: u32 = 5;
/// Probes sent to each candidate edge; the best RTT counts.
const PROBE_ROUNDS: u32 = 3;

#[derive(Subcommand)]
enum Cmd {
    /// Register with an edge's access gateway (needs --creds and --name) and print the
    /// overlay address it gave: the edge at --to (with --edge-node), or the nearest of the
    /// best candidates the controller's scheduler offers (with --controller and --ca).
    Attach {
        /// The edge relay, ADDR:PORT (with --edge-node).
        #[arg(long)]
        to: Option<SocketAddr>,
        #[arg(short, long)]
        json: bool,
    },
    /// Send data packets to a relay.
    Send {
        /// The first relay (edge), ADDR:PORT; without it, the edge the scheduler offers
        /// (--controller, --ca, --creds), moving to the next candidate if it goes silent.
        #[arg(long)]
        to: Option<SocketAddr>,
        /// Roaming: milliseconds between keepalives to the edge.
        #[arg(long, default_value_t = 100)]
        keepalive_ms: u64,
        /// Roaming: an edge silent this long is given up for the next candidate.
        #[arg(long, default_value_t = 500)]
        dead_after_ms: u64,
        /// Local address to send from (default: any, ephemeral port).
        #[arg(long)]
        bind: Option<SocketAddr>,
        /// Source node of the packets (default: --node).
        #[arg(long)]
        src_node: Option<u32>,
        #[arg(long)]
        dst_node: u32,
        #[arg(long, default_value_t = 1)]
        flow: u32,
        /// Send flows F .. F+N in turn, flow F+k numbered from first-seq + k × count.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        flows: u32,
        #[arg(long, default_value_t = 0)]
        first_seq: u32,
        /// Packets per flow.
        #[arg(long, default_value_t = 1000)]
        count: u32,
        /// Packets per second, all flows together (0: unpaced).
        #[arg(long, default_value_t = 10_000)]
        rate: u32,
        /// Datagram size in bytes, relay header included.
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long, default_value_t = DEFAULT_HOP_LIMIT)]
        hop_limit: u8,
        /// Ask for reliable, in-order delivery (relays protecting a hop with ARQ retry until
        /// delivered instead of giving up at a deadline).
        #[arg(long)]
        reliable: bool,
        /// Only the last N flows ask for reliable delivery, the others for deadline delivery.
        #[arg(long, conflicts_with = "reliable")]
        reliable_flows: Option<u32>,
    },
    /// Receive and verify data packets; prints a report.
    Recv {
        #[arg(long)]
        bind: SocketAddr,
        /// Number of packets expected (sequence numbers first-seq .. first-seq+count).
        #[arg(long)]
        count: u32,
        #[arg(long, default_value_t = 0)]
        first_seq: u32,
        /// Give up after this many seconds in total.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
        /// Stop after this many seconds without a packet.
        #[arg(long, default_value_t = 3.0)]
        idle: f64,
        /// Socket receive buffer in bytes: large, so a receiver descheduled for a moment
        /// on a busy machine loses nothing.
        #[arg(long, default_value_t = 8 << 20)]
        rcvbuf: usize,
        #[arg(short, long)]
        json: bool,
    },
}

/// Any local port of `to`'s address family.
fn any_port(to: SocketAddr) -> SocketAddr {
    if to.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    }
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("wecan-client: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    // The scheduler is asked over the management network, before --netns.
    let scheduled = matches!(cli.cmd, Cmd::Attach { to: None, .. } | Cmd::Send { to: None, .. });
    let offered = match (scheduled, &cli.controller, &cli.ca) {
        (true, Some(url), Some(ca)) => {
            let creds = read_creds(&cli)?.context("--creds: missing; the scheduler needs them")?;
            Some(schedule::select(url, ca, &creds, cli.region.as_deref())?)
        }
        (true, _, _) => {
            bail!(
                "--to: missing; give the edge with --to (and --edge-node), or --controller and --ca"
            )
        }
        (false, ..) => None,
    };
    if let Some(ns) = &cli.netns {
        netns::enter(ns)?;
    }
    let mut link = edge_link(&cli)?;
    match cli.cmd {
        Cmd::Attach { to, json } => {
            let (a, probed) = match (to, offered) {
                (Some(to), _) => {
                    let sock = UdpSocket::bind(any_port(to)).context("binding a local port")?;
                    let a = attach_if_asked(&cli, &sock, to)?
                        .context("--creds: missing; attach registers with a credentials file")?;
                    (a, Vec::new())
                }
                (None, Some(offered)) => {
                    let creds = read_creds(&cli)?.context("--creds")?;
                    let name = cli.name.as_deref().context("--name")?;
                    let first = offered.iter().find_map(|c| c.addrs.first()).copied();
                    let first = first.context("the scheduler offered edges without addresses")?;
                    let sock = UdpSocket::bind(any_port(first)).context("binding a local port")?;
                    let probed = schedule::probe(&sock, &offered, PROBE_ROUNDS)?;
                    let (a, _) =
                        schedule::attach_first(&sock, &probed, &creds, name, ATTACH_TRIES)?;
                    (a, probed)
                }
                (None, None) => {
                    bail!("attach: give --to and --edge-node, or --controller and --ca")
                }
            };
            let doc = serde_json::json!({
                "addr": a.addr,
                "edge_node": a.edge_node,
                "edge_name": a.edge_name,
                "keepalive_ms": a.keepalive.as_millis() as u64,
                "timeout_ms": a.timeout.as_millis() as u64,
                "took_us": a.took.as_micros() as u64,
                "candidates": probed,
            });
            if json {
                println!("{doc}");
            } else {
                println!("attached as {:#010x} at edge {} ({})", a.addr, a.edge_node, a.edge_name);
            }
            Ok(())
        }
        Cmd::Send {
            to,
            keepalive_ms,
            dead_after_ms,
            bind,
            src_node,
            dst_node,
            flow,
            flows,
            first_seq,
            count,
            rate,
            size,
            hop_limit,
            reliable,
            reliable_flows,
        } => {
            if !(HEADER_LEN..=65_000).contains(&size) {
                bail!(
                    "--size: {size} bytes; must be between {HEADER_LEN} (the relay header) and 65000"
                );
            }
            let mut spec = SendSpec {
                to: SocketAddr::from(([0, 0, 0, 0], 0)),
                src_node: 0,
                dst_node,
                flow,
                first_seq,
                count,
                flows,
                rate,
                size,
                hop_limit,
                flags: 0,
                reliable_flows: if reliable { flows } else { reliable_flows.unwrap_or(0) },
            };
            let Some(to) = to else {
                let offered = offered.context("the scheduler's candidates")?;
                let first = offered.iter().find_map(|c| c.addrs.first()).copied();
                let first = first.context("the scheduler offered edges without addresses")?;
                let sock = UdpSocket::bind(bind.unwrap_or_else(|| any_port(first)))
                    .context("binding a local port")?;
                let creds = read_creds(&cli)?.context("--creds")?;
                let name = cli.name.as_deref().context("--name")?;
                let probed = schedule::probe(&sock, &offered, PROBE_ROUNDS)?;
                let mut roaming = schedule::Roaming::attach(
                    &sock,
                    probed,
                    creds,
                    name,
                    Duration::from_millis(keepalive_ms.max(1)),
                    Duration::from_millis(dead_after_ms.max(1)),
                )?;
                println!("attached {} at edge {}", roaming.attachment.addr, roaming.edge().node);
                let sent = client::send(&sock, &spec, &mut roaming)?;
                println!("sent {sent}");
                println!("moves {}", serde_json::to_string(&roaming.moves)?);
                return Ok(());
            };
            let local = bind.unwrap_or_else(|| any_port(to));
            let sock = UdpSocket::bind(local).with_context(|| format!("--bind {local}"))?;
            let attached = attach_if_asked(&cli, &sock, to)?;
            if let Some(a) = &attached {
                // Tests read the address from this line.
                println!("attached {}", a.addr);
            }
            let Some(src_node) = src_node.or(attached.as_ref().map(|a| a.addr)).or(cli.node) else {
                bail!(
                    "--src-node: missing; give the source node (or --node, or --creds to attach)"
                );
            };
            if let Some(a) = attached {
                link = a.link;
            }
            spec.to = to;
            spec.src_node = src_node;
            let sent = client::send(&sock, &spec, &mut link)?;
            println!("sent {sent}");
            Ok(())
        }
        Cmd::Recv { bind, count, first_seq, timeout, idle, rcvbuf, json } => {
            let sock = UdpSocket::bind(bind).with_context(|| format!("--bind {bind}"))?;
            sockopt::grow_rcvbuf(sock.as_raw_fd(), rcvbuf).context("--rcvbuf")?;
            // Tests and the demo start senders after this line.
            println!("listening {bind}");
            let report = client::receive(
                &sock,
                Receiver::new(first_seq, count),
                &link,
                Duration::from_secs_f64(idle),
                Duration::from_secs_f64(timeout),
            )?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("{report:?}");
            }
            Ok(())
        }
    }
}
