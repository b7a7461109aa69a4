//! Signing in to NATS with an nkey or a credentials file (a user JWT and its nkey seed), the
//! two ways besides a password or token in the URL; shared by every async-nats connection and
//! the gateway's hand-written live connection, so both log in alike.
//!
//! The server sends a `nonce` in its INFO; the client answers in CONNECT with the nonce signed
//! by the seed (ed25519, base64url without padding) and the public key (`nkey`), or, with a
//! credentials file, the user JWT (`jwt`) in its place.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::secret::Secret;

/// How a client proves who it is, besides the URL's password or token.
#[derive(Clone)]
pub struct NatsAuth {
    seed: Secret,
    /// The user JWT of a credentials file; `None` for a bare nkey.
    jwt: Option<String>,
    public_key: String,
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsAuth").field("public_key", &self.public_key).field("jwt", &self.jwt.is_some()).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NatsAuthError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("not an nkey seed (expected one line starting with \"S\"): {0}")]
    BadSeed(String),
    #[error("not a NATS credentials file: no {0} block")]
    NoBlock(&'static str),
}

impl NatsAuth {
    /// An nkey seed (`SU…`), as `nk -gen user` writes it.
    pub fn from_seed(text: &str) -> Result<Self, NatsAuthError> {
        let seed = text.trim();
        let pair = nkeys::KeyPair::from_seed(seed).map_err(|e| NatsAuthError::BadSeed(e.to_string()))?;
        Ok(NatsAuth { seed: Secret::new(seed), jwt: None, public_key: pair.public_key() })
    }

    /// A credentials file: `-----BEGIN NATS USER JWT-----` and `-----BEGIN USER NKEY SEED-----`
    /// blocks.
    pub fn from_creds(text: &str) -> Result<Self, NatsAuthError> {
        let jwt = block(text, "NATS USER JWT").ok_or(NatsAuthError::NoBlock("NATS USER JWT"))?;
        let seed = block(text, "USER NKEY SEED").ok_or(NatsAuthError::NoBlock("USER NKEY SEED"))?;
        Ok(NatsAuth { jwt: Some(jwt.to_owned()), ..NatsAuth::from_seed(seed)? })
    }

    /// The login the configuration names: a credentials file (which wins) or an nkey seed file;
    /// `None` when it names neither. Errors say which file is wrong.
    pub fn from_files(
        creds: Option<&std::path::Path>,
        nkey_seed: Option<&std::path::Path>,
    ) -> Result<Option<Self>, NatsAuthError> {
        let read = |path: &std::path::Path| {
            std::fs::read_to_string(path)
                .map_err(|source| NatsAuthError::Read { path: path.display().to_string(), source })
        };
        match (creds, nkey_seed) {
            (Some(path), _) => Self::from_creds(&read(path)?).map(Some),
            (None, Some(path)) => Self::from_seed(&read(path)?).map(Some),
            (None, None) => Ok(None),
        }
    }

    pub fn seed(&self) -> &Secret {
        &self.seed
    }

    pub fn jwt(&self) -> Option<&str> {
        self.jwt.as_deref()
    }

    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// The nonce signed with the seed, as CONNECT's `sig` carries it.
    pub fn sign(&self, nonce: &str) -> String {
        let pair = nkeys::KeyPair::from_seed(self.seed.expose()).expect("checked when read");
        URL_SAFE_NO_PAD.encode(pair.sign(nonce.as_bytes()).expect("a seed's key pair signs"))
    }

    /// Adds this login to a CONNECT object, answering the server's `nonce`.
    pub fn add_to_connect(&self, connect: &mut serde_json::Value, nonce: &str) {
        connect["sig"] = self.sign(nonce).into();
        match &self.jwt {
            Some(jwt) => connect["jwt"] = jwt.clone().into(),
            None => connect["nkey"] = self.public_key.clone().into(),
        }
    }

    /// async-nats options that log in the same way.
    pub fn options(&self, options: async_nats::ConnectOptions) -> async_nats::ConnectOptions {
        match &self.jwt {
            None => options.nkey(self.seed.expose().to_owned()),
            Some(jwt) => {
                let pair =
                    std::sync::Arc::new(nkeys::KeyPair::from_seed(self.seed.expose()).expect("checked when read"));
                options.jwt(jwt.clone(), move |nonce| {
                    let pair = pair.clone();
                    async move { pair.sign(&nonce).map_err(async_nats::AuthError::new) }
                })
            }
        }
    }
}

/// The first non-empty line after `-----BEGIN {name}-----`.
fn block<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let begin = format!("-----BEGIN {name}-----");
    let lines = text.lines().skip_while(|l| l.trim() != begin).skip(1);
    lines.map(str::trim).find(|l| !l.is_empty()).filter(|l| !l.starts_with("--"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_signs_nonces_its_public_key_verifies() {
        let pair = nkeys::KeyPair::new_user();
        let auth = NatsAuth::from_seed(&format!("{}\n", pair.seed().unwrap())).unwrap();
        assert_eq!(auth.public_key(), pair.public_key());
        let sig = URL_SAFE_NO_PAD.decode(auth.sign("nonce-1")).unwrap();
        nkeys::KeyPair::from_public_key(auth.public_key()).unwrap().verify(b"nonce-1", &sig).unwrap();
        let mut connect = serde_json::json!({});
        auth.add_to_connect(&mut connect, "nonce-1");
        assert_eq!(connect["nkey"], pair.public_key());
        assert!(format!("{auth:?}").find(auth.seed().expose()).is_none(), "the seed is never printed");
    }

    #[test]
    fn a_credentials_file_gives_its_jwt_and_seed() {
        let pair = nkeys::KeyPair::new_user();
        let creds = format!(
            "-----BEGIN NATS USER JWT-----\neyJhbGciOiJlZDI1NTE5In0.e30.sig\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            pair.seed().unwrap()
        );
        let auth = NatsAuth::from_creds(&creds).unwrap();
        assert_eq!(auth.jwt(), Some("eyJhbGciOiJlZDI1NTE5In0.e30.sig"));
        let mut connect = serde_json::json!({});
        auth.add_to_connect(&mut connect, "n");
        assert_eq!(connect["jwt"], "eyJhbGciOiJlZDI1NTE5In0.e30.sig");
        assert!(connect.get("nkey").is_none());
        assert!(matches!(NatsAuth::from_creds("nothing"), Err(NatsAuthError::NoBlock(_))));
        assert!(matches!(NatsAuth::from_seed("SUnotaseed"), Err(NatsAuthError::BadSeed(_))));
    }
}
