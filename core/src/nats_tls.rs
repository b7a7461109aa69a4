//! TLS to NATS: the deployment's CA is the only root trusted (`HERALD_NATS_CA_PEM`, the PEM
//! text, or `HERALD_NATS_CA_FILE`, a PEM file), with the `aws-lc-rs` provider, the one the AWS
//! SDK's HTTPS client uses too. It is named rather than left to rustls: should a dependency ever
//! turn on a second provider, rustls could no longer pick one and would panic at the first
//! TLS connection.

use std::sync::Arc;

use async_nats::rustls::pki_types::CertificateDer;
use async_nats::rustls::pki_types::pem::PemObject;
use async_nats::rustls::{self, ClientConfig, RootCertStore};

/// Why a CA could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the CA is not PEM certificates: {0}")]
    Pem(String),
    #[error("the CA holds no certificate")]
    Empty,
    #[error("a CA certificate was refused: {0}")]
    Certificate(rustls::Error),
    #[error("TLS setup: {0}")]
    Setup(rustls::Error),
}

/// A TLS client configuration for NATS, built once and shared by every connection.
#[derive(Clone)]
pub struct NatsTls(Arc<ClientConfig>);

impl std::fmt::Debug for NatsTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NatsTls(..)")
    }
}

impl NatsTls {
    /// Trusts exactly the certificates of `pem`.
    pub fn from_pem(pem: &[u8]) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| TlsError::Pem(e.to_string()))?;
            roots.add(cert).map_err(TlsError::Certificate)?;
        }
        if roots.is_empty() {
            return Err(TlsError::Empty);
        }
        let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(NatsTls(Arc::new(config)))
    }

    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_empty_cas_are_refused() {
        assert!(matches!(NatsTls::from_pem(b""), Err(TlsError::Empty)));
        assert!(NatsTls::from_pem(b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n").is_err());
    }
}
