//! wecan-lab: the demo network and the benchmarks, on this one machine.
//!
//! `cargo xtask demo` and `cargo xtask bench` run this after building everything.

use std::{
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::Result;
use clap::{Parser, Subcommand};

mod bench;
mod demo;
mod fec_codec;
mod handoff;
mod probe_load;
mod protection;
mod routing_scale;

#[derive(Parser)]
#[command(about = "wecan demo network and benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Relays in namespaces, agents, traffic through XDP, live counters.
    Demo {
        /// Seconds to run (default: until Ctrl-C).
        #[arg(long)]
        duration: Option<u64>,
    },
    /// Per-packet cost and forwarding-rate benchmarks.
    Bench {
        /// Print the figures as one JSON object on the last line of stdout.
        #[arg(long)]
        json: bool,
        /// Write the results (with the command that produced them) to this file.
        #[arg(long)]
        write: Option<PathBuf>,
    },
}

/// Set by SIGINT/SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn stopped() -> bool {
    STOP.load(Ordering::Relaxed)
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let result: Result<()> = match Cli::parse().cmd {
        Cmd::Demo { duration } => demo::run(duration),
        Cmd::Bench { json, write } => bench::run(json, write),
    };
    if let Err(e) = result {
        eprintln!("wecan-lab: {e:#}");
        std::process::exit(1);
    }
}
