//! Prerequisites of a fresh machine, installed only when missing:
//!
//! - `rust-src` for the nightly toolchain (`-Z build-std=core` for the bpfel target);
//! - `bpf-linker`, built against nightly's own LLVM (the same major version, the same
//!   shared library), so the linker reads what rustc writes;
//! - Debian packages: iproute2 (`ip`), ethtool, procps (`sysctl`);
//! - `cargo-fuzz`, pinned, for the bounded fuzz runs of `cargo xtask test` (run with nightly).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, anyhow, bail};

use crate::run;

const NIGHTLY: &str = "nightly";
/// The cargo-fuzz release installed: it builds with the stable toolchain (1.95) and drives
/// nightly's libFuzzer and sanitizers.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

pub fn ensure() -> Result<()> {
    ensure_debian_packages()?;
    ensure_rust_src()?;
    ensure_bpf_linker()?;
    ensure_cargo_fuzz()
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn has(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn ensure_debian_packages() -> Result<()> {
    let missing: Vec<&str> = [("ip", "iproute2"), ("ethtool", "ethtool"), ("sysctl", "procps")]
        .into_iter()
        .filter(|(bin, _)| !has(bin))
        .map(|(_, pkg)| pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("setup: installing Debian packages {}", missing.join(" "));
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn ensure_rust_src() -> Result<()> {
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        NIGHTLY,
    ]))
    .context(
        "a nightly toolchain is required for the eBPF build (`rustup toolchain install nightly`)",
    )?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    eprintln!("setup: adding rust-src to the nightly toolchain");
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))
}

/// Nightly's LLVM: (major version, path of its shared library).
fn nightly_llvm() -> Result<(String, PathBuf)> {
    let vv = output(Command::new("rustc").args([&format!("+{NIGHTLY}"), "-vV"]))?;
    let version = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .ok_or_else(|| anyhow!("`rustc +nightly -vV` shows no LLVM version"))?;
    let major = version.split('.').next().unwrap_or_default().to_owned();
    let sysroot =
        output(Command::new("rustc").args([&format!("+{NIGHTLY}"), "--print", "sysroot"]))?;
    let lib_dir = Path::new(sysroot.trim()).join("lib");
    let lib = std::fs::read_dir(&lib_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("libLLVM.so.{major}")))
        })
        .ok_or_else(|| anyhow!("no libLLVM.so.{major}* in {}", lib_dir.display()))?;
    Ok((major, lib))
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

/// bpf-linker loads nightly's libLLVM at run time through this directory, so it must
/// outlive the install: it lives beside the installed binary, not in a temp dir.
fn ensure_bpf_linker() -> Result<()> {
    let (major, lib) = nightly_llvm()?;
    let prefix = cargo_home().join("wecan-llvm-prefix");
    let stamp = prefix.join("stamp");
    let want = lib.display().to_string();
    let works =
        Command::new("bpf-linker").arg("--version").output().is_ok_and(|o| o.status.success());
    if works && std::fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
        return Ok(());
    }
    eprintln!(
        "setup: building bpf-linker against nightly's LLVM {major} ({want}); this takes a minute or two"
    );
    let lib_dir = prefix.join("lib");
    std::fs::create_dir_all(&lib_dir)?;
    let file_name = lib.file_name().expect("file name");
    for link in [lib_dir.join("libLLVM.so"), lib_dir.join(file_name)] {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&lib, &link)
            .with_context(|| format!("symlink {}", link.display()))?;
    }
    run(Command::new("cargo")
        .args(["install", "--force", "bpf-linker@^0.13", "--no-default-features", "--features"])
        .arg(format!("llvm-{major}"))
        .env("LLVM_PREFIX", &prefix))?;
    std::fs::write(&stamp, want)?;
    Ok(())
}

/// `cargo fuzz` works (any version).
pub fn has_cargo_fuzz() -> bool {
    cargo_fuzz_version().is_some()
}

/// What `cargo fuzz --version` prints, e.g. "cargo-fuzz 0.13.2".
fn cargo_fuzz_version() -> Option<String> {
    let out = Command::new("cargo").args(["fuzz", "--version"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn ensure_cargo_fuzz() -> Result<()> {
    let want = format!("cargo-fuzz {CARGO_FUZZ_VERSION}");
    if cargo_fuzz_version().is_some_and(|v| v == want) {
        return Ok(());
    }
    eprintln!("setup: installing {want}");
    run(Command::new("cargo").args([
        "install",
        "--locked",
        "--force",
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
    ]))
}
