//! The verification keys: an HS256 secret, a PEM public key, or a JWKS file with `kid`s.
//!
//! Each key carries the one algorithm it verifies; a token's `alg` header never picks the
//! algorithm. A JWKS file is read again when it changes, so a rotation is a file update: while
//! both the old and the new key are listed, tokens signed by either are accepted.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};

#[derive(Clone)]
pub struct Key {
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("HERALD_JWT_ALGORITHM {0:?} is not one of HS256, RS256, ES256, EdDSA")]
    Algorithm(String),
}

/// Where the keys come from, as configured.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// An HS256 secret; tokens may name it with `kid` when one is configured.
    Secret {
        secret: herald_core::secret::Secret,
        kid: Option<String>,
    },
    Pem {
        path: PathBuf,
        algorithm: Algorithm,
    },
    Jwks(PathBuf),
}

pub fn parse_algorithm(name: &str) -> Result<Algorithm, KeyError> {
    match name {
        "HS256" => Ok(Algorithm::HS256),
        "RS256" => Ok(Algorithm::RS256),
        "ES256" => Ok(Algorithm::ES256),
        "EdDSA" => Ok(Algorithm::EdDSA),
        other => Err(KeyError::Algorithm(other.to_owned())),
    }
}

/// The current keys, swapped whole when a JWKS file changes.
pub struct Keyring {
    source: KeySource,
    keys: RwLock<(Arc<Vec<Key>>, Option<SystemTime>)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("keys", &self.current().len()).finish()
    }
}

impl Keyring {
    pub fn load(source: KeySource) -> Result<Self, KeyError> {
        let (keys, mtime) = read(&source)?;
        Ok(Keyring { source, keys: RwLock::new((Arc::new(keys), mtime)) })
    }

    pub fn current(&self) -> Arc<Vec<Key>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).0.clone()
    }

    /// Reads a JWKS file again if it changed; keeps the old keys if the new file is broken.
    pub fn reload_if_changed(&self) -> Result<bool, KeyError> {
        let KeySource::Jwks(path) = &self.source else {
            return Ok(false);
        };
        let mtime = modified(path);
        if mtime == self.keys.read().unwrap_or_else(|p| p.into_inner()).1 {
            return Ok(false);
        }
        let (keys, mtime) = read(&self.source)?;
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = (Arc::new(keys), mtime);
        Ok(true)
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn read(source: &KeySource) -> Result<(Vec<Key>, Option<SystemTime>), KeyError> {
    match source {
        KeySource::Secret { secret, kid } => Ok((
            vec![Key {
                kid: kid.clone(),
                algorithm: Algorithm::HS256,
                key: DecodingKey::from_secret(secret.expose().as_bytes()),
            }],
            None,
        )),
        KeySource::Pem { path, algorithm } => {
            let pem = std::fs::read(path).map_err(|e| KeyError::Read { path: path.clone(), source: e })?;
            let invalid =
                |e: jsonwebtoken::errors::Error| KeyError::Invalid { path: path.clone(), message: e.to_string() };
            let key = match algorithm {
                Algorithm::RS256 => DecodingKey::from_rsa_pem(&pem).map_err(invalid)?,
                Algorithm::ES256 => DecodingKey::from_ec_pem(&pem).map_err(invalid)?,
                Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem).map_err(invalid)?,
                other => {
                    return Err(KeyError::Invalid {
                        path: path.clone(),
                        message: format!("{other:?} does not take a public key file"),
                    });
                }
            };
            Ok((vec![Key { kid: None, algorithm: *algorithm, key }], modified(path)))
        }
        KeySource::Jwks(path) => {
            let mtime = modified(path);
            let text = std::fs::read(path).map_err(|e| KeyError::Read { path: path.clone(), source: e })?;
            let set: JwkSet = serde_json::from_slice(&text)
                .map_err(|e| KeyError::Invalid { path: path.clone(), message: e.to_string() })?;
            let mut keys = Vec::new();
            for jwk in &set.keys {
                keys.push(jwk_key(jwk).map_err(|message| KeyError::Invalid { path: path.clone(), message })?);
            }
            if keys.is_empty() {
                return Err(KeyError::Invalid { path: path.clone(), message: "no keys".into() });
            }
            Ok((keys, mtime))
        }
    }
}

fn jwk_key(jwk: &Jwk) -> Result<Key, String> {
    let kid = jwk.common.key_id.clone();
    // The algorithm comes from the key's type (and `alg` where given), never from tokens.
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
        _ => {
            return Err(format!("key {kid:?}: only RSA, EC P-256 and Ed25519 public keys are accepted"));
        }
    };
    if let Some(alg) = jwk.common.key_algorithm {
        let named = format!("{alg:?}");
        if named != format!("{algorithm:?}") {
            return Err(format!("key {kid:?}: alg {named} does not match its key type"));
        }
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("key {kid:?}: {e}"))?;
    Ok(Key { kid, algorithm, key })
}
