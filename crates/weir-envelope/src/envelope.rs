//! The sealed envelope: what replaces a payload (or one field of it) at rest.
//!
//! ```text
//! version u8 (1) | kek id length u8 | kek id | wrapped key length u8 | wrapped data key
//! | nonce (12) | ciphertext | tag (16)
//! ```
//!
//! Everything before the nonce is the envelope's *head*: it names the data key, and it is the
//! associated data of the encryption, so a head swapped onto another ciphertext does not open.
//! Every envelope carries its wrapped data key: any holder of the key-encryption key opens it,
//! however long ago its data key was retired.

use ring::aead::{Aad, LessSafeKey, Nonce, NONCE_LEN};

use crate::kms::WrappedKey;

pub const VERSION: u8 = 1;
const TAG_LEN: usize = 16;

/// Why an envelope does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not a sealed envelope: {0}")]
    Malformed(&'static str),
    #[error("envelope version {0} is not one this sidecar reads")]
    Version(u8),
    #[error("the envelope does not open under its data key (damaged, or its head swapped)")]
    Tampered,
    /// Its data key was not unwrapped yet (see `DataKeys::learn`).
    #[error("the envelope's data key was not learned from the KMS")]
    KeyNotLearned,
}

/// A sealed envelope, read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// Version, key-encryption key id and wrapped data key: the data key's name.
    pub head: &'a [u8],
    kek_id: &'a [u8],
    wrapped: &'a [u8],
    nonce: &'a [u8],
    sealed: &'a [u8],
}

impl<'a> Envelope<'a> {
    pub fn read(bytes: &'a [u8]) -> Result<Self, EnvelopeError> {
        let short = EnvelopeError::Malformed("cut short");
        let (&version, rest) = bytes.split_first().ok_or(short.clone())?;
        if version != VERSION {
            return Err(EnvelopeError::Version(version));
        }
        let (&kek_len, rest) = rest.split_first().ok_or(short.clone())?;
        let (kek_id, rest) = rest.split_at_checked(usize::from(kek_len)).ok_or(short.clone())?;
        let (&wrapped_len, rest) = rest.split_first().ok_or(short.clone())?;
        let (wrapped, rest) = rest.split_at_checked(usize::from(wrapped_len)).ok_or(short.clone())?;
        let (nonce, sealed) = rest.split_at_checked(NONCE_LEN).ok_or(short.clone())?;
        if sealed.len() < TAG_LEN {
            return Err(short);
        }
        let head = &bytes[..bytes.len() - rest.len()];
        Ok(Envelope { head, kek_id, wrapped, nonce, sealed })
    }

    /// The wrapped data key it names, for the KMS.
    pub fn wrapped_key(&self) -> Result<WrappedKey, EnvelopeError> {
        let kek_id = std::str::from_utf8(self.kek_id).map_err(|_| EnvelopeError::Malformed("a key id not UTF-8"))?;
        Ok(WrappedKey { kek_id: kek_id.to_owned(), bytes: self.wrapped.to_vec() })
    }

    /// The plaintext, opened with `key` (the data key its head names), appended to `out`
    /// (opened in place there: one copy). On failure `out` is as it was.
    pub fn open_into(&self, key: &LessSafeKey, out: &mut Vec<u8>) -> Result<(), EnvelopeError> {
        let nonce = Nonce::try_assume_unique_for_key(self.nonce).map_err(|_| EnvelopeError::Tampered)?;
        let start = out.len();
        out.extend_from_slice(self.sealed);
        match key.open_in_place(nonce, Aad::from(self.head), &mut out[start..]) {
            Ok(plain) => {
                let len = plain.len();
                out.truncate(start + len);
                Ok(())
            }
            Err(_) => {
                out.truncate(start);
                Err(EnvelopeError::Tampered)
            }
        }
    }
}

/// An envelope's head for a data key wrapped as `wrapped`.
pub fn head(wrapped: &WrappedKey) -> Vec<u8> {
    let kek = wrapped.kek_id.as_bytes();
    let mut head = Vec::with_capacity(3 + kek.len() + wrapped.bytes.len());
    head.push(VERSION);
    head.push(u8::try_from(kek.len()).unwrap_or(u8::MAX));
    head.extend_from_slice(&kek[..kek.len().min(255)]);
    head.push(u8::try_from(wrapped.bytes.len()).unwrap_or(u8::MAX));
    head.extend_from_slice(&wrapped.bytes[..wrapped.bytes.len().min(255)]);
    head
}

/// Seals `plaintext` under `key` (named by `head`) with `nonce`, appending the envelope to
/// `out`. The nonce must never repeat under one key: see `keys::DataKey`.
pub(crate) fn seal_into(key: &LessSafeKey, head: &[u8], nonce: [u8; NONCE_LEN], plaintext: &[u8], out: &mut Vec<u8>) {
    out.reserve(head.len() + NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(head);
    out.extend_from_slice(&nonce);
    let start = out.len();
    out.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(head), &mut out[start..])
        .expect("AES-GCM seals any input shorter than 64 GiB");
    out.extend_from_slice(tag.as_ref());
}
