//! A `wecan-client recv` running in a node of a topology, and the report it ends with.

use std::{net::SocketAddr, sync::mpsc, time::Duration};

use anyhow::{Context, Result};
use wecan_client::RecvReport;

use crate::{proc::Proc, topology::Topology};

/// A receiver that is listening.
pub struct Receiving {
    rx: Proc,
    lines: mpsc::Receiver<String>,
}

/// Starts a receiver in `node` on `bind` for `count` packets (sequence numbers from 0),
/// giving up `idle` seconds after the last packet; returns once it listens.
pub fn receive(
    t: &Topology,
    node: &str,
    bind: SocketAddr,
    count: u32,
    idle: u32,
) -> Result<Receiving> {
    let (rx, _, lines) = Proc::spawn_capture(
        "receiver",
        t.client(node)
            .args(["recv", "--json", "--bind", &bind.to_string(), "--count", &count.to_string()])
            .args(["--timeout", "90", "--idle", &idle.to_string()]),
        "listening",
        Duration::from_secs(10),
    )?;
    Ok(Receiving { rx, lines })
}

impl Receiving {
    /// Waits for the receiver's report and its exit.
    pub fn report(self) -> Result<RecvReport> {
        let report = loop {
            let line =
                self.lines.recv_timeout(Duration::from_secs(100)).context("receiver report")?;
            if line.starts_with('{') {
                break serde_json::from_str(&line)?;
            }
        };
        self.rx.wait(Duration::from_secs(10))?;
        Ok(report)
    }
}
