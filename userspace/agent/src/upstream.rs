//! The agent's connection to the controller: one thread posts link reports, one long-polls
//! for route pushes. Both retry forever with a short back-off; while the controller is
//! unreachable the datapath keeps the last routes (fail-static).
//!
//! The threads are spawned before the agent enters its datapath namespace, so the
//! controller is reached over the management network the agent was started in.
//!
//! Only over TLS to a controller whose certificate chains to the configured CA, with the
//! node's bearer token ([`ControllerHttp`], which the CLI uses too).

use std::{
    path::Path,
    sync::mpsc::{self, Receiver, RecvTimeoutError, Sender},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use log::{info, warn};

pub use wecan_api::http::{ControllerHttp, read_ca, read_token};
use wecan_api::{Report, RoutesReply};

/// How long one long poll may wait on the controller.
const POLL_WAIT: Duration = Duration::from_secs(5);
/// Pause after a failed request.
const BACKOFF: Duration = Duration::from_millis(300);

pub struct Upstream {
    reports: Sender<Report>,
    routes: Receiver<RoutesReply>,
}

impl Upstream {
    /// Starts talking to the controller at `url` (e.g. `https://192.0.2.100:7400`) as
    /// `node`, trusting the CA in `ca` and authenticating with the token in `token_file`.
    pub fn spawn(url: &str, node: u32, ca: &Path, token_file: &Path) -> Result<Self> {
        let (report_tx, report_rx) = mpsc::channel::<Report>();
        let (routes_tx, routes_rx) = mpsc::channel::<RoutesReply>();
        let timeout = Some(POLL_WAIT + Duration::from_secs(2));
        let roots = read_ca(ca).context("controller_ca")?;
        let token = read_token(token_file).context("controller_token_file")?;
        let http = || ControllerHttp::new(&roots, &token, timeout);
        let report_url = format!("{url}/v1/nodes/{node}/report");
        let reporter = http();
        let routes_url = format!("{url}/v1/nodes/{node}/routes");
        let poller = http();
        thread::spawn(move || report_loop(&reporter, &report_url, &report_rx));
        thread::spawn(move || poll_loop(&poller, &routes_url, &routes_tx));
        Ok(Self { reports: report_tx, routes: routes_rx })
    }

    /// Queues a report (only the newest unsent one is posted).
    pub fn report(&self, r: Report) {
        let _ = self.reports.send(r);
    }

    /// The newest route push received since the last call, if any.
    pub fn routes(&self) -> Option<RoutesReply> {
        self.routes.try_iter().last()
    }
}

/// Logs a failure once per outage, not once per retry.
struct Health {
    what: &'static str,
    failing: bool,
}

impl Health {
    fn ok(&mut self) {
        if std::mem::take(&mut self.failing) {
            info!("controller {} works again", self.what);
        }
    }
    fn failed(&mut self, e: &dyn std::fmt::Display) {
        if !std::mem::replace(&mut self.failing, true) {
            warn!(
                "controller {} failed ({e}); forwarding continues on the last routes, retrying",
                self.what
            );
        }
    }
}

fn report_loop(http: &ControllerHttp, url: &str, rx: &Receiver<Report>) {
    let mut health = Health { what: "report", failing: false };
    let mut pending: Option<Report> = None;
    loop {
        let next = match pending.take() {
            Some(r) => Some(r),
            None => match rx.recv() {
                Ok(r) => Some(r),
                Err(_) => return,
            },
        };
        // Send only the newest report.
        let Some(report) = rx.try_iter().last().or(next) else { continue };
        match http
            .post(url)
            .send_json(&report)
            .map_err(anyhow::Error::from)
            .and_then(ControllerHttp::check)
        {
            Ok(_) => health.ok(),
            Err(e) => {
                health.failed(&format_args!("{e:#}"));
                pending = Some(report);
                let until = Instant::now() + BACKOFF;
                // Keep draining so the newest report wins after the back-off.
                while let Some(left) = until.checked_duration_since(Instant::now()) {
                    match rx.recv_timeout(left) {
                        Ok(r) => pending = Some(r),
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            }
        }
    }
}

fn poll_loop(http: &ControllerHttp, url: &str, tx: &Sender<RoutesReply>) {
    let mut health = Health { what: "route poll", failing: false };
    let mut generation = 0u64;
    loop {
        let reply = http
            .get(url)
            .query("after", generation.to_string())
            .query("wait_ms", POLL_WAIT.as_millis().to_string())
            .call()
            .map_err(anyhow::Error::from)
            .and_then(ControllerHttp::check)
            .and_then(|mut r| Ok(r.body_mut().read_json::<RoutesReply>()?));
        match reply {
            Ok(r) => {
                health.ok();
                // A restarted controller starts counting again: any change is news.
                if r.generation != generation {
                    generation = r.generation;
                    if tx.send(r).is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                health.failed(&format_args!("{e:#}"));
                thread::sleep(BACKOFF);
            }
        }
    }
}
