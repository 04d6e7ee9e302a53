//! `cargo xtask`: the build-and-load workflow.
//!
//! ```text
//! cargo xtask setup                     install what a fresh machine lacks
//! cargo xtask build                     build kernel and user sides
//! cargo xtask load --iface IF --config F [--netns NS]
//! cargo xtask unload --iface IF [--config F | --pin-dir D] [--netns NS]
//! cargo xtask demo [--duration SECS]    a relay network in namespaces, live counters
//! cargo xtask bench [--json]            benchmarks; writes BENCHMARKS.md
//! cargo xtask test                      lint + every test (as root) + bounded fuzz runs
//! cargo xtask fuzz                      the bounded fuzz runs alone
//! ```
//! Every command runs `setup` implicitly; it only acts on what is missing.

mod fuzz;
mod setup;
mod summary;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use summary::Tally;

#[derive(Parser)]
#[command(about = "wecan build, load, demo, bench and test workflow")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install missing prerequisites: rust-src for nightly, bpf-linker built against
    /// nightly's LLVM, cargo-fuzz, and the Debian packages the tests and demo use.
    Setup,
    /// Build the XDP programs and all binaries (release).
    Build,
    /// Attach the relay to a NIC with a config (stays attached after exit).
    Load {
        #[arg(long = "iface", required = true)]
        ifaces: Vec<String>,
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        netns: Option<String>,
    },
    /// Detach the relay from a NIC.
    Unload {
        #[arg(long = "iface", required = true)]
        ifaces: Vec<String>,
        #[arg(long, conflicts_with = "pin_dir")]
        config: Option<PathBuf>,
        #[arg(long)]
        pin_dir: Option<PathBuf>,
        #[arg(long)]
        netns: Option<String>,
    },
    /// Run the demo network until Ctrl-C or --duration.
    Demo {
        /// Seconds to run (default: until Ctrl-C).
        #[arg(long)]
        duration: Option<u64>,
    },
    /// Run the benchmarks and write BENCHMARKS.md.
    Bench {
        /// Print the figures as one JSON object on the last line of stdout.
        #[arg(long)]
        json: bool,
    },
    /// Format check, clippy, then every unit, TestRun, netns and integration test, then each
    /// fuzz target for a bounded time.
    Test,
    /// Each fuzz target for a bounded time, as at the end of `test`.
    Fuzz,
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    setup::ensure()?;
    match cli.cmd {
        Cmd::Setup => Ok(()),
        Cmd::Build => build(),
        Cmd::Load { ifaces, config, netns } => {
            build()?;
            let mut args = netns_args(&netns);
            args.extend(["load".into(), "--config".into(), path_arg(&config)?]);
            for i in ifaces {
                args.extend(["--iface".into(), i]);
            }
            run_bin("wecan-agent", &args)
        }
        Cmd::Unload { ifaces, config, pin_dir, netns } => {
            build()?;
            let mut args = netns_args(&netns);
            args.push("unload".into());
            if let Some(c) = config {
                args.extend(["--config".into(), path_arg(&c)?]);
            }
            if let Some(p) = pin_dir {
                args.extend(["--pin-dir".into(), path_arg(&p)?]);
            }
            for i in ifaces {
                args.extend(["--iface".into(), i]);
            }
            run_bin("wecan-agent", &args)
        }
        Cmd::Demo { duration } => {
            build()?;
            let mut args = vec!["demo".to_string()];
            if let Some(d) = duration {
                args.extend(["--duration".into(), d.to_string()]);
            }
            run_bin("wecan-lab", &args)
        }
        Cmd::Bench { json } => {
            build()?;
            let mut args = vec![
                "bench".to_string(),
                "--write".into(),
                root().join("BENCHMARKS.md").to_string_lossy().into_owned(),
            ];
            if json {
                args.push("--json".into());
            }
            run_bin("wecan-lab", &args)
        }
        Cmd::Test => test(),
        Cmd::Fuzz => finish(&fuzz::run_all()?, true),
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn netns_args(netns: &Option<String>) -> Vec<String> {
    netns.iter().flat_map(|n| ["--netns".to_string(), n.clone()]).collect()
}

/// Absolute path (the binaries run from the workspace root).
fn path_arg(p: &Path) -> Result<String> {
    let abs = std::path::absolute(p).with_context(|| format!("{}", p.display()))?;
    Ok(abs.to_string_lossy().into_owned())
}

/// Runs a command to completion, failing if it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn build() -> Result<()> {
    run(cargo().args(["build", "--release", "--bins"]))
}

fn run_bin(name: &str, args: &[String]) -> Result<()> {
    run(Command::new(root().join("target/release").join(name)).args(args).current_dir(root()))
}

fn test() -> Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args(["clippy", "--release", "--all-targets", "--", "-D", "warnings"]))?;
    build()?;
    // Privileged tests record their skips here (libtest counts them as passed).
    let skip_log = std::env::temp_dir().join(format!("wecan-skips-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&skip_log);
    // cargo prints one result line per test binary; add them up into one closing line.
    let mut child = cargo()
        .args(["test", "--release", "--no-fail-fast"])
        .env(summary::SKIP_LOG_VAR, &skip_log)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let mut tally = Tally::default();
    for line in
        std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().expect("piped")))
    {
        let line = line?;
        println!("{line}");
        tally.add_libtest_line(&line);
    }
    let status = child.wait()?;
    let skips = summary::read_skips(&skip_log);
    let _ = std::fs::remove_file(&skip_log);
    let skips = skips?;
    tally.add_skips(&skips)?;
    if !skips.is_empty() {
        println!("skipped privileged tests ({}):", skips.len());
        for s in &skips {
            println!("  {s}");
        }
    }
    tally.add(fuzz::run_all()?);
    let opted_out = std::env::var(summary::SKIP_VAR).as_deref() == Ok("1");
    let verdict = finish(&tally, status.success());
    summary::check_skips(&skips, opted_out)?;
    verdict
}

/// Prints the closing line CI reads; an error when anything failed (`ok`: the test
/// runner's exit).
fn finish(tally: &Tally, ok: bool) -> Result<()> {
    println!("{}", tally.line());
    if !ok || tally.failed > 0 {
        bail!("tests failed");
    }
    Ok(())
}
