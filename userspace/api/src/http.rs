//! An HTTPS client of the controller (feature `client`): for agents, the CLI and clients
//! that ask the scheduler for edges. Only TLS to a certificate that chains to the given CA.

use std::{path::Path, time::Duration};

use anyhow::{Context, Result, bail};
use ureq::{
    Body,
    http::Response,
    tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider},
};

use crate::ErrorReply;

/// The CA certificates in PEM file `path`: the controller's chain must lead to one of them.
pub fn read_ca(path: &Path) -> Result<Vec<Certificate<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut roots = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let PemItem::Certificate(c) =
            item.with_context(|| format!("{}: bad PEM", path.display()))?
        {
            roots.push(c);
        }
    }
    if roots.is_empty() {
        bail!(
            "{} holds no PEM certificate; give the certificate of the CA that signed the \
             controller's",
            path.display()
        );
    }
    Ok(roots)
}

/// The bearer token in `path` (surrounding whitespace ignored).
pub fn read_token(path: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        bail!(
            "{} must hold one token (printable, no spaces) as `wecan-controller token` prints it",
            path.display()
        );
    }
    Ok(token.to_string())
}

/// An HTTPS client of the controller: trusts only `roots`, sends `token`.
pub struct ControllerHttp {
    agent: ureq::Agent,
    /// `Bearer TOKEN`; none for the calls a client's credential authenticates in its body.
    authorization: Option<String>,
}

impl ControllerHttp {
    pub fn new(roots: &[Certificate<'static>], token: &str, timeout: Option<Duration>) -> Self {
        Self {
            authorization: Some(format!("Bearer {token}")),
            ..Self::without_token(roots, timeout)
        }
    }

    /// A client without a bearer token (`POST /v1/edges/select` takes the client's
    /// credential in its body).
    pub fn without_token(roots: &[Certificate<'static>], timeout: Option<Duration>) -> Self {
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(RootCerts::new_with_certs(roots))
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            // Never send the token in clear, not even after a redirect.
            .https_only(true)
            // Error replies carry the controller's message (see [`ControllerHttp::check`]).
            .http_status_as_error(false)
            .timeout_global(timeout)
            .build()
            .new_agent();
        Self { agent, authorization: None }
    }

    pub fn get(&self, url: &str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        match &self.authorization {
            Some(a) => self.agent.get(url).header("authorization", a),
            None => self.agent.get(url),
        }
    }

    pub fn post(&self, url: &str) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        match &self.authorization {
            Some(a) => self.agent.post(url).header("authorization", a),
            None => self.agent.post(url),
        }
    }

    /// The reply if it is a success, else an error with the status and the controller's
    /// message (which names what to fix, e.g. the token).
    pub fn check(mut resp: Response<Body>) -> Result<Response<Body>> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        match resp.body_mut().read_json::<ErrorReply>() {
            Ok(e) => bail!("{status}: {}", e.error),
            Err(_) => bail!("{status}"),
        }
    }
}
