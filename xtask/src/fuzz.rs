//! Bounded fuzz runs for `cargo xtask test`: every target of `fuzz/` (cargo fuzz, libFuzzer,
//! nightly) runs for [`SECONDS`] from a temporary copy of its committed corpus, so inputs a
//! run finds never change the repository. Each target counts as one test in the summary: it
//! passes when libFuzzer exits 0, fails on a crash, a failed assertion, a leak or a timeout
//! (the input is left under `fuzz/artifacts/<target>/`).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, Result};

use crate::{root, summary::Tally};

/// The targets in `fuzz/fuzz_targets/`.
const TARGETS: [&str; 5] =
    ["wire_header", "hop_message", "agent_config", "controller_api", "register_message"];
/// Seconds per target: about a minute and a half for all five, beside the build.
const SECONDS: u32 = 15;
/// Executions per target at most, so a run is bounded even where time is not the limit.
const RUNS: u32 = 10_000_000;
/// Set to 1, lets a machine without cargo-fuzz skip the runs (counted as skipped).
const SKIP_VAR: &str = "WECAN_SKIP_FUZZ";

pub fn run_all() -> Result<Tally> {
    let mut tally = Tally::default();
    let n = TARGETS.len() as u64;
    if !crate::setup::has_cargo_fuzz() {
        if std::env::var(SKIP_VAR).as_deref() == Ok("1") {
            println!("fuzz: SKIPPED {n} targets: cargo-fuzz is not installed and {SKIP_VAR}=1");
            tally.skipped = n;
        } else {
            println!(
                "fuzz: FAILED: cargo-fuzz is not installed; run `cargo xtask setup` (or set \
                 {SKIP_VAR}=1 to skip the fuzz targets)"
            );
            tally.failed = n;
        }
        return Ok(tally);
    }
    let fuzz_dir = root().join("fuzz");
    // One build of all targets first, so its time is not taken from any target's run.
    if let Err(e) = crate::run(&mut fuzz(&fuzz_dir, "build")) {
        println!("fuzz: FAILED: the targets do not build: {e:#}");
        tally.failed = n;
        return Ok(tally);
    }
    for target in TARGETS {
        match run_one(&fuzz_dir, target) {
            Ok(summary) => {
                println!("fuzz {target}: ok ({summary})");
                tally.passed += 1;
            }
            Err(e) => {
                println!("fuzz {target}: FAILED: {e:#}");
                tally.failed += 1;
            }
        }
    }
    Ok(tally)
}

/// `cargo +nightly fuzz SUBCOMMAND` with debug assertions, so overflows panic as in tests;
/// `build` and `run` must agree on the flags or `run` rebuilds.
fn fuzz(fuzz_dir: &Path, subcommand: &str) -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(fuzz_dir).args(["+nightly", "fuzz", subcommand, "--debug-assertions"]);
    c
}

fn run_one(fuzz_dir: &Path, target: &str) -> Result<String> {
    let corpus = scratch_corpus(&fuzz_dir.join("corpus").join(target), target)?;
    let started = Instant::now();
    let out = fuzz(fuzz_dir, "run")
        .arg(target)
        .arg(&corpus)
        .arg("--")
        .arg(format!("-max_total_time={SECONDS}"))
        .arg(format!("-runs={RUNS}"))
        // An input taking this long is a hang: reported like a crash.
        .arg("-timeout=10")
        .output()
        .with_context(|| format!("running cargo fuzz run {target}"))?;
    let _ = std::fs::remove_dir_all(&corpus);
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        // libFuzzer's report (the panic, the input's path) is at the end of its output.
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        anyhow::bail!("{}\n{}", out.status, tail.join("\n"));
    }
    // libFuzzer's last line: "Done 123456 runs in 15 second(s)".
    let done = log.lines().rev().find(|l| l.starts_with("Done ")).unwrap_or("done");
    Ok(format!("{}; {:.1} s", done.trim_start_matches("Done "), started.elapsed().as_secs_f64()))
}

/// A copy of the committed corpus in a fresh temporary directory, where libFuzzer may add.
fn scratch_corpus(committed: &Path, target: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("wecan-fuzz-{}-{target}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for entry in std::fs::read_dir(committed)
        .with_context(|| format!("reading the corpus {}", committed.display()))?
    {
        let path = entry?.path();
        if path.is_file() {
            std::fs::copy(&path, dir.join(path.file_name().expect("file name")))?;
        }
    }
    Ok(dir)
}
