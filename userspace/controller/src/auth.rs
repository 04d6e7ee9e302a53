//! Who may call the controller. Every call but `/healthz` carries `Authorization: Bearer
//! TOKEN` (over TLS, see [`crate::tls`]). A node's token may report that node's links and
//! read that node's routes, nothing else: a stolen token can misreport one node's own links,
//! never another's. An operator's token reads everything and writes nothing.
//!
//! The config holds only the SHA-256 of each token (`wecan-controller token` makes a token
//! and its hash), so a copy of the config gives no one a token. Tokens are 256 random bits,
//! so an unsalted fast hash is enough: there is no dictionary to try.
//!
//! Every refusal is counted per reason ([`wecan_api::Refusals`], `GET /v1/auth`) and logged
//! at most once per [`LOG_EVERY`], so a client retrying with a bad token cannot flood the log.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use log::warn;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use wecan_api::Refusals;

/// Random bytes in a token (printed as 64 hex digits).
pub const TOKEN_BYTES: usize = 32;
/// At most one refusal log line per this interval; the next line says how many were skipped.
pub const LOG_EVERY: Duration = Duration::from_secs(1);

/// A `[[nodes]]` entry of the controller config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeCredential {
    /// The relay's `node_id`.
    pub id: u32,
    /// SHA-256 of the node's token, 64 hex digits.
    pub token_sha256: String,
}

/// An `[[operators]]` entry of the controller config: read-only access for people and tools.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorCredential {
    /// Who holds the token (shown in logs).
    pub name: String,
    /// SHA-256 of the operator's token, 64 hex digits.
    pub token_sha256: String,
}

/// Whose token a request carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Node(u32),
    Operator(String),
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Node(id) => write!(f, "node {id}"),
            Self::Operator(name) => write!(f, "operator {name:?}"),
        }
    }
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    MissingCredentials,
    MalformedCredentials,
    BadCredentials,
    WrongNode,
    NotOperator,
    ReadOnly,
    /// A client's edge-access credential that does not verify (`POST /v1/edges/select`).
    BadClientToken,
}

impl Refusal {
    /// 401 when the caller is not authenticated, 403 when it is but lacks the right.
    pub fn status(self) -> u16 {
        match self {
            Self::MissingCredentials
            | Self::MalformedCredentials
            | Self::BadCredentials
            | Self::BadClientToken => 401,
            Self::WrongNode | Self::NotOperator | Self::ReadOnly => 403,
        }
    }

    /// The counter's name in [`Refusals`].
    pub fn name(self) -> &'static str {
        match self {
            Self::MissingCredentials => "missing_credentials",
            Self::MalformedCredentials => "malformed_credentials",
            Self::BadCredentials => "bad_credentials",
            Self::WrongNode => "wrong_node",
            Self::NotOperator => "not_operator",
            Self::ReadOnly => "read_only",
            Self::BadClientToken => "bad_client_token",
        }
    }

    /// What the client should fix.
    pub fn message(self) -> &'static str {
        match self {
            Self::MissingCredentials => {
                "no Authorization header; send `Authorization: Bearer TOKEN` (agents: set \
                 controller_token_file)"
            }
            Self::MalformedCredentials => {
                "Authorization header is not `Bearer TOKEN`; send the token as a bearer token"
            }
            Self::BadCredentials => {
                "unknown token; check the token file against the controller's [[nodes]] or \
                 [[operators]] token_sha256"
            }
            Self::WrongNode => "this node's token may only report and read its own node id",
            Self::NotOperator => "this call needs an operator token ([[operators]])",
            Self::ReadOnly => "operator tokens only read; reports need the node's own token",
            Self::BadClientToken => {
                "the client token does not verify with any operator the edges serve; issue one \
                 with `wecan token issue`"
            }
        }
    }
}

/// SHA-256 of `token`, as stored in the config.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A fresh random token and the hex SHA-256 the config stores for it.
pub fn new_token() -> Result<(String, String)> {
    let mut raw = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut raw)
        .map_err(|e| anyhow::anyhow!("no randomness from the OS for a token: {e}"))?;
    let token = hex(&raw);
    let hash = hex(&token_hash(&token));
    Ok((token, hash))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hash(at: &str, text: &str) -> Result<[u8; 32]> {
    let fix = "paste the token_sha256 line that `wecan-controller token` prints";
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{at}.token_sha256: {text:?} is not 64 hex digits; {fix}");
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        // Checked above: two ASCII hex digits.
        *o = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap_or_default();
    }
    Ok(out)
}

/// Rate limit of the refusal log.
struct LogLimit {
    last: Option<Instant>,
    skipped: u64,
}

/// The credentials the controller accepts, and its refusal counters.
pub struct Auth {
    keys: Vec<([u8; 32], Principal)>,
    nodes: usize,
    operators: usize,
    /// Indexed by `Refusal as usize`.
    refused: [AtomicU64; 7],
    tls_handshake: AtomicU64,
    log: Mutex<LogLimit>,
}

impl Auth {
    /// Checks the config's `[[nodes]]` and `[[operators]]`; errors name the entry.
    pub fn new(nodes: &[NodeCredential], operators: &[OperatorCredential]) -> Result<Self> {
        if nodes.is_empty() {
            bail!(
                "nodes: empty; add a [[nodes]] entry (id, token_sha256) per relay, tokens from \
                 `wecan-controller token`"
            );
        }
        let mut keys = Vec::new();
        let mut ids = HashSet::new();
        // Where each hash was first given, so a reused token names both entries.
        let mut seen: HashMap<[u8; 32], String> = HashMap::new();
        let mut unique = |at: &str, text: &str| -> Result<[u8; 32]> {
            let hash = parse_hash(at, text)?;
            if let Some(first) = seen.insert(hash, at.to_string()) {
                bail!("{at}.token_sha256: the same token as {first}; give each its own token");
            }
            Ok(hash)
        };
        for (i, n) in nodes.iter().enumerate() {
            let at = format!("nodes[{i}]");
            if n.id == 0 {
                bail!("{at}.id: 0 is reserved; use the relay's node_id");
            }
            if !ids.insert(n.id) {
                bail!("{at}.id: node {} is listed twice; keep one entry per node", n.id);
            }
            keys.push((unique(&at, &n.token_sha256)?, Principal::Node(n.id)));
        }
        for (i, o) in operators.iter().enumerate() {
            let at = format!("operators[{i}]");
            if o.name.trim().is_empty() {
                bail!("{at}.name: empty; name who holds the token (it appears in logs)");
            }
            keys.push((unique(&at, &o.token_sha256)?, Principal::Operator(o.name.clone())));
        }
        Ok(Self {
            keys,
            nodes: nodes.len(),
            operators: operators.len(),
            refused: Default::default(),
            tls_handshake: AtomicU64::new(0),
            log: Mutex::new(LogLimit { last: None, skipped: 0 }),
        })
    }

    /// Whose token the `Authorization` header value carries.
    pub fn authenticate(&self, header: Option<&[u8]>) -> Result<Principal, Refusal> {
        let header = header.ok_or(Refusal::MissingCredentials)?;
        let text = std::str::from_utf8(header).map_err(|_| Refusal::MalformedCredentials)?;
        let (scheme, token) = text.split_once(' ').ok_or(Refusal::MalformedCredentials)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(Refusal::MalformedCredentials);
        }
        let hash = token_hash(token);
        // Every key is compared, each in constant time: the time taken says nothing about
        // which key, or how much of one, matched.
        let mut found = None;
        for (key, who) in &self.keys {
            if bool::from(key.ct_eq(&hash)) {
                found = Some(who);
            }
        }
        found.cloned().ok_or(Refusal::BadCredentials)
    }

    /// Counts and (rate-limited) logs a refusal of `what` (method, path, caller).
    pub fn refuse(&self, r: Refusal, what: &dyn std::fmt::Display) -> Refusal {
        self.refused[r as usize].fetch_add(1, Relaxed);
        self.log(&format_args!("refused {what}: {}", r.name()));
        r
    }

    /// Counts and (rate-limited) logs a failed TLS handshake.
    pub fn tls_failed(&self, what: &dyn std::fmt::Display) {
        self.tls_handshake.fetch_add(1, Relaxed);
        self.log(&format_args!("TLS handshake failed: {what}"));
    }

    fn log(&self, line: &dyn std::fmt::Display) {
        let mut l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if l.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            l.skipped += 1;
            return;
        }
        let skipped = std::mem::take(&mut l.skipped);
        l.last = Some(now);
        drop(l);
        if skipped > 0 {
            warn!("{line} ({skipped} more refused since the last line; counts in GET /v1/auth)");
        } else {
            warn!("{line}");
        }
    }

    pub fn refusals(&self) -> Refusals {
        let n = |r: Refusal| self.refused[r as usize].load(Relaxed);
        Refusals {
            missing_credentials: n(Refusal::MissingCredentials),
            malformed_credentials: n(Refusal::MalformedCredentials),
            bad_credentials: n(Refusal::BadCredentials),
            wrong_node: n(Refusal::WrongNode),
            not_operator: n(Refusal::NotOperator),
            read_only: n(Refusal::ReadOnly),
            bad_client_token: n(Refusal::BadClientToken),
            tls_handshake: self.tls_handshake.load(Relaxed),
        }
    }

    /// Nodes and operators with a token.
    pub fn counts(&self) -> (usize, usize) {
        (self.nodes, self.operators)
    }
}

impl Principal {
    /// Posting a report for node `id`: that node's own token only.
    pub fn may_report(&self, id: u32) -> Result<(), Refusal> {
        match self {
            Self::Node(n) if *n == id => Ok(()),
            Self::Node(_) => Err(Refusal::WrongNode),
            Self::Operator(_) => Err(Refusal::ReadOnly),
        }
    }

    /// Reading node `id`'s routes: that node, or an operator.
    pub fn may_read_node(&self, id: u32) -> Result<(), Refusal> {
        match self {
            Self::Node(n) if *n != id => Err(Refusal::WrongNode),
            _ => Ok(()),
        }
    }

    /// Reading the whole network (topology, every route set, these counters).
    pub fn may_read_all(&self) -> Result<(), Refusal> {
        match self {
            Self::Operator(_) => Ok(()),
            Self::Node(_) => Err(Refusal::NotOperator),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u32, token: &str) -> NodeCredential {
        NodeCredential { id, token_sha256: hex(&token_hash(token)) }
    }

    fn auth() -> Auth {
        let op = OperatorCredential { name: "noc".into(), token_sha256: hex(&token_hash("op")) };
        Auth::new(&[node(1, "one"), node(2, "two")], &[op]).unwrap()
    }

    fn who(a: &Auth, header: &str) -> Result<Principal, Refusal> {
        a.authenticate(Some(header.as_bytes()))
    }

    #[test]
    fn tokens_map_to_their_holder() {
        let a = auth();
        assert_eq!(who(&a, "Bearer one"), Ok(Principal::Node(1)));
        assert_eq!(who(&a, "bearer two"), Ok(Principal::Node(2)));
        assert_eq!(who(&a, "Bearer op"), Ok(Principal::Operator("noc".into())));
        assert_eq!(a.authenticate(None), Err(Refusal::MissingCredentials));
        for bad in ["one", "Basic b25lOm9uZQ==", "Bearer ", "Bearer"] {
            assert_eq!(who(&a, bad), Err(Refusal::MalformedCredentials), "{bad}");
        }
        assert_eq!(a.authenticate(Some(b"Bearer \xff")), Err(Refusal::MalformedCredentials));
        assert_eq!(who(&a, "Bearer three"), Err(Refusal::BadCredentials));
        // The hash itself is not a token.
        assert_eq!(
            who(&a, &format!("Bearer {}", hex(&token_hash("one")))),
            Err(Refusal::BadCredentials)
        );
    }

    #[test]
    fn a_node_acts_only_for_itself_and_operators_only_read() {
        let (n1, op) = (Principal::Node(1), Principal::Operator("noc".into()));
        assert_eq!(n1.may_report(1), Ok(()));
        assert_eq!(n1.may_report(2), Err(Refusal::WrongNode));
        assert_eq!(op.may_report(1), Err(Refusal::ReadOnly));
        assert_eq!(n1.may_read_node(1), Ok(()));
        assert_eq!(n1.may_read_node(2), Err(Refusal::WrongNode));
        assert_eq!(op.may_read_node(2), Ok(()));
        assert_eq!(n1.may_read_all(), Err(Refusal::NotOperator));
        assert_eq!(op.may_read_all(), Ok(()));
        for r in
            [Refusal::MissingCredentials, Refusal::MalformedCredentials, Refusal::BadCredentials]
        {
            assert_eq!(r.status(), 401);
        }
        for r in [Refusal::WrongNode, Refusal::NotOperator, Refusal::ReadOnly] {
            assert_eq!(r.status(), 403);
        }
    }

    #[test]
    fn refusals_are_counted_per_reason() {
        let a = auth();
        for _ in 0..3 {
            a.refuse(Refusal::WrongNode, &"test");
        }
        a.refuse(Refusal::BadCredentials, &"test");
        a.tls_failed(&"test");
        let r = a.refusals();
        assert_eq!((r.wrong_node, r.bad_credentials, r.tls_handshake), (3, 1, 1));
        assert_eq!(
            r.missing_credentials + r.malformed_credentials + r.not_operator + r.read_only,
            0
        );
        assert_eq!(a.counts(), (2, 1));
        assert_eq!(a.log.lock().unwrap().skipped, 4, "only the first refusal in a second logs");
    }

    #[test]
    fn new_tokens_are_random_and_hash_as_stored() {
        let (t1, h1) = new_token().unwrap();
        let (t2, _) = new_token().unwrap();
        assert_ne!(t1, t2);
        assert_eq!(t1.len(), 2 * TOKEN_BYTES);
        let a =
            Auth::new(&[NodeCredential { id: 7, token_sha256: h1.to_uppercase() }], &[]).unwrap();
        assert_eq!(who(&a, &format!("Bearer {t1}")), Ok(Principal::Node(7)));
    }

    #[test]
    fn config_errors_name_the_entry() {
        let err = |nodes: &[NodeCredential], ops: &[OperatorCredential]| {
            format!("{:#}", Auth::new(nodes, ops).err().expect("an error"))
        };
        assert!(err(&[], &[]).starts_with("nodes: empty"));
        let short = NodeCredential { id: 2, token_sha256: "abc".into() };
        let e = err(&[node(1, "a"), short], &[]);
        assert!(e.contains("nodes[1].token_sha256") && e.contains("64 hex"), "{e}");
        let nonhex = NodeCredential { id: 1, token_sha256: "g".repeat(64) };
        assert!(err(&[nonhex], &[]).contains("nodes[0].token_sha256"));
        assert!(err(&[node(0, "a")], &[]).contains("nodes[0].id: 0"));
        assert!(err(&[node(1, "a"), node(1, "b")], &[]).contains("nodes[1].id"));
        let e = err(&[node(1, "a"), node(2, "a")], &[]);
        assert!(e.contains("nodes[1].token_sha256: the same token as nodes[0]"), "{e}");
        let op = OperatorCredential { name: " ".into(), token_sha256: hex(&token_hash("o")) };
        assert!(err(&[node(1, "a")], &[op]).contains("operators[0].name"));
        // Multi-byte text of the right length is refused, not sliced mid-character.
        let wide = NodeCredential { id: 1, token_sha256: "é".repeat(32) };
        assert!(err(&[wide], &[]).contains("64 hex"));
    }
}
