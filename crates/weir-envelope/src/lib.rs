//! Envelope encryption for Weir's event policies.
//!
//! Owns the cryptography of encrypting a payload at rest: data keys (AES-256-GCM, one per
//! topic or whatever the caller keys them by, rotated by time and use; [`keys`]), each
//! wrapped by a key-encryption key held by a KMS behind a trait ([`kms`]: a local key file by
//! default; [`aws_kms`]: AWS KMS or anything speaking its API), and the sealed envelope that carries the ciphertext with the wrapped data key
//! that opens it ([`envelope`]), so that any holder of the key-encryption key opens any
//! envelope, under a data key retired long ago too.
//!
//! It must not know Kafka (records, batches, headers): callers hand it bytes and say where
//! the sealed bytes go. No key material is logged, and an envelope that does not open is an
//! error, never plaintext.

pub mod aws_kms;
pub mod envelope;
pub mod keys;
pub mod kms;

pub use aws_kms::{AwsCredentials, AwsKms, AwsKmsSettings};
pub use envelope::{Envelope, EnvelopeError};
pub use keys::{DataKey, DataKeys, LearnError, Opener, Rotation};
pub use kms::{Kms, KmsError, LocalKms, WrappedKey};
