//! Locating the wecan binaries built next to the running test or tool.

use std::path::PathBuf;

/// Path of a workspace binary in the same target profile directory as this executable
/// (`target/<profile>/`; tests run from `target/<profile>/deps/`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} not found; build the binaries first (`cargo xtask test` does: cargo build --release --bins)",
        path.display()
    );
    path
}
