//! wecan-controller: computes routes from the agents' link reports and pushes them.
//!
//! ```text
//! wecan-controller --config configs/controller.toml [--listen ADDR:PORT]
//! wecan-controller token      # a fresh token, and the token_sha256 line for the config
//! ```

use std::{net::SocketAddr, path::PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use wecan_controller::{
    auth,
    server::{self, Settings},
};

#[derive(Parser)]
#[command(version, about = "wecan controller: link-quality graph, routes, pushes")]
struct Cli {
    /// Controller config (TLS certificate and key, node and operator tokens).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Overrides `listen` from the config.
    #[arg(long)]
    listen: Option<SocketAddr>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print a fresh random token (for a node's controller_token_file or an operator's
    /// --token-file) and the token_sha256 line for the controller config.
    Token,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if let Err(e) = real_main() {
        eprintln!("wecan-controller: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(Cmd::Token) = cli.cmd {
        let (token, hash) = auth::new_token()?;
        println!("{token}");
        println!("token_sha256 = \"{hash}\"");
        eprintln!(
            "the first line is the token: store it (only) in the node's controller_token_file or \
             the operator's --token-file; the second goes into the node's [[nodes]] or the \
             operator's [[operators]] entry of the controller config"
        );
        return Ok(());
    }
    let path = cli.config.context(
        "--config: missing; the controller needs a config with tls_cert, tls_key and [[nodes]] \
         tokens (see configs/controller.toml)",
    )?;
    let mut settings = Settings::load(&path)?;
    let (auth, tls) = settings.security().with_context(|| format!("config {}", path.display()))?;
    if let Some(l) = cli.listen {
        settings.listen = l;
    }
    let listener = std::net::TcpListener::bind(settings.listen)
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    // Tests and the demo wait for this line on stdout.
    println!("listening {}", listener.local_addr()?);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(server::serve(listener, settings, auth, tls))
}
