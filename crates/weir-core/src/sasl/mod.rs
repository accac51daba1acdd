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

mod scram;
pub use scram::*;

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

/// Compares secrets without telling, by how long it takes, where they first differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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
