//! Crates by role: what an application developer links and what an operator who runs only a
//! controller builds need stable Rust alone: no nightly, no rust-src, no bpf-linker, no aya.
//! Only `wecan-datapath` (and the agent and test bed above it) builds the XDP object.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// Crates that must build without the eBPF toolchain.
const STABLE_ONLY: [&str; 7] = [
    "wecan-common",
    "wecan-os",
    "wecan-transport",
    "wecan-access",
    "wecan-api",
    "wecan-controller",
    "wecan-client",
];

/// Crates that need the eBPF toolchain: none of them may appear under a stable-only crate.
const EBPF: [&str; 4] = ["aya", "aya-build", "aya-ebpf", "wecan-datapath"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn output(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn stable_only_crates_do_not_depend_on_the_ebpf_toolchain() {
    for krate in STABLE_ONLY {
        // Normal and build dependencies, with the features a build of this crate alone enables.
        let tree = output(
            Command::new(env!("CARGO"))
                .current_dir(root())
                .args(["tree", "--locked", "--offline", "-p", krate, "-e", "normal,build"])
                .args(["--prefix", "none", "--format", "{p}"]),
        );
        let names: Vec<&str> = tree.lines().filter_map(|l| l.split_whitespace().next()).collect();
        assert!(names.contains(&krate), "cargo tree of {krate} does not list it:\n{tree}");
        for bad in EBPF {
            assert!(!names.contains(&bad), "{krate} depends on {bad}:\n{tree}");
        }
    }
}

/// Builds the stable-only crates with the stable toolchain's own cargo and rustc, on a PATH
/// without `~/.cargo/bin` (so without bpf-linker and rustup's nightly), into a target
/// directory of their own: what a laptop with only stable Rust does.
#[test]
fn stable_only_crates_build_with_stable_rust_alone() {
    let sysroot = output(Command::new("rustc").args(["+stable", "--print", "sysroot"]));
    let bin = Path::new(sysroot.trim()).join("bin");
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let cargo_home = std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{home}/.cargo"));
    let env = |cmd: &mut Command| {
        cmd.env_clear()
            .env("PATH", &path)
            .env("HOME", &home)
            .env("CARGO_HOME", &cargo_home)
            .env("RUSTC", bin.join("rustc"))
            .current_dir(root());
    };
    let mut which = Command::new("sh");
    which.args(["-c", "command -v bpf-linker; command -v rustup"]);
    env(&mut which);
    let found = which.output().expect("sh");
    assert!(
        found.stdout.is_empty(),
        "the build environment still finds {}",
        String::from_utf8_lossy(&found.stdout)
    );
    let version = {
        let mut c = Command::new(bin.join("rustc"));
        c.arg("-V");
        env(&mut c);
        output(&mut c)
    };
    assert!(!version.contains("nightly"), "not a stable toolchain: {version}");

    let target = root().join("target/stable-only");
    let mut build = Command::new(bin.join("cargo"));
    build.args(["build", "--locked", "--offline", "--target-dir"]).arg(&target);
    for krate in STABLE_ONLY {
        build.args(["-p", krate]);
    }
    env(&mut build);
    output(&mut build);
    for built in ["wecan-controller", "wecan-client"] {
        let exe = target.join("debug").join(built);
        assert!(exe.is_file(), "{} was not built", exe.display());
    }
}
