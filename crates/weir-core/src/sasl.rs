//! SASL credentials at rest and their verification, whatever protocol carries the exchange.
//!
//! Passwords are never stored: each user has a SCRAM entry (RFC 5802: salt, iteration count,
//! StoredKey, ServerKey), which serves SCRAM exchanges and lets a PLAIN password be checked by
//! deriving the same StoredKey from it.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2};
use serde::{Deserialize, Serialize};

use crate::config::{invalid, load_yaml_file, ConfigError};

/// SASL terminated by a listener.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SaslServerConfig {
    /// YAML file of SCRAM entries (`users: [...]`); see [`scram_entry`].
    pub credentials: std::path::PathBuf,
    /// Mechanisms offered; today `PLAIN` (checked against the SCRAM entries).
    #[serde(default = "default_mechanisms")]
    pub mechanisms: Vec<String>,
}

fn default_mechanisms() -> Vec<String> {
    vec!["PLAIN".into()]
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

struct Decoded {
    mechanism: ScramMechanism,
    salt: Vec<u8>,
    iterations: NonZeroU32,
    stored_key: Vec<u8>,
}

/// The users a listener accepts.
pub struct Credentials {
    users: HashMap<String, Decoded>,
}

impl ScramMechanism {
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
            b64("server_key", &entry.server_key)?;
            let iterations = NonZeroU32::new(entry.iterations)
                .filter(|n| n.get() >= 4096)
                .ok_or_else(|| invalid(origin, &key("iterations"), "expected at least 4096"))?;
            if stored_key.len() != entry.mechanism.len() {
                return Err(invalid(origin, &key("stored_key"), "wrong length for the mechanism"));
            }
            let decoded = Decoded { mechanism: entry.mechanism, salt, iterations, stored_key };
            if users.insert(entry.user.clone(), decoded).is_some() {
                return Err(invalid(origin, &key("user"), format!("user `{}` appears twice", entry.user)));
            }
        }
        Ok(Self { users })
    }

    /// Checks a user's password (SASL/PLAIN) against the stored SCRAM key, in constant time
    /// with respect to the key. An unknown user costs the same derivation as a known one.
    pub fn verify_password(&self, user: &str, password: &str) -> bool {
        const DECOY_SALT: &[u8] = b"weir-unknown-user";
        match self.users.get(user) {
            Some(entry) => {
                let (stored, _) = entry.mechanism.keys(password.as_bytes(), &entry.salt, entry.iterations);
                constant_time_eq(&stored, &entry.stored_key)
            }
            None => {
                let _ = ScramMechanism::Sha512.keys(
                    password.as_bytes(),
                    DECOY_SALT,
                    NonZeroU32::new(4096).unwrap_or(NonZeroU32::MIN),
                );
                false
            }
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
    fn bad_entries_are_named() {
        let mut entry = scram_entry("alice", "x", ScramMechanism::Sha512, b"s", 4096);
        entry.iterations = 10;
        let err = Credentials::from_entries(vec![entry], Path::new("creds.yaml")).err().unwrap().to_string();
        assert!(err.contains("users[0].iterations"), "{err}");
        assert_eq!(parse_plain(b"\0alice\0secret"), Some(("", "alice", "secret")));
        assert_eq!(parse_plain(b"alice-no-separators"), None);
    }
}
