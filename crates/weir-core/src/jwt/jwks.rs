//! The issuer's keys (JWKS): read from a file or fetched over HTTP(S), bounded in size and time.

use super::*;

/// Why a JWKS cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("JWKS {origin}: {message}")]
pub struct JwksError {
    /// The file or URL.
    pub origin: String,
    pub message: String,
}

/// A JWKS larger than this is not one.
const MAX_JWKS_BYTES: usize = 1 << 20;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The least time between two JWKS fetches forced by tokens naming an unknown `kid`: an
/// issuer's rotation is picked up at the first token signed with the new key, but tokens with
/// made-up key ids cannot turn the sidecar into a load on the issuer.
pub const MIN_UNKNOWN_KEY_REFETCH: Duration = Duration::from_secs(30);

impl JwtConfig {
    /// Exactly one source of keys; `Err` says what is wrong.
    pub fn check(&self) -> Result<(), String> {
        match (&self.jwks, &self.jwks_url) {
            (Some(_), None) | (None, Some(_)) => Ok(()),
            _ => Err("needs exactly one of `jwks` (a file) and `jwks_url`".into()),
        }
    }

    pub(super) fn source(&self) -> String {
        match (&self.jwks, &self.jwks_url) {
            (Some(file), _) => file.display().to_string(),
            (None, Some(url)) => url.clone(),
            (None, None) => "(none configured)".into(),
        }
    }

    /// Reads the keys from wherever they are configured.
    pub(super) async fn fetch_keys(&self) -> Result<Jwks, JwksError> {
        let err = |message: String| JwksError { origin: self.source(), message };
        let text = match (&self.jwks, &self.jwks_url) {
            (Some(file), _) => std::fs::read_to_string(file).map_err(|e| err(format!("cannot read: {e}")))?,
            (None, Some(url)) => {
                let ca = crate::http_get::ca_or_system(self.jwks_ca.as_deref());
                tokio::time::timeout(FETCH_TIMEOUT, fetch_url(url, &ca))
                    .await
                    .map_err(|_| err(format!("no answer within {FETCH_TIMEOUT:?}")))?
                    .map_err(err)?
            }
            (None, None) => return Err(err(self.check().unwrap_err())),
        };
        Jwks::parse(&text).map_err(err)
    }
}

/// The JWKS at `url`, as text.
async fn fetch_url(url: &str, ca: &Path) -> Result<String, String> {
    let answer = crate::http_get::get(url, "application/json", ca, MAX_JWKS_BYTES).await.map_err(|e| e.0)?;
    if !answer.status.is_success() {
        return Err(format!("answered HTTP {}", answer.status));
    }
    String::from_utf8(answer.body.to_vec()).map_err(|_| "the body is not UTF-8".into())
}

#[derive(Debug)]
pub(super) enum Key {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed EC point (0x04 || x || y) and its curve's algorithm.
    Ec {
        point: Vec<u8>,
        alg: &'static str,
    },
}

#[derive(Debug, Default)]
pub(super) struct Jwks {
    pub(super) keys: Vec<(Option<String>, Key)>,
}

#[derive(Deserialize)]
struct JwkFile {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
}

#[derive(Deserialize)]
struct JwksFile {
    keys: Vec<JwkFile>,
}

impl Jwks {
    pub(super) fn parse(text: &str) -> Result<Self, String> {
        let err = |message: String| message;
        let parsed: JwksFile = serde_json::from_str(text).map_err(|e| err(format!("not a JWKS document: {e}")))?;
        let mut keys = Vec::new();
        for (i, jwk) in parsed.keys.into_iter().enumerate() {
            if jwk.usage.as_deref().is_some_and(|u| u != "sig") {
                continue;
            }
            let field = |value: Option<String>, name: &str| -> Result<Vec<u8>, String> {
                let value = value.ok_or_else(|| err(format!("keys[{i}] has no `{name}`")))?;
                B64URL
                    .decode(value.trim_end_matches('='))
                    .map_err(|_| err(format!("keys[{i}].{name} is not base64url")))
            };
            let key = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
                ("RSA", _) => Key::Rsa { n: field(jwk.n, "n")?, e: field(jwk.e, "e")? },
                ("EC", Some(crv @ ("P-256" | "P-384"))) => {
                    let mut point = vec![4];
                    point.extend(field(jwk.x, "x")?);
                    point.extend(field(jwk.y, "y")?);
                    Key::Ec { point, alg: if crv == "P-256" { "ES256" } else { "ES384" } }
                }
                (kty, crv) => {
                    return Err(err(format!("keys[{i}]: unsupported key type {kty} {}", crv.unwrap_or(""))));
                }
            };
            keys.push((jwk.kid, key));
        }
        if keys.is_empty() {
            return Err(err("no signing keys".into()));
        }
        Ok(Self { keys })
    }

    /// The key a token names by `kid`; without `kid`, the only key of a one-key set.
    pub(super) fn key(&self, kid: Option<&str>) -> Result<&Key, JwtError> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|(k, _)| k.as_deref() == Some(kid))
                .map(|(_, key)| key)
                .ok_or_else(|| JwtError::UnknownKey(kid.to_owned())),
            None if self.keys.len() == 1 => Ok(&self.keys[0].1),
            None => Err(JwtError::UnknownKey("(none named)".into())),
        }
    }
}
