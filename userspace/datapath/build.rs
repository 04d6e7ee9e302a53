//! Builds the XDP programs (`xdp-prog/`, nightly, bpfel target) and leaves the objects in
//! OUT_DIR, where `src/lib.rs` embeds them.
use std::path::Path;

fn main() -> anyhow::Result<()> {
    if which("bpf-linker").is_none() {
        anyhow::bail!(
            "bpf-linker is not installed; run `cargo xtask setup` (it installs rust-src for nightly and a bpf-linker built against nightly's LLVM)"
        );
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let xdp = root.join("xdp-prog");
    let common = root.join("userspace/common");
    // The XDP crate depends on the shared crate: rebuild when either changes.
    println!("cargo:rerun-if-changed={}", common.display());
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "wecan-xdp",
            root_dir: xdp.to_str().expect("UTF-8 path"),
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}

fn which(bin: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join(bin)).find(|p| p.is_file())
    })
}
