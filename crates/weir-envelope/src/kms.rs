//! Key-encryption keys behind a trait: a KMS wraps a data key for storage beside what it
//! encrypts, and unwraps it to decrypt. [`LocalKms`] keeps its keys in a local JSON file;
//! an external KMS is one more implementation of [`Kms`].

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;

/// A data key as a KMS wrapped it: which key-encryption key, and the wrapped bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WrappedKey {
    pub kek_id: String,
    pub bytes: Vec<u8>,
}

/// Why a KMS could not wrap or unwrap a key.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KmsError {
    /// The KMS cannot be reached or read (retrying may help).
    #[error("the KMS is unavailable: {0}")]
    Unavailable(String),
    /// It has no key of this id.
    #[error("the KMS has no key-encryption key `{0}`")]
    UnknownKey(String),
    /// The wrapped key does not unwrap under its key-encryption key (damaged, or not its own).
    #[error("a data key wrapped under `{0}` does not unwrap")]
    BadWrappedKey(String),
}

impl KmsError {
    /// Whether asking again later may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, KmsError::Unavailable(_))
    }
}

pub type KmsFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, KmsError>> + Send + 'a>>;

/// A key management service: wraps new data keys under its current key-encryption key, and
/// unwraps those wrapped under any key it still holds.
pub trait Kms: Send + Sync {
    fn wrap<'a>(&'a self, data_key: &'a [u8; 32]) -> KmsFuture<'a, WrappedKey>;
    fn unwrap<'a>(&'a self, wrapped: &'a WrappedKey) -> KmsFuture<'a, [u8; 32]>;
}

/// The key file: `{"current": "kek-2", "keys": {"kek-1": "<base64 of 32 bytes>", ...}}`.
/// Keys no longer current stay in the file for as long as anything wrapped under them is kept.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    current: String,
    keys: HashMap<String, String>,
}

/// Parsed keys and when they were read.
struct Loaded {
    current: String,
    keys: HashMap<String, LessSafeKey>,
    read_at: Instant,
}

/// A KMS whose key-encryption keys are in a local file (mode 0600, say), read when first
/// needed and again at most every `reread_after` (a new current key, a key added); if it
/// cannot be read again, the keys read before go on serving. Wrapping is AES-256-GCM under
/// the current key, with the key's id as associated data.
pub struct LocalKms {
    path: PathBuf,
    reread_after: Duration,
    loaded: Mutex<Option<Loaded>>,
    random: SystemRandom,
}

impl LocalKms {
    pub fn new(path: &Path) -> Self {
        Self::with_reread(path, Duration::from_secs(30))
    }

    pub fn with_reread(path: &Path, reread_after: Duration) -> Self {
        Self { path: path.to_owned(), reread_after, loaded: Mutex::new(None), random: SystemRandom::new() }
    }

    /// A new key file's text: `current` and every key, base64.
    pub fn key_file(current: &str, keys: &[(&str, [u8; 32])]) -> String {
        let engine = base64::engine::general_purpose::STANDARD;
        let keys: serde_json::Map<String, serde_json::Value> =
            keys.iter().map(|(id, key)| ((*id).to_owned(), engine.encode(key).into())).collect();
        serde_json::json!({"current": current, "keys": keys}).to_string()
    }

    fn read(path: &Path) -> Result<Loaded, KmsError> {
        let unavailable = |why: String| KmsError::Unavailable(format!("key file {}: {why}", path.display()));
        let text = std::fs::read(path).map_err(|e| unavailable(e.to_string()))?;
        let file: KeyFile = serde_json::from_slice(&text).map_err(|e| unavailable(e.to_string()))?;
        let engine = base64::engine::general_purpose::STANDARD;
        let mut keys = HashMap::new();
        for (id, text) in &file.keys {
            let bytes = engine.decode(text).map_err(|e| unavailable(format!("key `{id}`: {e}")))?;
            if bytes.len() != 32 {
                return Err(unavailable(format!("key `{id}` is {} bytes, not 32", bytes.len())));
            }
            let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| unavailable(format!("key `{id}`")))?;
            keys.insert(id.clone(), LessSafeKey::new(key));
        }
        if !keys.contains_key(&file.current) {
            return Err(unavailable(format!("the current key `{}` is not among its keys", file.current)));
        }
        Ok(Loaded { current: file.current, keys, read_at: Instant::now() })
    }

    /// Runs `with` on the keys, read again first when they are older than `reread_after`
    /// (off the runtime's threads: a file read may block).
    async fn with_keys<T>(&self, with: impl FnOnce(&Loaded) -> Result<T, KmsError>) -> Result<T, KmsError> {
        let stale = {
            let loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
            loaded.as_ref().is_none_or(|l| l.read_at.elapsed() >= self.reread_after)
        };
        if stale {
            let path = self.path.clone();
            let read = tokio::task::spawn_blocking(move || Self::read(&path))
                .await
                .map_err(|e| KmsError::Unavailable(format!("reading the key file failed: {e}")))?;
            let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
            match read {
                Ok(fresh) => *loaded = Some(fresh),
                Err(err) => match loaded.as_mut() {
                    // Keys read before go on serving; try again after a while.
                    Some(old) => {
                        tracing::warn!("{err}; the keys read before go on serving");
                        old.read_at = Instant::now();
                    }
                    None => return Err(err),
                },
            }
        }
        let loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        with(loaded.as_ref().ok_or_else(|| KmsError::Unavailable("no keys read".into()))?)
    }
}

impl Kms for LocalKms {
    fn wrap<'a>(&'a self, data_key: &'a [u8; 32]) -> KmsFuture<'a, WrappedKey> {
        Box::pin(self.with_keys(move |loaded| {
            let kek = &loaded.keys[&loaded.current];
            let mut nonce = [0u8; NONCE_LEN];
            self.random.fill(&mut nonce).map_err(|_| KmsError::Unavailable("no randomness".into()))?;
            let mut bytes = data_key.to_vec();
            let aad = Aad::from(loaded.current.as_bytes());
            kek.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), aad, &mut bytes)
                .map_err(|_| KmsError::Unavailable("sealing failed".into()))?;
            let mut wrapped = nonce.to_vec();
            wrapped.extend_from_slice(&bytes);
            Ok(WrappedKey { kek_id: loaded.current.clone(), bytes: wrapped })
        }))
    }

    fn unwrap<'a>(&'a self, wrapped: &'a WrappedKey) -> KmsFuture<'a, [u8; 32]> {
        Box::pin(self.with_keys(move |loaded| {
            let kek = loaded.keys.get(&wrapped.kek_id).ok_or_else(|| KmsError::UnknownKey(wrapped.kek_id.clone()))?;
            let bad = || KmsError::BadWrappedKey(wrapped.kek_id.clone());
            let (nonce, sealed) = wrapped.bytes.split_at_checked(NONCE_LEN).ok_or_else(bad)?;
            let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
            let mut bytes = sealed.to_vec();
            let plain =
                kek.open_in_place(nonce, Aad::from(wrapped.kek_id.as_bytes()), &mut bytes).map_err(|_| bad())?;
            plain.try_into().map_err(|_| bad())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_file(dir: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("weir-kms-{dir}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.json");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[tokio::test]
    async fn a_key_wrapped_under_a_retired_kek_still_unwraps() {
        let path = key_file("rotate", &LocalKms::key_file("a", &[("a", [1; 32])]));
        let kms = LocalKms::with_reread(&path, Duration::ZERO);
        let old = kms.wrap(&[7; 32]).await.unwrap();
        assert_eq!(old.kek_id, "a");
        assert_eq!(old.bytes.len(), 12 + 32 + 16);
        std::fs::write(&path, LocalKms::key_file("b", &[("a", [1; 32]), ("b", [2; 32])])).unwrap();
        let new = kms.wrap(&[8; 32]).await.unwrap();
        assert_eq!(new.kek_id, "b");
        assert_eq!(kms.unwrap(&old).await.unwrap(), [7; 32]);
        assert_eq!(kms.unwrap(&new).await.unwrap(), [8; 32]);
        // Damaged, or claiming another key: refused, never a wrong key.
        let mut damaged = new.clone();
        damaged.bytes[20] ^= 1;
        assert!(matches!(kms.unwrap(&damaged).await, Err(KmsError::BadWrappedKey(_))));
        let relabelled = WrappedKey { kek_id: "a".into(), bytes: new.bytes.clone() };
        assert!(matches!(kms.unwrap(&relabelled).await, Err(KmsError::BadWrappedKey(_))));
        let unknown = WrappedKey { kek_id: "zz".into(), bytes: new.bytes };
        assert!(matches!(kms.unwrap(&unknown).await, Err(KmsError::UnknownKey(k)) if k == "zz"));
    }

    #[tokio::test]
    async fn a_missing_or_bad_key_file_is_unavailable_and_keys_read_before_go_on() {
        let missing = LocalKms::new(Path::new("/nonexistent/weir/keys.json"));
        let err = missing.wrap(&[0; 32]).await.unwrap_err();
        assert!(err.is_retriable() && err.to_string().contains("/nonexistent/weir/keys.json"), "{err}");
        let short = key_file("short", r#"{"current": "a", "keys": {"a": "AAAA"}}"#);
        let err = LocalKms::new(&short).wrap(&[0; 32]).await.unwrap_err().to_string();
        assert!(err.contains("key `a` is 3 bytes, not 32"), "{err}");
        let path = key_file("lost", &LocalKms::key_file("a", &[("a", [1; 32])]));
        let kms = LocalKms::with_reread(&path, Duration::ZERO);
        let wrapped = kms.wrap(&[3; 32]).await.unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(kms.unwrap(&wrapped).await.unwrap(), [3; 32]);
    }
}
