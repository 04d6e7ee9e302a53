//! wecan-client: send and receive relay packets (used by the demo and the tests).
//!
//! ```text
//! wecan-client send --to ADDR:PORT --src-node A --dst-node B [--flow F] [--count N] [--rate PPS] [--size BYTES] [--reliable]
//! wecan-client recv --bind ADDR:PORT --count N [--timeout SECS] [--json]
//! ```

use std::{
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use wecan_client::{self as client, Receiver, SendSpec};
use wecan_common::wire::{DEFAULT_HOP_LIMIT, HEADER_LEN, flags};
use wecan_os::{netns, sockopt};

#[derive(Parser)]
#[command(version, about = "Send and receive wecan relay packets")]
struct Cli {
    /// Run inside this network namespace.
    #[arg(long, global = true)]
    netns: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send data packets to a relay.
    Send {
        /// The first relay (edge), ADDR:PORT.
        #[arg(long)]
        to: SocketAddr,
        /// Local address to send from (default: any, ephemeral port).
        #[arg(long)]
        bind: Option<SocketAddr>,
        #[arg(long)]
        src_node: u32,
        #[arg(long)]
        dst_node: u32,
        #[arg(long, default_value_t = 1)]
        flow: u32,
        #[arg(long, default_value_t = 0)]
        first_seq: u32,
        #[arg(long, default_value_t = 1000)]
        count: u32,
        /// Packets per second (0: unpaced).
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

fn main() {
    if let Err(e) = real_main() {
        eprintln!("wecan-client: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(ns) = &cli.netns {
        netns::enter(ns)?;
    }
    match cli.cmd {
        Cmd::Send {
            to,
            bind,
            src_node,
            dst_node,
            flow,
            first_seq,
            count,
            rate,
            size,
            hop_limit,
            reliable,
        } => {
            if !(HEADER_LEN..=65_000).contains(&size) {
                bail!(
                    "--size: {size} bytes; must be between {HEADER_LEN} (the relay header) and 65000"
                );
            }
            let local = bind.unwrap_or_else(|| {
                if to.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() }
            });
            let sock = UdpSocket::bind(local).with_context(|| format!("--bind {local}"))?;
            let spec = SendSpec {
                to,
                src_node,
                dst_node,
                flow,
                first_seq,
                count,
                rate,
                size,
                hop_limit,
                flags: if reliable { flags::RELIABLE } else { 0 },
            };
            let sent = client::send(&sock, &spec)?;
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
