//! wecan-agent: loads the relay XDP program, keeps its maps in line with the config and
//! runs the slow path.
//!
//! - `run`: load, attach, fill maps, probe peers, talk to the controller, serve the slow
//!   path until SIGINT or SIGTERM, then detach and remove the pins. A `run` started for
//!   the same pins takes over from a running one (socket and state included, see
//!   `wecan_agent::handover`), which then exits: an upgrade loses no packet. SIGUSR2 (or
//!   `--keep-attached`) exits leaving program, maps and links pinned for a later `run`.
//! - `load`: load, attach, fill maps, pin, exit (the program stays attached).
//! - `unload`: detach from an interface; the last one removes the pinned maps.

use std::{
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use log::warn;
use wecan_agent::{
    agent::{Agent, Exit},
    config::{Config, DEFAULT_PIN_DIR},
    reconcile::{self, RouteTable},
    upstream::Upstream,
};
use wecan_datapath::relay::{self, Relay};
use wecan_os::netns;

#[derive(Parser)]
#[command(version, about = "wecan relay agent")]
struct Cli {
    /// Run inside this network namespace (`ip netns add NAME`), like `ip -n`.
    #[arg(long, global = true)]
    netns: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Attach the relay and run the agent in the foreground.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// Seconds between counter log lines (0: never).
        #[arg(long, default_value_t = 10)]
        stats_interval: u64,
        /// On exit, leave the program attached and the maps pinned.
        #[arg(long)]
        keep_attached: bool,
    },
    /// Attach the relay, fill its maps from the config, and exit; it stays attached.
    Load {
        #[arg(long)]
        config: PathBuf,
        /// Interfaces to attach to (default: `interfaces` from the config).
        #[arg(long = "iface")]
        ifaces: Vec<String>,
    },
    /// Detach the relay from interfaces; detaching the last one removes the pinned maps.
    Unload {
        #[arg(long = "iface", required = true)]
        ifaces: Vec<String>,
        /// Pin directory of the relay instance.
        #[arg(long, default_value = DEFAULT_PIN_DIR, conflicts_with = "config")]
        pin_dir: PathBuf,
        /// Take the pin directory from this config instead.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

static STOP: AtomicBool = AtomicBool::new(false);
/// Set by SIGUSR2: exit leaving the relay attached, for a new agent to take over.
static UPGRADE: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

extern "C" fn on_upgrade(_: libc::c_int) {
    UPGRADE.store(true, Ordering::Relaxed);
    STOP.store(true, Ordering::Relaxed);
}

fn main() {
    // Milliseconds: failovers and handovers happen within them.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    if let Err(e) = real_main() {
        eprintln!("wecan-agent: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    let enter_netns = || cli.netns.as_deref().map_or(Ok(()), netns::enter);
    match cli.cmd {
        Cmd::Run { config, stats_interval, keep_attached } => {
            let cfg = Config::load(&config)?;
            if cfg.interfaces.is_empty() {
                bail!(
                    "config {}: interfaces: empty; list the interfaces to attach to",
                    config.display()
                );
            }
            // The controller is reached from the namespace the agent starts in (the
            // management network); only the datapath work moves into --netns.
            let upstream = match (&cfg.controller, &cfg.controller_ca, &cfg.controller_token_file) {
                (Some(url), Some(ca), Some(token)) => Some(
                    Upstream::spawn(url, cfg.node_id, ca, token)
                        .with_context(|| format!("config {}", config.display()))?,
                ),
                // Config::load refuses a controller without both files.
                _ => None,
            };
            enter_netns()?;
            run(cfg, upstream, stats_interval, keep_attached)
        }
        Cmd::Load { config, ifaces } => {
            enter_netns()?;
            let cfg = Config::load(&config)?;
            let ifaces = if ifaces.is_empty() { cfg.interfaces.clone() } else { ifaces };
            if ifaces.is_empty() {
                bail!("no interface: pass --iface or set `interfaces` in {}", config.display());
            }
            let mut relay = Relay::load(&cfg.pin_dir)?;
            reconcile::apply_config(&mut relay.maps, &cfg, &RouteTable::new(&cfg))?;
            for i in &ifaces {
                relay.attach(i)?;
            }
            println!("attached to {}; pinned under {}", ifaces.join(", "), cfg.pin_dir.display());
            Ok(())
        }
        Cmd::Unload { ifaces, pin_dir, config } => {
            enter_netns()?;
            let pin_dir = match config {
                Some(c) => Config::load(&c)?.pin_dir,
                None => pin_dir,
            };
            for i in &ifaces {
                if !relay::detach(&pin_dir, i)? {
                    warn!("{i}: no relay attached under {}", pin_dir.display());
                }
            }
            Ok(())
        }
    }
}

fn run(
    cfg: Config,
    upstream: Option<Upstream>,
    stats_interval: u64,
    keep_attached: bool,
) -> Result<()> {
    // SAFETY: the handlers only store to atomics.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGUSR2, on_upgrade as *const () as libc::sighandler_t);
    }
    let mut agent = Agent::start(cfg, upstream)?;
    // Tests and the demo wait for this line on stdout.
    println!("ready");
    let result = agent.run(&STOP, Duration::from_secs(stats_interval));
    agent.shutdown(match result {
        Ok(true) => Exit::ToOtherAgent,
        _ if keep_attached || UPGRADE.load(Ordering::Relaxed) => Exit::KeepAttached,
        _ => Exit::Detach,
    });
    result.map(drop)
}
