//! SCRAM (RFC 5802) credentials, the server and client sides of the exchange, and PLAIN
//! passwords checked against the same entries.

use super::*;

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
