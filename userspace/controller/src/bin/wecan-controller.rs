//! wecan-controller: computes routes from the agents' link reports and pushes them.
//!
//! ```text
//! wecan-controller [--config configs/controller.toml] [--listen ADDR:PORT]
//! ```

use std::{net::SocketAddr, path::PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use wecan_controller::server::{self, Settings};

#[derive(Parser)]
#[command(version, about = "wecan controller: link-quality graph, routes, pushes")]
struct Cli {
    #[arg(long)]
    config: Option<PathBuf>,
    /// Overrides `listen` from the config.
    #[arg(long)]
    listen: Option<SocketAddr>,
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
    let mut settings = match &cli.config {
        Some(p) => Settings::load(p)?,
        None => Settings::default(),
    };
    if let Some(l) = cli.listen {
        settings.listen = l;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        // Tests and the demo wait for this line on stdout.
        println!("listening {}", listener.local_addr()?);
        server::serve(listener, settings).await
    })
}
