//! Edge access in the test bed: an operator whose keys and credentials are made with the
//! real `wecan token` CLI, an edge config with its gateway, and a driver that registers many
//! clients from one namespace (tokens issued in memory, the handshake of `wecan-access`).

use std::{
    net::{SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use wecan_access::{Claims, Creds, Op, Role, SigningKey, Token, issue};
use wecan_client::{Attachment, attach};

use crate::{bins::bin, net::sh};

/// An operator: its key file and public key, and the credentials it issued, in `dir`.
pub struct Operator {
    pub dir: PathBuf,
    pub key_file: PathBuf,
    pub public: String,
}

impl Operator {
    /// A new operator key (`wecan token keygen`) in `dir`.
    pub fn new(dir: &Path, name: &str) -> Result<Self> {
        let key_file = dir.join(format!("{name}.key"));
        let out = sh(
            bin("wecan").to_str().expect("UTF-8"),
            &["token", "keygen", "--out", key_file.to_str().expect("UTF-8")],
        )?;
        let public = out
            .split_whitespace()
            .find(|w| w.starts_with("wecan-pk:"))
            .with_context(|| format!("no public key in `wecan token keygen` output: {out}"))?
            .to_owned();
        Ok(Self { dir: dir.to_owned(), key_file, public })
    }

    /// Credentials for `name` valid for `ttl` (`wecan token issue`); an edge's with `edge`.
    pub fn issue(&self, name: &str, ttl: &str, edge: bool) -> Result<PathBuf> {
        let out = self.dir.join(format!("{name}.creds"));
        let mut args = vec![
            "token",
            "issue",
            "--operator",
            self.key_file.to_str().expect("UTF-8"),
            "--name",
            name,
            "--ttl",
            ttl,
            "--out",
            out.to_str().expect("UTF-8"),
        ];
        if edge {
            args.push("--edge");
        }
        sh(bin("wecan").to_str().expect("UTF-8"), &args)?;
        Ok(out)
    }

    /// The operator's signing key, for tokens made in memory.
    pub fn key(&self) -> Result<SigningKey> {
        let text = std::fs::read_to_string(&self.key_file)?;
        SigningKey::from_seed_text(text.trim()).map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// The `[access]` table of an edge holding `edge_creds`, trusting this operator.
    pub fn access_table(&self, edge_creds: &Path, extra: &str) -> String {
        format!(
            "[access]\noperators = [\"{}\"]\ncreds = \"{}\"\n{extra}",
            self.public,
            edge_creds.display()
        )
    }
}

/// Client credentials for `name` made in memory, issued `age_s` seconds ago for `ttl_s`
/// seconds (older than its lifetime: expired).
pub fn creds_in_memory(op: &SigningKey, name: &str, age_s: u64, ttl_s: u64) -> Result<Creds> {
    let rng = ring::rand::SystemRandom::new();
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("{e}");
    let me = SigningKey::generate(&rng).map_err(|e| err(&e))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let ops = vec![Op::Attach, Op::Send, Op::Receive];
    let claims =
        Claims::new(Role::Client, name, ops, me.public(), op.public(), now - age_s, ttl_s, &rng)
            .map_err(|e| err(&e))?;
    let token = Token::parse(&issue(op, &claims).map_err(|e| err(&e))?).map_err(|e| err(&e))?;
    Creds::new(token, me, vec![op.public()]).map_err(|e| err(&e))
}

/// What registering many clients took.
pub struct Registrations {
    pub attached: Vec<Attachment>,
    /// From the first registration sent to the last reply.
    pub took: Duration,
}

/// Registers `creds` one after the other with the edge at `edge` (in the calling thread's
/// namespace), all from one socket: the edge tells its clients apart by overlay address,
/// not by where they send from. Returns the attachments and the socket.
pub fn register_all(
    edge: SocketAddr,
    edge_node: u32,
    creds: &[(String, Creds)],
) -> Result<(Registrations, UdpSocket)> {
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    let start = Instant::now();
    let mut attached = Vec::with_capacity(creds.len());
    for (name, c) in creds {
        let a = attach(&sock, edge, edge_node, c, name, 3)
            .with_context(|| format!("attaching {name}"))?;
        attached.push(a);
    }
    Ok((Registrations { attached, took: start.elapsed() }, sock))
}
