//! Child processes that are stopped (SIGTERM, then SIGKILL) when their guard drops.

use std::{
    io::{BufRead, BufReader},
    process::{Child, ChildStdout, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

pub struct Proc {
    pub name: String,
    child: Child,
}

impl Proc {
    /// Spawns `cmd` and waits up to `timeout` for a stdout line starting with `ready`.
    /// The rest of stdout is discarded in the background; stderr is inherited.
    pub fn spawn_ready(
        name: &str,
        cmd: &mut Command,
        ready: &str,
        timeout: Duration,
    ) -> Result<Self> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {name}: {cmd:?}"))?;
        let stdout = child.stdout.take().expect("piped");
        let mut p = Self { name: name.into(), child };
        wait_line(stdout, ready, timeout)
            .with_context(|| format!("{} did not become ready", p.name))?;
        if let Some(status) = p.child.try_wait()? {
            bail!("{name} exited: {status}");
        }
        Ok(p)
    }

    /// Spawns `cmd` with stdout captured, waits for a line starting with `ready`, and
    /// returns the process, that line, and a receiver for its remaining stdout lines.
    pub fn spawn_capture(
        name: &str,
        cmd: &mut Command,
        ready: &str,
        timeout: Duration,
    ) -> Result<(Self, String, mpsc::Receiver<String>)> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {name}: {cmd:?}"))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + timeout;
        let line = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.starts_with(ready) => break l,
                Ok(_) => {}
                Err(_) => bail!("{name} printed no {ready:?} line within {timeout:?}"),
            }
        };
        Ok((Self { name: name.into(), child }, line, rx))
    }

    /// Waits for the process to exit by itself (bounded).
    pub fn wait(mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!("{} still running after {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory (bytes), from `/proc/<pid>/status`.
    pub fn rss(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .with_context(|| format!("no VmRSS in /proc/{}/status", self.pid()))?;
        Ok(kb * 1024)
    }

    /// Sends a signal.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// SIGTERM, then SIGKILL if it has not exited within 5 s.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_line(stdout: ChildStdout, ready: &str, timeout: Duration) -> Result<()> {
    let (tx, rx) = mpsc::channel();
    let ready = ready.to_owned();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref().map_while(Result::ok) {
            if line.starts_with(&ready) {
                let _ = tx.send(());
                break;
            }
        }
        // Keep draining so the child never blocks on a full pipe.
        for _ in lines {}
    });
    rx.recv_timeout(timeout).map_err(|_| anyhow::anyhow!("no ready line within {timeout:?}"))
}
