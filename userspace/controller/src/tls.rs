//! The controller's TLS identity: its certificate chain and key, PEM files named by the config
//! (`tls_cert`, `tls_key`). Agents and the CLI check the chain against the CA they are given,
//! so a client only talks to the real controller and bearer tokens never cross in clear.

use std::{path::Path, sync::Arc};

use anyhow::{Context, Result, bail};
use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

/// A rustls server config from PEM files; errors name the config field and the fix.
pub fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig> {
    let read = |field: &str, path: &Path| {
        std::fs::read(path).with_context(|| {
            format!("{field}: cannot read {}; set it to a readable PEM file", path.display())
        })
    };
    let cert_pem = read("tls_cert", cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("tls_cert: {}: bad PEM ({e})", cert.display()))?;
    if chain.is_empty() {
        bail!(
            "tls_cert: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----); set it to the \
             controller's certificate chain",
            cert.display()
        );
    }
    let key_pem = read("tls_key", key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        anyhow::anyhow!(
            "tls_key: {} holds no usable PEM private key ({e}); set it to the key of tls_cert",
            key.display()
        )
    })?;
    // The ring provider explicitly: the process-wide default is ambiguous when a build also
    // links another provider.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            anyhow::anyhow!(
                "tls_key: {} does not fit the certificate in tls_cert {} ({e}); give the key \
                 the certificate was issued for",
                key.display(),
                cert.display()
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matching_pair_loads_and_errors_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let a = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let cert = write("a.crt", &a.cert.pem());
        let key = write("a.key", &a.signing_key.serialize_pem());
        let other_key = write("b.key", &b.signing_key.serialize_pem());
        server_config(&cert, &key).unwrap();
        let err = |c: &Path, k: &Path| format!("{:#}", server_config(c, k).unwrap_err());
        let e = err(&dir.path().join("missing.crt"), &key);
        assert!(e.starts_with("tls_cert: cannot read"), "{e}");
        assert!(err(&cert, &dir.path().join("missing.key")).starts_with("tls_key: cannot read"));
        let e = err(&key, &key);
        assert!(e.starts_with("tls_cert:") && e.contains("no PEM certificate"), "{e}");
        let e = err(&cert, &cert);
        assert!(e.starts_with("tls_key:") && e.contains("no usable PEM private key"), "{e}");
        let e = err(&cert, &other_key);
        assert!(e.starts_with("tls_key:") && e.contains("does not fit"), "{e}");
    }
}
