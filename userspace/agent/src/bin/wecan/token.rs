//! `wecan token`: operator keys and client/edge credentials for edge access, made offline on
//! the operator's machine. The cryptography and the file formats are `wecan_access`'s; this
//! is only the files, the clock and the output.

use std::{
    fs,
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use ring::rand::SystemRandom;
use serde_json::json;
use wecan_access::{
    Claims, Creds, KeyError, Op, Role, SigningKey, Token, TokenError, issue, parse_ttl,
};

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Make an operator key: write its seed to --out (mode 0600), print its public key (the
    /// `operators` entry of every edge and client that trusts it).
    Keygen {
        /// File for the operator's seed (keep it secret, off the relays).
        #[arg(long)]
        out: PathBuf,
        /// Overwrite --out if it exists (the key in it is lost).
        #[arg(long)]
        force: bool,
    },
    /// Issue credentials for a client (or an edge with --edge): a new key, a token signed by
    /// the operator, written as one credentials file (mode 0600).
    Issue {
        /// The operator's seed file (from `wecan token keygen`).
        #[arg(long)]
        operator: PathBuf,
        /// The subject's name: 1 to 64 characters of A-Z a-z 0-9 . _ -
        #[arg(long)]
        name: String,
        /// Lifetime: 30s, 15m, 24h, 7d.
        #[arg(long, value_parser = parse_ttl_arg)]
        ttl: u64,
        /// Operations allowed, comma-separated: attach, send, receive.
        #[arg(long, value_parser = parse_ops, default_value = "attach,send,receive")]
        ops: Ops,
        /// Credentials for an edge relay (role edge) instead of a client.
        #[arg(long)]
        edge: bool,
        /// File for the credentials.
        #[arg(long)]
        out: PathBuf,
        /// Overwrite --out if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Show the claims of a credentials file or a file holding a bare token.
    Inspect {
        /// A credentials file or a token file.
        file: PathBuf,
    },
}

/// The operations of `--ops`.
#[derive(Clone, Debug)]
pub struct Ops(Vec<Op>);

fn parse_ttl_arg(s: &str) -> Result<u64, String> {
    parse_ttl(s).map_err(|e| e.to_string())
}

fn parse_ops(s: &str) -> Result<Ops, String> {
    let mut ops = Vec::new();
    for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let op: Op = name.parse().map_err(|e: wecan_access::token::UnknownOp| e.to_string())?;
        if !ops.contains(&op) {
            ops.push(op);
        }
    }
    if ops.is_empty() {
        return Err("no operations; give some of attach, send, receive (comma-separated)".into());
    }
    Ok(Ops(ops))
}

pub fn run(cmd: TokenCmd, json: bool) -> Result<()> {
    match cmd {
        TokenCmd::Keygen { out, force } => keygen(&out, force, json),
        TokenCmd::Issue { operator, name, ttl, ops, edge, out, force } => {
            let role = if edge { Role::Edge } else { Role::Client };
            issue_creds(&operator, &name, ttl, ops.0, role, &out, force, json)
        }
        TokenCmd::Inspect { file } => inspect(&file, json),
    }
}

fn keygen(out: &Path, force: bool, json: bool) -> Result<()> {
    let key = SigningKey::generate(&SystemRandom::new())?;
    write_secret(out, force, &format!("{}\n", key.seed_text()))?;
    if json {
        println!("{}", json!({ "operator": key.public().to_string(), "file": out }));
    } else {
        println!("{}", key.public());
        eprintln!(
            "operator seed written to {} (keep it secret); trust it with operators = [\"{}\"]",
            out.display(),
            key.public()
        );
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn issue_creds(
    operator: &Path,
    name: &str,
    ttl: u64,
    ops: Vec<Op>,
    role: Role,
    out: &Path,
    force: bool,
    json: bool,
) -> Result<()> {
    let op_key = read_operator(operator)?;
    if fs::canonicalize(out).ok() == Some(fs::canonicalize(operator)?) {
        bail!(
            "--out {}: that is the operator's seed file; write the credentials elsewhere",
            out.display()
        );
    }
    let rng = SystemRandom::new();
    let subject = SigningKey::generate(&rng)?;
    let claims =
        Claims::new(role, name, ops, subject.public(), op_key.public(), now_s()?, ttl, &rng)
            .map_err(|e| match e {
                TokenError::Name(e) => anyhow!("--name {name:?}: {e}"),
                e => anyhow!(e),
            })?;
    let text = issue(&op_key, &claims)?;
    let token = Token::parse(&text)?;
    let creds = Creds::new(token, subject, vec![op_key.public()])?;
    write_secret(out, force, &creds.to_toml())?;
    if json {
        let mut v = claims_json(&claims);
        v["file"] = json!(out);
        println!("{v}");
    } else {
        println!(
            "issued {} {:?}: id {}, expires {} (unix {}); credentials in {} (keep it secret)",
            claims.role,
            claims.name,
            claims.id,
            utc(claims.exp),
            claims.exp,
            out.display()
        );
    }
    Ok(())
}

fn inspect(file: &Path, json: bool) -> Result<()> {
    let text =
        fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let bare = text.trim();
    let (token, operators) = if bare.starts_with("wecan1.") {
        (
            Token::parse(bare).with_context(|| format!("{}: not a valid token", file.display()))?,
            None,
        )
    } else if let Ok(k) = SigningKey::from_seed_text(bare) {
        bail!(
            "{}: this is an operator seed (public key {}), not credentials or a token; it has no claims to show",
            file.display(),
            k.public()
        );
    } else {
        let c = Creds::parse(&text).with_context(|| {
            format!("{}: neither a credentials file nor a token", file.display())
        })?;
        (c.token().clone(), Some(c.operators().to_vec()))
    };
    let c = token.unverified_claims();
    // Only the signature against the token's own issuer and the time: whether that issuer
    // is trusted is for whoever verifies it.
    let state = match token.verify(&[c.iss], now_s()?) {
        Ok(_) => "valid",
        Err(TokenError::BadSignature) => "bad signature",
        Err(TokenError::Expired { .. }) => "expired",
        Err(TokenError::NotYetValid { .. }) => "not yet valid",
        Err(e) => bail!("{}: {e}", file.display()),
    };
    if json {
        let mut v = claims_json(c);
        v["state"] = json!(state);
        if let Some(ops) = &operators {
            v["operators"] = json!(ops.iter().map(ToString::to_string).collect::<Vec<_>>());
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let ops: Vec<&str> = c.ops.iter().map(|o| o.name()).collect();
    let rows = [
        ("role", c.role.to_string()),
        ("name", c.name.clone()),
        ("ops", if ops.is_empty() { "-".into() } else { ops.join(",") }),
        ("id", c.id.clone()),
        ("issued", format!("{} (unix {})", utc(c.iat), c.iat)),
        ("expires", format!("{} (unix {})", utc(c.exp), c.exp)),
        ("state", format!("{state} (signature checked against its issuer, not trust)")),
        ("key", c.key.to_string()),
        ("issuer", c.iss.to_string()),
    ];
    for (k, v) in rows {
        println!("{k:<9} {v}");
    }
    for o in operators.iter().flatten() {
        println!("{:<9} {o}", "trusts");
    }
    Ok(())
}

fn claims_json(c: &Claims) -> serde_json::Value {
    let mut v = json!(c);
    v["expires_utc"] = json!(utc(c.exp));
    v
}

/// The operator key in `path`, with what to do if it is something else.
fn read_operator(path: &Path) -> Result<SigningKey> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("--operator: cannot read {}", path.display()))?;
    let text = text.trim();
    // Seeds are base64url: a token has dots, a credentials file `=`.
    if text.starts_with("wecan1.") || text.contains('=') {
        bail!(
            "--operator {}: this is a token or credentials file, not an operator seed; give the file `wecan token keygen --out` wrote",
            path.display()
        );
    }
    SigningKey::from_seed_text(text).map_err(|e| match e {
        KeyError::SeedIsPublic => anyhow!("--operator {}: {e}", path.display()),
        e => anyhow!(
            "--operator {}: {e}; give the file `wecan token keygen --out` wrote",
            path.display()
        ),
    })
}

/// Writes `text` to `path` readable by its owner only; refuses an existing file unless
/// `force`.
fn write_secret(path: &Path, force: bool, text: &str) -> Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).mode(0o600);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => anyhow!(
            "--out {}: the file exists; pass --force to overwrite it (what it holds is lost)",
            path.display()
        ),
        _ => anyhow!("--out {}: cannot create it: {e}", path.display()),
    })?;
    // An existing file keeps its mode when opened: make it owner-only too.
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .with_context(|| format!("--out {}: cannot make it owner-only", path.display()))?;
    f.write_all(text.as_bytes()).with_context(|| format!("--out {}: cannot write", path.display()))
}

fn now_s() -> Result<u64> {
    Ok(SystemTime::now().duration_since(UNIX_EPOCH).context("the clock is before 1970")?.as_secs())
}

/// `unix_s` as a UTC date and time (the civil-from-days algorithm: no time zone database).
fn utc(unix_s: u64) -> String {
    let (days, secs) = ((unix_s / 86_400) as i64, unix_s % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(4_102_444_799), "2099-12-31 23:59:59 UTC");
    }

    #[test]
    fn ops_flag() {
        assert_eq!(parse_ops("attach").unwrap().0, [Op::Attach]);
        assert_eq!(parse_ops("send, receive,send").unwrap().0, [Op::Send, Op::Receive]);
        assert!(parse_ops("").unwrap_err().contains("attach, send, receive"));
        assert!(parse_ops("attach,write").unwrap_err().contains("\"write\""));
    }
}
