//! Throwaway controller credentials for one test run: a CA, the controller's certificate for
//! 127.0.0.1 signed by it, a token per relay and an operator token, and the controller config
//! naming them (token hashes only), all written under one directory.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::Result;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use wecan_controller::auth::new_token;

pub struct ControllerPki {
    /// The CA certificate (PEM) agents and the CLI trust.
    pub ca: PathBuf,
    /// The controller config (TLS files and token hashes; `listen` is left to `--listen`).
    pub config: PathBuf,
    /// A file holding the operator token.
    pub operator_token: PathBuf,
    tokens: BTreeMap<u32, PathBuf>,
}

impl ControllerPki {
    /// Writes the CA, the controller's certificate and key, a token file per node of `nodes`,
    /// an operator token file and the controller config under `dir`.
    pub fn create(dir: &Path, nodes: &[u32]) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (ca_pem, issuer) = new_ca("wecan test CA")?;
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, ca_pem)?;

        let mut params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])?;
        params.distinguished_name.push(DnType::CommonName, "wecan controller");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        let (cert_path, key_path) = (dir.join("controller.crt"), dir.join("controller.key"));
        std::fs::write(&cert_path, cert.pem())?;
        std::fs::write(&key_path, key.serialize_pem())?;

        let mut config = format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert_path.display(),
            key_path.display()
        );
        let mut tokens = BTreeMap::new();
        for &id in nodes {
            let (token, hash) = new_token()?;
            let path = dir.join(format!("node-{id}.token"));
            std::fs::write(&path, token)?;
            config += &format!("\n[[nodes]]\nid = {id}\ntoken_sha256 = \"{hash}\"\n");
            tokens.insert(id, path);
        }
        let (token, hash) = new_token()?;
        let operator_token = dir.join("operator.token");
        std::fs::write(&operator_token, token)?;
        config += &format!("\n[[operators]]\nname = \"tests\"\ntoken_sha256 = \"{hash}\"\n");
        let config_path = dir.join("controller.toml");
        std::fs::write(&config_path, config)?;
        Ok(Self { ca, config: config_path, operator_token, tokens })
    }

    /// The token file of `node`, if it was issued one.
    pub fn token_file(&self, node: u32) -> Option<&Path> {
        self.tokens.get(&node).map(PathBuf::as_path)
    }
}

/// Writes a CA certificate of its own to `path`: a client that trusts only it cannot reach a
/// controller of [`ControllerPki`].
pub fn write_unrelated_ca(path: &Path) -> Result<()> {
    Ok(std::fs::write(path, new_ca("some other CA")?.0)?)
}

fn new_ca(name: &str) -> Result<(String, Issuer<'static, KeyPair>)> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), Issuer::new(params, key)))
}
