//! SASL credentials at rest and their verification, whatever protocol carries the exchange.
//!
//! Passwords are never stored: each user has a SCRAM entry (RFC 5802: salt, iteration count,
//! StoredKey, ServerKey), which serves SCRAM exchanges and lets a PLAIN password be checked by
//! deriving the same StoredKey from it.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2};
use serde::{Deserialize, Serialize};

use crate::config::{invalid, load_yaml_file, ConfigError};
use crate::jwt::{JwksError, JwtConfig, JwtValidator};
use crate::sasl_guard::{
    FailureBudgetConfig, FailureBudgets, NoRandomness, PasswordCacheConfig, PasswordChecks, SuccessCache,
};

/// SASL terminated by a listener.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SaslServerConfig {
    /// YAML file of SCRAM entries (`users: [...]`); see [`scram_entry`]. Needed for SCRAM and
    /// PLAIN.
    #[serde(default)]
    pub credentials: Option<std::path::PathBuf>,
    /// Bearer tokens checked here; needed for OAUTHBEARER.
    #[serde(default)]
    pub oauthbearer: Option<JwtConfig>,
    /// Mechanisms offered: `SCRAM-SHA-512`, `SCRAM-SHA-256`, `PLAIN` (checked against the
    /// SCRAM entries), `OAUTHBEARER`. A user can use SCRAM only with the hash of their entry.
    /// Default: every mechanism the configured credentials serve.
    #[serde(default)]
    pub mechanisms: Option<Vec<String>>,
    /// How long a failed authentication waits before its answer (and the close), as Kafka's
    /// `connection.failed.authentication.delay.ms` (KIP-306): it slows password guessing by
    /// clients that reconnect at once.
    #[serde(default = "default_failure_delay_ms")]
    pub failed_authentication_delay_ms: u64,
    /// The longest a SASL session lasts before the client must re-authenticate on its
    /// connection (KIP-368), as Kafka's `connections.max.reauth.ms`; 0: no limit for passwords.
    /// An OAUTHBEARER session never outlives its token.
    #[serde(default)]
    pub max_session_ms: u64,
    /// How many PLAIN password checks (PBKDF2) run at once, on blocking threads; more wait
    /// their turn. Default: half the available cores, at least one.
    #[serde(default)]
    pub password_check_concurrency: Option<usize>,
    /// Failed authentications allowed per source address and per user name in a window.
    #[serde(default)]
    pub failure_budget: FailureBudgetConfig,
    /// Successful PLAIN checks remembered, so repeat logins skip the derivation.
    #[serde(default)]
    pub password_cache: PasswordCacheConfig,
}

fn default_failure_delay_ms() -> u64 {
    100
}

/// Mechanisms served by a credentials file.
pub const PASSWORD_MECHANISMS: [&str; 3] = ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"];
pub const OAUTHBEARER: &str = "OAUTHBEARER";

impl SaslServerConfig {
    /// The mechanisms offered, in order of preference.
    pub fn mechanisms(&self) -> Vec<String> {
        if let Some(mechanisms) = &self.mechanisms {
            return mechanisms.clone();
        }
        let mut out: Vec<String> = Vec::new();
        if self.credentials.is_some() {
            out.extend(PASSWORD_MECHANISMS.map(String::from));
        }
        if self.oauthbearer.is_some() {
            out.push(OAUTHBEARER.into());
        }
        out
    }

    /// Checks that every mechanism offered has what it needs; `Err((key, message))`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.credentials.is_none() && self.oauthbearer.is_none() {
            return Err(("sasl", "needs `credentials` (SCRAM, PLAIN) or `oauthbearer` (OAUTHBEARER)".into()));
        }
        for mechanism in self.mechanisms() {
            match mechanism.as_str() {
                m if PASSWORD_MECHANISMS.contains(&m) && self.credentials.is_none() => {
                    return Err(("sasl.credentials", format!("{m} needs a credentials file")));
                }
                OAUTHBEARER if self.oauthbearer.is_none() => {
                    return Err(("sasl.oauthbearer", "OAUTHBEARER needs `oauthbearer: {jwks: FILE, ...}`".into()));
                }
                OAUTHBEARER => {
                    let jwt = self.oauthbearer.as_ref().map(JwtConfig::check).transpose();
                    jwt.map_err(|message| ("sasl.oauthbearer", message))?;
                }
                m if PASSWORD_MECHANISMS.contains(&m) || m == OAUTHBEARER => {}
                other => {
                    return Err((
                        "sasl.mechanisms",
                        format!("`{other}`: expected one of {}, {OAUTHBEARER}", PASSWORD_MECHANISMS.join(", ")),
                    ))
                }
            }
        }
        if self.password_check_concurrency == Some(0) {
            return Err(("sasl.password_check_concurrency", "expected at least 1".into()));
        }
        Ok(())
    }
}

/// What a listener needs to terminate SASL: loaded credentials and the mechanisms offered.
pub struct SaslServer {
    pub credentials: Option<Credentials>,
    pub tokens: Option<Arc<JwtValidator>>,
    pub mechanisms: Vec<String>,
    pub failure_delay: std::time::Duration,
    /// `max_session_ms`, when set.
    pub max_session: Option<std::time::Duration>,
    /// Where PLAIN derivations run.
    pub password_checks: PasswordChecks,
    /// Failed authentications per source and per user.
    pub budgets: FailureBudgets,
    /// PLAIN passwords that verified recently. Credentials are loaded once per process; code
    /// that ever reloads them must [`SuccessCache::clear`] this.
    pub password_cache: SuccessCache,
}

/// Why SASL termination cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SaslSetupError {
    #[error(transparent)]
    Credentials(#[from] ConfigError),
    #[error(transparent)]
    Jwks(#[from] JwksError),
    #[error(transparent)]
    Randomness(#[from] NoRandomness),
}

impl SaslServer {
    pub async fn load(config: &SaslServerConfig) -> Result<Self, SaslSetupError> {
        let credentials = config.credentials.as_deref().map(Credentials::load).transpose()?;
        let tokens = match config.oauthbearer.clone() {
            Some(jwt) => Some(JwtValidator::load(jwt).await?),
            None => None,
        };
        let failure_delay = std::time::Duration::from_millis(config.failed_authentication_delay_ms);
        let max_session = (config.max_session_ms > 0).then(|| std::time::Duration::from_millis(config.max_session_ms));
        Ok(Self {
            credentials,
            tokens,
            mechanisms: config.mechanisms(),
            failure_delay,
            max_session,
            password_checks: PasswordChecks::new(config.password_check_concurrency),
            budgets: FailureBudgets::new(config.failure_budget),
            password_cache: SuccessCache::new(config.password_cache)?,
        })
    }
}

/// The hash behind a SCRAM entry.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
pub enum ScramMechanism {
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

/// One user, as written in the credentials file (binary values in base64).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScramEntry {
    pub user: String,
    pub mechanism: ScramMechanism,
    pub salt: String,
    pub iterations: u32,
    pub stored_key: String,
    pub server_key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    users: Vec<ScramEntry>,
}

#[derive(Clone)]
struct Decoded {
    mechanism: ScramMechanism,
    salt: Vec<u8>,
    iterations: NonZeroU32,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

/// The users a listener accepts.
pub struct Credentials {
    users: HashMap<String, Decoded>,
}

impl ScramMechanism {
    /// The SASL mechanism name (`SCRAM-SHA-256`, `SCRAM-SHA-512`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "SCRAM-SHA-256" => Some(Self::Sha256),
            "SCRAM-SHA-512" => Some(Self::Sha512),
            _ => None,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Self::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Self::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }
    fn hmac(self) -> hmac::Algorithm {
        match self {
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha512 => hmac::HMAC_SHA512,
        }
    }
    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha256 => &digest::SHA256,
            Self::Sha512 => &digest::SHA512,
        }
    }
    fn len(self) -> usize {
        self.digest().output_len()
    }

    /// StoredKey and ServerKey for a password (RFC 5802, section 3).
    fn keys(self, password: &[u8], salt: &[u8], iterations: NonZeroU32) -> (Vec<u8>, Vec<u8>) {
        let mut salted = vec![0u8; self.len()];
        pbkdf2::derive(self.pbkdf2(), iterations, salt, password, &mut salted);
        let key = hmac::Key::new(self.hmac(), &salted);
        let client_key = hmac::sign(&key, b"Client Key");
        let stored_key = digest::digest(self.digest(), client_key.as_ref()).as_ref().to_vec();
        let server_key = hmac::sign(&key, b"Server Key").as_ref().to_vec();
        (stored_key, server_key)
    }
}

/// Makes the credentials-file entry for a password (for `weir` tooling and tests).
pub fn scram_entry(user: &str, password: &str, mechanism: ScramMechanism, salt: &[u8], iterations: u32) -> ScramEntry {
    let count = NonZeroU32::new(iterations.max(1)).unwrap_or(NonZeroU32::MIN);
    let (stored_key, server_key) = mechanism.keys(password.as_bytes(), salt, count);
    ScramEntry {
        user: user.to_owned(),
        mechanism,
        salt: B64.encode(salt),
        iterations: count.get(),
        stored_key: B64.encode(stored_key),
        server_key: B64.encode(server_key),
    }
}

impl Credentials {
    /// Reads a YAML file `users: [ {user, mechanism, salt, iterations, stored_key, server_key} ]`.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let parsed: CredentialsFile = load_yaml_file(file)?;
        Self::from_entries(parsed.users, file)
    }

    pub fn from_entries(entries: Vec<ScramEntry>, origin: &Path) -> Result<Self, ConfigError> {
        let mut users = HashMap::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let key = |field: &str| format!("users[{i}].{field}");
            let b64 = |field: &str, value: &str| {
                B64.decode(value).map_err(|e| invalid(origin, &key(field), format!("not base64: {e}")))
            };
            let salt = b64("salt", &entry.salt)?;
            let stored_key = b64("stored_key", &entry.stored_key)?;
            let server_key = b64("server_key", &entry.server_key)?;
            let iterations = NonZeroU32::new(entry.iterations)
                .filter(|n| n.get() >= 4096)
                .ok_or_else(|| invalid(origin, &key("iterations"), "expected at least 4096"))?;
            if stored_key.len() != entry.mechanism.len() {
                return Err(invalid(origin, &key("stored_key"), "wrong length for the mechanism"));
            }
            let decoded = Decoded { mechanism: entry.mechanism, salt, iterations, stored_key, server_key };
            if users.insert(entry.user.clone(), decoded).is_some() {
                return Err(invalid(origin, &key("user"), format!("user `{}` appears twice", entry.user)));
            }
        }
        Ok(Self { users })
    }

    /// Checks a user's password (SASL/PLAIN) against the stored SCRAM key, in constant time
    /// with respect to the key. An unknown user costs the same derivation as a known one.
    /// This is PBKDF2: async code runs [`Credentials::password_check`] off its workers.
    pub fn verify_password(&self, user: &str, password: &str) -> bool {
        self.password_check(user, password).verify()
    }

    /// A password check that owns what it needs, to run on another thread.
    pub fn password_check(&self, user: &str, password: &str) -> PasswordCheck {
        PasswordCheck { entry: self.users.get(user).cloned(), password: password.to_owned() }
    }

    /// Whether the credentials file names this user.
    pub fn has_user(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }
}

/// One PLAIN password check, detached from the credentials (see [`Credentials::password_check`]).
pub struct PasswordCheck {
    entry: Option<Decoded>,
    password: String,
}

impl PasswordCheck {
    /// Derives the password's StoredKey and compares it (the expensive part).
    pub fn verify(self) -> bool {
        const DECOY_SALT: &[u8] = b"weir-unknown-user";
        match self.entry {
            Some(entry) => {
                let (stored, _) = entry.mechanism.keys(self.password.as_bytes(), &entry.salt, entry.iterations);
                constant_time_eq(&stored, &entry.stored_key)
            }
            None => {
                let _ = ScramMechanism::Sha512.keys(
                    self.password.as_bytes(),
                    DECOY_SALT,
                    NonZeroU32::new(4096).unwrap_or(NonZeroU32::MIN),
                );
                false
            }
        }
    }
}

/// The server side of one SCRAM exchange (RFC 5802): `first` answers the client-first
/// message, `finish` checks the client's proof and returns the server-final message.
pub struct ScramServer {
    entry: Decoded,
    user: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

/// Why a SCRAM exchange failed; the text is safe to show the client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("invalid user name or password for `{0}`")]
    BadCredentials(String),
}

impl Credentials {
    /// Starts a SCRAM exchange for `mechanism` from the client-first message.
    pub fn scram_first(
        &self,
        mechanism: ScramMechanism,
        client_first: &[u8],
    ) -> Result<(ScramServer, String), ScramError> {
        let text = std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        // gs2-header: "n,," or "y,," (no channel binding), optionally with "a=authzid".
        let mut parts = text.splitn(3, ',');
        let cbind = parts.next().ok_or(ScramError::Malformed("no GS2 header"))?;
        if cbind != "n" && cbind != "y" {
            return Err(ScramError::Malformed("channel binding is not supported"));
        }
        let _authzid = parts.next().ok_or(ScramError::Malformed("no GS2 header"))?;
        let bare = parts.next().ok_or(ScramError::Malformed("no client-first-message-bare"))?;
        let mut user = None;
        let mut client_nonce = None;
        for attribute in bare.split(',') {
            match attribute.split_once('=') {
                Some(("n", value)) => user = Some(value.replace("=2C", ",").replace("=3D", "=")),
                Some(("r", value)) => client_nonce = Some(value),
                _ => {}
            }
        }
        let user = user.ok_or(ScramError::Malformed("no user name"))?;
        let client_nonce = client_nonce.filter(|n| !n.is_empty()).ok_or(ScramError::Malformed("no nonce"))?;
        let entry = self
            .users
            .get(&user)
            .filter(|e| e.mechanism == mechanism)
            .ok_or_else(|| ScramError::BadCredentials(user.clone()))?;
        let mut random = [0u8; 18];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
            .map_err(|_| ScramError::Malformed("no randomness available"))?;
        let nonce = format!("{client_nonce}{}", B64.encode(random));
        let server_first = format!("r={nonce},s={},i={}", B64.encode(&entry.salt), entry.iterations);
        let server = ScramServer {
            entry: entry.clone(),
            user,
            client_first_bare: bare.to_owned(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok((server, server_first))
    }
}

impl ScramServer {
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Checks the client-final message; on success returns the server-final message.
    pub fn finish(&self, client_final: &[u8]) -> Result<String, ScramError> {
        let text = std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or(ScramError::Malformed("no proof"))?;
        let nonce =
            without_proof.split(',').find_map(|a| a.strip_prefix("r=")).ok_or(ScramError::Malformed("no nonce"))?;
        if nonce != self.nonce {
            return Err(ScramError::Malformed("nonce mismatch"));
        }
        let proof = B64.decode(proof).map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let mechanism = self.entry.mechanism;
        let auth_message = format!("{},{},{}", self.client_first_bare, self.server_first, without_proof);
        let client_signature =
            hmac::sign(&hmac::Key::new(mechanism.hmac(), &self.entry.stored_key), auth_message.as_bytes());
        if proof.len() != client_signature.as_ref().len() {
            return Err(ScramError::BadCredentials(self.user.clone()));
        }
        let client_key: Vec<u8> = proof.iter().zip(client_signature.as_ref()).map(|(p, s)| p ^ s).collect();
        let stored = digest::digest(mechanism.digest(), &client_key);
        if !constant_time_eq(stored.as_ref(), &self.entry.stored_key) {
            return Err(ScramError::BadCredentials(self.user.clone()));
        }
        let server_signature =
            hmac::sign(&hmac::Key::new(mechanism.hmac(), &self.entry.server_key), auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature.as_ref())))
    }
}

/// How a proxy authenticates itself to a server (e.g. the sidecar to the brokers).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SaslClientConfig {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    pub username: String,
    pub password: String,
}

/// The client side of one SCRAM exchange (RFC 5802).
pub struct ScramClient {
    mechanism: ScramMechanism,
    password: String,
    client_first_bare: String,
    nonce: String,
    expected_server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    /// Starts an exchange; returns the client and the client-first message.
    pub fn start(mechanism: ScramMechanism, user: &str, password: &str) -> Result<(Self, String), ScramError> {
        let mut random = [0u8; 18];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
            .map_err(|_| ScramError::Malformed("no randomness available"))?;
        let nonce = B64.encode(random);
        let name = user.replace('=', "=3D").replace(',', "=2C");
        let client_first_bare = format!("n={name},r={nonce}");
        let first = format!("n,,{client_first_bare}");
        let client = Self {
            mechanism,
            password: password.to_owned(),
            client_first_bare,
            nonce,
            expected_server_signature: None,
        };
        Ok((client, first))
    }

    /// Answers the server-first message with the client-final message (the proof).
    pub fn finish(&mut self, server_first: &[u8]) -> Result<String, ScramError> {
        let server_first = std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let attrs: HashMap<&str, &str> = server_first.split(',').filter_map(|a| a.split_once('=')).collect();
        let nonce =
            attrs.get("r").filter(|r| r.starts_with(&self.nonce)).ok_or(ScramError::Malformed("bad server nonce"))?;
        let salt = attrs.get("s").and_then(|s| B64.decode(s).ok()).ok_or(ScramError::Malformed("bad salt"))?;
        let iterations = attrs
            .get("i")
            .and_then(|i| i.parse().ok())
            .and_then(NonZeroU32::new)
            .ok_or(ScramError::Malformed("bad iteration count"))?;
        let mechanism = self.mechanism;
        let mut salted = vec![0u8; mechanism.len()];
        pbkdf2::derive(mechanism.pbkdf2(), iterations, &salt, self.password.as_bytes(), &mut salted);
        let key = hmac::Key::new(mechanism.hmac(), &salted);
        let client_key = hmac::sign(&key, b"Client Key");
        let stored_key = digest::digest(mechanism.digest(), client_key.as_ref());
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = hmac::sign(&hmac::Key::new(mechanism.hmac(), stored_key.as_ref()), auth_message.as_bytes());
        let proof: Vec<u8> = client_key.as_ref().iter().zip(signature.as_ref()).map(|(k, s)| k ^ s).collect();
        let server_key = hmac::sign(&key, b"Server Key");
        let server_signature =
            hmac::sign(&hmac::Key::new(mechanism.hmac(), server_key.as_ref()), auth_message.as_bytes());
        self.expected_server_signature = Some(server_signature.as_ref().to_vec());
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks the server-final message: the server proves it knows the user's key too.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let text = std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let signature = text.strip_prefix("v=").and_then(|v| B64.decode(v).ok());
        match (signature, &self.expected_server_signature) {
            (Some(got), Some(expected)) if constant_time_eq(&got, expected) => Ok(()),
            _ => Err(ScramError::Malformed("server signature does not match")),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The bearer token of an OAUTHBEARER client message (RFC 7628), e.g.
/// `n,,\x01auth=Bearer <token>\x01\x01`.
pub fn parse_oauthbearer(message: &[u8]) -> Option<&str> {
    // RFC 7628: gs2-header, then key=value pairs each ended by 0x01, the last one empty.
    let text = std::str::from_utf8(message).ok()?;
    let (gs2, rest) = text.split_once('\u{1}')?;
    if !gs2.starts_with("n,") && !gs2.starts_with("y,") {
        return None;
    }
    let auth = rest.split('\u{1}').find_map(|kv| kv.strip_prefix("auth="))?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim()).filter(|t| !t.is_empty())
}

/// Splits a SASL/PLAIN message (`authzid \0 authcid \0 password`, RFC 4616).
pub fn parse_plain(message: &[u8]) -> Option<(&str, &str, &str)> {
    let mut parts = message.splitn(3, |b| *b == 0);
    let authzid = std::str::from_utf8(parts.next()?).ok()?;
    let user = std::str::from_utf8(parts.next()?).ok()?;
    let password = std::str::from_utf8(parts.next()?).ok()?;
    (!user.is_empty()).then_some((authzid, user, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauthbearer_messages() {
        assert_eq!(parse_oauthbearer(b"n,,\x01auth=Bearer abc.def.ghi\x01\x01"), Some("abc.def.ghi"));
        // The Java client adds SASL extensions; librdkafka may name an authzid.
        assert_eq!(parse_oauthbearer(b"n,a=svc,\x01host=x\x01auth=bearer t0k\x01ext=1\x01\x01"), Some("t0k"));
        for bad in [&b""[..], b"auth=Bearer x", b"n,,\x01auth=Basic x\x01\x01", b"n,,\x01auth=Bearer \x01\x01", b"\xff"]
        {
            assert_eq!(parse_oauthbearer(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn mechanisms_follow_what_is_configured() {
        let jwt = JwtConfig {
            jwks: Some("jwks.json".into()),
            jwks_url: None,
            jwks_ca: None,
            issuer: None,
            audience: None,
            principal_claim: "sub".into(),
            clock_skew_s: 0,
            reload_interval_ms: 1000,
        };
        let config = SaslServerConfig {
            credentials: None,
            oauthbearer: Some(jwt),
            mechanisms: None,
            failed_authentication_delay_ms: 100,
            max_session_ms: 0,
            password_check_concurrency: None,
            failure_budget: FailureBudgetConfig::default(),
            password_cache: PasswordCacheConfig::default(),
        };
        assert_eq!(config.mechanisms(), ["OAUTHBEARER"]);
        assert!(config.check().is_ok());
        let plain = SaslServerConfig { mechanisms: Some(vec!["PLAIN".into()]), ..config.clone() };
        assert_eq!(plain.check().unwrap_err().0, "sasl.credentials");
        let none = SaslServerConfig { credentials: None, oauthbearer: None, ..config.clone() };
        assert_eq!(none.check().unwrap_err().0, "sasl");
        let typo = SaslServerConfig { mechanisms: Some(vec!["OAUTH".into()]), ..config.clone() };
        assert_eq!(typo.check().unwrap_err().0, "sasl.mechanisms");
        let stalled = SaslServerConfig { password_check_concurrency: Some(0), ..config };
        assert_eq!(stalled.check().unwrap_err().0, "sasl.password_check_concurrency");
    }

    #[test]
    fn passwords_verify_against_scram_entries_only() {
        let entries = vec![
            scram_entry("alice", "wonderland", ScramMechanism::Sha512, b"salt-a", 4096),
            scram_entry("bob", "builder", ScramMechanism::Sha256, b"salt-b", 4096),
        ];
        assert!(!serde_json::to_string(&entries).unwrap().contains("wonderland"));
        let creds = Credentials::from_entries(entries, Path::new("creds.yaml")).unwrap();
        assert!(creds.verify_password("alice", "wonderland"));
        assert!(creds.verify_password("bob", "builder"));
        assert!(!creds.verify_password("alice", "builder"));
        assert!(!creds.verify_password("carol", "wonderland"));
    }

    #[test]
    fn rfc_7677_test_vector() {
        // RFC 7677, section 3: user "user", password "pencil", SCRAM-SHA-256.
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let entry = scram_entry("user", "pencil", ScramMechanism::Sha256, &salt, 4096);
        let (stored, server) = (B64.decode(&entry.stored_key).unwrap(), B64.decode(&entry.server_key).unwrap());
        // ServerSignature in the RFC is HMAC(ServerKey, AuthMessage); check the key through it.
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let signature = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &server), auth_message.as_bytes());
        assert_eq!(B64.encode(signature.as_ref()), "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        assert_eq!(stored.len(), 32);
    }

    #[test]
    fn scram_exchanges_accept_the_password_and_nothing_else() {
        for mechanism in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            let entries = vec![scram_entry("alice", "wonderland", mechanism, b"salt", 4096)];
            let creds = Credentials::from_entries(entries, Path::new("c.yaml")).unwrap();
            for (password, accepted) in [("wonderland", true), ("looking-glass", false)] {
                let (mut client, first) = ScramClient::start(mechanism, "alice", password).unwrap();
                let (server, server_first) = creds.scram_first(mechanism, first.as_bytes()).unwrap();
                let client_final = client.finish(server_first.as_bytes()).unwrap();
                match server.finish(client_final.as_bytes()) {
                    Ok(server_final) => {
                        assert!(accepted, "{password} accepted");
                        client.verify(server_final.as_bytes()).unwrap();
                    }
                    Err(err) => {
                        assert!(!accepted, "{password} refused: {err}");
                        assert_eq!(err, ScramError::BadCredentials("alice".into()));
                    }
                }
            }
            assert!(creds.scram_first(mechanism, b"n,,n=mallory,r=x").is_err());
            assert!(creds.scram_first(mechanism, b"p=tls-unique,,n=alice,r=x").is_err());
        }
    }

    #[test]
    fn bad_entries_are_named() {
        let mut entry = scram_entry("alice", "x", ScramMechanism::Sha512, b"s", 4096);
        entry.iterations = 10;
        let err = Credentials::from_entries(vec![entry], Path::new("creds.yaml")).err().unwrap().to_string();
        assert!(err.contains("users[0].iterations"), "{err}");
        assert_eq!(parse_plain(b"\0alice\0secret"), Some(("", "alice", "secret")));
        assert_eq!(parse_plain(b"alice-no-separators"), None);
    }
}
