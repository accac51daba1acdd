//! Data keys: one current per scope (a topic, say), made on first use and made again when it
//! is older than the rotation's age or has sealed its number of payloads; and the data keys
//! of envelopes opened, unwrapped once each and kept.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ring::aead::{LessSafeKey, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use crate::envelope::{head, seal_into, Envelope, EnvelopeError};
use crate::kms::{Kms, KmsError};

/// The most payloads one data key seals, whatever the rotation says: far below where 96-bit
/// nonces could repeat.
pub const MAX_USES: u64 = 1 << 32;
/// Data keys of opened envelopes kept; beyond, the cache starts afresh.
const OPENED_KEPT: usize = 4096;

/// When a scope's data key is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub max_age: Duration,
    pub max_uses: u64,
}

/// A data key sealing payloads: its nonces are a random salt and a counter, so that none
/// repeats under it (it is never shared with another process).
pub struct DataKey {
    key: LessSafeKey,
    head: Vec<u8>,
    salt: [u8; 4],
    uses: AtomicU64,
    made: Instant,
}

impl DataKey {
    /// Seals `plaintext`, appending the envelope to `out`.
    pub fn seal_into(&self, plaintext: &[u8], out: &mut Vec<u8>) {
        let count = self.uses.fetch_add(1, Ordering::Relaxed);
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..4].copy_from_slice(&self.salt);
        nonce[4..].copy_from_slice(&count.to_be_bytes());
        seal_into(&self.key, &self.head, nonce, plaintext, out);
    }

    /// The head of the envelopes it seals (which names it).
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    fn spent(&self, rotation: &Rotation) -> bool {
        let uses = self.uses.load(Ordering::Relaxed);
        uses >= rotation.max_uses.min(MAX_USES) || self.made.elapsed() >= rotation.max_age
    }
}

/// The data keys of a sidecar: current ones per scope, and those of envelopes opened.
pub struct DataKeys {
    kms: Arc<dyn Kms>,
    current: RwLock<HashMap<String, Arc<DataKey>>>,
    /// One data key made at a time, so that callers racing for a scope's first key share it.
    making: tokio::sync::Mutex<()>,
    opened: Mutex<HashMap<Vec<u8>, Arc<LessSafeKey>>>,
    random: SystemRandom,
    made: AtomicU64,
}

impl DataKeys {
    pub fn new(kms: Arc<dyn Kms>) -> Self {
        Self {
            kms,
            current: RwLock::default(),
            making: tokio::sync::Mutex::new(()),
            opened: Mutex::default(),
            random: SystemRandom::new(),
            made: AtomicU64::new(0),
        }
    }

    /// The scope's current data key, if it has one not spent: no wait.
    pub fn current_now(&self, scope: &str, rotation: &Rotation) -> Option<Arc<DataKey>> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        current.get(scope).filter(|key| !key.spent(rotation)).cloned()
    }

    /// The scope's current data key, a new one made (and wrapped by the KMS) when it has
    /// none or it is spent. Fails when the KMS cannot wrap: then nothing may be sealed.
    pub async fn current(&self, scope: &str, rotation: &Rotation) -> Result<Arc<DataKey>, KmsError> {
        if let Some(key) = self.current_now(scope, rotation) {
            return Ok(key);
        }
        let _making = self.making.lock().await;
        if let Some(key) = self.current_now(scope, rotation) {
            return Ok(key);
        }
        let mut secret = [0u8; 32];
        let mut salt = [0u8; 4];
        self.random.fill(&mut secret).map_err(|_| KmsError::Unavailable("no randomness".into()))?;
        self.random.fill(&mut salt).map_err(|_| KmsError::Unavailable("no randomness".into()))?;
        let wrapped = self.kms.wrap(&secret).await?;
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &secret).expect("32 bytes make an AES-256 key"));
        let head = head(&wrapped);
        // The key that seals opens too, without asking the KMS again.
        let opener = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &secret).expect("32 bytes make an AES-256 key"));
        self.remember(head.clone(), Arc::new(opener));
        secret.fill(0);
        let made = Arc::new(DataKey { key, head, salt, uses: AtomicU64::new(0), made: Instant::now() });
        self.made.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(scope, kek = %wrapped.kek_id, "new data key");
        self.current.write().unwrap_or_else(|p| p.into_inner()).insert(scope.to_owned(), made.clone());
        Ok(made)
    }

    /// Data keys made so far (for metrics and tests of rotation).
    pub fn made(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
    }

    fn remember(&self, head: Vec<u8>, key: Arc<LessSafeKey>) {
        let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        if opened.len() >= OPENED_KEPT {
            opened.clear();
        }
        opened.insert(head, key);
    }

    /// The data key an envelope head names, if already unwrapped.
    pub fn opener(&self, head: &[u8]) -> Option<Arc<LessSafeKey>> {
        self.opened.lock().unwrap_or_else(|p| p.into_inner()).get(head).cloned()
    }

    /// Unwraps (through the KMS) the data key of an envelope whose key is not known yet.
    pub async fn learn(&self, envelope: &[u8]) -> Result<(), LearnError> {
        let envelope = Envelope::read(envelope)?;
        if self.opener(envelope.head).is_some() {
            return Ok(());
        }
        let wrapped = envelope.wrapped_key()?;
        let mut secret = self.kms.unwrap(&wrapped).await?;
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &secret).expect("32 bytes make an AES-256 key"));
        secret.fill(0);
        self.remember(envelope.head.to_vec(), Arc::new(key));
        Ok(())
    }

    /// Opens an envelope whose data key is known, appending the plaintext to `out`.
    pub fn open_into(&self, envelope: &[u8], out: &mut Vec<u8>) -> Result<(), EnvelopeError> {
        Opener::new(self).open_into(envelope, out)
    }
}

/// Opens envelopes with [`DataKeys`]' known keys, remembering the last one used: records
/// next to each other mostly share a data key, which is then not looked up again.
pub struct Opener<'k> {
    keys: &'k DataKeys,
    last: Option<(Vec<u8>, Arc<LessSafeKey>)>,
}

impl<'k> Opener<'k> {
    pub fn new(keys: &'k DataKeys) -> Self {
        Opener { keys, last: None }
    }

    /// Opens an envelope whose data key is known, appending the plaintext to `out`.
    pub fn open_into(&mut self, envelope: &[u8], out: &mut Vec<u8>) -> Result<(), EnvelopeError> {
        let envelope = Envelope::read(envelope)?;
        let key = match &self.last {
            Some((head, key)) if head.as_slice() == envelope.head => key.clone(),
            _ => {
                let key = self.keys.opener(envelope.head).ok_or(EnvelopeError::KeyNotLearned)?;
                self.last = Some((envelope.head.to_vec(), key.clone()));
                key
            }
        };
        envelope.open_into(&key, out)
    }
}

/// Why an envelope's data key could not be learned.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LearnError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error(transparent)]
    Kms(#[from] KmsError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::LocalKms;

    fn keys(name: &str) -> (DataKeys, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("weir-keys-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.json");
        std::fs::write(&path, LocalKms::key_file("a", &[("a", [9; 32])])).unwrap();
        (DataKeys::new(Arc::new(LocalKms::new(&path))), path)
    }

    const FOREVER: Rotation = Rotation { max_age: Duration::from_secs(3600), max_uses: 1_000 };

    #[tokio::test]
    async fn sealed_payloads_open_again_under_rotated_keys_and_elsewhere() {
        let (keys, path) = keys("rotate");
        let rotation = Rotation { max_uses: 2, ..FOREVER };
        let mut sealed = Vec::new();
        for i in 0..5u8 {
            let key = keys.current("orders", &rotation).await.unwrap();
            let mut out = Vec::new();
            key.seal_into(&[i; 100], &mut out);
            assert!(!out.windows(100).any(|w| w == [i; 100]), "no plaintext in the envelope");
            sealed.push(out);
        }
        assert_eq!(keys.made(), 3, "a new key every two payloads");
        // Another sidecar with the same key file opens every one, the retired keys' too.
        let other = DataKeys::new(Arc::new(LocalKms::new(&path)));
        for (i, envelope) in sealed.iter().enumerate() {
            if i % 2 == 0 {
                assert_eq!(other.open_into(envelope, &mut Vec::new()), Err(EnvelopeError::KeyNotLearned));
            }
            other.learn(envelope).await.unwrap();
            let mut plain = Vec::new();
            other.open_into(envelope, &mut plain).unwrap();
            assert_eq!(plain, [i as u8; 100]);
        }
    }

    #[tokio::test]
    async fn damaged_or_swapped_envelopes_do_not_open() {
        let (keys, _) = keys("tamper");
        let key = keys.current("t", &FOREVER).await.unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        key.seal_into(b"first", &mut a);
        key.seal_into(b"second", &mut b);
        assert_ne!(a[..a.len() - 21], b[..b.len() - 22], "nonces differ");
        let mut damaged = a.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert_eq!(keys.open_into(&damaged, &mut Vec::new()), Err(EnvelopeError::Tampered));
        let mut version = a.clone();
        version[0] = 9;
        assert_eq!(keys.open_into(&version, &mut Vec::new()), Err(EnvelopeError::Version(9)));
        assert!(matches!(keys.open_into(&a[..20], &mut Vec::new()), Err(EnvelopeError::Malformed(_))));
        // A head with another wrapped key fails to unwrap at the KMS, not as plaintext.
        let mut relabelled = a.clone();
        relabelled[5] ^= 1;
        assert!(matches!(keys.learn(&relabelled).await, Err(LearnError::Kms(KmsError::BadWrappedKey(_)))));
    }

    #[tokio::test]
    async fn without_the_kms_no_key_is_made() {
        let keys = DataKeys::new(Arc::new(LocalKms::new(std::path::Path::new("/nonexistent/keys.json"))));
        let err = keys.current("t", &FOREVER).await.err().unwrap();
        assert!(err.is_retriable());
        assert_eq!(keys.made(), 0);
    }
}
